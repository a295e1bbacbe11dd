extension Pmap {
  /// Whether `pa` lies in the managed range of ``pages``.
  @inlinable @inline(__always)
  func isManaged(_ pa: PhysicalAddress) -> Bool {
    pa.rawValue >= state.pointee.managedBase && pa.rawValue < state.pointee.managedEnd
  }

  /// The managed 4 KiB leaf at `linear`: a pv entry names one, so its absence is a broken
  /// invariant, not bad input.
  @inlinable @inline(__always)
  func managedLeaf(_ linear: UInt64) -> EntryPointer { managedLeafLookup(linear).entry }

  /// ``managedLeaf(_:)`` with the value the walk read.
  @inlinable @inline(__always)
  func managedLeafLookup(_ linear: UInt64) -> LeafLookup {
    guard let leaf = lookupPageLeaf(VirtualAddress(truncating: linear)), leaf.value & Ops.managedBit != 0 else {
      preconditionFailure("Pmap: a pv entry names an address with no managed mapping")
    }
    return leaf
  }

  /// Implementation of ``PVOwner/pvAttributes``.
  @inlinable
  public func _pvAttributes(atLinear linear: UInt64) -> PageAttributes {
    Ops.pageAttributes(of: managedLeaf(linear).load())
  }

  /// Implementation of ``PVOwner/pvClear``.
  @inlinable
  public func _pvClear(_ attributes: PageAttributes, atLinear linear: UInt64) -> PageAttributes {
    let leaf = managedLeafLookup(linear)
    guard hardwareManagesAccessedDirty else { return Ops.pageAttributes(of: leaf.value) }
    // Clearing A clears D too, so that D implies A stays true of every entry: the answer reports
    // the D it had and the page database keeps it in the page's cached attributes, so the page
    // stays modified (NetBSD keeps U and M of a page independent in the same way).
    var bits = Ops.entryBits(for: attributes.intersection([.referenced, .modified]))
    if attributes.contains(.referenced) { bits |= Ops.dirtyBit }
    // None of them set when the walk read the entry: nothing to clear, and no locked operation
    // (a pagedaemon scan meets mostly such cold pages). A bit the MMU sets right after the read
    // is an access after this clear, and stays set.
    if leaf.value & bits == 0 { return Ops.pageAttributes(of: leaf.value) }
    let old = leaf.entry.clearBits(bits)
    var answer = Ops.pageAttributes(of: old)
    if old & bits != 0 && old & Ops.accessedBit != 0 { answer.insert(.invalidationOwed) }
    return answer
  }

  /// Implementation of ``PVOwner/pvWriteProtect``.
  @inlinable
  public func _pvWriteProtect(atLinear linear: UInt64) -> PageAttributes {
    let p = managedLeaf(linear)
    let old = p.update { Ops.restricting($0, to: .readExecute) }
    var answer = Ops.pageAttributes(of: old)
    if old & Ops.accessedBit != 0 && Ops.restricting(old, to: .readExecute) != old { answer.insert(.invalidationOwed) }
    return answer
  }

  /// Implementation of ``PVOwner/pvRemove``.
  @inlinable
  public func _pvRemove(atLinear linear: UInt64) -> PageAttributes {
    // A 4 KiB leaf cannot split a large mapping: removeLeaf cannot throw here.
    let old = (try? removeLeaf(linear: linear, updatingPVList: false)) ?? 0
    finishOperation()
    return Ops.pageAttributes(of: old)
  }

  /// Implementation of ``PVOwner/pvInvalidate(_:)``.
  @inlinable
  public func _pvInvalidate(_ requests: UnsafeBufferPointer<InvalidationRequest>) { invalidation.invalidate(requests) }

  /// Implementation of ``PVOwner/pvSinkIdentity``.
  @inlinable
  public var _pvSinkIdentity: ObjectIdentifier { ObjectIdentifier(invalidation as AnyObject) }

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
