/// A page-aligned, half-open range of virtual addresses inside one canonical half.
///
/// The upper bound may be one past the last address of a half (for example `2^47` for the whole
/// lower half), which is not itself a canonical address; that is why a range is stored as a start
/// and a length. Use ``lowerHalf`` and ``upperHalf`` for whole halves.
@frozen
public struct VirtualRange: Hashable, Sendable {
  /// The first address of the range.
  public let start: VirtualAddress
  /// The length in bytes, a multiple of 4 KiB (zero for an empty range).
  public let byteCount: UInt64

  @inlinable
  init(unchecked start: VirtualAddress, byteCount: UInt64) {
    self.start = start
    self.byteCount = byteCount
  }

  /// The whole lower (user) half, `0 ..< 2^47`.
  @inlinable public static var lowerHalf: VirtualRange { VirtualRange(unchecked: .lowerHalfStart, byteCount: 1 << 47) }
  /// The whole upper (kernel) half, `0xffff_8000_0000_0000 ... UInt64.max`.
  @inlinable public static var upperHalf: VirtualRange { VirtualRange(unchecked: .upperHalfStart, byteCount: 1 << 47) }

  /// Creates the range `start ..< start + byteCount`.
  ///
  /// - Throws: ``RangeError/unaligned`` unless both are 4 KiB multiples;
  ///   ``RangeError/crossesCanonicalHole`` when the range leaves the half `start` is in.
  @inlinable
  public init(start: VirtualAddress, byteCount: UInt64) throws(RangeError) {
    guard start.isPageAligned, byteCount & 0xfff == 0 else { throw .unaligned }
    let halfEnd: UInt64 = (start.linear >> 47 == 0) ? (1 << 47) : (1 << 48)
    guard byteCount <= halfEnd - start.linear else { throw .crossesCanonicalHole }
    self.start = start
    self.byteCount = byteCount
  }

  /// The range of the single 4 KiB page at `page`.
  ///
  /// - Precondition: `page` is 4 KiB aligned.
  @inlinable
  public init(page: VirtualAddress) {
    precondition(page.isPageAligned, "VirtualRange: page address not 4 KiB aligned")
    self.start = page
    self.byteCount = 4096
  }

  /// Creates the range `start ..< end`.
  ///
  /// - Throws: ``RangeError/reversed`` when `end < start`; the errors of
  ///   ``init(start:byteCount:)`` otherwise.
  @inlinable
  public init(from start: VirtualAddress, to end: VirtualAddress) throws(RangeError) {
    guard start <= end else { throw .reversed }
    guard (start.linear >> 47) == (end.linear >> 47) else { throw .crossesCanonicalHole }
    try self.init(start: start, byteCount: end.linear - start.linear)
  }

  /// Whether the range is empty.
  @inlinable public var isEmpty: Bool { byteCount == 0 }

  /// The start reduced to 48 bits (see ``VirtualAddress/linear``).
  @inlinable public var linearStart: UInt64 { start.linear }
  /// One past the last byte, in 48-bit linear form (at most `2^48`).
  @inlinable public var linearEnd: UInt64 { start.linear + byteCount }

  /// Whether `address` lies in the range.
  @inlinable
  public func contains(_ address: VirtualAddress) -> Bool {
    address.linear >= linearStart && address.linear < linearEnd
      && (address.linear >> 47) == (linearStart >> 47)
  }
}
