import Pmap

/// A frame allocator for tests and tools: a ``StackFrameAllocator`` that can be told to fail at
/// the k-th allocation (or at every one from then on), and counts what it did. Thread-safe.
public final class TestFrameAllocator: FrameAllocator, Sendable {
  private struct Plan {
    var allocationCalls = 0
    var failures = 0
    var failAtCall: Int?
    var keepFailing = false
  }
  private let plan = HostMutex(Plan())
  private let frames: StackFrameAllocator
  /// Allocation calls so far (successful or not).
  public var allocationCalls: Int { plan.withLock { $0.allocationCalls } }
  /// Allocations refused so far.
  public var failures: Int { plan.withLock { $0.failures } }
  /// When set, the allocation call with this 1-based number fails.
  public var failAtCall: Int? {
    get { plan.withLock { $0.failAtCall } }
    set { plan.withLock { $0.failAtCall = newValue } }
  }
  /// When true, every call from ``failAtCall`` on fails, not only that one.
  public var keepFailing: Bool {
    get { plan.withLock { $0.keepFailing } }
    set { plan.withLock { $0.keepFailing = newValue } }
  }

  /// Keeps the RAM alive while frames may still be released into it. Never read, so sharing it
  /// across threads is safe (`nonisolated(unsafe)`: `AnyObject` is not `Sendable`).
  private nonisolated(unsafe) let backing: AnyObject?

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
    refusesThisCall() ? nil : frames.allocateFrame()
  }

  /// As ``allocateFrame()`` (one allocation call, refused the same way), with the zeroed
  /// frames of the underlying ``StackFrameAllocator``.
  public func allocatePageTableFrame() -> (frame: PhysicalAddress, isZeroed: Bool)? {
    refusesThisCall() ? nil : frames.allocatePageTableFrame()
  }

  public func releaseFrame(_ frame: PhysicalAddress) { frames.releaseFrame(frame) }

  public func releaseZeroedFrame(_ frame: PhysicalAddress) { frames.releaseZeroedFrame(frame) }

  /// Counts an allocation call; whether the plan refuses it.
  private func refusesThisCall() -> Bool {
    plan.withLock { plan in
      plan.allocationCalls += 1
      guard let k = plan.failAtCall, plan.allocationCalls == k || (plan.keepFailing && plan.allocationCalls >= k)
      else { return false }
      plan.failures += 1
      return true
    }
  }
}

/// An invalidation sink that records what it was told, per address space. Thread-safe.
public final class RecordingInvalidationSink: InvalidationSink, Sendable {
  /// One report.
  public enum Event: Equatable, Sendable {
    case pages(root: PhysicalAddress, [VirtualAddress])
    case all(root: PhysicalAddress)
  }
  private struct Log {
    var events: [Event] = []
    var records: Bool
    var callCount = 0
  }
  private let log: HostMutex<Log>
  /// Every report, in order.
  public var events: [Event] { log.withLock { $0.events } }
  /// Whether to keep events (a benchmark only counts).
  public var records: Bool {
    get { log.withLock { $0.records } }
    set { log.withLock { $0.records = newValue } }
  }
  /// Reports received.
  public var callCount: Int { log.withLock { $0.callCount } }

  public init(records: Bool = true) { log = HostMutex(Log(records: records)) }

  public func invalidate(pages: UnsafeBufferPointer<VirtualAddress>, root: PhysicalAddress) {
    log.withLock { log in
      log.callCount += 1
      if log.records { log.events.append(.pages(root: root, Array(pages))) }
    }
  }

  public func invalidateAll(root: PhysicalAddress) {
    log.withLock { log in
      log.callCount += 1
      if log.records { log.events.append(.all(root: root)) }
    }
  }

  /// Whether `va` of the space rooted at `root` was covered by a report since the last reset.
  public func covered(_ va: VirtualAddress, root: PhysicalAddress) -> Bool {
    events.contains { event in
      switch event {
      case .all(let r): r == root
      case .pages(let r, let vas): r == root && vas.contains(va.alignedDown())
      }
    }
  }

  /// Forgets the recorded events.
  public func reset() {
    log.withLock { log in
      log.events.removeAll()
      log.callCount = 0
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
  public func invalidate(_ requests: InvalidationRequests) { counters[0] &+= requests.count }
}
