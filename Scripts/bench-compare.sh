#!/usr/bin/env bash
# Side-by-side benchmark: the C reference (../shared/bench/cref.c) and pmap-bench, in one run,
# pinned to the same core, one after the other; prints medians and Swift/C ratios.
#
#   Scripts/bench-compare.sh            all sizes (about 40 s)
#   CREF=path/to/cref.c Scripts/bench-compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
cref_src=${CREF:-../shared/bench/cref.c}
core=${CORE:-1}
out=$(mktemp -d)
cc -O2 -o "$out/cref" "$cref_src"
swift build -c release --product pmap-bench >/dev/null
bench=$(swift build -c release --show-bin-path)/pmap-bench

# Warm the core up with one discarded C run, then measure C and Swift back to back.
taskset -c "$core" "$out/cref" >/dev/null 2>&1
taskset -c "$core" "$out/cref" 2>/dev/null >"$out/c.txt"
taskset -c "$core" "$bench" --tsv >"$out/swift.tsv"

# The C table: "op  med [min-max]  med [..]  med [..]" for N = 4096, 65536, 1048576.
python3 - "$out/c.txt" "$out/swift.tsv" <<'PY'
import re, sys
c = {}
sizes = ["4096", "65536", "1048576"]
for line in open(sys.argv[1]):
    cells = re.findall(r"([0-9.]+) \[[0-9.]+-[0-9.]+\]", line)
    if len(cells) == 3:
        op = line[:24].strip()
        for n, v in zip(sizes, cells):
            c[(op, n)] = float(v)
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip()]
formats = []
for f, op, n, v in rows:
    if f not in formats:
        formats.append(f)
print("ns/op, median of 5; ratio = Swift / C (same run, taskset -c %s)" % sys.argv[0][:0] if False else "ns/op, median of 5; ratio = Swift / C, measured in the same run")
print()
print("| op | N | C | " + " | ".join(f"{f} | {f}/C" for f in formats) + " |")
print("|---|---:|---:|" + "---:|---:|" * len(formats))
swift = {(f, op, n): float(v) for f, op, n, v in rows}
ops = []
for f, op, n, v in rows:
    if op not in ops:
        ops.append(op)
worst = 0.0
for op in ops:
    for n in sizes:
        if (op, n) not in c:
            continue
        line = f"| {op} | {n} | {c[(op, n)]:.2f} |"
        for f in formats:
            s = swift.get((f, op, n))
            if s is None:
                line += " - | - |"
                continue
            r = s / c[(op, n)]
            worst = max(worst, r)
            line += f" {s:.2f} | {r:.2f}x |"
        print(line)
print()
print(f"worst ratio: {worst:.2f}x")
PY
rm -rf "$out"
