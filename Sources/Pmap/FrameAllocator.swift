/// Where page-table pages come from: the hardware seam, part two (NetBSD allocates them with
/// `uvm_pagealloc` from the pmap's object).
///
/// The pmap zeroes what it receives, unless the allocator says the frame is zero already
/// (``allocatePageTableFrame()``: FreeBSD's `PG_ZERO`). Frames must lie inside the pmap's
/// ``PhysicalMemory``. Implementations must be thread-safe when pmaps are used from several
/// CPUs: the pmaps and the page database call them with their own locks held (lock order:
/// pmap -> page -> pool -> allocator), so an implementation must not call back into a pmap.
public protocol FrameAllocator: AnyObject {
  /// Returns a free 4 KiB frame, or `nil` when none is left.
  func allocateFrame() -> PhysicalAddress?
  /// Takes back a frame that ``allocateFrame()`` or ``allocatePageTableFrame()`` returned.
  func releaseFrame(_ frame: PhysicalAddress)
  /// Returns a free frame for a page-table page, and whether all its 4096 bytes are known to be
  /// zero, so that the pmap need not zero it: a frame given back with
  /// ``releaseZeroedFrame(_:)`` and not written since. `nil` when none is left. The default:
  /// ``allocateFrame()``, never known to be zero.
  func allocatePageTableFrame() -> (frame: PhysicalAddress, isZeroed: Bool)?
  /// Takes back a frame whose 4096 bytes are all zero: a page-table page freed when it held no
  /// entry any more (the pmap clears every entry it removes). The default: ``releaseFrame(_:)``.
  func releaseZeroedFrame(_ frame: PhysicalAddress)
}

extension FrameAllocator {
  /// ``allocateFrame()``: an allocator that does not keep track of zeroed frames.
  public func allocatePageTableFrame() -> (frame: PhysicalAddress, isZeroed: Bool)? {
    allocateFrame().map { ($0, false) }
  }

  /// ``releaseFrame(_:)``: an allocator that does not keep track of zeroed frames.
  public func releaseZeroedFrame(_ frame: PhysicalAddress) { releaseFrame(frame) }
}

/// A frame allocator over one physical range: a bump pointer, then LIFO free lists threaded
/// through the free frames themselves (via the direct map), so it needs no memory of its own.
/// Frames given back zeroed (``releaseZeroedFrame(_:)``: page-table pages a pmap emptied) are
/// kept apart, and go to page tables first (``allocatePageTableFrame()``) with their link word
/// cleared: the pmap then need not zero them (FreeBSD's `PG_ZERO`).
///
/// The link word of a free frame is read and written with relaxed atomics: a lock-free walk
/// (``Pmap/extract(_:)``) may still be reading a page-table page that was freed.
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
  @usableFromInline var zeroedHead: UInt64 = 0  // the same, of the frames given back zeroed
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
    return Int((end - next) >> 12) + length(of: freeHead) + length(of: zeroedHead)
  }

  /// How many frames free list `head` (0: empty) holds. With the lock held.
  func length(of head: UInt64) -> Int {
    var n = 0
    var p = head
    while p != 0 {
      n += 1
      p = link(of: p - 1)
    }
    return n
  }

  /// The link word of free frame `frame`.
  func link(of frame: UInt64) -> UInt64 { memory.entry(in: PhysicalAddress(unchecked: frame), at: 0).load() }

  /// Sets the link word of free frame `frame`.
  func setLink(of frame: UInt64, to value: UInt64) {
    memory.entry(in: PhysicalAddress(unchecked: frame), at: 0).storeRelaxed(value)
  }

  /// Pops the top of free list `head` (0: empty), or returns `nil`. With the lock held.
  func pop(_ head: inout UInt64) -> UInt64? {
    guard head != 0 else { return nil }
    let frame = head - 1
    head = link(of: frame)
    return frame
  }

  /// Returns the frame most recently given back with ``releaseFrame(_:)``, else the next
  /// never-used one, else the most recently given back zeroed (kept for page tables as long as
  /// there is another), or `nil` when the range is exhausted.
  ///
  /// - Complexity: O(1).
  public func allocateFrame() -> PhysicalAddress? {
    lock.lock()
    defer { lock.unlock() }
    guard let frame = pop(&freeHead) ?? bump() ?? pop(&zeroedHead) else { return nil }
    return handOut(frame)
  }

  /// A zeroed frame if one was given back (its link word cleared: all zero again), else as
  /// ``allocateFrame()``.
  ///
  /// - Complexity: O(1).
  public func allocatePageTableFrame() -> (frame: PhysicalAddress, isZeroed: Bool)? {
    lock.lock()
    defer { lock.unlock() }
    if let frame = pop(&zeroedHead) {
      setLink(of: frame, to: 0)
      return (handOut(frame), true)
    }
    guard let frame = pop(&freeHead) ?? bump() else { return nil }
    return (handOut(frame), false)
  }

  /// The next never-used frame, or `nil`. With the lock held.
  func bump() -> UInt64? {
    guard next < end else { return nil }
    defer { next += 4096 }
    return next
  }

  /// Counts `frame` as in use. With the lock held.
  func handOut(_ frame: UInt64) -> PhysicalAddress {
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
    push(frame, on: &freeHead)
  }

  /// Pushes `frame`, whose 4096 bytes are all zero, on the list of zeroed frames, which
  /// ``allocatePageTableFrame()`` hands out first.
  ///
  /// - Precondition: as ``releaseFrame(_:)``; (unchecked) the frame is all zero.
  /// - Complexity: O(1).
  public func releaseZeroedFrame(_ frame: PhysicalAddress) {
    push(frame, on: &zeroedHead)
  }

  func push(_ frame: PhysicalAddress, on head: inout UInt64) {
    precondition(frame.isPageAligned && frame.rawValue < end, "StackFrameAllocator: foreign frame")
    lock.lock()
    defer { lock.unlock() }
    setLink(of: frame.rawValue, to: head)
    head = frame.rawValue + 1
    framesInUse -= 1
  }
}
