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
      merged.formUnion(leafAttributes(e))
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
  /// returns the referenced and modified attributes merged over all of them before the clear
  /// (NetBSD's `pmap_clear_attrs`; the "test and clear A/D" of a clock scan). Entries change
  /// with atomic operations and are invalidated when their A bit was set. (Whether a mapping
  /// allows writes, `.writable`, is not part of the answer: ask ``attributes(of:)``.)
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
  ///
  /// Compiled once for each of the three sets the page operations clear, so that the bits to
  /// clear and the merge of D are constants in the loop over the mappings (a clock scan runs it
  /// for every page it passes).
  func clear(_ which: PageAttributes, _ frame: PhysicalAddress) -> PageAttributes {
    switch which {
    case [.referenced, .modified]: clearBody([.referenced, .modified], frame)
    case .referenced: clearBody(.referenced, frame)
    case .modified: clearBody(.modified, frame)
    default: clearBody(which, frame)
    }
  }

  /// ``clear(_:_:)``, inlined where `which` is a constant.
  @inline(__always)
  func clearBody(_ which: PageAttributes, _ frame: PhysicalAddress) -> PageAttributes {
    precondition(manages(frame), "PageDatabase: unmanaged frame")
    let f = frame.alignedDown()
    pageLock(f).lock()
    defer { pageLock(f).unlock() }
    let p = page(f)
    let cached = p.pointee.attributes
    p.pointee.attributes.subtract(which)
    var seen = SeenBits()
    changeEveryEntry(of: p) { clearLeaf(which, $0, into: &seen) }
    // D cleared along with A stays recorded in the cache.
    if !which.contains(.modified) && seen.dirty != 0 { p.pointee.attributes.insert(.modified) }
    return cached.union(seen.attributes)
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
    var seen = SeenBits()
    changeEveryEntry(of: page(f)) { clearLeaf(.referenced, $0, into: &seen) }
    // D cleared along with A stays recorded in the cache.
    if seen.dirty != 0 { page(f).pointee.attributes.insert(.modified) }
    let count = seen.referencedCount
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
      var seen = SeenBits()
      changeEveryEntry(of: page(f)) { writeProtectLeaf($0, into: &seen) }
      page(f).pointee.attributes.formUnion(seen.attributes)
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
    // The pool nodes the page's list frees gather here, on the stack, and go back to the pool
    // together: one pool lock per page, not one per node.
    var freed = PVFreeChain()
    while true {
      lock.lock()
      while p.pointee.head != 0 {
        let entry = p.pointee.head
        let pmapLock = slots[PVEntry.slot(entry)].lock.unsafelyUnwrapped
        guard pmapLock.tryLock() else { break }
        let attributes = withOwner(of: entry) { $0.pvRemove(atLinear: PVEntry.linear(entry)) }
        p.pointee.attributes.formUnion(attributes.subtracting(.writable))
        freed.append(removeFirst(of: p), in: self)
        pmapLock.unlock()
        count += 1
      }
      if p.pointee.head == 0 {
        lock.unlock()
        if freed.count != 0 { release(freed) }
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

  // MARK: Leaves, read and cleared here

  /// The 4 KiB leaf that pv entry `e` names, found with a walk from its pmap's root that needs
  /// no presence checks: a pv entry exists only while its managed leaf does, and the caller
  /// holds the page's lock, so neither the leaf nor the tables above it can go away.
  ///
  /// - Precondition: the caller holds the lock of a page whose list holds `e`.
  @inlinable @inline(__always)
  func leaf(of e: UInt64) -> (entry: EntryPointer, value: UInt64, format: PVFormat) {
    let owner = slots + PVEntry.slot(e)
    let format = owner.pointee.format
    let linear = PVEntry.linear(e)
    let mask = format.frameMask
    var table = owner.pointee.root.rawValue
    table =
      memory.entry(in: PhysicalAddress(unchecked: table), at: Int(truncatingIfNeeded: linear >> 39) & 511).load() & mask
    table =
      memory.entry(in: PhysicalAddress(unchecked: table), at: Int(truncatingIfNeeded: linear >> 30) & 511).load() & mask
    table =
      memory.entry(in: PhysicalAddress(unchecked: table), at: Int(truncatingIfNeeded: linear >> 21) & 511).load() & mask
    let p = memory.entry(in: PhysicalAddress(unchecked: table), at: Int(truncatingIfNeeded: linear >> 12) & 511)
    let value = p.load()
    precondition(value & format.managed != 0, "PageDatabase: a pv entry names an address with no managed mapping")
    return (p, value, format)
  }

  /// The attributes the leaf of pv entry `e` records (NetBSD's `pmap_pte_to_pp_attrs` of it).
  @inlinable @inline(__always)
  func leafAttributes(_ e: UInt64) -> PageAttributes {
    let leaf = leaf(of: e)
    return leaf.format.attributes(of: leaf.value)
  }

  /// Clears `which` (`.referenced`, `.modified`) in the leaf of pv entry `e`, adds what it
  /// recorded before to `seen`, and returns whether the change must be invalidated (a bit was
  /// cleared in an entry with A set). Clearing `.referenced` clears D as well, so that D implies
  /// A stays true of every entry; the caller keeps a reported `.modified` in the page's cache.
  /// In a pmap without hardware A/D nothing is cleared (its entries always report both).
  ///
  /// One exit, and what it saw goes into `seen` as plain ORs: page operations run this for
  /// every mapping of a page, and each instruction between two locked operations counts.
  ///
  /// - Precondition: the caller holds the lock of a page whose list holds `e`.
  @inlinable @inline(__always)
  func clearLeaf(_ which: PageAttributes, _ e: UInt64, into seen: inout SeenBits) -> Bool {
    let leaf = leaf(of: e)
    let format = leaf.format
    var bits: UInt64 = 0
    if which.contains(.referenced) { bits |= format.accessed | format.dirty }
    if which.contains(.modified) { bits |= format.dirty }
    bits = format.hardwareAD ? bits : 0
    var old = leaf.value
    // None of them set when the walk read the entry: nothing to clear, and no locked operation
    // (a pagedaemon scan meets mostly such cold pages). A bit the MMU sets right after the read
    // is an access after this clear, and stays set.
    if old & bits != 0 { old = leaf.entry.clearBits(bits) }
    seen.add(old, format)
    // With `.referenced`, `bits` holds A (when anything was cleared at all).
    if which.contains(.referenced) { return old & bits & format.accessed != 0 }
    return old & bits != 0 && old & format.accessed != 0
  }

  /// Removes write permission from the leaf of pv entry `e` (one atomic AND, skipped when it is
  /// already read-only), adds what it recorded before to `seen`, and returns whether the change
  /// must be invalidated (a translation allowing writes may be cached: it had W and A).
  ///
  /// - Precondition: the caller holds the lock of a page whose list holds `e`.
  @inlinable @inline(__always)
  func writeProtectLeaf(_ e: UInt64, into seen: inout SeenBits) -> Bool {
    let leaf = leaf(of: e)
    let format = leaf.format
    var old = leaf.value
    if old & format.writable != 0 { old = leaf.entry.clearBits(format.writable) }
    seen.add(old, format)
    return old & format.writable != 0 && old & format.accessed != 0
  }
}

/// What a page operation saw in the leaves it changed, before the change: the A and D bits of
/// each, OR-ed in their own formats' positions (a test per attribute only at the end, and two
/// registers in the loop), and how many had A set.
@usableFromInline
struct SeenBits {
  @usableFromInline var accessed: UInt64 = 0
  @usableFromInline var dirty: UInt64 = 0
  @usableFromInline var referencedCount = 0

  @inlinable init() {}

  /// Adds leaf value `old`, in `format`.
  @inlinable @inline(__always)
  mutating func add(_ old: UInt64, _ format: PVFormat) {
    let a = old & format.accessed
    accessed |= a
    dirty |= old & format.dirty
    referencedCount &+= a != 0 ? 1 : 0
  }

  /// The attributes seen in any leaf (referenced, modified).
  @inlinable var attributes: PageAttributes {
    var seen: PageAttributes = []
    if accessed != 0 { seen.insert(.referenced) }
    if dirty != 0 { seen.insert(.modified) }
    return seen
  }
}
