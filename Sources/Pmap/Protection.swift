/// Access rights of a mapping, or the kind of an access (NetBSD's `vm_prot_t`).
///
/// x86 cannot express a writable mapping that is not readable: native entries are readable
/// whenever present, and an EPT entry with W but not R is a misconfiguration. The pmap refuses
/// `.write` without `.read` with a typed error. A mapping without `.read` but with `.execute` is
/// mapped readable and executable (neither format here expresses execute-only).
@frozen
public struct Protection: OptionSet, Hashable, Sendable {
  /// The bits: 1 read, 2 write, 4 execute (`VM_PROT_*` values).
  public let rawValue: UInt8
  /// Creates the set with the bits of `rawValue` (see ``rawValue``).
  @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

  /// `VM_PROT_READ`.
  @inlinable public static var read: Protection { Protection(rawValue: 1) }
  /// `VM_PROT_WRITE`.
  @inlinable public static var write: Protection { Protection(rawValue: 2) }
  /// `VM_PROT_EXECUTE`.
  @inlinable public static var execute: Protection { Protection(rawValue: 4) }

  /// No access (`VM_PROT_NONE`).
  @inlinable public static var none: Protection { [] }
  /// Read and write.
  @inlinable public static var readWrite: Protection { [.read, .write] }
  /// Read and execute.
  @inlinable public static var readExecute: Protection { [.read, .execute] }
  /// Everything (`VM_PROT_ALL`).
  @inlinable public static var all: Protection { [.read, .write, .execute] }

  /// Whether x86 can encode these rights: not write without read.
  @inlinable public var isEncodable: Bool { !contains(.write) || contains(.read) }
}

/// Memory types a mapping may request (NetBSD's `PMAP_WRITE_BACK`, `PMAP_WRITE_COMBINE`,
/// `PMAP_NOCACHE`, `PMAP_NOCACHE_OVR`, plus write-through and write-protected).
@frozen
public enum CacheMode: UInt8, Sendable, CaseIterable {
  /// Write-back: ordinary RAM.
  case writeBack
  /// Write-combining: frame buffers.
  case writeCombining
  /// Write-through.
  case writeThrough
  /// Write-protected.
  case writeProtected
  /// Strong uncacheable: device registers.
  case uncached
  /// Uncached, but overridable by a write-combining MTRR (PAT's UC-, NetBSD's `PMAP_NOCACHE_OVR`).
  case uncachedOverridable
}

/// How a mapping is entered (NetBSD's `PMAP_WIRED` and `PMAP_CANFAIL` flags).
@frozen
public struct EnterOptions: OptionSet, Hashable, Sendable {
  /// The bits: 1 wired, 2 can fail.
  public let rawValue: UInt8
  /// Creates the set with the bits of `rawValue` (see ``rawValue``).
  @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

  /// The mapping is wired: it must not be paged out; counted in the wired statistic.
  @inlinable public static var wired: EnterOptions { EnterOptions(rawValue: 1) }
  /// A page-table-page allocation failure is reported as ``EnterError/outOfPageTableMemory``
  /// rather than trapping (`PMAP_CANFAIL`).
  @inlinable public static var canFail: EnterOptions { EnterOptions(rawValue: 2) }
}

/// Who may use the mappings of a native pmap.
@frozen
public enum AddressSpaceKind: UInt8, Sendable {
  /// A process (or guest) address space: leaves are user-accessible, not global.
  case user
  /// The kernel's address space: leaves are supervisor-only and global.
  case kernel
}
