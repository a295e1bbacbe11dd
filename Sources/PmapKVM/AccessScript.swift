import Pmap

/// What one scripted access does.
public enum AccessKind: UInt8, Hashable, Sendable, CaseIterable {
  /// A 64-bit load (`mov rbx, [rax]`).
  case read
  /// A 64-bit store (`mov [rax], rbx`).
  case write
  /// An instruction fetch: `call rax`; the target holds `ret` (0xC3).
  case fetch
}

/// The current privilege level an access runs at.
public enum GuestPrivilege: UInt8, Hashable, Sendable, CaseIterable {
  /// CPL3: a user-mode access.
  case user = 3
  /// CPL0: a supervisor-mode access.
  case supervisor = 0
}

/// One access of a script.
public struct ScriptedAccess: Hashable, Sendable, CustomStringConvertible {
  /// The linear address (8-byte aligned, so an access never crosses a page). It may be
  /// non-canonical: such an access raises #GP(0) before any page walk.
  public var linear: UInt64
  /// Read, write or fetch.
  public var kind: AccessKind
  /// CPL3 or CPL0.
  public var privilege: GuestPrivilege
  /// EFLAGS.AC during a supervisor access: with CR4.SMAP set it allows data accesses to user
  /// pages (what `stac` does). Ignored at CPL3.
  public var alignmentCheckFlag: Bool
  /// The value a write stores.
  public var value: UInt64

  /// Creates an access to the (canonical) `address`.
  ///
  /// - Precondition: `address` is 8-byte aligned.
  public init(
    _ kind: AccessKind, _ address: VirtualAddress, privilege: GuestPrivilege = .user,
    alignmentCheckFlag: Bool = false, value: UInt64 = 0
  ) {
    self.init(
      kind, linear: address.rawValue, privilege: privilege, alignmentCheckFlag: alignmentCheckFlag, value: value)
  }

  /// Creates an access to `linear`, canonical or not.
  ///
  /// - Precondition: `linear` is 8-byte aligned.
  public init(
    _ kind: AccessKind, linear: UInt64, privilege: GuestPrivilege = .user, alignmentCheckFlag: Bool = false,
    value: UInt64 = 0
  ) {
    precondition(linear & 7 == 0, "ScriptedAccess: the address must be 8-byte aligned")
    self.kind = kind
    self.linear = linear
    self.privilege = privilege
    self.alignmentCheckFlag = alignmentCheckFlag
    self.value = value
  }

  /// Whether the address is canonical for 4-level paging (bits 63-47 equal).
  public var isCanonical: Bool { VirtualAddress.isCanonical(linear) }

  public var description: String {
    let cpl = privilege == .user ? "CPL3" : (alignmentCheckFlag ? "CPL0+AC" : "CPL0")
    return "\(kind) 0x\(String(linear, radix: 16)) at \(cpl)"
  }
}

/// The error code a page fault pushes (Intel SDM Vol. 3A §4.7, Figure 4-12).
public struct FaultErrorCode: OptionSet, Hashable, Sendable, CustomStringConvertible {
  public let rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }
  /// P: 0 = not-present page, 1 = protection violation.
  public static var present: Self { Self(rawValue: 1 << 0) }
  /// W/R: the access was a write.
  public static var write: Self { Self(rawValue: 1 << 1) }
  /// U/S: the access was a user-mode access.
  public static var user: Self { Self(rawValue: 1 << 2) }
  /// RSVD: a reserved bit was set in some paging-structure entry.
  public static var reservedBit: Self { Self(rawValue: 1 << 3) }
  /// I/D: the access was an instruction fetch (reported only with NX or SMEP enabled).
  public static var instructionFetch: Self { Self(rawValue: 1 << 4) }
  /// PK: protection-key violation.
  public static var protectionKey: Self { Self(rawValue: 1 << 5) }
  /// SS: shadow-stack access.
  public static var shadowStack: Self { Self(rawValue: 1 << 6) }

  public var description: String {
    let names = ["P", "W", "U", "RSVD", "I", "PK", "SS"]
    let set = names.indices.filter { rawValue & (1 << UInt32($0)) != 0 }.map { names[$0] }
    return set.isEmpty ? "0" : set.joined(separator: "|")
  }
}

/// The architectural result of one access.
public enum AccessOutcome: Hashable, Sendable, CustomStringConvertible {
  /// The access completed; `value` is what a read loaded (0 for a write or a fetch).
  case completed(value: UInt64)
  /// The access raised exception `vector` with `errorCode` (0 when the vector has none); for a
  /// page fault (vector 14) `faultingAddress` is CR2, otherwise 0.
  case fault(vector: UInt8, errorCode: UInt32, faultingAddress: UInt64)

  /// A page fault with `code` at `address`.
  public static func pageFault(_ code: FaultErrorCode, at address: UInt64) -> Self {
    .fault(vector: 14, errorCode: code.rawValue, faultingAddress: address)
  }

  public var description: String {
    switch self {
    case .completed(let value): value == 0 ? "completed" : "completed, loaded 0x\(String(value, radix: 16))"
    case .fault(14, let code, let cr2):
      "#PF(\(FaultErrorCode(rawValue: code))) CR2=0x\(String(cr2, radix: 16))"
    case .fault(let vector, let code, _): "vector \(vector) error code 0x\(String(code, radix: 16))"
    }
  }
}

/// The paging controls a run uses; the KVM guest and the model must be given the same.
public struct PagingMode: Hashable, Sendable, CustomStringConvertible {
  /// CR0.WP: supervisor writes honour read-only pages.
  public var writeProtect: Bool
  /// EFER.NXE: bit 63 of entries is XD; without it bit 63 is reserved.
  public var noExecuteEnabled: Bool
  /// CR4.SMEP: supervisor fetches from user pages fault.
  public var supervisorModeExecutionPrevention: Bool
  /// CR4.SMAP: supervisor data accesses to user pages fault unless EFLAGS.AC is set.
  public var supervisorModeAccessPrevention: Bool

  /// Creates a mode; the default is what a modern kernel runs with (WP, NXE, SMEP, SMAP).
  public init(
    writeProtect: Bool = true, noExecuteEnabled: Bool = true, supervisorModeExecutionPrevention: Bool = true,
    supervisorModeAccessPrevention: Bool = true
  ) {
    self.writeProtect = writeProtect
    self.noExecuteEnabled = noExecuteEnabled
    self.supervisorModeExecutionPrevention = supervisorModeExecutionPrevention
    self.supervisorModeAccessPrevention = supervisorModeAccessPrevention
  }

  public var description: String {
    "CR0.WP=\(writeProtect ? 1 : 0) EFER.NXE=\(noExecuteEnabled ? 1 : 0) "
      + "CR4.SMEP=\(supervisorModeExecutionPrevention ? 1 : 0) CR4.SMAP=\(supervisorModeAccessPrevention ? 1 : 0)"
  }
}
