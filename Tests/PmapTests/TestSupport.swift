import Pmap
import PmapEPT
import PmapHost
import PmapNative
import Testing

/// The two entry formats, as test arguments.
enum Format: String, CaseIterable, Sendable, CustomTestStringConvertible {
  case native
  case ept

  var testDescription: String { rawValue }

  /// The format's entry type, to open in a generic helper: `try check(format.ops)`.
  var ops: any SimulatedFormat.Type {
    switch self {
    case .native: NativePTE.self
    case .ept: EPTPTE.self
    }
  }
}

/// A format that can make a pmap on a ``SimulatedMachine``.
protocol SimulatedFormat: PTEOps {
  static var format: Format { get }
}

extension SimulatedFormat {
  /// A fresh pmap of this format on `machine`, like `machine.makeNativePmap()` /
  /// `machine.makeEPTPmap()` (a user pmap; hardware A/D for EPT), except that the pmap keeps the
  /// machine alive: a pmap's deinit walks its tables, so the simulated RAM must outlive it.
  static func makePmap(
    on machine: SimulatedMachine, kind: AddressSpaceKind = .user, accessedDirty: Bool = true
  ) throws -> Pmap<Self> {
    try Pmap<Self>(
      memory: machine.memory, allocator: KeepAliveAllocator(machine.allocator, owner: machine),
      invalidation: machine.sink, kind: kind, hardwareManagesAccessedDirty: accessedDirty)
  }
}

extension NativePTE: SimulatedFormat {
  static var format: Format { .native }
}

extension EPTPTE: SimulatedFormat {
  static var format: Format { .ept }
}

/// Forwards to `base` and keeps `owner` (whatever owns the simulated RAM) alive for as long as
/// the pmap holding this allocator, so the pmap's deinit never walks unmapped memory.
final class KeepAliveAllocator: FrameAllocator {
  let base: any FrameAllocator
  let owner: AnyObject

  init(_ base: any FrameAllocator, owner: AnyObject) {
    self.base = base
    self.owner = owner
  }

  func allocateFrame() -> PhysicalAddress? { base.allocateFrame() }
  func releaseFrame(_ frame: PhysicalAddress) { base.releaseFrame(frame) }
  func allocatePageTableFrame() -> (frame: PhysicalAddress, isZeroed: Bool)? { base.allocatePageTableFrame() }
  func releaseZeroedFrame(_ frame: PhysicalAddress) { base.releaseZeroedFrame(frame) }
}

/// A small machine: 64 MiB of lazily committed RAM, 1024 page-table frames.
func makeMachine() -> SimulatedMachine {
  SimulatedMachine(ramSize: 64 << 20, pageTableFrames: 1024)
}

/// The virtual address selecting these table indices (lower half), plus `offset`.
func address(pml4: UInt64, pdpt: UInt64 = 0, pd: UInt64 = 0, pt: UInt64 = 0, offset: UInt64 = 0) -> VirtualAddress {
  VirtualAddress(truncating: pml4 << 39 | pdpt << 30 | pd << 21 | pt << 12 | offset)
}

extension VirtualAddress {
  /// The address `bytes` further on (test addresses never cross the canonical hole).
  func plus(_ bytes: UInt64) -> VirtualAddress { VirtualAddress(truncating: rawValue &+ bytes) }
}

extension PhysicalAddress {
  /// The address `bytes` further on.
  func plus(_ bytes: UInt64) -> PhysicalAddress { PhysicalAddress(rawValue + bytes) }
}

/// A range built from literals known to be valid.
func range(_ start: VirtualAddress, bytes: UInt64) throws -> VirtualRange {
  try VirtualRange(start: start, byteCount: bytes)
}

/// Everything observable about a pmap's page-table tree: each page-table page with its level,
/// wire count and all 512 entries.
struct TreeSnapshot: Equatable {
  struct Page: Equatable {
    var frame: PhysicalAddress
    var level: PageTableLevel
    var wireCount: Int
    var entries: [UInt64]
  }
  var pages: [Page]
  var statistics: PmapStatistics
  var framesInUse: Int

  init<Ops: PTEOps>(_ pmap: Pmap<Ops>, _ machine: SimulatedMachine) {
    self.init(pmap, ram: machine.ram, framesInUse: machine.allocator.framesInUse)
  }

  init<Ops: PTEOps>(_ pmap: Pmap<Ops>, ram: SimulatedRAM, framesInUse: Int) {
    var pages: [Page] = []
    pmap.forEachPageTablePage { frame, level in
      pages.append(
        Page(
          frame: frame, level: level, wireCount: pmap.memory.wireCount(of: frame),
          entries: ram.frameContents(frame)))
    }
    self.pages = pages
    self.statistics = pmap.statistics
    self.framesInUse = framesInUse
  }
}

/// The page-table pages of a pmap, by frame, with the level and the first linear address each
/// one covers, read straight from memory (so it works on a tree rooted at any frame).
func tableBases<Ops: PTEOps>(
  _: Ops.Type, root: PhysicalAddress, memory: PhysicalMemory
) -> [PhysicalAddress: (level: PageTableLevel, base: UInt64)] {
  var result: [PhysicalAddress: (level: PageTableLevel, base: UInt64)] = [:]
  func visit(_ table: PhysicalAddress, _ level: PageTableLevel, _ base: UInt64) {
    result[table] = (level, base)
    guard let child = level.child else { return }
    for i in 0..<TableIndex.count {
      let e = memory.entry(in: table, at: i).load()
      if Ops.isPresent(e) && !Ops.isLeaf(e, at: level) {
        visit(Ops.tableFrame(e), child, base + UInt64(i) << level.shift)
      }
    }
  }
  visit(root, .root, 0)
  return result
}

/// Records `#expect` failures for a violated invariant, with the violation in the message.
func expectInvariants<Ops: PTEOps>(
  _ pmap: Pmap<Ops>, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation
) {
  let violation = pmap.checkInvariants()
  #expect(violation == nil, comment, sourceLocation: sourceLocation)
}

/// The CPU reads (or writes) `va` through `pmap`, as the MMU model walks it (see `touch`): A is
/// set in every entry walked, D in the leaf for a write. The access must succeed.
func hardwareAccesses<Ops: PTEOps>(
  _ pmap: Pmap<Ops>, at va: VirtualAddress, write: Bool = false, sourceLocation: SourceLocation = #_sourceLocation
) throws {
  try #require(touch(pmap, va, write: write), "the MMU model refused the access", sourceLocation: sourceLocation)
}

/// A frame allocator and invalidation sink in one, that logs the order of everything it is told,
/// so tests can check that a page-table page is released only after an invalidation covering it.
final class OrderRecorder: FrameAllocator, InvalidationSink {
  enum Event: Equatable {
    case allocate(PhysicalAddress)
    case release(PhysicalAddress)
    case pages(root: PhysicalAddress, [VirtualAddress])
    case all(root: PhysicalAddress)
  }

  private let frames: StackFrameAllocator
  /// The owner of the RAM, kept alive as long as a pmap holds this recorder.
  private let machine: SimulatedMachine
  private(set) var events: [Event] = []
  /// Called at every release, before the frame goes back to the free list.
  var onRelease: ((PhysicalAddress) -> Void)?

  /// A recorder handing out the frames `start ..< end` of `machine`'s RAM.
  init(machine: SimulatedMachine, frames start: PhysicalAddress, to end: PhysicalAddress) {
    self.machine = machine
    frames = StackFrameAllocator(memory: machine.memory, frames: start, to: end)
  }

  var framesInUse: Int { frames.framesInUse }

  func allocateFrame() -> PhysicalAddress? {
    let f = frames.allocateFrame()
    if let f { events.append(.allocate(f)) }
    return f
  }

  func releaseFrame(_ frame: PhysicalAddress) {
    onRelease?(frame)
    events.append(.release(frame))
    frames.releaseFrame(frame)
  }

  func invalidate(pages: UnsafeBufferPointer<VirtualAddress>, root: PhysicalAddress) {
    events.append(.pages(root: root, Array(pages)))
  }

  func invalidateAll(root: PhysicalAddress) {
    events.append(.all(root: root))
  }

  func reset() { events.removeAll() }
}

extension OrderRecorder.Event {
  var releasedFrame: PhysicalAddress? {
    if case .release(let frame) = self { return frame }
    return nil
  }

  var isAllocation: Bool {
    if case .allocate = self { return true }
    return false
  }
}

extension RecordingInvalidationSink.Event {
  /// The addresses of a `.pages` event (empty for `.all`).
  var addresses: [VirtualAddress] {
    switch self {
    case .pages(_, let vas): vas
    case .all: []
    }
  }

  var isAll: Bool {
    if case .all = self { return true }
    return false
  }
}
