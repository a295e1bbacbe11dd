extension Pmap {
  /// Maps `va` to the frame `pa` (`pmap_enter`).
  ///
  /// Missing page-table pages are allocated top-down and linked with wire counts of 1 + live
  /// entries. The new entry's accessed bit is set when `access` is not empty and its dirty bit
  /// when `access` contains `.write`, as NetBSD seeds them from the faulting access. Re-entering
  /// the frame already mapped there updates rights, cache mode and wiring but keeps the A/D bits
  /// the hardware recorded. Replacing a different frame, or reducing what a cached translation
  /// allowed, is reported to the invalidation sink before the call returns.
  ///
  /// - Parameters:
  ///   - va: the address to map, aligned to `size`.
  ///   - pa: the frame, aligned to `size`, below 2^MAXPHYADDR of ``PhysicalMemory``.
  ///   - protection: the rights to grant; not empty; `.write` requires `.read`. A protection
  ///     with `.execute` but no `.read` is mapped readable (x86 has no execute-only here).
  ///     Bits other than read, write and execute are ignored.
  ///   - access: the access that caused the fault, if any; a subset of `protection`.
  ///   - options: ``EnterOptions/wired``, ``EnterOptions/canFail``.
  ///   - cacheMode: the memory type (default write-back).
  ///   - size: 4 KiB, 2 MiB or 1 GiB.
  /// - Throws: ``EnterError``; on any error nothing changed (page tables, statistics, frames).
  ///   ``EnterError/addressInSharedKernelHalf`` when `va` lies in a kernel half this pmap shares.
  /// - Precondition: without ``EnterOptions/canFail``, the allocator must not run out: as in
  ///   NetBSD, running out of page-table pages then traps.
  /// - Complexity: O(1); allocates nothing on the Swift heap, and no frame when the page-table
  ///   pages exist.
  @inlinable @inline(__always)
  public func enter(
    _ va: VirtualAddress, _ pa: PhysicalAddress, protection: Protection, access: Protection = [],
    options: EnterOptions = [], cacheMode: CacheMode = .writeBack, size: PageSize = .size4K
  ) throws(EnterError) {
    let lock = self.lock
    lock.lock()
    defer { lock.unlockStoringAlways() }
    if size == .size4K {
      if enterPageQuickly(va, pa, protection: protection, access: access, options: options, cacheMode: cacheMode) {
        return
      }
      try enterPage(va, pa, protection: protection, access: access, options: options, cacheMode: cacheMode)
    } else {
      try enterLarge(va, pa, protection: protection, access: access, options: options, cacheMode: cacheMode, size: size)
    }
  }

  /// The commonest 4 KiB enter, inline at the call site: valid arguments, every page-table page
  /// present (``pageTablePath(_:)``), the leaf empty and, for a managed frame, a pv node at hand
  /// or to be had. Installs the leaf and returns `true`; otherwise changes nothing and returns
  /// `false`, and ``enterPage(_:_:protection:access:options:cacheMode:)`` does the work (and
  /// reports what was wrong).
  ///
  /// Kept apart from the out-of-line body so that the loop of a caller that maps page after page
  /// keeps its values in registers: the whole body, inlined, spills them. The page table comes
  /// from the pmap's page-table hint when `va` lies in the same 2 MiB region as the last quick
  /// enter (``pageTable(for:)``), as it does for page after page of a mapping.
  ///
  /// - Precondition: the pmap's lock is held.
  /// - Complexity: O(1): a comparison (or three loads down the tree), one load, one store.
  @inlinable @inline(__always)
  func enterPageQuickly(
    _ va: VirtualAddress, _ pa: PhysicalAddress, protection: Protection, access: Protection,
    options: EnterOptions, cacheMode: CacheMode
  ) -> Bool {
    let s = state
    let rights = Int(protection.rawValue & 7)
    let accessRights = Int(access.rawValue & 7)
    // A managed frame lies below the physical-address limit (checked when the pmap was
    // created); an address in a shared kernel half, and any address of a destroyed pmap, has no
    // page table here (`pageTable(for:)`).
    let managed = isManaged(pa)
    guard (va.rawValue | pa.rawValue) & PageSize.size4K.offsetMask == 0,
      managed || pa.rawValue &+ PageSize.size4K.bytes <= memory.physicalAddressLimit,
      Self.acceptsRights(rights, access: accessRights),
      let leafTable = pageTable(for: va)
    else { return false }
    let p = memory.entry(in: leafTable, at: va.index(at: .pageTable).value)
    guard !Ops.isPresent(p.load()) else { return false }
    var new =
      leafTemplates[rights &* 6 &+ Int(cacheMode.rawValue)] | Self.seededAccessBits(access)
      | pa.rawValue
    let wired = options.contains(.wired)
    if wired { new |= Ops.wiredBit }
    if managed {
      if !installManagedLeaf(p, new | Ops.managedBit, frame: pa, linear: va.linear) { return false }
    } else {
      p.store(new)
    }
    // The table is the hinted one: its wire count counts the page (`setPageTableHint`).
    memory.adjustWireCount(of: leafTable, by: 1)
    if wired { s.pointee.wiredCount &+= 1 }
    return true
  }

  /// Installs `new` in the empty leaf `p` and the matching pv entry on page `frame`'s list,
  /// together under the page's lock: every 4 KiB enter of a managed page (single, quick or
  /// range) goes through here. Returns `false`, having changed nothing, when the entry needs a
  /// pool node and none can be had; the caller reports ``EnterError/outOfPVEntries``.
  ///
  /// The page and the pool are reached through the pointers ``PmapState`` keeps, and the
  /// locking mode is the pmap's own (the page database's is the same, checked at creation):
  /// nothing is loaded from the ``PageDatabase`` object unless the page is locked.
  ///
  /// - Precondition: the pmap's lock is held; `frame` is managed; `p` is not present.
  /// - Complexity: O(1).
  @inlinable @inline(__always)
  func installManagedLeaf(_ p: EntryPointer, _ new: UInt64, frame: PhysicalAddress, linear: UInt64) -> Bool {
    let s = state
    let page =
      s.pointee.managedPages.unsafelyUnwrapped
      + Int(truncatingIfNeeded: (frame.rawValue &- s.pointee.managedBase) >> 12)
    let entry = PVEntry.make(slot: s.pointee.pvSlot, linear: linear)
    // The body twice, with and without the lock: the unlocked loop of a caller that maps page
    // after page then keeps no lock address and no second test of the mode.
    if lock.isElided {
      return installManagedLeafLocked(p, new, entry: entry, page: page, poolLocks: false)
    }
    // `pages` is read through `self`: a local copy of the reference would be retained.
    let pageLock = self.pages.unsafelyUnwrapped.pageLock(frame)
    pageLock.lock()
    defer { pageLock.unlock() }
    return installManagedLeafLocked(p, new, entry: entry, page: page, poolLocks: true)
  }

  /// Whether `enter` accepts protection `rights` with faulting access `access` (both raw
  /// ``Protection`` bits 0-2): rights not empty, no write without read, the access within the
  /// rights (read always allowed: x86 maps every entry readable). Arithmetic on the bits, no
  /// table: with the arguments known at the call site, a constant.
  @inlinable @inline(__always)
  static func acceptsRights(_ rights: Int, access: Int) -> Bool {
    let read = Int(Protection.read.rawValue)
    let write = Int(Protection.write.rawValue)
    return rights != 0 && (rights & write == 0 || rights & read != 0) && access & ~(rights | read) == 0
  }

  /// The A/D bits `enter` seeds for the access that caused the fault (NetBSD's `pmap_enter`):
  /// A for any access, D for a write. Computed, not looked up: with `access` known at the call
  /// site, a constant.
  @inlinable @inline(__always)
  static func seededAccessBits(_ access: Protection) -> UInt64 {
    (access.rawValue & 7 != 0 ? Ops.accessedBit : 0) | (access.contains(.write) ? Ops.dirtyBit : 0)
  }

  /// ``installManagedLeaf(_:_:frame:linear:)`` with the page's lock held: pv entry `entry` of
  /// `page`. `poolLocks` is a constant where this is inlined: whether the pool takes its lock.
  @inlinable @inline(__always)
  func installManagedLeafLocked(
    _ p: EntryPointer, _ new: UInt64, entry: UInt64, page: UnsafeMutablePointer<ManagedPage>, poolLocks: Bool
  ) -> Bool {
    if page.pointee.head != 0 {
      return poolLocks
        ? installManagedLeafTakingNode(p, new, entry: entry, page: page)
        : installManagedLeafWithUnlockedNode(p, new, entry: entry, page: page)
    }
    p.store(new)
    page.pointee.head = entry
    return true
  }

  /// ``installManagedLeaf(_:_:frame:linear:)`` for a page that is mapped already, in a page
  /// database that takes no locks: pv entry `entry` takes a node from the pool, inline when the
  /// pool has one (``PVState/popFreeNode(_:in:)``: no call, no lock); the pool's growth is a
  /// call to ``installManagedLeafTakingNode(_:_:entry:page:)``.
  ///
  /// Inline since the page-table hint (``pageTable(for:)``) left the quick path registers to
  /// spare: map+pv into 8 spaces 45.5 -> 40.3 ns, single maps unchanged. (Before the hint,
  /// inlining the node path made every single map slower, 3.3 -> 3.7 ns.)
  ///
  /// - Precondition: the pmap's lock and the page's lock are held; the page database was
  ///   created with ``Locking/callerSerialized``.
  @inlinable @inline(__always)
  func installManagedLeafWithUnlockedNode(
    _ p: EntryPointer, _ new: UInt64, entry: UInt64, page: UnsafeMutablePointer<ManagedPage>
  ) -> Bool {
    // A local copy: read again after the stores below, a stored property would be reloaded.
    let memory = self.memory
    let ref = PVState.popFreeNode(state.pointee.pvPool.unsafelyUnwrapped, in: memory)
    if ref == 0 { return installManagedLeafTakingNode(p, new, entry: entry, page: page) }
    p.store(new)
    ManagedPage.insert(entry, into: page, node: PVNode.pointer(ref, in: memory), ref: ref)
    return true
  }

  /// ``installManagedLeaf(_:_:frame:linear:)`` for a page that is mapped already: pv entry
  /// `entry` takes a node from the pool (``takeNode()``: under the pool lock unless the page
  /// database takes no locks, growing the pool when it is empty). Returns `false`, having
  /// changed nothing, when no node can be had.
  ///
  /// - Precondition: the pmap's lock and the page's lock are held.
  @inlinable @inline(never)
  func installManagedLeafTakingNode(
    _ p: EntryPointer, _ new: UInt64, entry: UInt64, page: UnsafeMutablePointer<ManagedPage>
  ) -> Bool {
    let ref = takeNode()
    if ref == 0 { return false }
    p.store(new)
    self.pages.unsafelyUnwrapped.insert(entry, into: page, node: ref)
    return true
  }

  /// ``enter(_:_:protection:access:options:cacheMode:size:)`` for a 4 KiB page: the shared body
  /// with the size folded to a constant.
  @inlinable
  func enterPage(
    _ va: VirtualAddress, _ pa: PhysicalAddress, protection: Protection, access: Protection,
    options: EnterOptions, cacheMode: CacheMode
  ) throws(EnterError) {
    try enterBody(va, pa, protection: protection, access: access, options: options, cacheMode: cacheMode, size: .size4K)
  }

  /// ``enter(_:_:protection:access:options:cacheMode:size:)`` for a 2 MiB or 1 GiB page.
  @inlinable
  func enterLarge(
    _ va: VirtualAddress, _ pa: PhysicalAddress, protection: Protection, access: Protection,
    options: EnterOptions, cacheMode: CacheMode, size: PageSize
  ) throws(EnterError) {
    if size == .size1G && !supportsGigabytePages { throw .unsupportedPageSize }
    try enterBody(va, pa, protection: protection, access: access, options: options, cacheMode: cacheMode, size: size)
  }

  @inlinable @inline(__always)
  func enterBody(
    _ va: VirtualAddress, _ pa: PhysicalAddress, protection: Protection, access: Protection,
    options: EnterOptions, cacheMode: CacheMode, size: PageSize
  ) throws(EnterError) {
    checkAlive()
    // One test for both alignments and one bit test for protection and access; the cold
    // function says which input was bad.
    let s = state
    let rights = Int(protection.rawValue & 7)  // bits beyond read/write/execute are ignored
    let accessRights = Int(access.rawValue & 7)
    guard (va.rawValue | pa.rawValue) & size.offsetMask == 0,
      pa.rawValue &+ size.bytes <= memory.physicalAddressLimit,
      Self.acceptsRights(rights, access: accessRights)
    else {
      throw Self.enterArgumentError(va, pa, protection: protection, access: access, size: size, memory: memory)
    }
    guard !isInSharedKernelHalf(slot: va.index(at: .pml4).value) else { throw .addressInSharedKernelHalf }

    // A managed 4 KiB page goes on its pv-list; large mappings are never pv-tracked (NetBSD's
    // x86 pmap uses large pages only for the kernel's own mappings).
    let managed = size == .size4K && isManaged(pa)

    // Walk down to the table at the leaf level, allocating what is missing. Unrolled: with the
    // page size known at the call site, the levels fold to constants.
    let leafLevel = size.leafLevel
    var table = root
    var allocated = false
    if leafLevel < .pml4 {
      allocated = try descend(from: &table, at: .pml4, toward: leafLevel, for: va, options: options)
    }
    if !allocated && leafLevel < .pageDirectoryPointerTable {
      allocated = try descend(
        from: &table, at: .pageDirectoryPointerTable, toward: leafLevel, for: va, options: options)
    }
    if !allocated && leafLevel < .pageDirectory {
      allocated = try descend(from: &table, at: .pageDirectory, toward: leafLevel, for: va, options: options)
    }

    let p = memory.entry(in: table, at: va.index(at: leafLevel).value)
    var new: UInt64
    if size == .size4K {
      new = leafTemplates[rights &* 6 &+ Int(cacheMode.rawValue)] | pa.rawValue
    } else {
      new = Ops.leafEntry(
        for: pa, protection: protection.union(.read), cacheMode: cacheMode, at: leafLevel, kind: kind)
      if !hardwareManagesAccessedDirty { new |= Ops.accessedBit | Ops.dirtyBit }
    }
    new |= Self.seededAccessBits(access)
    if options.contains(.wired) { new |= Ops.wiredBit }
    if managed { new |= Ops.managedBit }
    let pageCount = size.basePageCount

    let old = p.load()
    if !Ops.isPresent(old) {
      if managed {
        // The leaf and its pv entry appear together under the page's lock.
        if !installManagedLeaf(p, new, frame: pa, linear: va.linear) {
          if allocated { freeEmptyTables(above: table, linear: va.linear) }
          if !options.contains(.canFail) {
            preconditionFailure("Pmap.enter: out of pv entries (pass .canFail to get an error)")
          }
          throw .outOfPVEntries
        }
      } else {
        p.store(new)
      }
      memory.adjustWireCount(of: table, by: 1)
      // The hinted table's wire count counts its pages already (`setPageTableHint`). (The quick
      // path installs every leaf that can be installed there, so the body does not today; the
      // test keeps the count right should that change.)
      if !isHintedTable(table) { s.pointee.residentCount &+= pageCount }
      if options.contains(.wired) { s.pointee.wiredCount &+= pageCount }
      return
    }
    if leafLevel != .pageTable && !Ops.isLargeLeaf(old) { throw .conflictsWithPageTable }

    let previous: UInt64
    if Ops.leafFrame(old, at: leafLevel) == pa {
      // Same frame: keep what the hardware recorded, and the pv-tracking state.
      let keep = Ops.hardwareBits | Ops.managedBit
      previous = p.update { current in new | (current & keep) }
      new |= previous & keep
    } else {
      previous = try replace(p, old: old, with: new, at: leafLevel, linear: va.linear, options: options)
    }
    // The TLB can only hold a translation whose accessed bit was set.
    let ignored = Ops.hardwareBits | Ops.wiredBit | Ops.managedBit
    if previous & Ops.accessedBit != 0 && (previous ^ new) & ~ignored != 0 {
      queueInvalidation(linear: va.linear)
    }
    let wasWired = previous & Ops.wiredBit != 0
    if wasWired != options.contains(.wired) { s.pointee.wiredCount &+= wasWired ? -pageCount : pageCount }
    finishOperation()
  }

  /// Replaces the present leaf `p` (value `old`) by `new`, which maps another frame: the old
  /// pv entry goes and the new one comes under both pages' locks (taken in stripe order), so
  /// that page operations never see a leaf and a pv-list that disagree. Returns the final old
  /// value.
  ///
  /// - Throws: ``EnterError/outOfPVEntries`` when the new page needs a pool node and none can be
  ///   had; nothing changed then.
  @inlinable @inline(never)
  func replace(
    _ p: EntryPointer, old: UInt64, with new: UInt64, at level: PageTableLevel, linear: UInt64, options: EnterOptions
  ) throws(EnterError) -> UInt64 {
    let newManaged = new & Ops.managedBit != 0
    let oldManaged = old & Ops.managedBit != 0
    guard newManaged || oldManaged, let pages else {
      return p.exchange(new)
    }
    let newFrame = Ops.leafFrame(new, at: level)
    let oldFrame = Ops.leafFrame(old, at: level)
    var first = newManaged ? pages.stripe(of: newFrame) : pages.stripe(of: oldFrame)
    var second = oldManaged ? pages.stripe(of: oldFrame) : first
    if second < first { swap(&first, &second) }
    pages.stripeLock(first).lock()
    if second != first { pages.stripeLock(second).lock() }
    defer {
      if second != first { pages.stripeLock(second).unlock() }
      pages.stripeLock(first).unlock()
    }
    // The node a further mapping of the new page needs is taken first: nothing to undo after.
    var node: UInt64 = 0
    if newManaged && pages.needsNode(newFrame) {
      node = takeNode()
      if node == 0 {
        if !options.contains(.canFail) {
          preconditionFailure("Pmap.enter: out of pv entries (pass .canFail to get an error)")
        }
        throw .outOfPVEntries
      }
    }
    let previous = p.exchange(new)
    if oldManaged {
      let freed = pages.remove(
        slot: pvSlot, linear: linear, frame: oldFrame, attributes: Ops.pageAttributes(of: previous))
      if freed != 0 { pages.release(node: freed) }
    }
    if newManaged { pages.insert(slot: pvSlot, linear: linear, frame: newFrame, node: node) }
    return previous
  }

  /// Takes a pv node from the page database's pool (``PageDatabase/takeNode()``) through an
  /// unretained reference: a call on `pages` itself kept a retain/release pair around it.
  /// Returns 0 when no node could be had.
  ///
  /// - Precondition: the pmap tracks pv entries (``pages`` is set); the page's lock is held.
  @inlinable @inline(__always)
  func takeNode() -> UInt64 {
    Unmanaged.passUnretained(pages.unsafelyUnwrapped)._withUnsafeGuaranteedRef { $0.takeNode() }
  }

  /// Gives pv node `ref` back to the page database's pool (``PageDatabase/release(node:)``),
  /// through an unretained reference like ``takeNode()``.
  ///
  /// - Precondition: the pmap tracks pv entries (``pages`` is set).
  @inlinable @inline(__always)
  func releaseNode(_ ref: UInt64) {
    Unmanaged.passUnretained(pages.unsafelyUnwrapped)._withUnsafeGuaranteedRef { $0.release(node: ref) }
  }

  /// The error ``enter(_:_:protection:access:options:cacheMode:size:)`` reports for arguments
  /// that failed its combined check, in the order the documentation lists them.
  @inline(never)
  @usableFromInline
  static func enterArgumentError(
    _ va: VirtualAddress, _ pa: PhysicalAddress, protection: Protection, access: Protection, size: PageSize,
    memory: PhysicalMemory
  ) -> EnterError {
    if !va.isAligned(to: size) { return .unalignedVirtualAddress }
    if !pa.isAligned(to: size) { return .unalignedPhysicalAddress }
    if pa.rawValue + size.bytes > memory.physicalAddressLimit { return .physicalAddressOutOfRange }
    let protection = protection.intersection(.all)
    if protection.isEmpty { return .noRights }
    if !protection.isEncodable { return .writeWithoutRead }
    return .accessExceedsProtection
  }

  /// One step of the walk in ``enter(_:_:protection:access:options:cacheMode:size:)``: moves
  /// `table` (at `level`) to the child table for `va`. When the entry is not present, allocates
  /// every missing table down to `leafLevel`, moves `table` to the last one, and returns `true`:
  /// the walk is over.
  @inlinable @inline(__always)
  func descend(
    from table: inout PhysicalAddress, at level: PageTableLevel, toward leafLevel: PageTableLevel,
    for va: VirtualAddress,
    options: EnterOptions
  ) throws(EnterError) -> Bool {
    let p = memory.entry(in: table, at: va.index(at: level).value)
    let e = p.load()
    if !Ops.isPresent(e) {
      table = try allocateTables(below: p, in: table, at: level, downTo: leafLevel, for: va, options: options)
      return true
    }
    if Ops.isLargeLeaf(e) { throw .conflictsWithLargeMapping }
    table = Ops.tableFrame(e)
    return false
  }

  /// Allocates the page-table pages missing below entry `p` (of `table`, at `level`) down to
  /// the table at `leafLevel`, links them, and returns that last table. All frames are obtained
  /// before anything is linked, so a failure releases them and leaves the tree untouched
  /// (NetBSD's `pmap_get_ptp` does the same in two passes).
  @inlinable @inline(never)
  func allocateTables(
    below p: EntryPointer, in table: PhysicalAddress, at level: PageTableLevel, downTo leafLevel: PageTableLevel,
    for va: VirtualAddress, options: EnterOptions
  ) throws(EnterError) -> PhysicalAddress {
    let needed = Int(level.rawValue &- leafLevel.rawValue)
    var frames: (PhysicalAddress, PhysicalAddress, PhysicalAddress) = (root, root, root)
    for k in 0..<needed {
      guard let frame = allocateTableFrame() else {
        if k > 0 { releaseTableFrame(frames.0) }
        if k > 1 { releaseTableFrame(frames.1) }
        if options.contains(.canFail) { throw .outOfPageTableMemory }
        preconditionFailure("Pmap.enter: out of page-table pages (pass .canFail to get an error)")
      }
      switch k {
      case 0: frames.0 = frame
      case 1: frames.1 = frame
      default: frames.2 = frame
      }
    }
    var parentEntry = p
    var parentTable = table
    var childLevel = level
    for k in 0..<needed {
      let frame = k == 0 ? frames.0 : (k == 1 ? frames.1 : frames.2)
      childLevel = PageTableLevel(rawValue: childLevel.rawValue &- 1).unsafelyUnwrapped
      memory.setWireCount(of: frame, to: 1)
      parentEntry.store(Ops.tableEntry(for: frame))
      memory.adjustWireCount(of: parentTable, by: 1)
      state.pointee.pageTablePageCount &+= 1
      parentTable = frame
      parentEntry = memory.entry(in: frame, at: va.index(at: childLevel).value)
    }
    return parentTable
  }
}
