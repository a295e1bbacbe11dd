#!/usr/bin/env bash
# Fuzzes the pmaps against the reference model with libFuzzer (plus Address Sanitizer).
# Usage: Scripts/fuzz.sh [seconds]   (default 60)
# The seed corpus is Fuzz/Corpus (kept in the repository); new inputs go to a scratch corpus in
# .build-fuzz/corpus; a crash or mismatch leaves its input in .build-fuzz/ (crash-*), which
# `$(swift build --show-bin-path)/pmap-fuzz FILE` replays without the fuzzer.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
seconds="${1:-60}"
flags=(-Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DFUZZING -Xswiftc -use-ld=lld)
swift build -c release --scratch-path .build-fuzz --product pmap-fuzz "${flags[@]}"
bin="$(swift build -c release --scratch-path .build-fuzz --product pmap-fuzz "${flags[@]}" --show-bin-path)/pmap-fuzz"
mkdir -p .build-fuzz/corpus
cd .build-fuzz
ASAN_OPTIONS=detect_leaks=0 "$bin" -max_total_time="$seconds" -max_len=1024 -timeout=20 -print_final_stats=1 \
  corpus ../Fuzz/Corpus 2>&1 | tee fuzz.log | grep -E "^#[0-9]+ +(INITED|DONE|pulse)|stat::|ERROR|mismatch|Done" || true
grep -q "Done [0-9]* runs" fuzz.log || { echo "fuzz: the run did not finish cleanly (see .build-fuzz/fuzz.log)"; exit 1; }
