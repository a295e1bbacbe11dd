#!/usr/bin/env bash
# Checks that the per-page hot paths (enter into existing tables, re-enter, extract, translation,
# protect, unwire, remove) allocate nothing on the heap: valgrind counts the heap allocations of
# pmap-bench --alloc-probe for 100 and for 1000 rounds; the two counts must be equal.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
swift build -c release --product pmap-bench >/dev/null
bench=$(swift build -c release --show-bin-path)/pmap-bench
count() {
  local log
  log=$(mktemp)
  if ! valgrind --tool=memcheck --leak-check=no "$bench" --alloc-probe "$1" >"$log.out" 2>"$log" ||
    ! grep -q "rounds done" "$log.out"; then
    echo "FAIL: pmap-bench --alloc-probe $1 did not complete:" >&2
    cat "$log.out" >&2
    exit 1
  fi
  sed -n 's/.*total heap usage: \([0-9,]*\) allocs.*/\1/p' "$log" | tr -d ,
  rm -f "$log" "$log.out"
}
a=$(count 100) || exit 1
b=$(count 1000) || exit 1
echo "heap allocations: $a for 100 rounds, $b for 1000 rounds"
if [ -z "$a" ] || [ "$a" != "$b" ]; then
  echo "FAIL: the per-page operations allocate ($(( (b - a) )) extra allocations for 900 more rounds)"
  exit 1
fi
echo "OK: no heap allocation per page"
