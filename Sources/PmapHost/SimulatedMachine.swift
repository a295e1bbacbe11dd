import Pmap
import PmapEPT
import PmapNative

/// Everything a test needs to build pmaps over simulated physical memory, in one object: RAM,
/// a frame allocator for page-table pages (frames `1 ..< pageTableFrames + 1`; frame 0 is never
/// handed out), and an invalidation sink that records reports. Data frames for mappings are
/// the ones above the page-table area (see ``dataFrame(_:)``).
///
/// ```swift
/// let machine = SimulatedMachine()
/// let host = try machine.makeNativePmap()
/// let guest = try machine.makeEPTPmap()
/// ```
public final class SimulatedMachine {
  /// The simulated RAM.
  public let ram: SimulatedRAM
  /// The allocator of page-table pages.
  public let allocator: TestFrameAllocator
  /// The sink every pmap made here reports to.
  public let sink: RecordingInvalidationSink
  /// The first physical address above the page-table area.
  public let dataBase: PhysicalAddress
  /// The managed pages: every data frame (from ``dataBase`` to the end of RAM).
  public let pages: PageDatabase

  /// Creates a machine with `ramSize` bytes of RAM, of which `pageTableFrames` frames serve as
  /// page-table pages.
  public init(ramSize: UInt64 = 64 << 20, pageTableFrames: Int = 4096, recordsInvalidations: Bool = true) {
    precondition(UInt64(pageTableFrames + 1) << 12 < ramSize, "SimulatedMachine: page-table area exceeds RAM")
    ram = SimulatedRAM(size: ramSize)
    let end = PhysicalAddress(UInt64(pageTableFrames + 1) << 12)
    allocator = TestFrameAllocator(memory: ram.memory, frames: PhysicalAddress(4096), to: end, backing: ram)
    sink = RecordingInvalidationSink(records: recordsInvalidations)
    dataBase = end
    pages = PageDatabase(
      memory: ram.memory, base: end, pageCount: Int((ramSize - end.rawValue) >> 12), allocator: allocator)
  }

  /// The physical memory seam.
  public var memory: PhysicalMemory { ram.memory }

  /// The `n`-th data frame (above the page-table area).
  public func dataFrame(_ n: Int) -> PhysicalAddress {
    PhysicalAddress(dataBase.rawValue + UInt64(n) << 12)
  }

  /// A new native pmap whose mappings of data frames are tracked in ``pages``.
  public func makeNativePmap(kind: AddressSpaceKind = .user) throws(PmapCreationError) -> NativePmap {
    try NativePmap(memory: memory, allocator: allocator, invalidation: sink, pages: pages, kind: kind)
  }

  /// A new EPT pmap, with or without hardware A/D bits, whose mappings of data frames are
  /// tracked in ``pages``.
  public func makeEPTPmap(accessedDirty: Bool = true) throws(PmapCreationError) -> EPTPmap {
    try EPTPmap(
      memory: memory, allocator: allocator, invalidation: sink, pages: pages,
      hardwareManagesAccessedDirty: accessedDirty)
  }

  /// A new pmap of format `Ops` (tracked in ``pages``), for tests generic over the format.
  public func makePmap<Ops: PTEOps>(_: Ops.Type, accessedDirty: Bool = true) throws(PmapCreationError) -> Pmap<Ops> {
    try Pmap<Ops>(
      memory: memory, allocator: allocator, invalidation: sink, pages: pages,
      hardwareManagesAccessedDirty: accessedDirty)
  }
}
