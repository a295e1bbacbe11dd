import Synchronization

extension PageDatabase {
  // MARK: Registry

  /// Registers a pmap's adapter and its invalidation sink (both retained until
  /// ``unregister(slot:)``), its lock and its entry format; returns its slot.
  func register(_ owner: PVOwner, lock: SpinLock, format: PVFormat, invalidation: any InvalidationSink) -> Int {
    poolLock.lock()
    defer { poolLock.unlock() }
    let s = state
    precondition(s.pointee.registeredCount < pmapCapacity, "PageDatabase: more pmaps than pmapCapacity")
    var i = s.pointee.freeSlotHint
    while slots[i].owner != nil { i = (i + 1) % pmapCapacity }
    slots[i].owner = Unmanaged.passRetained(owner)
    slots[i].lock = lock
    slots[i].root = owner.pvRoot
    slots[i].sink = ObjectIdentifier(invalidation as AnyObject)
    slots[i].invalidation = Unmanaged.passRetained(SinkReference(invalidation))
    slots[i].format = format
    if !isSinkShared(slot: i) { sinkCount.pointee.add(1, ordering: .relaxed) }
    s.pointee.registeredCount += 1
    s.pointee.freeSlotHint = (i + 1) % pmapCapacity
    return i
  }

  /// Unregisters a pmap that has no mapping of a managed page left.
  func unregister(slot: Int) {
    poolLock.lock()
    let owner = slots[slot].owner.unsafelyUnwrapped
    let invalidation = slots[slot].invalidation.unsafelyUnwrapped
    if !isSinkShared(slot: slot) { sinkCount.pointee.subtract(1, ordering: .relaxed) }
    slots[slot].owner = nil
    slots[slot].lock = nil
    slots[slot].sink = nil
    slots[slot].invalidation = nil
    state.pointee.registeredCount -= 1
    poolLock.unlock()
    owner.release()
    invalidation.release()
  }

  /// Whether another registered pmap reports to the invalidation sink of the pmap in `slot`.
  ///
  /// - Precondition: the caller holds the pool lock.
  /// - Complexity: O(``pmapCapacity``).
  func isSinkShared(slot: Int) -> Bool {
    let sink = slots[slot].sink
    for j in 0..<pmapCapacity where j != slot && slots[j].owner != nil && slots[j].sink == sink { return true }
    return false
  }

  /// Calls `body` with the adapter of the pmap that pv entry `e` names, without retaining it.
  /// The caller holds the lock of a page whose list holds `e`, which keeps the pmap registered.
  @inlinable @inline(__always)
  func withOwner<R>(of e: UInt64, _ body: (PVOwner) -> R) -> R {
    slots[PVEntry.slot(e)].owner.unsafelyUnwrapped._withUnsafeGuaranteedRef(body)
  }

  // MARK: Changing every mapping of a page

  /// Calls `change` with every pv entry of page `p` in list order, then reports the
  /// invalidations owed: `change` changes the entry's leaf and returns whether the change must
  /// be invalidated.
  ///
  /// The loop keeps which entries owe one as bits in a register and stores nothing: it runs
  /// between locked operations, each of which waits for every earlier store. (A sentinel bit
  /// sits over one bit per entry, the last entry's lowest; each entry shifts it left and adds its
  /// own, until the sentinel reaches the top bit, after 63 entries; from then on the lowest bit
  /// stands for every later entry.) The sinks then get views that decode the requests from the
  /// list (``reportOwed(_:of:)``).
  ///
  /// - Precondition: the caller holds the page's lock.
  /// - Complexity: O(mappings).
  @inlinable @inline(__always)
  func changeEveryEntry(of p: UnsafeMutablePointer<ManagedPage>, _ change: (UInt64) -> Bool) {
    var owed: UInt64 = 1
    forEachEntry(of: p) { e in
      let owes: UInt64 = change(e) ? 1 : 0
      owed = owed &<< (1 &- (owed &>> 63)) | owes
    }
    if owed & (owed &- 1) != 0 { reportOwed(owed, of: p) }
  }

  /// Reports the invalidations that ``changeEveryEntry(of:_:)`` found owed (`owed`, in its
  /// form): one call per distinct sink, with a view of the page's list restricted to that
  /// sink's entries. With 63 entries or more (the lowest bit then stands for several), through
  /// explicit requests instead.
  ///
  /// When every registered pmap reports to one sink (``sinkCount`` is 1, the common case), the
  /// whole mask goes in one call. Reading the count without the pool lock is enough: every pmap
  /// with a request here has an entry on the page whose lock the caller holds, and registered
  /// before it entered that mapping under the same lock, so its registration is visible.
  ///
  /// - Precondition: the caller holds the page's lock; `owed` has a bit set below its sentinel.
  /// - Complexity: O(1) with one sink; O(mappings x sinks) with several.
  @inlinable @inline(never)
  func reportOwed(_ owed: UInt64, of p: UnsafeMutablePointer<ManagedPage>) {
    if owed &>> 63 != 0 { return reportOwedExplicitly(owed, of: p) }
    let sentinel: UInt64 = 1 &<< (63 &- owed.leadingZeroBitCount)
    if sinkCount.pointee.load(ordering: .relaxed) == 1 {
      return report(owed, of: p, to: PVEntry.slot(p.pointee.head))
    }
    // Several sinks: one pass over the list per sink, gathering the bits of the entries that
    // report to the sink of the first entry not reported yet.
    var rest = owed & ~sentinel
    while rest != 0 {
      var bit = sentinel
      var first = -1
      var mine: UInt64 = 0
      forEachEntry(of: p) { e in
        bit &>>= 1
        guard rest & bit != 0 else { return }
        let slot = PVEntry.slot(e)
        if first < 0 { first = slot }
        if slots[slot].sink == slots[first].sink { mine |= bit }
      }
      rest &= ~mine
      report(mine | sentinel, of: p, to: first)
    }
  }

  /// Calls the sink of the pmap in `slot` with the entries of page `p` whose bits are set in
  /// `owed` (sentinel form, fewer than 63 entries).
  @inlinable @inline(__always)
  func report(_ owed: UInt64, of p: UnsafeMutablePointer<ManagedPage>, to slot: Int) {
    let requests = InvalidationRequests(
      page: p, slots: slots, directMapBase: memory.directMapBase, owed: owed, count: owed.nonzeroBitCount &- 1)
    slots[slot].invalidation.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.sink.invalidate(requests) }
  }

  /// ``reportOwed(_:of:)`` for a page with 63 mappings or more: the entries whose bits are set,
  /// and every entry from the 63rd on when the lowest bit is set, as explicit requests in
  /// batches of ``PendingRequests/capacity`` on the stack.
  @inlinable @inline(never)
  func reportOwedExplicitly(_ owed: UInt64, of p: UnsafeMutablePointer<ManagedPage>) {
    withUnsafeTemporaryAllocation(of: InvalidationRequest.self, capacity: PendingRequests.capacity) { requests in
      withUnsafeTemporaryAllocation(of: Int.self, capacity: PendingRequests.capacity) { slots in
        var pending = PendingRequests(requests: requests.baseAddress!, slots: slots.baseAddress!)
        var position = 63
        forEachEntry(of: p) { e in
          position &-= position == 0 ? 0 : 1
          if owed &>> position & 1 != 0 { append(e, to: &pending) }
        }
        if pending.count != 0 { reportPending(&pending) }
      }
    }
  }

  /// Adds the invalidation of the address pv entry `e` maps to `pending`, reporting a full
  /// batch first.
  @inlinable @inline(__always)
  func append(_ e: UInt64, to pending: inout PendingRequests) {
    if pending.count == PendingRequests.capacity { reportPending(&pending) }
    let slot = PVEntry.slot(e)
    let n = pending.count
    pending.requests[n] = InvalidationRequest(
      root: slots[slot].root, page: VirtualAddress(truncating: PVEntry.linear(e)))
    pending.slots[n] = slot
    pending.count = n &+ 1
  }

  /// Reports a batch of explicit requests: one call per distinct sink.
  ///
  /// - Precondition: the caller holds the lock of the page whose mappings made the requests.
  @inlinable
  func reportPending(_ pending: inout PendingRequests) {
    var n = pending.count
    let requests = pending.requests
    let owners = pending.slots
    while n > 0 {
      // Several sinks: move the requests for the first one's sink to the front, report them,
      // drop them.
      let sink = slots[owners[0]].sink
      var k = 1
      while k < n && slots[owners[k]].sink == sink { k += 1 }
      for i in k..<n where slots[owners[i]].sink == sink {
        swap(&requests[i], &requests[k])
        swap(&owners[i], &owners[k])
        k += 1
      }
      let batch = InvalidationRequests(UnsafeBufferPointer(start: requests, count: k))
      slots[owners[0]].invalidation.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.sink.invalidate(batch) }
      for i in k..<n {
        requests[i - k] = requests[i]
        owners[i - k] = owners[i]
      }
      n -= k
    }
    pending.count = 0
  }

  // MARK: Pool

  /// Takes a node from the pool for a page's further mapping, first growing the pool by a frame
  /// of nodes from the allocator when it is empty; returns its reference (physical address | 1),
  /// or 0 when the pool is empty and the allocator has no frame (`enter` then reports
  /// ``EnterError/outOfPVEntries``, having changed nothing).
  ///
  /// Nodes leave the pool in order, so the further mappings of one page, entered one after the
  /// other by different pmaps, sit in adjacent nodes: a page's list spans two cache lines, not
  /// one per pmap. (Per-pmap stashes of 32 nodes made test&clear and remove_all 1.5-2.5x slower;
  /// see the README's benchmark notes.)
  ///
  /// - Precondition: the caller holds the lock of the page the node is for (lock order: page
  ///   stripe -> pool -> frame allocator).
  /// - Complexity: O(1); a pool lock round, and a frame from the allocator once in 255 calls.
  @inlinable @inline(__always)
  func takeNode() -> UInt64 {
    poolLock.lock()
    defer { poolLock.unlock() }
    let ref = popFreeNode()
    if ref != 0 || !growPool() { return ref }
    return popFreeNode()
  }

  /// Takes the pool's first free node without the pool lock and without growing the pool: 0,
  /// having changed nothing, when the pool is empty (``PVState/popFreeNode(_:in:)``).
  /// ``takeNode()`` calls it under the pool lock.
  ///
  /// - Precondition: the caller holds the pool lock, or the database was created with
  ///   ``Locking/callerSerialized``.
  /// - Complexity: O(1).
  @inlinable @inline(__always)
  func popFreeNode() -> UInt64 { PVState.popFreeNode(state, in: memory) }

  /// Adds a frame of nodes from the allocator to the pool; returns `false` when the allocator
  /// has none.
  ///
  /// - Precondition: the caller holds the pool lock.
  @inlinable @inline(never)
  func growPool() -> Bool {
    let s = state
    guard let frame = allocator.allocateFrame() else { return false }
    precondition(memory.covers(frame), "PageDatabase: the allocator returned a frame outside the direct map")
    let p = memory.pointer(to: frame)
    // Nodes 0..<255, linked in order; the last 8 bytes of the frame link the pool's frames.
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
    s.pointee.poolFrames = frame.rawValue
    s.pointee.poolFrameCount += 1
    return true
  }

  /// Returns the nodes of `chain` to the pool, under one pool lock.
  ///
  /// - Precondition: `chain` is not empty (the caller tests its count: no call for a page that
  ///   freed no node).
  /// - Complexity: O(1).
  @inlinable
  func release(_ chain: PVFreeChain) {
    precondition(chain.count != 0, "PageDatabase: releasing an empty chain of pv nodes")
    poolLock.lock()
    node(chain.tail)[1] = state.pointee.freeNodes
    state.pointee.freeNodes = chain.head
    poolLock.unlock()
  }

  /// Returns node `ref` to the pool.
  ///
  /// - Complexity: O(1), a pool lock round.
  @inlinable @inline(__always)
  func release(node ref: UInt64) {
    poolLock.lock()
    node(ref)[1] = state.pointee.freeNodes
    state.pointee.freeNodes = ref
    poolLock.unlock()
  }

  /// The node at `ref` (physical address | 1, never 0): ``PVNode/pointer(_:in:)``.
  @inlinable @inline(__always)
  func node(_ ref: UInt64) -> UnsafeMutablePointer<UInt64> { PVNode.pointer(ref, in: memory) }

  // MARK: pv-list

  /// Records pv entry `entry` (``PVEntry/make(slot:linear:)``) as the first mapping of page
  /// `page`, embedded in its metadata (`pmap_enter_pv` with no pv entry to allocate).
  ///
  /// - Precondition: the caller holds the page's lock; the page has no mapping.
  /// - Complexity: O(1).
  @inlinable @inline(__always)
  func insertFirst(_ entry: UInt64, into page: UnsafeMutablePointer<ManagedPage>) {
    page.pointee.head = entry
  }

  /// Records pv entry `entry` as a further mapping of page `page`, in pool node `ref`
  /// (from ``takeNode()``), linked at the front of the page's nodes (`pmap_enter_pv`).
  ///
  /// - Precondition: the caller holds the page's lock; the page has a mapping already.
  /// - Complexity: O(1).
  @inlinable @inline(__always)
  func insert(_ entry: UInt64, into page: UnsafeMutablePointer<ManagedPage>, node ref: UInt64) {
    ManagedPage.insert(entry, into: page, node: node(ref), ref: ref)
  }

  /// Records that pmap `slot` maps the managed page `frame` at `linear`, in pool node `ref`
  /// when the page has a mapping already (the caller took one with ``takeNode()``), embedded
  /// otherwise (`ref` is then 0).
  ///
  /// - Precondition: the caller holds the page's lock.
  /// - Complexity: O(1).
  @inlinable @inline(__always)
  func insert(slot: Int, linear: UInt64, frame: PhysicalAddress, node ref: UInt64) {
    let entry = PVEntry.make(slot: slot, linear: linear)
    let page = self.page(frame)
    if page.pointee.head == 0 {
      precondition(ref == 0, "PageDatabase: a pv node taken for a page's first mapping")
      insertFirst(entry, into: page)
    } else {
      precondition(ref != 0, "PageDatabase: no pv node taken for a further mapping")
      insert(entry, into: page, node: ref)
    }
  }

  /// Whether inserting a mapping of `frame` needs a pool node (the page has one already).
  ///
  /// - Precondition: the caller holds the page's lock.
  @inlinable @inline(__always)
  func needsNode(_ frame: PhysicalAddress) -> Bool { page(frame).pointee.head != 0 }

  /// Removes the pv entry of pmap `slot` at `linear` from page `frame` and merges `attributes`
  /// (the removed entry's final A/D/W) into the page's cache (`pmap_remove_pv` + `pp_attrs |=`).
  /// Returns the pool node this frees (the caller gives it back to the pool, ``release(node:)``,
  /// or gathers it in a ``PVFreeChain``), or 0.
  ///
  /// - Precondition: the caller holds the page's lock; the entry exists.
  /// - Complexity: O(mappings of the page); O(1) for the first.
  @inlinable
  func remove(slot: Int, linear: UInt64, frame: PhysicalAddress, attributes: PageAttributes) -> UInt64 {
    let entry = PVEntry.make(slot: slot, linear: linear)
    let page = self.page(frame)
    page.pointee.attributes.formUnion(attributes.subtracting(.writable))
    if page.pointee.head == entry { return removeFirst(of: page) }
    var previous: UnsafeMutablePointer<UInt64>? = nil
    var ref = page.pointee.firstNode
    while ref != 0 {
      let n = node(ref)
      if n[0] == entry {
        if let previous { previous[1] = n[1] } else { page.pointee.setFirstNode(n[1]) }
        return ref
      }
      previous = n
      ref = n[1]
    }
    preconditionFailure("PageDatabase: removing a pv entry that does not exist")
  }

  /// Removes the first pv entry of `page`: the entry of the first node moves into the page's
  /// metadata. Returns the node this frees, or 0.
  ///
  /// - Precondition: the caller holds the page's lock; the page has a mapping.
  /// - Complexity: O(1).
  @inlinable @inline(__always)
  func removeFirst(of page: UnsafeMutablePointer<ManagedPage>) -> UInt64 {
    let first = page.pointee.firstNode
    if first == 0 {
      page.pointee.head = 0
    } else {
      let n = node(first)
      page.pointee.head = n[0]
      page.pointee.setFirstNode(n[1])
    }
    return first
  }

  /// Calls `body` with every pv entry of the page at `frame` (packed), first embedded one first.
  @inlinable @inline(__always)
  func forEachEntry(of frame: PhysicalAddress, _ body: (UInt64) -> Void) {
    forEachEntry(of: page(frame), body)
  }

  /// Calls `body` with every pv entry of `page` (packed), first embedded one first.
  @inlinable @inline(__always)
  func forEachEntry(of page: UnsafeMutablePointer<ManagedPage>, _ body: (UInt64) -> Void) {
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
    let f = frame.alignedDown()
    pageLock(f).lock()
    defer { pageLock(f).unlock() }
    var n = 0
    forEachEntry(of: f) { _ in n += 1 }
    return n
  }

  /// Calls `body` with the root of each pmap that maps the managed page at `frame` and the
  /// address it maps it at: a walk of the page's pv-list (NetBSD's `pp_pvlist`).
  ///
  /// - Precondition: `manages(frame)`. `body` runs with the page's lock held: it must not call
  ///   back into this page database or into a pmap.
  /// - Complexity: O(mappings of the page).
  public func forEachMapping(
    of frame: PhysicalAddress, _ body: (_ pmapRoot: PhysicalAddress, _ va: VirtualAddress) -> Void
  ) {
    precondition(manages(frame), "PageDatabase: unmanaged frame")
    let f = frame.alignedDown()
    pageLock(f).lock()
    defer { pageLock(f).unlock() }
    forEachEntry(of: f) { e in
      body(withOwner(of: e) { $0.pvRoot }, VirtualAddress(truncating: PVEntry.linear(e)))
    }
  }
}
