extension Pmap {
  /// Removes every mapping in `range` (`pmap_remove`).
  ///
  /// Subtrees that are not populated are skipped, so the cost follows what is mapped, not the
  /// size of the range: removing the whole 2^47-byte lower half of a sparse pmap is cheap.
  /// Page-table pages that become empty are unlinked, cascading upward, and released only after
  /// the invalidation covering them has been reported. Each removed entry is swapped out
  /// atomically, so the final A/D bits are the ones the hardware last set.
  ///
  /// - Throws: ``RangeOperationError/splitsLargeMapping`` when an end of the range falls inside a
  ///   2 MiB or 1 GiB mapping; ``RangeOperationError/addressInSharedKernelHalf`` when the range
  ///   reaches a kernel half this pmap shares (remove kernel mappings from the kernel pmap);
  ///   nothing changed then.
  /// - Complexity: O(mapped pages in range + page-table pages visited); allocates nothing.
  @inlinable @inline(__always)
  public func remove(_ range: VirtualRange) throws(RangeOperationError) {
    lock.lock()
    defer { lock.unlock() }
    if reachesSharedKernelHalf(range) {
      checkAlive()
      throw .addressInSharedKernelHalf
    }
    if range.byteCount == 4096 {
      try removePage(linear: range.linearStart)
    } else {
      try removeRange(range)
    }
  }

  @inlinable
  func removeRange(_ range: VirtualRange) throws(RangeOperationError) {
    checkAlive()
    if range.isEmpty { return }
    try checkRangeEnds(range)
    var visitor = RemoveVisitor(pmap: self)
    defer { visitor.releasePageLock() }
    try traverse(root, .root, base: 0, lo: range.linearStart, hi: range.linearEnd, &visitor)
    visitor.releasePageLock()
    finishOperation()
  }

  /// A range operation can only meet a partly covered large leaf at its first or its last leaf.
  /// The walk checks the first one before changing anything; this checks the last one up front,
  /// when it is not also under the first leaf's large page.
  @inlinable
  func checkRangeEnds(_ range: VirtualRange) throws(RangeOperationError) {
    let lo = range.linearStart
    let hi = range.linearEnd
    let splitBy2M = hi & ((1 << 21) &- 1) != 0 && (lo >> 21) != ((hi &- 1) >> 21)
    let splitBy1G = hi & ((1 << 30) &- 1) != 0 && (lo >> 30) != ((hi &- 1) >> 30)
    if splitBy2M || splitBy1G {
      if largeLeafIsSplit(atLinear: hi) { throw .splitsLargeMapping }
    }
  }

  /// Removes the 4 KiB page at `linear`: the single-page fast path of ``remove(_:)``, a straight
  /// walk that keeps the path for the upward cascade (the shape of NetBSD's
  /// `pmap_remove_pte` + `pmap_free_ptp`).
  @inlinable
  func removePage(linear: UInt64) throws(RangeOperationError) {
    checkAlive()
    defer { finishOperation() }
    _ = try removeLeaf(linear: linear, updatingPVList: true)
  }

  /// Removes the 4 KiB leaf at `linear`, freeing page-table pages that become empty; returns
  /// its final value (0 if nothing was mapped). With `updatingPVList` false, the pv entry is
  /// left to the caller (a page operation dismantling the whole list).
  @inlinable @inline(__always)
  func removeLeaf(linear: UInt64, updatingPVList: Bool) throws(RangeOperationError) -> UInt64 {
    let va = VirtualAddress(truncating: linear)
    guard let table = pageTable(for: va) else {
      // Nothing mapped there, or a large page that a 4 KiB removal would split.
      if isMappedByLargeLeaf(va) { throw .splitsLargeMapping }
      return 0
    }
    let p = memory.entry(in: table, at: va.index(at: .pageTable).value)
    let e = p.load()
    guard Ops.isPresent(e) else { return 0 }
    let old: UInt64
    if updatingPVList && e & Ops.managedBit != 0 {
      // The leaf and its pv entry go together under the page's lock.
      let pageLock = pages.unsafelyUnwrapped.pageLock(Ops.leafFrame(e, at: .pageTable))
      pageLock.lock()
      old = p.exchange(0)
      releasePVEntry(of: old, at: .pageTable, linear: linear)
      pageLock.unlock()
    } else {
      old = p.exchange(0)
    }
    // The table is the hinted one (`pageTable(for:)` made it so): its wire count counts the
    // page, no resident counter to update (`setPageTableHint`).
    accountRemoval(of: old, at: .pageTable, linear: linear, counted: false)
    memory.adjustWireCount(of: table, by: -1)
    // The page table became empty (once in 512 removals of a dense range): free it and what
    // empties above it, out of line.
    if memory.wireCount(of: table) == 1 { cascade(from: table, linear: linear) }
    return old
  }

  /// Whether a large leaf maps `va`: the cold side of ``removeLeaf(linear:updatingPVList:)``.
  @inlinable @inline(never)
  func isMappedByLargeLeaf(_ va: VirtualAddress) -> Bool {
    guard let leaf = lookupLeaf(va) else { return false }
    return leaf.level != .pageTable
  }

  /// Frees, bottom-up, the page-table pages on the path to `linear` that are empty, starting
  /// with its page table `leafTable`. Each is unlinked from its parent and retired until the
  /// invalidation covering it. Out of line: the removal that empties a page table happens once
  /// in 512 removals of a dense range, and walks the path again here.
  ///
  /// - Precondition: the pmap's lock is held; `leafTable` is the page table on the path to
  ///   `linear`, and empty (its wire count is 1).
  @inlinable @inline(never)
  func cascade(from leafTable: PhysicalAddress, linear: UInt64) {
    let va = VirtualAddress(truncating: linear)
    let path = pageTablePath(va)
    precondition(path?.pageTable == leafTable, "Pmap: cascade off the path")
    let tables = (leafTable, path.unsafelyUnwrapped.directory, path.unsafelyUnwrapped.pdpt, root)
    for k in 0..<3 {
      let child = k == 0 ? tables.0 : (k == 1 ? tables.1 : tables.2)
      let parent = k == 0 ? tables.1 : (k == 1 ? tables.2 : root)
      let parentLevel = PageTableLevel(rawValue: UInt8(k + 2)).unsafelyUnwrapped
      memory.entry(in: parent, at: va.index(at: parentLevel).value).exchange(0)
      retireTable(child, linear: linear & ~(parentLevel.bytesPerEntry &- 1))
      memory.adjustWireCount(of: parent, by: -1)
      if memory.wireCount(of: parent) != 1 { return }
    }
  }

  /// Undoes the page-table pages an `enter` of a 4 KiB page at `linear` has just allocated down
  /// to the empty page table `leafTable`, when it fails after all: they are unlinked and released
  /// once invalidated, as if never allocated.
  @inlinable @inline(never)
  func freeEmptyTables(above leafTable: PhysicalAddress, linear: UInt64) {
    cascade(from: leafTable, linear: linear)
    finishOperation()
  }
}

extension Pmap {
  /// Settles statistics and the invalidation owed for a leaf just swapped out (its value `old`).
  /// With `counted`, the resident count goes down by its pages; without, the leaf was in the
  /// hinted page table, whose wire count counts them (``setPageTableHint(region:table:)``).
  @inlinable @inline(__always)
  func accountRemoval(of old: UInt64, at level: PageTableLevel, linear: UInt64, counted: Bool = true) {
    let pageCount = Int(truncatingIfNeeded: level.bytesPerEntry >> 12)
    let s = state
    if counted { s.pointee.residentCount &-= pageCount }
    if old & Ops.wiredBit != 0 { s.pointee.wiredCount &-= pageCount }
    if old & Ops.accessedBit != 0 { queueInvalidation(linear: linear) }
  }

  /// Takes the pv entry of a leaf just swapped out (its value `old`) off its page's list and
  /// merges what the entry recorded into the page's attributes; nothing for an untracked leaf.
  ///
  /// - Precondition: the caller holds the page's lock.
  @inlinable @inline(__always)
  func releasePVEntry(of old: UInt64, at level: PageTableLevel, linear: UInt64) {
    guard old & Ops.managedBit != 0 else { return }
    let freed = pages.unsafelyUnwrapped.remove(
      slot: pvSlot, linear: linear, frame: Ops.leafFrame(old, at: level), attributes: Ops.pageAttributes(of: old))
    if freed != 0 { releaseNode(freed) }
  }
}

@usableFromInline
struct RemoveVisitor<Ops: PTEOps>: LeafVisitor {
  @usableFromInline let pmapRef: Unmanaged<Pmap<Ops>>
  /// The page stripe whose lock the visit holds, or -1: consecutive pages of one stripe are
  /// removed under one acquisition.
  @usableFromInline var heldStripe = -1
  /// Whether the A/D bits of removed managed leaves are merged into their pages' attributes
  /// (false only to undo a failed range enter, whose leaves recorded no access).
  @usableFromInline let mergesAttributes: Bool
  @inlinable init(pmap: Pmap<Ops>, mergesAttributes: Bool = true) {
    // The leaves removed are counted off the resident count, which must then count them all.
    pmap.dropPageTableHint()
    self.pmapRef = Unmanaged.passUnretained(pmap)
    self.mergesAttributes = mergesAttributes
  }
  @inlinable static var removesEntries: Bool { true }
  @inlinable static var requiresWholeLargePages: Bool { true }

  /// Swaps the leaf out and settles the statistics and the invalidation it owes
  /// (NetBSD's `pmap_remove_pte`); a managed leaf goes with its pv entry under its page's lock.
  @inlinable @inline(__always)
  mutating func visit(_ p: EntryPointer, entry: UInt64, level: PageTableLevel, linear: UInt64) -> Bool {
    var held = heldStripe
    pmapRef._withUnsafeGuaranteedRef { pmap in
      if entry & Ops.managedBit != 0 {
        let stripe = pmap.pages.unsafelyUnwrapped.stripe(of: Ops.leafFrame(entry, at: level))
        if stripe != held {
          if held >= 0 { pmap.pages.unsafelyUnwrapped.stripeLock(held).unlock() }
          pmap.pages.unsafelyUnwrapped.stripeLock(stripe).lock()
          held = stripe
        }
      }
      let old = p.exchange(0)
      pmap.accountRemoval(of: old, at: level, linear: linear)
      pmap.releasePVEntry(of: mergesAttributes ? old : old & ~Ops.hardwareBits, at: level, linear: linear)
    }
    heldStripe = held
    return true
  }

  /// Releases the page lock the visit holds, if any.
  @inlinable
  mutating func releasePageLock() {
    if heldStripe >= 0 {
      pmapRef._withUnsafeGuaranteedRef { $0.pages.unsafelyUnwrapped.stripeLock(heldStripe).unlock() }
      heldStripe = -1
    }
  }
}
