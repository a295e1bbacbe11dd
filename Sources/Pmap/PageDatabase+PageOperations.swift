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
    if page(frame.alignedDown()).pointee.attributes.contains(.referenced) { return true }
    return attributes(of: frame).contains(.referenced)
  }

  /// Whether any mapping, past or present, has written the page since the last clear
  /// (`pmap_is_modified`).
  ///
  /// - Precondition: `manages(frame)`.
  /// - Complexity: O(1) when cached, else O(mappings).
  public func isModified(_ frame: PhysicalAddress) -> Bool {
    precondition(manages(frame), "PageDatabase: unmanaged frame")
    if page(frame.alignedDown()).pointee.attributes.contains(.modified) { return true }
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

  /// Clears `which` everywhere; returns the merged attributes seen before the clear.
  func clear(_ which: PageAttributes, _ frame: PhysicalAddress) -> PageAttributes {
    precondition(manages(frame), "PageDatabase: unmanaged frame")
    let f = frame.alignedDown()
    var seen = page(f).pointee.attributes
    page(f).pointee.attributes.subtract(which)
    forEachEntry(of: f) { e in
      let old = settle(withOwner(of: e) { $0.pvClear(which, atLinear: PVEntry.linear(e)) }, for: e)
      seen.formUnion(old)
      // D cleared along with A stays recorded in the cache.
      if old.contains(.modified) && !which.contains(.modified) { page(f).pointee.attributes.insert(.modified) }
    }
    if state.pointee.pending.count != 0 { reportPending() }
    return seen
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
    let cachedReference = page(f).pointee.attributes.contains(.referenced)
    var count = 0
    page(f).pointee.attributes.remove(.referenced)
    forEachEntry(of: f) { e in
      let old = settle(withOwner(of: e) { $0.pvClear(.referenced, atLinear: PVEntry.linear(e)) }, for: e)
      if old.contains(.referenced) { count += 1 }
      if old.contains(.modified) { page(f).pointee.attributes.insert(.modified) }
    }
    if state.pointee.pending.count != 0 { reportPending() }
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
      forEachEntry(of: f) { e in
        let attributes = settle(withOwner(of: e) { $0.pvWriteProtect(atLinear: PVEntry.linear(e)) }, for: e)
        page(f).pointee.attributes.formUnion(attributes.intersection([.referenced, .modified]))
      }
      if state.pointee.pending.count != 0 { reportPending() }
      return
    }
    _ = removeAll(f)
  }

  /// Removes every mapping of page `f`; returns how many there were.
  func removeAll(_ f: PhysicalAddress) -> Int {
    // Take the list off the page first, then dismantle it.
    let p = page(f)
    var count = 0
    var merged = p.pointee.attributes
    var entry = p.pointee.head
    var ref = p.pointee.firstNode
    p.pointee.head = 0
    p.pointee.setFirstNode(0)
    while entry != 0 {
      let linear = PVEntry.linear(entry)
      merged.formUnion(
        withOwner(of: entry) { $0.pvRemove(atLinear: linear) })
      state.pointee.mappingCount -= 1
      count += 1
      if ref == 0 { break }
      let n = node(ref)
      entry = n[0]
      let next = n[1]
      freeNode(ref)
      ref = next
    }
    p.pointee.attributes = merged.subtracting(.writable)
    return count
  }

  /// Removes every mapping of the page: ``protectPage(_:to:)`` with no rights
  /// (`pmap_page_protect(pg, VM_PROT_NONE)`); returns how many there were.
  @discardableResult
  public func removeAllMappings(_ frame: PhysicalAddress) -> Int {
    precondition(manages(frame), "PageDatabase: unmanaged frame")
    return removeAll(frame.alignedDown())
  }
}
