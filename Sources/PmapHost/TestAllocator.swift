import Pmap
import Synchronization

/// A frame allocator for tests and tools: a ``StackFrameAllocator`` that can be told to fail at
/// the k-th allocation (or at every one from then on), and counts what it did. Thread-safe.
public final class TestFrameAllocator: FrameAllocator, @unchecked Sendable {
  // @unchecked: every mutable property is read and written with `mutex` held.
  private let mutex = Mutex(())
  private let frames: StackFrameAllocator
  /// Allocation calls so far (successful or not).
  public private(set) var allocationCalls = 0
  /// Allocations refused so far.
  public private(set) var failures = 0
  /// When set, the allocation call with this 1-based number fails.
  public var failAtCall: Int?
  /// When true, every call from ``failAtCall`` on fails, not only that one.
  public var keepFailing = false

  /// Keeps the RAM alive while frames may still be released into it.
  private let backing: AnyObject?

  /// Creates an allocator over `start ..< end` of `memory`. Pass the object that owns the
  /// memory (a ``SimulatedRAM``) as `backing`: releasing a frame writes to it, and a
  /// ``PageDatabase`` that holds this allocator releases its pool frames when it goes away.
  public init(memory: PhysicalMemory, frames start: PhysicalAddress, to end: PhysicalAddress, backing: AnyObject? = nil)
  {
    frames = StackFrameAllocator(memory: memory, frames: start, to: end)
    self.backing = backing
  }

  /// Frames handed out and not released.
  public var framesInUse: Int { frames.framesInUse }
  /// The most frames in use at once.
  public var peakFramesInUse: Int { frames.peakFramesInUse }

  public func allocateFrame() -> PhysicalAddress? {
    mutex.withLock { _ in
      allocationCalls += 1
      if let k = failAtCall, allocationCalls == k || (keepFailing && allocationCalls >= k) {
        failures += 1
        return nil
      }
      return frames.allocateFrame()
    }
  }

  public func releaseFrame(_ frame: PhysicalAddress) { mutex.withLock { _ in frames.releaseFrame(frame) } }
}

/// An invalidation sink that records what it was told, per address space. Thread-safe.
public final class RecordingInvalidationSink: InvalidationSink, @unchecked Sendable {
  // @unchecked: every mutable property is read and written with `mutex` held.
  private let mutex = Mutex(())
  /// One report.
  public enum Event: Equatable, Sendable {
    case pages(root: PhysicalAddress, [VirtualAddress])
    case all(root: PhysicalAddress)
  }
  /// Every report, in order.
  public private(set) var events: [Event] = []
  /// Whether to keep events (a benchmark only counts).
  public var records: Bool
  /// Reports received.
  public private(set) var callCount = 0

  public init(records: Bool = true) { self.records = records }

  public func invalidate(pages: UnsafeBufferPointer<VirtualAddress>, root: PhysicalAddress) {
    mutex.withLock { _ in
      callCount += 1
      if records { events.append(.pages(root: root, Array(pages))) }
    }
  }

  public func invalidateAll(root: PhysicalAddress) {
    mutex.withLock { _ in
      callCount += 1
      if records { events.append(.all(root: root)) }
    }
  }

  /// Whether `va` of the space rooted at `root` was covered by a report since the last reset.
  public func covered(_ va: VirtualAddress, root: PhysicalAddress) -> Bool {
    mutex.withLock { _ in events }.contains { event in
      switch event {
      case .all(let r): r == root
      case .pages(let r, let vas): r == root && vas.contains(va.alignedDown())
      }
    }
  }

  /// Forgets the recorded events.
  public func reset() {
    mutex.withLock { _ in
      events.removeAll()
      callCount = 0
    }
  }
}

/// The cheapest honest invalidation sink, for benchmarks: it counts what it is told (in memory
/// it owns, so the count costs no exclusivity check), as a kernel's sink would cost one INVLPG
/// or one IPI batch per call. Not thread-safe: for single-threaded benchmarks.
public final class CountingInvalidationSink: InvalidationSink {
  private let counters = UnsafeMutablePointer<Int>.allocate(capacity: 2)
  public init() { counters.initialize(repeating: 0, count: 2) }
  deinit { counters.deallocate() }
  /// Pages reported.
  public var pagesInvalidated: Int { counters[0] }
  /// Full invalidations reported.
  public var fullInvalidations: Int { counters[1] }
  public func invalidate(pages: UnsafeBufferPointer<VirtualAddress>, root: PhysicalAddress) {
    counters[0] &+= pages.count
  }
  public func invalidateAll(root: PhysicalAddress) { counters[1] &+= 1 }
  public func invalidate(_ requests: UnsafeBufferPointer<InvalidationRequest>) { counters[0] &+= requests.count }
}
