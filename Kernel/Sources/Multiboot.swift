/// A range of physical memory `[start, end)`.
struct PhysicalRange {
  var start: UInt64
  var end: UInt64
  var byteCount: UInt64 { end - start }
}

/// The multiboot (v1) information the loader passes in EBX: the memory map QEMU reports.
enum Multiboot {
  static var bootloaderMagic: UInt32 { 0x2bad_b002 }

  /// The RAM the memory map reports as available (type 1), in the order given, each trimmed to
  /// whole 4 KiB frames. Read through the bootstrap identity map, before the kernel switches
  /// address space. Returns `nil` when the loader passed no memory map (flags bit 6 clear).
  static func availableMemory(information address: UInt64) -> [PhysicalRange]? {
    let info = UnsafeRawPointer(bitPattern: UInt(address)).unsafelyUnwrapped
    let flags = info.loadUnaligned(as: UInt32.self)
    guard flags & (1 << 6) != 0 else { return nil }
    let length = UInt64(info.loadUnaligned(fromByteOffset: 44, as: UInt32.self))
    let mapAddress = UInt64(info.loadUnaligned(fromByteOffset: 48, as: UInt32.self))
    var ranges: [PhysicalRange] = []
    var offset: UInt64 = 0
    // Each entry: size (of the rest of the entry), base (8), length (8), type (4).
    while offset + 24 <= length {
      let entry = UnsafeRawPointer(bitPattern: UInt(mapAddress + offset)).unsafelyUnwrapped
      let size = UInt64(entry.loadUnaligned(as: UInt32.self))
      let base = entry.loadUnaligned(fromByteOffset: 4, as: UInt64.self)
      let bytes = entry.loadUnaligned(fromByteOffset: 12, as: UInt64.self)
      let type = entry.loadUnaligned(fromByteOffset: 20, as: UInt32.self)
      if type == 1 {
        let start = (base + 0xfff) & ~0xfff
        let end = (base + bytes) & ~0xfff
        if start < end { ranges.append(PhysicalRange(start: start, end: end)) }
      }
      offset += size + 4
    }
    return ranges
  }
}
