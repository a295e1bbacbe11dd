import Pmap
import PmapEPT
import PmapHost
import PmapMMU
import PmapNative
import Testing

/// A guest with its own four-level tables in guest-physical memory, and an EPT mapping
/// guest-physical `gpa` to host-physical `gpa + offset` for every guest page used.
struct NestedSetup {
  let t = Tables()
  let eptRoot: UInt64
  let guestRoot: UInt64  // guest-physical
  let va = linear(2, 3, 4, 5, offset: 0x10)
  let dataGPA: UInt64 = 0x10_0000
  /// Host-physical = guest-physical + this.
  static let offset: UInt64 = 0x80_0000
  /// Guest-physical addresses of the guest's table pages, by level (4 = PML4).
  var guestTables: [Int: UInt64] = [:]
  /// Host-physical addresses of the EPT leaves mapping each guest table page (by level) and the data page (0).
  var eptLeaves: [Int: UInt64] = [:]

  init(eptLeafRights: [Int: UInt64] = [:], guestLeafFlags: UInt64 = bitP | bitRW | bitUS) {
    eptRoot = t.table()
    // Guest tables: four pages at guest-physical 0x1000 * k + 0x1_0000.
    var gpas: [Int: UInt64] = [:]
    for level in 1...4 { gpas[level] = 0x1_0000 + UInt64(level) * 0x1000 }
    guestRoot = gpas[4]!
    guestTables = gpas
    // Write the guest entries at host-physical gpa + offset.
    for level in 1...4 {
      let index = (va >> UInt64(12 + 9 * (level - 1))) & 511
      let entryHPA = gpas[level]! + Self.offset + index * 8
      let value = level == 1 ? dataGPA | guestLeafFlags : gpas[level - 1]! | bitP | bitRW | bitUS
      t.store(value, at: entryHPA)
    }
    // EPT: map each guest table page and the data page.
    for (level, gpa) in gpas.sorted(by: { $0.key < $1.key }) + [(0, dataGPA)] {
      let e = t.map(
        gpa, to: gpa + Self.offset, root: eptRoot, tableFlags: eptRWX,
        leafFlags: (eptLeafRights[level] ?? eptRWX) | eptWB, largeBit: eptLarge)
      eptLeaves[level] = e[1]!
    }
  }

  /// The host-physical address of the guest entry at `level` used to translate `va`.
  func guestEntryHPA(_ level: Int) -> UInt64 {
    guestTables[level]! + Self.offset + ((va >> UInt64(12 + 9 * (level - 1))) & 511) * 8
  }

  func walker(accessedDirty: Bool) -> NestedWalker {
    NestedWalker(ept: EPTWalker(memory: t.memory, eptPointer: eptPointer(eptRoot, accessedDirty: accessedDirty)))
  }
}

@Suite("two-dimensional walk: guest page faults vs EPT violations")
struct NestedWalkTests {
  @Test("a successful access: guest A/D in guest tables, EPT A/D on table pages (as writes) and data")
  func success2D() {
    let s = NestedSetup()
    let r = s.walker(accessedDirty: true).translate(
      s.va, .read, privilege: .user, guestRoot: PhysicalAddress(s.guestRoot))
    let t = success(r)
    #expect(t?.guestPhysicalAddress.rawValue == s.dataGPA | 0x10)
    #expect(t?.hostPhysicalAddress.rawValue == s.dataGPA + NestedSetup.offset | 0x10)
    #expect((1...4).allSatisfy { s.t.load(s.guestEntryHPA($0)) & (bitA | bitD) == bitA }, "guest: A on every level")
    // Guest paging-structure accesses count as writes for EPT A/D: D on the EPT leaves of table pages.
    #expect((1...4).allSatisfy { s.t.load(s.eptLeaves[$0]!) & (eptA | eptD) == eptA | eptD })
    #expect(s.t.load(s.eptLeaves[0]!) & (eptA | eptD) == eptA, "a data read: EPT A only")
    _ = s.walker(accessedDirty: true).translate(s.va, .write, privilege: .user, guestRoot: PhysicalAddress(s.guestRoot))
    #expect(s.t.load(s.guestEntryHPA(1)) & bitD != 0 && s.t.load(s.eptLeaves[0]!) & eptD != 0)
  }

  @Test("without EPT A/D, EPT entries are never written")
  func noEPTAccessedDirty() {
    let s = NestedSetup()
    #expect(
      success(
        s.walker(accessedDirty: false).translate(
          s.va, .write, privilege: .user, guestRoot: PhysicalAddress(s.guestRoot))) != nil)
    #expect((0...4).allSatisfy { s.t.load(s.eptLeaves[$0]!) & (eptA | eptD) == 0 })
    #expect(s.t.load(s.guestEntryHPA(1)) & (bitA | bitD) == bitA | bitD)
  }

  @Test("a guest page fault is a page fault, with guest CR2, and writes nothing")
  func guestPageFault() {
    let s = NestedSetup(guestLeafFlags: bitP | bitUS)
    let f = pageFault(
      s.walker(accessedDirty: true).translate(s.va, .write, privilege: .user, guestRoot: PhysicalAddress(s.guestRoot)))
    #expect(f == PageFault(errorCode: [.present, .write, .user], address: s.va, level: 1))
    #expect((1...4).allSatisfy { s.t.load(s.guestEntryHPA($0)) & bitA == 0 })
    // EPT entries used to read the guest tables do get A/D: those reads happened.
    #expect(s.t.load(s.eptLeaves[4]!) & eptA != 0)
    #expect(s.t.load(s.eptLeaves[0]!) & eptA == 0, "the data page was never reached")
  }

  @Test("an EPT violation on a guest table page: bit 7 set, bit 8 clear, GPA of the entry", arguments: [1, 2, 3, 4])
  func violationOnTable(_ level: Int) {
    // Not present in EPT: the guest's table page at `level` is unmapped.
    let s2 = NestedSetup(eptLeafRights: [level: 0])
    let v = violation(
      s2.walker(accessedDirty: false).translate(
        s2.va, .read, privilege: .user, guestRoot: PhysicalAddress(s2.guestRoot)))
    #expect(v?.qualification == [.read, .linearAddressValid])
    #expect(v?.guestPhysicalAddress == s2.guestEntryHPA(level) - NestedSetup.offset)
    #expect(v?.guestLinearAddress == s2.va)
  }

  @Test("read-only EPT mapping of guest tables: fine without EPT A/D once guest A is set; a write with EPT A/D")
  func readOnlyGuestTables() {
    // EPT A/D on: the table reads are writes, so a read-only table page is a violation.
    let s = NestedSetup(eptLeafRights: [2: eptR])
    let v = violation(
      s.walker(accessedDirty: true).translate(s.va, .read, privilege: .user, guestRoot: PhysicalAddress(s.guestRoot)))
    #expect(v?.qualification == [.read, .write, .readable, .linearAddressValid])
    #expect(v?.guestPhysicalAddress == s.guestEntryHPA(2) - NestedSetup.offset)
    // EPT A/D off: reading is fine, but setting the guest's A bit writes the entry.
    let v2 = violation(
      s.walker(accessedDirty: false).translate(s.va, .read, privilege: .user, guestRoot: PhysicalAddress(s.guestRoot)))
    #expect(v2?.qualification == [.read, .write, .readable, .linearAddressValid])
    #expect(v2?.guestPhysicalAddress == s.guestEntryHPA(2) - NestedSetup.offset)
    // With the guest's A already set there, nothing needs writing.
    s.t.store(s.t.load(s.guestEntryHPA(2)) | bitA, at: s.guestEntryHPA(2))
    #expect(
      success(
        s.walker(accessedDirty: false).translate(s.va, .read, privilege: .user, guestRoot: PhysicalAddress(s.guestRoot))
      ) != nil)
  }

  @Test("an EPT violation on the final access: bits 7 and 8 set, GPA of the data with offset")
  func violationOnData() {
    let s = NestedSetup(eptLeafRights: [0: eptR])
    let v = violation(
      s.walker(accessedDirty: true).translate(s.va, .write, privilege: .user, guestRoot: PhysicalAddress(s.guestRoot)))
    #expect(v?.qualification == [.write, .readable, .linearAddressValid, .finalTranslation])
    #expect(v?.guestPhysicalAddress == s.dataGPA | 0x10)
    // The guest's walk completed before the final access: its A/D are set.
    #expect(s.t.load(s.guestEntryHPA(1)) & (bitA | bitD) == bitA | bitD)
    let fetch = violation(
      s.walker(accessedDirty: true).translate(s.va, .fetch, privilege: .user, guestRoot: PhysicalAddress(s.guestRoot)))
    #expect(fetch?.qualification == [.fetch, .readable, .linearAddressValid, .finalTranslation])
  }

  @Test("an EPT misconfiguration is reported with its guest-physical address")
  func misconfiguration() {
    let s = NestedSetup(eptLeafRights: [3: eptW])
    #expect(
      failure(
        s.walker(accessedDirty: false).translate(s.va, .read, privilege: .user, guestRoot: PhysicalAddress(s.guestRoot))
      )
        == .eptMisconfiguration(guestPhysicalAddress: s.guestEntryHPA(3) - NestedSetup.offset))
  }

  @Test("guest paging off: the linear address is the guest-physical one")
  func pagingOff() {
    let s = NestedSetup(eptLeafRights: [0: eptR | eptX])
    let w = s.walker(accessedDirty: false)
    #expect(
      success(w.translate(s.dataGPA + 8, .read, privilege: .supervisor, guestRoot: nil))?.hostPhysicalAddress.rawValue
        == s.dataGPA + NestedSetup.offset + 8)
    #expect(
      violation(w.translate(s.dataGPA, .write, privilege: .supervisor, guestRoot: nil))?.qualification == [
        .write, .readable, .executable, .linearAddressValid, .finalTranslation,
      ])
  }

  @Test("a guest NativePmap under an EPTPmap: both built by the library")
  func libraryTables() throws {
    try withMachine { m in
      // Identity EPT over the page-table area and one data frame; the guest's pmap uses host frames as guest-physical.
      let ept = try m.makeEPTPmap()
      let guest = try m.makeNativePmap()
      let va = VirtualAddress(0x4000_1000)
      try guest.enter(va, m.dataFrame(5), protection: .readWrite)
      var frames: [PhysicalAddress] = []
      guest.forEachPageTablePage { frame, _ in frames.append(frame) }
      for frame in frames + [m.dataFrame(5)] {
        try ept.enter(VirtualAddress(frame.rawValue), frame, protection: .readWrite)
      }
      let w = NestedWalker(ept: EPTWalker(ept))
      let r = w.translate(va.rawValue | 8, .write, privilege: .user, guestRoot: guest.root)
      #expect(success(r)?.hostPhysicalAddress.rawValue == m.dataFrame(5).rawValue | 8)
      #expect(guest.translation(of: va)?.attributes.contains(.modified) == true)
      #expect(ept.translation(of: VirtualAddress(m.dataFrame(5).rawValue))?.attributes.contains(.modified) == true)
      #expect(m.pages.isModified(m.dataFrame(5)))
      // The guest's data page write-protected in the EPT: a violation, final access.
      try ept.protect(VirtualRange(page: VirtualAddress(m.dataFrame(5).rawValue)), to: .read)
      #expect(
        violation(w.translate(va.rawValue, .write, privilege: .user, guestRoot: guest.root))?.qualification.contains(
          .finalTranslation) == true)
      try ept.remove(.lowerHalf)
      try guest.remove(.lowerHalf)
    }
  }
}
