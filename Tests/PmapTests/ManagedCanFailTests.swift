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

  /// The quick path of `enter` (page tables present) for a page mapped already: the node comes
  /// from the pool without its lock in the caller-serialized mode, through the locked take
  /// otherwise, and from a new pool frame when the pool is empty. An empty pool and an allocator
  /// that has no frame must fail the enter cleanly in either mode.
  @Test(
    "a further mapping takes a pool node, the pool growing once in 255; an empty pool without frames fails cleanly, locked or not",
    arguments: Format.allCases, [Locking.spinLocks, .callerSerialized])
  func furtherMappingNodes(_ format: Format, _ locking: Locking) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = SimulatedMachine(ramSize: 16 << 20, pageTableFrames: 64)
      try withExtendedLifetime(machine.ram) {
        let pages = PageDatabase(
          memory: machine.memory, base: machine.dataFrame(0), pageCount: 64, allocator: machine.allocator,
          locking: locking)
        let pmap = try Pmap<F>(
          memory: machine.memory, allocator: machine.allocator, invalidation: machine.sink, pages: pages,
          locking: locking)
        let frame = machine.dataFrame(5)
        // All in one page table: after the first enter, every one takes the quick path.
        func va(_ i: Int) -> VirtualAddress { address(pml4: 1, pt: UInt64(i)) }
        try pmap.enter(va(0), frame, protection: .read)
        #expect(pages.statistics.overflowNodesInUse == 0, "a page's first mapping is embedded")
        #expect(pages.statistics.poolFrames == 0)
        let perFrame = 255
        for i in 1...perFrame {
          try pmap.enter(va(i), frame, protection: .read)
          #expect(pages.statistics.overflowNodesInUse == i)
        }
        #expect(pages.statistics.poolFrames == 1, "one pool frame holds \(perFrame) nodes")
        #expect(pages.mappingCount(of: frame) == perFrame + 1)

        // The pool is empty: the next further mapping needs a frame, and the allocator has none.
        machine.allocator.failAtCall = machine.allocator.allocationCalls + 1
        machine.allocator.keepFailing = true
        let before = TreeSnapshot(pmap, machine)
        let pvBefore = pages.statistics
        #expect(throws: EnterError.outOfPVEntries) {
          try pmap.enter(va(perFrame + 1), frame, protection: .read, options: .canFail)
        }
        #expect(TreeSnapshot(pmap, machine) == before, "tables, statistics or frames changed")
        #expect(pages.statistics == pvBefore, "pv state changed")
        #expect(pmap.extract(va(perFrame + 1)) == nil)
        #expect(pmap.checkInvariants() == nil)
        #expect(pages.checkInvariants() == nil)

        // With frames again, the pool grows by one and the enter succeeds.
        machine.allocator.keepFailing = false
        machine.allocator.failAtCall = nil
        try pmap.enter(va(perFrame + 1), frame, protection: .read)
        #expect(pages.statistics.poolFrames == 2)
        #expect(pages.statistics.overflowNodesInUse == perFrame + 1)
        #expect(pages.mappingCount(of: frame) == perFrame + 2)
        #expect(pmap.extract(va(perFrame + 1)) == frame)
        #expect(pages.checkInvariants() == nil)
        pmap.destroy()
        #expect(pages.statistics.overflowNodesInUse == 0)
        #expect(pages.statistics.mappings == 0)
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
