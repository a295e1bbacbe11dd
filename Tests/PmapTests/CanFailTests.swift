import Pmap
import PmapEPT
import PmapHost
import PmapNative
import Testing

/// Where a can-fail enter of each size goes, and how many page-table pages it needs, given the
/// mappings ``CanFailTests/populate(_:_:)`` makes.
func canFailTargets(_ size: PageSize) -> [(va: VirtualAddress, needed: Int)] {
  switch size {
  case .size4K:
    [
      (address(pml4: 5, pdpt: 1, pd: 2, pt: 3), 3),  // a fresh PML4 slot
      (address(pml4: 0, pdpt: 7, pd: 0, pt: 1), 2),  // a fresh PDPT entry
      (address(pml4: 0, pdpt: 0, pd: 9, pt: 2), 1),  // a fresh PD entry
      (address(pml4: 0, pdpt: 0, pd: 0, pt: 2), 0),  // an existing page table
    ]
  case .size2M:
    [
      (address(pml4: 6, pdpt: 4, pd: 8), 2),
      (address(pml4: 0, pdpt: 8, pd: 3), 1),
      (address(pml4: 0, pdpt: 0, pd: 10), 0),
    ]
  case .size1G:
    [
      (address(pml4: 7, pdpt: 9), 1),
      (address(pml4: 0, pdpt: 9), 0),
    ]
  }
}

@Suite("enter with .canFail leaves everything unchanged when it fails")
struct CanFailTests {
  /// Existing mappings of every size, some with A/D set by the "hardware".
  static func populate<F: SimulatedFormat>(_ pmap: Pmap<F>, _ machine: SimulatedMachine) throws {
    try pmap.enter(address(pml4: 0), machine.dataFrame(0), protection: .readWrite, access: [.write], options: .wired)
    try pmap.enter(address(pml4: 0, pt: 1), machine.dataFrame(1), protection: .read)
    try hardwareAccesses(pmap, at: address(pml4: 0, pt: 1))
    try pmap.enter(address(pml4: 0, pd: 1), PhysicalAddress(1 << 21), protection: .all, size: .size2M)
    try pmap.enter(
      address(pml4: 0, pdpt: 3), PhysicalAddress(1 << 30), protection: .read, access: [.read], size: .size1G)
    #expect(pmap.statistics == stats(2 + 512 + 262_144, 1, 4))
  }

  @Test(
    "fail at each allocation while enter builds its tables",
    arguments: Format.allCases, PageSize.allCases)
  func failEachAllocation(_ format: Format, _ size: PageSize) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      for (target, needed) in canFailTargets(size) {
        for keepFailing in [false, true] {
          for k in 1...4 {
            let label = "\(size.testDescription) at \(target) (needs \(needed)), fail call +\(k), keep \(keepFailing)"
            let machine = SimulatedMachine(ramSize: 16 << 20, pageTableFrames: 64)
            let pmap = try F.makePmap(on: machine)
            try Self.populate(pmap, machine)
            let pa = PhysicalAddress(size.bytes * 4)
            let calls = machine.allocator.allocationCalls
            machine.allocator.failAtCall = calls + k
            machine.allocator.keepFailing = keepFailing
            let before = TreeSnapshot(pmap, machine)
            let probes = [
              address(pml4: 0), address(pml4: 0, pt: 1), address(pml4: 0, pd: 1), address(pml4: 0, pdpt: 3),
            ]
            let extracted = probes.map { pmap.extract($0) }
            let sinkCalls = machine.sink.callCount

            let shouldFail = k <= needed
            var thrown: EnterError?
            do throws(EnterError) {
              try pmap.enter(
                target, pa, protection: .readWrite, access: [.read], options: [.canFail, .wired], size: size)
            } catch {
              thrown = error
            }
            if thrown == nil {
              #expect(!shouldFail, "\(label): expected a failure")
              #expect(pmap.extract(target) == pa, "\(label)")
              let t = try #require(pmap.translation(of: target))
              #expect(t.size == size && t.isWired && t.protection == .readWrite, "\(label)")
              #expect(
                pmap.statistics
                  == stats(
                    before.statistics.residentPages + size.basePageCount,
                    before.statistics.wiredPages + size.basePageCount, before.statistics.pageTablePages + needed),
                "\(label)")
              #expect(machine.allocator.framesInUse == before.framesInUse + needed, "\(label)")
              #expect(machine.allocator.allocationCalls == calls + needed, "\(label)")
            } else {
              #expect(shouldFail, "\(label): unexpected \(String(describing: thrown))")
              #expect(thrown == .outOfPageTableMemory, "\(label)")
              #expect(TreeSnapshot(pmap, machine) == before, "\(label): tables, statistics or frames changed")
              #expect(probes.map { pmap.extract($0) } == extracted, "\(label)")
              #expect(pmap.extract(target) == nil, "\(label)")
              #expect(machine.allocator.allocationCalls == calls + k, "\(label): stopped at the first failure")
              #expect(machine.allocator.failures == 1, "\(label)")
              #expect(machine.sink.callCount == sinkCalls, "\(label): nothing to invalidate")
              expectInvariants(pmap, "\(label)")

              // Once memory is back, the same enter works.
              machine.allocator.failAtCall = nil
              machine.allocator.keepFailing = false
              try pmap.enter(
                target, pa, protection: .readWrite, access: [.read], options: [.canFail, .wired], size: size)
              #expect(pmap.extract(target) == pa, "\(label)")
              #expect(pmap.statistics.pageTablePages == before.statistics.pageTablePages + needed, "\(label)")
              #expect(machine.allocator.framesInUse == before.framesInUse + needed, "\(label)")
            }
            expectInvariants(pmap, "\(label)")
            #expect(probes.map { pmap.extract($0) } == extracted, "\(label)")
          }
        }
      }
    }
    try check(format.ops)
  }

  @Test("creating a pmap with no frame left throws", arguments: Format.allCases)
  func creationFails(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = SimulatedMachine(ramSize: 16 << 20, pageTableFrames: 64)
      machine.allocator.failAtCall = machine.allocator.allocationCalls + 1
      #expect(throws: PmapCreationError.outOfPageTableMemory) { _ = try F.makePmap(on: machine) }
      #expect(machine.allocator.framesInUse == 0)
    }
    try check(format.ops)
  }

  @Test("running out for real (allocator exhausted) is reported with .canFail", arguments: Format.allCases)
  func exhaustedAllocator(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      // Five frames: root + 3 for the first page, one spare; a page in another PML4 slot needs 3.
      let machine = SimulatedMachine(ramSize: 16 << 20, pageTableFrames: 5)
      let pmap = try F.makePmap(on: machine)
      try pmap.enter(address(pml4: 0), machine.dataFrame(0), protection: .read, options: .canFail)
      try pmap.enter(
        address(pml4: 0, pdpt: 1), PhysicalAddress(1 << 30), protection: .read, options: .canFail, size: .size1G)
      let before = TreeSnapshot(pmap, machine)
      #expect(before.framesInUse == 4)
      #expect(throws: EnterError.outOfPageTableMemory) {
        try pmap.enter(address(pml4: 1), machine.dataFrame(1), protection: .read, options: .canFail)
      }
      #expect(TreeSnapshot(pmap, machine) == before)
      // Freeing tables makes room again.
      try pmap.remove(range(address(pml4: 0), bytes: 0x1000))
      try pmap.enter(address(pml4: 1), machine.dataFrame(1), protection: .read, options: .canFail)
      #expect(pmap.extract(address(pml4: 1)) == machine.dataFrame(1))
      expectInvariants(pmap)
    }
    try check(format.ops)
  }
}
