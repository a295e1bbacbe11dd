/// Why an address could not be constructed.
public enum AddressError: Error, Equatable, Sendable {
  /// Bits 63...47 of a virtual address are not all equal.
  case nonCanonical
  /// A physical address is at or above 2^52.
  case physicalAddressTooLarge
}

/// Why a range could not be constructed.
public enum RangeError: Error, Equatable, Sendable {
  /// The start or the length is not a multiple of 4 KiB.
  case unaligned
  /// The end precedes the start.
  case reversed
  /// The range runs out of the canonical half its start is in.
  case crossesCanonicalHole
}

/// Why ``Pmap/enter(_:_:protection:access:options:cacheMode:size:)`` failed. On any error nothing
/// changed: page tables, statistics and frame usage are as before the call.
public enum EnterError: Error, Equatable, Sendable {
  /// The virtual address is not aligned to the requested page size.
  case unalignedVirtualAddress
  /// The physical address is not aligned to the requested page size.
  case unalignedPhysicalAddress
  /// The page's physical range reaches beyond the CPU's physical-address width
  /// (``PhysicalMemory/physicalAddressBits``, MAXPHYADDR).
  case physicalAddressOutOfRange
  /// The protection is empty: use remove to unmap.
  case noRights
  /// `.write` without `.read`: x86 cannot express it (an EPT misconfiguration).
  case writeWithoutRead
  /// The access that caused the fault is not allowed by the protection being entered.
  case accessExceedsProtection
  /// A page-table page was needed and the allocator had none (only with ``EnterOptions/canFail``).
  case outOfPageTableMemory
  /// A pv entry was needed for a managed page and the pool could not grow (only with
  /// ``EnterOptions/canFail``).
  case outOfPVEntries
  /// A large page maps the address at a higher level; remove it first.
  case conflictsWithLargeMapping
  /// A large page was requested where a page-table page already exists; remove the range first.
  case conflictsWithPageTable
  /// A 1 GiB page was requested from a pmap created without ``Pmap/supportsGigabytePages``.
  case unsupportedPageSize
}

/// Why a range operation (``Pmap/remove(_:)``, ``Pmap/protect(_:to:)``) was refused. On any
/// error nothing changed.
public enum RangeOperationError: Error, Equatable, Sendable {
  /// The range starts or ends inside a large mapping; remove or protect whole large pages.
  case splitsLargeMapping
  /// `.write` without `.read`: x86 cannot express it.
  case writeWithoutRead
}

/// Why ``Pmap/unwire(_:)`` failed. Nothing changed.
public enum UnwireError: Error, Equatable, Sendable {
  /// No mapping at that address.
  case notMapped
  /// The mapping exists but is not wired.
  case notWired
}
