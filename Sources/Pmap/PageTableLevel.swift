/// A level of the four-level x86-64 (and EPT) page-table tree, numbered as NetBSD numbers them:
/// level 1 holds the 4 KiB leaf entries (PT), level 4 is the root (PML4).
@frozen
public enum PageTableLevel: UInt8, Sendable, CaseIterable, Comparable {
  /// Page table: entries map 4 KiB pages.
  case pageTable = 1
  /// Page directory: entries point to page tables or map 2 MiB pages.
  case pageDirectory = 2
  /// Page-directory-pointer table: entries point to page directories or map 1 GiB pages.
  case pageDirectoryPointerTable = 3
  /// The root (PML4 / EPT PML4).
  case pml4 = 4

  /// The root level of a four-level walk.
  @inlinable public static var root: PageTableLevel { .pml4 }

  /// The bit position of this level's index in a virtual address.
  @inlinable @inline(__always)
  public var shift: UInt64 { 12 &+ 9 &* (UInt64(rawValue) &- 1) }

  /// Bytes covered by one entry at this level.
  @inlinable @inline(__always)
  public var bytesPerEntry: UInt64 { 1 << shift }

  /// The level below, or `nil` for the page-table level.
  @inlinable @inline(__always)
  public var child: PageTableLevel? { PageTableLevel(rawValue: rawValue &- 1) }

  /// The level above, or `nil` for the root.
  @inlinable @inline(__always)
  public var parent: PageTableLevel? { PageTableLevel(rawValue: rawValue &+ 1) }

  /// The leaf size an entry at this level maps, where this level may hold leaves.
  @inlinable
  public var leafSize: PageSize? { PageSize(leafLevel: self) }

  /// Orders levels by number: the page table (1) is the lowest, the root (4) the highest.
  @inlinable
  public static func < (a: PageTableLevel, b: PageTableLevel) -> Bool { a.rawValue < b.rawValue }
}

/// An index into a 512-entry page-table page: always in `0 ..< 512`.
@frozen
public struct TableIndex: Hashable, Comparable, Sendable {
  /// The index value, `0 ..< 512`.
  public let rawValue: UInt16

  /// The number of entries in a page-table page.
  @inlinable public static var count: Int { 512 }

  @inlinable @inline(__always)
  init(unchecked rawValue: UInt16) { self.rawValue = rawValue }

  /// Creates an index, or returns `nil` outside `0 ..< 512`.
  @inlinable
  public init?(exactly value: Int) {
    guard value >= 0, value < Self.count else { return nil }
    self.rawValue = UInt16(value)
  }

  /// Creates an index.
  ///
  /// - Precondition: `0 <= value < 512`.
  @inlinable
  public init(_ value: Int) {
    precondition(value >= 0 && value < Self.count, "TableIndex: outside 0..<512")
    self.rawValue = UInt16(value)
  }

  /// The index as an `Int`, for pointer arithmetic.
  @inlinable @inline(__always)
  public var value: Int { Int(rawValue) }

  /// Orders indices by value.
  @inlinable
  public static func < (a: TableIndex, b: TableIndex) -> Bool { a.rawValue < b.rawValue }
}

/// The size of a leaf mapping.
@frozen
public enum PageSize: UInt8, Sendable, CaseIterable {
  /// A 4 KiB page, mapped at level 1.
  case size4K = 1
  /// A 2 MiB page, mapped at level 2 (PS / EPT large bit).
  case size2M = 2
  /// A 1 GiB page, mapped at level 3 (PS / EPT large bit).
  case size1G = 3

  /// The size for a leaf at `level`, or `nil` at the root.
  @inlinable
  public init?(leafLevel level: PageTableLevel) { self.init(rawValue: level.rawValue) }

  /// The level whose entries map pages of this size.
  @inlinable @inline(__always)
  public var leafLevel: PageTableLevel { PageTableLevel(rawValue: rawValue)! }

  /// The size in bytes.
  @inlinable @inline(__always)
  public var bytes: UInt64 { leafLevel.bytesPerEntry }

  /// The mask of the offset bits within a page of this size.
  @inlinable @inline(__always)
  public var offsetMask: UInt64 { bytes &- 1 }

  /// The number of 4 KiB pages a page of this size covers.
  @inlinable @inline(__always)
  public var basePageCount: Int { Int(truncatingIfNeeded: bytes >> 12) }
}
