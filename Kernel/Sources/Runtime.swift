import KernelSupport

// The C symbols an Embedded Swift program calls that the kernel must define (the link fails
// without them). memset / memcpy / memmove / memcmp are in assembly (Kernel/Boot/runtime.S), and
// so are the names posix_memalign and free, as jumps to the Swift functions here.

/// `print` writes through `putchar`: to the serial console.
@_cdecl("putchar")
public func putchar(_ character: CInt) -> CInt {
  Serial.write(UInt8(truncatingIfNeeded: character))
  return character
}

/// `posix_memalign`: every heap allocation of Embedded Swift (class instances,
/// `UnsafeMutablePointer.allocate`, array and string storage) ends here, served by ``KernelHeap``.
/// The C name is defined in Kernel/Boot/runtime.S as a jump to this function: Swift refuses to
/// define symbols its runtime uses (`free`) with `@_cdecl`.
@_cdecl("kernel_posix_memalign")
public func kernelPosixMemalign(
  _ result: UnsafeMutablePointer<UnsafeMutableRawPointer?>, _ alignment: Int, _ size: Int
) -> CInt {
  guard let p = KernelHeap.allocate(byteCount: size, alignment: alignment) else { return 12 }  // ENOMEM
  result.pointee = p
  return 0
}

/// `free` (by way of Kernel/Boot/runtime.S): releases what `posix_memalign` returned.
@_cdecl("kernel_free")
public func kernelFree(_ pointer: UnsafeMutableRawPointer?) {
  guard let pointer else { return }
  KernelHeap.release(pointer)
}

/// Seeds the standard library's hashing (`Hasher`, pulled in by `Hashable` conformances of the
/// library's value types even when nothing is hashed at run time). A kernel that hashes
/// attacker-controlled keys wants real entropy (RDRAND); this one fills from a xorshift generator
/// seeded by the time-stamp counter.
@_cdecl("arc4random_buf")
public func arc4randomBuffer(_ buffer: UnsafeMutableRawPointer, _ count: Int) {
  var state = ks_rdtsc() | 1
  for i in 0..<count {
    state ^= state << 13
    state ^= state >> 7
    state ^= state << 17
    buffer.storeBytes(of: UInt8(truncatingIfNeeded: state), toByteOffset: i, as: UInt8.self)
  }
}
