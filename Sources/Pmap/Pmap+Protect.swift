extension Pmap {
  /// Reduces the rights of every mapping in `range` to at most `protection` (`pmap_protect`).
  ///
  /// Rights are only ever taken away: a mapping keeps `mapping ∩ protection`, so a mapping with
  /// fewer rights than `protection` is left as it is (the pmap(9) contract; UVM calls it only to
  /// reduce). An empty `protection` removes the mappings, as NetBSD does. Write-protecting keeps
  /// the dirty bit. A change to an entry whose accessed bit was set is invalidated.
  ///
  /// - Throws: ``RangeOperationError/writeWithoutRead`` for `.write` without `.read`;
  ///   ``RangeOperationError/splitsLargeMapping`` when an end falls inside a large mapping;
  ///   ``RangeOperationError/addressInSharedKernelHalf`` when the range reaches a kernel half this
  ///   pmap shares. Nothing changed then.
  /// - Complexity: O(mapped pages in range + page-table pages visited); allocates nothing.
  @inlinable @inline(__always)
  public func protect(_ range: VirtualRange, to protection: Protection) throws(RangeOperationError) {
    if protection.isEmpty { return try remove(range) }
    lock.lock()
    defer { lock.unlock() }
    if reachesSharedKernelHalf(range) {
      checkAlive()
      throw .addressInSharedKernelHalf
    }
    if range.byteCount == 4096 {
      try protectPage(range.start, to: protection)
    } else {
      try protectRange(range, to: protection)
    }
  }

  /// ``protect(_:to:)`` of one 4 KiB page: one walk, no range machinery. Always inlined: the
  /// body is small, and an out-of-line call measurably slowed the locked compare-and-swap that
  /// follows its register spills (1.96x -> 1.53x of the C reference).
  @inlinable @inline(__always)
  func protectPage(_ va: VirtualAddress, to protection: Protection) throws(RangeOperationError) {
    checkAlive()
    guard protection.isEncodable else { throw .writeWithoutRead }
    // The page table from the hint (``pageTable(for:)``); without one, nothing or a large page
    // maps `va`.
    guard let table = pageTable(for: va) else {
      if isMappedByLargeLeaf(va) { throw .splitsLargeMapping }
      return
    }
    let p = memory.entry(in: table, at: va.index(at: .pageTable).value)
    let e = p.load()
    guard Ops.isPresent(e) else { return }
    var visitor = ProtectVisitor(pmap: self, rights: protection.union(.read))
    _ = visitor.visit(p, entry: e, level: .pageTable, linear: va.linear)
    finishOperation()
  }

  @inlinable
  func protectRange(_ range: VirtualRange, to protection: Protection) throws(RangeOperationError) {
    checkAlive()
    guard protection.isEncodable else { throw .writeWithoutRead }
    if range.isEmpty { return }
    try checkRangeEnds(range)
    var visitor = ProtectVisitor(pmap: self, rights: protection.union(.read))
    try traverse(root, .root, base: 0, lo: range.linearStart, hi: range.linearEnd, &visitor)
    finishOperation()
  }
}

@usableFromInline
struct ProtectVisitor<Ops: PTEOps>: LeafVisitor {
  @usableFromInline let pmapRef: Unmanaged<Pmap<Ops>>
  @usableFromInline let rights: Protection
  @inlinable init(pmap: Pmap<Ops>, rights: Protection) {
    self.pmapRef = Unmanaged.passUnretained(pmap)
    self.rights = rights
  }
  @inlinable static var removesEntries: Bool { false }
  @inlinable static var requiresWholeLargePages: Bool { true }

  @inlinable @inline(__always)
  mutating func visit(_ p: EntryPointer, entry: UInt64, level: PageTableLevel, linear: UInt64) -> Bool {
    let rights = self.rights
    let old = p.update(startingWith: entry) { Ops.restricting($0, to: rights) }
    if old & Ops.accessedBit != 0 && Ops.restricting(old, to: rights) != old {
      pmapRef._withUnsafeGuaranteedRef { $0.queueInvalidation(linear: linear) }
    }
    return false
  }
}
