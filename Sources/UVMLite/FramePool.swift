import Pmap

/// The host's data frames: every frame of a ``/Pmap/PageDatabase``'s managed range, shared by all
/// guests and the host itself (NetBSD's `uvm.page_free` lists plus the `vm_page` array and the
/// paging queues of `uvmpdpol_clock`).
///
/// Each frame is on exactly one list: free (LIFO, so a frame freed last is reused first, still
/// warm in cache), active, inactive, wired or host. Counts are kept per list. The pagedaemon runs
/// when the free count falls below ``lowWatermark`` and frees frames until it reaches
/// ``highWatermark`` (NetBSD's `uvmexp.freemin` / `freetarg`).
///
/// Thread safety: none yet; the ``UVM`` that owns the pool serialises (the pool is last in the
/// lock order object -> pmap -> pv -> allocator).
public final class FramePool: FrameAllocator {
  /// The managed pages (the pool's frames are exactly its range).
  public let pages: PageDatabase
  /// The number of frames.
  public let frameCount: Int
  /// Below this many free frames a fault runs the pagedaemon first (`freemin`).
  public let lowWatermark: Int
  /// The pagedaemon frees frames until this many are free (`freetarg`).
  public let highWatermark: Int
  @usableFromInline let records: UnsafeMutablePointer<FrameRecord>
  @usableFromInline let queues: UnsafeMutablePointer<QueueHead>  // active, inactive
  /// Per ``PageQueue``, then the free list's head (record index or -1), then allocation failures.
  /// Out of line, like a pmap's counters, so hot paths pay no exclusivity checks.
  @usableFromInline let counts: UnsafeMutablePointer<Int>
  @inlinable var freeHead: Int32 {
    get { Int32(truncatingIfNeeded: counts[5]) }
    set { counts[5] = Int(newValue) }
  }
  /// Allocation requests refused because no frame was free.
  public var allocationFailures: Int { counts[6] }

  /// Creates the pool over every frame of `pages`.
  ///
  /// - Parameters:
  ///   - pages: the managed pages; the pool owns every frame of their range.
  ///   - lowWatermark: default `max(4, frames / 32)`.
  ///   - highWatermark: default `max(low + 4, frames / 16)`.
  /// - Precondition: `0 < low < high <= frames` (configuration, not guest input).
  public init(pages: PageDatabase, lowWatermark: Int? = nil, highWatermark: Int? = nil) {
    let n = pages.pageCount
    let low = lowWatermark ?? max(4, n / 32)
    let high = highWatermark ?? max(low + 4, n / 16)
    precondition(0 < low && low < high && high <= n, "FramePool: need 0 < low < high <= frames")
    precondition(n < Int(Int32.max), "FramePool: too many frames")
    self.pages = pages
    self.frameCount = n
    self.lowWatermark = low
    self.highWatermark = high
    records = .allocate(capacity: n)
    records.initialize(repeating: FrameRecord(), count: n)
    queues = .allocate(capacity: 2)
    queues.initialize(repeating: QueueHead(), count: 2)
    counts = .allocate(capacity: 7)
    counts.initialize(repeating: 0, count: 7)
    counts[5] = -1
    // Free list in address order: frame 0 on top.
    var i = n - 1
    while i >= 0 {
      records[i].next = freeHead
      freeHead = Int32(i)
      i -= 1
    }
    counts[Int(PageQueue.free.rawValue)] = n
  }

  deinit {
    records.deallocate()
    queues.deallocate()
    counts.deallocate()
  }

  /// Frames on `queue`.
  @inlinable public func count(_ queue: PageQueue) -> Int { counts[Int(queue.rawValue)] }
  /// Free frames.
  @inlinable public var freeCount: Int { counts[Int(PageQueue.free.rawValue)] }
  /// Whether the free count is below the low watermark: the pagedaemon should run.
  @inlinable public var isShort: Bool { freeCount < lowWatermark }

  /// The frame of record `index`.
  @inlinable @inline(__always)
  public func frame(_ index: Int) -> PhysicalAddress {
    PhysicalAddress(truncating: pages.base.rawValue &+ UInt64(truncatingIfNeeded: index) &<< 12)
  }

  /// The record index of `frame`, or `nil` when the frame is not the pool's.
  @inlinable
  public func index(of frame: PhysicalAddress) -> Int? {
    guard pages.manages(frame) else { return nil }
    return Int(truncatingIfNeeded: (frame.rawValue &- pages.base.rawValue) >> 12)
  }

  /// The queue frame `index` is on.
  @inlinable public func queue(of index: Int) -> PageQueue { records[index].queue }

  // MARK: Free list

  /// Takes a free frame, its cached attributes cleared (a new owner must not inherit the last
  /// one's referenced / modified facts); `nil` when none is free. O(1).
  @inlinable
  func takeFree() -> Int? {
    guard freeHead >= 0 else {
      counts[6] &+= 1
      return nil
    }
    let i = Int(freeHead)
    freeHead = records[i].next
    records[i].next = -1
    counts[Int(PageQueue.free.rawValue)] &-= 1
    _ = pages.clearAttributes([.referenced, .modified], of: frame(i))
    return i
  }

  /// Puts frame `index`, on no queue and unmapped, back on the free list. O(1).
  @inlinable
  func putFree(_ i: Int) {
    records[i] = FrameRecord()
    records[i].next = freeHead
    freeHead = Int32(i)
    counts[Int(PageQueue.free.rawValue)] &+= 1
  }

  // MARK: FrameAllocator: frames for the host itself

  /// Takes a free frame for the host's own use (page-table pages, pv-pool frames, buffers): it is
  /// on the ``PageQueue/host`` list and never paged. Does not run the pagedaemon; `nil` when no
  /// frame is free. NetBSD's `uvm_pagealloc` for a kernel object.
  public func allocateFrame() -> PhysicalAddress? {
    guard let i = takeFree() else { return nil }
    records[i].queue = .host
    counts[Int(PageQueue.host.rawValue)] &+= 1
    return frame(i)
  }

  /// Returns a frame taken with ``allocateFrame()``.
  ///
  /// - Precondition: the frame is the pool's and on the host list (misuse traps).
  public func releaseFrame(_ frame: PhysicalAddress) {
    guard let i = index(of: frame), records[i].queue == .host else {
      preconditionFailure("FramePool: releasing a frame the host does not hold")
    }
    counts[Int(PageQueue.host.rawValue)] &-= 1
    putFree(i)
  }
}
