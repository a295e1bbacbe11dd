import Pmap
import PmapEPT
import PmapHost
import PmapMMU
import Testing

/// An EPT built by hand: `flags` per level override `R|W|X` for tables and `R|W|X|WB` for the
/// leaf.
struct EPTSetup {
  let t = Tables()
  let root: UInt64
  let entries: [Int: UInt64]
  let gpa: UInt64
  let hpa: UInt64

  init(leafLevel: Int = 1, flags: [Int: UInt64] = [:], gpa: UInt64 = linear(0, 1, 2, 3, offset: 0x456)) {
    root = t.table()
    self.gpa = gpa
    hpa = leafLevel == 3 ? 0x4000_0000 : 0x80_0000
    entries = t.map(
      gpa, to: hpa, root: root, leafLevel: leafLevel, tableFlags: eptRWX, leafFlags: eptRWX | eptWB, flags: flags,
      largeBit: eptLarge)
  }

  func walker(accessedDirty: Bool = false, executeOnly: Bool = false, bits: Int = 52, oneGB: Bool = true) -> EPTWalker {
    EPTWalker(
      memory: t.memory, eptPointer: eptPointer(root, accessedDirty: accessedDirty),
      capabilities: EPTCapabilities(executeOnly: executeOnly, supports1GBPages: oneGB, physicalAddressBits: bits))
  }
}

@Suite("EPT walk: violations, misconfigurations, A/D")
struct EPTWalkTests {
  @Test("R, W, X: each access needs its right; qualification bits 0-2 and 3-5")
  func rights() {
    for leafRights: UInt64 in [eptR, eptR | eptW, eptR | eptX, eptRWX] {
      let s = EPTSetup(flags: [1: leafRights | eptWB])
      let w = s.walker()
      for type in AccessType.allCases {
        let needed: UInt64 = type == .read ? eptR : (type == .write ? eptW : eptX)
        let r = w.translate(s.gpa, type)
        if leafRights & needed != 0 {
          #expect(success(r)?.hostPhysicalAddress.rawValue == s.hpa | 0x456)
        } else {
          let v = violation(r)
          let accessBit: UInt64 = type == .read ? 1 : (type == .write ? 2 : 4)
          #expect(v?.qualification.rawValue == accessBit | leafRights << 3, "\(type) on \(leafRights): \(r)")
          #expect(v?.guestPhysicalAddress == s.gpa && v?.guestLinearAddress == nil)
          #expect(v?.qualification.accessType == type)
        }
      }
    }
  }

  @Test("bits 3-5 are the AND over every level; 0 when an entry is not present")
  func andAcrossLevels() {
    let s = EPTSetup(flags: [3: eptR | eptX, 2: eptR | eptW])
    let v = violation(s.walker().translate(s.gpa, .write))
    #expect(v?.qualification == [.write, .readable])
    #expect(v?.qualification.permitted == .read)
    let s2 = EPTSetup(flags: [2: 0])
    let v2 = violation(s2.walker().translate(s2.gpa, .read, linearAddress: 0x1234))
    #expect(v2?.qualification == [.read, .linearAddressValid, .finalTranslation])
    #expect(v2?.guestLinearAddress == 0x1234)
    let v3 = violation(s2.walker().translate(s2.gpa, .fetch, linearAddress: 0x1234, pagingStructureAccess: true))
    #expect(v3?.qualification == [.fetch, .linearAddressValid])
    #expect(v3?.qualification.isPagingStructureAccess == true)
  }

  @Test("W without R, and X without R unless execute-only is supported, are misconfigurations")
  func writeWithoutRead() {
    for level in 1...4 {
      let s = EPTSetup(flags: [level: eptW | (level == 1 ? eptWB : 0)])
      #expect(failure(s.walker().translate(s.gpa, .read)) == .eptMisconfiguration(guestPhysicalAddress: s.gpa))
      #expect(
        failure(s.walker(executeOnly: true).translate(s.gpa, .read))
          == .eptMisconfiguration(guestPhysicalAddress: s.gpa))
    }
    let s = EPTSetup(flags: [1: eptX | eptWB])
    #expect(failure(s.walker().translate(s.gpa, .fetch)) == .eptMisconfiguration(guestPhysicalAddress: s.gpa))
    let w = s.walker(executeOnly: true)
    #expect(success(w.translate(s.gpa, .fetch))?.permissions == .execute)
    #expect(violation(w.translate(s.gpa, .read))?.qualification == [.read, .executable])
  }

  @Test("reserved memory types 2, 3, 7 in a leaf; bits 7:3 in a table entry; bits above MAXPHYADDR")
  func reservedBits() {
    for type: UInt64 in 0...7 {
      let s = EPTSetup(flags: [1: eptRWX | type << 3])
      let r = s.walker().translate(s.gpa, .read)
      if [2, 3, 7].contains(type) {
        #expect(failure(r) == .eptMisconfiguration(guestPhysicalAddress: s.gpa), "memory type \(type)")
      } else {
        #expect(success(r)?.memoryType == UInt8(type))
      }
    }
    for level in 2...4 {
      for bit: UInt64 in 3...7 where !(bit == 7 && level < 4) {
        let s = EPTSetup(flags: [level: eptRWX | 1 << bit])
        #expect(
          failure(s.walker().translate(s.gpa, .read)) == .eptMisconfiguration(guestPhysicalAddress: s.gpa),
          "bit \(bit) at level \(level)")
      }
    }
    let s = EPTSetup(flags: [3: eptRWX | 1 << 44])
    #expect(failure(s.walker(bits: 40).translate(s.gpa, .read)) == .eptMisconfiguration(guestPhysicalAddress: s.gpa))
    // A misconfiguration below an upper level that lacks the right still wins (found during the walk).
    let s2 = EPTSetup(flags: [4: eptR, 1: eptRWX | 2 << 3])
    #expect(failure(s2.walker().translate(s2.gpa, .write)) == .eptMisconfiguration(guestPhysicalAddress: s2.gpa))
    // Bit 7 of a 4 KiB EPT PTE is ignored; IPAT is reported.
    let s3 = EPTSetup(flags: [1: eptRWX | eptWB | 1 << 7 | 1 << 6])
    #expect(success(s3.walker().translate(s3.gpa, .read))?.ignoresGuestPAT == true)
  }

  @Test("2 MiB and 1 GiB leaves translate with their offsets; reserved low frame bits misconfigure")
  func largeLeaves() {
    let s2 = EPTSetup(leafLevel: 2, gpa: linear(0, 1, 2, 3, offset: 0x456))
    let t2 = success(s2.walker().translate(s2.gpa, .write))
    #expect(t2?.pageSize == .size2M && t2?.hostPhysicalAddress.rawValue == 0x80_0000 | (s2.gpa & 0x1f_ffff))
    let s1 = EPTSetup(leafLevel: 3)
    let t1 = success(s1.walker().translate(s1.gpa, .read))
    #expect(t1?.pageSize == .size1G && t1?.hostPhysicalAddress.rawValue == 0x4000_0000 | (s1.gpa & 0x3fff_ffff))
    #expect(
      failure(s1.walker(oneGB: false).translate(s1.gpa, .read)) == .eptMisconfiguration(guestPhysicalAddress: s1.gpa))
    let bad2 = EPTSetup(leafLevel: 2, flags: [2: eptRWX | eptWB | 1 << 12])
    #expect(failure(bad2.walker().translate(bad2.gpa, .read)) == .eptMisconfiguration(guestPhysicalAddress: bad2.gpa))
    let bad1 = EPTSetup(leafLevel: 3, flags: [3: eptRWX | eptWB | 1 << 29])
    #expect(failure(bad1.walker().translate(bad1.gpa, .read)) == .eptMisconfiguration(guestPhysicalAddress: bad1.gpa))
  }

  @Test("A/D only with EPTP bit 6, only on success; D on the leaf of a write")
  func accessedDirty() {
    for leafLevel in 1...3 {
      let s = EPTSetup(leafLevel: leafLevel, flags: [leafLevel: eptR | eptWB])
      let levels = Array(leafLevel...4)
      let without = s.walker(accessedDirty: false)
      _ = without.translate(s.gpa, .read)
      #expect(levels.allSatisfy { s.t.load(s.entries[$0]!) & (eptA | eptD) == 0 }, "EPT A/D disabled")
      let with = s.walker(accessedDirty: true)
      #expect(violation(with.translate(s.gpa, .write)) != nil)
      #expect(levels.allSatisfy { s.t.load(s.entries[$0]!) & (eptA | eptD) == 0 }, "a violation writes nothing")
      #expect(success(with.translate(s.gpa, .read)) != nil)
      #expect(levels.allSatisfy { s.t.load(s.entries[$0]!) & (eptA | eptD) == eptA }, "read: A everywhere, no D")
      s.t.store(s.t.load(s.entries[leafLevel]!) | eptW, at: s.entries[leafLevel]!)
      let w = success(with.translate(s.gpa, .write))
      #expect(s.t.load(s.entries[leafLevel]!) & eptD != 0 && w?.leafEntry == s.t.load(s.entries[leafLevel]!))
      #expect(levels.dropFirst().allSatisfy { s.t.load(s.entries[$0]!) & eptD == 0 }, "D only on the leaf")
    }
  }

  @Test("a paging-structure access with EPT A/D on is a write: needs W, reports R|W, sets D")
  func pagingStructureAccessIsWrite() {
    let s = EPTSetup(flags: [1: eptR | eptWB])
    let v = violation(
      s.walker(accessedDirty: true).translate(s.gpa, .read, linearAddress: 9, pagingStructureAccess: true))
    #expect(v?.qualification == [.read, .write, .readable, .linearAddressValid])
    #expect(
      success(s.walker(accessedDirty: false).translate(s.gpa, .read, linearAddress: 9, pagingStructureAccess: true))
        != nil)
    let s2 = EPTSetup()
    #expect(
      success(s2.walker(accessedDirty: true).translate(s2.gpa, .read, linearAddress: 9, pagingStructureAccess: true))
        != nil)
    #expect(s2.t.load(s2.entries[1]!) & (eptA | eptD) == eptA | eptD)
  }

  @Test("guest-physical addresses beyond 48 bits and tables outside RAM never trap")
  func hostileAddresses() {
    let s = EPTSetup()
    #expect(violation(s.walker().translate(1 << 50, .read))?.qualification == [.read])
    s.t.store(0x10_0000_0000 | eptRWX, at: s.entries[4]!)
    if case .unbackedPhysicalAddress = failure(s.walker().translate(s.gpa, .read)) {
    } else {
      Issue.record("expected an unbacked-address report")
    }
  }

  @Test("an EPTPmap's entries: rights as entered, A/D as the pmap was created")
  func pmapTables() throws {
    try withMachine { m in
      for ad in [true, false] {
        let ept = try m.makeEPTPmap(accessedDirty: ad)
        let gpa = VirtualAddress(0x20_0000)
        try ept.enter(gpa, m.dataFrame(3), protection: .read)
        let w = EPTWalker(ept)
        #expect(w.accessedDirtyEnabled == ad)
        #expect(success(w.translate(gpa.rawValue, .read))?.hostPhysicalAddress == m.dataFrame(3))
        #expect(violation(w.translate(gpa.rawValue, .write))?.qualification == [.write, .readable])
        #expect(violation(w.translate(gpa.rawValue, .fetch))?.qualification == [.fetch, .readable])
        #expect(ept.translation(of: gpa)?.attributes.contains(.referenced) == true)
        try ept.remove(VirtualRange(page: gpa))
      }
    }
  }

  @Test("exit-qualification decoding")
  func decoding() {
    let q = EPTExitQualification(rawValue: 0x1_8a)
    #expect(q.accessType == .write && q.permitted == .read && !q.isPagingStructureAccess)
    #expect(q.contains(.finalTranslation) && q.contains(.linearAddressValid))
    #expect(EPTExitQualification(rawValue: 0x83).isPagingStructureAccess)
    #expect(EPTExitQualification(rawValue: 0).accessType == nil)
    #expect(
      EPTExitQualification(rawValue: 0x2c).accessType == .fetch
        && EPTExitQualification(rawValue: 0x2c).permitted == [.read, .execute])
    #expect("\(EPTExitQualification(rawValue: 0x18a))".contains("final"))
  }
}
