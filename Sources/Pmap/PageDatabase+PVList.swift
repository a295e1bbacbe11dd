extension PageDatabase {
  // MARK: Registry

  /// Registers a pmap's adapter (retained until ``unregister(slot:)``); returns its slot.
  func register(_ owner: PVOwner) -> Int {
    let s = state
    precondition(s.pointee.registeredCount < pmapCapacity, "PageDatabase: more pmaps than pmapCapacity")
    var i = s.pointee.freeSlotHint
    while slots[i].owner != nil { i = (i + 1) % pmapCapacity }
    slots[i].owner = Unmanaged.passRetained(owner)
    slots[i].root = owner.pvRoot
    slots[i].sink = owner.pvSinkIdentity
    s.pointee.registeredCount += 1
    s.pointee.freeSlotHint = (i + 1) % pmapCapacity
    return i
  }

  func unregister(slot: Int) {
    slots[slot].owner.unsafelyUnwrapped.release()
    slots[slot].owner = nil
    slots[slot].sink = nil
    state.pointee.registeredCount -= 1
  }

  /// Calls `body` with the adapter of the pmap that pv entry `e` names, without retaining it.
  @inlinable @inline(__always)
  func withOwner<R>(of e: UInt64, _ body: (PVOwner) -> R) -> R {
    slots[PVEntry.slot(e)].owner.unsafelyUnwrapped._withUnsafeGuaranteedRef(body)
  }

  /// Records the invalidation an owner's answer says it owes for pv entry `e`; returns the
  /// answer without the flag.
  @inlinable @inline(__always)
  func settle(_ answer: PageAttributes, for e: UInt64) -> PageAttributes {
    guard answer.contains(.invalidationOwed) else { return answer }
    let s = state
    if s.pointee.pending.count == PendingRequests.capacity { reportPending() }
    let slot = PVEntry.slot(e)
    let n = s.pointee.pending.count
    s.pointee.pending.requests[n] = InvalidationRequest(
      root: slots[slot].root, page: VirtualAddress(truncating: PVEntry.linear(e)))
    s.pointee.pending.slots[n] = slot
    s.pointee.pending.count = n &+ 1
    return answer.subtracting(.invalidationOwed)
  }

  /// Reports the gathered invalidations: one call per distinct sink, before the page operation
  /// returns.
  @inlinable
  func reportPending() {
    let s = state
    var n = s.pointee.pending.count
    let requests = s.pointee.pending.requests
    let owners = s.pointee.pending.slots
    while n > 0 {
      // Move the requests for the first one's sink to the front, report them, drop them.
      let sink = slots[owners[0]].sink
      var k = 1
      for i in 1..<n where slots[owners[i]].sink == sink {
        swap(&requests[i], &requests[k])
        swap(&owners[i], &owners[k])
        k += 1
      }
      slots[owners[0]].owner.unsafelyUnwrapped._withUnsafeGuaranteedRef {
        $0.pvInvalidate(UnsafeBufferPointer(start: requests, count: k))
      }
      for i in k..<n {
        requests[i - k] = requests[i]
        owners[i - k] = owners[i]
      }
      n -= k
    }
    s.pointee.pending.count = 0
  }

  // MARK: Pool

  /// Grows the pool by one frame of nodes, for an `enter` that needs a node when none is free;
  /// returns the frame (for ``undoGrowth(_:)`` if that enter fails afterwards).
  ///
  /// - Throws: ``EnterError/outOfPVEntries`` when the allocator has no frame.
  @inlinable @inline(never)
  func growPool() throws(EnterError) -> PhysicalAddress {
    guard let frame = allocator.allocateFrame() else { throw .outOfPVEntries }
    precondition(memory.covers(frame), "PageDatabase: the allocator returned a frame outside the direct map")
    let s = state
    let p = memory.pointer(to: frame)
    // Nodes 0..<255, pushed so that node 0 ends up first; the last 16 bytes link pool frames.
    var next = s.pointee.freeNodes
    var i = PVNode.perFrame - 1
    while i >= 0 {
      p.storeBytes(of: 0, toByteOffset: i * 16, as: UInt64.self)
      p.storeBytes(of: next, toByteOffset: i * 16 + 8, as: UInt64.self)
      next = (frame.rawValue + UInt64(i * 16)) | 1
      i -= 1
    }
    p.storeBytes(of: s.pointee.poolFrames, toByteOffset: 4080, as: UInt64.self)
    s.pointee.freeNodes = next
    s.pointee.freeNodeCount += PVNode.perFrame
    s.pointee.poolFrames = frame.rawValue
    s.pointee.poolFrameCount += 1
    return frame
  }

  /// Gives back the frame ``growPool()`` just took, when the operation that needed it failed
  /// afterwards: its nodes are still the first ones on the free list.
  @inlinable
  func undoGrowth(_ frame: PhysicalAddress) {
    let s = state
    precondition(s.pointee.poolFrames == frame.rawValue, "PageDatabase: undoGrowth out of order")
    let p = memory.pointer(to: frame)
    s.pointee.freeNodes = p.load(fromByteOffset: (PVNode.perFrame - 1) * 16 + 8, as: UInt64.self)
    s.pointee.freeNodeCount -= PVNode.perFrame
    s.pointee.poolFrames = p.load(fromByteOffset: 4080, as: UInt64.self)
    s.pointee.poolFrameCount -= 1
    allocator.releaseFrame(frame)
  }

  @inlinable @inline(__always)
  func node(_ ref: UInt64) -> UnsafeMutablePointer<UInt64> {
    memory.pointer(to: PhysicalAddress(truncating: ref & ~1)).assumingMemoryBound(to: UInt64.self)
  }

  // MARK: pv-list

  /// Records that pmap `slot` maps the managed page `frame` at `linear` (`pmap_enter_pv`).
  ///
  /// - Precondition: a pool node is free if the page already has a mapping (`enter` grows the
  ///   pool first when needed).
  /// - Complexity: O(1).
  @inlinable
  func insert(slot: Int, linear: UInt64, frame: PhysicalAddress) {
    let entry = PVEntry.make(slot: slot, linear: linear)
    let page = self.page(frame)
    let s = state
    s.pointee.mappingCount &+= 1
    if page.pointee.head == 0 {
      page.pointee.head = entry
      return
    }
    let ref = s.pointee.freeNodes
    precondition(ref != 0, "PageDatabase: no pv node reserved")
    let n = node(ref)
    s.pointee.freeNodes = n[1]
    s.pointee.freeNodeCount &-= 1
    s.pointee.nodesInUse &+= 1
    n[0] = entry
    n[1] = page.pointee.firstNode
    page.pointee.setFirstNode(ref)
  }

  /// Removes the pv entry of pmap `slot` at `linear` from page `frame` and merges `attributes`
  /// (the removed entry's final A/D/W) into the page's cache (`pmap_remove_pv` + `pp_attrs |=`).
  ///
  /// - Precondition: the entry exists.
  /// - Complexity: O(mappings of the page); O(1) for the first.
  @inlinable
  func remove(slot: Int, linear: UInt64, frame: PhysicalAddress, attributes: PageAttributes) {
    let entry = PVEntry.make(slot: slot, linear: linear)
    let page = self.page(frame)
    let s = state
    s.pointee.mappingCount &-= 1
    page.pointee.attributes.formUnion(attributes.subtracting(.writable))
    if page.pointee.head == entry {
      let first = page.pointee.firstNode
      if first == 0 {
        page.pointee.head = 0
      } else {
        let n = node(first)
        page.pointee.head = n[0]
        page.pointee.setFirstNode(n[1])
        freeNode(first)
      }
      return
    }
    var previous: UnsafeMutablePointer<UInt64>? = nil
    var ref = page.pointee.firstNode
    while ref != 0 {
      let n = node(ref)
      if n[0] == entry {
        if let previous { previous[1] = n[1] } else { page.pointee.setFirstNode(n[1]) }
        freeNode(ref)
        return
      }
      previous = n
      ref = n[1]
    }
    preconditionFailure("PageDatabase: removing a pv entry that does not exist")
  }

  @inlinable @inline(__always)
  func freeNode(_ ref: UInt64) {
    let s = state
    let n = node(ref)
    n[0] = 0
    n[1] = s.pointee.freeNodes
    s.pointee.freeNodes = ref
    s.pointee.freeNodeCount &+= 1
    s.pointee.nodesInUse &-= 1
  }

  /// Calls `body` with every pv entry of the page at `frame` (packed), first embedded one first.
  @inlinable @inline(__always)
  func forEachEntry(of frame: PhysicalAddress, _ body: (UInt64) -> Void) {
    let page = self.page(frame)
    let head = page.pointee.head
    if head == 0 { return }
    body(head)
    var ref = page.pointee.firstNode
    while ref != 0 {
      let n = node(ref)
      let next = n[1]
      body(n[0])
      ref = next
    }
  }

  /// The number of mappings of the managed page at `frame`: the length of its pv-list, in every
  /// pmap and format.
  ///
  /// - Precondition: `manages(frame)`.
  /// - Complexity: O(mappings of the page).
  public func mappingCount(of frame: PhysicalAddress) -> Int {
    precondition(manages(frame), "PageDatabase: unmanaged frame")
    var n = 0
    forEachEntry(of: frame.alignedDown()) { _ in n += 1 }
    return n
  }

  /// Calls `body` with the root of each pmap that maps the managed page at `frame` and the
  /// address it maps it at: a walk of the page's pv-list (NetBSD's `pp_pvlist`).
  ///
  /// - Precondition: `manages(frame)`; `body` does not change mappings.
  /// - Complexity: O(mappings of the page).
  public func forEachMapping(
    of frame: PhysicalAddress, _ body: (_ pmapRoot: PhysicalAddress, _ va: VirtualAddress) -> Void
  ) {
    precondition(manages(frame), "PageDatabase: unmanaged frame")
    forEachEntry(of: frame.alignedDown()) { e in
      body(withOwner(of: e) { $0.pvRoot }, VirtualAddress(truncating: PVEntry.linear(e)))
    }
  }
}
