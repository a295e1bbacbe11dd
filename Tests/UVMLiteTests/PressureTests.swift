import Pmap
import PmapEPT
import PmapNative
import Testing
import UVMLite
import UVMLiteHost

@Suite struct PressureTests {
  @Test func twoGuestsUnderPressureBothMakeProgress() throws {
    let h = Harness(frames: 48, low: 4, high: 12)
    let a = try h.guest(pages: 64)
    let b = try h.guest(pages: 64)
    let host = try h.hostPmap()
    try h.uvm.mapIntoHost(a, pmap: host, at: VirtualAddress(0x1000_0000_0000))
    try h.uvm.mapIntoHost(b, pmap: host, at: VirtualAddress(0x2000_0000_0000))
    var version = [[Int]](repeating: [Int](repeating: 0, count: 64), count: 2)
    var x: UInt64 = 12345
    for step in 0..<3000 {
      x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      let which = Int(x >> 63)
      let g = which == 0 ? a : b
      let p = Int((x >> 20) % 64)
      let w = Int((x >> 40) % 512)
      let gpa = UInt64(p) << 12 | UInt64(w) << 3
      if x >> 10 & 3 == 0 {
        version[which][p] = step
        // One word written per step; the VMM writes a quarter of them through its mapping.
        let v = Harness.value(guest: g.id, page: p, word: 0, version: step)
        if step % 4 == 0 {
          try h.mmu.hostStore(g, UInt64(p) << 12, v)
        } else {
          try h.mmu.guestStore(g, UInt64(p) << 12, v)
        }
      } else {
        _ = try h.mmu.guestLoad(g, gpa)
      }
      if step % 500 == 0 { h.checkInvariants("step \(step)") }
    }
    #expect(a.faults > 100 && b.faults > 100)
    #expect(h.uvm.statistics.swapInFaults > 0 && h.uvm.statistics.pageouts > 0)
    for (which, g) in [(0, a), (1, b)] {
      for p in 0..<64 {
        let expected =
          version[which][p] == 0 ? 0 : Harness.value(guest: g.id, page: p, word: 0, version: version[which][p])
        #expect(try h.mmu.guestLoad(g, UInt64(p) << 12) == expected, "guest \(which) page \(p)")
      }
    }
    h.checkInvariants("end")
  }

  @Test func swapExhaustionKeepsPagesResidentAndLosesNothing() throws {
    let h = Harness(frames: 16, swapSlots: 8, low: 2, high: 4)
    let g = try h.guest(pages: 64)
    var written = 0
    var failure: AccessError? = nil
    for p in 0..<64 {
      do throws(AccessError) {
        try h.mmu.guestStore(g, UInt64(p) << 12, Harness.value(guest: 0, page: p, word: 0, version: 1))
        written += 1
      } catch {
        failure = error
        break
      }
    }
    // 16 frames + 8 slots hold 24 dirty pages; the next write finds no frame.
    #expect(failure == .fault(.outOfMemory))
    #expect(written == 24)
    #expect(h.uvm.swap.slotsInUse == 8)
    #expect(h.uvm.statistics.swapFullSkips > 0)
    h.checkInvariants("full")
    // Nothing lost: resident pages read back through the guest's mappings (no frame needed),
    // swapped ones are in their slots.
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
    defer { buffer.deallocate() }
    var resident = 0
    for p in 0..<written {
      let expected = Harness.value(guest: 0, page: p, word: 0, version: 1)
      switch g.residency(ofPage: p) {
      case .resident:
        resident += 1
        #expect(try h.mmu.guestLoad(g, UInt64(p) << 12) == expected)
      case .swapped(let slot):
        try h.store.readPage(fromSlot: slot, into: buffer)
        #expect(buffer.load(as: UInt64.self) == expected)
      case .untouched: Issue.record("page \(p) lost")
      }
    }
    #expect(resident == 16)
    h.checkInvariants("read back")
  }

  @Test func swapFullLeavesADirtyPageMappedAndUntouched() throws {
    let h = Harness(frames: 16, swapSlots: 0)
    let g = try h.guest(pages: 4)
    try h.mmu.guestStore(g, 0, 42)
    let frame = try #require(g.ept.extract(VirtualAddress(0)))
    #expect(h.uvm.evict(g, page: 0) == .kept)
    #expect(h.uvm.statistics.swapFullSkips == 1)
    // Still mapped where it was: the next access needs no fault.
    #expect(g.ept.extract(VirtualAddress(0)) == frame)
    let faults = h.uvm.statistics.faults
    #expect(try h.mmu.guestLoad(g, 0) == 42)
    #expect(h.uvm.statistics.faults == faults)
    h.checkInvariants()
  }

  @Test func aReusedFrameDoesNotInheritItsLastOwnersAttributes() throws {
    let h = Harness(frames: 16)
    let old = try h.guest(pages: 16)
    for p in 0..<16 { try h.mmu.guestStore(old, UInt64(p) << 12, 1) }  // every frame dirty
    h.uvm.destroyGuest(old)
    let g = try h.guest(pages: 4)
    let writes = h.store.writes
    #expect(try h.mmu.guestLoad(g, 0) == 0)  // clean zero-fill in a frame that was dirty
    #expect(h.uvm.evict(g, page: 0) == .evicted(wroteToSwap: false))
    #expect(g.residency(ofPage: 0) == .untouched)
    #expect(h.store.writes == writes)
    h.checkInvariants()
  }

  @Test func swapWriteErrorKeepsThePageResident() throws {
    let h = Harness(frames: 16)
    let g = try h.guest(pages: 4)
    try h.mmu.guestStore(g, 0, 42)
    h.store.failWrites = .deviceError(5)
    #expect(h.uvm.evict(g, page: 0) == .kept)
    #expect(h.uvm.statistics.swapWriteErrors == 1)
    #expect(h.uvm.swap.slotsInUse == 0)
    guard case .resident = g.residency(ofPage: 0) else { Issue.record("page left memory"); return }
    h.checkInvariants("kept")
    #expect(try h.mmu.guestLoad(g, 0) == 42)  // soft fault: mapped again
    h.store.failWrites = nil
    #expect(h.uvm.evict(g, page: 0) == .evicted(wroteToSwap: true))
    #expect(try h.mmu.guestLoad(g, 0) == 42)
    h.checkInvariants("recovered")
  }

  @Test func swapReadErrorFailsTheFaultAndKeepsThePageInSwap() throws {
    let h = Harness(frames: 16)
    let g = try h.guest(pages: 4)
    try h.mmu.guestStore(g, 8, 99)
    #expect(h.uvm.evict(g, page: 0) == .evicted(wroteToSwap: true))
    let free = h.pool.freeCount
    h.store.failReads = .deviceError(5)
    #expect(throws: AccessError.fault(.swapReadFailed(.deviceError(5)))) { try h.mmu.guestLoad(g, 8) }
    #expect(h.pool.freeCount == free)
    #expect(g.residency(ofPage: 0) == .swapped(slot: try #require(slotOf(g, 0))))
    h.checkInvariants("failed read")
    h.store.failReads = nil
    #expect(try h.mmu.guestLoad(g, 8) == 99)
    h.checkInvariants()
  }

  @Test func pagedaemonReachesTheHighWatermarkAndGivesReferencedPagesASecondChance() throws {
    let h = Harness(frames: 64, low: 8, high: 16)
    let g = try h.guest(pages: 64)
    for p in 0..<56 { try h.mmu.guestStore(g, UInt64(p) << 12, UInt64(p)) }
    #expect(h.pool.freeCount == 8 && h.uvm.statistics.pagedaemonRuns == 0)
    let run = h.uvm.runPagedaemon()
    #expect(run.reachedTarget && h.pool.freeCount >= 16)
    #expect(run.freed >= 8 && run.scanned > run.freed)
    #expect(h.pool.count(.inactive) > 0)
    h.checkInvariants("after a run")
    // Touch every page now on the inactive queue: each has been referenced since deactivation.
    var touched: [Int] = []
    for p in 0..<64 {
      if case .resident(let r, _) = g.residency(ofPage: p), h.pool.queue(of: r) == .inactive {
        touched.append(p)
        _ = try h.mmu.guestLoad(g, UInt64(p) << 12)
      }
    }
    let reactivations = h.uvm.statistics.reactivations
    for p in 56..<64 { try h.mmu.guestStore(g, UInt64(p) << 12, 1) }
    _ = h.uvm.runPagedaemon()
    #expect(h.uvm.statistics.reactivations >= reactivations + touched.count)
    for p in touched {
      guard case .resident = g.residency(ofPage: p) else {
        Issue.record("page \(p) was referenced on the inactive queue but evicted")
        continue
      }
    }
    for p in 0..<64 { #expect(try h.mmu.guestLoad(g, UInt64(p) << 12) == (p < 56 ? UInt64(p) : 1)) }
    h.checkInvariants("end")
  }

  @Test func destroyingAGuestGivesEverythingBack() throws {
    let h = Harness(frames: 16)
    let g = try h.guest(pages: 40)
    let tablesBefore = h.tables.framesInUse
    for p in 0..<40 { try h.mmu.guestStore(g, UInt64(p) << 12, 1) }
    #expect(h.uvm.swap.slotsInUse > 0)
    h.uvm.destroyGuest(g)
    #expect(h.pool.freeCount == 16)
    #expect(h.uvm.swap.slotsInUse == 0)
    #expect(h.uvm.allGuests.isEmpty)
    #expect(h.tables.framesInUse < tablesBefore)  // the EPT root went back
    h.checkInvariants()
  }
}
