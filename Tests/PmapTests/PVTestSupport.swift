import Pmap
import PmapEPT
import PmapHost
import PmapMMU
import PmapNative
import Testing

// Shared helpers of the pv-list / page-attribute suites (PageAttributeTests, PVListTests,
// DifferentialTests).

/// Runs `body` with a fresh machine whose pmaps track data frames in `machine.pages`.
///
/// The simulated RAM is kept alive until `body` has returned, every pmap it made is gone and
/// the machine itself is released: a pmap's deinit walks its tables, and the page database's
/// deinit reads and gives back its pool frames through the RAM. (`SimulatedMachine` alone
/// releases its RAM before its page database; see `simulatedMachineTeardown` in PVListTests.)
func withPVMachine<R>(
  ramSize: UInt64 = 16 << 20, pageTableFrames: Int = 512, recordsInvalidations: Bool = true,
  _ body: (SimulatedMachine) throws -> R
) rethrows -> R {
  var machine: SimulatedMachine? = SimulatedMachine(
    ramSize: ramSize, pageTableFrames: pageTableFrames, recordsInvalidations: recordsInvalidations)
  let ram = machine!.ram
  defer {
    machine = nil
    withExtendedLifetime(ram) {}
  }
  return try body(machine!)
}

/// The CPU reads or writes `va` through `pmap`, as the MMU model (PmapMMU) walks it: for a
/// native pmap a user-mode access (supervisor for a kernel pmap), for an EPT pmap a guest access
/// to guest-physical `va` through the pmap's EPT pointer. The walk sets A in every entry and D
/// in the leaf of a write, only when the access is permitted (EPT A/D only when the pmap's EPT
/// pointer enables them). Returns whether the access succeeded.
@discardableResult
func touch<Ops: PTEOps>(_ pmap: Pmap<Ops>, _ va: VirtualAddress, write: Bool) -> Bool {
  let type: AccessType = write ? .write : .read
  if let native = pmap as? NativePmap {
    return (try? NativeWalker(memory: native.memory).translate(va, type, in: native).get()) != nil
  }
  if let ept = pmap as? EPTPmap {
    return (try? EPTWalker(ept).translate(va.rawValue, type).get()) != nil
  }
  preconditionFailure("touch: no MMU model for the \(Ops.formatName) format")
}

/// The `index`-th 4 KiB page of a test area: `base + index * 4096`.
func pvPage(_ base: UInt64, _ index: Int) -> VirtualAddress {
  VirtualAddress(truncating: base &+ UInt64(index) << 12)
}

/// Every mapping of a managed page, as (pmap root, address) pairs, order-free.
func pvMappings(of frame: PhysicalAddress, in pages: PageDatabase) -> Set<PVMapping> {
  var result = Set<PVMapping>()
  pages.forEachMapping(of: frame) { root, va in result.insert(PVMapping(root: root, va: va)) }
  return result
}

/// One pv entry as the page database reports it.
struct PVMapping: Hashable, CustomStringConvertible {
  var root: PhysicalAddress
  var va: VirtualAddress
  var description: String {
    "root 0x\(String(root.rawValue, radix: 16)) va 0x\(String(va.rawValue, radix: 16))"
  }
}

/// The counters of a ``PVStatistics``: mappings, pool nodes in use, pool frames, pmaps.
func pvCounts(_ s: PVStatistics) -> [Int] {
  [s.mappings, s.overflowNodesInUse, s.poolFrames, s.registeredPmaps]
}

/// Whether the recorded invalidations of the space rooted at `root` cover `va`.
func pvInvalidated(_ machine: SimulatedMachine, _ va: VirtualAddress, root: PhysicalAddress) -> Bool {
  machine.sink.covered(va, root: root)
}

/// A pmap of either format, behind one interface, so that tests can mix formats in one array.
protocol PVHandle: AnyObject {
  var root: PhysicalAddress { get }
  var hardwareManagesAccessedDirty: Bool { get }
  var statistics: PmapStatistics { get }
  /// "native", "ept" or "ept-noAD".
  var pvName: String { get }
  func extract(_ va: VirtualAddress) -> PhysicalAddress?
  func translation(of va: VirtualAddress) -> Translation?
  func pvEnter(
    _ va: VirtualAddress, _ pa: PhysicalAddress, protection: Protection, access: Protection, options: EnterOptions
  ) throws(EnterError)
  func remove(_ range: VirtualRange) throws(RangeOperationError)
  func protect(_ range: VirtualRange, to protection: Protection) throws(RangeOperationError)
  func unwire(_ va: VirtualAddress) throws(UnwireError)
  /// ``touch(_:_:write:)``.
  func pvTouch(_ va: VirtualAddress, write: Bool) -> Bool
  func checkInvariants() -> InvariantViolation?
  /// Every mapping of the lower half.
  func pvAllMappings() -> [VirtualAddress: Translation]
  /// Every page-table page of the tree with its contents and wire count.
  func pvTree(_ ram: SimulatedRAM) -> [PhysicalAddress: PVTablePage]
}

/// One page-table page as ``PVHandle/pvTree(_:)`` records it.
struct PVTablePage: Equatable {
  var entries: [UInt64]
  var wireCount: Int
}

extension Pmap: PVHandle {
  var pvName: String {
    let name = "\(Ops.formatName)"
    return hardwareManagesAccessedDirty ? name : name + "-noAD"
  }

  func pvEnter(
    _ va: VirtualAddress, _ pa: PhysicalAddress, protection: Protection, access: Protection, options: EnterOptions
  ) throws(EnterError) {
    try enter(va, pa, protection: protection, access: access, options: options)
  }

  func pvTouch(_ va: VirtualAddress, write: Bool) -> Bool { touch(self, va, write: write) }

  func pvAllMappings() -> [VirtualAddress: Translation] {
    var result: [VirtualAddress: Translation] = [:]
    forEachMapping(in: .lowerHalf) { va, t in result[va] = t }
    return result
  }

  func pvTree(_ ram: SimulatedRAM) -> [PhysicalAddress: PVTablePage] {
    var result: [PhysicalAddress: PVTablePage] = [:]
    forEachPageTablePage { frame, _ in
      result[frame] = PVTablePage(entries: ram.frameContents(frame), wireCount: memory.wireCount(of: frame))
    }
    return result
  }
}

/// The kinds of pmap the parameterised tests mix.
enum PVKind: String, Sendable, CustomTestStringConvertible {
  case native
  case ept
  case eptNoAD

  var testDescription: String { rawValue }

  func make(on machine: SimulatedMachine) throws -> any PVHandle {
    switch self {
    case .native: try machine.makeNativePmap()
    case .ept: try machine.makeEPTPmap(accessedDirty: true)
    case .eptNoAD: try machine.makeEPTPmap(accessedDirty: false)
    }
  }
}

/// Checks the invariants of every pmap and of the page database, recording an issue for each
/// violation with `context` in the message.
func expectPVInvariants(
  _ machine: SimulatedMachine, _ pmaps: [any PVHandle], _ context: String,
  sourceLocation: SourceLocation = #_sourceLocation
) {
  let pv = machine.pages.checkInvariants()
  #expect(pv == nil, "page database: \(context)", sourceLocation: sourceLocation)
  for (i, pmap) in pmaps.enumerated() {
    let v = pmap.checkInvariants()
    #expect(v == nil, "pmap \(i) (\(pmap.pvName)): \(context)", sourceLocation: sourceLocation)
  }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a small, seedable generator for reproducible tests.
struct SplitMix64: RandomNumberGenerator {
  private var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9e37_79b9_7f4a_7c15
    var z = state
    z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
    z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
    return z ^ (z >> 31)
  }
}
