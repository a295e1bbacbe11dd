import Pmap
import PmapEPT
import PmapHost
import PmapNative
import Testing

/// Every non-empty protection x86 can encode (what `enter` accepts).
let encodableProtections: [Protection] = (1...7).map { Protection(rawValue: $0) }.filter(\.isEncodable)
/// The rights the pmap actually passes to `leafEntry`: encodable, with `.read`.
let normalisedProtections: [Protection] = [.read, .readWrite, .readExecute, .all]
/// Every combination of page attributes.
let allPageAttributes: [PageAttributes] = (0...7).map { PageAttributes(rawValue: $0) }

extension PageSize: CustomTestStringConvertible {
  public var testDescription: String {
    switch self {
    case .size4K: "4K"
    case .size2M: "2M"
    case .size1G: "1G"
    }
  }
}

/// Frames aligned to `size`: a low one and one just below the 52-bit limit (to catch masking).
func sampleFrames(_ size: PageSize) -> [PhysicalAddress] {
  [PhysicalAddress(size.bytes * 3), PhysicalAddress((1 << 52) - size.bytes)]
}

// MARK: - Shared entry algebra

@Suite("Entry algebra, both formats")
struct EntryAlgebraTests {
  @Test("leafEntry encodes frame, protection and cache mode; no A/D/software bits", arguments: Format.allCases)
  func leafEntryRoundTrip(_ format: Format) {
    func check<F: SimulatedFormat>(_: F.Type) {
      for size in PageSize.allCases {
        let level = size.leafLevel
        for frame in sampleFrames(size) {
          for protection in encodableProtections {
            for mode in CacheMode.allCases {
              for kind in [AddressSpaceKind.user, .kernel] {
                let e = F.leafEntry(for: frame, protection: protection, cacheMode: mode, at: level, kind: kind)
                let what = "\(size.testDescription) \(protection) \(mode) \(kind) \(e)"
                #expect(F.isPresent(e), "\(what)")
                #expect(F.isLeaf(e, at: level), "\(what)")
                if level != .pageTable { #expect(F.isLargeLeaf(e), "\(what)") }
                #expect(F.leafFrame(e, at: level) == frame, "\(what)")
                #expect(F.protection(of: e) == protection.union(.read), "\(what)")
                #expect(F.cacheMode(of: e, at: level) == mode, "\(what)")
                #expect(!F.isMisconfigured(e, at: level), "\(what)")
                #expect(e & (F.accessedBit | F.dirtyBit | F.wiredBit | F.managedBit) == 0, "\(what)")
                let expected: PageAttributes = protection.contains(.write) ? [.writable] : []
                #expect(F.pageAttributes(of: e) == expected, "\(what)")
              }
            }
          }
        }
      }
    }
    check(format.ops)
  }

  @Test("4K leaves are never large leaves at level 2/3 positions", arguments: Format.allCases)
  func smallAndLargeLeavesDiffer(_ format: Format) {
    func check<F: SimulatedFormat>(_: F.Type) {
      // A 4 KiB write-back leaf has neither PS nor the EPT large bit.
      let small = F.leafEntry(
        for: PhysicalAddress(0x5000), protection: .read, cacheMode: .writeBack, at: .pageTable, kind: .user)
      #expect(!F.isLargeLeaf(small))
      // Table entries are not leaves above level 1.
      let table = F.tableEntry(for: PhysicalAddress(0x7000))
      for level in [PageTableLevel.pageDirectory, .pageDirectoryPointerTable, .pml4] {
        #expect(!F.isLeaf(table, at: level))
        #expect(!F.isMisconfigured(table, at: level))
      }
      #expect(F.isPresent(table))
      #expect(F.tableFrame(table) == PhysicalAddress(0x7000))
      #expect(F.tableFrame(F.tableEntry(for: PhysicalAddress((1 << 52) - 4096))) == PhysicalAddress((1 << 52) - 4096))
      #expect(!F.isPresent(0))
    }
    check(format.ops)
  }

  @Test("restricting keeps mapping ∩ protection, never adds, keeps every other bit", arguments: Format.allCases)
  func restrictingRoundTrip(_ format: Format) {
    func check<F: SimulatedFormat>(_: F.Type) {
      for size in PageSize.allCases {
        let level = size.leafLevel
        let frame = sampleFrames(size)[1]
        let extra = F.accessedBit | F.dirtyBit | F.wiredBit | F.managedBit
        for original in normalisedProtections {
          for mode in CacheMode.allCases {
            let e = F.leafEntry(for: frame, protection: original, cacheMode: mode, at: level, kind: .user) | extra
            for target in [Protection.none] + encodableProtections {
              let r = F.restricting(e, to: target)
              let what = "\(size.testDescription) \(original) -> \(target) \(mode)"
              #expect(F.protection(of: r) == original.intersection(target).union(.read), "\(what)")
              #expect(F.protection(of: r).isSubset(of: F.protection(of: e)), "\(what)")
              #expect(r & extra == extra, "\(what): A, D and software bits kept")
              #expect(F.leafFrame(r, at: level) == frame, "\(what)")
              #expect(F.cacheMode(of: r, at: level) == mode, "\(what)")
              #expect(F.isPresent(r) && !F.isMisconfigured(r, at: level), "\(what)")
              // Restricting twice is the same as once.
              #expect(F.restricting(r, to: target) == r, "\(what)")
            }
            // Restricting "to" everything changes nothing.
            #expect(F.restricting(e, to: .all) == e)
          }
        }
      }
    }
    check(format.ops)
  }

  @Test("write-protect keeps D and A", arguments: Format.allCases)
  func writeProtectKeepsAccessedDirty(_ format: Format) {
    func check<F: SimulatedFormat>(_: F.Type) {
      for size in PageSize.allCases {
        let level = size.leafLevel
        let e =
          F.leafEntry(for: sampleFrames(size)[0], protection: .readWrite, cacheMode: .writeBack, at: level, kind: .user)
          | F.accessedBit | F.dirtyBit
        #expect(F.pageAttributes(of: e) == [.referenced, .modified, .writable])
        let r = F.restricting(e, to: .read)
        #expect(F.protection(of: r) == .read)
        #expect(r & F.accessedBit != 0)
        #expect(r & F.dirtyBit != 0)
        #expect(F.pageAttributes(of: r) == [.referenced, .modified])
      }
    }
    check(format.ops)
  }

  @Test("young/old and dirty/clean toggle only A and D", arguments: Format.allCases)
  func youngOldDirtyClean(_ format: Format) {
    func check<F: SimulatedFormat>(_: F.Type) {
      #expect(F.accessedBit != 0 && F.dirtyBit != 0 && F.accessedBit != F.dirtyBit)
      #expect(F.hardwareBits == F.accessedBit | F.dirtyBit)
      let e = F.leafEntry(
        for: PhysicalAddress(0x1234_5000), protection: .all, cacheMode: .writeThrough, at: .pageTable, kind: .user)
      let young = e | F.accessedBit
      let dirty = young | F.dirtyBit
      #expect(F.pageAttributes(of: e) == [.writable])
      #expect(F.pageAttributes(of: young) == [.referenced, .writable])
      #expect(F.pageAttributes(of: dirty) == [.referenced, .modified, .writable])
      let clean = dirty & ~F.dirtyBit
      let old = clean & ~F.accessedBit
      #expect(clean == young)
      #expect(old == e)
      #expect(F.pageAttributes(of: clean) == [.referenced, .writable])
      for entry in [young, dirty, clean, old] {
        #expect(F.protection(of: entry) == .all)
        #expect(F.leafFrame(entry, at: .pageTable) == PhysicalAddress(0x1234_5000))
        #expect(F.cacheMode(of: entry, at: .pageTable) == .writeThrough)
        #expect(F.isPresent(entry))
      }
    }
    check(format.ops)
  }

  @Test("pageAttributes(of:) and entryBits(for:) round-trip all 8 combinations", arguments: Format.allCases)
  func pageAttributesRoundTrip(_ format: Format) {
    func check<F: SimulatedFormat>(_: F.Type) {
      #expect(F.entryBits(for: .referenced) == F.accessedBit)
      #expect(F.entryBits(for: .modified) == F.dirtyBit)
      #expect(F.entryBits(for: []) == 0)
      var seen = Set<UInt64>()
      for attributes in allPageAttributes {
        let bits = F.entryBits(for: attributes)
        seen.insert(bits)
        #expect(F.pageAttributes(of: bits) == attributes, "\(attributes.rawValue)")
        // On a read-only leaf the bits read back the same.
        let leaf = F.leafEntry(
          for: PhysicalAddress(0x8000), protection: .read, cacheMode: .writeBack, at: .pageTable, kind: .user)
        #expect(F.pageAttributes(of: leaf | bits) == attributes, "\(attributes.rawValue)")
      }
      #expect(seen.count == 8)
    }
    check(format.ops)
  }

  @Test("cache mode encodes and decodes at every leaf level", arguments: Format.allCases, PageSize.allCases)
  func cacheModeRoundTrip(_ format: Format, _ size: PageSize) {
    func check<F: SimulatedFormat>(_: F.Type) {
      let level = size.leafLevel
      var encodings = Set<UInt64>()
      for mode in CacheMode.allCases {
        for protection in normalisedProtections {
          let e = F.leafEntry(
            for: sampleFrames(size)[1], protection: protection, cacheMode: mode, at: level, kind: .user)
          #expect(F.cacheMode(of: e, at: level) == mode, "\(mode) \(protection)")
          #expect(F.leafFrame(e, at: level) == sampleFrames(size)[1], "\(mode)")
          // With A, D and software bits set the mode still reads back.
          let busy = e | F.accessedBit | F.dirtyBit | F.wiredBit | F.managedBit
          #expect(F.cacheMode(of: busy, at: level) == mode, "\(mode) \(protection)")
        }
        encodings.insert(
          F.leafEntry(for: PhysicalAddress(0), protection: .read, cacheMode: mode, at: level, kind: .user))
      }
      #expect(encodings.count == CacheMode.allCases.count, "every mode has its own encoding")
    }
    check(format.ops)
  }
}

// MARK: - Native bit layout

@Suite("Native entry format")
struct NativeFormatTests {
  @Test("bit positions")
  func bitPositions() {
    #expect(NativePTE.present == 1 << 0)
    #expect(NativePTE.writable == 1 << 1)
    #expect(NativePTE.user == 1 << 2)
    #expect(NativePTE.writeThrough == 1 << 3)
    #expect(NativePTE.cacheDisable == 1 << 4)
    #expect(NativePTE.accessed == 1 << 5)
    #expect(NativePTE.dirty == 1 << 6)
    #expect(NativePTE.pageSize == 1 << 7)
    #expect(NativePTE.pat4K == 1 << 7)
    #expect(NativePTE.global == 1 << 8)
    #expect(NativePTE.wired == 1 << 9)
    #expect(NativePTE.pvList == 1 << 10)
    #expect(NativePTE.patLarge == 1 << 12)
    #expect(NativePTE.noExecute == 1 << 63)
    #expect(NativePTE.accessedBit == 1 << 5)
    #expect(NativePTE.dirtyBit == 1 << 6)
    #expect(NativePTE.wiredBit == 1 << 9)
    #expect(NativePTE.managedBit == 1 << 10)
    #expect(NativePTE.frameMask == 0x000f_ffff_ffff_f000)
    #expect(String(describing: NativePTE.formatName) == "native")
  }

  @Test("leaf entries, exact values")
  func leafValues() {
    let f = PhysicalAddress(0x1234_5000)
    func leaf(
      _ p: Protection, _ m: CacheMode = .writeBack, _ l: PageTableLevel = .pageTable, _ k: AddressSpaceKind = .user
    )
      -> UInt64
    {
      NativePTE.leafEntry(
        for: PhysicalAddress(f.rawValue & ~(l.bytesPerEntry - 1)), protection: p, cacheMode: m, at: l, kind: k)
    }
    // P | RW | US, executable.
    #expect(leaf(.all) == 0x1234_5000 | 0b111)
    // Read-only, no-execute.
    let nx = UInt64(1) << 63
    #expect(leaf(.read) == 0x1234_5000 | 0b101 | nx)
    #expect(leaf(.readWrite) == 0x1234_5000 | 0b111 | nx)
    #expect(leaf(.readExecute) == 0x1234_5000 | 0b101)
    // Kernel: global instead of user.
    #expect(leaf(.all, .writeBack, .pageTable, .kernel) == 0x1234_5000 | 0b011 | 1 << 8)
    // Large leaves carry PS.
    #expect(leaf(.all, .writeBack, .pageDirectory) == 0x1220_0000 | 0b111 | 1 << 7)
    #expect(leaf(.all, .writeBack, .pageDirectoryPointerTable) == 0 | 0b111 | 1 << 7)
    // PWT / PCD for PAT indices 1-3.
    #expect(leaf(.all, .writeThrough) == 0x1234_5000 | 0b111 | 1 << 3)
    #expect(leaf(.all, .uncachedOverridable) == 0x1234_5000 | 0b111 | 1 << 4)
    #expect(leaf(.all, .uncached) == 0x1234_5000 | 0b111 | 1 << 3 | 1 << 4)
  }

  @Test("the PAT bit is bit 7 in a 4K leaf and bit 12 in 2M/1G leaves")
  func patBitPosition() {
    for mode in [CacheMode.writeCombining, .writeProtected] {
      let small = NativePTE.leafEntry(
        for: PhysicalAddress(0x40_0000), protection: .read, cacheMode: mode, at: .pageTable, kind: .user)
      #expect(small & (1 << 7) != 0, "\(mode)")
      #expect(small & (1 << 12) == 0, "\(mode)")
      for level in [PageTableLevel.pageDirectory, .pageDirectoryPointerTable] {
        let large = NativePTE.leafEntry(
          for: PhysicalAddress(1 << 30), protection: .read, cacheMode: mode, at: level, kind: .user)
        #expect(large & (1 << 12) != 0, "\(mode) \(level)")
        #expect(large & (1 << 7) != 0, "\(mode) \(level): PS")
        #expect(NativePTE.leafFrame(large, at: level) == PhysicalAddress(1 << 30), "PAT bit is not part of the frame")
        #expect(!NativePTE.isMisconfigured(large, at: level))
      }
    }
    // PAT index 4 = WC: only the PAT bit; index 5 = WP: PAT and PWT.
    #expect(NativePTE.patIndex(for: .writeCombining) == 4)
    #expect(NativePTE.patIndex(for: .writeProtected) == 5)
    for mode in [CacheMode.writeBack, .writeThrough, .uncached, .uncachedOverridable] {
      let large = NativePTE.leafEntry(
        for: PhysicalAddress(1 << 21), protection: .read, cacheMode: mode, at: .pageDirectory, kind: .user)
      #expect(large & (1 << 12) == 0, "\(mode)")
      #expect(NativePTE.patIndex(for: mode) < 4, "\(mode)")
    }
  }

  @Test("table entries are P | RW | US")
  func tableEntry() {
    #expect(NativePTE.tableEntry(for: PhysicalAddress(0xabc_d000)) == 0xabc_d000 | 0b111)
  }

  @Test("IA32_PAT layout decodes to WB, WT, UC-, UC, WC, WP, UC-, UC")
  func patMSRValue() {
    // Architectural PAT type encodings (SDM Vol. 3A Table 13-10).
    enum PATType: UInt8 { case uc = 0, wc = 1, wt = 4, wp = 5, wb = 6, ucMinus = 7 }
    let entries = (0..<8).map { PATType(rawValue: UInt8(truncatingIfNeeded: NativePTE.patMSRValue >> (8 * $0))) }
    #expect(entries == [.wb, .wt, .ucMinus, .uc, .wc, .wp, .ucMinus, .uc])
    // Each cache mode's PAT index selects the PAT type with that meaning.
    let meaning: [CacheMode: PATType] = [
      .writeBack: .wb, .writeThrough: .wt, .uncachedOverridable: .ucMinus, .uncached: .uc,
      .writeCombining: .wc, .writeProtected: .wp,
    ]
    for mode in CacheMode.allCases {
      #expect(entries[Int(NativePTE.patIndex(for: mode))] == meaning[mode], "\(mode)")
    }
    // Hand-made entries using PAT indices 6 and 7 decode as the MSR says.
    let index6 = NativePTE.present | NativePTE.cacheDisable | NativePTE.pat4K
    let index7 = index6 | NativePTE.writeThrough
    #expect(NativePTE.cacheMode(of: index6, at: .pageTable) == .uncachedOverridable)
    #expect(NativePTE.cacheMode(of: index7, at: .pageTable) == .uncached)
  }

  @Test("misconfigured native entries")
  func misconfigured() {
    // PS in a PML4 entry is reserved.
    #expect(
      NativePTE.isMisconfigured(NativePTE.tableEntry(for: PhysicalAddress(0x1000)) | NativePTE.pageSize, at: .pml4))
    // A 2 MiB leaf whose frame is not 2 MiB aligned (bit 13 set).
    let large = NativePTE.leafEntry(
      for: PhysicalAddress(1 << 21), protection: .read, cacheMode: .writeBack, at: .pageDirectory, kind: .user)
    #expect(!NativePTE.isMisconfigured(large, at: .pageDirectory))
    #expect(NativePTE.isMisconfigured(large | 1 << 13, at: .pageDirectory))
    #expect(NativePTE.isMisconfigured(large | 1 << 21, at: .pageDirectoryPointerTable))
    // Not present: never misconfigured.
    #expect(!NativePTE.isMisconfigured(NativePTE.pageSize, at: .pml4))
  }

  @Test("CR3 of a native pmap is its root")
  func cr3() throws {
    let machine = makeMachine()
    let pmap = try NativePTE.makePmap(on: machine)
    #expect(pmap.cr3 == pmap.root.rawValue)
    #expect(pmap.cr3 & 0xfff == 0)
    #expect(pmap.kind == .user)
    #expect(pmap.hardwareManagesAccessedDirty)
  }
}

// MARK: - EPT bit layout

@Suite("EPT entry format")
struct EPTFormatTests {
  @Test("bit positions")
  func bitPositions() {
    #expect(EPTPTE.read == 1 << 0)
    #expect(EPTPTE.write == 1 << 1)
    #expect(EPTPTE.execute == 1 << 2)
    #expect(EPTPTE.memoryTypeMask == 0b111 << 3)
    #expect(EPTPTE.ignorePAT == 1 << 6)
    #expect(EPTPTE.large == 1 << 7)
    #expect(EPTPTE.accessed == 1 << 8)
    #expect(EPTPTE.dirty == 1 << 9)
    #expect(EPTPTE.pvList == 1 << 60)
    #expect(EPTPTE.wired == 1 << 61)
    #expect(EPTPTE.accessedBit == 1 << 8)
    #expect(EPTPTE.dirtyBit == 1 << 9)
    #expect(EPTPTE.managedBit == 1 << 60)
    #expect(EPTPTE.wiredBit == 1 << 61)
    #expect(String(describing: EPTPTE.formatName) == "ept")
  }

  @Test("memory types: WB 6, UC 0, WC 1, WT 4, WP 5; IPAT on all but UC-")
  func memoryTypes() {
    let expected: [CacheMode: UInt64] = [
      .writeBack: 6, .uncached: 0, .uncachedOverridable: 0, .writeCombining: 1, .writeThrough: 4, .writeProtected: 5,
    ]
    for level in PageTableLevel.allCases where level != .pml4 {
      for mode in CacheMode.allCases {
        let e = EPTPTE.leafEntry(for: PhysicalAddress(0), protection: .read, cacheMode: mode, at: level, kind: .user)
        #expect((e >> 3) & 0b111 == expected[mode], "\(mode) \(level)")
        #expect((e & EPTPTE.ignorePAT != 0) == (mode != .uncachedOverridable), "\(mode) \(level)")
        #expect((e & EPTPTE.large != 0) == (level != .pageTable), "\(mode) \(level)")
      }
    }
    #expect(EPTPTE.memoryType(for: .writeBack) == .writeBack)
    #expect(EPTPTE.MemoryType.writeBack.rawValue == 6)
    #expect(EPTPTE.MemoryType.uncacheable.rawValue == 0)
    #expect(EPTPTE.MemoryType.writeCombining.rawValue == 1)
    #expect(EPTPTE.MemoryType.writeThrough.rawValue == 4)
    #expect(EPTPTE.MemoryType.writeProtected.rawValue == 5)
  }

  @Test("leaf entries, exact values")
  func leafValues() {
    func leaf(_ p: Protection) -> UInt64 {
      EPTPTE.leafEntry(
        for: PhysicalAddress(0x1234_5000), protection: p, cacheMode: .writeBack, at: .pageTable, kind: .user)
    }
    let wb: UInt64 = 6 << 3 | 1 << 6
    #expect(leaf(.read) == 0x1234_5000 | 0b001 | wb)
    #expect(leaf(.readWrite) == 0x1234_5000 | 0b011 | wb)
    #expect(leaf(.readExecute) == 0x1234_5000 | 0b101 | wb)
    #expect(leaf(.all) == 0x1234_5000 | 0b111 | wb)
    // Execute without read is mapped readable.
    #expect(leaf([.execute]) == 0x1234_5000 | 0b101 | wb)
    // The kind does not matter for EPT.
    #expect(
      EPTPTE.leafEntry(
        for: PhysicalAddress(0x1234_5000), protection: .all, cacheMode: .writeBack, at: .pageTable, kind: .kernel)
        == leaf(.all))
  }

  @Test("table entries are R | W | X")
  func tableEntry() {
    #expect(EPTPTE.tableEntry(for: PhysicalAddress(0xabc_d000)) == 0xabc_d000 | 0b111)
  }

  @Test("leafEntry never produces write without read or a misconfiguration")
  func neverWriteWithoutRead() {
    for size in PageSize.allCases {
      for protection in encodableProtections {
        for mode in CacheMode.allCases {
          let e = EPTPTE.leafEntry(
            for: sampleFrames(size)[1], protection: protection, cacheMode: mode, at: size.leafLevel, kind: .user)
          #expect(e & EPTPTE.read != 0, "\(protection) \(mode)")
          #expect(!EPTPTE.isMisconfigured(e, at: size.leafLevel), "\(protection) \(mode)")
          for target in [Protection.none] + encodableProtections {
            let r = EPTPTE.restricting(e, to: target)
            #expect(!EPTPTE.isMisconfigured(r, at: size.leafLevel), "\(protection) -> \(target) \(mode)")
          }
        }
      }
    }
  }

  @Test("hand-made misconfigurations are recognised")
  func misconfigured() {
    let frame: UInt64 = 0x1234_5000
    let wb: UInt64 = 6 << 3 | EPTPTE.ignorePAT
    // Write without read; execute without read.
    #expect(EPTPTE.isMisconfigured(frame | EPTPTE.write | wb, at: .pageTable))
    #expect(EPTPTE.isMisconfigured(frame | EPTPTE.write | EPTPTE.execute | wb, at: .pageTable))
    #expect(EPTPTE.isMisconfigured(frame | EPTPTE.execute | wb, at: .pageTable))
    #expect(!EPTPTE.isMisconfigured(frame | EPTPTE.read | wb, at: .pageTable))
    // Reserved memory types 2, 3, 7, at every leaf level; the others are fine.
    for level in [PageTableLevel.pageTable, .pageDirectory, .pageDirectoryPointerTable] {
      let base = (level == .pageTable ? 0 : EPTPTE.large) | EPTPTE.read
      for type: UInt64 in 0...7 {
        let reserved = [2, 3, 7].contains(type)
        #expect(EPTPTE.isMisconfigured(base | type << 3, at: level) == reserved, "type \(type) at \(level)")
      }
    }
    // Not present: never misconfigured.
    #expect(!EPTPTE.isMisconfigured(0, at: .pageTable))
  }

  @Test("EPT pointer of a pmap", arguments: [true, false])
  func eptPointer(_ accessedDirty: Bool) throws {
    let machine = makeMachine()
    let pmap = try EPTPTE.makePmap(on: machine, accessedDirty: accessedDirty)
    #expect(pmap.hardwareManagesAccessedDirty == accessedDirty)
    let eptp = EPTPointer(pmap)
    #expect(pmap.eptPointer == eptp)
    #expect(eptp.memoryType == 6)
    #expect(eptp.walkLength == 4)
    #expect(eptp.accessedDirtyEnabled == accessedDirty)
    #expect((eptp.rawValue & (1 << 6) != 0) == accessedDirty)
    #expect(eptp.root == pmap.root)
    #expect(eptp.isValid)
    #expect(eptp.rawValue == pmap.root.rawValue | 6 | 3 << 3 | (accessedDirty ? 1 << 6 : 0))
  }

  @Test("invalid EPT pointer values")
  func invalidPointers() {
    let good: UInt64 = 0x5000 | 6 | 3 << 3
    #expect(EPTPointer(rawValue: good).isValid)
    #expect(EPTPointer(rawValue: 0x5000 | 0 | 3 << 3).isValid)  // UC paging structures
    #expect(!EPTPointer(rawValue: 0x5000 | 1 | 3 << 3).isValid)  // WC is not allowed
    #expect(!EPTPointer(rawValue: 0x5000 | 6 | 4 << 3).isValid)  // five-level walk
    #expect(!EPTPointer(rawValue: good | 1 << 8).isValid)  // reserved bit
    #expect(!EPTPointer(rawValue: good | 1 << 52).isValid)  // beyond the physical limit
  }
}
