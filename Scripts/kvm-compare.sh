#!/usr/bin/env bash
# Compares the x86 MMU model (PmapMMU) with Linux KVM's MMU: random page tables built by
# NativePmap and random access scripts, run in a KVM guest and through the model, compared access
# by access (completion or vector, error code, CR2, value read), entry by entry (every A/D bit)
# and word by word (every write's destination). See Documentation/KVMComparison.md.
#
#   Scripts/kvm-compare.sh                          # CI: seeds 1-4, 1000 accesses each
#   CONFIGURATION=release Scripts/kvm-compare.sh --seed 1000 --seeds 100 --accesses 10000
#
# Arguments go to pmap-kvm-compare (--seed, --seeds, --accesses, --supervisor-fraction,
# --user-upper-half, --verbose). Exits 0 when everything agreed, 1 on any disagreement; when
# /dev/kvm is not usable it prints one line saying why and exits 0 (the comparison is skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
configuration=${CONFIGURATION:-debug}
swift build -c "$configuration" --product pmap-kvm-compare >/dev/null
bin=$(swift build -c "$configuration" --show-bin-path)/pmap-kvm-compare
[ $# -gt 0 ] || set -- --seed 1 --seeds 4 --accesses 1000
status=0
"$bin" "$@" || status=$?
if [ "$status" -eq 77 ]; then
  echo "KVM comparison SKIPPED (see the reason above), not passed"
  exit 0
fi
exit "$status"
