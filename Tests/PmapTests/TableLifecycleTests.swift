import Pmap
import PmapEPT
import PmapHost
import PmapNative
import Testing

/// Pages spread over several PML4, PDPT and PD slots, and the page-table pages they need:
/// root 1; PML4 slot 0: one PDPT, two PDs, three PTs; slot 1: 3; slot 200: 3. Total 13.
let spreadAddresses: [VirtualAddress] = [
  address(pml4: 0, pdpt: 0, pd: 0, pt: 0),
  address(pml4: 0, pdpt: 0, pd: 0, pt: 1),
  address(pml4: 0, pdpt: 0, pd: 7, pt: 0),
  address(pml4: 0, pdpt: 5, pd: 0, pt: 9),
  address(pml4: 1, pdpt: 0, pd: 0, pt: 0),
  address(pml4: 200, pdpt: 511, pd: 511, pt: 511),
]
let spreadTableCount = 13

func levelsOfTables<Ops: PTEOps>(_ pmap: Pmap<Ops>) -> [PageTableLevel: Int] {
  var count: [PageTableLevel: Int] = [:]
  pmap.forEachPageTablePage { _, level in count[level, default: 0] += 1 }
  return count
}

@Suite("Page-table pages are freed")
struct TableLifecycleTests {
  func populate<F: SimulatedFormat>(_ pmap: Pmap<F>, _ machine: SimulatedMachine) throws {
    for (i, va) in spreadAddresses.enumerated() {
      try pmap.enter(va, machine.dataFrame(i), protection: .readWrite, access: i.isMultiple(of: 2) ? [.read] : [])
    }
    #expect(pmap.statistics == stats(spreadAddresses.count, 0, spreadTableCount))
    #expect(levelsOfTables(pmap) == [.pml4: 1, .pageDirectoryPointerTable: 3, .pageDirectory: 4, .pageTable: 5])
    expectInvariants(pmap)
  }

  func expectOnlyRoot<F: SimulatedFormat>(_ pmap: Pmap<F>, _ machine: SimulatedMachine, framesInUse: Int = 1) {
    #expect(pmap.statistics == stats(0, 0, 1))
    #expect(machine.allocator.framesInUse == framesInUse)
    var visited: [(PhysicalAddress, PageTableLevel)] = []
    pmap.forEachPageTablePage { visited.append(($0, $1)) }
    #expect(visited.count == 1)
    #expect(visited.first?.0 == pmap.root)
    #expect(visited.first?.1 == .pml4)
    #expect(machine.ram.frameContents(pmap.root).allSatisfy { $0 == 0 }, "the root is empty again")
    #expect(pmap.memory.wireCount(of: pmap.root) == 1)
    for va in spreadAddresses { #expect(pmap.extract(va) == nil) }
    expectInvariants(pmap)
  }

  @Test("removing everything at once frees all but the root; destroy frees the root", arguments: Format.allCases)
  func removeAllAtOnce(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let baseline = machine.allocator.framesInUse
      let pmap = try F.makePmap(on: machine)
      try populate(pmap, machine)
      #expect(machine.allocator.framesInUse == baseline + spreadTableCount)
      try pmap.remove(.lowerHalf)
      expectOnlyRoot(pmap, machine)
      pmap.destroy()
      #expect(pmap.isDestroyed)
      #expect(machine.allocator.framesInUse == baseline)
    }
    try check(format.ops)
  }

  @Test("removing page by page cascades up to the root", arguments: Format.allCases)
  func removePageByPage(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      try populate(pmap, machine)
      // Remove in address order and check the exact count each time.
      let steps: [(VirtualAddress, Int)] = [
        (spreadAddresses[0], 13),  // the PT still holds pt 1
        (spreadAddresses[1], 12),  // PT (0,0,0) freed
        (spreadAddresses[2], 10),  // PT (0,0,7) and PD (0,0) freed
        (spreadAddresses[3], 7),  // PT, PD and the PDPT of slot 0 freed
        (spreadAddresses[4], 4),  // slot 1 gone
        (spreadAddresses[5], 1),  // slot 200 gone
      ]
      for (va, tables) in steps {
        try pmap.remove(range(va, bytes: 0x1000))
        #expect(pmap.extract(va) == nil)
        #expect(pmap.statistics.pageTablePages == tables, "after removing \(va)")
        #expect(machine.allocator.framesInUse == tables)
        expectInvariants(pmap)
      }
      expectOnlyRoot(pmap, machine)
    }
    try check(format.ops)
  }

  @Test("removing with ranges that cover parts of tables", arguments: Format.allCases)
  func removeByPartialRanges(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      try populate(pmap, machine)
      // Both pages of PT (0,0,0), nothing else.
      try pmap.remove(range(spreadAddresses[0], bytes: 0x2000))
      #expect(pmap.statistics == stats(4, 0, 12))
      #expect(pmap.extract(spreadAddresses[2]) == machine.dataFrame(2))
      expectInvariants(pmap)
      // From the middle of slot 0 to the middle of slot 200.
      try pmap.remove(range(address(pml4: 0, pdpt: 0, pd: 5), bytes: (200 << 39) - (5 << 21)))
      #expect(pmap.statistics == stats(1, 0, 4))
      #expect(pmap.extract(spreadAddresses[5]) == machine.dataFrame(5))
      expectInvariants(pmap)
      try pmap.remove(range(address(pml4: 200), bytes: 1 << 39))
      expectOnlyRoot(pmap, machine)
    }
    try check(format.ops)
  }

  @Test("large pages free their tables too", arguments: Format.allCases)
  func largePagesFreeTables(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      try pmap.enter(address(pml4: 3, pdpt: 1, pd: 2), PhysicalAddress(1 << 21), protection: .read, size: .size2M)
      try pmap.enter(address(pml4: 3, pdpt: 2), PhysicalAddress(1 << 30), protection: .read, size: .size1G)
      try pmap.enter(address(pml4: 4, pdpt: 2), PhysicalAddress(2 << 30), protection: .read, size: .size1G)
      #expect(pmap.statistics == stats(512 + 2 * 262_144, 0, 4))
      try pmap.remove(.lowerHalf)
      expectOnlyRoot(pmap, machine)
    }
    try check(format.ops)
  }

  @Test("two live pmaps keep one root each")
  func twoPmaps() throws {
    let machine = makeMachine()
    let native = try NativePTE.makePmap(on: machine)
    let ept = try EPTPTE.makePmap(on: machine)
    #expect(native.root != ept.root)
    try populate(native, machine)
    try populate(ept, machine)
    #expect(machine.allocator.framesInUse == 2 * spreadTableCount)
    // The two trees share no page-table page.
    var nativeFrames = Set<PhysicalAddress>()
    native.forEachPageTablePage { frame, _ in nativeFrames.insert(frame) }
    var eptFrames = Set<PhysicalAddress>()
    ept.forEachPageTablePage { frame, _ in eptFrames.insert(frame) }
    #expect(nativeFrames.isDisjoint(with: eptFrames))
    try native.remove(.lowerHalf)
    #expect(machine.allocator.framesInUse == 1 + spreadTableCount)
    #expect(ept.statistics == stats(spreadAddresses.count, 0, spreadTableCount))
    try ept.remove(.lowerHalf)
    expectOnlyRoot(native, machine, framesInUse: 2)
    expectOnlyRoot(ept, machine, framesInUse: 2)
    native.destroy()
    #expect(machine.allocator.framesInUse == 1)
    ept.destroy()
    #expect(machine.allocator.framesInUse == 0)
  }

  @Test("destroy of a populated pmap frees every page-table page", arguments: Format.allCases)
  func destroyPopulated(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      try populate(pmap, machine)
      try pmap.enter(address(pml4: 9), PhysicalAddress(1 << 30), protection: .read, size: .size1G)
      machine.sink.reset()
      pmap.destroy()
      #expect(pmap.isDestroyed)
      #expect(machine.allocator.framesInUse == 0)
      // The accessed mappings were invalidated before the pmap went away.
      for (i, va) in spreadAddresses.enumerated() where i.isMultiple(of: 2) {
        #expect(machine.sink.covered(va, root: pmap.root))
      }
    }
    try check(format.ops)
  }

  @Test("deinit destroys a pmap that was not destroyed", arguments: Format.allCases)
  func deinitDestroys(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      do {
        let pmap = try F.makePmap(on: machine)
        try withExtendedLifetime(pmap) {
          try populate(pmap, machine)
          #expect(machine.allocator.framesInUse == spreadTableCount)
        }
      }
      #expect(machine.allocator.framesInUse == 0)
    }
    try check(format.ops)
  }
}

@Suite("Removing whole halves of sparse pmaps")
struct SparseRemoveTests {
  @Test("removing the lower half of a sparse pmap is quick and complete", arguments: Format.allCases)
  func lowerHalf(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      let vas = [
        address(pml4: 0), address(pml4: 17, pdpt: 0, pd: 400, pt: 3), address(pml4: 128, pdpt: 300, pd: 1, pt: 2),
        address(pml4: 255, pdpt: 511, pd: 511, pt: 511),
      ]
      for (i, va) in vas.enumerated() {
        try pmap.enter(va, machine.dataFrame(i), protection: .readWrite, access: [.read], options: .wired)
      }
      try pmap.enter(address(pml4: 64, pdpt: 3, pd: 5), PhysicalAddress(1 << 21), protection: .read, size: .size2M)
      try pmap.enter(address(pml4: 254, pdpt: 510), PhysicalAddress(1 << 30), protection: .read, size: .size1G)
      #expect(pmap.statistics == stats(4 + 512 + 262_144, 4, 1 + 4 * 3 + 2 + 1))
      let clock = ContinuousClock()
      let elapsed = try clock.measure { try pmap.remove(.lowerHalf) }
      #expect(elapsed < .seconds(1))
      for va in vas { #expect(pmap.extract(va) == nil) }
      #expect(pmap.extract(address(pml4: 64, pdpt: 3, pd: 5)) == nil)
      #expect(pmap.extract(address(pml4: 254, pdpt: 510, pd: 7)) == nil)
      #expect(pmap.statistics == stats(0, 0, 1))
      #expect(machine.allocator.framesInUse == 1)
      var mappings = 0
      pmap.forEachMapping { _, _ in mappings += 1 }
      #expect(mappings == 0)
      expectInvariants(pmap)
    }
    try check(format.ops)
  }

  @Test("removing the upper half of a kernel pmap")
  func upperHalfKernel() throws {
    let machine = makeMachine()
    let pmap = try NativePTE.makePmap(on: machine, kind: .kernel)
    #expect(pmap.kind == .kernel)
    let upper = [
      VirtualAddress(0xffff_8000_0000_0000), VirtualAddress(0xffff_c000_1234_5000),
      VirtualAddress(0xffff_ffff_ffff_f000),
    ]
    for (i, va) in upper.enumerated() {
      try pmap.enter(va, machine.dataFrame(i), protection: .readWrite, access: [.read])
      let leaf = try #require(pmap.lookupLeaf(va))
      #expect(leaf.value & NativePTE.global != 0, "kernel leaves are global")
      #expect(leaf.value & NativePTE.user == 0, "kernel leaves are supervisor-only")
      #expect(pmap.extract(va.plus(0x10)) == machine.dataFrame(i).plus(0x10))
    }
    try pmap.enter(
      VirtualAddress(0xffff_a000_0000_0000), PhysicalAddress(1 << 30), protection: .read, options: .wired, size: .size1G
    )
    let lower = address(pml4: 3, pt: 1)
    try pmap.enter(lower, machine.dataFrame(9), protection: .read)
    #expect(pmap.statistics == stats(4 + 262_144, 262_144, 1 + 3 * 3 + 1 + 3))
    expectInvariants(pmap)

    let clock = ContinuousClock()
    let elapsed = try clock.measure { try pmap.remove(.upperHalf) }
    #expect(elapsed < .seconds(1))
    for va in upper { #expect(pmap.extract(va) == nil) }
    #expect(pmap.extract(VirtualAddress(0xffff_a000_0000_0000)) == nil)
    #expect(pmap.extract(lower) == machine.dataFrame(9), "the lower half is untouched")
    #expect(pmap.statistics == stats(1, 0, 4))
    #expect(machine.allocator.framesInUse == 4)
    // Accessed upper-half mappings were invalidated.
    for va in upper { #expect(machine.sink.covered(va, root: pmap.root)) }
    expectInvariants(pmap)
    try pmap.remove(.lowerHalf)
    #expect(pmap.statistics == stats(0, 0, 1))
    #expect(machine.allocator.framesInUse == 1)
  }
}

/// How ``PageTableHintTests`` empties the page table `enter` last used.
enum TableEmptying: String, CaseIterable, Sendable, CustomTestStringConvertible {
  /// `remove` of each page (the single-page path).
  case pageRemove
  /// `remove` of a range covering both pages (the range walk).
  case rangeRemove
  /// `removeAllMappings` of each frame (a page operation, through the pv-list).
  case pageOperation

  var testDescription: String { rawValue }
}

/// `enter` and single-page removal find the page table through a per-pmap hint (the last page
/// table used, by 2 MiB region). Every unlink of a page-table page must drop it: a stale hint
/// would write a leaf into a freed frame, by then perhaps another pmap's table.
@Suite("The page-table hint never outlives its table")
struct PageTableHintTests {
  @Test(
    "enter after the page table it last used was freed allocates a new one, whatever freed it",
    arguments: Format.allCases, TableEmptying.allCases)
  func hintDroppedWhenTableFreed(_ format: Format, _ emptying: TableEmptying) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = SimulatedMachine(ramSize: 16 << 20, pageTableFrames: 64)
      try withExtendedLifetime(machine.ram) {
        let pmap = try machine.makePmap(F.self)
        let other = try machine.makePmap(F.self)
        let a = address(pml4: 3, pdpt: 2, pd: 1, pt: 0)
        let b = address(pml4: 3, pdpt: 2, pd: 1, pt: 1)
        let c = address(pml4: 3, pdpt: 2, pd: 1, pt: 2)
        try pmap.enter(a, machine.dataFrame(0), protection: .readWrite)  // allocates PDPT, PD, PT
        try pmap.enter(b, machine.dataFrame(1), protection: .readWrite)  // quick path: the hint names the PT
        #expect(pmap.extract(b) == machine.dataFrame(1))
        let inUse = machine.allocator.framesInUse
        switch emptying {
        case .pageRemove:
          try pmap.remove(VirtualRange(page: a))
          try pmap.remove(VirtualRange(page: b))
        case .rangeRemove:
          try pmap.remove(VirtualRange(from: a, to: c))
        case .pageOperation:
          #expect(machine.pages.removeAllMappings(machine.dataFrame(0)) == 1)
          #expect(machine.pages.removeAllMappings(machine.dataFrame(1)) == 1)
        }
        #expect(machine.allocator.framesInUse == inUse - 3, "the PT, PD and PDPT were freed")
        #expect(pmap.statistics == stats(0, 0, 1))

        // Another pmap takes frames again (the freed ones first, if the allocator reuses them):
        // a stale hint would now point into its tables.
        let elsewhere = address(pml4: 7, pdpt: 1, pd: 1, pt: 5)
        try other.enter(elsewhere, machine.dataFrame(2), protection: .read)
        try pmap.enter(c, machine.dataFrame(3), protection: .readWrite)
        #expect(pmap.extract(c) == machine.dataFrame(3))
        #expect(other.extract(elsewhere) == machine.dataFrame(2))
        #expect(other.extract(address(pml4: 7, pdpt: 1, pd: 1, pt: 2)) == nil, "nothing written into the other pmap")
        #expect(pmap.statistics == stats(1, 0, 4))
        #expect(other.statistics == stats(1, 0, 4))

        // And the quick path and single-page removal go on using the new table.
        let d = address(pml4: 3, pdpt: 2, pd: 1, pt: 3)
        try pmap.enter(d, machine.dataFrame(4), protection: .read)
        #expect(pmap.extract(d) == machine.dataFrame(4))
        try pmap.remove(VirtualRange(page: c))
        #expect(pmap.extract(c) == nil)
        #expect(pmap.extract(d) == machine.dataFrame(4))
        #expect(pmap.statistics == stats(1, 0, 4))
        expectInvariants(pmap)
        expectInvariants(other)
        #expect(machine.pages.checkInvariants() == nil)
        pmap.destroy()
        other.destroy()
      }
    }
    try check(format.ops)
  }
}
