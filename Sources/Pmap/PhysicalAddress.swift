/// A physical address within the architectural 52-bit limit of x86-64.
///
/// For an EPT pmap the "physical" side of a mapping is a host-physical address; the same type is
/// used. Construct with ``init(validating:)`` for untrusted values, ``init(_:)`` where an
/// out-of-range value is a programming error.
@frozen
public struct PhysicalAddress: Hashable, Comparable, Sendable {
  /// The address as a 64-bit integer (always below 2^52).
  public let rawValue: UInt64

  /// The architectural limit on physical-address width (MAXPHYADDR may be smaller on a given CPU).
  @inlinable public static var maximumBits: Int { 52 }
  /// One past the largest representable physical address.
  @inlinable public static var limit: UInt64 { 1 << 52 }

  @inlinable @inline(__always)
  init(unchecked rawValue: UInt64) { self.rawValue = rawValue }

  /// Creates an address, or throws ``AddressError/physicalAddressTooLarge``.
  @inlinable
  public init(validating raw: UInt64) throws(AddressError) {
    guard raw < Self.limit else { throw .physicalAddressTooLarge }
    self.rawValue = raw
  }

  /// Creates an address, or returns `nil` when `raw` is at or above 2^52.
  @inlinable
  public init?(exactly raw: UInt64) {
    guard raw < Self.limit else { return nil }
    self.rawValue = raw
  }

  /// Creates an address from a value the caller knows to be below 2^52.
  ///
  /// - Precondition: `raw < 2^52`.
  @inlinable
  public init(_ raw: UInt64) {
    precondition(raw < Self.limit, "PhysicalAddress: beyond the 52-bit physical limit")
    self.rawValue = raw
  }

  /// Creates the address from the low 52 bits of `raw` (what a page-table entry's frame field
  /// holds after masking); never traps.
  @inlinable @inline(__always)
  public init(truncating raw: UInt64) { self.rawValue = raw & (Self.limit &- 1) }

  /// Creates the address of page frame number `frame` (a 4 KiB frame index).
  ///
  /// - Precondition: `frame < 2^40`.
  @inlinable
  public init(frameNumber frame: UInt64) {
    precondition(frame < (1 << 40), "PhysicalAddress: frame number beyond the 52-bit limit")
    self.rawValue = frame << 12
  }

  /// The 4 KiB frame number containing this address.
  @inlinable @inline(__always)
  public var frameNumber: UInt64 { rawValue >> 12 }

  /// Whether the address is a multiple of `size`.
  @inlinable @inline(__always)
  public func isAligned(to size: PageSize) -> Bool { rawValue & size.offsetMask == 0 }

  /// Whether the address is 4 KiB aligned.
  @inlinable @inline(__always)
  public var isPageAligned: Bool { isAligned(to: .size4K) }

  /// The address rounded down to a multiple of `size`.
  @inlinable @inline(__always)
  public func alignedDown(to size: PageSize = .size4K) -> PhysicalAddress {
    PhysicalAddress(unchecked: rawValue & ~size.offsetMask)
  }

  /// The address `bytes` further on, or `nil` past the 52-bit limit.
  @inlinable
  public func advanced(by bytes: UInt64) -> PhysicalAddress? {
    let (sum, overflow) = rawValue.addingReportingOverflow(bytes)
    guard !overflow, sum < Self.limit else { return nil }
    return PhysicalAddress(unchecked: sum)
  }

  /// Orders addresses numerically.
  @inlinable
  public static func < (a: PhysicalAddress, b: PhysicalAddress) -> Bool { a.rawValue < b.rawValue }
}
