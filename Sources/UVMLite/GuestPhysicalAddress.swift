import Pmap

/// An address in a guest's physical address space, as the guest (or an EPT-violation exit)
/// presents it: any 64-bit value. Guest-controlled, so every operation here is total; whether
/// the address is guest RAM is decided by ``GuestMemory/pageIndex(of:)``.
@frozen
public struct GuestPhysicalAddress: Hashable, Comparable, Sendable {
  /// The address as the guest gave it.
  public let rawValue: UInt64

  /// Wraps any value.
  @inlinable public init(_ rawValue: UInt64) { self.rawValue = rawValue }

  /// The 4 KiB page number (`rawValue >> 12`).
  @inlinable public var pageNumber: UInt64 { rawValue >> 12 }

  /// The offset within the 4 KiB page.
  @inlinable public var pageOffset: Int { Int(truncatingIfNeeded: rawValue & 0xfff) }

  /// The address of page `index` (guest RAM starts at guest-physical 0).
  @inlinable public init(page index: Int) { self.rawValue = UInt64(truncatingIfNeeded: index) << 12 }

  /// Orders addresses numerically.
  @inlinable
  public static func < (a: GuestPhysicalAddress, b: GuestPhysicalAddress) -> Bool { a.rawValue < b.rawValue }
}
