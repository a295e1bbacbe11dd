extension Pmap {
  /// Maps every page of `range` to the physically contiguous frames starting at `pa`, in one
  /// call (NetBSD's loops over `pmap_kenter_pa`, Linux's `remap_pfn_range`).
  ///
  /// The pmap's lock is taken once and each page-table page is walked once for all the entries
  /// it holds in the range, instead of once per page; missing page-table pages are allocated on
  /// the way. With `largestPageSize` above 4 KiB, a 2 MiB or 1 GiB leaf is used wherever the
  /// range covers the whole leaf, the physical address is aligned to it and the entry is free;
  /// 4 KiB pages elsewhere. As with single enters, managed frames mapped by 4 KiB leaves go on
  /// their pv-lists, and large leaves are never pv-tracked (so a direct map of managed RAM in
  /// large pages stays out of the pv-lists; keep the default 4 KiB for pages that page
  /// operations must reach). Entries are made with
  /// no accessed or dirty bit (no faulting access), unless the pmap has no hardware A/D.
  ///
  /// All or nothing: when the call fails part way (a page-table page or a pv node could not be
  /// had with ``EnterOptions/canFail``, or a mapping was found in the range), what it entered is
  /// removed again and the page-table pages it allocated are freed (after the invalidation that
  /// covers them), so tables, statistics, pv-lists and page-table frames are as before the call.
  /// pv nodes the pool grew by stay in the pool for later enters.
  ///
  /// - Parameters:
  ///   - range: the virtual range, which must be unmapped.
  ///   - pa: the frame mapped at `range.start`, 4 KiB aligned; `pa + range.byteCount` at most
  ///     2^MAXPHYADDR of ``PhysicalMemory``.
  ///   - protection: the rights to grant, as in ``enter(_:_:protection:access:options:cacheMode:size:)``.
  ///   - options: ``EnterOptions/wired``, ``EnterOptions/canFail``.
  ///   - cacheMode: the memory type (default write-back).
  ///   - largestPageSize: the largest leaf the call may use (default 4 KiB only).
  /// - Throws: ``EnterError``: `unalignedPhysicalAddress`, `physicalAddressOutOfRange`,
  ///   `noRights`, `writeWithoutRead`, `unsupportedPageSize` (1 GiB on a pmap without
  ///   ``supportsGigabytePages``), `addressInSharedKernelHalf`, `alreadyMapped`,
  ///   `outOfPageTableMemory` and `outOfPVEntries` (with ``EnterOptions/canFail``). Nothing
  ///   changed then.
  /// - Precondition: without ``EnterOptions/canFail``, the allocator must not run out (as for
  ///   single enters, running out traps).
  /// - Complexity: O(leaves entered + page-table pages visited); allocates nothing on the Swift
  ///   heap.
  @inlinable
  public func enter(
    _ range: VirtualRange, startingAt pa: PhysicalAddress, protection: Protection, options: EnterOptions = [],
    cacheMode: CacheMode = .writeBack, largestPageSize: PageSize = .size4K
  ) throws(EnterError) {
    lock.lock()
    defer { lock.unlock() }
    checkAlive()
    if pa.rawValue & 0xfff != 0 { throw .unalignedPhysicalAddress }
    if pa.rawValue &+ range.byteCount > memory.physicalAddressLimit { throw .physicalAddressOutOfRange }
    let rights = protection.intersection(.all)
    if rights.isEmpty { throw .noRights }
    if !rights.isEncodable { throw .writeWithoutRead }
    if largestPageSize == .size1G && !supportsGigabytePages { throw .unsupportedPageSize }
    if reachesSharedKernelHalf(range) { throw .addressInSharedKernelHalf }
    if range.isEmpty { return }

    var job = RangeEnterJob(
      delta: pa.rawValue &- range.linearStart,
      template: leafTemplates[Int(rights.rawValue) &* 6 &+ Int(cacheMode.rawValue)],
      protection: rights.union(.read), cacheMode: cacheMode, options: options,
      largestLeafLevel: largestPageSize.leafLevel, position: range.linearStart)
    let lo = range.linearStart
    let hi = range.linearEnd
    // The leaves entered are counted in the resident count, which must then count them all.
    dropPageTableHint()
    do {
      try fillRange(root, .root, base: 0, lo: lo, hi: hi, &job)
    } catch {
      // Undo: remove what this call entered, below the failure point; when it failed for want of
      // a page-table page or pv node, also the (unmapped) page it was at, which frees the tables
      // it had just linked on the path to it.
      let undoEnd = error == .alreadyMapped ? job.position : min(job.position &+ 4096, hi)
      if undoEnd > lo {
        var visitor = RemoveVisitor(pmap: self, mergesAttributes: false)
        try? traverse(root, .root, base: 0, lo: lo, hi: undoEnd, &visitor)
        visitor.releasePageLock()
      }
      finishOperation()
      if !options.contains(.canFail) && error != .alreadyMapped {
        preconditionFailure("Pmap.enter: out of page-table pages or pv entries (pass .canFail to get an error)")
      }
      throw error
    }
    finishOperation()
  }

  /// The walk of ``enter(_:startingAt:protection:options:cacheMode:largestPageSize:)``: fills
  /// the entries of `table` (at `level`, covering linear addresses from `base`) that lie in
  /// `lo ..< hi`, descending into (or allocating) child tables, and counts what it linked in the
  /// table's wire count once at the end, also when it throws. `job.position` is the first
  /// address not yet entered when it throws.
  @inlinable
  func fillRange(
    _ table: PhysicalAddress, _ level: PageTableLevel, base: UInt64, lo: UInt64, hi: UInt64, _ job: inout RangeEnterJob
  ) throws(EnterError) {
    let shift = level.shift
    let span: UInt64 = 1 << shift
    var (i, last) = entryRange(level, base: base, lo: lo, hi: hi)
    var added = 0
    defer { if added != 0 { memory.adjustWireCount(of: table, by: added) } }
    let s = state
    let wired = job.options.contains(.wired)
    while i <= last {
      let entryBase = base &+ (UInt64(truncatingIfNeeded: i) << shift)
      let entryLo = entryBase > lo ? entryBase : lo
      job.position = entryLo
      let p = memory.entry(in: table, at: i)
      let e = p.load()
      if level == .pageTable {
        if Ops.isPresent(e) { throw .alreadyMapped }
        let frame = PhysicalAddress(unchecked: entryBase &+ job.delta)
        var new = job.template | frame.rawValue
        if wired { new |= Ops.wiredBit }
        if isManaged(frame) {
          if !installManagedLeaf(p, new | Ops.managedBit, frame: frame, linear: entryBase) { throw .outOfPVEntries }
        } else {
          p.store(new)
        }
        added &+= 1
        s.pointee.residentCount &+= 1
        if wired { s.pointee.wiredCount &+= 1 }
      } else if !Ops.isPresent(e) {
        let frame = PhysicalAddress(unchecked: entryBase &+ job.delta)
        let coversWholeEntry = entryBase >= lo && entryBase &+ span <= hi
        if coversWholeEntry && level <= job.largestLeafLevel && frame.rawValue & (span &- 1) == 0 {
          var new = Ops.leafEntry(
            for: frame, protection: job.protection, cacheMode: job.cacheMode, at: level, kind: kind)
          if !hardwareManagesAccessedDirty { new |= Ops.accessedBit | Ops.dirtyBit }
          if wired { new |= Ops.wiredBit }
          p.store(new)
          added &+= 1
          let pages = Int(truncatingIfNeeded: span >> 12)
          s.pointee.residentCount &+= pages
          if wired { s.pointee.wiredCount &+= pages }
        } else {
          guard let child = allocateTableFrame() else { throw .outOfPageTableMemory }
          memory.setWireCount(of: child, to: 1)
          p.store(Ops.tableEntry(for: child))
          added &+= 1
          s.pointee.pageTablePageCount &+= 1
          try fillRange(child, level.child.unsafelyUnwrapped, base: entryBase, lo: lo, hi: hi, &job)
        }
      } else if Ops.isLargeLeaf(e) {
        throw .alreadyMapped
      } else {
        try fillRange(Ops.tableFrame(e), level.child.unsafelyUnwrapped, base: entryBase, lo: lo, hi: hi, &job)
      }
      i &+= 1
    }
  }
}

/// What ``Pmap/enter(_:startingAt:protection:options:cacheMode:largestPageSize:)`` enters, and
/// how far it got.
@usableFromInline
struct RangeEnterJob {
  /// The physical address minus the linear address (modulo 2^64).
  @usableFromInline let delta: UInt64
  /// The 4 KiB leaf without frame and software bits.
  @usableFromInline let template: UInt64
  @usableFromInline let protection: Protection
  @usableFromInline let cacheMode: CacheMode
  @usableFromInline let options: EnterOptions
  /// The highest level at which a leaf may be made.
  @usableFromInline let largestLeafLevel: PageTableLevel
  /// The first linear address not yet entered.
  @usableFromInline var position: UInt64

  @inlinable
  init(
    delta: UInt64, template: UInt64, protection: Protection, cacheMode: CacheMode, options: EnterOptions,
    largestLeafLevel: PageTableLevel, position: UInt64
  ) {
    self.delta = delta
    self.template = template
    self.protection = protection
    self.cacheMode = cacheMode
    self.options = options
    self.largestLeafLevel = largestLeafLevel
    self.position = position
  }
}
