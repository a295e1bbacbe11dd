#!/usr/bin/env bash
# Checks that the per-page hot paths allocate nothing on the heap and do no reference counting:
# pmap-bench --alloc-probe runs enter into existing tables, re-enter, extract, translation,
# protect, unwire and remove on unmanaged pages of both formats, then pv inserts and removes and
# every page operation on managed pages that a native and an EPT pmap share.
# - heap: valgrind counts the heap allocations for 100 and for 1000 rounds; they must be equal.
# - ARC: a preloaded shim counts the calls the program makes to swift_retain / swift_release
#   (and their _n and bridge-object forms) for 100 and 1000 rounds; they must be equal.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
swift build -c release --product pmap-bench >/dev/null
bench=$(swift build -c release --show-bin-path)/pmap-bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs pmap-bench --alloc-probe ROUNDS under the command given after ROUNDS (output in $work).
run_probe() {
  local rounds=$1
  shift
  if ! "$@" "$bench" --alloc-probe "$rounds" >"$work/out" 2>"$work/err" || ! grep -q "rounds done" "$work/out"; then
    echo "FAIL: pmap-bench --alloc-probe $rounds did not complete:" >&2
    cat "$work/out" "$work/err" >&2
    exit 1
  fi
}

# expect_same WHAT COUNT_100 COUNT_1000: the per-page operations must add nothing to WHAT.
expect_same() {
  echo "$1: $2 for 100 rounds, $3 for 1000 rounds"
  if [ -z "$2" ] || [ "$2" != "$3" ]; then
    echo "FAIL: the per-page operations do $1 per page"
    exit 1
  fi
  echo "OK: no $1 per page"
}

heap() {
  run_probe "$1" valgrind --tool=memcheck --leak-check=no
  sed -n 's/.*total heap usage: \([0-9,]*\) allocs.*/\1/p' "$work/err" | tr -d ,
}
expect_same "heap allocations" "$(heap 100)" "$(heap 1000)"

# The shim interposes the runtime's entry points (the program calls them through its PLT).
cat >"$work/arc.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
static unsigned long retains, releases;
#define FORWARD(ret, name, params, args, counter)                                   \
  ret name params {                                                                 \
    static ret (*real) params;                                                      \
    if (!real) real = (ret (*) params)dlsym(RTLD_NEXT, #name);                      \
    __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);                              \
    return real args;                                                               \
  }
FORWARD(void *, swift_retain, (void *o), (o), retains)
FORWARD(void *, swift_retain_n, (void *o, unsigned n), (o, n), retains)
FORWARD(void *, swift_bridgeObjectRetain, (void *o), (o), retains)
FORWARD(void, swift_release, (void *o), (o), releases)
FORWARD(void, swift_release_n, (void *o, unsigned n), (o, n), releases)
FORWARD(void, swift_bridgeObjectRelease, (void *o), (o), releases)
__attribute__((destructor)) static void report(void) {
  fprintf(stderr, "arc-count: %lu %lu\n", retains, releases);
}
C
cc -O2 -shared -fPIC -o "$work/arc.so" "$work/arc.c" -ldl
arc() {
  run_probe "$1" env LD_PRELOAD="$work/arc.so"
  sed -n 's/^arc-count: //p' "$work/err"
}
expect_same "reference counting (swift_retain, swift_release)" "$(arc 100)" "$(arc 1000)"
