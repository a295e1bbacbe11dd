import Synchronization

/// What a pmap maps at an address (the answer of `pmap_extract`, with the rest of the entry).
@frozen
public struct Translation: Hashable, Sendable {
  /// The physical address the queried address translates to (frame + offset).
  public var physicalAddress: PhysicalAddress
  /// The size of the leaf mapping.
  public var size: PageSize
  /// The rights the mapping grants.
  public var protection: Protection
  /// The memory type.
  public var cacheMode: CacheMode
  /// Whether the mapping is wired.
  public var isWired: Bool
  /// Whether the mapping is on a pv-list (a managed page).
  public var isManaged: Bool
  /// The accessed / dirty / writable state recorded in this entry alone.
  public var attributes: PageAttributes

  /// Creates a translation.
  @inlinable
  public init(
    physicalAddress: PhysicalAddress, size: PageSize, protection: Protection, cacheMode: CacheMode,
    isWired: Bool, isManaged: Bool, attributes: PageAttributes
  ) {
    self.physicalAddress = physicalAddress
    self.size = size
    self.protection = protection
    self.cacheMode = cacheMode
    self.isWired = isWired
    self.isManaged = isManaged
    self.attributes = attributes
  }

  /// The frame: the physical address of the start of the mapped page.
  @inlinable public var frame: PhysicalAddress { physicalAddress.alignedDown(to: size) }

  @inlinable
  static func decode<Ops: PTEOps>(_: Ops.Type, _ e: UInt64, at level: PageTableLevel, offset: UInt64) -> Translation {
    let frame = Ops.leafFrame(e, at: level)
    return Translation(
      physicalAddress: PhysicalAddress(unchecked: frame.rawValue | offset),
      size: PageSize(rawValue: level.rawValue).unsafelyUnwrapped,
      protection: Ops.protection(of: e), cacheMode: Ops.cacheMode(of: e, at: level),
      isWired: e & Ops.wiredBit != 0, isManaged: e & Ops.managedBit != 0,
      attributes: Ops.pageAttributes(of: e))
  }
}

extension Pmap {
  /// The physical address `va` translates to, or `nil` when nothing maps it (`pmap_extract`).
  ///
  /// Lock-free: it takes no lock and writes nothing shared, so it scales with the number of
  /// CPUs asking and never waits for a writer (as Linux's `get_user_pages_fast` and KVM's
  /// lockless shadow walks). It reads the table generation, walks, and reads the generation
  /// again; page-table pages are freed only after a bump of the generation, so when the two
  /// reads agree no table it went through had been freed, and the answer is one the pmap held
  /// at some instant during the call. Otherwise it walks again. Tables it reads are checked
  /// against the direct map, so a freed table's new contents never lead it outside.
  ///
  /// Linearizable with the pmap's other operations: a mapping entered before the call started
  /// is found; one removed before it started is not. A walk starts over only when page-table
  /// pages were freed meanwhile (tables are freed as they empty, not on every removal); it never
  /// delays a writer.
  ///
  /// - Precondition: the pmap is not destroyed (concurrently with a `destroy()` is misuse).
  /// - Complexity: O(1), at most four loads and two reads of the generation; allocates nothing.
  @inlinable @inline(__always)
  public func extract(_ va: VirtualAddress) -> PhysicalAddress? {
    checkAlive()
    return lockFreeWalk(va) { e, level in
      PhysicalAddress(unchecked: Ops.leafFrame(e, at: level).rawValue | (va.rawValue & (level.bytesPerEntry &- 1)))
    }
  }

  /// Everything about the mapping of `va`, or `nil` when nothing maps it. Lock-free, like
  /// ``extract(_:)``.
  ///
  /// - Precondition: the pmap is not destroyed.
  /// - Complexity: O(1).
  @inlinable
  public func translation(of va: VirtualAddress) -> Translation? {
    checkAlive()
    return lockFreeWalk(va) { e, level in
      Translation.decode(Ops.self, e, at: level, offset: va.rawValue & (level.bytesPerEntry &- 1))
    }
  }

  /// `body` of the leaf entry mapping `va` and its level, read without the pmap's lock (a
  /// seqlock read side over ``tableGeneration``; see ``extract(_:)``), or `nil`. An address in a
  /// kernel half this pmap shares is walked in the kernel pmap's tables, so the kernel pmap's
  /// generation is the one that guards it. A pmap with ``Locking/callerSerialized`` walks once,
  /// without the generation. `body` must be pure: it may run more than once.
  @inlinable @inline(__always)
  func lockFreeWalk<R>(_ va: VirtualAddress, _ body: (UInt64, PageTableLevel) -> R) -> R? {
    if locking == .callerSerialized {
      // Nothing runs concurrently by contract: no table can be freed under the walk.
      return walkOnce(va, boundsChecked: false, body)
    }
    let generation =
      isInSharedKernelHalf(slot: va.index(at: .pml4).value)
      ? kernelHalfOwner.unsafelyUnwrapped.tableGeneration : tableGeneration
    while true {
      let before = generation.pointee.load(ordering: .acquiring)
      let result = walkOnce(va, boundsChecked: true, body)
      atomicMemoryFence(ordering: .acquiring)
      if generation.pointee.load(ordering: .relaxed) == before { return result }
    }
  }

  /// One walk for ``lockFreeWalk(_:_:)``, unrolled so that `body` sees a constant level at each
  /// leaf: acquire loads, and a table outside the direct map (only possible when a freed table
  /// was reused under the walk) ends it as "not found", which the generation check then
  /// discards. Without `boundsChecked` (a caller-serialized pmap, whose tables cannot be freed
  /// under the walk) the tables are not checked.
  @inlinable @inline(__always)
  func walkOnce<R>(_ va: VirtualAddress, boundsChecked: Bool, _ body: (UInt64, PageTableLevel) -> R) -> R? {
    var e = memory.entry(in: root, at: va.index(at: .pml4).value).loadAcquiring()
    guard Ops.isPresent(e) else { return nil }
    if Ops.isLeaf(e, at: .pml4) { return body(e, .pml4) }
    var table = Ops.tableFrame(e)
    guard !boundsChecked || memory.covers(table) else { return nil }
    e = memory.entry(in: table, at: va.index(at: .pageDirectoryPointerTable).value).loadAcquiring()
    guard Ops.isPresent(e) else { return nil }
    if Ops.isLeaf(e, at: .pageDirectoryPointerTable) { return body(e, .pageDirectoryPointerTable) }
    table = Ops.tableFrame(e)
    guard !boundsChecked || memory.covers(table) else { return nil }
    e = memory.entry(in: table, at: va.index(at: .pageDirectory).value).loadAcquiring()
    guard Ops.isPresent(e) else { return nil }
    if Ops.isLeaf(e, at: .pageDirectory) { return body(e, .pageDirectory) }
    table = Ops.tableFrame(e)
    guard !boundsChecked || memory.covers(table) else { return nil }
    e = memory.entry(in: table, at: va.index(at: .pageTable).value).loadAcquiring()
    guard Ops.isPresent(e) else { return nil }
    return body(e, .pageTable)
  }
}
