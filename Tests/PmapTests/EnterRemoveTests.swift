import Pmap
import PmapEPT
import PmapHost
import PmapNative
import Testing

/// Statistics as a tuple-like value for terse expectations.
func stats(_ resident: Int, _ wired: Int, _ tables: Int) -> PmapStatistics {
  PmapStatistics(residentPages: resident, wiredPages: wired, pageTablePages: tables)
}

@Suite("enter / extract / translation / remove / protect / unwire")
struct EnterRemoveTests {
  @Test("a fresh pmap is empty", arguments: Format.allCases)
  func freshPmap(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      #expect(pmap.statistics == stats(0, 0, 1))
      #expect(machine.allocator.framesInUse == 1)
      #expect(machine.ram.frameContents(pmap.root).allSatisfy { $0 == 0 })
      #expect(pmap.extract(VirtualAddress(0)) == nil)
      #expect(pmap.translation(of: VirtualAddress(0x7fff_ffff_f000)) == nil)
      #expect(pmap.lookupLeaf(VirtualAddress(0x1000)) == nil)
      #expect(!pmap.isDestroyed)
      expectInvariants(pmap)
    }
    try check(format.ops)
  }

  @Test("enter, then extract and translation report it", arguments: Format.allCases)
  func enterExtractTranslation(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      let va = address(pml4: 1, pdpt: 2, pd: 3, pt: 4)
      let pa = machine.dataFrame(7)
      try pmap.enter(va, pa, protection: .readWrite)
      #expect(pmap.statistics == stats(1, 0, 4))
      #expect(machine.allocator.framesInUse == 4)
      expectInvariants(pmap)

      #expect(pmap.extract(va) == pa)
      #expect(pmap.extract(va.plus(0x123)) == pa.plus(0x123))
      #expect(pmap.extract(va.plus(0xfff)) == pa.plus(0xfff))
      #expect(pmap.extract(va.plus(0x1000)) == nil)
      #expect(pmap.extract(va.plus(0x20_0000)) == nil)
      #expect(pmap.extract(address(pml4: 2, pdpt: 2, pd: 3, pt: 4)) == nil)

      let t = try #require(pmap.translation(of: va.plus(0x123)))
      #expect(t.physicalAddress == pa.plus(0x123))
      #expect(t.frame == pa)
      #expect(t.size == .size4K)
      #expect(t.protection == .readWrite)
      #expect(t.cacheMode == .writeBack)
      #expect(!t.isWired)
      #expect(!t.isManaged)
      #expect(t.attributes == [.writable])

      let leaf = try #require(pmap.lookupLeaf(va))
      #expect(leaf.level == .pageTable)
      #expect(F.leafFrame(leaf.value, at: .pageTable) == pa)
      #expect(leaf.entry.load() == leaf.value)

      // Every requested protection and cache mode reads back.
      var n = 0
      for protection in encodableProtections {
        for mode in CacheMode.allCases {
          n += 1
          let v = address(pml4: 3, pt: UInt64(n))
          try pmap.enter(v, machine.dataFrame(n), protection: protection, cacheMode: mode)
          let t = try #require(pmap.translation(of: v))
          #expect(t.protection == protection.union(.read), "\(protection)")
          #expect(t.cacheMode == mode, "\(mode)")
          #expect(t.frame == machine.dataFrame(n))
        }
      }
      #expect(pmap.statistics == stats(1 + n, 0, 7))
      expectInvariants(pmap)
    }
    try check(format.ops)
  }

  @Test("the faulting access seeds A and D", arguments: Format.allCases)
  func accessSeedsAccessedDirty(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      let cases: [(Protection, Protection, PageAttributes)] = [
        (.readWrite, [], [.writable]),
        (.readWrite, [.read], [.referenced, .writable]),
        (.readWrite, [.write], [.referenced, .modified, .writable]),
        (.readWrite, [.read, .write], [.referenced, .modified, .writable]),
        (.all, [.execute], [.referenced, .writable]),
        (.read, [.read], [.referenced]),
        (.readExecute, [.execute], [.referenced]),
        ([.execute], [.read], [.referenced]),
      ]
      for (i, (protection, access, attributes)) in cases.enumerated() {
        let va = address(pml4: 0, pt: UInt64(i))
        try pmap.enter(va, machine.dataFrame(i), protection: protection, access: access)
        let t = try #require(pmap.translation(of: va))
        #expect(t.attributes == attributes, "\(protection) \(access)")
        let value = try #require(pmap.lookupLeaf(va)).value
        #expect((value & F.accessedBit != 0) == !access.isEmpty)
        #expect((value & F.dirtyBit != 0) == access.contains(.write))
      }
      #expect(pmap.statistics == stats(cases.count, 0, 4))
      expectInvariants(pmap)
    }
    try check(format.ops)
  }

  @Test("re-entering the same frame keeps A/D and updates rights, cache mode, wiring", arguments: Format.allCases)
  func reenterSameFrame(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      let va = address(pml4: 0, pdpt: 1, pd: 2, pt: 3)
      let pa = machine.dataFrame(1)
      try pmap.enter(va, pa, protection: .readWrite, access: [.write])
      #expect(pmap.statistics == stats(1, 0, 4))

      try pmap.enter(va, pa, protection: .read)
      var t = try #require(pmap.translation(of: va))
      #expect(t.protection == .read)
      #expect(t.attributes == [.referenced, .modified])
      #expect(pmap.statistics == stats(1, 0, 4))
      expectInvariants(pmap)

      // A and D set by the hardware (a write) survive too, and the cache mode changes.
      let other = address(pml4: 0, pdpt: 1, pd: 2, pt: 4)
      try pmap.enter(other, machine.dataFrame(2), protection: .readWrite)
      try hardwareAccesses(pmap, at: other, write: true)
      try pmap.enter(other, machine.dataFrame(2), protection: .all, cacheMode: .uncached)
      t = try #require(pmap.translation(of: other))
      #expect(t.protection == .all)
      #expect(t.cacheMode == .uncached)
      #expect(t.attributes == [.referenced, .modified, .writable])
      #expect(pmap.statistics == stats(2, 0, 4))

      // Wiring follows the latest enter.
      try pmap.enter(va, pa, protection: .read, options: .wired)
      #expect(try #require(pmap.translation(of: va)).isWired)
      #expect(pmap.statistics == stats(2, 1, 4))
      try pmap.enter(va, pa, protection: .read, options: .wired)
      #expect(pmap.statistics == stats(2, 1, 4))
      try pmap.enter(va, pa, protection: .read)
      #expect(try #require(pmap.translation(of: va)).isWired == false)
      #expect(pmap.statistics == stats(2, 0, 4))
      #expect(try #require(pmap.translation(of: va)).attributes == [.referenced, .modified])
      expectInvariants(pmap)
    }
    try check(format.ops)
  }

  @Test("re-entering a different frame replaces the mapping", arguments: Format.allCases)
  func reenterDifferentFrame(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      let va = address(pml4: 5, pt: 9)
      try pmap.enter(va, machine.dataFrame(1), protection: .readWrite, access: [.write], options: .wired)
      #expect(pmap.statistics == stats(1, 1, 4))
      try pmap.enter(va, machine.dataFrame(2), protection: .read, options: .wired)
      #expect(pmap.extract(va.plus(8)) == machine.dataFrame(2).plus(8))
      let t = try #require(pmap.translation(of: va))
      #expect(t.protection == .read)
      #expect(t.attributes == [], "the old frame's A/D do not carry over")
      #expect(t.isWired)
      #expect(pmap.statistics == stats(1, 1, 4))
      try pmap.enter(va, machine.dataFrame(3), protection: .readWrite)
      #expect(pmap.extract(va) == machine.dataFrame(3))
      #expect(pmap.statistics == stats(1, 0, 4))
      expectInvariants(pmap)
    }
    try check(format.ops)
  }

  @Test("remove keeps statistics exact", arguments: Format.allCases)
  func removeStatistics(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      let base = address(pml4: 0, pdpt: 0, pd: 1)
      for i in 0..<4 {
        try pmap.enter(
          base.plus(UInt64(i) << 12), machine.dataFrame(i), protection: .readWrite,
          options: i.isMultiple(of: 2) ? .wired : [])
      }
      #expect(pmap.statistics == stats(4, 2, 4))
      // A single page (wired).
      try pmap.remove(range(base, bytes: 0x1000))
      #expect(pmap.extract(base) == nil)
      #expect(pmap.extract(base.plus(0x1000)) == machine.dataFrame(1))
      #expect(pmap.statistics == stats(3, 1, 4))
      expectInvariants(pmap)
      // Removing an unmapped page changes nothing.
      try pmap.remove(range(base, bytes: 0x1000))
      try pmap.remove(range(address(pml4: 9), bytes: 0x1000))
      #expect(pmap.statistics == stats(3, 1, 4))
      // A range covering two of the three (one wired).
      try pmap.remove(range(base.plus(0x1000), bytes: 0x2000))
      #expect(pmap.extract(base.plus(0x1000)) == nil)
      #expect(pmap.extract(base.plus(0x2000)) == nil)
      #expect(pmap.extract(base.plus(0x3000)) == machine.dataFrame(3))
      #expect(pmap.statistics == stats(1, 0, 4))
      expectInvariants(pmap)
      // An empty range does nothing.
      try pmap.remove(range(base.plus(0x3000), bytes: 0))
      #expect(pmap.statistics == stats(1, 0, 4))
      // The last one: its tables go too.
      try pmap.remove(range(base, bytes: 0x10_0000))
      #expect(pmap.extract(base.plus(0x3000)) == nil)
      #expect(pmap.statistics == stats(0, 0, 1))
      #expect(machine.allocator.framesInUse == 1)
      expectInvariants(pmap)
    }
    try check(format.ops)
  }

  @Test("unwire clears the wired state", arguments: Format.allCases)
  func unwire(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      let a = address(pml4: 0, pt: 1)
      let b = address(pml4: 0, pt: 2)
      try pmap.enter(a, machine.dataFrame(1), protection: .read, options: .wired)
      try pmap.enter(b, machine.dataFrame(2), protection: .read, options: [.wired, .canFail])
      #expect(pmap.statistics == stats(2, 2, 4))
      #expect(try #require(pmap.translation(of: a)).isWired)
      try pmap.unwire(a)
      #expect(pmap.statistics == stats(2, 1, 4))
      #expect(try #require(pmap.translation(of: a)).isWired == false)
      #expect(try #require(pmap.translation(of: b)).isWired)
      #expect(try #require(pmap.lookupLeaf(a)).value & F.wiredBit == 0)
      #expect(pmap.extract(a) == machine.dataFrame(1))
      expectInvariants(pmap)
      try pmap.unwire(b.plus(0x10))
      #expect(pmap.statistics == stats(2, 0, 4))
      expectInvariants(pmap)
    }
    try check(format.ops)
  }

  @Test("protect takes rights away, keeps dirty, never adds; [] removes", arguments: Format.allCases)
  func protect(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      let a = address(pml4: 0, pd: 4, pt: 0)
      let b = a.plus(0x1000)
      let c = a.plus(0x2000)
      try pmap.enter(a, machine.dataFrame(1), protection: .readWrite, access: [.write])
      try pmap.enter(b, machine.dataFrame(2), protection: .all, access: [.write], options: .wired)
      try pmap.enter(c, machine.dataFrame(3), protection: .read)
      #expect(pmap.statistics == stats(3, 1, 4))

      // Two pages to read-only: write goes, A/D stay.
      try pmap.protect(range(a, bytes: 0x2000), to: .read)
      let ta = try #require(pmap.translation(of: a))
      let tb = try #require(pmap.translation(of: b))
      #expect(ta.protection == .read)
      #expect(ta.attributes == [.referenced, .modified])
      #expect(tb.protection == .read)
      #expect(tb.attributes == [.referenced, .modified])
      #expect(tb.isWired)
      #expect(pmap.extract(a) == machine.dataFrame(1))
      #expect(pmap.statistics == stats(3, 1, 4))
      expectInvariants(pmap)

      // Protecting "to" more rights adds nothing (pmap(9): protect only reduces).
      try pmap.protect(range(a, bytes: 0x3000), to: .all)
      try pmap.protect(range(c, bytes: 0x1000), to: .all)
      #expect(try #require(pmap.translation(of: a)).protection == .read)
      #expect(try #require(pmap.translation(of: b)).protection == .read)
      #expect(try #require(pmap.translation(of: c)).protection == .read)
      #expect(pmap.statistics == stats(3, 1, 4))

      // Intersection: an RW page protected to R+X stays R (execute is not added).
      let d = a.plus(0x3000)
      try pmap.enter(d, machine.dataFrame(4), protection: .readWrite)
      try pmap.protect(range(d, bytes: 0x1000), to: .readExecute)
      #expect(try #require(pmap.translation(of: d)).protection == .read)
      // An all-rights page protected to R+X loses only write (single-page path and range path).
      let e = a.plus(0x4000)
      try pmap.enter(e, machine.dataFrame(5), protection: .all)
      try pmap.protect(range(e, bytes: 0x1000), to: .readExecute)
      #expect(try #require(pmap.translation(of: e)).protection == .readExecute)
      try pmap.enter(e, machine.dataFrame(5), protection: .all)
      try pmap.protect(range(d, bytes: 0x2000), to: [.execute])
      #expect(try #require(pmap.translation(of: e)).protection == .readExecute)
      #expect(pmap.statistics == stats(5, 1, 4))
      expectInvariants(pmap)

      // Protect to nothing removes.
      try pmap.protect(range(a, bytes: 0x2000), to: [])
      #expect(pmap.extract(a) == nil)
      #expect(pmap.extract(b) == nil)
      #expect(pmap.extract(c) == machine.dataFrame(3))
      #expect(pmap.statistics == stats(3, 0, 4))
      expectInvariants(pmap)
      try pmap.protect(range(a, bytes: 0x10_0000), to: .none)
      #expect(pmap.statistics == stats(0, 0, 1))
      #expect(machine.allocator.framesInUse == 1)
      expectInvariants(pmap)

      // Protect of unmapped or empty ranges is a no-op.
      try pmap.protect(range(a, bytes: 0x10_0000), to: .read)
      try pmap.protect(range(a, bytes: 0), to: .read)
      #expect(pmap.statistics == stats(0, 0, 1))
    }
    try check(format.ops)
  }

  @Test("forEachMapping visits every mapping in order", arguments: Format.allCases)
  func forEachMapping(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      let vas = [address(pml4: 0, pt: 3), address(pml4: 0, pd: 9, pt: 1), address(pml4: 7, pdpt: 3)]
      for (i, va) in vas.enumerated().reversed() {
        try pmap.enter(va, machine.dataFrame(i), protection: .read)
      }
      try pmap.enter(address(pml4: 2, pd: 1), PhysicalAddress(1 << 21), protection: .read, size: .size2M)
      var seen: [(VirtualAddress, Translation)] = []
      pmap.forEachMapping { va, t in seen.append((va, t)) }
      #expect(seen.map(\.0) == [vas[0], vas[1], address(pml4: 2, pd: 1), vas[2]])
      #expect(seen.map(\.1.size) == [.size4K, .size4K, .size2M, .size4K])
      #expect(
        seen.map(\.1.frame) == [
          machine.dataFrame(0), machine.dataFrame(1), PhysicalAddress(1 << 21), machine.dataFrame(2),
        ])
      var inRange: [VirtualAddress] = []
      pmap.forEachMapping(in: try range(address(pml4: 0, pd: 1), bytes: 1 << 39)) { va, _ in inRange.append(va) }
      #expect(inRange == [vas[1]])
    }
    try check(format.ops)
  }
}
