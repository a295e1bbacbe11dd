import Pmap
import PmapEPT
import PmapNative
import Testing
import UVMLite
import UVMLiteHost

@Suite struct UVMBadInputTests {
  @Test(
    arguments: [16 << 12, 16 << 12 | 0xfff, 1 << 47, 1 << 48, 1 << 52, UInt64.max, 0x8000_0000_0000_0000] as [UInt64])
  func gpaOutsideRAMIsMMIOAndChangesNothing(gpa: UInt64) throws {
    let h = Harness(frames: 16)
    let g = try h.guest(pages: 16)
    let free = h.pool.freeCount
    #expect(try h.uvm.fault(g, at: GuestPhysicalAddress(gpa), access: .write) == .outsideGuestMemory)
    let exit = EPTViolationExit(exitQualification: 0x2, guestPhysicalAddress: gpa)
    #expect(try h.uvm.fault(g, violation: exit) == .outsideGuestMemory)
    #expect(throws: AccessError.outsideGuestMemory) { try h.mmu.guestLoad(g, gpa) }
    #expect(h.pool.freeCount == free && g.ept.statistics.residentPages == 0)
    #expect(h.uvm.statistics.outsideRAMFaults == 3)
    h.checkInvariants()
  }

  @Test func garbageExitQualificationsNeverTrap() throws {
    let h = Harness(frames: 16)
    let g = try h.guest(pages: 16)
    var x: UInt64 = 0x1234_5678
    for _ in 0..<2000 {
      x ^= x << 13
      x ^= x >> 7
      x ^= x << 17
      let exit = EPTViolationExit(exitQualification: x, guestPhysicalAddress: x.byteSwapped & 0x1_ffff)
      _ = exit.isWellFormed
      _ = exit.isFinalTranslation
      _ = exit.guestPage
      _ = try h.uvm.fault(g, violation: exit)
    }
    h.checkInvariants()
  }

  @Test func accessBeyondTheRAMsRightsIsDenied() throws {
    let h = Harness(frames: 16)
    let rom = try h.guest(pages: 4, protection: .readExecute)
    #expect(try h.uvm.fault(rom, at: GuestPhysicalAddress(0x1000), access: .write) == .accessDenied)
    #expect(try h.uvm.fault(rom, at: GuestPhysicalAddress(0x1000), access: .execute) == .resolved(.zeroFill))
    #expect(rom.ept.translation(of: VirtualAddress(0x1000))?.protection.contains(.write) == false)
    #expect(throws: AccessError.accessDenied) { try h.mmu.guestStore(rom, 0x1000, 1) }
    #expect(h.uvm.statistics.deniedFaults == 2)
    h.checkInvariants()
  }

  @Test func faultKindsAreCounted() throws {
    let h = Harness(frames: 16)
    let g = try h.guest(pages: 4)
    #expect(try h.uvm.fault(g, at: GuestPhysicalAddress(0x10), access: .write) == .resolved(.zeroFill))
    #expect(try h.uvm.fault(g, at: GuestPhysicalAddress(0x20), access: .read) == .resolved(.alreadyResident))
    #expect(h.uvm.evict(g, page: 0) == .evicted(wroteToSwap: true))
    #expect(try h.uvm.fault(g, at: GuestPhysicalAddress(0x30), access: .read) == .resolved(.swapIn))
    let s = h.uvm.statistics
    #expect(s.zeroFillFaults == 1 && s.residentFaults == 1 && s.swapInFaults == 1 && s.faults == 3)
    #expect(s.pageouts == 1 && s.evictions == 1)
    h.checkInvariants()
  }

  @Test func badGuestsAndHostMappingsAreRefused() throws {
    let h = Harness(frames: 16)
    let sink = h.sink
    #expect(throws: GuestCreationError.badSize) { try h.uvm.makeGuest(byteCount: 0, invalidation: sink) }
    #expect(throws: GuestCreationError.badSize) { try h.uvm.makeGuest(byteCount: 4097, invalidation: sink) }
    #expect(throws: GuestCreationError.badSize) {
      try h.uvm.makeGuest(byteCount: 4096, invalidation: sink, protection: .write)
    }
    let g = try h.guest(pages: 4)
    let host = try h.hostPmap()
    #expect(throws: HostMappingError.badRange) {
      try h.uvm.mapIntoHost(g, pmap: host, at: VirtualAddress(0x7fff_ffff_f000))
    }
    #expect(throws: HostMappingError.badRange) {
      try h.uvm.mapIntoHost(g, pmap: host, at: VirtualAddress(0xffff_8000_0000_0000))
    }
    let foreign = try NativePmap(memory: h.ram.memory, allocator: h.tables, invalidation: sink)
    #expect(throws: HostMappingError.foreignPmap) {
      try h.uvm.mapIntoHost(g, pmap: foreign, at: VirtualAddress(0x1000))
    }
    try h.uvm.mapIntoHost(g, pmap: host, at: VirtualAddress(0x1000))
    #expect(throws: HostMappingError.alreadyMapped) { try h.uvm.mapIntoHost(g, pmap: host, at: VirtualAddress(0x1000)) }
    h.tables.failAtCall = h.tables.allocationCalls + 1
    #expect(throws: GuestCreationError.outOfPageTableMemory) {
      try h.uvm.makeGuest(byteCount: 4096, invalidation: sink)
    }
    h.tables.failAtCall = nil
    h.checkInvariants()
  }

  /// A fault storm while the page-table allocator fails from the k-th call on: every failing
  /// fault reports outOfPageTableMemory and changes nothing; once it recovers, all succeed.
  @Test(arguments: [1, 2, 3, 5, 8])
  func faultStormWithTheAllocatorFailing(k: Int) throws {
    let h = Harness(frames: 32)
    let g = try h.guest(pages: 4096)
    let host = try h.hostPmap()
    try h.uvm.mapIntoHost(g, pmap: host, at: VirtualAddress(0x4000_0000_0000))
    try h.mmu.guestStore(g, 0, 1)
    try h.mmu.hostStore(g, 0, 2)
    h.tables.failAtCall = h.tables.allocationCalls + k
    h.tables.keepFailing = true
    var failures = 0
    var values: [Int: UInt64] = [0: 2]
    for i in 0..<400 {
      // Pages spread over many page tables (every 512th page needs a new one), guest and host.
      let p = (i * 613) % 4096
      let before = (h.pool.freeCount, g.residency(ofPage: p), g.ept.statistics, host.statistics)
      let runs = h.uvm.statistics.pagedaemonRuns
      do throws(AccessError) {
        if i % 3 == 0 {
          try h.mmu.hostStore(g, UInt64(p) << 12, UInt64(i))
        } else {
          try h.mmu.guestStore(g, UInt64(p) << 12, UInt64(i))
        }
        values[p] = UInt64(i)
      } catch {
        #expect(error == .fault(.outOfPageTableMemory))
        failures += 1
        // Nothing changed by the failing fault: the page is where it was, the frame went back.
        #expect(g.residency(ofPage: p) == before.1)
        if h.uvm.statistics.pagedaemonRuns == runs {
          // No pagedaemon run inside the fault: nothing at all changed.
          #expect(g.ept.statistics == before.2 && host.statistics == before.3 && h.pool.freeCount == before.0)
        }
      }
      if i % 50 == 0 { h.checkInvariants("storm \(i)") }
    }
    #expect(failures > 0)
    h.tables.failAtCall = nil
    h.tables.keepFailing = false
    for (p, v) in values { #expect(try h.mmu.guestLoad(g, UInt64(p) << 12) == v, "page \(p)") }
    h.checkInvariants("after the storm")
  }
}

@Suite struct EPTViolationExitTests {
  @Test func decodesTheSDMFields() {
    // A write to a page mapped read-only, with a valid linear address, final translation, NMI unblocking.
    let q: UInt64 = 1 << 1 | 1 << 3 | 1 << 7 | 1 << 8 | 1 << 12
    let v = EPTViolationExit(exitQualification: q, guestPhysicalAddress: 0x1234_5678)
    #expect(v.access == .write)
    #expect(v.permitted == .read)
    #expect(v.wasPresent)
    #expect(v.hasGuestLinearAddress && v.isFinalTranslation == true)
    #expect(v.unblocksNMI && !v.isShadowStackAccess && !v.isAsynchronous)
    #expect(v.isWellFormed)
    #expect(v.guestPage == VirtualAddress(0x1234_5000))
  }

  @Test func notPresentFetchAndPagingStructureAccess() {
    let v = EPTViolationExit(exitQualification: 1 << 2 | 1 << 7, guestPhysicalAddress: 0x2000)
    #expect(v.access == .execute && v.permitted.isEmpty && !v.wasPresent)
    #expect(v.isFinalTranslation == false)
    let none = EPTViolationExit(exitQualification: 1, guestPhysicalAddress: 0)
    #expect(none.isFinalTranslation == nil)
    #expect(EPTViolationExit(access: .write, permitted: .read, guestPhysicalAddress: 5).exitQualification == 0b1010)
  }

  @Test(
    arguments: [
      0,  // no access kind
      1 << 8 | 1,  // bit 8 without bit 7
      1 << 17 | 1,  // reserved
      1 | 1 << 3,  // a read on a readable page is no violation
      UInt64.max,
    ] as [UInt64])
  func malformedQualificationsAreFlagged(q: UInt64) {
    #expect(!EPTViolationExit(exitQualification: q, guestPhysicalAddress: 0).isWellFormed)
  }

  @Test func addressesBeyond48BitsHaveNoPage() {
    #expect(EPTViolationExit(exitQualification: 1, guestPhysicalAddress: 1 << 48).guestPage == nil)
    #expect(EPTViolationExit(exitQualification: 1, guestPhysicalAddress: UInt64.max).guestPage == nil)
    #expect(EPTViolationExit(exitQualification: 1, guestPhysicalAddress: (1 << 48) - 1).guestPage != nil)
  }
}
