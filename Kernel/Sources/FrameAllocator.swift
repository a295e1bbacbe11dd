import Pmap

/// The kernel's physical page allocator (NetBSD's `uvm_pagealloc` in miniature), over the RAM the
/// multiboot memory map reports, minus what the kernel must keep: the first MiB (BIOS data, the
/// multiboot information) and the kernel image. Every frame the library needs (page-table pages,
/// pv-pool pages) and every frame the fault handler maps comes from here.
///
/// Untouched frames are handed out from each range in turn; released frames go on a LIFO list
/// threaded through the frames themselves, reached through the direct map, so the allocator
/// needs no memory of its own. O(1) allocate and release. Not locked: the kernel is single-CPU
/// (a multiprocessor kernel takes a spinlock here; it is last in the lock order: object ->
/// pmap -> pv-list -> frame allocator).
final class KernelFrameAllocator: FrameAllocator {
  let memory: PhysicalMemory
  private var ranges: [PhysicalRange]
  private var rangeIndex = 0
  private var next: UInt64
  private var freeHead: UInt64 = 0  // physical address + 1 of the top released frame; 0 = none
  /// Frames handed out and not yet released, and the most at once.
  private(set) var framesInUse = 0
  private(set) var peakFramesInUse = 0
  /// Frames this allocator manages.
  let frameCount: Int

  /// - Precondition: `ranges` are 4 KiB aligned, non-empty, sorted and inside `memory`.
  init(memory: PhysicalMemory, ranges: [PhysicalRange]) {
    precondition(!ranges.isEmpty, "KernelFrameAllocator: no memory")
    self.memory = memory
    self.ranges = ranges
    self.next = ranges[0].start
    var frames = 0
    for range in ranges {
      precondition(range.start & 0xfff == 0 && range.end & 0xfff == 0 && range.start < range.end)
      precondition(range.end <= memory.size, "KernelFrameAllocator: range beyond the direct map")
      frames += Int(range.byteCount >> 12)
    }
    frameCount = frames
  }

  func allocateFrame() -> PhysicalAddress? {
    let frame: UInt64
    if freeHead != 0 {
      frame = freeHead - 1
      freeHead = memory.pointer(to: PhysicalAddress(frame)).load(as: UInt64.self)
    } else {
      while next == ranges[rangeIndex].end {
        guard rangeIndex + 1 < ranges.count else { return nil }
        rangeIndex += 1
        next = ranges[rangeIndex].start
      }
      frame = next
      next += 4096
    }
    framesInUse += 1
    if framesInUse > peakFramesInUse { peakFramesInUse = framesInUse }
    return PhysicalAddress(frame)
  }

  func releaseFrame(_ frame: PhysicalAddress) {
    precondition(frame.isPageAligned && owns(frame.rawValue), "KernelFrameAllocator: foreign frame")
    memory.pointer(to: frame).storeBytes(of: freeHead, as: UInt64.self)
    freeHead = frame.rawValue + 1
    framesInUse -= 1
  }

  private func owns(_ address: UInt64) -> Bool {
    for range in ranges where address >= range.start && address < range.end { return true }
    return false
  }
}
