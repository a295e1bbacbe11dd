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
  /// - Complexity: O(1), at most four loads; allocates nothing.
  @inlinable @inline(__always)
  public func extract(_ va: VirtualAddress) -> PhysicalAddress? {
    lock.lock()
    defer { lock.unlock() }
    checkAlive()
    guard let leaf = lookupLeaf(va) else { return nil }
    return PhysicalAddress(
      unchecked: Ops.leafFrame(leaf.value, at: leaf.level).rawValue | (va.rawValue & (leaf.level.bytesPerEntry &- 1)))
  }

  /// Everything about the mapping of `va`, or `nil` when nothing maps it.
  ///
  /// - Complexity: O(1).
  @inlinable
  public func translation(of va: VirtualAddress) -> Translation? {
    lock.lock()
    defer { lock.unlock() }
    checkAlive()
    guard let leaf = lookupLeaf(va) else { return nil }
    return Translation.decode(
      Ops.self, leaf.value, at: leaf.level, offset: va.rawValue & (leaf.level.bytesPerEntry &- 1))
  }
}
