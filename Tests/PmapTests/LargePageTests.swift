import Pmap
import PmapEPT
import PmapHost
import PmapNative
import Testing

@Suite("2 MiB and 1 GiB pages")
struct LargePageTests {
  static let largeSizes: [PageSize] = [.size2M, .size1G]

  @Test("enter, extract, translation, unwire, protect, remove", arguments: Format.allCases, largeSizes)
  func lifecycle(_ format: Format, _ size: PageSize) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      let va = address(pml4: 1, pdpt: 2, pd: size == .size2M ? 3 : 0)
      let pa = PhysicalAddress(size.bytes * 5)
      let tables = size == .size2M ? 3 : 2
      try pmap.enter(va, pa, protection: .readWrite, access: [.read], options: .wired, size: size)
      #expect(pmap.statistics == stats(size.basePageCount, size.basePageCount, tables))
      #expect(size.basePageCount == (size == .size2M ? 512 : 262_144))
      expectInvariants(pmap)

      for offset: UInt64 in [0, 0x1234, 0x1000, size.bytes / 2 + 0x18, size.bytes - 1] {
        #expect(pmap.extract(va.plus(offset)) == pa.plus(offset), "offset \(offset)")
        let t = try #require(pmap.translation(of: va.plus(offset)))
        #expect(t.physicalAddress == pa.plus(offset))
        #expect(t.frame == pa)
        #expect(t.size == size)
      }
      #expect(pmap.extract(va.plus(size.bytes)) == nil)
      #expect(pmap.extract(VirtualAddress(va.rawValue - 0x1000)) == nil)
      let t = try #require(pmap.translation(of: va))
      #expect(t.protection == .readWrite)
      #expect(t.cacheMode == .writeBack)
      #expect(t.isWired)
      #expect(t.attributes == [.referenced, .writable])
      let leaf = try #require(pmap.lookupLeaf(va.plus(0x5000)))
      #expect(leaf.level == size.leafLevel)
      #expect(F.isLargeLeaf(leaf.value))

      try pmap.unwire(va.plus(0x3000))
      #expect(pmap.statistics == stats(size.basePageCount, 0, tables))
      try hardwareAccesses(pmap, at: va, write: true)
      try pmap.protect(range(va, bytes: size.bytes), to: .read)
      let r = try #require(pmap.translation(of: va.plus(0x10)))
      #expect(r.protection == .read)
      #expect(r.attributes == [.referenced, .modified])
      #expect(r.size == size)
      expectInvariants(pmap)

      machine.sink.reset()
      try pmap.remove(range(va, bytes: size.bytes))
      #expect(pmap.extract(va) == nil)
      #expect(pmap.extract(va.plus(size.bytes - 1)) == nil)
      #expect(pmap.statistics == stats(0, 0, 1))
      #expect(machine.allocator.framesInUse == 1)
      #expect(machine.sink.covered(va, root: pmap.root), "reported by its first address")
      expectInvariants(pmap)
    }
    try check(format.ops)
  }

  @Test("cache modes of large pages", arguments: Format.allCases, largeSizes)
  func cacheModes(_ format: Format, _ size: PageSize) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      for (i, mode) in CacheMode.allCases.enumerated() {
        let va = address(pml4: 2, pdpt: UInt64(i), pd: size == .size2M ? 1 : 0)
        let pa = PhysicalAddress(size.bytes * UInt64(i + 1))
        try pmap.enter(va, pa, protection: .read, cacheMode: mode, size: size)
        let t = try #require(pmap.translation(of: va.plus(0x1000)))
        #expect(t.cacheMode == mode)
        #expect(t.frame == pa, "the PAT bit of a large leaf is not part of the frame")
        #expect(pmap.extract(va.plus(0x1000)) == pa.plus(0x1000))
      }
      #expect(pmap.statistics.residentPages == CacheMode.allCases.count * size.basePageCount)
      expectInvariants(pmap)
    }
    try check(format.ops)
  }

  @Test("native large leaves put the PAT bit at bit 12")
  func nativeLargePAT() throws {
    let machine = makeMachine()
    let pmap = try NativePTE.makePmap(on: machine)
    let va = address(pml4: 0, pd: 1)
    try pmap.enter(va, PhysicalAddress(1 << 21), protection: .read, cacheMode: .writeCombining, size: .size2M)
    let value = try #require(pmap.lookupLeaf(va)).value
    #expect(value & NativePTE.patLarge != 0)
    #expect(value & NativePTE.pageSize != 0)
    #expect(value & (NativePTE.writeThrough | NativePTE.cacheDisable) == 0)
  }

  @Test("large and small pages side by side", arguments: Format.allCases)
  func mixedSizes(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      // A 4K page in PD entry 0, a 2M page in PD entry 1, a 1G page in PDPT entry 1.
      try pmap.enter(address(pml4: 0, pt: 511), machine.dataFrame(0), protection: .read)
      try pmap.enter(address(pml4: 0, pd: 1), PhysicalAddress(1 << 21), protection: .read, size: .size2M)
      try pmap.enter(address(pml4: 0, pdpt: 1), PhysicalAddress(1 << 30), protection: .read, size: .size1G)
      #expect(pmap.statistics == stats(1 + 512 + 262_144, 0, 4))
      #expect(pmap.translation(of: address(pml4: 0, pt: 511))?.size == .size4K)
      #expect(pmap.translation(of: address(pml4: 0, pd: 1, pt: 7))?.size == .size2M)
      #expect(pmap.translation(of: address(pml4: 0, pdpt: 1, pd: 7))?.size == .size1G)
      // One range over all three.
      try pmap.remove(range(address(pml4: 0, pt: 511), bytes: (2 << 30) - (511 << 12)))
      #expect(pmap.statistics == stats(0, 0, 1))
      #expect(machine.allocator.framesInUse == 1)
      expectInvariants(pmap)
      // Re-entering a large page over a large page of another frame replaces it.
      try pmap.enter(address(pml4: 0, pd: 1), PhysicalAddress(1 << 21), protection: .read, size: .size2M)
      try pmap.enter(address(pml4: 0, pd: 1), PhysicalAddress(2 << 21), protection: .readWrite, size: .size2M)
      #expect(pmap.extract(address(pml4: 0, pd: 1, offset: 0x1234)) == PhysicalAddress((2 << 21) + 0x1234))
      #expect(pmap.statistics == stats(512, 0, 3))
      expectInvariants(pmap)
    }
    try check(format.ops)
  }
}
