import Pmap
import PmapEPT
import PmapHost
import PmapNative
import Testing

/// Runs `body` with a machine whose pmaps track data frames in `machine.pages`, keeping the RAM
/// alive until the machine (and its page database, whose deinit reads its pool frames through
/// the RAM) is gone.
private func withManagedMachine(_ body: (SimulatedMachine) throws -> Void) rethrows {
  var machine: SimulatedMachine? = SimulatedMachine(ramSize: 16 << 20, pageTableFrames: 64)
  let ram = machine!.ram
  defer {
    machine = nil
    withExtendedLifetime(ram) {}
  }
  try body(machine!)
}

/// The can-fail contract of `enter` ("on any error nothing changed: page tables, statistics and
/// frame usage") for pmaps made by `SimulatedMachine`, whose data frames are managed: mapping a
/// frame that is already mapped needs a pv node, and the pv pool may have to grow by a frame
/// from the same allocator as the page-table pages.
@Suite("enter with .canFail on pv-tracked pmaps")
struct ManagedCanFailTests {
  @Test("failing at any allocation of an aliasing enter changes nothing", arguments: Format.allCases)
  func aliasingEnter(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      // Four allocations at most: a pv-pool frame and three page-table pages.
      for k in 1...5 {
        try withManagedMachine { machine in
          let pmap = try machine.makePmap(F.self)
          let frame = machine.dataFrame(3)
          try pmap.enter(address(pml4: 0, pt: 1), frame, protection: .read)
          #expect(machine.pages.mappingCount(of: frame) == 1)

          let target = address(pml4: 4, pdpt: 1, pd: 2, pt: 3)
          let calls = machine.allocator.allocationCalls
          machine.allocator.failAtCall = calls + k
          machine.allocator.keepFailing = true
          let before = TreeSnapshot(pmap, machine)
          let pvBefore = machine.pages.statistics
          var thrown: EnterError?
          do throws(EnterError) {
            try pmap.enter(target, frame, protection: .read, options: .canFail)
          } catch {
            thrown = error
          }
          if let thrown {
            #expect(k <= 4, "fail at call +\(k): \(thrown)")
            #expect(thrown == .outOfPageTableMemory || thrown == .outOfPVEntries, "fail at call +\(k)")
            #expect(TreeSnapshot(pmap, machine) == before, "fail at call +\(k): tables, statistics or frames changed")
            #expect(machine.pages.statistics == pvBefore, "fail at call +\(k): pv state changed")
            #expect(machine.pages.mappingCount(of: frame) == 1, "fail at call +\(k)")
            #expect(pmap.extract(target) == nil, "fail at call +\(k)")
          } else {
            #expect(k == 5, "fail at call +\(k): enter needs four allocations")
            #expect(pmap.extract(target) == frame)
            #expect(machine.pages.mappingCount(of: frame) == 2)
            #expect(machine.allocator.framesInUse == before.framesInUse + 4)
          }
          #expect(pmap.checkInvariants() == nil, "fail at call +\(k)")
          #expect(machine.pages.checkInvariants() == nil, "fail at call +\(k)")
        }
      }
    }
    try check(format.ops)
  }

  @Test("an aliasing enter refused for a large-page conflict changes nothing", arguments: Format.allCases)
  func aliasingEnterConflict(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      try withManagedMachine { machine in
        let pmap = try machine.makePmap(F.self)
        let frame = machine.dataFrame(3)
        try pmap.enter(address(pml4: 0, pt: 1), frame, protection: .read)
        try pmap.enter(address(pml4: 0, pdpt: 1), PhysicalAddress(1 << 30), protection: .read, size: .size1G)
        let before = TreeSnapshot(pmap, machine)
        let pvBefore = machine.pages.statistics
        #expect(throws: EnterError.conflictsWithLargeMapping) {
          try pmap.enter(address(pml4: 0, pdpt: 1, pt: 5), frame, protection: .read, options: .canFail)
        }
        #expect(TreeSnapshot(pmap, machine) == before, "tables, statistics or frames changed")
        #expect(machine.pages.statistics == pvBefore, "pv state changed")
        #expect(machine.pages.mappingCount(of: frame) == 1)
        #expect(pmap.checkInvariants() == nil)
        #expect(machine.pages.checkInvariants() == nil)
      }
    }
    try check(format.ops)
  }
}
