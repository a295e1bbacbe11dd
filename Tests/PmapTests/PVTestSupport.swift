import Pmap
import PmapDifferential
import PmapEPT
import PmapHost
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

/// Simulates the CPU accessing `va` through `pmap` (see ``simulatedAccess(_:_:write:)``).
@discardableResult
func touch<Ops: PTEOps>(_ pmap: Pmap<Ops>, _ va: VirtualAddress, write: Bool) -> Bool {
  simulatedAccess(pmap, va, write: write)
}

/// Test names of the pmap kinds.
extension PVKind: CustomTestStringConvertible {
  public var testDescription: String { rawValue }
}

/// The `index`-th 4 KiB page of a test area: `base + index * 4096`.
func pvPage(_ base: UInt64, _ index: Int) -> VirtualAddress {
  VirtualAddress(truncating: base &+ UInt64(index) << 12)
}

/// The counters of a ``PVStatistics``: mappings, pool nodes in use, pool frames, pmaps.
func pvCounts(_ s: PVStatistics) -> [Int] {
  [s.mappings, s.overflowNodesInUse, s.poolFrames, s.registeredPmaps]
}

/// Whether the recorded invalidations of the space rooted at `root` cover `va`.
func pvInvalidated(_ machine: SimulatedMachine, _ va: VirtualAddress, root: PhysicalAddress) -> Bool {
  machine.sink.covered(va, root: root)
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
