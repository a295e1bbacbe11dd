/// A broken invariant found by ``Pmap/checkInvariants()``.
public struct InvariantViolation: Error, Equatable, Sendable {
  /// What is wrong.
  public enum Kind: Equatable, Sendable {
    /// A page-table page's wire count is not 1 + its live entries.
    case wireCountMismatch(expected: Int, found: Int)
    /// The resident statistic does not match the mapped pages.
    case residentCountMismatch(expected: Int, found: Int)
    /// The wired statistic does not match the wired mappings.
    case wiredCountMismatch(expected: Int, found: Int)
    /// The page-table-page statistic does not match the tree.
    case pageTablePageCountMismatch(expected: Int, found: Int)
    /// An entry the hardware would reject (EPT write without read, reserved memory type).
    case misconfiguredEntry
    /// A leaf with the dirty bit but not the accessed bit.
    case dirtyWithoutAccessed
    /// A non-present entry that is not zero (software bits without a mapping, e.g. wired).
    case nonZeroInvalidEntry
    /// A non-leaf entry carrying leaf-only bits (dirty, wired, managed).
    case leafBitsInTableEntry
    /// A page-table page outside the direct map, or an empty page-table page left linked.
    case badTablePage
    /// A root entry of a shared kernel half differs from the kernel pmap's (accessed bit aside),
    /// or a kernel pmap's preallocated kernel-half slot is not a table entry.
    case sharedEntryMismatch
    /// The page-table hint of the single-page operations (`enter`, `remove` and `protect` of
    /// one page) names a table that is not the page table linked for its 2 MiB region, or a
    /// region of a kernel half the pmap shares (`table` is the hinted one).
    case staleTableHint
  }
  /// What is wrong.
  public let kind: Kind
  /// The page-table page where it was found.
  public let table: PhysicalAddress
  /// The entry index in that page, when it concerns one entry.
  public let index: Int?

  /// Creates a violation of `kind`, found in page-table page `table` (at entry `index`, if it
  /// concerns one entry).
  @inlinable
  public init(_ kind: Kind, table: PhysicalAddress, index: Int? = nil) {
    self.kind = kind
    self.table = table
    self.index = index
  }
}

extension Pmap {
  /// Checks the structural invariants of the whole tree (for debug builds and tests):
  /// every page-table page's wire count is 1 + its live entries and no page but the root is
  /// empty; statistics match a full walk; no entry is misconfigured; D implies A in leaves;
  /// non-present entries are zero (so "wired" implies present); table entries carry no leaf bits.
  /// A kernel pmap's preallocated kernel-half tables are linked and pinned (wire count 2 + live
  /// entries, empty allowed). In a pmap sharing a kernel half, the shared root entries equal the
  /// kernel pmap's (the accessed bit aside, which each root's walks set on their own) and the
  /// tables below them, the kernel pmap's, are neither checked nor counted. The page-table hint
  /// of the single-page operations, when set, names the page table linked for its region (see
  /// Architecture).
  ///
  /// - Returns: the first violation found, or `nil`.
  /// - Complexity: O(page-table pages × 512).
  public func checkInvariants() -> InvariantViolation? {
    lock.lock()
    defer { lock.unlock() }
    checkAlive()
    var resident = 0
    var wired = 0
    var tables = 0
    if let v = checkTable(root, .root, &resident, &wired, &tables) { return v }
    let s = state.pointee
    if resident != residentPageCount {
      return InvariantViolation(.residentCountMismatch(expected: resident, found: residentPageCount), table: root)
    }
    if wired != s.wiredCount {
      return InvariantViolation(.wiredCountMismatch(expected: wired, found: s.wiredCount), table: root)
    }
    if tables != s.pageTablePageCount {
      return InvariantViolation(.pageTablePageCountMismatch(expected: tables, found: s.pageTablePageCount), table: root)
    }
    if s.pageTableHintRegion != .max
      && (pageTablePath(VirtualAddress(truncating: s.pageTableHintRegion << 21))?.pageTable.rawValue
        != s.pageTableHint || isInSharedKernelHalf(slot: Int(truncatingIfNeeded: s.pageTableHintRegion >> 18)))
    {
      return InvariantViolation(.staleTableHint, table: PhysicalAddress(unchecked: s.pageTableHint))
    }
    return nil
  }

  func checkTable(
    _ table: PhysicalAddress, _ level: PageTableLevel, _ resident: inout Int, _ wired: inout Int, _ tables: inout Int,
    pinned: Bool = false
  ) -> InvariantViolation? {
    guard memory.covers(table) else { return InvariantViolation(.badTablePage, table: table) }
    tables += 1
    var live = 0
    for i in 0..<TableIndex.count {
      let e = memory.entry(in: table, at: i).load()
      let ownsKernelHalfSlot = level == .root && kernelHalfOwner == nil && kernelHalfSlots.contains(i)
      if level == .root, let kernel = kernelHalfOwner, kernelHalfSlots.contains(i) {
        let shared = memory.entry(in: kernel.root, at: i).load()
        if !Ops.isPresent(e) || (e ^ shared) & ~Ops.accessedBit != 0 {
          return InvariantViolation(.sharedEntryMismatch, table: table, index: i)
        }
        live += 1
        continue
      }
      if ownsKernelHalfSlot && (!Ops.isPresent(e) || Ops.isLeaf(e, at: level)) {
        return InvariantViolation(.sharedEntryMismatch, table: table, index: i)
      }
      guard Ops.isPresent(e) else {
        if e != 0 { return InvariantViolation(.nonZeroInvalidEntry, table: table, index: i) }
        continue
      }
      live += 1
      if Ops.isMisconfigured(e, at: level) { return InvariantViolation(.misconfiguredEntry, table: table, index: i) }
      if Ops.isLeaf(e, at: level) {
        if e & Ops.dirtyBit != 0 && e & Ops.accessedBit == 0 {
          return InvariantViolation(.dirtyWithoutAccessed, table: table, index: i)
        }
        let pages = Int(truncatingIfNeeded: level.bytesPerEntry >> 12)
        resident += pages
        if e & Ops.wiredBit != 0 { wired += pages }
      } else {
        if e & (Ops.dirtyBit | Ops.wiredBit | Ops.managedBit) != 0 {
          return InvariantViolation(.leafBitsInTableEntry, table: table, index: i)
        }
        let child = Ops.tableFrame(e)
        if let v = checkTable(child, level.child!, &resident, &wired, &tables, pinned: ownsKernelHalfSlot) {
          return v
        }
      }
    }
    let found = memory.wireCount(of: table)
    let expected = (pinned ? 2 : 1) + live
    if found != expected {
      return InvariantViolation(.wireCountMismatch(expected: expected, found: found), table: table)
    }
    if live == 0 && table != root && !pinned { return InvariantViolation(.badTablePage, table: table) }
    return nil
  }
}
