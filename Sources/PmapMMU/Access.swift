import Pmap

/// What a memory access does: the three kinds the x86 paging rules distinguish (SDM Vol. 3A §4.6).
public enum AccessType: UInt8, Hashable, Sendable, CaseIterable {
  /// A data read.
  case read
  /// A data write.
  case write
  /// An instruction fetch.
  case fetch
}

/// The privilege of an access (SDM Vol. 3A §4.6): user-mode accesses are those made at CPL 3;
/// every other access is a supervisor-mode access.
///
/// Implicit supervisor-mode accesses (to the GDT, IDT, TSS... made by a CPL 3 instruction) are
/// not modelled: a caller that wants one passes ``supervisor`` and sets ``PagingControl/alignmentCheck``
/// to `false` (for an implicit access SMAP ignores EFLAGS.AC).
public enum PrivilegeLevel: UInt8, Hashable, Sendable, CaseIterable {
  /// CPL 0, 1 or 2.
  case supervisor
  /// CPL 3.
  case user
}

/// The error code a page fault (#PF, vector 14) pushes (SDM Vol. 3A §4.7, Figure 4-12).
///
/// Bits 5 (PK), 6 (SS), 7 (HLAT) and 15 (SGX) are never set by this model.
public struct PageFaultErrorCode: OptionSet, Hashable, Sendable, CustomStringConvertible {
  /// The raw error code.
  public let rawValue: UInt32
  /// Creates an error code from its raw value.
  public init(rawValue: UInt32) { self.rawValue = rawValue }

  /// P (bit 0): 0 for a not-present page, 1 for a protection violation or reserved bit.
  public static let present = PageFaultErrorCode(rawValue: 1 << 0)
  /// W/R (bit 1): the access was a write.
  public static let write = PageFaultErrorCode(rawValue: 1 << 1)
  /// U/S (bit 2): the access was a user-mode access (CPL 3).
  public static let user = PageFaultErrorCode(rawValue: 1 << 2)
  /// RSVD (bit 3): a reserved bit was set in a paging-structure entry.
  public static let reservedBit = PageFaultErrorCode(rawValue: 1 << 3)
  /// I/D (bit 4): the access was an instruction fetch, and EFER.NXE or CR4.SMEP is set.
  public static let instructionFetch = PageFaultErrorCode(rawValue: 1 << 4)

  public var description: String {
    let names: [(PageFaultErrorCode, String)] = [
      (.present, "P"), (.write, "W"), (.user, "U"), (.reservedBit, "RSVD"), (.instructionFetch, "I/D"),
    ]
    let set = names.filter { contains($0.0) }.map(\.1)
    return set.isEmpty ? "0" : set.joined(separator: "|")
  }
}

/// A page fault: what the CPU reports in the error code and CR2.
public struct PageFault: Hashable, Sendable, CustomStringConvertible {
  /// The error code pushed on the stack.
  public var errorCode: PageFaultErrorCode
  /// CR2: the linear address whose translation faulted (not rounded to a page).
  public var address: UInt64
  /// Diagnostics only (not architectural): the level (1 = PT ... 5 = PML5) of the entry that
  /// was not present or had a reserved bit set; for an access-rights fault, the leaf's level.
  public var level: Int

  /// Creates a page fault report.
  public init(errorCode: PageFaultErrorCode, address: UInt64, level: Int) {
    self.errorCode = errorCode
    self.address = address
    self.level = level
  }

  public var description: String {
    "#PF(\(errorCode)) CR2=0x\(String(address, radix: 16)) level \(level)"
  }
}

/// Why an access did not complete.
public enum MMUFault: Error, Hashable, Sendable, CustomStringConvertible {
  /// A page fault in the (guest's) native paging structures.
  case pageFault(PageFault)
  /// A general-protection fault (#GP): the linear address is not canonical for the paging mode
  /// (SDM Vol. 3A §4.5.1). No walk is done, CR2 is not written.
  case generalProtection(linearAddress: UInt64)
  /// An EPT violation VM exit (SDM Vol. 3C §29.3.3.2).
  case eptViolation(EPTViolation)
  /// An EPT misconfiguration VM exit (SDM Vol. 3C §29.3.3.1) while translating
  /// `guestPhysicalAddress`.
  case eptMisconfiguration(guestPhysicalAddress: UInt64)
  /// Not architectural: a paging structure or the accessed data lies in physical memory the
  /// simulated RAM does not cover (on hardware: an abort or machine check). A guest that puts
  /// such an address in an entry gets this, never a host crash.
  case unbackedPhysicalAddress(UInt64)

  /// The exception vector the guest (or host) sees: 14 for #PF, 13 for #GP; `nil` for a VM exit
  /// or an unbacked address, which deliver no exception.
  public var vector: UInt8? {
    switch self {
    case .pageFault: 14
    case .generalProtection: 13
    case .eptViolation, .eptMisconfiguration, .unbackedPhysicalAddress: nil
    }
  }

  /// The page fault, if this is one.
  public var pageFault: PageFault? {
    if case .pageFault(let f) = self { return f }
    return nil
  }

  /// The EPT violation, if this is one.
  public var eptViolation: EPTViolation? {
    if case .eptViolation(let v) = self { return v }
    return nil
  }

  public var description: String {
    switch self {
    case .pageFault(let f): "\(f)"
    case .generalProtection(let a): "#GP non-canonical 0x\(String(a, radix: 16))"
    case .eptViolation(let v): "\(v)"
    case .eptMisconfiguration(let gpa): "EPT misconfiguration GPA=0x\(String(gpa, radix: 16))"
    case .unbackedPhysicalAddress(let pa): "physical address 0x\(String(pa, radix: 16)) outside simulated RAM"
    }
  }
}
