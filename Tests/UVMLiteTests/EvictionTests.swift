import Pmap
import PmapEPT
import PmapNative
import Testing
import UVMLite
import UVMLiteHost

@Suite struct EvictionTests {
  @Test(arguments: [true, false])
  func dataSurvivesEvictionAndSwapInByteForByte(accessedDirty: Bool) throws {
    let h = Harness(frames: 32)
    let g = try h.guest(pages: 96, accessedDirty: accessedDirty)
    for p in 0..<96 { try h.fillPage(g, p, version: 1) }
    h.checkInvariants("after writing")
    #expect(h.uvm.statistics.pageouts > 0)
    #expect(g.residentPages <= 32)
    for p in 0..<96 { #expect(try h.pageHolds(g, p, version: 1), "page \(p)") }
    #expect(h.uvm.statistics.swapInFaults > 0)
    h.checkInvariants("after reading back")
    // Raw bytes too: a page swapped in equals what was evicted, all 4096 bytes.
    // Read back, so clean: dropped without a write when the EPT has A/D, written when it has not.
    let result = h.uvm.evict(g, page: 5)
    #expect(result == .notResident || result == .evicted(wroteToSwap: !accessedDirty))
    #expect(g.residency(ofPage: 5) == .swapped(slot: try #require(slotOf(g, 5))))
    let p = try h.mmu.guestPointer(g, 5 << 12, write: false)
    let bytes = UnsafeRawBufferPointer(start: p, count: 4096)
    var expected = [UInt8](repeating: 0, count: 4096)
    expected.withUnsafeMutableBytes { b in
      for w in 0..<512 {
        b.storeBytes(of: Harness.value(guest: g.id, page: 5, word: w, version: 1), toByteOffset: w * 8, as: UInt64.self)
      }
    }
    #expect(Array(bytes) == expected)
    h.checkInvariants("end")
  }

  @Test func pageDirtiedOnlyThroughTheHostMappingIsWrittenOut() throws {
    let h = Harness(frames: 32)
    let g = try h.guest(pages: 8)
    let host = try h.hostPmap()
    try h.uvm.mapIntoHost(g, pmap: host, at: VirtualAddress(0x7000_0000_0000))
    // The guest only reads the page: zero-filled, clean.
    #expect(try h.mmu.guestLoad(g, 3 << 12) == 0)
    #expect(!h.pages.isModified(h.pool.frame(try #require(record(g, 3)))))
    // The VMM writes it through its native mapping: native D, not EPT D.
    try h.mmu.hostStore(g, 3 << 12 | 8, 0xdead_beef)
    let frame = h.pool.frame(try #require(record(g, 3)))
    #expect(h.pages.mappingCount(of: frame) == 2)
    #expect(g.ept.translation(of: VirtualAddress(3 << 12))?.attributes.contains(.modified) == false)
    h.checkInvariants("shared by two pmaps")
    let writesBefore = h.store.writes
    #expect(h.uvm.evict(g, page: 3) == .evicted(wroteToSwap: true))
    #expect(h.store.writes == writesBefore + 1)
    #expect(g.residency(ofPage: 3) == .swapped(slot: try #require(slotOf(g, 3))))
    #expect(host.extract(VirtualAddress(0x7000_0000_3000)) == nil)
    #expect(g.ept.extract(VirtualAddress(3 << 12)) == nil)
    h.checkInvariants("evicted")
    #expect(try h.mmu.guestLoad(g, 3 << 12 | 8) == 0xdead_beef)
    #expect(try h.mmu.hostLoad(g, 3 << 12 | 8) == 0xdead_beef)
    h.checkInvariants("back")
  }

  @Test func cleanPageWithSwapCopyIsNotRewritten() throws {
    let h = Harness(frames: 16)
    let g = try h.guest(pages: 4)
    try h.fillPage(g, 1, version: 7)
    #expect(h.uvm.evict(g, page: 1) == .evicted(wroteToSwap: true))
    #expect(h.store.writes == 1)
    #expect(try h.pageHolds(g, 1, version: 7))  // swap-in, reads only
    #expect(h.uvm.statistics.swapInFaults == 1)
    let clean = h.uvm.statistics.cleanEvictions
    #expect(h.uvm.evict(g, page: 1) == .evicted(wroteToSwap: false))
    #expect(h.store.writes == 1)
    #expect(h.uvm.statistics.cleanEvictions == clean + 1)
    #expect(try h.pageHolds(g, 1, version: 7))
    h.checkInvariants("clean drop")
    // Written again after the swap-in: the copy is stale, so it is rewritten to the same slot.
    try h.fillPage(g, 1, version: 8)
    #expect(h.uvm.evict(g, page: 1) == .evicted(wroteToSwap: true))
    #expect(h.store.writes == 2)
    #expect(try h.pageHolds(g, 1, version: 8))
    #expect(h.uvm.swap.slotsInUse == 1)
    h.checkInvariants("rewritten")
  }

  @Test func untouchedAndZeroPagesTakeNoSwap() throws {
    let h = Harness(frames: 16)
    let g = try h.guest(pages: 4)
    #expect(try h.mmu.guestLoad(g, 2 << 12) == 0)
    #expect(h.uvm.evict(g, page: 2) == .evicted(wroteToSwap: false))
    #expect(g.residency(ofPage: 2) == .untouched)
    #expect(h.uvm.swap.slotsInUse == 0)
    #expect(h.uvm.evict(g, page: 0) == .notResident)
    #expect(try h.mmu.guestLoad(g, 2 << 12) == 0)
    #expect(h.uvm.statistics.zeroFillFaults == 2)
    h.checkInvariants()
  }

  @Test func wiredPagesSurviveAnyPressure() throws {
    let h = Harness(frames: 24)
    let g = try h.guest(pages: 200)
    try h.uvm.wire(g, pages: 0..<8)
    #expect(g.wiredPages == 8 && h.pool.count(.wired) == 8)
    for p in 0..<8 { try h.fillPage(g, p, version: 3) }
    var frames: [Int] = []
    for p in 0..<8 { frames.append(try #require(record(g, p))) }
    #expect(g.ept.translation(of: VirtualAddress(0))?.isWired == true)
    // Pressure: 192 more pages through 16 frames, twice.
    for round in 0..<2 { for p in 8..<200 { try h.mmu.guestStore(g, UInt64(p) << 12, UInt64(round + 1)) } }
    h.checkInvariants("under pressure")
    #expect(h.uvm.statistics.evictions > 300)
    for p in 0..<8 {
      #expect(record(g, p) == frames[p])
      #expect(h.uvm.evict(g, page: p) == .wired)
      #expect(g.ept.translation(of: VirtualAddress(UInt64(p) << 12))?.isWired == true)
      #expect(try h.pageHolds(g, p, version: 3))
    }
    // Every frame wired but the watermark's worth: faults still work, wired pages stay.
    try h.uvm.unwire(g, pages: 0..<8)
    #expect(g.wiredPages == 0 && g.ept.statistics.wiredPages == 0)
    #expect(throws: WiringError.notWired) { try h.uvm.unwire(g, pages: 0..<1) }
    #expect(throws: WiringError.outOfRange) { try h.uvm.wire(g, pages: 199..<201) }
    h.checkInvariants("unwired")
  }

  @Test func everyFrameWiredFailsCleanly() throws {
    let h = Harness(frames: 8, low: 2, high: 4)
    let g = try h.guest(pages: 16)
    try h.uvm.wire(g, pages: 0..<8)
    #expect(h.pool.freeCount == 0)
    #expect(throws: AccessError.fault(.outOfMemory)) { try h.mmu.guestStore(g, 9 << 12, 1) }
    #expect(g.residency(ofPage: 9) == .untouched)
    h.checkInvariants()
  }
}

/// The frame record holding page `p`, if resident.
func record(_ g: GuestMemory, _ p: Int) -> Int? {
  if case .resident(let r, _) = g.residency(ofPage: p) { return r }
  return nil
}

/// The swap slot of page `p`, resident or not.
func slotOf(_ g: GuestMemory, _ p: Int) -> Int? {
  switch g.residency(ofPage: p) {
  case .resident(_, let s): s
  case .swapped(let s): s
  case .untouched: nil
  }
}
