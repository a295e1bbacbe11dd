extension Pmap {
  /// Whether `pa` lies in the managed range of ``pages``.
  @inlinable @inline(__always)
  func isManaged(_ pa: PhysicalAddress) -> Bool {
    pa.rawValue >= state.pointee.managedBase && pa.rawValue < state.pointee.managedEnd
  }

  /// Implementation of ``PVOwner/pvRemove``.
  @inlinable
  public func _pvRemove(atLinear linear: UInt64) -> PageAttributes {
    // A 4 KiB leaf cannot split a large mapping: removeLeaf cannot throw here.
    let old = (try? removeLeaf(linear: linear, updatingPVList: false)) ?? 0
    finishOperation()
    return Ops.pageAttributes(of: old)
  }

  /// Implementation of ``PVOwner/pvFrame``.
  @inlinable
  public func _pvFrame(atLinear linear: UInt64) -> PhysicalAddress? {
    guard let leaf = lookupPageLeaf(VirtualAddress(truncating: linear)), leaf.value & Ops.managedBit != 0 else {
      return nil
    }
    return Ops.leafFrame(leaf.value, at: .pageTable)
  }

  /// Implementation of ``PVOwner/pvTrackedLeafCount``.
  @inlinable
  public func _pvTrackedLeafCount() -> Int {
    var n = 0
    forEachMapping(in: .lowerHalf) { _, t in if t.isManaged { n += 1 } }
    forEachMapping(in: .upperHalf) { _, t in if t.isManaged { n += 1 } }
    return n
  }
}
