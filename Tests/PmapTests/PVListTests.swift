import Pmap
import PmapDifferential
import PmapEPT
import PmapHost
import PmapNative
import Testing

/// Everything a failed enter must leave as it was.
struct PVWorldSnapshot: Equatable, CustomTestStringConvertible {
  var trees: [[PhysicalAddress: PVTablePage]]
  var statistics: [PmapStatistics]
  var pv: PVStatistics
  var framesInUse: Int
  var pageMappings: [Set<PVMapping>]
  var attributes: [PageAttributes]

  init(_ machine: SimulatedMachine, _ pmaps: [any PVHandle], frames: [PhysicalAddress]) {
    trees = pmaps.map { $0.pvTree(machine.ram) }
    statistics = pmaps.map(\.statistics)
    pv = machine.pages.statistics
    framesInUse = machine.allocator.framesInUse
    pageMappings = frames.map { pvMappings(of: $0, in: machine.pages) }
    attributes = frames.map { machine.pages.attributes(of: $0) }
  }

  /// Short: the page-table pages by frame with their wire count and live entries.
  var testDescription: String {
    let tables = trees.map { tree in
      tree.keys.sorted().map { frame in
        let page = tree[frame]!
        return "0x\(String(frame.rawValue, radix: 16)):wc\(page.wireCount)/\(page.entries.filter { $0 != 0 }.count)"
      }.joined(separator: " ")
    }
    return "tables \(tables), statistics \(statistics), pv \(pv), framesInUse \(framesInUse), "
      + "pv-lists \(pageMappings), attributes \(attributes.map(\.rawValue))"
  }
}

@Suite("pv-lists: storage, tracking, failures")
struct PVListTests {
  @Test("a further mapping costs 16 bytes")
  func bytesPerMapping() {
    #expect(PageDatabase.bytesPerAdditionalMapping == 16)
    #expect(PVNode.size == 16)
  }

  @Test("the first mapping of a page uses no pool node, each further one uses one")
  func poolNodes() throws {
    try withPVMachine { machine in
      let kinds: [PVKind] = [.native, .ept, .eptNoAD, .native, .ept]
      let pmaps = try kinds.map { try $0.make(on: machine) }
      let f = machine.dataFrame(3)
      let g = machine.dataFrame(4)
      #expect(pvCounts(machine.pages.statistics) == [0, 0, 0, 5])

      var expected = Set<PVMapping>()
      for (k, pmap) in pmaps.enumerated() {
        let va = pvPage(0x10_0000, k * 3)
        try pmap.pvEnter(va, f, protection: .readWrite, access: [], options: [])
        expected.insert(PVMapping(root: pmap.root, va: va))
        let s = machine.pages.statistics
        #expect(s.mappings == k + 1)
        #expect(s.overflowNodesInUse == k, "mapping \(k + 1) of the page")
        #expect(s.poolFrames == (k == 0 ? 0 : 1))
        #expect(machine.pages.mappingCount(of: f) == k + 1)
        #expect(pvMappings(of: f, in: machine.pages) == expected)
        let tables = pmaps.reduce(0) { $0 + $1.statistics.pageTablePages }
        #expect(machine.allocator.framesInUse == tables + s.poolFrames)
        expectPVInvariants(machine, pmaps, "after mapping \(k + 1)")
      }
      // The first mapping of another page needs no node.
      try pmaps[2].pvEnter(pvPage(0x10_0000, 1), g, protection: .read, access: [], options: [])
      #expect(machine.pages.statistics.overflowNodesInUse == 4)
      #expect(machine.pages.statistics.mappings == 6)

      // Removing mappings gives their nodes back, whichever is removed.
      for (k, pmap) in pmaps.enumerated().reversed() {
        try pmap.remove(VirtualRange(page: pvPage(0x10_0000, k * 3)))
        #expect(machine.pages.statistics.overflowNodesInUse == max(0, k - 1))
        #expect(machine.pages.mappingCount(of: f) == k)
        expectPVInvariants(machine, pmaps, "after removing mapping \(k + 1)")
      }
      #expect(machine.pages.statistics.mappings == 1)
      #expect(machine.pages.mappingCount(of: g) == 1)
    }
  }

  @Test("the pool grows a frame per 255 further mappings and reuses freed nodes")
  func poolGrowth() throws {
    try withPVMachine { machine in
      let pmap = try machine.makeNativePmap()
      let f = machine.dataFrame(0)
      for i in 0..<257 { try pmap.enter(pvPage(0x4000_0000, i), f, protection: .read) }
      #expect(pvCounts(machine.pages.statistics) == [257, 256, 2, 1])
      #expect(machine.pages.mappingCount(of: f) == 257)
      #expect(pvMappings(of: f, in: machine.pages).count == 257)
      expectPVInvariants(machine, [pmap], "257 mappings")

      try pmap.remove(VirtualRange(start: pvPage(0x4000_0000, 0), byteCount: 257 << 12))
      #expect(machine.pages.statistics.mappings == 0)
      #expect(machine.pages.statistics.overflowNodesInUse == 0)
      let frames = machine.allocator.framesInUse
      for i in 0..<257 { try pmap.enter(pvPage(0x4000_0000, i), f, protection: .read) }
      #expect(machine.pages.statistics.poolFrames == 2, "freed nodes are reused")
      #expect(pmap.statistics.pageTablePages == 4)
      #expect(machine.allocator.framesInUse == frames + 3, "only the three page-table pages are allocated again")
      expectPVInvariants(machine, [pmap], "257 mappings again")
    }
  }

  @Test("removing mappings in any order keeps the list exact", arguments: 0..<6)
  func removalOrder(_ seed: Int) throws {
    try withPVMachine { machine in
      let pmaps = try [PVKind.native, .ept, .eptNoAD].map { try $0.make(on: machine) }
      let f = machine.dataFrame(9)
      var live: [(Int, VirtualAddress)] = []
      for i in 0..<7 {
        let p = i % 3
        let va = pvPage(0x20_0000, i)
        try pmaps[p].pvEnter(va, f, protection: .readWrite, access: [], options: [])
        live.append((p, va))
      }
      var rng = SplitMix64(seed: UInt64(seed))
      let order: [(Int, VirtualAddress)]
      switch seed {
      case 0: order = live  // the embedded entry first
      case 1: order = live.reversed()  // the most recent node first
      default: order = live.shuffled(using: &rng)
      }
      var expected = Set(live.map { PVMapping(root: pmaps[$0.0].root, va: $0.1) })
      for (p, va) in order {
        try pmaps[p].remove(VirtualRange(page: va))
        expected.remove(PVMapping(root: pmaps[p].root, va: va))
        #expect(pvMappings(of: f, in: machine.pages) == expected)
        #expect(machine.pages.mappingCount(of: f) == expected.count)
        #expect(machine.pages.statistics.overflowNodesInUse == max(0, expected.count - 1))
        expectPVInvariants(machine, pmaps, "order \(seed), after removing \(va)")
      }
    }
  }

  @Test("frames outside the managed range are mapped without pv tracking", arguments: [PVKind.native, .ept])
  func unmanagedFrames(_ kind: PVKind) throws {
    // 8 MiB of RAM: 0xfee0_0000 (the local APIC) lies beyond it.
    try withPVMachine(ramSize: 8 << 20, pageTableFrames: 128) { machine in
      let pmap = try kind.make(on: machine)
      let apic = PhysicalAddress(0xfee0_0000)
      let low = PhysicalAddress(0)  // below the managed range (the page-table area)
      #expect(!machine.pages.manages(apic))
      #expect(!machine.pages.manages(low))
      #expect(machine.pages.manages(machine.dataFrame(0)))

      try pmap.pvEnter(pvPage(0x1000_0000, 0), apic, protection: .readWrite, access: [.write], options: [])
      try pmap.pvEnter(pvPage(0x1000_0000, 1), low, protection: .read, access: [], options: [])
      #expect(pmap.translation(of: pvPage(0x1000_0000, 0))?.isManaged == false)
      #expect(pmap.translation(of: pvPage(0x1000_0000, 1))?.isManaged == false)
      #expect(pmap.extract(pvPage(0x1000_0000, 0)) == apic)
      #expect(machine.pages.statistics.mappings == 0)
      #expect(pmap.statistics.residentPages == 2)

      try pmap.pvEnter(pvPage(0x1000_0000, 2), machine.dataFrame(0), protection: .read, access: [], options: [])
      #expect(pmap.translation(of: pvPage(0x1000_0000, 2))?.isManaged == true)
      #expect(machine.pages.statistics.mappings == 1)
      expectPVInvariants(machine, [pmap], "mixed managed and unmanaged")

      // Replacing an unmanaged frame by a managed one puts the address on the page's list;
      // the other way round takes it off and caches what the entry recorded.
      let va = pvPage(0x1000_0000, 0)
      try pmap.pvEnter(va, machine.dataFrame(1), protection: .readWrite, access: [.write], options: [])
      #expect(pmap.translation(of: va)?.isManaged == true)
      #expect(pvMappings(of: machine.dataFrame(1), in: machine.pages) == [PVMapping(root: pmap.root, va: va)])
      #expect(machine.pages.statistics.mappings == 2)
      try pmap.pvEnter(va, apic, protection: .read, access: [], options: [])
      #expect(pmap.translation(of: va)?.isManaged == false)
      #expect(machine.pages.mappingCount(of: machine.dataFrame(1)) == 0)
      #expect(machine.pages.isModified(machine.dataFrame(1)))
      #expect(machine.pages.statistics.mappings == 1)
      expectPVInvariants(machine, [pmap], "after replacing")

      try pmap.remove(VirtualRange(start: pvPage(0x1000_0000, 0), byteCount: 3 << 12))
      #expect(machine.pages.statistics.mappings == 0)
      #expect(pmap.statistics.residentPages == 0)
      expectPVInvariants(machine, [pmap], "after removing")
    }
  }

  @Test("a 2 MiB mapping of data frames is not pv-tracked", arguments: [PVKind.native, .ept])
  func largeMappingUntracked(_ kind: PVKind) throws {
    try withPVMachine { machine in
      guard let pmap = try kind.make(on: machine) as? any LargeEnter else {
        Issue.record("no large enter")
        return
      }
      let other = try machine.makeNativePmap()
      let base = PhysicalAddress(0x40_0000)
      #expect(machine.pages.manages(base) && machine.pages.manages(base.plus(0x1f_f000)))
      let va = VirtualAddress(0x4000_0000)
      try pmap.pvEnterLarge(va, base)
      let t = try #require(pmap.translation(of: va.plus(0x3000)))
      #expect(t.size == .size2M)
      #expect(!t.isManaged)
      #expect(machine.pages.statistics.mappings == 0)
      #expect(machine.pages.mappingCount(of: base) == 0)
      #expect(machine.pages.mappingCount(of: base.plus(0x3000)) == 0)

      // A 4 KiB mapping of a frame inside it, elsewhere, is tracked alone.
      try other.enter(VirtualAddress(0x1000), base.plus(0x3000), protection: .read)
      #expect(
        pvMappings(of: base.plus(0x3000), in: machine.pages) == [
          PVMapping(root: other.root, va: VirtualAddress(0x1000))
        ])

      // Page operations do not see the large mapping.
      #expect(machine.pages.removeAllMappings(base) == 0)
      #expect(machine.pages.removeAllMappings(base.plus(0x3000)) == 1)
      #expect(pmap.extract(va.plus(0x3000)) == base.plus(0x3000))
      #expect(pmap.statistics.residentPages == 512)
      expectPVInvariants(machine, [pmap, other], "with a large mapping")
    }
  }

  @Test(
    "re-entering the same frame at the same address keeps its single pv entry and A/D",
    arguments: [PVKind.native, .ept])
  func reenterSameFrame(_ kind: PVKind) throws {
    try withPVMachine { machine in
      let p = try kind.make(on: machine)
      let q = try machine.makeEPTPmap()
      let f = machine.dataFrame(2)
      let va = pvPage(0x30_0000, 5)
      try p.pvEnter(va, f, protection: .readWrite, access: [], options: [])
      try q.enter(VirtualAddress(0x9000), f, protection: .read)
      #expect(p.pvTouch(va, write: true))
      let before = machine.pages.statistics

      try p.pvEnter(va, f, protection: .read, access: [], options: [.wired])
      #expect(machine.pages.statistics == before)
      #expect(machine.pages.mappingCount(of: f) == 2)
      let t = try #require(p.translation(of: va))
      #expect(t.isManaged)
      #expect(t.isWired)
      #expect(t.protection == .read)
      #expect(t.attributes == [.referenced, .modified], "the hardware's A/D survive a re-enter")
      #expect(p.statistics.residentPages == 1)
      #expect(p.statistics.wiredPages == 1)
      expectPVInvariants(machine, [p, q], "after re-entering")
    }
  }

  @Test(
    "re-entering an existing mapping neither grows the pool nor needs the allocator", arguments: [PVKind.native, .ept])
  func reenterNeedsNoFrame(_ kind: PVKind) throws {
    try withPVMachine { machine in
      let p = try kind.make(on: machine)
      let f = machine.dataFrame(2)
      let va = pvPage(0x30_0000, 5)
      try p.pvEnter(va, f, protection: .readWrite, access: [], options: [])
      let frames = machine.allocator.framesInUse
      let before = machine.pages.statistics

      // Only this mapping exists and its page-table pages are there: changing its rights and
      // wiring needs no pv node and no page-table page, so a failing allocator does not matter.
      machine.allocator.failAtCall = machine.allocator.allocationCalls + 1
      machine.allocator.keepFailing = true
      #expect(throws: Never.self) {
        try p.pvEnter(va, f, protection: .readWrite, access: [.write], options: [.canFail, .wired])
      }
      machine.allocator.failAtCall = nil
      #expect(p.translation(of: va)?.isWired == true)
      #expect(machine.pages.mappingCount(of: f) == 1)

      try p.pvEnter(va, f, protection: .read, access: [], options: [])
      #expect(machine.pages.statistics == before)
      #expect(machine.allocator.framesInUse == frames, "no frame is taken to re-enter a mapping")
      expectPVInvariants(machine, [p], "after re-entering with a failing allocator")
    }
  }

  @Test(
    "re-entering a different frame moves the pv entry and caches the old entry's A/D",
    arguments: [PVKind.native, .ept, .eptNoAD])
  func reenterDifferentFrame(_ kind: PVKind) throws {
    try withPVMachine { machine in
      let p = try kind.make(on: machine)
      let q = try machine.makeNativePmap()
      let a = machine.dataFrame(10)
      let b = machine.dataFrame(11)
      let va = pvPage(0x50_0000, 1)
      let qva = VirtualAddress(0x7000)
      try p.pvEnter(va, a, protection: .readWrite, access: [], options: [])
      try q.enter(qva, a, protection: .readWrite)
      _ = p.pvTouch(va, write: true)
      #expect(p.translation(of: va)?.attributes == [.referenced, .modified, .writable])
      machine.sink.reset()

      try p.pvEnter(va, b, protection: .readWrite, access: [], options: [])
      #expect(p.extract(va) == b)
      #expect(machine.pages.mappingCount(of: a) == 1)
      #expect(pvMappings(of: a, in: machine.pages) == [PVMapping(root: q.root, va: qva)])
      #expect(pvMappings(of: b, in: machine.pages) == [PVMapping(root: p.root, va: va)])
      #expect(machine.pages.statistics.mappings == 2)
      #expect(machine.pages.statistics.overflowNodesInUse == 0)
      // q's entry never recorded anything: what a has is what p's old entry recorded.
      #expect(q.translation(of: qva)?.attributes == [.writable])
      #expect(machine.pages.isModified(a))
      #expect(machine.pages.isReferenced(a))
      if kind == .eptNoAD {
        #expect(p.translation(of: va)?.attributes == [.referenced, .modified, .writable])
        #expect(machine.pages.isReferenced(b) && machine.pages.isModified(b))
      } else {
        #expect(p.translation(of: va)?.attributes == [.writable])
        #expect(!machine.pages.isReferenced(b))
        #expect(!machine.pages.isModified(b))
      }
      #expect(pvInvalidated(machine, va, root: p.root), "the replaced entry had A set")
      expectPVInvariants(machine, [p, q], "after moving the mapping")
    }
  }

  /// Where a second mapping of a page goes in the can-fail tests.
  enum SecondMapping: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// Same pmap, same page table: no page-table page needed.
    case samePageTable
    /// Same pmap, another region: three page-table pages needed.
    case newRegion
    /// A pmap of the other format, empty: three page-table pages needed.
    case otherPmap
    var testDescription: String { rawValue }
  }

  @Test(
    "out of pv entries: a second mapping fails with .outOfPVEntries and changes nothing",
    arguments: [PVKind.native, .ept], SecondMapping.allCases)
  func outOfPVEntries(_ kind: PVKind, _ second: SecondMapping) throws {
    try withPVMachine { machine in
      let p = try kind.make(on: machine)
      let q = try (kind == .native ? PVKind.ept : .native).make(on: machine)
      let f = machine.dataFrame(7)
      let g = machine.dataFrame(8)
      let va = pvPage(0x60_0000, 0)
      try p.pvEnter(va, f, protection: .readWrite, access: [.read], options: [])
      #expect(machine.pages.statistics.poolFrames == 0)

      let (target, targetVA): (any PVHandle, VirtualAddress) =
        switch second {
        case .samePageTable: (p, pvPage(0x60_0000, 1))
        case .newRegion: (p, VirtualAddress(0x80_0000_0000))
        case .otherPmap: (q, pvPage(0x60_0000, 1))
        }
      let before = PVWorldSnapshot(machine, [p, q], frames: [f, g])
      // enter allocates the missing page-table pages first and grows the pool last, so the
      // tables it needs are granted and the pool's frame is refused: the tables must be unlinked
      // and given back.
      let tablesNeeded = second == .samePageTable ? 0 : 3
      machine.allocator.failAtCall = machine.allocator.allocationCalls + tablesNeeded + 1
      machine.allocator.keepFailing = true

      #expect(throws: EnterError.outOfPVEntries) {
        try target.pvEnter(targetVA, f, protection: .read, access: [], options: [.canFail])
      }
      #expect(target.extract(targetVA) == nil)
      #expect(PVWorldSnapshot(machine, [p, q], frames: [f, g]) == before)
      expectPVInvariants(machine, [p, q], "after the refused enter")

      // The first mapping of another page needs no node: where no page-table page is needed
      // either, it succeeds even now.
      if second == .samePageTable {
        try p.pvEnter(pvPage(0x60_0000, 2), g, protection: .read, access: [], options: [.canFail])
        #expect(machine.pages.mappingCount(of: g) == 1)
        #expect(machine.pages.statistics.poolFrames == 0)
      }

      // Once the allocator recovers, the same enter succeeds and takes a pool frame.
      machine.allocator.failAtCall = nil
      try target.pvEnter(targetVA, f, protection: .read, access: [], options: [.canFail])
      #expect(machine.pages.mappingCount(of: f) == 2)
      #expect(machine.pages.statistics.poolFrames == 1)
      #expect(machine.pages.statistics.overflowNodesInUse == 1)
      expectPVInvariants(machine, [p, q], "after the successful enter")
    }
  }

  @Test(
    "a page-table allocation fails: the pool is not touched and nothing changes",
    arguments: [PVKind.native, .ept], 1...3)
  func tableFailureLeavesPool(_ kind: PVKind, _ failingCall: Int) throws {
    try withPVMachine { machine in
      let p = try kind.make(on: machine)
      let f = machine.dataFrame(7)
      try p.pvEnter(pvPage(0x60_0000, 0), f, protection: .readWrite, access: [.read], options: [])
      let before = PVWorldSnapshot(machine, [p], frames: [f])
      let calls = machine.allocator.allocationCalls
      // Calls 1-3 are the page-table pages for a new PML4 slot; the pool would grow at call 4.
      machine.allocator.failAtCall = calls + failingCall
      machine.allocator.keepFailing = true
      let target = VirtualAddress(0x80_0000_0000)

      #expect(throws: EnterError.outOfPageTableMemory) {
        try p.pvEnter(target, f, protection: .read, access: [], options: [.canFail])
      }
      #expect(machine.allocator.allocationCalls == calls + failingCall, "tables come before the pool")
      #expect(p.extract(target) == nil)
      let after = PVWorldSnapshot(machine, [p], frames: [f])
      #expect(after.framesInUse == before.framesInUse)
      #expect(after.pv.poolFrames == 0)
      #expect(after == before)
      expectPVInvariants(machine, [p], "after the failed enter")
    }
  }

  @Test(
    "an enter that conflicts with a large mapping takes no pool frame",
    arguments: [PVKind.native, .ept])
  func conflictTakesNoPoolFrame(_ kind: PVKind) throws {
    try withPVMachine { machine in
      guard let p = try kind.make(on: machine) as? any LargeEnter else {
        Issue.record("no large enter")
        return
      }
      let f = machine.dataFrame(7)
      let large = VirtualAddress(0x4000_0000)
      try p.pvEnterLarge(large, PhysicalAddress(0x40_0000))
      try p.pvEnter(pvPage(0x60_0000, 0), f, protection: .readWrite, access: [], options: [])
      let before = PVWorldSnapshot(machine, [p], frames: [f])

      #expect(throws: EnterError.conflictsWithLargeMapping) {
        try p.pvEnter(large.plus(0x5000), f, protection: .read, access: [], options: [.canFail])
      }
      let after = PVWorldSnapshot(machine, [p], frames: [f])
      #expect(after.framesInUse == before.framesInUse, "no pool frame for a refused enter")
      #expect(after == before)
      expectPVInvariants(machine, [p], "after the refused enter")
    }
  }

  @Test("destroying a pmap takes its mappings off the pages' lists")
  func destroyUnlinks() throws {
    try withPVMachine { machine in
      let host = try machine.makeNativePmap()
      let guest = try machine.makeEPTPmap()
      let f = machine.dataFrame(1)
      try host.enter(VirtualAddress(0x1000), f, protection: .readWrite)
      for i in 0..<4 { try guest.enter(pvPage(0x1000, i), f, protection: .readWrite) }
      #expect(touch(guest, pvPage(0x1000, 2), write: true))
      #expect(machine.pages.mappingCount(of: f) == 5)

      guest.destroy()
      #expect(machine.pages.mappingCount(of: f) == 1)
      #expect(pvMappings(of: f, in: machine.pages) == [PVMapping(root: host.root, va: VirtualAddress(0x1000))])
      #expect(machine.pages.statistics.registeredPmaps == 1)
      #expect(machine.pages.statistics.overflowNodesInUse == 0)
      #expect(machine.pages.isModified(f), "the destroyed mapping's D is cached")
      expectPVInvariants(machine, [host], "after destroying the guest")

      // Its registry slot is reused.
      let again = try machine.makeEPTPmap()
      try again.enter(VirtualAddress(0x1000), f, protection: .read)
      #expect(pvMappings(of: f, in: machine.pages).count == 2)
      expectPVInvariants(machine, [host, again], "with a new pmap")
    }
  }

  @Test(
    "a page operation reports each mapping's invalidation to its own pmap's sink, as pmaps with other sinks come and go",
    arguments: [PVKind.native, .ept])
  func invalidationsGoToEachSink(_ kind: PVKind) throws {
    if kind == .native {
      try invalidationsGoToEachSink(NativePTE.self)
    } else {
      try invalidationsGoToEachSink(EPTPTE.self)
    }
  }

  func invalidationsGoToEachSink<Ops: PTEOps>(_: Ops.Type) throws {
    try withPVMachine { machine in
      let sinkA = RecordingInvalidationSink()
      let sinkB = RecordingInvalidationSink()
      func make(_ sink: RecordingInvalidationSink) throws -> Pmap<Ops> {
        try Pmap<Ops>(memory: machine.memory, allocator: machine.allocator, invalidation: sink, pages: machine.pages)
      }
      let f = machine.dataFrame(3)
      let va = pvPage(0x40_0000, 0)
      /// Maps `f` in each pmap if it does not yet, reads it through each (A set), clears the
      /// references, and returns the roots each sink was told about.
      func clearAndReport(_ pmaps: [Pmap<Ops>]) throws -> (a: Set<PhysicalAddress>, b: Set<PhysicalAddress>) {
        for p in pmaps {
          if p.extract(va) == nil { try p.enter(va, f, protection: .readWrite) }
          #expect(touch(p, va, write: false))
        }
        sinkA.reset()
        sinkB.reset()
        #expect(machine.pages.clearReference(f))
        func roots(_ sink: RecordingInvalidationSink) -> Set<PhysicalAddress> {
          Set(
            sink.events.map { event in
              switch event {
              case .pages(let root, let vas):
                #expect(vas == [va])
                return root
              case .all(let root): return root
              }
            })
        }
        return (roots(sinkA), roots(sinkB))
      }

      // Two sinks: each hears of its own pmaps' mappings, and only of those.
      let a1 = try make(sinkA)
      let b1 = try make(sinkB)
      let a2 = try make(sinkA)
      var reported = try clearAndReport([a1, b1, a2])
      #expect(reported.a == [a1.root, a2.root])
      #expect(reported.b == [b1.root])

      // The last pmap of sink B goes: one sink left (the page database then reports without
      // sorting by sink).
      b1.destroy()
      reported = try clearAndReport([a1, a2])
      #expect(reported.a == [a1.root, a2.root])
      #expect(reported.b.isEmpty)

      // Sink B again, then one of sink A's two pmaps goes: still two sinks.
      let b2 = try make(sinkB)
      a2.destroy()
      reported = try clearAndReport([a1, b2])
      #expect(reported.a == [a1.root])
      #expect(reported.b == [b2.root])
      expectPVInvariants(machine, [a1, b2], "after pmaps of both sinks came and went")
      a1.destroy()
      b2.destroy()
    }
  }

  @Test("a SimulatedMachine whose pv pool grew can be released")
  func simulatedMachineTeardown() async {
    // Runs in a child process: the failure mode is a crash (the machine unmaps its RAM before
    // its page database gives the pool frames back through it).
    await #expect(processExitsWith: .success) {
      do {
        let machine = SimulatedMachine(ramSize: 8 << 20, pageTableFrames: 64)
        let pmap = try machine.makeNativePmap()
        try pmap.enter(VirtualAddress(0x1000), machine.dataFrame(0), protection: .read)
        try pmap.enter(VirtualAddress(0x2000), machine.dataFrame(0), protection: .read)
        pmap.destroy()
      }
    }
  }
}

/// Large enters for the pmaps behind ``PVHandle`` (2 MiB, read/write).
protocol LargeEnter: PVHandle {
  func pvEnterLarge(_ va: VirtualAddress, _ pa: PhysicalAddress) throws(EnterError)
}

extension Pmap: LargeEnter {
  func pvEnterLarge(_ va: VirtualAddress, _ pa: PhysicalAddress) throws(EnterError) {
    try enter(va, pa, protection: .readWrite, size: .size2M)
  }
}
