import Pmap

/// The EPT pointer (EPTP), the VMCS field that names an EPT (SDM Vol. 3C §25.6.11, Table 25-9).
///
/// | bits | meaning |
/// |---|---|
/// | 0-2 | memory type for paging-structure accesses: 0 UC, 6 WB |
/// | 3-5 | page-walk length minus 1 (3 for four levels) |
/// | 6 | enable accessed and dirty flags |
/// | 7 | enforce access rights for supervisor shadow stacks (not used) |
/// | 12-51 | physical address of the EPT PML4 |
@frozen
public struct EPTPointer: Hashable, Sendable {
  /// The 64-bit value to write to the VMCS.
  public let rawValue: UInt64

  /// Bit 6: A/D flags enabled.
  @inlinable public static var accessedDirtyEnable: UInt64 { 1 << 6 }

  /// Interprets a raw EPTP value.
  @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }

  /// The EPT pointer for `pmap`: write-back paging structures, a four-level walk, A/D enabled
  /// exactly when the pmap was created with hardware A/D.
  @inlinable
  public init(_ pmap: EPTPmap) {
    var v = pmap.root.rawValue | EPTPTE.MemoryType.writeBack.rawValue | (3 << 3)
    if pmap.hardwareManagesAccessedDirty { v |= Self.accessedDirtyEnable }
    self.rawValue = v
  }

  /// The memory type of paging-structure accesses (bits 0-2).
  @inlinable public var memoryType: UInt64 { rawValue & 0b111 }
  /// The number of levels walked (bits 3-5, plus one).
  @inlinable public var walkLength: Int { Int((rawValue >> 3) & 0b111) + 1 }
  /// Whether the MMU maintains A/D bits (bit 6).
  @inlinable public var accessedDirtyEnabled: Bool { rawValue & Self.accessedDirtyEnable != 0 }
  /// The root table's physical address.
  @inlinable public var root: PhysicalAddress { PhysicalAddress(rawValue & EPTPTE.frameMask) }
  /// Whether the value is one a CPU accepts: WB or UC, a four-level walk, reserved bits clear.
  @inlinable public var isValid: Bool {
    (memoryType == 0 || memoryType == 6) && walkLength == 4 && rawValue & 0xf00 == 0 && rawValue >> 52 == 0
  }
}

extension Pmap where Ops == EPTPTE {
  /// The EPT pointer a hypervisor loads into the VMCS to run a guest on this pmap.
  @inlinable public var eptPointer: EPTPointer { EPTPointer(self) }
}
