import Pmap

extension UVM {
  /// The inactive queue's target: a third of the paged (active + inactive) frames.
  @inlinable public var inactiveTarget: Int {
    (pool.count(.active) + pool.count(.inactive)) / Self.inactiveFraction
  }

  /// Frees frames until the free count reaches the high watermark, or the scan budget runs out
  /// (NetBSD's `uvm_pageout` -> `uvmpd_scan` with the clock policy, `uvmpdpol_clock`).
  ///
  /// Two hands go round the paged frames:
  /// * the **front hand** (active queue head), run while the inactive queue is below
  ///   ``inactiveTarget``: it takes the page's referenced count (FreeBSD's `pmap_ts_referenced`:
  ///   how many mappings, over every pmap and format, had A set, clearing them). The count is
  ///   added to the page's activity (capped at ``activityMax``); an idle visit costs one. A page
  ///   with no activity left moves to the inactive tail; others go back to the active tail. After
  ///   a full turn of the active queue without a deactivation the hand deactivates regardless for
  ///   the rest of the run.
  /// * the **back hand** (inactive queue head): a page referenced since it was deactivated
  ///   (referenced count > 0) is reactivated: second chance. Otherwise it is evicted: if it was
  ///   modified through any mapping (or was never written to swap and is not all zero) it is
  ///   written to swap first; a clean page whose swap copy is current, or a never-modified
  ///   zero-fill page, is just dropped. Every mapping is removed (`pmap_page_protect(NONE)`, each
  ///   pmap invalidated) before the frame is freed. When swap is full the dirty page stays
  ///   resident and moves to the active tail. After a full turn of the paged frames without an
  ///   eviction the hand evicts regardless for the rest of the run (pages of an EPT without A/D
  ///   always look referenced, so this is how they are paged at all).
  ///
  /// Wired pages and host frames are on neither queue, so they are never examined.
  ///
  /// - Complexity: at most 4 × (active + inactive) + 64 pages examined.
  @discardableResult
  public func runPagedaemon() -> PagedaemonRun {
    var run = PagedaemonRun()
    stats.pointee.pagedaemonRuns &+= 1
    let budget = 4 &* (pool.count(.active) &+ pool.count(.inactive)) &+ 64
    var frontIdle = 0  // front-hand visits since the last deactivation
    var backIdle = 0  // back-hand visits since the last eviction
    // Once a hand has gone a full turn without progress it stays forced for the rest of the run.
    var frontForced = false
    var backForced = false
    while pool.freeCount < pool.highWatermark && run.scanned < budget {
      if pool.count(.inactive) < inactiveTarget || pool.count(.inactive) == 0, let a = pool.head(of: .active) {
        run.scanned &+= 1
        if frontIdle >= pool.count(.active) { frontForced = true }
        if frontHand(a, forced: frontForced) { frontIdle = 0 } else { frontIdle &+= 1 }
        continue
      }
      guard let i = pool.head(of: .inactive) else { break }
      run.scanned &+= 1
      if backIdle >= pool.count(.active) &+ pool.count(.inactive) { backForced = true }
      switch backHand(i, forced: backForced) {
      case .evicted(let wrote):
        backIdle = 0
        run.freed &+= 1
        if wrote { run.pagedOut &+= 1 }
      case .kept: backIdle &+= 1
      }
    }
    stats.pointee.pagesScanned &+= run.scanned
    run.reachedTarget = pool.freeCount >= pool.highWatermark
    return run
  }

  /// The front hand on active frame `r`; returns whether it deactivated it.
  @inlinable
  func frontHand(_ r: Int, forced: Bool) -> Bool {
    let refs = pages.referencedCount(pool.frame(r))
    let activity = min(Int(pool.records[r].activity) &+ refs, Int(Self.activityMax))
    if activity == 0 || forced {
      pool.records[r].activity = 0
      pool.move(r, to: .inactive)
      stats.pointee.deactivations &+= 1
      return true
    }
    pool.records[r].activity = UInt8(truncatingIfNeeded: activity &- 1)
    pool.move(r, to: .active)
    return false
  }

  /// What the back hand did.
  @usableFromInline
  enum BackHandResult {
    case evicted(wrote: Bool)
    case kept
  }

  /// The back hand on inactive frame `r`.
  @inlinable
  func backHand(_ r: Int, forced: Bool) -> BackHandResult {
    let refs = pages.referencedCount(pool.frame(r))
    if refs > 0 && !forced {
      pool.records[r].activity = UInt8(truncatingIfNeeded: min(refs, Int(Self.activityMax)))
      pool.move(r, to: .active)
      stats.pointee.reactivations &+= 1
      return .kept
    }
    return evict(r)
  }

  /// Evicts the guest page in frame `r` (on a paging queue): write it to swap if needed, remove
  /// every mapping, free the frame. A page that cannot be written stays resident and goes to the
  /// active tail.
  @usableFromInline
  func evict(_ r: Int) -> BackHandResult {
    let frame = pool.frame(r)
    let owner = Int(pool.records[r].owner) &- 1
    let index = Int(pool.records[r].page)
    let guest = guests[owner].unsafelyUnwrapped
    let s = guest.state[index]
    var slot = Int(truncatingIfNeeded: s >> 32) &- 1  // -1: none
    var newSlot = false
    // When swap is full and the page has no slot, find out before unmapping anything whether it
    // needs one, so that a full swap leaves the page untouched (mapped, on the active queue).
    if slot < 0 && swap.isFull && pages.isModified(frame) {
      return keep(r, swapFull: true)
    }
    _ = pages.removeAllMappings(frame)  // merges each mapping's final A/D into the page
    let modified = pages.isModified(frame)  // now the cache alone: exact
    if modified && slot < 0 {
      // Swap can be full here only if the page was written between the check and the removal
      // (the MMU runs concurrently on real hardware): it then stays resident, unmapped.
      guard let fresh = swap.allocate() else { return keep(r, swapFull: true) }
      slot = fresh
      newSlot = true
    }
    if modified {
      do throws(SwapIOError) {
        try swap.store.writePage(UnsafeRawPointer(memory.pointer(to: frame)), toSlot: slot)
      } catch {
        if newSlot { swap.release(slot) }
        stats.pointee.swapWriteErrors &+= 1
        return keep(r, swapFull: false)
      }
      _ = pages.clearModify(frame)
      stats.pointee.pageouts &+= 1
    } else {
      stats.pointee.cleanEvictions &+= 1
    }
    // Not modified and no slot: the page is still all zeros from its zero-fill: untouched again.
    guest.state[index] = slot >= 0 ? UInt64(slot &+ 1) << 32 : 0
    guest.counters[0] &-= 1
    if slot >= 0 { guest.counters[1] &+= 1 }
    pool.dequeue(r)
    pool.putFree(r)
    stats.pointee.evictions &+= 1
    return .evicted(wrote: modified)
  }

  /// Leaves frame `r` resident (swap full or failing) and moves it to the active tail.
  @usableFromInline
  func keep(_ r: Int, swapFull: Bool) -> BackHandResult {
    if swapFull { stats.pointee.swapFullSkips &+= 1 }
    pool.move(r, to: .active)
    return .kept
  }
}
