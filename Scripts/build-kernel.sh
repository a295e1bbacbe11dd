#!/usr/bin/env bash
# Builds the bare-metal test kernel (Kernel/) from a clean clone: the library modules Pmap,
# PmapNative, PmapEPT and UVMLite and the kernel's Swift code with Embedded Swift for
# x86_64-unknown-none-elf, the assembly with the toolchain's clang, linked with ld.lld and
# converted to the 32-bit ELF that QEMU's multiboot loader (-kernel) accepts.
#
# Output: .build-kernel/kernel.elf (64-bit, for llvm-objdump / debugging) and
#         .build-kernel/kernel.multiboot.elf (32-bit container, what QEMU boots).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
out=.build-kernel
mkdir -p "$out"

target=x86_64-unknown-none-elf
# The flags every piece of Swift that ends up in the kernel is compiled with (Documentation/
# UsingSwiftPmapInYourKernel.md explains each). They matter for the library modules too: in
# Embedded Swift their generic code is specialised and emitted into the client module.
swift_flags=(
  -target "$target" -enable-experimental-feature Embedded -wmo -parse-as-library -Osize
  -swift-version 6 -warnings-as-errors
  -Xfrontend -disable-stack-protector     # no __stack_chk_guard / __stack_chk_fail
  -Xcc -mno-red-zone                      # interrupts push onto the interrupted stack
  -Xcc -mno-sse -Xcc -mno-sse2            # no FPU/SSE state in the kernel (not saved on traps)
  -I "$out"
)

module() { # module name, sources...
  local name=$1
  shift
  swiftc "${swift_flags[@]}" -module-name "$name" -emit-module -emit-module-path "$out/$name.swiftmodule" \
    -c "$@" -o "$out/$name.o"
}

echo "swift: Pmap"
module Pmap Sources/Pmap/*.swift
echo "swift: PmapNative"
module PmapNative Sources/PmapNative/*.swift
echo "swift: PmapEPT"
module PmapEPT Sources/PmapEPT/*.swift
echo "swift: UVMLite"
module UVMLite Sources/UVMLite/*.swift
echo "swift: Kernel"
swiftc "${swift_flags[@]}" -module-name Kernel -Xcc -fmodule-map-file=Kernel/Support/module.modulemap \
  -c Kernel/Sources/*.swift -o "$out/Kernel.o"

for s in Kernel/Boot/*.S; do
  echo "asm: $s"
  clang -target "$target" -c "$s" -o "$out/$(basename "$s" .S).o"
done

echo "link"
ld.lld -T Kernel/Boot/kernel.ld -nostdlib -static --no-pie -z max-page-size=4096 \
  -o "$out/kernel.elf" "$out"/boot.o "$out"/traps.o "$out"/runtime.o "$out"/Kernel.o "$out"/UVMLite.o "$out"/PmapEPT.o "$out"/PmapNative.o "$out"/Pmap.o
llvm-objcopy -I elf64-x86-64 -O elf32-i386 "$out/kernel.elf" "$out/kernel.multiboot.elf"
ls -l "$out/kernel.elf" "$out/kernel.multiboot.elf"
