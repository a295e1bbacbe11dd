/// The control-register and flag state that decides how a native (IA-32e) walk behaves
/// (SDM Vol. 3A §4.1.3, §4.5, §4.6). Paging itself (CR0.PG, CR4.PAE, EFER.LME) is assumed on.
public struct PagingControl: Hashable, Sendable {
  /// CR4.LA57: five-level paging (57-bit linear addresses) instead of four-level (48-bit).
  public var fiveLevel: Bool
  /// IA32_EFER.NXE: the XD bit (63) is honoured; when clear, bit 63 is reserved.
  public var noExecuteEnabled: Bool
  /// CR0.WP: supervisor-mode writes honour R/W.
  public var writeProtect: Bool
  /// CR4.SMEP: supervisor-mode fetches from user-mode pages fault.
  public var smep: Bool
  /// CR4.SMAP: supervisor-mode data accesses to user-mode pages fault unless EFLAGS.AC is set.
  public var smap: Bool
  /// EFLAGS.AC: with SMAP, allows explicit supervisor-mode data accesses to user-mode pages.
  public var alignmentCheck: Bool
  /// MAXPHYADDR (CPUID.80000008H:EAX[7:0]): entry bits from here to 51 are reserved.
  public var physicalAddressBits: Int
  /// Whether 1 GiB pages are supported (CPUID.80000001H:EDX.Page1GB); if not, PS in a PDPTE is
  /// reserved.
  public var supports1GBPages: Bool
  /// What the walk does with accessed flags when the access faults (implementation-specific;
  /// see ``AccessedFlagPolicy``).
  public var accessedFlagPolicy: AccessedFlagPolicy

  /// Creates a control state; the defaults are a modern 64-bit kernel's: four-level paging,
  /// NXE and WP on, SMEP/SMAP off, MAXPHYADDR 52, 1 GiB pages supported, A set only on success.
  public init(
    fiveLevel: Bool = false, noExecuteEnabled: Bool = true, writeProtect: Bool = true, smep: Bool = false,
    smap: Bool = false, alignmentCheck: Bool = false, physicalAddressBits: Int = 52, supports1GBPages: Bool = true,
    accessedFlagPolicy: AccessedFlagPolicy = .onSuccessOnly
  ) {
    precondition((32...52).contains(physicalAddressBits), "PagingControl: MAXPHYADDR must be 32...52")
    self.fiveLevel = fiveLevel
    self.noExecuteEnabled = noExecuteEnabled
    self.writeProtect = writeProtect
    self.smep = smep
    self.smap = smap
    self.alignmentCheck = alignmentCheck
    self.physicalAddressBits = physicalAddressBits
    self.supports1GBPages = supports1GBPages
    self.accessedFlagPolicy = accessedFlagPolicy
  }

  /// The number of levels walked: 5 with LA57, else 4.
  public var levels: Int { fiveLevel ? 5 : 4 }

  /// Whether `linear` is canonical in this mode (bits 63 down to 47, or 56 with LA57, equal).
  public func isCanonical(_ linear: UInt64) -> Bool {
    let top = linear >> (fiveLevel ? 56 : 47)
    return top == 0 || top == (fiveLevel ? 0xff : 0x1ffff)
  }
}

/// Whether accessed flags are set in the paging-structure entries of a walk that ends in a
/// fault. The SDM (Vol. 3A §4.8) says the processor sets A in an entry "whenever it uses" it; it
/// does not say whether entries used by a walk that then faults count, and processors differ.
public enum AccessedFlagPolicy: Hashable, Sendable {
  /// A (and D) are written only when the whole access succeeds: what KVM's software walker
  /// (`walk_addr_generic` in paging_tmpl.h) does, so the default for comparisons with KVM.
  case onSuccessOnly
  /// On a fault, A is still set in every present, well-formed entry above the leaf that the
  /// walk used (never in the leaf, never D): what many processors are observed to do.
  case upperLevelsOnFault
}
