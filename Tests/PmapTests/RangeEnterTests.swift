import Pmap
import PmapDifferential
import PmapEPT
import PmapHost
import PmapNative
import Testing

@Suite("enter(_:startingAt:): a contiguous range in one call")
struct RangeEnterTests {
  /// A range crossing page-table, page-directory and PDPT boundaries: from the last two pages
  /// of PML4 slot 0 ... of its last page directory, 1100 pages on into slot 1.
  static var crossingRange: VirtualRange {
    get throws { try range(address(pml4: 0, pdpt: 511, pd: 511, pt: 510), bytes: 1100 << 12) }
  }

  @Test("the tree equals the one single enters build, page for page", arguments: Format.allCases)
  func sameAsSingleEnters(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let bulkMachine = makeMachine()
      let loopMachine = makeMachine()
      let bulk = try F.makePmap(on: bulkMachine)
      let loop = try F.makePmap(on: loopMachine)
      for pmap in [bulk, loop] {
        try pmap.enter(address(pml4: 0, pdpt: 511, pd: 511, pt: 3), bulkMachine.dataFrame(0), protection: .read)
      }
      let r = try Self.crossingRange
      let pa = bulkMachine.dataFrame(16)
      try bulk.enter(r, startingAt: pa, protection: .readWrite, options: .wired, cacheMode: .writeCombining)
      var va = r.start
      var frame = pa
      for _ in 0..<1100 {
        try loop.enter(va, frame, protection: .readWrite, options: .wired, cacheMode: .writeCombining)
        va = va.plus(4096)
        frame = frame.plus(4096)
      }
      #expect(TreeSnapshot(bulk, bulkMachine) == TreeSnapshot(loop, loopMachine))
      #expect(bulk.statistics == stats(1101, 1100, 1 + 3 + 5))
      #expect(bulk.checkInvariants() == nil)
      #expect(bulk.extract(r.start.plus(1099 << 12 | 0x10)) == pa.plus(1099 << 12 | 0x10))
      let t = try #require(bulk.translation(of: r.start.plus(700 << 12)))
      #expect(t.cacheMode == .writeCombining && t.isWired && t.protection == .readWrite && t.size == .size4K)
      #expect(bulkMachine.sink.callCount == 0, "nothing was mapped there: nothing to invalidate")
    }
    try check(format.ops)
  }

  /// The page table that single-page operations last used (the page-table hint) counts its
  /// resident pages with its wire count; a range operation in that same table must count its
  /// leaves once, not twice.
  @Test("range operations in the page table single enters last used count each page once", arguments: Format.allCases)
  func rangeInHintedTable(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      // The first enter builds the tables; the second, in the same table, takes the hint.
      try pmap.enter(address(pml4: 1, pt: 3), machine.dataFrame(0), protection: .read)
      try pmap.enter(address(pml4: 1, pt: 4), machine.dataFrame(1), protection: .read)
      #expect(pmap.statistics == stats(2, 0, 4))
      try pmap.enter(
        try range(address(pml4: 1, pt: 10), bytes: 10 << 12), startingAt: machine.dataFrame(10), protection: .readWrite)
      #expect(pmap.statistics == stats(12, 0, 4))
      #expect(pmap.checkInvariants() == nil)
      // Single enters and removals through the hint again, then a range removal there.
      try pmap.enter(address(pml4: 1, pt: 5), machine.dataFrame(2), protection: .read)
      try pmap.remove(VirtualRange(page: address(pml4: 1, pt: 3)))
      #expect(pmap.statistics == stats(12, 0, 4))
      try pmap.remove(try range(address(pml4: 1, pt: 4), bytes: 10 << 12))
      #expect(pmap.statistics == stats(6, 0, 4))
      #expect(pmap.checkInvariants() == nil)
      try pmap.remove(try range(address(pml4: 1), bytes: 1 << 21))
      #expect(pmap.statistics == stats(0, 0, 1))
      #expect(pmap.checkInvariants() == nil)
    }
    try check(format.ops)
  }

  @Test("large leaves where alignment and largestPageSize allow", arguments: Format.allCases)
  func largeLeaves(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      // 4 KiB x 3, then 2 MiB x 511 up to the 1 GiB boundary, 1 GiB, 2 MiB x 2, 4 KiB x 5.
      let start = address(pml4: 2, pdpt: 0, pd: 0, pt: 509)
      let end = address(pml4: 2, pdpt: 2, pd: 2, pt: 5)
      let r = try VirtualRange(from: start, to: end)
      let pa = PhysicalAddress(start.linear - (2 << 39) + (1 << 40))  // same offsets modulo 512 GiB
      var sizes: [PageSize: Int] = [:]
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      try pmap.enter(r, startingAt: pa, protection: .read, largestPageSize: .size1G)
      pmap.forEachMapping(in: r) { _, t in sizes[t.size, default: 0] += 1 }
      #expect(sizes == [.size4K: 3 + 5, .size2M: 511 + 2, .size1G: 1])
      #expect(pmap.statistics.residentPages == Int(r.byteCount >> 12))
      #expect(pmap.extract(start.plus(5 << 28)) == pa.plus(5 << 28))
      #expect(pmap.checkInvariants() == nil)

      sizes = [:]
      let machine2 = makeMachine()
      let pmap2 = try F.makePmap(on: machine2)
      try pmap2.enter(r, startingAt: pa, protection: .read, largestPageSize: .size2M)
      pmap2.forEachMapping(in: r) { _, t in sizes[t.size, default: 0] += 1 }
      #expect(sizes == [.size4K: 3 + 5, .size2M: 511 + 512 + 2])

      // A physical address off the 2 MiB grid: 4 KiB pages only.
      sizes = [:]
      let small = try VirtualRange(from: address(pml4: 3), to: address(pml4: 3, pd: 3))
      try pmap2.enter(small, startingAt: PhysicalAddress(4096), protection: .read, largestPageSize: .size1G)
      pmap2.forEachMapping(in: small) { _, t in sizes[t.size, default: 0] += 1 }
      #expect(sizes == [.size4K: 3 * 512])
      #expect(pmap2.checkInvariants() == nil)
    }
    try check(format.ops)
  }

  @Test("bad arguments and a mapped page in the range change nothing", arguments: Format.allCases)
  func refused(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      let r = try Self.crossingRange
      let occupied = r.start.plus(1000 << 12)
      try pmap.enter(occupied, machine.dataFrame(0), protection: .read)
      try pmap.enter(address(pml4: 4, pd: 1), PhysicalAddress(1 << 21), protection: .read, size: .size2M)
      let before = TreeSnapshot(pmap, machine)
      let pa = machine.dataFrame(16)
      let insideLarge = try range(address(pml4: 4, pd: 1, pt: 4), bytes: 8192)
      let overLarge = try range(address(pml4: 4), bytes: 4 << 20)
      let cases: [(EnterError, () throws(EnterError) -> Void)] = [
        (
          .unalignedPhysicalAddress,
          { () throws(EnterError) in try pmap.enter(r, startingAt: pa.plus(8), protection: .read) }
        ),
        (
          .physicalAddressOutOfRange,
          { () throws(EnterError) in
            try pmap.enter(r, startingAt: PhysicalAddress((1 << 52) - 4096), protection: .read)
          }
        ),
        (.noRights, { () throws(EnterError) in try pmap.enter(r, startingAt: pa, protection: []) }),
        (.writeWithoutRead, { () throws(EnterError) in try pmap.enter(r, startingAt: pa, protection: .write) }),
        (.alreadyMapped, { () throws(EnterError) in try pmap.enter(r, startingAt: pa, protection: .read) }),
        (
          .alreadyMapped,
          { () throws(EnterError) in
            try pmap.enter(insideLarge, startingAt: pa, protection: .read)
          }
        ),
        (
          .alreadyMapped,
          { () throws(EnterError) in
            try pmap.enter(overLarge, startingAt: pa, protection: .read)
          }
        ),
      ]
      for (expected, call) in cases {
        var thrown: EnterError?
        do throws(EnterError) { try call() } catch { thrown = error }
        #expect(thrown == expected)
        #expect(TreeSnapshot(pmap, machine) == before, "\(expected)")
      }
      let noGiga = try Pmap<F>(
        memory: machine.memory, allocator: KeepAliveAllocator(machine.allocator, owner: machine),
        invalidation: machine.sink, supportsGigabytePages: false)
      #expect(throws: EnterError.unsupportedPageSize) {
        try noGiga.enter(r, startingAt: pa, protection: .read, largestPageSize: .size1G)
      }
      try noGiga.enter(range(address(pml4: 1), bytes: 0), startingAt: pa, protection: .read)
      #expect(noGiga.statistics == stats(0, 0, 1))
    }
    try check(format.ops)
  }

  @Test(
    "with .canFail, a failure at the k-th allocation undoes everything",
    arguments: Format.allCases, [false, true])
  func canFailEveryK(_ format: Format, _ keepFailing: Bool) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      // Needs: slot 0's PD for pdpt 511 and one page table at its end (its PDPT exists), slot 1's
      // PDPT, PD and one page table at the end: 5 tables. Two 2 MiB leaves in between.
      let r = try VirtualRange(from: address(pml4: 0, pdpt: 511, pd: 511, pt: 500), to: address(pml4: 1, pd: 2, pt: 7))
      let needed = 5
      for k in 1...(needed + 1) {
        let machine = SimulatedMachine(ramSize: 16 << 20, pageTableFrames: 64)
        let pmap = try F.makePmap(on: machine)
        try CanFailTests.populate(pmap, machine)
        let before = TreeSnapshot(pmap, machine)
        machine.allocator.failAtCall = machine.allocator.allocationCalls + k
        machine.allocator.keepFailing = keepFailing
        let pa = PhysicalAddress((8 << 30) + (500 << 12))  // on the 2 MiB grid with the range
        var thrown: EnterError?
        do throws(EnterError) {
          try pmap.enter(
            r, startingAt: pa, protection: .readWrite, options: [.canFail, .wired], largestPageSize: .size2M)
        } catch {
          thrown = error
        }
        if k <= needed {
          #expect(thrown == .outOfPageTableMemory, "fail at +\(k)")
          #expect(TreeSnapshot(pmap, machine) == before, "fail at +\(k)")
          #expect(pmap.extract(r.start) == nil)
        } else {
          #expect(thrown == nil, "fail at +\(k)")
          #expect(pmap.statistics.pageTablePages == before.statistics.pageTablePages + needed)
          #expect(pmap.extract(r.start.plus(r.byteCount - 4096)) == pa.plus(r.byteCount - 4096))
          var sizes: [PageSize: Int] = [:]
          pmap.forEachMapping(in: r) { _, t in sizes[t.size, default: 0] += 1 }
          #expect(sizes == [.size4K: 12 + 7, .size2M: 2])
        }
        #expect(pmap.checkInvariants() == nil, "fail at +\(k)")
      }
    }
    try check(format.ops)
  }

  @Test("managed frames go on their pv-lists; a failed call leaves the lists as they were", arguments: PVKind.allCases)
  func managed(_ kind: PVKind) throws {
    try withPVMachine { machine in
      let pmap = try kind.make(on: machine)
      let other = try kind.make(on: machine)
      let r = try range(address(pml4: 0, pd: 1, pt: 500), bytes: 40 << 12)
      try enterRange(pmap, r, machine.dataFrame(0), options: [])
      #expect(machine.pages.statistics.mappings == 40)
      for i in 0..<40 { #expect(pmap.translation(of: r.start.plus(UInt64(i) << 12))?.isManaged == true) }
      // A second mapping of each frame elsewhere, then remove all mappings of one frame.
      try enterRange(other, r, machine.dataFrame(0), options: [])
      #expect(machine.pages.removeAllMappings(machine.dataFrame(7)) == 2)
      #expect(machine.pages.statistics.mappings == 78)
      expectPVInvariants(machine, [pmap, other], "after enter range")

      // Large leaves are never pv-tracked, as with single enters: 4 KiB at the unaligned ends only.
      let big = try range(address(pml4: 6, pt: 511), bytes: (2 << 20) + 8192)
      let mappingsBefore = machine.pages.statistics.mappings
      try enterRange(pmap, big, PhysicalAddress((4 << 20) - 4096), options: [], largestPageSize: .size2M)
      #expect(pmap.translation(of: address(pml4: 6, pd: 1))?.size == .size2M)
      #expect(pmap.translation(of: address(pml4: 6, pd: 1))?.isManaged == false)
      #expect(machine.pages.statistics.mappings == mappingsBefore + 2)
      try pmap.remove(big)

      // A failure part way (an occupied page) takes the entered pages off their lists again.
      let r2 = try range(address(pml4: 3), bytes: 600 << 12)
      try enterRange(pmap, range(address(pml4: 3, pt: 550), bytes: 4096), machine.dataFrame(200), options: [])
      let pvBefore = pvCounts(machine.pages.statistics)
      let attributes = (0..<600).map { machine.pages.attributes(of: machine.dataFrame(100 + $0)) }
      #expect(throws: EnterError.alreadyMapped) {
        try enterRange(pmap, r2, machine.dataFrame(100), options: [.canFail])
      }
      #expect(pvCounts(machine.pages.statistics) == pvBefore)
      #expect((0..<600).map { machine.pages.attributes(of: machine.dataFrame(100 + $0)) } == attributes)
      expectPVInvariants(machine, [pmap, other], "after a failed enter range")
    }
  }
}

extension RangeEnterTests {
  @Test(
    "with .canFail, running out of page-table pages or pv nodes at the k-th allocation undoes everything",
    arguments: PVKind.allCases)
  func managedCanFailEveryK(_ kind: PVKind) throws {
    // 300 frames already mapped once: each second mapping needs a pool node (256 per pool frame),
    // so the range enter allocates 3 tables and 2 pool frames, interleaved.
    let count = 300
    for k in 1...6 {
      try withPVMachine { machine in
        let first = try kind.make(on: machine)
        let second = try kind.make(on: machine)
        let r = try range(address(pml4: 0, pd: 3), bytes: UInt64(count) << 12)
        try enterRange(first, r, machine.dataFrame(0), options: [])
        let tree = second.pvTree(machine.ram)
        let pv = machine.pages.statistics
        let attributes = (0..<count).map { machine.pages.attributes(of: machine.dataFrame($0)) }
        let target = try range(address(pml4: 1), bytes: UInt64(count) << 12)
        machine.allocator.failAtCall = machine.allocator.allocationCalls + k
        var thrown: EnterError?
        do throws(EnterError) { try enterRange(second, target, machine.dataFrame(0), options: [.canFail]) } catch {
          thrown = error
        }
        if k <= 5 {
          #expect(thrown == .outOfPageTableMemory || thrown == .outOfPVEntries, "fail at +\(k)")
          #expect(second.pvTree(machine.ram) == tree, "fail at +\(k)")
          #expect(second.statistics == stats(0, 0, 1), "fail at +\(k)")
          #expect(machine.pages.statistics.mappings == pv.mappings, "fail at +\(k)")
          #expect(machine.pages.statistics.overflowNodesInUse == pv.overflowNodesInUse, "fail at +\(k)")
          #expect((0..<count).map { machine.pages.attributes(of: machine.dataFrame($0)) } == attributes)
        } else {
          #expect(thrown == nil, "fail at +\(k)")
          #expect(machine.pages.statistics.mappings == 2 * count)
          #expect(machine.pages.statistics.poolFrames == pv.poolFrames + 2)
        }
        expectPVInvariants(machine, [first, second], "fail at +\(k)")
      }
    }
  }
}

/// The range enter on a pmap of either format behind a ``PVHandle`` (read+write, 4 KiB pages).
func enterRange(
  _ pmap: any PVHandle, _ range: VirtualRange, _ pa: PhysicalAddress, options: EnterOptions,
  largestPageSize: PageSize = .size4K
) throws(EnterError) {
  if let native = pmap as? NativePmap {
    try native.enter(range, startingAt: pa, protection: .readWrite, options: options, largestPageSize: largestPageSize)
  } else {
    try (pmap as! EPTPmap).enter(
      range, startingAt: pa, protection: .readWrite, options: options, largestPageSize: largestPageSize)
  }
}
