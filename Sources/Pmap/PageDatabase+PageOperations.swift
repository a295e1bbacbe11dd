extension PageDatabase {
  /// The merged attributes of the managed page at `frame`: the cache, plus what every current
  /// mapping records, each read in its own pmap's format. What is found is cached (NetBSD's
  /// `pmap_sync_pv` without clearing). Referenced and modified are independent page attributes
  /// (as NetBSD's U and M): after ``clearReference(_:)`` a dirty page stays modified but is not
  /// referenced until touched again.
  ///
  /// - Precondition: `manages(frame)`.
  /// - Complexity: O(mappings).
  public func attributes(of frame: PhysicalAddress) -> PageAttributes {
    precondition(manages(frame), "PageDatabase: unmanaged frame")
    let f = frame.alignedDown()
    pageLock(f).lock()
    defer { pageLock(f).unlock() }
    var merged = page(f).pointee.attributes
    forEachEntry(of: f) { e in
      merged.formUnion(withOwner(of: e) { $0.pvAttributes(atLinear: PVEntry.linear(e)) })
    }
    page(f).pointee.attributes = merged.subtracting(.writable)
    return merged
  }

  /// Whether any mapping, past or present, has accessed the page since the last clear
  /// (`pmap_is_referenced`). Returns at once when the cached attribute is set.
  ///
  /// - Precondition: `manages(frame)`.
  /// - Complexity: O(1) when cached, else O(mappings).
  public func isReferenced(_ frame: PhysicalAddress) -> Bool {
    precondition(manages(frame), "PageDatabase: unmanaged frame")
    if cachedAttributes(frame.alignedDown()).contains(.referenced) { return true }
    return attributes(of: frame).contains(.referenced)
  }

  /// Whether any mapping, past or present, has written the page since the last clear
  /// (`pmap_is_modified`).
  ///
  /// - Precondition: `manages(frame)`.
  /// - Complexity: O(1) when cached, else O(mappings).
  public func isModified(_ frame: PhysicalAddress) -> Bool {
    precondition(manages(frame), "PageDatabase: unmanaged frame")
    if cachedAttributes(frame.alignedDown()).contains(.modified) { return true }
    return attributes(of: frame).contains(.modified)
  }

  /// Clears the referenced attribute in the cache and in every mapping; returns whether it was
  /// set anywhere (`pmap_clear_reference`). Each entry is changed with compare-and-swap, so an
  /// access racing with the clear is either reported now or leaves A set; a cleared entry is
  /// invalidated so that the next access sets A again. Mappings in a pmap without hardware A/D
  /// keep reporting referenced.
  ///
  /// - Precondition: `manages(frame)`.
  /// - Complexity: O(mappings).
  @discardableResult
  public func clearReference(_ frame: PhysicalAddress) -> Bool {
    clear(.referenced, frame).contains(.referenced)
  }

  /// Clears the modified attribute in the cache and in every mapping; returns whether it was set
  /// anywhere (`pmap_clear_modify`). A cleared entry is invalidated, so the next write through
  /// any mapping sets D again.
  ///
  /// - Precondition: `manages(frame)`.
  /// - Complexity: O(mappings).
  @discardableResult
  public func clearModify(_ frame: PhysicalAddress) -> Bool {
    clear(.modified, frame).contains(.modified)
  }

  /// Clears `which` (`.referenced`, `.modified` or both) in the cache and in every mapping, and
  /// returns the attributes merged over all of them before the clear (NetBSD's
  /// `pmap_clear_attrs`; the "test and clear A/D" of a clock scan). Entries change with atomic
  /// operations and are invalidated when their A bit was set.
  ///
  /// - Precondition: `manages(frame)`.
  /// - Complexity: O(mappings).
  @discardableResult
  public func clearAttributes(_ which: PageAttributes, of frame: PhysicalAddress) -> PageAttributes {
    clear(which, frame)
  }

  /// The page's cached attributes, read under its lock.
  @inlinable
  func cachedAttributes(_ f: PhysicalAddress) -> PageAttributes {
    pageLock(f).lock()
    defer { pageLock(f).unlock() }
    return page(f).pointee.attributes
  }

  /// Clears `which` everywhere; returns the merged attributes seen before the clear.
  func clear(_ which: PageAttributes, _ frame: PhysicalAddress) -> PageAttributes {
    precondition(manages(frame), "PageDatabase: unmanaged frame")
    let f = frame.alignedDown()
    pageLock(f).lock()
    defer { pageLock(f).unlock() }
    return withPendingRequests { pending in
      var seen = page(f).pointee.attributes
      page(f).pointee.attributes.subtract(which)
      forEachEntry(of: f) { e in
        let old = settle(withOwner(of: e) { $0.pvClear(which, atLinear: PVEntry.linear(e)) }, for: e, into: &pending)
        seen.formUnion(old)
        // D cleared along with A stays recorded in the cache.
        if old.contains(.modified) && !which.contains(.modified) { page(f).pointee.attributes.insert(.modified) }
      }
      return seen
    }
  }

  /// How many mappings had the accessed bit set, clearing it in each (FreeBSD's
  /// `pmap_ts_referenced`, the input of a clock / second-chance pagedaemon). The cached
  /// referenced attribute (left by mappings since removed) is cleared too and counts as one
  /// when no current mapping had A set. Mappings without hardware A/D always count.
  ///
  /// - Precondition: `manages(frame)`.
  /// - Complexity: O(mappings).
  public func referencedCount(_ frame: PhysicalAddress) -> Int {
    precondition(manages(frame), "PageDatabase: unmanaged frame")
    let f = frame.alignedDown()
    pageLock(f).lock()
    defer { pageLock(f).unlock() }
    let cachedReference = page(f).pointee.attributes.contains(.referenced)
    page(f).pointee.attributes.remove(.referenced)
    let count = withPendingRequests { pending in
      var count = 0
      forEachEntry(of: f) { e in
        let old = settle(
          withOwner(of: e) { $0.pvClear(.referenced, atLinear: PVEntry.linear(e)) }, for: e, into: &pending)
        if old.contains(.referenced) { count += 1 }
        if old.contains(.modified) { page(f).pointee.attributes.insert(.modified) }
      }
      return count
    }
    return count == 0 && cachedReference ? 1 : count
  }

  /// Lowers the rights of every mapping of the page (`pmap_page_protect`): a protection without
  /// `.write` write-protects every mapping (their dirty bits are kept); an empty protection
  /// removes every mapping from every pmap, each through its own invalidation sink, merging
  /// their final attributes into the cache; a protection with `.write` changes nothing.
  ///
  /// - Precondition: `manages(frame)`.
  /// - Complexity: O(mappings), plus the page-table pages the removals free.
  public func protectPage(_ frame: PhysicalAddress, to protection: Protection) {
    precondition(manages(frame), "PageDatabase: unmanaged frame")
    let f = frame.alignedDown()
    if protection.contains(.write) { return }
    if !protection.isEmpty {
      pageLock(f).lock()
      defer { pageLock(f).unlock() }
      withPendingRequests { pending in
        forEachEntry(of: f) { e in
          let attributes = settle(
            withOwner(of: e) { $0.pvWriteProtect(atLinear: PVEntry.linear(e)) }, for: e, into: &pending)
          page(f).pointee.attributes.formUnion(attributes.intersection([.referenced, .modified]))
        }
      }
      return
    }
    _ = removeAll(f)
  }

  /// Removes every mapping of page `f`; returns how many there were. Each removal needs the
  /// mapping's pmap locked, against the lock order (pmap -> page): the pmap's lock is only
  /// tried, and when it is busy the page's lock is dropped and the removal resumes after a
  /// pause (NetBSD's `pmap_pp_remove` retries the same way).
  func removeAll(_ f: PhysicalAddress) -> Int {
    let lock = pageLock(f)
    let p = page(f)
    var count = 0
    while true {
      lock.lock()
      while p.pointee.head != 0 {
        let entry = p.pointee.head
        let pmapLock = slots[PVEntry.slot(entry)].lock.unsafelyUnwrapped
        guard pmapLock.tryLock() else { break }
        let attributes = withOwner(of: entry) { $0.pvRemove(atLinear: PVEntry.linear(entry)) }
        // The node goes to the stash of the pmap whose lock is held: no pool lock.
        remove(
          slot: PVEntry.slot(entry), linear: PVEntry.linear(entry), frame: f, attributes: attributes,
          stash: slots[PVEntry.slot(entry)].stash)
        pmapLock.unlock()
        count += 1
      }
      if p.pointee.head == 0 {
        lock.unlock()
        return count
      }
      lock.unlock()
      // The pmap holding its lock may be waiting for this page: let it finish. (The pmap itself
      // must not be touched here, it may be gone; a host yields, a kernel pauses a few hundred
      // atomic loads.)
      if let yield = SpinLockBackoff.yield { yield() } else { for _ in 0..<256 where lock.isLocked { continue } }
    }
  }

  /// Removes every mapping of the page: ``protectPage(_:to:)`` with no rights
  /// (`pmap_page_protect(pg, VM_PROT_NONE)`); returns how many there were.
  @discardableResult
  public func removeAllMappings(_ frame: PhysicalAddress) -> Int {
    precondition(manages(frame), "PageDatabase: unmanaged frame")
    return removeAll(frame.alignedDown())
  }
}
