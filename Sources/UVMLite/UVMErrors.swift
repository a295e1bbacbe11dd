import Pmap

/// How a fault ended when it did not fail.
@frozen
public enum FaultOutcome: Equatable, Sendable {
  /// The page is mapped with the rights the RAM grants; resume the guest (or retry the access).
  case resolved(FaultKind)
  /// The address is not guest RAM: the hypervisor emulates it as MMIO. Nothing changed.
  case outsideGuestMemory
  /// The access asks for more than the RAM grants (e.g. a write to read-only RAM): the
  /// hypervisor injects a fault or emulates. Nothing changed.
  case accessDenied
}

/// What a resolved fault had to do.
@frozen
public enum FaultKind: UInt8, Equatable, Sendable {
  /// A never-touched page: a free frame filled with zeros.
  case zeroFill
  /// A page in swap: read into a free frame.
  case swapIn
  /// The page was resident: only the mapping was missing (a soft fault).
  case alreadyResident
}

/// Why a fault failed. Nothing changed: the page is where it was, no frame or slot was taken.
public enum FaultError: Error, Equatable, Sendable {
  /// No free frame, even after the pagedaemon ran (every page wired, referenced or unswappable).
  case outOfMemory
  /// The pmap needed a page-table page or a pv entry and the allocator had none.
  case outOfPageTableMemory
  /// The swap store could not read the page back.
  case swapReadFailed(SwapIOError)
}

/// Why a guest could not be created.
public enum GuestCreationError: Error, Equatable, Sendable {
  /// The size is zero, not a multiple of 4 KiB, or beyond what the EPT and the registry allow.
  case badSize
  /// No frame for the EPT's root page.
  case outOfPageTableMemory
  /// The registry is full.
  case tooManyGuests
}

/// Why ``UVM/mapIntoHost(_:pmap:at:)`` refused. Nothing changed.
public enum HostMappingError: Error, Equatable, Sendable {
  /// The base is not 4 KiB aligned, or base + size leaves the lower canonical half.
  case badRange
  /// The pmap does not track the pool's pages (it was created without the same `PageDatabase`).
  case foreignPmap
  /// The guest is already mapped into a host pmap.
  case alreadyMapped
}

/// Why ``UVM/wire(_:pages:)`` or ``UVM/unwire(_:pages:)`` failed.
public enum WiringError: Error, Equatable, Sendable {
  /// The page range is not inside guest RAM.
  case outOfRange
  /// Faulting a page in failed (pages wired before it stay wired).
  case fault(FaultError)
  /// Unwire of a page that is not wired.
  case notWired
}
