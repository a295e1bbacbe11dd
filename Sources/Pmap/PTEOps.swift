/// One page-table-entry format: the bit layout the shared pmap machinery is generic over.
///
/// NetBSD makes its native pmap serve EPT through callbacks that "handle everything
/// PTE-related"; here a format is a type with static requirements, and ``Pmap`` is specialised
/// on it, so the shared walk compiles to straight-line code for each format with no indirect
/// calls. Requirements are level-aware where the bits differ by level (native bit 7 is PAT in a
/// 4 KiB leaf and PS above it; the PAT bit of a large leaf is bit 12).
///
/// Implementations: `NativePTE` (module PmapNative) and `EPTPTE` (module PmapEPT).
public protocol PTEOps {
  /// A short name for tables and diagnostics ("native", "ept").
  static var formatName: StaticString { get }

  /// Whether `entry` is present (native P; EPT: any of R, W, X).
  static func isPresent(_ entry: UInt64) -> Bool

  /// Whether a present `entry` at `level` (above level 1) maps a large page rather than pointing
  /// to a page-table page.
  static func isLargeLeaf(_ entry: UInt64) -> Bool

  /// The frame of the page-table page a present, non-leaf `entry` points to.
  static func tableFrame(_ entry: UInt64) -> PhysicalAddress

  /// The frame a present leaf `entry` at `level` maps (the large-page base for large leaves).
  static func leafFrame(_ entry: UInt64, at level: PageTableLevel) -> PhysicalAddress

  /// The entry that links a page-table page at `frame` into its parent.
  static func tableEntry(for frame: PhysicalAddress) -> UInt64

  /// The leaf entry mapping `frame` with `protection` (already normalised: non-empty, encodable)
  /// and `cacheMode`, at `level`, for an address space of `kind`. Without A, D, or software bits.
  static func leafEntry(
    for frame: PhysicalAddress, protection: Protection, cacheMode: CacheMode, at level: PageTableLevel,
    kind: AddressSpaceKind
  ) -> UInt64

  /// The rights a present leaf `entry` grants.
  static func protection(of entry: UInt64) -> Protection

  /// `entry` with every right not in `protection` removed (it never adds a right).
  /// A and D are kept: write-protecting a dirty page leaves it dirty.
  static func restricting(_ entry: UInt64, to protection: Protection) -> UInt64

  /// The memory type of a present leaf `entry` at `level`.
  static func cacheMode(of entry: UInt64, at level: PageTableLevel) -> CacheMode

  /// Whether `entry` at `level` is one the hardware would reject (an EPT misconfiguration:
  /// write without read, a reserved memory type). The pmap never produces one.
  static func isMisconfigured(_ entry: UInt64, at level: PageTableLevel) -> Bool

  /// The accessed bit.
  static var accessedBit: UInt64 { get }
  /// The dirty bit (leaves only).
  static var dirtyBit: UInt64 { get }
  /// Software bit: the mapping is wired (NetBSD `PTE_WIRED` / `EPT_WIRED`).
  static var wiredBit: UInt64 { get }
  /// Software bit: the mapping is on a pv-list (NetBSD `PTE_PVLIST` / `EPT_PVLIST`).
  static var managedBit: UInt64 { get }

  /// The format-neutral attributes recorded in `entry` (`pmap_pte_to_pp_attrs`,
  /// `pmap_ept_to_pp_attrs`).
  static func pageAttributes(of entry: UInt64) -> PageAttributes

  /// The entry bits that record `attributes` (`pmap_pp_attrs_to_pte`, `pmap_pp_attrs_to_ept`).
  static func entryBits(for attributes: PageAttributes) -> UInt64

  /// The adapter page operations call `pmap` through (see ``PVOwner``). The default,
  /// ``GenericPVOwner``, is correct; a format module provides a non-generic subclass so that
  /// the calls run code specialised for the format.
  static func makePVOwner(for pmap: Pmap<Self>) -> PVOwner

  /// Whether address spaces of this format have a kernel half that pmaps can share (see
  /// ``Pmap/Pmap/kernelHalfSlots``): true for native tables; false (the default) for EPT, which
  /// maps guest-physical addresses and nothing of the host kernel.
  static var hasKernelHalf: Bool { get }
}

extension PTEOps {
  /// No kernel half, unless the format says otherwise.
  @inlinable public static var hasKernelHalf: Bool { false }

  /// The bits the hardware updates on its own in a present entry.
  @inlinable @inline(__always)
  public static var hardwareBits: UInt64 { accessedBit | dirtyBit }

  /// Whether a present `entry` at `level` is a leaf: every level-1 entry, and large leaves above.
  @inlinable @inline(__always)
  public static func isLeaf(_ entry: UInt64, at level: PageTableLevel) -> Bool {
    level == .pageTable || isLargeLeaf(entry)
  }
}
