#!/usr/bin/env bash
# Runs pmap-demo briefly twice (in-memory swap with a CSV time series; a real swap file with guests
# whose EPT has no A/D bits) and fails unless both end with every content check passing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
swift build -c release --product pmap-demo >/dev/null
demo=$(swift build -c release --show-bin-path)/pmap-demo
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$demo" --seconds 2 --csv "$tmp/series.csv" | tail -n 12
rows=$(($(wc -l <"$tmp/series.csv") - 1))
[ "$rows" -ge 4 ] || { echo "FAIL: only $rows CSV rows"; exit 1; }
"$demo" --seconds 2 --host-mib 16 --guests 2 --guest-mib 12 --swap-file "$tmp/swap" --no-ept-ad | tail -n 3
"$demo" --seconds 1 --mmu software | tail -n 2
# The checker must catch a word changed behind the MMU's back.
if "$demo" --seconds 1 --corrupt >"$tmp/corrupt.txt"; then
  echo "FAIL: pmap-demo --corrupt exited 0"
  exit 1
fi
grep -q "1 mismatches" "$tmp/corrupt.txt" || { echo "FAIL: --corrupt not reported"; cat "$tmp/corrupt.txt"; exit 1; }
echo "OK: pmap-demo content checks passed ($rows CSV rows)"
