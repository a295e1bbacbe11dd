import Pmap

/// The address space a CPU translates in, and that a TLB entry was filled from.
public enum TranslationContext: Hashable, Sendable, CustomStringConvertible {
  /// Host (native) paging with CR3 pointing at `root`.
  case native(root: PhysicalAddress)
  /// A VMX guest on the EPT rooted at `ept`, with guest CR3 pointing at the guest-physical
  /// `guestRoot`, or with guest paging off (`nil`: linear = guest-physical).
  case guest(ept: PhysicalAddress, guestRoot: PhysicalAddress?)

  public var description: String {
    switch self {
    case .native(let r): "native CR3=0x\(String(r.rawValue, radix: 16))"
    case .guest(let e, let g):
      "guest EPT=0x\(String(e.rawValue, radix: 16)) CR3=" + (g.map { "0x" + String($0.rawValue, radix: 16) } ?? "off")
    }
  }
}

/// The INVEPT types the model implements (SDM Vol. 3C §29.4.3.1).
public enum INVEPTType: Hashable, Sendable {
  /// Type 1: every guest-physical and combined mapping derived from this EPT root.
  case singleContext(PhysicalAddress)
  /// Type 2: every guest-physical and combined mapping of every EPT.
  case allContext
}

/// An access served from a TLB entry that no longer matches the paging structures in memory,
/// although the pmap that changed them owed an invalidation (see ``StaleTranslation/Reason``).
public struct StaleTranslation: Hashable, Sendable, CustomStringConvertible {
  /// What differs between the cached translation and the tables.
  public enum Reason: Hashable, Sendable {
    /// The tables no longer map the address (or map it through a malformed entry).
    case removed
    /// The tables map the address to another physical (or guest-physical) page.
    case frameChanged
    /// The tables now grant fewer rights (R/W or U/S cleared, XD set; an EPT right cleared).
    case rightsReduced
    /// The leaf's accessed bit was cleared: further accesses through the cached entry leave it
    /// clear, so the page looks unreferenced (the library owes an invalidation for this).
    case accessedCleared
    /// The cached entry was dirty and the leaf's dirty bit was cleared: writes through it
    /// leave D clear, and the modification is lost.
    case dirtyCleared
  }

  /// The CPU whose TLB served the access.
  public var cpu: Int
  /// The context of the cached entry.
  public var context: TranslationContext
  /// The linear (or, with guest paging off, guest-physical) address accessed.
  public var linearAddress: UInt64
  /// The access.
  public var access: AccessType
  /// Every difference found.
  public var reasons: [Reason]
  /// The (host-)physical address the TLB gave.
  public var cachedPhysicalAddress: UInt64
  /// The (host-)physical address the tables give now, if they map the address.
  public var currentPhysicalAddress: UInt64?

  /// Creates a report.
  public init(
    cpu: Int, context: TranslationContext, linearAddress: UInt64, access: AccessType, reasons: [Reason],
    cachedPhysicalAddress: UInt64, currentPhysicalAddress: UInt64?
  ) {
    self.cpu = cpu
    self.context = context
    self.linearAddress = linearAddress
    self.access = access
    self.reasons = reasons
    self.cachedPhysicalAddress = cachedPhysicalAddress
    self.currentPhysicalAddress = currentPhysicalAddress
  }

  public var description: String {
    "cpu \(cpu) \(access) 0x\(String(linearAddress, radix: 16)) in \(context): \(reasons) cached PA=0x"
      + String(cachedPhysicalAddress, radix: 16) + " now "
      + (currentPhysicalAddress.map { "0x" + String($0, radix: 16) } ?? "unmapped")
  }
}

/// A completed access.
public struct CompletedAccess: Hashable, Sendable {
  /// The value read, written or fetched (the first 8 bytes, little-endian, for byte accesses
  /// longer than 8; zero-extended when shorter).
  public var value: UInt64
  /// The host-physical address of the first byte.
  public var physicalAddress: PhysicalAddress
  /// The guest-physical address of the first byte, in a guest context.
  public var guestPhysicalAddress: PhysicalAddress?
  /// Whether the (first) translation came from the TLB rather than a page walk.
  public var fromTLB: Bool

  /// Creates a record.
  public init(value: UInt64, physicalAddress: PhysicalAddress, guestPhysicalAddress: PhysicalAddress?, fromTLB: Bool) {
    self.value = value
    self.physicalAddress = physicalAddress
    self.guestPhysicalAddress = guestPhysicalAddress
    self.fromTLB = fromTLB
  }
}

/// Counters of one CPU's TLB.
public struct TLBStatistics: Hashable, Sendable {
  /// Accesses served from a cached translation.
  public var hits = 0
  /// Page walks done (misses, re-walks for D, re-walks after insufficient cached rights).
  public var walks = 0
  /// Translations cached.
  public var fills = 0
  /// Entries dropped by invalidations (INVLPG, CR3 loads, INVEPT, shootdowns, flushes).
  public var invalidated = 0

  /// Creates zeroed counters.
  public init() {}
}
