/// Counters of a ``UVM`` (NetBSD's `uvmexp` fields for faults and the pagedaemon).
@frozen
public struct UVMStatistics: Hashable, Sendable {
  /// Faults that filled a new frame with zeros (`uvmexp.flt_zero`).
  public var zeroFillFaults = 0
  /// Faults that read the page back from swap (`flt_swpin`... NetBSD's `pageins`).
  public var swapInFaults = 0
  /// Faults on a page already resident: mapped into the faulting pmap only (`flt_pgwait` et al.,
  /// a "soft" fault).
  public var residentFaults = 0
  /// Faults outside guest RAM: handed back as MMIO.
  public var outsideRAMFaults = 0
  /// Faults asking for more rights than the RAM grants.
  public var deniedFaults = 0
  /// Faults that failed: no frame even after the pagedaemon, no page-table page, swap read error.
  public var failedFaults = 0
  /// Pages written to swap (`uvmexp.pdpageouts`).
  public var pageouts = 0
  /// Frames taken from guest pages and freed (`pdfreed`).
  public var evictions = 0
  /// Evictions without a write: a clean page whose swap copy is current, or an unmodified
  /// never-swapped page (all zeros: it goes back to untouched).
  public var cleanEvictions = 0
  /// Inactive pages found referenced and moved back to active (`pdreact`).
  public var reactivations = 0
  /// Active pages moved to inactive (`pddeact`).
  public var deactivations = 0
  /// Pages the pagedaemon examined, both hands (`pdscans`).
  public var pagesScanned = 0
  /// Pagedaemon runs (`pdwoke`).
  public var pagedaemonRuns = 0
  /// Dirty pages left resident because swap was full.
  public var swapFullSkips = 0
  /// Swap writes that failed (the page stayed resident, nothing lost).
  public var swapWriteErrors = 0
  /// Swap reads that failed (the fault failed, the page stays in swap).
  public var swapReadErrors = 0

  /// All counters zero.
  @inlinable public init() {}

  /// Faults of every kind.
  @inlinable public var faults: Int {
    zeroFillFaults + swapInFaults + residentFaults + outsideRAMFaults + deniedFaults + failedFaults
  }
}

/// What one pagedaemon run did.
@frozen
public struct PagedaemonRun: Hashable, Sendable {
  /// Pages examined.
  public var scanned = 0
  /// Frames freed.
  public var freed = 0
  /// Pages written to swap.
  public var pagedOut = 0
  /// Whether free frames reached the high watermark.
  public var reachedTarget = false
  /// Nothing done yet.
  @inlinable public init() {}
}
