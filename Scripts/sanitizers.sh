#!/usr/bin/env bash
# Runs the tests under Thread Sanitizer (the concurrent and randomized suites) and Address
# Sanitizer (the whole suite). Any sanitizer report fails the run (halt_on_error).
# Usage: Scripts/sanitizers.sh [thread|address|all]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
which="${1:-all}"

mkdir -p .build-tsan .build-asan
if [ "$which" = thread ] || [ "$which" = all ]; then
  echo "--- Thread Sanitizer: stress, differential, pv-lists, attributes, lock-free extract"
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 PMAP_STRESS_OPS=${PMAP_STRESS_OPS:-5000} \
    PMAP_DIFFERENTIAL_OPS=${PMAP_DIFFERENTIAL_OPS:-20000} PMAP_LOCKFREE_ROUNDS=${PMAP_LOCKFREE_ROUNDS:-20000} \
    swift test --sanitize=thread --scratch-path .build-tsan \
    --filter 'ConcurrencyStress|Differential|PVList|PageAttribute|LockFree' 2>&1 | tee .build-tsan/tsan.log
  if grep -q "WARNING: ThreadSanitizer" .build-tsan/tsan.log; then echo "Thread Sanitizer reported a race"; exit 1; fi
fi

if [ "$which" = address ] || [ "$which" = all ]; then
  echo "--- Address Sanitizer: every test"
  ASAN_OPTIONS=halt_on_error=1:detect_leaks=0 PMAP_STRESS_OPS=${PMAP_STRESS_OPS:-5000} \
    swift test --sanitize=address --scratch-path .build-asan 2>&1 | tee .build-asan/asan.log
  if grep -q "ERROR: AddressSanitizer" .build-asan/asan.log; then echo "Address Sanitizer reported an error"; exit 1; fi
fi
