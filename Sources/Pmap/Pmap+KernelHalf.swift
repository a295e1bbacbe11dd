extension Pmap {
  /// Whether PML4 slot `slot` belongs to a kernel half this pmap shares (and does not own).
  ///
  /// - Complexity: O(1): one unsigned comparison.
  @inlinable @inline(__always)
  func isInSharedKernelHalf(slot: Int) -> Bool {
    // Folded away for a format that has no kernel half (EPT).
    guard Ops.hasKernelHalf else { return false }
    let s = state
    return UInt(bitPattern: slot &- s.pointee.sharedSlotStart) < UInt(bitPattern: s.pointee.sharedSlotCount)
  }

  /// Whether `range` reaches a PML4 slot of a kernel half this pmap shares.
  @inlinable @inline(__always)
  func reachesSharedKernelHalf(_ range: VirtualRange) -> Bool {
    let s = state
    let count = s.pointee.sharedSlotCount
    if count == 0 || range.isEmpty { return false }
    let first = Int(truncatingIfNeeded: range.linearStart >> 39)
    let last = Int(truncatingIfNeeded: (range.linearEnd &- 1) >> 39)
    let start = s.pointee.sharedSlotStart
    return first < start &+ count && last >= start
  }

  /// Whether this pmap shares a kernel half with a kernel pmap (``kernelHalfOwner`` is set).
  @inlinable public var sharesKernelHalf: Bool { kernelHalfOwner != nil }
}
