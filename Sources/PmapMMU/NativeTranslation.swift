import Pmap

/// A successful native (IA-32e) translation of a linear address.
public struct NativeTranslation: Hashable, Sendable {
  /// The (guest-)physical address the linear address translates to.
  public var physicalAddress: PhysicalAddress
  /// The size of the page that maps it (4 KiB, 2 MiB or 1 GiB).
  public var pageSize: PageSize
  /// R/W was set in every entry walked.
  public var writable: Bool
  /// U/S was set in every entry walked: a user-mode address.
  public var userAccessible: Bool
  /// XD was set in some entry walked (always `false` when EFER.NXE is clear).
  public var executeDisable: Bool
  /// G was set in the leaf.
  public var global: Bool
  /// The (guest-)physical address of the leaf entry.
  public var leafEntryAddress: PhysicalAddress
  /// The leaf entry as the walk left it (with the A/D bits it set).
  public var leafEntry: UInt64

  /// Creates a translation record.
  public init(
    physicalAddress: PhysicalAddress, pageSize: PageSize, writable: Bool, userAccessible: Bool,
    executeDisable: Bool, global: Bool, leafEntryAddress: PhysicalAddress, leafEntry: UInt64
  ) {
    self.physicalAddress = physicalAddress
    self.pageSize = pageSize
    self.writable = writable
    self.userAccessible = userAccessible
    self.executeDisable = executeDisable
    self.global = global
    self.leafEntryAddress = leafEntryAddress
    self.leafEntry = leafEntry
  }

  /// The first physical address of the page.
  public var pageFrame: PhysicalAddress { physicalAddress.alignedDown(to: pageSize) }
}

/// The rules of SDM Vol. 3A §4.6 ("Access Rights") for 4-level and 5-level paging: whether an
/// access of `type` at `privilege` is allowed to a page whose combined rights are given.
///
/// - `writable`, `user`, `executeDisable`: R/W and U/S ANDed over every entry walked, XD ORed
///   (only with EFER.NXE).
public func nativeAccessPermitted(
  writable: Bool, user: Bool, executeDisable: Bool, type: AccessType, privilege: PrivilegeLevel,
  control: PagingControl
) -> Bool {
  switch privilege {
  case .user:
    // §4.6.1: user-mode accesses need U/S everywhere; writes R/W; fetches no XD.
    guard user else { return false }
    switch type {
    case .read: return true
    case .write: return writable
    case .fetch: return !executeDisable
    }
  case .supervisor:
    switch type {
    case .read:
      // SMAP: explicit supervisor reads of user-mode addresses need EFLAGS.AC.
      return !(user && control.smap && !control.alignmentCheck)
    case .write:
      if user && control.smap && !control.alignmentCheck { return false }
      // CR0.WP = 0: supervisor writes ignore R/W.
      return writable || !control.writeProtect
    case .fetch:
      // SMEP: no supervisor fetch from a user-mode address; XD applies (with NXE).
      if user && control.smep { return false }
      return !executeDisable
    }
  }
}
