import Pmap

/// An EPT-violation VM exit, decoded from the exit qualification and the guest-physical-address
/// VMCS field (SDM Vol. 3C §28.2.1, Table 28-7, "Exit Qualification for EPT Violations").
///
/// | bit | meaning |
/// |---|---|
/// | 0, 1, 2 | the access was a data read, a data write, an instruction fetch |
/// | 3, 4, 5 | the guest-physical address was readable, writable, executable (the AND of R, W, X over the walk); all clear: not present |
/// | 6 | user-mode executable (mode-based execute control only) |
/// | 7 | the guest-linear-address field is valid |
/// | 8 | with bit 7: the access was to the translation of a linear address (clear: to a guest paging-structure entry) |
/// | 12 | NMI unblocking due to IRET |
/// | 13 | shadow-stack access |
/// | 16 | asynchronous to instruction execution |
///
/// Both values come from hardware acting for the guest, so they are guest-controlled: every
/// value decodes, nothing here traps. ``isWellFormed`` says whether the combination is one the
/// SDM allows; ``guestPage`` is `nil` for an address beyond the four-level EPT's 48 bits.
/// NVMM's `vmx_exit_epf` and KVM's `handle_ept_violation` read the same fields.
@frozen
public struct EPTViolationExit: Hashable, Sendable {
  /// The raw exit qualification.
  public let exitQualification: UInt64
  /// The raw guest-physical address of the access (VMCS field 0x2400).
  public let guestPhysicalAddress: UInt64

  /// Bits the SDM defines (0-16 except 9-11, which carry advanced information we ignore, are
  /// decoded; 17-63 are reserved and must be clear).
  @inlinable public static var definedBits: UInt64 { 0x1_ffff }

  /// Wraps the two VMCS values; never traps.
  @inlinable
  public init(exitQualification: UInt64, guestPhysicalAddress: UInt64) {
    self.exitQualification = exitQualification
    self.guestPhysicalAddress = guestPhysicalAddress
  }

  /// The exit qualification of a violation by `access` on an entry granting `permitted`
  /// (what the CPU would report; for tests and models).
  @inlinable
  public init(access: Protection, permitted: Protection, guestPhysicalAddress: UInt64) {
    var q = UInt64(access.rawValue & 7)
    q |= UInt64(permitted.rawValue & 7) << 3
    self.init(exitQualification: q, guestPhysicalAddress: guestPhysicalAddress)
  }

  /// The kind of the access that faulted: `.read`, `.write`, `.execute` (bits 0-2). Empty only
  /// for a malformed qualification.
  @inlinable public var access: Protection { Protection(rawValue: UInt8(truncatingIfNeeded: exitQualification & 7)) }

  /// What the EPT walk allowed at the address (bits 3-5); empty when it was not present.
  @inlinable public var permitted: Protection {
    Protection(rawValue: UInt8(truncatingIfNeeded: (exitQualification >> 3) & 7))
  }

  /// Whether some EPT entry mapped the address (any of bits 3-5): a rights violation rather than
  /// a not-present one.
  @inlinable public var wasPresent: Bool { exitQualification & 0b11_1000 != 0 }

  /// Whether the guest-linear-address field is valid (bit 7).
  @inlinable public var hasGuestLinearAddress: Bool { exitQualification & (1 << 7) != 0 }

  /// With a valid linear address: `true` when the access was to the final translation,
  /// `false` when it was to a guest paging-structure entry during the guest's own walk; `nil`
  /// without a valid linear address.
  @inlinable public var isFinalTranslation: Bool? {
    hasGuestLinearAddress ? exitQualification & (1 << 8) != 0 : nil
  }

  /// Whether the exit unblocked NMIs by IRET (bit 12): the hypervisor must re-block them.
  @inlinable public var unblocksNMI: Bool { exitQualification & (1 << 12) != 0 }

  /// Whether it was a shadow-stack access (bit 13).
  @inlinable public var isShadowStackAccess: Bool { exitQualification & (1 << 13) != 0 }

  /// Whether the access was asynchronous to instruction execution (bit 16).
  @inlinable public var isAsynchronous: Bool { exitQualification & (1 << 16) != 0 }

  /// Whether the qualification is one the SDM allows: reserved bits 17-63 clear, bit 8 only with
  /// bit 7, at least one access kind, and the access not within what the walk permitted.
  @inlinable public var isWellFormed: Bool {
    exitQualification & ~Self.definedBits == 0
      && (hasGuestLinearAddress || exitQualification & (1 << 8) == 0)
      && !access.isEmpty
      && !permitted.isSuperset(of: access)
  }

  /// The 4 KiB guest page of the access, or `nil` when the address is beyond the 48 bits a
  /// four-level EPT translates.
  @inlinable public var guestPage: VirtualAddress? {
    guard guestPhysicalAddress < 1 << 48 else { return nil }
    return VirtualAddress(truncating: guestPhysicalAddress & ~0xfff)
  }
}
