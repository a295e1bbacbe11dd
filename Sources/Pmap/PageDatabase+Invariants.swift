import Synchronization

/// A broken pv-list invariant found by ``PageDatabase/checkInvariants()``.
public struct PVInvariantViolation: Error, Equatable, Sendable {
  /// What is wrong.
  public enum Kind: Equatable, Sendable {
    /// A pv entry names a pmap slot that is not registered.
    case unknownPmap
    /// A pv entry names an address where no present, pv-tracked 4 KiB leaf maps this frame.
    case entryWithoutMapping
    /// The same (pmap, address) appears twice on a page's list.
    case duplicateEntry
    /// The pmaps hold a different number of pv-tracked leaves than there are pv entries.
    case trackedLeafCountMismatch(leaves: Int, entries: Int)
    /// The mappings the statistics report (pages with a first mapping, plus the nodes the pool
    /// has handed out) do not match the entries on the lists: a pool node leaked or was freed
    /// while still linked.
    case mappingCountMismatch(counted: Int, recorded: Int)
    /// A cached attribute set holds something other than `.referenced` and `.modified`.
    case badCachedAttributes
    /// The count of distinct invalidation sinks, which decides whether a page operation's
    /// requests need sorting by sink, differs from the registered pmaps' sinks.
    case sinkCountMismatch(counted: Int, recorded: Int)
  }
  /// What is wrong.
  public let kind: Kind
  /// The page concerned, if one.
  public let frame: PhysicalAddress?

  /// Creates a violation of `kind`, found at page `frame` if it concerns one page.
  @inlinable
  public init(_ kind: Kind, frame: PhysicalAddress? = nil) {
    self.kind = kind
    self.frame = frame
  }
}

extension PageDatabase {
  /// Checks the pv-lists against the pmaps (debug and tests): every pv entry names a registered
  /// pmap and an address where a present leaf with the pv-tracked bit maps this very frame;
  /// no entry appears twice; the pmaps hold exactly as many pv-tracked leaves as there are
  /// entries (so every such leaf has exactly one pv entry); the pool's count of nodes in use
  /// matches the nodes on the lists; the count of distinct invalidation sinks is exact.
  ///
  /// - Complexity: O(managed pages + mappings × mappings per page + page-table pages of every
  ///   registered pmap).
  public func checkInvariants() -> PVInvariantViolation? {
    var entries = 0
    for i in 0..<pageCount {
      let frame = PhysicalAddress(truncating: base.rawValue + UInt64(i) << 12)
      let cached = pages[i].attributes
      if !cached.isSubset(of: [.referenced, .modified]) {
        return PVInvariantViolation(.badCachedAttributes, frame: frame)
      }
      var seen: [UInt64] = []
      var violation: PVInvariantViolation? = nil
      forEachEntry(of: frame) { e in
        guard violation == nil else { return }
        entries += 1
        let slot = PVEntry.slot(e)
        guard slot >= 0, slot < pmapCapacity, let owner = slots[slot].owner?.takeUnretainedValue() else {
          violation = PVInvariantViolation(.unknownPmap, frame: frame)
          return
        }
        if seen.contains(e) {
          violation = PVInvariantViolation(.duplicateEntry, frame: frame)
          return
        }
        seen.append(e)
        if owner.pvFrame(atLinear: PVEntry.linear(e)) != frame {
          violation = PVInvariantViolation(.entryWithoutMapping, frame: frame)
        }
      }
      if let violation { return violation }
    }
    let recorded = statistics.mappings
    if entries != recorded {
      return PVInvariantViolation(.mappingCountMismatch(counted: entries, recorded: recorded))
    }
    var leaves = 0
    for i in 0..<pmapCapacity {
      if let owner = slots[i].owner?.takeUnretainedValue() { leaves += owner.pvTrackedLeafCount() }
    }
    if leaves != entries { return PVInvariantViolation(.trackedLeafCountMismatch(leaves: leaves, entries: entries)) }
    poolLock.lock()
    var sinks: [ObjectIdentifier] = []
    for i in 0..<pmapCapacity where slots[i].owner != nil {
      if let sink = slots[i].sink, !sinks.contains(sink) { sinks.append(sink) }
    }
    let recordedSinks = sinkCount.pointee.load(ordering: .relaxed)
    poolLock.unlock()
    if sinks.count != recordedSinks {
      return PVInvariantViolation(.sinkCountMismatch(counted: sinks.count, recorded: recordedSinks))
    }
    return nil
  }
}
