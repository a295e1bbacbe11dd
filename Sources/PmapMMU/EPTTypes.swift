import Pmap

/// The EPT features of the modelled processor (IA32_VMX_EPT_VPID_CAP, SDM Vol. 3D §A.10) and its
/// physical-address width.
public struct EPTCapabilities: Hashable, Sendable {
  /// Bit 0: execute-only translations (X without R) are allowed; otherwise they are
  /// misconfigurations.
  public var executeOnly: Bool
  /// Bit 17: 1 GiB EPT pages; otherwise bit 7 of an EPT PDPTE is reserved.
  public var supports1GBPages: Bool
  /// MAXPHYADDR: EPT entry bits from here to 51 are reserved.
  public var physicalAddressBits: Int

  /// Creates a capability set (defaults: no execute-only, 1 GiB pages, MAXPHYADDR 52).
  public init(executeOnly: Bool = false, supports1GBPages: Bool = true, physicalAddressBits: Int = 52) {
    precondition((32...52).contains(physicalAddressBits), "EPTCapabilities: MAXPHYADDR must be 32...52")
    self.executeOnly = executeOnly
    self.supports1GBPages = supports1GBPages
    self.physicalAddressBits = physicalAddressBits
  }
}

/// The exit qualification of an EPT violation (SDM Vol. 3C §28.2.1, Table 28-7), the bits this
/// model produces and decodes. Bits 6 (user-mode execute, with mode-based execute control), 9-12
/// and above are never set by the model; ``init(rawValue:)`` keeps whatever it is given, so it
/// also decodes a qualification read from a real VMCS.
public struct EPTExitQualification: OptionSet, Hashable, Sendable, CustomStringConvertible {
  /// The raw 64-bit exit qualification.
  public let rawValue: UInt64
  /// Wraps a raw exit qualification (any value: nothing a guest causes can make this trap).
  public init(rawValue: UInt64) { self.rawValue = rawValue }

  /// Bit 0: the access was a data read (also set, with bit 1, for a guest paging-structure
  /// access treated as a write because EPT A/D is enabled).
  public static let read = EPTExitQualification(rawValue: 1 << 0)
  /// Bit 1: the access was a data write.
  public static let write = EPTExitQualification(rawValue: 1 << 1)
  /// Bit 2: the access was an instruction fetch.
  public static let fetch = EPTExitQualification(rawValue: 1 << 2)
  /// Bit 3: the AND of the R bits of the EPT entries walked (the address was readable).
  public static let readable = EPTExitQualification(rawValue: 1 << 3)
  /// Bit 4: the AND of the W bits (writable).
  public static let writable = EPTExitQualification(rawValue: 1 << 4)
  /// Bit 5: the AND of the X bits (executable).
  public static let executable = EPTExitQualification(rawValue: 1 << 5)
  /// Bit 7: the guest linear-address field is valid.
  public static let linearAddressValid = EPTExitQualification(rawValue: 1 << 7)
  /// Bit 8 (meaningful only with bit 7): the access was to the translation of the linear
  /// address (1), not to a guest paging-structure entry during the walk or its A/D update (0).
  public static let finalTranslation = EPTExitQualification(rawValue: 1 << 8)

  /// The rights the walked EPT entries granted (bits 3-5) as a ``Protection``.
  public var permitted: Protection {
    var p: Protection = []
    if contains(.readable) { p.insert(.read) }
    if contains(.writable) { p.insert(.write) }
    if contains(.executable) { p.insert(.execute) }
    return p
  }

  /// The kind of access that caused the violation (bits 0-2): fetch, else write, else read;
  /// `nil` when none of bits 0-2 is set.
  public var accessType: AccessType? {
    if contains(.fetch) { return .fetch }
    if contains(.write) { return .write }
    if contains(.read) { return .read }
    return nil
  }

  /// Whether the violating access was to a guest paging-structure entry (bit 7 set, bit 8 clear).
  public var isPagingStructureAccess: Bool { contains(.linearAddressValid) && !contains(.finalTranslation) }

  public var description: String {
    let names: [(EPTExitQualification, String)] = [
      (.read, "R"), (.write, "W"), (.fetch, "X"), (.readable, "r"), (.writable, "w"), (.executable, "x"),
      (.linearAddressValid, "GLA"), (.finalTranslation, "final"),
    ]
    let set = names.filter { contains($0.0) }.map(\.1)
    return "0x\(String(rawValue, radix: 16))[" + set.joined(separator: " ") + "]"
  }
}

/// An EPT violation: the VM exit's qualification and the guest addresses the VMCS reports.
public struct EPTViolation: Hashable, Sendable, CustomStringConvertible {
  /// The exit qualification.
  public var qualification: EPTExitQualification
  /// The guest-physical-address field.
  public var guestPhysicalAddress: UInt64
  /// The guest-linear-address field, when qualification bit 7 says it is valid.
  public var guestLinearAddress: UInt64?

  /// Creates a violation record.
  public init(qualification: EPTExitQualification, guestPhysicalAddress: UInt64, guestLinearAddress: UInt64?) {
    self.qualification = qualification
    self.guestPhysicalAddress = guestPhysicalAddress
    self.guestLinearAddress = guestLinearAddress
  }

  public var description: String {
    var s = "EPT violation \(qualification) GPA=0x\(String(guestPhysicalAddress, radix: 16))"
    if let l = guestLinearAddress { s += " GLA=0x\(String(l, radix: 16))" }
    return s
  }
}

/// A successful EPT translation of a guest-physical address.
public struct EPTTranslation: Hashable, Sendable {
  /// The host-physical address.
  public var hostPhysicalAddress: PhysicalAddress
  /// The size of the EPT page that maps it.
  public var pageSize: PageSize
  /// R, W, X ANDed over every EPT entry walked.
  public var permissions: Protection
  /// The leaf's memory type (bits 5:3: 0 UC, 1 WC, 4 WT, 5 WP, 6 WB).
  public var memoryType: UInt8
  /// The leaf's IPAT bit.
  public var ignoresGuestPAT: Bool
  /// The host-physical address of the leaf entry.
  public var leafEntryAddress: PhysicalAddress
  /// The leaf entry as the walk left it (with any A/D bits it set).
  public var leafEntry: UInt64

  /// Creates a translation record.
  public init(
    hostPhysicalAddress: PhysicalAddress, pageSize: PageSize, permissions: Protection, memoryType: UInt8,
    ignoresGuestPAT: Bool, leafEntryAddress: PhysicalAddress, leafEntry: UInt64
  ) {
    self.hostPhysicalAddress = hostPhysicalAddress
    self.pageSize = pageSize
    self.permissions = permissions
    self.memoryType = memoryType
    self.ignoresGuestPAT = ignoresGuestPAT
    self.leafEntryAddress = leafEntryAddress
    self.leafEntry = leafEntry
  }
}
