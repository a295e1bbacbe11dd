/// A canonical x86-64 virtual address (48-bit, four-level paging).
///
/// Bits 63...47 of a canonical address are all equal, so the lower half runs from `0` to
/// `0x0000_7fff_ffff_ffff` and the upper half from `0xffff_8000_0000_0000` to `UInt64.max`.
/// A `VirtualAddress` is canonical by construction: use ``init(validating:)`` for values that come
/// from outside the kernel, ``init(_:)`` where a non-canonical value is a programming error, and
/// ``init(truncating:)`` to sign-extend bit 47.
///
/// For an Intel EPT pmap the same type carries guest-physical addresses: an EPT with a four-level
/// walk translates a 48-bit guest-physical space. Its lower 2^47 bytes are the lower half; a
/// guest-physical address in `2^47 ..< 2^48` is carried in its sign-extended form,
/// ``init(truncating:)``, which selects the same table entries (indices come from the low 48
/// bits).
@frozen
public struct VirtualAddress: Hashable, Comparable, Sendable {
  /// The address as a 64-bit integer (always canonical).
  public let rawValue: UInt64

  /// The number of significant bits of a four-level virtual address.
  @inlinable public static var significantBits: Int { 48 }

  /// The first address of the lower half.
  @inlinable public static var lowerHalfStart: VirtualAddress { VirtualAddress(unchecked: 0) }
  /// The first address of the upper (kernel) half.
  @inlinable public static var upperHalfStart: VirtualAddress { VirtualAddress(unchecked: 0xffff_8000_0000_0000) }

  @inlinable @inline(__always)
  init(unchecked rawValue: UInt64) { self.rawValue = rawValue }

  /// Whether `raw` is canonical for four-level paging.
  @inlinable @inline(__always)
  public static func isCanonical(_ raw: UInt64) -> Bool {
    let top = raw >> 47
    return top == 0 || top == 0x1ffff
  }

  /// Creates an address, or throws ``AddressError/nonCanonical`` for a non-canonical value.
  @inlinable
  public init(validating raw: UInt64) throws(AddressError) {
    guard Self.isCanonical(raw) else { throw .nonCanonical }
    self.rawValue = raw
  }

  /// Creates an address, or returns `nil` for a non-canonical value.
  @inlinable
  public init?(exactly raw: UInt64) {
    guard Self.isCanonical(raw) else { return nil }
    self.rawValue = raw
  }

  /// Creates an address from a value the caller knows to be canonical.
  ///
  /// - Precondition: `raw` is canonical. A non-canonical value traps.
  @inlinable
  public init(_ raw: UInt64) {
    precondition(Self.isCanonical(raw), "VirtualAddress: non-canonical address")
    self.rawValue = raw
  }

  /// Creates the canonical address with the same low 48 bits, sign-extending bit 47.
  @inlinable @inline(__always)
  public init(truncating raw: UInt64) {
    self.rawValue = UInt64(bitPattern: Int64(bitPattern: raw << 16) >> 16)
  }

  /// The address reduced to its 48 significant bits: a linear position in `0 ..< 2^48` that
  /// increases monotonically across the canonical hole (the upper half follows the lower one).
  @inlinable @inline(__always)
  public var linear: UInt64 { rawValue & 0x0000_ffff_ffff_ffff }

  /// Whether the address is a multiple of `size`.
  @inlinable @inline(__always)
  public func isAligned(to size: PageSize) -> Bool { rawValue & size.offsetMask == 0 }

  /// Whether the address is 4 KiB aligned.
  @inlinable @inline(__always)
  public var isPageAligned: Bool { isAligned(to: .size4K) }

  /// The address rounded down to a multiple of `size`.
  @inlinable @inline(__always)
  public func alignedDown(to size: PageSize = .size4K) -> VirtualAddress {
    VirtualAddress(unchecked: rawValue & ~size.offsetMask)
  }

  /// The offset of the address within its page of `size`.
  @inlinable @inline(__always)
  public func offset(in size: PageSize = .size4K) -> UInt64 { rawValue & size.offsetMask }

  /// The index this address selects in a page-table page at `level`.
  @inlinable @inline(__always)
  public func index(at level: PageTableLevel) -> TableIndex {
    TableIndex(unchecked: UInt16(truncatingIfNeeded: (rawValue >> level.shift) & 511))
  }

  /// The address `bytes` further on, or `nil` when it leaves the canonical half it is in.
  @inlinable
  public func advanced(by bytes: UInt64) -> VirtualAddress? {
    let (sum, overflow) = linear.addingReportingOverflow(bytes)
    guard !overflow, sum < (1 << 48), (sum >> 47) == (linear >> 47) else { return nil }
    return VirtualAddress(truncating: sum)
  }

  /// Orders addresses numerically: every lower-half address precedes every upper-half one.
  @inlinable
  public static func < (a: VirtualAddress, b: VirtualAddress) -> Bool { a.rawValue < b.rawValue }
}
