/// Where page-table pages come from: the hardware seam, part two (NetBSD allocates them with
/// `uvm_pagealloc` from the pmap's object).
///
/// The pmap zeroes what it receives. Frames must lie inside the pmap's ``PhysicalMemory``.
/// Implementations must be thread-safe when pmaps are used from several CPUs: the pmaps and the
/// page database call them with their own locks held (lock order: pmap -> page -> pool ->
/// allocator), so an implementation must not call back into a pmap.
public protocol FrameAllocator: AnyObject {
  /// Returns a free 4 KiB frame, or `nil` when none is left.
  func allocateFrame() -> PhysicalAddress?
  /// Takes back a frame that ``allocateFrame()`` returned.
  func releaseFrame(_ frame: PhysicalAddress)
}

/// A frame allocator over one physical range: a bump pointer, then a LIFO free list threaded
/// through the free frames themselves (via the direct map), so it needs no memory of its own.
///
/// Suitable for a small kernel's page-table pages and for tests. O(1) allocate and release.
/// Thread-safe: a spin lock guards it (the last lock in the order).
public final class StackFrameAllocator: FrameAllocator, @unchecked Sendable {
  // @unchecked: the mutable properties are only touched with `lock` held.
  @usableFromInline let lockLine = LockLines(count: 1)
  @usableFromInline var lock: SpinLock { lockLine.lock(0) }
  @usableFromInline let memory: PhysicalMemory
  @usableFromInline var next: UInt64
  @usableFromInline let end: UInt64
  @usableFromInline var freeHead: UInt64 = 0  // physical address + 1 of the top free frame; 0 = empty
  /// Frames handed out and not yet released.
  public private(set) var framesInUse = 0
  /// The most frames ever in use at once.
  public private(set) var peakFramesInUse = 0

  /// Creates an allocator handing out the frames of `start ..< end`.
  ///
  /// - Precondition: the range is 4 KiB aligned, non-empty and covered by `memory`.
  public init(memory: PhysicalMemory, frames start: PhysicalAddress, to end: PhysicalAddress) {
    precondition(start.isPageAligned && end.isPageAligned && start < end, "StackFrameAllocator: bad range")
    precondition(end.rawValue <= memory.size, "StackFrameAllocator: range beyond the direct map")
    self.memory = memory
    self.next = start.rawValue
    self.end = end.rawValue
  }

  deinit { lockLine.deallocate() }

  /// Frames still available.
  public var framesAvailable: Int {
    lock.lock()
    defer { lock.unlock() }
    var n = Int((end - next) >> 12)
    var p = freeHead
    while p != 0 {
      n += 1
      p = memory.pointer(to: PhysicalAddress(unchecked: p - 1)).load(as: UInt64.self)
    }
    return n
  }

  /// Returns the most recently released frame, else the next never-used one, or `nil` when the
  /// range is exhausted.
  ///
  /// - Complexity: O(1).
  public func allocateFrame() -> PhysicalAddress? {
    lock.lock()
    defer { lock.unlock() }
    let frame: UInt64
    if freeHead != 0 {
      frame = freeHead - 1
      freeHead = memory.pointer(to: PhysicalAddress(unchecked: frame)).load(as: UInt64.self)
    } else if next < end {
      frame = next
      next += 4096
    } else {
      return nil
    }
    framesInUse += 1
    if framesInUse > peakFramesInUse { peakFramesInUse = framesInUse }
    return PhysicalAddress(unchecked: frame)
  }

  /// Pushes `frame` on the free list (threaded through the frame itself).
  ///
  /// - Precondition: `frame` is 4 KiB aligned, below the end of the range, and was handed out by
  ///   this allocator.
  /// - Complexity: O(1).
  public func releaseFrame(_ frame: PhysicalAddress) {
    precondition(frame.isPageAligned && frame.rawValue < end, "StackFrameAllocator: foreign frame")
    lock.lock()
    defer { lock.unlock() }
    memory.pointer(to: frame).storeBytes(of: freeHead, as: UInt64.self)
    freeHead = frame.rawValue + 1
    framesInUse -= 1
  }
}
