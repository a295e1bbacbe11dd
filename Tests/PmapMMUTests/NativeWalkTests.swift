import Pmap
import PmapHost
import PmapMMU
import Testing

/// One access and what the SDM says it must give.
struct NativeCase: Sendable, CustomTestStringConvertible {
  var name: String
  /// Flags per level (4 = PML4 ... 1 = PT) overriding `P|RW|US`.
  var flags: [Int: UInt64] = [:]
  var leafLevel = 1
  var type: AccessType
  var privilege: PrivilegeLevel
  var control = PagingControl()
  /// The error code expected, or `nil` for success.
  var expected: PageFaultErrorCode?
  var testDescription: String { name }
}

let sup = PrivilegeLevel.supervisor
let usr = PrivilegeLevel.user

let nativeCases: [NativeCase] = [
  // Not present (§4.7: P = 0), at each level; W/R, U/S and I/D report the access.
  NativeCase(name: "leaf not present, user read", flags: [1: 0], type: .read, privilege: usr, expected: [.user]),
  NativeCase(
    name: "PML4E not present, supervisor write", flags: [4: 0], type: .write, privilege: sup, expected: [.write]),
  NativeCase(
    name: "PDE not present, user write", flags: [2: bitRW | bitUS], type: .write, privilege: usr,
    expected: [.write, .user]),
  NativeCase(
    name: "PDPTE not present, fetch with NXE", flags: [3: 0], type: .fetch, privilege: sup,
    expected: [.instructionFetch]),
  NativeCase(
    name: "not present, fetch, NXE and SMEP off: no I/D", flags: [1: 0], type: .fetch, privilege: sup,
    control: PagingControl(noExecuteEnabled: false), expected: []),
  NativeCase(
    name: "not present, fetch, NXE off, SMEP on: I/D", flags: [1: 0], type: .fetch, privilege: sup,
    control: PagingControl(noExecuteEnabled: false, smep: true), expected: [.instructionFetch]),
  // U/S (§4.6.1).
  NativeCase(
    name: "user read, U/S clear in PDPTE", flags: [3: bitP | bitRW], type: .read, privilege: usr,
    expected: [.present, .user]),
  NativeCase(
    name: "user read, U/S clear in leaf", flags: [1: bitP | bitRW], type: .read, privilege: usr,
    expected: [.present, .user]),
  NativeCase(name: "supervisor read of supervisor page", flags: [1: bitP], type: .read, privilege: sup, expected: nil),
  // R/W.
  NativeCase(
    name: "user write, R/W clear in PDE", flags: [2: bitP | bitUS], type: .write, privilege: usr,
    expected: [.present, .write, .user]),
  NativeCase(name: "user read of read-only page", flags: [1: bitP | bitUS], type: .read, privilege: usr, expected: nil),
  NativeCase(
    name: "supervisor write, read-only, WP=1", flags: [1: bitP | bitUS], type: .write, privilege: sup,
    expected: [.present, .write]),
  NativeCase(
    name: "supervisor write, read-only PML4E, WP=0", flags: [4: bitP | bitUS], type: .write, privilege: sup,
    control: PagingControl(writeProtect: false), expected: nil),
  NativeCase(
    name: "user write, read-only, WP=0 does not help users", flags: [1: bitP | bitUS], type: .write, privilege: usr,
    control: PagingControl(writeProtect: false), expected: [.present, .write, .user]),
  // XD (needs NXE).
  NativeCase(
    name: "user fetch, XD in leaf", flags: [1: bitP | bitUS | bitXD], type: .fetch, privilege: usr,
    expected: [.present, .user, .instructionFetch]),
  NativeCase(
    name: "supervisor fetch, XD in PML4E", flags: [4: bitP | bitRW | bitUS | bitXD], type: .fetch, privilege: sup,
    expected: [.present, .instructionFetch]),
  NativeCase(name: "read of XD page", flags: [1: bitP | bitUS | bitXD], type: .read, privilege: usr, expected: nil),
  NativeCase(
    name: "XD set without NXE is reserved", flags: [1: bitP | bitUS | bitXD], type: .read, privilege: usr,
    control: PagingControl(noExecuteEnabled: false), expected: [.present, .reservedBit, .user]),
  NativeCase(
    name: "fetch of XD-reserved entry without NXE: no I/D", flags: [2: bitP | bitRW | bitUS | bitXD], type: .fetch,
    privilege: sup,
    control: PagingControl(noExecuteEnabled: false), expected: [.present, .reservedBit]),
  // SMEP.
  NativeCase(
    name: "SMEP: supervisor fetch from user page", type: .fetch, privilege: sup, control: PagingControl(smep: true),
    expected: [.present, .instructionFetch]),
  NativeCase(
    name: "SMEP: supervisor fetch from supervisor page", flags: [3: bitP | bitRW], type: .fetch, privilege: sup,
    control: PagingControl(smep: true), expected: nil),
  NativeCase(name: "no SMEP: supervisor fetch from user page", type: .fetch, privilege: sup, expected: nil),
  // SMAP.
  NativeCase(
    name: "SMAP: supervisor read of user page, AC=0", type: .read, privilege: sup, control: PagingControl(smap: true),
    expected: [.present]),
  NativeCase(
    name: "SMAP: supervisor write of user page, AC=0", type: .write, privilege: sup, control: PagingControl(smap: true),
    expected: [.present, .write]),
  NativeCase(
    name: "SMAP: supervisor read of user page, AC=1", type: .read, privilege: sup,
    control: PagingControl(smap: true, alignmentCheck: true), expected: nil),
  NativeCase(
    name: "SMAP, AC=1, WP=1: read-only user page still refuses the write", flags: [1: bitP | bitUS], type: .write,
    privilege: sup, control: PagingControl(smap: true, alignmentCheck: true), expected: [.present, .write]),
  NativeCase(
    name: "SMAP: U/S clear somewhere makes it a supervisor page", flags: [2: bitP | bitRW], type: .write,
    privilege: sup,
    control: PagingControl(smap: true), expected: nil),
  NativeCase(
    name: "SMAP does not apply to fetches", type: .fetch, privilege: sup, control: PagingControl(smap: true),
    expected: nil),
  // Reserved bits (§4.5 tables; RSVD implies P).
  NativeCase(
    name: "bit above MAXPHYADDR in PDE", flags: [2: bitP | bitRW | bitUS | 1 << 45], type: .read, privilege: usr,
    control: PagingControl(physicalAddressBits: 40), expected: [.present, .reservedBit, .user]),
  NativeCase(
    name: "bit 51 with MAXPHYADDR 52 is a frame bit", flags: [1: bitP | bitRW | bitUS], type: .read, privilege: usr,
    expected: nil),
  NativeCase(
    name: "PS in PML4E", flags: [4: bitP | bitRW | bitUS | bitPS], type: .write, privilege: sup,
    expected: [.present, .write, .reservedBit]),
  NativeCase(
    name: "reserved bit beats a rights violation", flags: [3: bitP | bitRW, 1: bitP | bitUS | 1 << 50], type: .read,
    privilege: usr,
    control: PagingControl(physicalAddressBits: 46), expected: [.present, .reservedBit, .user]),
  NativeCase(
    name: "2 MiB leaf with bit 13 set", flags: [2: bitP | bitRW | bitUS | 1 << 13], leafLevel: 2, type: .read,
    privilege: usr,
    expected: [.present, .reservedBit, .user]),
  NativeCase(
    name: "2 MiB leaf with PAT (bit 12) is fine", flags: [2: bitP | bitRW | bitUS | 1 << 12], leafLevel: 2, type: .read,
    privilege: usr, expected: nil),
  NativeCase(
    name: "1 GiB leaf with bit 20 set", flags: [3: bitP | bitRW | bitUS | 1 << 20], leafLevel: 3, type: .read,
    privilege: usr,
    expected: [.present, .reservedBit, .user]),
  NativeCase(
    name: "1 GiB leaf without 1 GiB support", leafLevel: 3, type: .read, privilege: usr,
    control: PagingControl(supports1GBPages: false), expected: [.present, .reservedBit, .user]),
  NativeCase(name: "1 GiB leaf", leafLevel: 3, type: .write, privilege: usr, expected: nil),
  NativeCase(name: "2 MiB leaf, user fetch", leafLevel: 2, type: .fetch, privilege: usr, expected: nil),
]

@Suite("native walk: faults, error codes, CR2, rights")
struct NativeWalkTests {
  @Test("each fault cause gives the SDM's error code and CR2", arguments: nativeCases)
  func faultCauses(_ c: NativeCase) {
    let t = Tables()
    let root = t.table()
    let va = linear(3, 5, 7, 9, offset: 0x123)
    let phys: UInt64 = c.leafLevel == 3 ? 0x4000_0000 : (c.leafLevel == 2 ? 0x60_0000 : 0x80_0000)
    t.map(va, to: phys, root: root, leafLevel: c.leafLevel, flags: c.flags)
    let walker = NativeWalker(memory: t.memory, control: c.control)
    let result = walker.translate(va, c.type, privilege: c.privilege, root: PhysicalAddress(root))
    if let code = c.expected {
      let f = pageFault(result)
      #expect(f?.errorCode == code, "\(result)")
      #expect(f?.address == va, "CR2 is the full linear address")
    } else {
      let tr = success(result)
      let size: UInt64 = 1 << UInt64(12 + 9 * (c.leafLevel - 1))
      #expect(tr?.physicalAddress.rawValue == phys | (va & (size - 1)), "\(result)")
      #expect(tr?.pageSize.rawValue == UInt8(c.leafLevel))
    }
  }

  @Test("a fault writes no A or D anywhere; success sets A on every level and D on the leaf of a write")
  func accessedDirtyOnlyOnSuccess() {
    for type in AccessType.allCases {
      for leafLevel in 1...3 {
        let t = Tables()
        let root = t.table()
        let va = linear(1, 2, 3, 4)
        let entries = t.map(va, to: 0x4000_0000, root: root, leafLevel: leafLevel, leafFlags: bitP | bitUS)
        let walker = NativeWalker(memory: t.memory)
        // A write to the read-only page faults: nothing may change.
        let before = (1...4).map { entries[$0].map(t.load) }
        _ = walker.translate(va, .write, privilege: .user, root: PhysicalAddress(root))
        #expect((1...4).map { entries[$0].map(t.load) } == before, "level \(leafLevel)")
        // Make it writable, then access.
        t.store(t.load(entries[leafLevel]!) | bitRW, at: entries[leafLevel]!)
        let r = walker.translate(va, type, privilege: .user, root: PhysicalAddress(root))
        #expect(success(r) != nil)
        for level in leafLevel...4 {
          let e = t.load(entries[level]!)
          #expect(e & bitA != 0, "A at level \(level)")
          let wantD = level == leafLevel && type == .write
          #expect((e & bitD != 0) == wantD, "D at level \(level) for \(type)")
        }
        #expect(success(r)?.leafEntry == t.load(entries[leafLevel]!), "the result carries the updated leaf")
      }
    }
  }

  @Test("upperLevelsOnFault sets A above the faulting entry only, never D")
  func upperLevelPolicy() {
    let t = Tables()
    let root = t.table()
    let va = linear(1, 2, 3, 4)
    let entries = t.map(va, to: 0x50_0000, root: root, leafFlags: bitP | bitUS)
    let walker = NativeWalker(memory: t.memory, control: PagingControl(accessedFlagPolicy: .upperLevelsOnFault))
    #expect(pageFault(walker.translate(va, .write, privilege: .user, root: PhysicalAddress(root))) != nil)
    #expect((2...4).allSatisfy { t.load(entries[$0]!) & bitA != 0 })
    #expect(t.load(entries[1]!) & (bitA | bitD) == 0)
    // A not-present PDE: A on PML4E and PDPTE only.
    let t2 = Tables()
    let root2 = t2.table()
    let e2 = t2.map(va, to: 0x50_0000, root: root2, flags: [2: 0])
    _ = NativeWalker(memory: t2.memory, control: walker.control).translate(
      va, .read, privilege: .user, root: PhysicalAddress(root2))
    #expect(t2.load(e2[4]!) & bitA != 0 && t2.load(e2[3]!) & bitA != 0)
    #expect(t2.load(e2[2]!) & bitA == 0, "the not-present entry itself is never written")
  }

  @Test("five-level paging walks PML5 and takes 57-bit addresses; PS in a PML5E is reserved")
  func fiveLevel() {
    let t = Tables()
    let root = t.table()
    let va: UInt64 = 0x00ff_8000_0000_1000 & 0x00ff_ffff_ffff_ffff | 5 << 48  // PML5 index 5
    let high = va & 0x00ff_ffff_ffff_ffff
    let entries = t.map(high, to: 0x70_0000, root: root, levels: 5)
    let control = PagingControl(fiveLevel: true)
    let walker = NativeWalker(memory: t.memory, control: control)
    let r = walker.translate(high, .write, privilege: .user, root: PhysicalAddress(root))
    #expect(success(r)?.physicalAddress.rawValue == 0x70_0000)
    #expect((1...5).allSatisfy { t.load(entries[$0]!) & bitA != 0 })
    // The same address is not canonical for four-level paging.
    #expect(
      failure(NativeWalker(memory: t.memory).translate(high, .read, privilege: .user, root: PhysicalAddress(root)))
        == .generalProtection(linearAddress: high))
    t.store(t.load(entries[5]!) | bitPS, at: entries[5]!)
    #expect(
      pageFault(walker.translate(high, .read, privilege: .user, root: PhysicalAddress(root)))?.errorCode
        == [.present, .reservedBit, .user])
    // 57-bit non-canonical.
    #expect(
      failure(walker.translate(1 << 57, .read, privilege: .user, root: PhysicalAddress(root)))
        == .generalProtection(linearAddress: 1 << 57))
  }

  @Test("an entry pointing outside simulated RAM is reported, not dereferenced")
  func unbacked() {
    let t = Tables()
    let root = t.table()
    let va = linear(0, 0, 1)
    let entries = t.map(va, to: 0x50_0000, root: root)
    t.store(0x7_0000_0000 | bitP | bitRW | bitUS, at: entries[3]!)
    let r = NativeWalker(memory: t.memory).translate(va, .read, privilege: .user, root: PhysicalAddress(root))
    // The PD is at 0x7_0000_0000; the walk reads its entry for PD index 1.
    #expect(failure(r) == .unbackedPhysicalAddress(0x7_0000_0000 + 8))
  }

  @Test("walks of a NativePmap's tables: rights as entered, kernel pmaps are supervisor-only and global")
  func pmapTables() throws {
    try withMachine { m in
      let user = try m.makeNativePmap()
      let kernel = try m.makeNativePmap(kind: .kernel)
      let va = VirtualAddress(0x1234_5000)
      try user.enter(va, m.dataFrame(1), protection: .read)
      try kernel.enter(va, m.dataFrame(2), protection: .readWrite)
      let walker = NativeWalker(memory: m.memory)
      #expect(success(walker.translate(va, .read, in: user))?.physicalAddress == m.dataFrame(1))
      #expect(pageFault(walker.translate(va, .write, in: user))?.errorCode == [.present, .write, .user])
      #expect(pageFault(walker.translate(va, .fetch, in: user))?.errorCode == [.present, .user, .instructionFetch])
      let k = success(walker.translate(va, .write, in: kernel))
      #expect(k?.global == true && k?.userAccessible == false)
      #expect(
        pageFault(walker.translate(va.rawValue, .read, privilege: .user, root: kernel.root))?.errorCode
          == [.present, .user])
      #expect(m.pages.isModified(m.dataFrame(2)))
      #expect(m.pages.isReferenced(m.dataFrame(1)) && !m.pages.isModified(m.dataFrame(1)))
    }
  }

  @Test("the MMU's compare-and-swap never loses a concurrent software update of the entry")
  func atomicUpdates() async {
    let t = Tables()
    let root = t.table()
    let va = linear(0, 0, 0, 1)
    let entries = t.map(va, to: 0x50_0000, root: root)
    let leaf = EntryPointer(
      t.memory.pointer(to: PhysicalAddress(entries[1]!)).assumingMemoryBound(to: UInt64.self))
    let memory = t.memory
    let toggles = 20_000
    await withTaskGroup(of: Void.self) { group in
      group.addTask {
        let walker = NativeWalker(memory: memory)
        for i in 0..<toggles {
          // Clear A/D now and then so that the walk has something to write.
          if i % 3 == 0 { leaf.clearBits(bitA | bitD) }
          _ = walker.translate(va, i % 2 == 0 ? .write : .read, privilege: .user, root: PhysicalAddress(root))
        }
      }
      group.addTask {
        for _ in 0..<toggles { leaf.update { $0 ^ (1 << 9) } }  // a software bit, toggled
      }
    }
    _ = NativeWalker(memory: memory).translate(va, .write, privilege: .user, root: PhysicalAddress(root))
    let e = leaf.load()
    #expect(e & (1 << 9) == 0, "an even number of toggles survived every MMU update")
    #expect(e & (bitA | bitD) == bitA | bitD)
    withExtendedLifetime(t) {}
  }
}
