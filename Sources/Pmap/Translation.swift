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
    return lockFreeWalk(va) { leaf in
      PhysicalAddress(
        unchecked: Ops.leafFrame(leaf.value, at: leaf.level).rawValue | (va.rawValue & (leaf.level.bytesPerEntry &- 1)))
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
    return lockFreeWalk(va) { leaf in
      Translation.decode(
        Ops.self, leaf.value, at: leaf.level, offset: va.rawValue & (leaf.level.bytesPerEntry &- 1))
    }
  }

  /// `body` of the leaf that maps `va`, read with ``walk(_:boundsChecked:_:)`` without the
  /// pmap's lock (a seqlock read side over ``tableGeneration``; see ``extract(_:)``), or `nil`.
  /// An address in a kernel half this pmap shares is walked in the kernel pmap's tables, so the
  /// kernel pmap's generation is the one that guards it. A pmap with ``Locking/callerSerialized`` walks once,
  /// without the generation. `body` must be pure: it may run more than once.
  @inlinable @inline(__always)
  func lockFreeWalk<R>(_ va: VirtualAddress, _ body: (LeafLookup) -> R) -> R? {
    if locking == .callerSerialized {
      // Nothing runs concurrently by contract: no table can be freed under the walk.
      return walk(va, boundsChecked: false, body)
    }
    let generation =
      isInSharedKernelHalf(slot: va.index(at: .pml4).value)
      ? kernelHalfOwner.unsafelyUnwrapped.tableGeneration : tableGeneration
    while true {
      let before = generation.pointee.load(ordering: .acquiring)
      let result = walk(va, boundsChecked: true, body)
      atomicMemoryFence(ordering: .acquiring)
      if generation.pointee.load(ordering: .relaxed) == before { return result }
    }
  }
}
