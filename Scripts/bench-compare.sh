#!/usr/bin/env bash
# Side-by-side benchmark: the C reference (../shared/bench/cref.c) and pmap-bench, in one run,
# pinned to the same core, one after the other; prints medians and Swift/C ratios.
#
#   Scripts/bench-compare.sh            all sizes, 3 alternating rounds (about 2 minutes); the Swift
#                                       side runs with spin locks (the default) and again without
#                                       (Locking.callerSerialized: "… unlocked" columns)
#   ROUNDS=5 Scripts/bench-compare.sh   more rounds
#   CREF=path/to/cref.c Scripts/bench-compare.sh
#
# These machines are shared and noisy: a neighbour can slow one run by 2x or more. The script
# therefore alternates C and Swift ROUNDS times and keeps, for every row, the best median of
# each side (each median itself of 5 repetitions).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
cref_src=${CREF:-../shared/bench/cref.c}
core=${CORE:-1}
out=$(mktemp -d)
cc -O2 -o "$out/cref" "$cref_src"
swift build -c release --product pmap-bench >/dev/null
bench=$(swift build -c release --show-bin-path)/pmap-bench

# Warm the core up with one discarded C run, then alternate C and Swift.
rounds=${ROUNDS:-3}
taskset -c "$core" "$out/cref" >/dev/null 2>&1
: >"$out/c.txt"
: >"$out/swift.tsv"
for _ in $(seq "$rounds"); do
  taskset -c "$core" "$out/cref" 2>/dev/null >>"$out/c.txt"
  taskset -c "$core" "$bench" --tsv >>"$out/swift.tsv"
  # The same without locks (Locking.callerSerialized), like for like with the C reference,
  # which takes none.
  taskset -c "$core" "$bench" --tsv --locking serialized --formats native,mixed >>"$out/swift.tsv"
done

# The C table: "op  med [min-max]  med [..]  med [..]" for N = 4096, 65536, 1048576.
python3 - "$out/c.txt" "$out/swift.tsv" <<'PY'
import os, re, sys
c = {}
sizes = ["4096", "65536", "1048576"]
for line in open(sys.argv[1]):
    cells = re.findall(r"([0-9.]+) \[[0-9.]+-[0-9.]+\]", line)
    if len(cells) == 3:
        op = line[:24].strip()
        for n, v in zip(sizes, cells):
            c[(op, n)] = min(float(v), c.get((op, n), float("inf")))
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.count("\t") == 3]
formats = []
for f, op, n, v in rows:
    if f not in formats:
        formats.append(f)
print("ns/op: best of %s alternating runs of each side, each the median of 5; ratio = Swift / C" % os.environ.get("ROUNDS", "3"))
print()
print("| op | N | C | " + " | ".join(f"{f} | {f}/C" for f in formats) + " |")
print("|---|---:|---:|" + "---:|---:|" * len(formats))
swift = {}
for f, op, n, v in rows:
    swift[(f, op, n)] = min(float(v), swift.get((f, op, n), float("inf")))
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
