import Pmap
import Testing

@Suite("Virtual and physical addresses, table indices, ranges")
struct AddressTests {
  @Test("canonical checks")
  func canonical() throws {
    #expect(try VirtualAddress(validating: 0x0000_7fff_ffff_f000).rawValue == 0x0000_7fff_ffff_f000)
    #expect(try VirtualAddress(validating: 0xffff_8000_0000_0000).rawValue == 0xffff_8000_0000_0000)
    #expect(try VirtualAddress(validating: 0).rawValue == 0)
    #expect(try VirtualAddress(validating: UInt64.max).rawValue == UInt64.max)
    #expect(throws: AddressError.nonCanonical) { try VirtualAddress(validating: 0x0000_8000_0000_0000) }
    #expect(throws: AddressError.nonCanonical) { try VirtualAddress(validating: 0xffff_7fff_ffff_ffff) }
    #expect(throws: AddressError.nonCanonical) { try VirtualAddress(validating: 0x0001_0000_0000_0000) }
    #expect(throws: AddressError.nonCanonical) { try VirtualAddress(validating: 0x8000_0000_0000_0000) }
    #expect(VirtualAddress(exactly: 0x0000_8000_0000_0000) == nil)
    #expect(VirtualAddress(exactly: 0x0000_7fff_ffff_ffff)?.rawValue == 0x0000_7fff_ffff_ffff)
    #expect(VirtualAddress.isCanonical(0xffff_8000_0000_0000))
    #expect(!VirtualAddress.isCanonical(0x0000_8000_0000_0000))
    #expect(VirtualAddress(0x0000_7fff_ffff_f000).rawValue == 0x0000_7fff_ffff_f000)
  }

  @Test("init(truncating:) sign-extends bit 47")
  func truncating() {
    #expect(VirtualAddress(truncating: 0x0000_8000_0000_0000).rawValue == 0xffff_8000_0000_0000)
    #expect(VirtualAddress(truncating: 0x0000_7fff_ffff_ffff).rawValue == 0x0000_7fff_ffff_ffff)
    #expect(VirtualAddress(truncating: 0x1234_0000_0000_1000).rawValue == 0x1000)
    #expect(VirtualAddress(truncating: 0xabcd_ffff_ffff_f000).rawValue == 0xffff_ffff_ffff_f000)
    #expect(VirtualAddress(truncating: 0xffff_8000_0000_0000).rawValue == 0xffff_8000_0000_0000)
  }

  @Test("linear form is monotonic across the hole")
  func linear() {
    #expect(VirtualAddress(0x0000_7fff_ffff_f000).linear == 0x0000_7fff_ffff_f000)
    #expect(VirtualAddress(0xffff_8000_0000_0000).linear == 0x0000_8000_0000_0000)
    #expect(VirtualAddress(UInt64.max).linear == 0x0000_ffff_ffff_ffff)
    #expect(VirtualAddress(0x1000).advanced(by: 0x1000) == VirtualAddress(0x2000))
    #expect(VirtualAddress(0x0000_7fff_ffff_f000).advanced(by: 0x1000) == nil)
    #expect(VirtualAddress(0xffff_ffff_ffff_f000).advanced(by: 0x1000) == nil)
  }

  @Test("physical address limit is 2^52")
  func physicalLimit() throws {
    #expect(PhysicalAddress.limit == 1 << 52)
    #expect(try PhysicalAddress(validating: (1 << 52) - 1).rawValue == (1 << 52) - 1)
    #expect(throws: AddressError.physicalAddressTooLarge) { try PhysicalAddress(validating: 1 << 52) }
    #expect(throws: AddressError.physicalAddressTooLarge) { try PhysicalAddress(validating: UInt64.max) }
    #expect(PhysicalAddress(exactly: 1 << 52) == nil)
    #expect(PhysicalAddress(exactly: 0)?.rawValue == 0)
    #expect(PhysicalAddress(frameNumber: 5).rawValue == 0x5000)
    #expect(PhysicalAddress(0x5678).frameNumber == 5)
    #expect(PhysicalAddress((1 << 52) - 4096).advanced(by: 4096) == nil)
    #expect(PhysicalAddress(0x20_1000).alignedDown(to: .size2M) == PhysicalAddress(0x20_0000))
  }

  @Test("TableIndex is 0 ..< 512")
  func tableIndex() {
    #expect(TableIndex(exactly: 512) == nil)
    #expect(TableIndex(exactly: -1) == nil)
    #expect(TableIndex(exactly: 511)?.value == 511)
    #expect(TableIndex(exactly: 0)?.value == 0)
    #expect(TableIndex(7).value == 7)
    #expect(TableIndex.count == 512)
  }

  @Test("index(at:) selects the 9-bit field of each level")
  func indexAtLevel() {
    // Lower half: PML4 0x0a3, PDPT 0x0b5, PD 0x1c7, PT 0x0d9, offset 0x123.
    let lower = address(pml4: 0x0a3, pdpt: 0x0b5, pd: 0x1c7, pt: 0x0d9, offset: 0x123)
    #expect(lower.rawValue == 0x0a3 << 39 | 0x0b5 << 30 | 0x1c7 << 21 | 0x0d9 << 12 | 0x123)
    #expect(lower.index(at: .pml4).value == 0x0a3)
    #expect(lower.index(at: .pageDirectoryPointerTable).value == 0x0b5)
    #expect(lower.index(at: .pageDirectory).value == 0x1c7)
    #expect(lower.index(at: .pageTable).value == 0x0d9)
    // Upper half: PML4 index 256 and above.
    let upper = VirtualAddress(0xffff_8000_0000_0000)
    #expect(upper.index(at: .pml4).value == 256)
    let top = VirtualAddress(0xffff_ffff_ffff_f000)
    for level in PageTableLevel.allCases { #expect(top.index(at: level).value == 511) }
    let lowTop = VirtualAddress(0x0000_7fff_ffff_f000)
    #expect(lowTop.index(at: .pml4).value == 255)
    #expect(lowTop.index(at: .pageDirectoryPointerTable).value == 511)
    #expect(lowTop.index(at: .pageDirectory).value == 511)
    #expect(lowTop.index(at: .pageTable).value == 511)
  }

  @Test("levels and page sizes")
  func levelsAndSizes() {
    #expect(PageTableLevel.pageTable.shift == 12)
    #expect(PageTableLevel.pageDirectory.shift == 21)
    #expect(PageTableLevel.pageDirectoryPointerTable.shift == 30)
    #expect(PageTableLevel.pml4.shift == 39)
    #expect(PageSize.size4K.bytes == 4096)
    #expect(PageSize.size2M.bytes == 2 << 20)
    #expect(PageSize.size1G.bytes == 1 << 30)
    #expect(PageSize.size2M.basePageCount == 512)
    #expect(PageSize.size1G.basePageCount == 262_144)
    #expect(PageSize.size2M.leafLevel == .pageDirectory)
    #expect(PageTableLevel.pml4.leafSize == nil)
    #expect(VirtualAddress(0x20_1000).isAligned(to: .size4K))
    #expect(!VirtualAddress(0x20_1000).isAligned(to: .size2M))
    #expect(VirtualAddress(0x20_1234).offset(in: .size2M) == 0x1234)
  }

  @Test("range errors")
  func rangeErrors() throws {
    let a = VirtualAddress(0x1000)
    let b = VirtualAddress(0x5000)
    #expect(throws: RangeError.unaligned) { try VirtualRange(start: VirtualAddress(0x1001), byteCount: 0x1000) }
    #expect(throws: RangeError.unaligned) { try VirtualRange(start: a, byteCount: 0x800) }
    #expect(throws: RangeError.unaligned) { try VirtualRange(from: a, to: VirtualAddress(0x5800)) }
    #expect(throws: RangeError.reversed) { try VirtualRange(from: b, to: a) }
    #expect(throws: RangeError.crossesCanonicalHole) {
      try VirtualRange(start: VirtualAddress(0x0000_7fff_ffff_f000), byteCount: 0x2000)
    }
    #expect(throws: RangeError.crossesCanonicalHole) {
      try VirtualRange(from: VirtualAddress(0x0000_7fff_ffff_0000), to: VirtualAddress(0xffff_8000_0000_1000))
    }
    #expect(throws: RangeError.crossesCanonicalHole) {
      try VirtualRange(start: VirtualAddress(0xffff_ffff_ffff_f000), byteCount: 0x2000)
    }
    // The last page of each half is fine.
    let lastLow = try VirtualRange(start: VirtualAddress(0x0000_7fff_ffff_f000), byteCount: 0x1000)
    #expect(lastLow.linearEnd == 1 << 47)
    let lastHigh = try VirtualRange(start: VirtualAddress(0xffff_ffff_ffff_f000), byteCount: 0x1000)
    #expect(lastHigh.linearEnd == 1 << 48)
    let r = try VirtualRange(from: a, to: b)
    #expect(r.start == a && r.byteCount == 0x4000 && !r.isEmpty)
    #expect(r.contains(VirtualAddress(0x4fff)) && !r.contains(b) && !r.contains(VirtualAddress(0xfff)))
    #expect(try VirtualRange(from: a, to: a).isEmpty)
  }

  @Test("lower and upper halves")
  func halves() {
    #expect(VirtualRange.lowerHalf.start.rawValue == 0)
    #expect(VirtualRange.lowerHalf.byteCount == 1 << 47)
    #expect(VirtualRange.lowerHalf.linearEnd == 1 << 47)
    #expect(VirtualRange.upperHalf.start.rawValue == 0xffff_8000_0000_0000)
    #expect(VirtualRange.upperHalf.byteCount == 1 << 47)
    #expect(VirtualRange.upperHalf.linearStart == 1 << 47)
    #expect(VirtualRange.upperHalf.linearEnd == 1 << 48)
    #expect(VirtualRange.lowerHalf.contains(VirtualAddress(0x0000_7fff_ffff_ffff)))
    #expect(!VirtualRange.lowerHalf.contains(VirtualAddress(0xffff_8000_0000_0000)))
    #expect(VirtualRange.upperHalf.contains(VirtualAddress(UInt64.max)))
    #expect(!VirtualRange.upperHalf.contains(VirtualAddress(0)))
  }
}
