import Pmap
import Synchronization

/// A set of simulated CPUs wired to pmaps as their invalidation sink: every report a pmap makes
/// reaches every CPU (as a kernel's shootdown IPIs every CPU that may cache the address space),
/// then the optional forward sink (e.g. a `RecordingInvalidationSink`).
///
/// For negative tests, ``dropNextReports(_:)`` makes the group lose reports, so a test can check
/// that the CPUs' checking mode catches the stale translations that follow.
public final class CPUGroup: InvalidationSink, @unchecked Sendable {
  // @unchecked: `forward` is whatever sink the caller gives; it must be thread-safe if the group
  // is used from several threads (the CPUs and counters are).
  /// The CPUs, numbered by their position.
  public let cpus: [SimulatedCPU]
  /// Where reports go after the CPUs have handled them.
  public let forward: (any InvalidationSink)?
  private let dropping = Atomic<Int>(0)
  private let dropped = Atomic<Int>(0)

  /// Wires existing CPUs.
  public init(cpus: [SimulatedCPU], forwardingTo forward: (any InvalidationSink)? = nil) {
    self.cpus = cpus
    self.forward = forward
  }

  /// Creates `count` CPUs over `memory`, numbered from 0.
  public convenience init(
    count: Int, memory: PhysicalMemory, control: PagingControl = PagingControl(),
    eptCapabilities: EPTCapabilities = EPTCapabilities(), checksStaleTranslations: Bool = true,
    forwardingTo forward: (any InvalidationSink)? = nil
  ) {
    self.init(
      cpus: (0..<count).map {
        SimulatedCPU(
          id: $0, memory: memory, control: control, eptCapabilities: eptCapabilities,
          checksStaleTranslations: checksStaleTranslations)
      }, forwardingTo: forward)
  }

  /// Makes the next `count` reports vanish before reaching any CPU or the forward sink.
  public func dropNextReports(_ count: Int) { dropping.store(count, ordering: .sequentiallyConsistent) }

  /// Reports dropped so far.
  public var droppedReports: Int { dropped.load(ordering: .sequentiallyConsistent) }

  /// Every CPU's stale-translation reports, taken (and forgotten).
  public func takeStaleTranslations() -> [StaleTranslation] { cpus.flatMap { $0.takeStaleTranslations() } }

  private func shouldDrop() -> Bool {
    while true {
      let n = dropping.load(ordering: .sequentiallyConsistent)
      if n == 0 { return false }
      if dropping.compareExchange(expected: n, desired: n - 1, ordering: .sequentiallyConsistent).exchanged {
        dropped.add(1, ordering: .sequentiallyConsistent)
        return true
      }
    }
  }

  /// Delivers the report to every CPU (``SimulatedCPU/invalidate(pages:root:)``), then to
  /// ``forward``: what NetBSD's `pmap_tlb_shootnow` does with its IPIs.
  public func invalidate(pages: UnsafeBufferPointer<VirtualAddress>, root: PhysicalAddress) {
    if shouldDrop() { return }
    for cpu in cpus { cpu.invalidate(pages: pages, root: root) }
    forward?.invalidate(pages: pages, root: root)
  }

  /// Delivers a whole-address-space report to every CPU, then to ``forward``.
  public func invalidateAll(root: PhysicalAddress) {
    if shouldDrop() { return }
    for cpu in cpus { cpu.invalidateAll(root: root) }
    forward?.invalidateAll(root: root)
  }

  /// Delivers a page operation's batched requests (one report, one drop) to every CPU, then to
  /// ``forward``.
  public func invalidate(_ requests: InvalidationRequests) {
    if shouldDrop() { return }
    for cpu in cpus {
      for r in requests {
        withUnsafePointer(to: r.page) { cpu.invalidate(pages: UnsafeBufferPointer(start: $0, count: 1), root: r.root) }
      }
    }
    forward?.invalidate(requests)
  }
}
