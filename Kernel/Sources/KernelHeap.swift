import KernelSupport

/// The kernel heap behind `posix_memalign` and `free`: a first-fit allocator over a 4 MiB arena
/// in the kernel image's .bss (`kernel_heap` in Kernel/Boot/boot.S).
///
/// Every block starts with a 16-byte header: its size in bytes (header included, a multiple of
/// 16) and, while allocated, a tag (checked by `release`, which catches double frees and foreign
/// pointers); while free, the address of the next free block. Free blocks form a list sorted by
/// address, and `release` merges a block with free neighbours, so fragmentation stays bounded.
///
/// It allocates nothing itself (it *is* the allocator) and is not locked: the kernel is single
/// CPU and runs with interrupts disabled; a multiprocessor kernel wraps it in a spinlock.
enum KernelHeap {
  static var headerSize: UInt64 { 16 }
  static var smallestBlock: UInt64 { 32 }
  static var allocatedTag: UInt64 { 0xa110_c8ed_b10c_a110 }

  /// Returns `byteCount` bytes aligned to `alignment` (a power of two; at least 16 is used), or
  /// `nil` when no free block is large enough. O(free blocks).
  static func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
    initializeIfNeeded()
    guard byteCount >= 0, alignment > 0, alignment & (alignment - 1) == 0 else { return nil }
    let align = UInt64(max(alignment, 16))
    let wanted = (UInt64(max(byteCount, 1)) + 15) & ~15 + headerSize
    var previous: UInt64 = 0
    var block = heapFreeHead
    while block != 0 {
      let size = load(block)
      let next = load(block + 8)
      // The payload address: aligned, and leaving either nothing or a usable free block in front.
      var payload = (block + headerSize + align - 1) & ~(align - 1)
      while payload - headerSize != block && payload - headerSize - block < smallestBlock { payload += align }
      let header = payload - headerSize
      let front = header - block
      if front + wanted <= size {
        var taken = wanted
        let tail = size - front - wanted
        var successor = next
        if tail >= smallestBlock {
          store(header + taken, tail)
          store(header + taken + 8, successor)
          successor = header + taken
        } else {
          taken += tail
        }
        if front != 0 {
          store(block, front)  // the front part stays where it is in the list
          store(block + 8, successor)
        } else {
          link(previous, to: successor)
        }
        store(header, taken)
        store(header + 8, allocatedTag)
        heapBytesInUse += Int(taken)
        if heapBytesInUse > heapPeakBytesInUse { heapPeakBytesInUse = heapBytesInUse }
        return UnsafeMutableRawPointer(bitPattern: UInt(payload))
      }
      previous = block
      block = next
    }
    return nil
  }

  /// Returns a block to the free list, merging it with adjacent free blocks. Traps on a pointer
  /// that `allocate` did not return or that was already released.
  static func release(_ pointer: UnsafeMutableRawPointer) {
    let header = UInt64(UInt(bitPattern: pointer)) - headerSize
    guard header >= ks_kernel_heap(), header < ks_kernel_heap_end(), load(header + 8) == allocatedTag else {
      Console.write("kernel heap: free of a pointer it did not allocate: ")
      Console.write(hex: header + headerSize)
      Console.write("\n")
      fatalError("kernel heap corrupted")
    }
    var size = load(header)
    heapBytesInUse -= Int(size)
    var previous: UInt64 = 0
    var next = heapFreeHead
    while next != 0 && next < header {
      previous = next
      next = load(next + 8)
    }
    if next != 0 && header + size == next {  // merge with the following block
      size += load(next)
      next = load(next + 8)
    }
    if previous != 0 && previous + load(previous) == header {  // merge into the preceding block
      store(previous, load(previous) + size)
      store(previous + 8, next)
    } else {
      store(header, size)
      store(header + 8, next)
      link(previous, to: header)
    }
  }

  /// Bytes allocated now and at most, headers included.
  static var bytesInUse: Int { heapBytesInUse }
  static var peakBytesInUse: Int { heapPeakBytesInUse }
  /// The arena's size in bytes.
  static var capacity: Int { Int(ks_kernel_heap_end() - ks_kernel_heap()) }

  private static func initializeIfNeeded() {
    guard !heapInitialized else { return }
    heapInitialized = true
    let start = ks_kernel_heap()
    store(start, ks_kernel_heap_end() - start)
    store(start + 8, 0)
    heapFreeHead = start
  }

  private static func link(_ previous: UInt64, to block: UInt64) {
    if previous == 0 { heapFreeHead = block } else { store(previous + 8, block) }
  }

  private static func load(_ address: UInt64) -> UInt64 {
    UnsafeRawPointer(bitPattern: UInt(address)).unsafelyUnwrapped.load(as: UInt64.self)
  }

  private static func store(_ address: UInt64, _ value: UInt64) {
    UnsafeMutableRawPointer(bitPattern: UInt(address)).unsafelyUnwrapped.storeBytes(of: value, as: UInt64.self)
  }
}

// File-scope state with constant initial values: statically initialised, no lazy-init runtime
// call (the allocator must not depend on anything that might allocate).
nonisolated(unsafe) private var heapInitialized = false
nonisolated(unsafe) private var heapFreeHead: UInt64 = 0
nonisolated(unsafe) private var heapBytesInUse = 0
nonisolated(unsafe) private var heapPeakBytesInUse = 0
