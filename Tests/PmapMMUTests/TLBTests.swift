import Pmap
import PmapEPT
import PmapHost
import PmapMMU
import PmapNative
import Testing

/// A CPU over hand-built native tables mapping `va` to `pa`.
struct TLBSetup {
  let t = Tables()
  let root: UInt64
  let va = linear(1, 2, 3, 4)
  let pa: UInt64 = 0x50_0000
  let entries: [Int: UInt64]
  let cpu: SimulatedCPU

  init(leafFlags: UInt64 = bitP | bitRW | bitUS, leafLevel: Int = 1) {
    root = t.table()
    entries = t.map(va, to: pa, root: root, leafLevel: leafLevel, leafFlags: leafFlags)
    cpu = SimulatedCPU(memory: t.memory)
    cpu.loadCR3(PhysicalAddress(root))
  }

  var leaf: UInt64 { entries.keys.min().map { entries[$0]! }! }
}

@Suite("TLB model: caching, invalidation rules, stale-translation checking")
struct TLBTests {
  @Test("a walk fills the TLB; the next access hits; data really moves")
  func hitAfterWalk() {
    let s = TLBSetup()
    let w = s.cpu.write(0x1122_3344_5566_7788, to: s.va + 8, privilege: .user)
    #expect(success(w)?.fromTLB == false && success(w)?.physicalAddress.rawValue == s.pa + 8)
    #expect(s.t.load(s.pa + 8) == 0x1122_3344_5566_7788)
    let r = s.cpu.read(s.va + 8, privilege: .user)
    #expect(success(r)?.fromTLB == true && success(r)?.value == 0x1122_3344_5566_7788)
    #expect(s.cpu.statistics.hits == 1 && s.cpu.statistics.walks == 1)
    #expect(s.cpu.staleTranslations.isEmpty)
  }

  @Test("an access crossing a page boundary translates both pages first")
  func crossingAccess() {
    let s = TLBSetup()
    s.t.map(s.va + 0x1000, to: 0x60_0000, root: s.root)
    let bytes: [UInt8] = Array(1...16)
    let w = bytes.withUnsafeBytes { s.cpu.store($0, to: s.va + 0xff8, privilege: .user) }
    #expect(success(w) != nil)
    #expect(s.t.load(s.pa + 0xff8) == 0x0807_0605_0403_0201 && s.t.load(0x60_0000) == 0x100f_0e0d_0c0b_0a09)
    // The second page read-only: nothing is written to the first.
    s.t.map(s.va + 0x2000, to: 0x70_0000, root: s.root, leafFlags: bitP | bitUS)
    s.t.store(0, at: s.pa + 0xff8)
    let f = s.cpu.write(~0, to: s.va + 0x1ffc, privilege: .user)
    #expect(pageFault(f)?.address == s.va + 0x2000, "CR2 is the first byte of the faulting page")
    #expect(s.t.load(0x60_0ff8) & 0xffff_ffff_0000_0000 != 0xffff_ffff_0000_0000)
  }

  @Test("removing an entry without INVLPG: the CPU keeps using it and the checker says so")
  func staleRemoval() {
    let s = TLBSetup()
    #expect(success(s.cpu.read(s.va)) != nil)
    s.t.store(0, at: s.leaf)
    let r = s.cpu.read(s.va)
    #expect(success(r)?.fromTLB == true, "architecturally the stale translation is still used")
    let stale = s.cpu.takeStaleTranslations()
    #expect(stale.count == 1 && stale.first?.reasons == [.removed] && stale.first?.currentPhysicalAddress == nil)
    s.cpu.invalidatePage(s.va + 0x123)
    #expect(pageFault(s.cpu.read(s.va))?.errorCode == [])
    #expect(s.cpu.staleTranslations.isEmpty)
  }

  @Test("frame change and rights reduction without invalidation are reported; rights increase is not")
  func staleChanges() {
    let s = TLBSetup()
    _ = s.cpu.write(1, to: s.va, privilege: .user)
    s.t.store(0x90_0000 | bitP | bitUS | bitA | bitD, at: s.leaf)  // new frame, read-only
    _ = s.cpu.write(2, to: s.va, privilege: .user)
    let stale = s.cpu.takeStaleTranslations()
    #expect(stale.first?.reasons == [.frameChanged, .rightsReduced])
    #expect(s.t.load(s.pa) == 2, "the write went through the stale translation")
    s.cpu.invalidatePage(s.va)
    // Read-only cached; the entry becomes writable without INVLPG: the write re-walks, no report.
    _ = s.cpu.read(s.va, privilege: .user)
    s.t.store(0x90_0000 | bitP | bitRW | bitUS | bitA | bitD, at: s.leaf)
    #expect(success(s.cpu.write(3, to: s.va, privilege: .user))?.fromTLB == false)
    #expect(s.cpu.staleTranslations.isEmpty)
  }

  @Test("hostile addresses through a CPU: unbacked data, non-canonical, vectors")
  func hostile() {
    let s = TLBSetup()
    s.t.map(linear(9), to: 0x3_0000_0000, root: s.root)
    #expect(failure(s.cpu.read(linear(9))) == .unbackedPhysicalAddress(0x3_0000_0000))
    let gp = failure(s.cpu.write(1, to: 0x8000_0000_0000))
    #expect(gp == .generalProtection(linearAddress: 0x8000_0000_0000) && gp?.vector == 13)
    #expect(failure(s.cpu.read(linear(8)))?.vector == 14)
    // A write reaching past the end of RAM writes nothing at all.
    s.t.map(linear(10), to: s.t.ram.size - 0x1000, root: s.root)
    #expect(failure(s.cpu.write(~0, to: linear(10, offset: 0xffc))) != nil)
    #expect(s.t.load(s.t.ram.size - 8) == 0)
  }

  @Test("a write through a clean cached entry re-walks and sets D")
  func dirtyRewalk() {
    let s = TLBSetup()
    #expect(success(s.cpu.read(s.va))?.fromTLB == false)
    #expect(s.t.load(s.leaf) & bitD == 0)
    #expect(success(s.cpu.write(5, to: s.va))?.fromTLB == false)
    #expect(s.t.load(s.leaf) & bitD != 0)
    #expect(success(s.cpu.write(6, to: s.va))?.fromTLB == true)
  }

  @Test("A cleared without invalidation: the entry stays usable, A stays clear, the checker reports it")
  func accessedCleared() {
    let s = TLBSetup()
    _ = s.cpu.write(1, to: s.va)
    s.t.store(s.t.load(s.leaf) & ~(bitA | bitD), at: s.leaf)
    #expect(success(s.cpu.read(s.va))?.fromTLB == true)
    #expect(s.t.load(s.leaf) & bitA == 0, "a TLB hit writes no A")
    #expect(s.cpu.takeStaleTranslations().first?.reasons == [.accessedCleared, .dirtyCleared])
  }

  @Test("CR3 load drops non-global entries, keeps global ones; INVLPG and a full flush drop global ones")
  func globalPages() {
    let s = TLBSetup(leafFlags: bitP | bitRW | bitG)
    s.t.map(linear(5), to: 0x60_0000, root: s.root)
    _ = s.cpu.read(s.va)
    _ = s.cpu.read(linear(5))
    #expect(s.cpu.cachedTranslationCount == 2)
    s.cpu.loadCR3(PhysicalAddress(s.root))
    #expect(s.cpu.cachedTranslationCount == 1)
    #expect(success(s.cpu.read(s.va))?.fromTLB == true, "global survives")
    #expect(success(s.cpu.read(linear(5)))?.fromTLB == false, "non-global was dropped")
    // Another address space: the global entry still matches.
    let other = s.t.table()
    s.cpu.loadCR3(PhysicalAddress(other))
    #expect(success(s.cpu.read(s.va))?.fromTLB == true)
    #expect(pageFault(s.cpu.read(linear(5))) != nil)
    s.cpu.invalidatePage(s.va)
    #expect(pageFault(s.cpu.read(s.va)) != nil, "INVLPG drops the global entry")
    s.cpu.loadCR3(PhysicalAddress(s.root))
    _ = s.cpu.read(s.va)
    s.cpu.flushTLB()
    #expect(s.cpu.cachedTranslationCount == 0)
  }

  @Test("large pages are cached whole: INVLPG of any address inside drops them")
  func largeEntries() {
    let s = TLBSetup(leafLevel: 2)
    _ = s.cpu.read(s.va)
    #expect(success(s.cpu.read((s.va & ~0x1f_ffff) + 0x1f_f000))?.fromTLB == true)
    s.cpu.invalidatePage(s.va + 0x10_0000)
    #expect(s.cpu.cachedTranslationCount == 0)
  }

  @Test("INVEPT single-context drops one EPT's translations, all-context every EPT's")
  func invept() {
    let t = Tables()
    let roots = [t.table(), t.table()]
    for r in roots {
      t.map(0x10_0000, to: 0x50_0000, root: r, tableFlags: eptRWX, leafFlags: eptRWX | eptWB, largeBit: eptLarge)
    }
    let cpu = SimulatedCPU(memory: t.memory)
    for r in roots {
      cpu.enterGuest(eptPointer: eptPointer(r, accessedDirty: true), guestRoot: nil)
      _ = cpu.read(0x10_0000)
    }
    #expect(cpu.cachedTranslationCount == 2)
    cpu.invalidateEPT(.singleContext(PhysicalAddress(roots[0])))
    #expect(cpu.cachedTranslationCount == 1)
    #expect(success(cpu.read(0x10_0000))?.fromTLB == true, "the other EPT's entry survives")
    cpu.invalidateEPT(.allContext)
    #expect(cpu.cachedTranslationCount == 0)
  }

  @Test("guest: a guest CR3 load drops combined entries; stale EPT entries are reported")
  func guestEntries() {
    let s = NestedSetup()
    let cpu = SimulatedCPU(memory: s.t.memory)
    let eptp = eptPointer(s.eptRoot, accessedDirty: true)
    cpu.enterGuest(eptPointer: eptp, guestRoot: PhysicalAddress(s.guestRoot))
    #expect(success(cpu.write(7, to: s.va, privilege: .user))?.guestPhysicalAddress?.rawValue == s.dataGPA | 0x10)
    #expect(success(cpu.read(s.va, privilege: .user))?.fromTLB == true)
    cpu.enterGuest(eptPointer: eptp, guestRoot: PhysicalAddress(s.guestRoot))
    #expect(success(cpu.read(s.va, privilege: .user))?.fromTLB == false)
    // The EPT write-protects the data page without INVEPT.
    s.t.store(s.t.load(s.eptLeaves[0]!) & ~eptW, at: s.eptLeaves[0]!)
    _ = cpu.write(8, to: s.va, privilege: .user)
    #expect(cpu.takeStaleTranslations().first?.reasons == [.rightsReduced])
    cpu.invalidateEPT(.singleContext(PhysicalAddress(s.eptRoot)))
    #expect(violation(cpu.write(9, to: s.va, privilege: .user))?.qualification.contains(.finalTranslation) == true)
  }
}

@Suite("TLB model wired to pmaps")
struct TLBPmapTests {
  @Test("a pmap's invalidations reach every CPU: no stale use; a dropped one is caught on every CPU")
  func shootdown() throws {
    try withMachine { m in
      let group = CPUGroup(count: 3, memory: m.memory, forwardingTo: m.sink)
      let pmap = try NativePmap(memory: m.memory, allocator: m.allocator, invalidation: group, pages: m.pages)
      let va = VirtualAddress(0x40_0000)
      try pmap.enter(va, m.dataFrame(1), protection: .readWrite)
      for cpu in group.cpus {
        cpu.loadCR3(of: pmap)
        #expect(success(cpu.write(UInt64(cpu.id), to: va, privilege: .user)) != nil)
      }
      try pmap.protect(VirtualRange(page: va), to: .read)
      for cpu in group.cpus {
        #expect(pageFault(cpu.write(1, to: va, privilege: .user))?.errorCode == [.present, .write, .user])
      }
      _ = group.cpus.map { $0.read(va, privilege: .user) }
      try pmap.remove(VirtualRange(page: va))
      #expect(m.sink.covered(va, root: pmap.root), "the forward sink saw it too")
      for cpu in group.cpus { #expect(pageFault(cpu.read(va, privilege: .user)) != nil) }
      #expect(group.takeStaleTranslations().isEmpty)
      // Negative control: lose the next report.
      try pmap.enter(va, m.dataFrame(2), protection: .readWrite)
      for cpu in group.cpus { _ = cpu.read(va, privilege: .user) }
      group.dropNextReports(1)
      try pmap.remove(VirtualRange(page: va))
      #expect(group.droppedReports == 1)
      for cpu in group.cpus { #expect(success(cpu.read(va, privilege: .user))?.fromTLB == true) }
      let stale = group.takeStaleTranslations()
      #expect(stale.count == 3 && stale.allSatisfy { $0.reasons == [.removed] })
      for cpu in group.cpus { cpu.flushTLB() }
    }
  }

  @Test("an EPT pmap's invalidation is an INVEPT for its EPT on every CPU")
  func eptShootdown() throws {
    try withMachine { m in
      let group = CPUGroup(count: 2, memory: m.memory)
      let ept = try EPTPmap(memory: m.memory, allocator: m.allocator, invalidation: group, pages: m.pages)
      try ept.enter(VirtualAddress(0x1000), m.dataFrame(1), protection: .readWrite)
      try ept.enter(VirtualAddress(0x2000), m.dataFrame(2), protection: .readWrite)
      for cpu in group.cpus {
        cpu.enterGuest(ept, guestRoot: nil)
        _ = cpu.read(0x1000)
        _ = cpu.read(0x2000)
      }
      #expect(m.pages.clearReference(m.dataFrame(1)))
      for cpu in group.cpus {
        #expect(cpu.cachedTranslationCount == 0, "INVEPT single-context has no per-page form")
        #expect(success(cpu.read(0x1000))?.fromTLB == false)
      }
      #expect(m.pages.isReferenced(m.dataFrame(1)), "the re-walk set A again")
      #expect(group.takeStaleTranslations().isEmpty)
    }
  }

  @Test("a hardware thread accessing while pmap operations run on another thread loses no A/D")
  func concurrentHardwareThread() async throws {
    let m = SimulatedMachine(ramSize: 32 << 20, pageTableFrames: 512)
    let cpu = SimulatedCPU(memory: m.memory, checksStaleTranslations: false)
    let pmap = try NativePmap(memory: m.memory, allocator: m.allocator, invalidation: cpu, pages: m.pages)
    let va = VirtualAddress(0x40_0000)
    let frame = m.dataFrame(1)
    try pmap.enter(va, frame, protection: .readWrite)
    cpu.loadCR3(of: pmap)
    let rounds = 2000
    // The page database is used from this one other thread only (the CPU never touches it).
    let pages = Unchecked(m.pages)
    let cleared = await withTaskGroup(of: Int.self) { group in
      group.addTask {
        for i in 0..<rounds { _ = cpu.write(UInt64(i), to: va, privilege: .user) }
        return 0
      }
      group.addTask {
        var n = 0
        for _ in 0..<rounds where pages.value.clearModify(frame) { n += 1 }
        return n
      }
      return await group.reduce(0, +)
    }
    // Every write after the last clear left D set, or was cleared and reported: a final write must show.
    _ = cpu.write(1, to: va, privilege: .user)
    #expect(m.pages.isModified(frame))
    #expect(cleared >= 1)
    try pmap.remove(.lowerHalf)
    withExtendedLifetime(m) {}
  }
}

/// Hands a non-Sendable value to one other task, which alone uses it.
struct Unchecked<T>: @unchecked Sendable {
  let value: T
  init(_ value: T) { self.value = value }
}
