import Pmap

/// The native x86-64 page-table-entry format (Intel SDM Vol. 3A §4.5, Tables 4-15 to 4-20).
///
/// | bit | meaning |
/// |---|---|
/// | 0 | P, present |
/// | 1 | R/W, writable |
/// | 2 | U/S, user-accessible |
/// | 3, 4 | PWT, PCD: memory-type index bits 0 and 1 |
/// | 5 | A, accessed (set by the MMU) |
/// | 6 | D, dirty (leaves; set by the MMU) |
/// | 7 | PAT (4 KiB leaf) / PS, large page (levels 2 and 3) |
/// | 8 | G, global (leaves) |
/// | 9 | software: wired (NetBSD `PTE_WIRED`) |
/// | 10 | software: on a pv-list (NetBSD `PTE_PVLIST`) |
/// | 12 | PAT in a 2 MiB or 1 GiB leaf |
/// | 12-51 | frame (21-51 for 2 MiB, 30-51 for 1 GiB leaves) |
/// | 59-62 | protection key (not used) |
/// | 63 | XD / NX, no-execute (needs EFER.NXE) |
///
/// Intermediate entries are `P | R/W | U/S`: the leaf alone decides the rights.
///
/// Memory types are chosen through the PAT with the layout in ``patMSRValue``, which the kernel
/// writes to IA32_PAT (MSR 0x277) on every CPU. Its first four entries are the power-on defaults,
/// so write-back, write-through, UC- and UC work even where PAT is left alone.
public enum NativePTE: PTEOps {
  /// P.
  @inlinable public static var present: UInt64 { 1 << 0 }
  /// R/W.
  @inlinable public static var writable: UInt64 { 1 << 1 }
  /// U/S.
  @inlinable public static var user: UInt64 { 1 << 2 }
  /// PWT.
  @inlinable public static var writeThrough: UInt64 { 1 << 3 }
  /// PCD.
  @inlinable public static var cacheDisable: UInt64 { 1 << 4 }
  /// A.
  @inlinable public static var accessed: UInt64 { 1 << 5 }
  /// D.
  @inlinable public static var dirty: UInt64 { 1 << 6 }
  /// PS in entries at levels 2 and 3.
  @inlinable public static var pageSize: UInt64 { 1 << 7 }
  /// PAT in a 4 KiB leaf.
  @inlinable public static var pat4K: UInt64 { 1 << 7 }
  /// G.
  @inlinable public static var global: UInt64 { 1 << 8 }
  /// Software bit 9: wired.
  @inlinable public static var wired: UInt64 { 1 << 9 }
  /// Software bit 10: on a pv-list.
  @inlinable public static var pvList: UInt64 { 1 << 10 }
  /// PAT in a 2 MiB or 1 GiB leaf.
  @inlinable public static var patLarge: UInt64 { 1 << 12 }
  /// XD / NX.
  @inlinable public static var noExecute: UInt64 { 1 << 63 }
  /// The frame bits of a table entry or 4 KiB leaf.
  @inlinable public static var frameMask: UInt64 { 0x000f_ffff_ffff_f000 }

  /// The IA32_PAT value this format's memory-type encoding assumes:
  /// index 0 WB, 1 WT, 2 UC-, 3 UC, 4 WC, 5 WP, 6 UC-, 7 UC.
  @inlinable public static var patMSRValue: UInt64 { 0x0007_0501_0007_0406 }

  /// "native".
  @inlinable public static var formatName: StaticString { "native" }

  /// Whether P (bit 0) is set.
  @inlinable @inline(__always)
  public static func isPresent(_ entry: UInt64) -> Bool { entry & present != 0 }

  /// Whether PS (bit 7) is set: a 2 MiB or 1 GiB leaf (meaningful at levels 2 and 3 only).
  @inlinable @inline(__always)
  public static func isLargeLeaf(_ entry: UInt64) -> Bool { entry & pageSize != 0 }

  /// Bits 12-51 of a table entry.
  @inlinable @inline(__always)
  public static func tableFrame(_ entry: UInt64) -> PhysicalAddress {
    PhysicalAddress(truncating: entry & frameMask)
  }

  /// Bits 12-51 of a 4 KiB leaf; a large leaf's frame bits above its size (which also drops its
  /// PAT bit 12).
  @inlinable @inline(__always)
  public static func leafFrame(_ entry: UInt64, at level: PageTableLevel) -> PhysicalAddress {
    PhysicalAddress(truncating: entry & frameMask & ~(level.bytesPerEntry &- 1))
  }

  /// `frame | P | R/W | U/S`: intermediate entries grant everything, the leaf decides.
  @inlinable @inline(__always)
  public static func tableEntry(for frame: PhysicalAddress) -> UInt64 {
    frame.rawValue | present | writable | user
  }

  /// The PAT index (0-7) this format uses for `mode`.
  ///
  /// WB 0, WT 1, UC- 2, UC 3, WC 4, WP 5: looked up branch-free, one nibble per ``/Pmap/CacheMode``
  /// case in declaration order (WB, WC, WT, WP, UC, UC-).
  @inlinable @inline(__always)
  public static func patIndex(for mode: CacheMode) -> UInt64 {
    (0x23_5140 as UInt64 >> (UInt64(mode.rawValue) &* 4)) & 0xf
  }

  /// P, R/W for `.write`, XD unless `.execute`, U/S for a user address space or G for the kernel,
  /// the PAT index of `cacheMode` in PWT/PCD/PAT (``patIndex(for:)``), and PS above level 1
  /// (what NetBSD's `pmap_enter` builds from `protection_codes`, `pmap_pat_flags` and `pmap_pg_g`).
  @inlinable @inline(__always)
  public static func leafEntry(
    for frame: PhysicalAddress, protection: Protection, cacheMode: CacheMode, at level: PageTableLevel,
    kind: AddressSpaceKind
  ) -> UInt64 {
    var e = frame.rawValue | present
    if protection.contains(.write) { e |= writable }
    if !protection.contains(.execute) { e |= noExecute }
    e |= kind == .user ? user : global
    let index = patIndex(for: cacheMode)
    if index & 1 != 0 { e |= writeThrough }
    if index & 2 != 0 { e |= cacheDisable }
    if index & 4 != 0 { e |= level == .pageTable ? pat4K : patLarge }
    if level != .pageTable { e |= pageSize }
    return e
  }

  /// Always `.read`; `.write` when R/W is set; `.execute` when XD is clear.
  @inlinable @inline(__always)
  public static func protection(of entry: UInt64) -> Protection {
    var p: Protection = .read
    if entry & writable != 0 { p.insert(.write) }
    if entry & noExecute == 0 { p.insert(.execute) }
    return p
  }

  /// Clears R/W without `.write` and sets XD without `.execute`; a native entry cannot lose read
  /// while present. A, D and every other bit are kept.
  @inlinable @inline(__always)
  public static func restricting(_ entry: UInt64, to protection: Protection) -> UInt64 {
    var e = entry
    if !protection.contains(.write) { e &= ~writable }
    if !protection.contains(.execute) { e |= noExecute }
    return e
  }

  /// Decodes the PAT index of PWT, PCD and PAT (bit 7 at level 1, bit 12 above) with the
  /// ``patMSRValue`` layout.
  @inlinable
  public static func cacheMode(of entry: UInt64, at level: PageTableLevel) -> CacheMode {
    var index: UInt64 = 0
    if entry & writeThrough != 0 { index |= 1 }
    if entry & cacheDisable != 0 { index |= 2 }
    if entry & (level == .pageTable ? pat4K : patLarge) != 0 { index |= 4 }
    switch index {
    case 0: return .writeBack
    case 1: return .writeThrough
    case 2, 6: return .uncachedOverridable
    case 4: return .writeCombining
    case 5: return .writeProtected
    default: return .uncached
    }
  }

  /// Whether a present entry sets a reserved bit the pmap could produce by mistake: PS in a PML4
  /// entry, or frame bits below a large leaf's alignment.
  @inlinable
  public static func isMisconfigured(_ entry: UInt64, at level: PageTableLevel) -> Bool {
    // PS is reserved in a PML4 entry.
    guard isPresent(entry) else { return false }
    if level == .pml4 && entry & pageSize != 0 { return true }
    // A large leaf's frame must be aligned to its size (the low frame bits are reserved).
    if level != .pageTable && entry & pageSize != 0 {
      let reservedLow = frameMask & (level.bytesPerEntry &- 1) & ~patLarge
      if entry & reservedLow != 0 { return true }
    }
    return false
  }

  /// A, bit 5.
  @inlinable public static var accessedBit: UInt64 { accessed }
  /// D, bit 6.
  @inlinable public static var dirtyBit: UInt64 { dirty }
  /// Software bit 9.
  @inlinable public static var wiredBit: UInt64 { wired }
  /// Software bit 10.
  @inlinable public static var managedBit: UInt64 { pvList }

  /// A -> referenced, D -> modified, R/W -> writable (NetBSD `pmap_pte_to_pp_attrs`).
  @inlinable @inline(__always)
  public static func pageAttributes(of entry: UInt64) -> PageAttributes {
    var a: PageAttributes = []
    if entry & accessed != 0 { a.insert(.referenced) }
    if entry & dirty != 0 { a.insert(.modified) }
    if entry & writable != 0 { a.insert(.writable) }
    return a
  }

  /// referenced -> A, modified -> D, writable -> R/W (NetBSD `pmap_pp_attrs_to_pte`).
  @inlinable @inline(__always)
  public static func entryBits(for attributes: PageAttributes) -> UInt64 {
    var e: UInt64 = 0
    if attributes.contains(.referenced) { e |= accessed }
    if attributes.contains(.modified) { e |= dirty }
    if attributes.contains(.writable) { e |= writable }
    return e
  }
}

/// A native x86-64 address space: what CR3 points to.
public typealias NativePmap = Pmap<NativePTE>

extension Pmap where Ops == NativePTE {
  /// The value to load into CR3 for this address space (no PCID, PWT/PCD clear).
  @inlinable public var cr3: UInt64 { root.rawValue }
}
