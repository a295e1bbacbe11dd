/// What ``UVM/evict(_:page:)`` did.
@frozen
public enum EvictionResult: Equatable, Sendable {
  /// The frame was freed; `wroteToSwap` tells whether the page was written out first.
  case evicted(wroteToSwap: Bool)
  /// The page was not resident: nothing to do.
  case notResident
  /// The page is wired: never evicted.
  case wired
  /// The page needed writing and swap was full, or the write failed: it stays resident.
  case kept
}

extension UVM {
  /// Evicts page `index` of `guest` now, whatever the pagedaemon would choose: the same steps
  /// as the back hand (write to swap if modified through any mapping, remove
  /// every mapping, free the frame). For a VMM that knows a page is cold (`madvise(MADV_PAGEOUT)`),
  /// and for tests.
  ///
  /// - Precondition: `index` in `0 ..< guest.pageCount`.
  @discardableResult
  public func evict(_ guest: GuestMemory, page index: Int) -> EvictionResult {
    guard case .resident(let r, _) = guest.residency(ofPage: index) else { return .notResident }
    if pool.records[r].queue == .wired { return .wired }
    switch evict(r) {
    case .evicted(let wrote): return .evicted(wroteToSwap: wrote)
    case .kept: return .kept
    }
  }
}
