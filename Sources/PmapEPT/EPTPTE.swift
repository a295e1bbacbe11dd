import Pmap

/// The Intel EPT entry format (SDM Vol. 3C §29.3.2, Tables 29-1 to 29-6), as NetBSD's EPT pmap
/// uses it.
///
/// | bit | meaning |
/// |---|---|
/// | 0, 1, 2 | R, W, X: an entry is present when any is set |
/// | 3-5 | memory type of a leaf: UC 0, WC 1, WT 4, WP 5, WB 6 (2, 3, 7 are reserved) |
/// | 6 | IPAT: ignore the guest's PAT |
/// | 7 | large page (levels 2 and 3) |
/// | 8 | A, accessed (only when the EPT pointer enables A/D) |
/// | 9 | D, dirty (leaves; likewise) |
/// | 12-51 | frame (21-51 for 2 MiB, 30-51 for 1 GiB leaves) |
/// | 60 | software: on a pv-list (NetBSD `EPT_PVLIST`) |
/// | 61 | software: wired (NetBSD `EPT_WIRED`) |
///
/// W without R is a misconfiguration (an EPT-misconfiguration VM exit), and so is X without R on
/// CPUs without execute-only support: the pmap never produces either. Intermediate entries are
/// `R | W | X`.
public enum EPTPTE: PTEOps {
  /// R.
  @inlinable public static var read: UInt64 { 1 << 0 }
  /// W.
  @inlinable public static var write: UInt64 { 1 << 1 }
  /// X.
  @inlinable public static var execute: UInt64 { 1 << 2 }
  /// Memory-type field, bits 3-5.
  @inlinable public static var memoryTypeMask: UInt64 { 0b111 << 3 }
  /// IPAT.
  @inlinable public static var ignorePAT: UInt64 { 1 << 6 }
  /// Large page.
  @inlinable public static var large: UInt64 { 1 << 7 }
  /// A.
  @inlinable public static var accessed: UInt64 { 1 << 8 }
  /// D.
  @inlinable public static var dirty: UInt64 { 1 << 9 }
  /// Software bit 60: on a pv-list.
  @inlinable public static var pvList: UInt64 { 1 << 60 }
  /// Software bit 61: wired.
  @inlinable public static var wired: UInt64 { 1 << 61 }
  /// The frame bits of a table entry or 4 KiB leaf.
  @inlinable public static var frameMask: UInt64 { 0x000f_ffff_ffff_f000 }
  /// R | W | X.
  @inlinable public static var rightsMask: UInt64 { 0b111 }

  /// EPT memory-type encodings.
  public enum MemoryType: UInt64, Sendable {
    /// UC.
    case uncacheable = 0
    /// WC.
    case writeCombining = 1
    /// WT.
    case writeThrough = 4
    /// WP.
    case writeProtected = 5
    /// WB.
    case writeBack = 6
  }

  /// "ept".
  @inlinable public static var formatName: StaticString { "ept" }

  /// Whether any of R, W, X (bits 0-2) is set: EPT has no present bit.
  @inlinable @inline(__always)
  public static func isPresent(_ entry: UInt64) -> Bool { entry & rightsMask != 0 }

  /// Whether bit 7 is set: a 2 MiB or 1 GiB leaf (meaningful at levels 2 and 3 only).
  @inlinable @inline(__always)
  public static func isLargeLeaf(_ entry: UInt64) -> Bool { entry & large != 0 }

  /// Bits 12-51 of a table entry.
  @inlinable @inline(__always)
  public static func tableFrame(_ entry: UInt64) -> PhysicalAddress {
    PhysicalAddress(truncating: entry & frameMask)
  }

  /// Bits 12-51 of a 4 KiB leaf; a large leaf's frame bits above its size.
  @inlinable @inline(__always)
  public static func leafFrame(_ entry: UInt64, at level: PageTableLevel) -> PhysicalAddress {
    PhysicalAddress(truncating: entry & frameMask & ~(level.bytesPerEntry &- 1))
  }

  /// `frame | R | W | X`: intermediate entries grant everything, the leaf decides (bits 3-7 of
  /// a table entry are reserved and stay clear).
  @inlinable @inline(__always)
  public static func tableEntry(for frame: PhysicalAddress) -> UInt64 {
    frame.rawValue | read | write | execute
  }

  /// The EPT memory type for `mode`.
  ///
  /// WB 6, WC 1, WT 4, WP 5, UC 0 and UC- 0: looked up branch-free, one nibble per
  /// ``/Pmap/CacheMode`` case in declaration order (WB, WC, WT, WP, UC, UC-).
  @inlinable @inline(__always)
  public static func memoryTypeBits(for mode: CacheMode) -> UInt64 {
    (0x00_5416 as UInt64 >> (UInt64(mode.rawValue) &* 4)) & 0xf
  }

  /// The EPT memory type for `mode`.
  @inlinable
  public static func memoryType(for mode: CacheMode) -> MemoryType {
    MemoryType(rawValue: memoryTypeBits(for: mode)).unsafelyUnwrapped
  }

  /// Leaves carry IPAT, as NetBSD's, so the guest's PAT cannot change the host's choice; the one
  /// exception is ``/Pmap/CacheMode/uncachedOverridable``, entered as UC without IPAT: the guest's
  /// PAT then combines with it as the PAT combines with an MTRR, which gives UC except where the
  /// guest asks for WC (UC-'s behaviour), and the mode survives a round trip.
  /// Rights and type as NetBSD's `pmap_ept_prot` and `pmap_ept_type` encode them.
  @inlinable @inline(__always)
  public static func leafEntry(
    for frame: PhysicalAddress, protection: Protection, cacheMode: CacheMode, at level: PageTableLevel,
    kind: AddressSpaceKind
  ) -> UInt64 {
    var e = frame.rawValue | read
    if protection.contains(.write) { e |= write }
    if protection.contains(.execute) { e |= execute }
    e |= memoryTypeBits(for: cacheMode) << 3
    if cacheMode != .uncachedOverridable { e |= ignorePAT }
    if level != .pageTable { e |= large }
    return e
  }

  /// R, W and X, bit for bit.
  @inlinable @inline(__always)
  public static func protection(of entry: UInt64) -> Protection {
    var p: Protection = []
    if entry & read != 0 { p.insert(.read) }
    if entry & write != 0 { p.insert(.write) }
    if entry & execute != 0 { p.insert(.execute) }
    return p
  }

  /// Clears W without `.write` and X without `.execute`, and never leaves W without R. A, D and
  /// every other bit are kept.
  @inlinable @inline(__always)
  public static func restricting(_ entry: UInt64, to protection: Protection) -> UInt64 {
    var e = entry
    if !protection.contains(.write) { e &= ~write }
    if !protection.contains(.execute) { e &= ~execute }
    if !protection.contains(.read) && e & execute == 0 { e &= ~write }
    return e
  }

  /// Decodes the memory type (bits 3-5); UC with IPAT is ``/Pmap/CacheMode/uncached``, UC without
  /// it ``/Pmap/CacheMode/uncachedOverridable``.
  @inlinable
  public static func cacheMode(of entry: UInt64, at level: PageTableLevel) -> CacheMode {
    switch (entry & memoryTypeMask) >> 3 {
    case 1: return .writeCombining
    case 4: return .writeThrough
    case 5: return .writeProtected
    case 6: return .writeBack
    default: return entry & ignorePAT != 0 ? .uncached : .uncachedOverridable
    }
  }

  /// Whether the CPU would take an EPT-misconfiguration exit on `entry`: W or X without R, a
  /// reserved bit 3-7 in a table entry, a reserved memory type (2, 3, 7) in a leaf, or frame bits
  /// below a large leaf's alignment.
  @inlinable
  public static func isMisconfigured(_ entry: UInt64, at level: PageTableLevel) -> Bool {
    guard isPresent(entry) else { return false }
    if entry & read == 0 { return true }  // W or X without R
    if level == .pml4 || (level != .pageTable && entry & large == 0) {
      // A table entry: bits 3-7 are reserved.
      return entry & (0b11111 << 3) != 0
    }
    switch (entry & memoryTypeMask) >> 3 {
    case 2, 3, 7: return true
    default: break
    }
    if level != .pageTable {
      // A large leaf's frame must be aligned to its size.
      if entry & frameMask & (level.bytesPerEntry &- 1) != 0 { return true }
    }
    return false
  }

  /// A, bit 8.
  @inlinable public static var accessedBit: UInt64 { accessed }
  /// D, bit 9.
  @inlinable public static var dirtyBit: UInt64 { dirty }
  /// Software bit 61.
  @inlinable public static var wiredBit: UInt64 { wired }
  /// Software bit 60.
  @inlinable public static var managedBit: UInt64 { pvList }

  /// A -> referenced, D -> modified, W -> writable (NetBSD `pmap_ept_to_pp_attrs`).
  @inlinable @inline(__always)
  public static func pageAttributes(of entry: UInt64) -> PageAttributes {
    var a: PageAttributes = []
    if entry & accessed != 0 { a.insert(.referenced) }
    if entry & dirty != 0 { a.insert(.modified) }
    if entry & write != 0 { a.insert(.writable) }
    return a
  }

  /// referenced -> A, modified -> D, writable -> W (NetBSD `pmap_pp_attrs_to_ept`).
  @inlinable @inline(__always)
  public static func entryBits(for attributes: PageAttributes) -> UInt64 {
    var e: UInt64 = 0
    if attributes.contains(.referenced) { e |= accessed }
    if attributes.contains(.modified) { e |= dirty }
    if attributes.contains(.writable) { e |= write }
    return e
  }
}

/// An Intel EPT address space: guest-physical to host-physical.
public typealias EPTPmap = Pmap<EPTPTE>
