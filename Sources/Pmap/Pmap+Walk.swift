/// The result of walking a pmap down to the leaf that maps an address.
@frozen
public struct LeafLookup {
  /// The leaf entry.
  public let entry: EntryPointer
  /// The level of the leaf (1 for 4 KiB pages).
  public let level: PageTableLevel
  /// The page-table page holding the leaf.
  public let table: PhysicalAddress
  /// The entry's value when the walk read it (the MMU may have set A/D since).
  public let value: UInt64

  @inlinable
  init(entry: EntryPointer, level: PageTableLevel, table: PhysicalAddress, value: UInt64) {
    self.entry = entry
    self.level = level
    self.table = table
    self.value = value
  }
}

extension Pmap {
  /// The one four-level walk: from the root down to the present leaf that maps `va`, or `nil`
  /// when some level on the way is not present. Reads each entry once, atomically.
  ///
  /// NetBSD walks EPT "via the direct map" (`pmap_ept_get_tree`); native walks use the
  /// recursive slot there, but a direct map serves both formats here.
  ///
  /// Reads without the pmap's lock: use it where no operation runs on this pmap at the same
  /// time (tests, tools), or where a snapshot is enough; the entry pointer stays valid only while
  /// the mapping does.
  ///
  /// In a pmap sharing a kernel half, an address there is walked through the kernel pmap's
  /// tables, as the MMU walks it: the answer is the kernel pmap's mapping.
  ///
  /// - Complexity: O(1): at most four loads.
  @inlinable @inline(__always)
  public func lookupLeaf(_ va: VirtualAddress) -> LeafLookup? {
    walk(va, boundsChecked: false) { $0 }
  }

  /// The walk itself, unrolled so that `body` sees a constant level at each leaf (the callers'
  /// decoding folds to constants): `body` of the present leaf that maps `va`, or `nil`. Loads
  /// are atomic with acquire ordering, so a table found linked is seen as it was linked.
  ///
  /// With `boundsChecked` (the lock-free walk of ``extract(_:)``, which may go through a table
  /// freed and reused under it), a table address outside the direct map ends the walk as "not
  /// found", which the caller's generation check then discards.
  @inlinable @inline(__always)
  func walk<R>(_ va: VirtualAddress, boundsChecked: Bool, _ body: (LeafLookup) -> R) -> R? {
    var table = root
    var p = memory.entry(in: table, at: va.index(at: .pml4).value)
    var e = p.loadAcquiring()
    guard Ops.isPresent(e) else { return nil }
    if Ops.isLeaf(e, at: .pml4) { return body(LeafLookup(entry: p, level: .pml4, table: table, value: e)) }
    table = Ops.tableFrame(e)
    guard !boundsChecked || memory.covers(table) else { return nil }
    p = memory.entry(in: table, at: va.index(at: .pageDirectoryPointerTable).value)
    e = p.loadAcquiring()
    guard Ops.isPresent(e) else { return nil }
    if Ops.isLeaf(e, at: .pageDirectoryPointerTable) {
      return body(LeafLookup(entry: p, level: .pageDirectoryPointerTable, table: table, value: e))
    }
    table = Ops.tableFrame(e)
    guard !boundsChecked || memory.covers(table) else { return nil }
    p = memory.entry(in: table, at: va.index(at: .pageDirectory).value)
    e = p.loadAcquiring()
    guard Ops.isPresent(e) else { return nil }
    if Ops.isLeaf(e, at: .pageDirectory) {
      return body(LeafLookup(entry: p, level: .pageDirectory, table: table, value: e))
    }
    table = Ops.tableFrame(e)
    guard !boundsChecked || memory.covers(table) else { return nil }
    p = memory.entry(in: table, at: va.index(at: .pageTable).value)
    e = p.loadAcquiring()
    guard Ops.isPresent(e) else { return nil }
    return body(LeafLookup(entry: p, level: .pageTable, table: table, value: e))
  }

  /// The page-table pages on the path to the 4 KiB leaf of `va` (its page table, page directory
  /// and PDPT) when each level above the leaf holds a present table entry; `nil` when one is not
  /// present or is a large leaf. The walk behind ``pageTable(for:)`` when its hint misses (the
  /// operations that change one 4 KiB leaf), and of the cascade that frees emptied tables;
  /// unrolled like ``walk(_:boundsChecked:_:)``, with relaxed loads: under the lock no table
  /// changes, and acquire loads kept the compiler from scheduling the callers' other loads early
  /// (another 0.5 ns per unmap).
  ///
  /// - Precondition: the pmap's lock is held (or the caller otherwise keeps tables from being
  ///   freed under it).
  /// - Complexity: O(1): three loads.
  @inlinable @inline(__always)
  func pageTablePath(_ va: VirtualAddress) -> (
    pageTable: PhysicalAddress, directory: PhysicalAddress, pdpt: PhysicalAddress
  )? {
    // No leaf at the top level: x86-64 has no 512 GiB pages, and the pmap never writes one.
    let e4 = memory.entry(in: root, at: va.index(at: .pml4).value).load()
    guard Ops.isPresent(e4) else { return nil }
    let pdpt = Ops.tableFrame(e4)
    let e3 = memory.entry(in: pdpt, at: va.index(at: .pageDirectoryPointerTable).value).load()
    guard Ops.isPresent(e3), !Ops.isLeaf(e3, at: .pageDirectoryPointerTable) else { return nil }
    let directory = Ops.tableFrame(e3)
    let e2 = memory.entry(in: directory, at: va.index(at: .pageDirectory).value).load()
    guard Ops.isPresent(e2), !Ops.isLeaf(e2, at: .pageDirectory) else { return nil }
    return (Ops.tableFrame(e2), directory, pdpt)
  }

  /// The page table that holds the 4 KiB leaf of `va`, for the operations on one page
  /// (`enter`'s quick path, single-page removal and protect): the pmap's page-table hint when
  /// `va` lies in the 2 MiB region of the last lookup here, otherwise the walk of
  /// ``pageTablePath(_:)``, whose result becomes the hint. `nil` when a level above the leaf is
  /// missing or is a large leaf.
  ///
  /// The hint always names a linked page table: it is set only here, under the pmap's lock,
  /// and ``retireTable(_:linear:)`` drops it whenever any page-table page of the pmap is
  /// unlinked (every unlink goes through there). A pmap entering page after page thus walks
  /// once per 512 pages; with several pmaps entered in turn, each keeps its own. An address in
  /// a kernel half this pmap shares has no page table of its own here (`nil`), so the hint never
  /// names one; nor has a destroyed pmap (`destroy()` drops the hint), so `enter`'s quick path
  /// needs no check of its own for either.
  ///
  /// - Precondition: the pmap's lock is held.
  /// - Complexity: O(1): a comparison, or three loads.
  @inlinable @inline(__always)
  func pageTable(for va: VirtualAddress) -> PhysicalAddress? {
    let s = state
    let region = va.linear >> 21
    if s.pointee.pageTableHintRegion == region { return PhysicalAddress(unchecked: s.pointee.pageTableHint) }
    // The tables of a shared kernel half are the kernel pmap's: never this pmap's hint, so that
    // a hit alone tells `enter`'s quick path that `va` is outside the shared half. A destroyed
    // pmap (whose hint `destroy()` dropped) has no tables at all: its root is freed.
    if isInSharedKernelHalf(slot: va.index(at: .pml4).value) || s.pointee.isDestroyed { return nil }
    guard let path = pageTablePath(va) else { return nil }
    setPageTableHint(region: region, table: path.pageTable)
    return path.pageTable
  }

  /// Makes `table` (the page table of 2 MiB region `region`) the page-table hint.
  ///
  /// The hinted table's wire count (1 + its live leaves) also counts the pmap's resident pages
  /// in it: ``PmapState/residentCount`` excludes them while the hint lasts, so that an enter
  /// or a removal through the hint (`enter`'s quick path, ``removeLeaf(linear:updatingPVList:)``),
  /// which changes that wire count anyway, updates no resident counter of its own: one load and
  /// one store fewer a page. Every other change of a leaf count goes to `residentCount`, and is
  /// never made in the hinted table: the range operations drop the hint first, and the body of
  /// `enter` adds to `residentCount` only outside it. So the resident page count is
  /// ``residentPageCount``, O(1).
  ///
  /// - Precondition: the pmap's lock is held.
  @inlinable @inline(__always)
  func setPageTableHint(region: UInt64, table: PhysicalAddress) {
    dropPageTableHint()
    let s = state
    s.pointee.residentCount &-= Int(memory.wireCount(of: table))
    s.pointee.pageTableHintRegion = region
    s.pointee.pageTableHint = table.rawValue
  }

  /// Drops the page-table hint, if any, giving the resident pages its table's wire count
  /// counted back to ``PmapState/residentCount``. Before any page-table page is unlinked
  /// (``retireTable(_:linear:)``), and before a range operation changes leaves.
  ///
  /// - Precondition: the pmap's lock is held.
  @inlinable @inline(__always)
  func dropPageTableHint() {
    let s = state
    guard s.pointee.pageTableHintRegion != .max else { return }
    s.pointee.residentCount &+= Int(memory.wireCount(of: PhysicalAddress(unchecked: s.pointee.pageTableHint)))
    s.pointee.pageTableHintRegion = .max
  }

  /// Whether `table` is the hinted page table (whose wire count counts its resident pages).
  @inlinable @inline(__always)
  func isHintedTable(_ table: PhysicalAddress) -> Bool {
    let s = state
    return s.pointee.pageTableHintRegion != .max && s.pointee.pageTableHint == table.rawValue
  }

  /// The pmap's resident pages (`pmap_resident_count`): ``PmapState/residentCount`` plus the
  /// hinted table's wire count (see ``setPageTableHint(region:table:)``).
  ///
  /// - Precondition: the pmap's lock is held.
  @inlinable
  var residentPageCount: Int {
    let s = state
    guard s.pointee.pageTableHintRegion != .max else { return s.pointee.residentCount }
    return s.pointee.residentCount &+ Int(memory.wireCount(of: PhysicalAddress(unchecked: s.pointee.pageTableHint)))
  }

  /// ``lookupLeaf(_:)`` restricted to 4 KiB leaves: `nil` when nothing or a large page maps `va`.
  @inlinable @inline(__always)
  func lookupPageLeaf(_ va: VirtualAddress) -> LeafLookup? {
    guard let leaf = lookupLeaf(va), leaf.level == .pageTable else { return nil }
    return leaf
  }

  /// Whether a large leaf maps `linear` (a 48-bit linear address) without `linear` being on
  /// its boundary: a range edge there would split the large page.
  @inlinable
  func largeLeafIsSplit(atLinear linear: UInt64) -> Bool {
    guard linear < (1 << 48), let leaf = lookupLeaf(VirtualAddress(truncating: linear)) else { return false }
    return leaf.level != .pageTable && linear & (leaf.level.bytesPerEntry &- 1) != 0
  }

  /// Visits every page-table page, the root first, with its level (for checkers and tools).
  /// The tables of a kernel half this pmap shares are the kernel pmap's, and not visited.
  ///
  /// - Complexity: proportional to the number of page-table pages times 512.
  /// - Precondition: `body` does not call back into this pmap (it runs with the lock held).
  public func forEachPageTablePage(_ body: (PhysicalAddress, PageTableLevel) -> Void) {
    lock.lock()
    defer { lock.unlock() }
    checkAlive()
    visitTables(root, .root, body)
  }

  func visitTables(_ table: PhysicalAddress, _ level: PageTableLevel, _ body: (PhysicalAddress, PageTableLevel) -> Void)
  {
    body(table, level)
    guard let child = level.child else { return }
    for i in 0..<TableIndex.count {
      if level == .root && isInSharedKernelHalf(slot: i) { continue }  // the kernel pmap's
      let e = memory.entry(in: table, at: i).load()
      if Ops.isPresent(e) && !Ops.isLeaf(e, at: level) { visitTables(Ops.tableFrame(e), child, body) }
    }
  }

  /// Visits every leaf mapping in `range`, in address order. The mappings of a kernel half this
  /// pmap shares are the kernel pmap's, and not visited.
  ///
  /// - Complexity: proportional to what is mapped in the range, not to its size.
  /// - Precondition: `body` does not call back into this pmap (it runs with the lock held).
  public func forEachMapping(in range: VirtualRange = .lowerHalf, _ body: (VirtualAddress, Translation) -> Void) {
    lock.lock()
    defer { lock.unlock() }
    checkAlive()
    withoutActuallyEscaping(body) { body in
      var visitor = MappingVisitor<Ops>(body: body)
      try? traverse(root, .root, base: 0, lo: range.linearStart, hi: range.linearEnd, &visitor)
    }
  }
}

@usableFromInline
struct MappingVisitor<Ops: PTEOps>: LeafVisitor {
  let body: (VirtualAddress, Translation) -> Void
  @usableFromInline static var removesEntries: Bool { false }
  @usableFromInline static var requiresWholeLargePages: Bool { false }
  @usableFromInline mutating func visit(_ p: EntryPointer, entry: UInt64, level: PageTableLevel, linear: UInt64) -> Bool
  {
    body(VirtualAddress(truncating: linear), Translation.decode(Ops.self, entry, at: level, offset: 0))
    return false
  }
}

/// What the range walk calls for each present leaf.
@usableFromInline
protocol LeafVisitor {
  /// Whether the visitor removes entries (so that emptied page-table pages are freed).
  static var removesEntries: Bool { get }
  /// Whether a large leaf only partly inside the range is an error.
  static var requiresWholeLargePages: Bool { get }
  /// Visits a present leaf; returns whether it removed it.
  mutating func visit(_ p: EntryPointer, entry: UInt64, level: PageTableLevel, linear: UInt64) -> Bool
}

/// The first and last entries of the table at `level` (which maps from `base`) that overlap the
/// linear range `lo ..< hi`: what a range walk visits in one table.
@inlinable @inline(__always)
func entryRange(_ level: PageTableLevel, base: UInt64, lo: UInt64, hi: UInt64) -> (first: Int, last: Int) {
  let shift = level.shift
  let first = lo > base ? Int(truncatingIfNeeded: (lo &- base) >> shift) : 0
  let tableEnd = base &+ ((1 as UInt64) << (shift &+ 9))
  let lastByte = (hi < tableEnd ? hi : tableEnd) &- 1
  return (first, Int(truncatingIfNeeded: (lastByte &- base) >> shift))
}

extension Pmap {
  /// The range walk: visits the present leaves of `table` (at `level`, covering linear
  /// addresses from `base`) that lie in `lo ..< hi`, skipping subtrees that are not present, so
  /// the cost follows what is mapped rather than the size of the range. When the visitor removes
  /// entries, a page-table page left with no live entry is unlinked and retired.
  ///
  /// The slots of a kernel half this pmap shares are skipped: their tables are the kernel pmap's.
  ///
  /// A large leaf that the range only partly covers throws ``RangeOperationError/splitsLargeMapping``.
  /// Callers make sure that can only happen at the first leaf visited (see ``remove(_:)``), so a
  /// throw leaves everything unchanged.
  @inlinable
  func traverse<V: LeafVisitor>(
    _ table: PhysicalAddress, _ level: PageTableLevel, base: UInt64, lo: UInt64, hi: UInt64, _ visitor: inout V
  ) throws(RangeOperationError) {
    let shift = level.shift
    let span: UInt64 = 1 << shift
    var (i, last) = entryRange(level, base: base, lo: lo, hi: hi)
    var removed = 0
    while i <= last {
      let p = memory.entry(in: table, at: i)
      let e = p.load()
      if Ops.isPresent(e) && !(level == .root && isInSharedKernelHalf(slot: i)) {
        let entryBase = base &+ (UInt64(truncatingIfNeeded: i) << shift)
        if Ops.isLeaf(e, at: level) {
          if V.requiresWholeLargePages && level != .pageTable && (entryBase < lo || entryBase &+ span > hi) {
            if removed != 0 { memory.adjustWireCount(of: table, by: -removed) }
            throw .splitsLargeMapping
          }
          if visitor.visit(p, entry: e, level: level, linear: entryBase) { removed &+= 1 }
        } else {
          let childTable = Ops.tableFrame(e)
          let childLevel = PageTableLevel(rawValue: level.rawValue &- 1).unsafelyUnwrapped
          do {
            try traverse(childTable, childLevel, base: entryBase, lo: lo, hi: hi, &visitor)
          } catch {
            if removed != 0 { memory.adjustWireCount(of: table, by: -removed) }
            throw error
          }
          if V.removesEntries && memory.wireCount(of: childTable) == 1 {
            p.exchange(0)
            retireTable(childTable, linear: entryBase)
            removed &+= 1
          }
        }
      }
      i &+= 1
    }
    if removed != 0 { memory.adjustWireCount(of: table, by: -removed) }
  }
}
