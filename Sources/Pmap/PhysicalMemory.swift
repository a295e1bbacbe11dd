/// How the pmap reaches physical memory: the hardware seam, part one.
///
/// NetBSD's EPT code walks page tables "via the direct map": physical address `pa` is accessed at
/// virtual address `directMapBase + pa`. A kernel builds a `PhysicalMemory` over its own direct
/// map (or identity map, with a base of zero); tests and tools build one over simulated RAM.
///
/// It also holds the per-frame counters of page-table pages (NetBSD keeps them in the
/// `vm_page` of the page-table page as `wire_count`): one `UInt16` for each 4 KiB frame that the
/// direct map covers, storage that the creator provides and keeps alive.
///
/// `PhysicalMemory` is a value of two pointers and two sizes; copies refer to the same memory.
@frozen
public struct PhysicalMemory: @unchecked Sendable {
  // @unchecked: holds raw pointers. The frames they reach are page-table pages, accessed only
  // atomically (entries) or under the owning pmap's lock (counters).
  /// The virtual address at which physical address zero is mapped.
  public let directMapBase: UnsafeMutableRawPointer
  /// Bytes of physical memory the direct map covers, from physical address zero.
  public let size: UInt64
  /// The CPU's physical-address width (MAXPHYADDR); mapping a frame beyond it is refused.
  public let physicalAddressBits: Int
  /// One past the highest physical address the CPU can map: 2^``physicalAddressBits``.
  public let physicalAddressLimit: UInt64
  @usableFromInline let wireCounts: UnsafeMutablePointer<UInt16>

  /// Creates the seam over a direct map.
  ///
  /// - Parameters:
  ///   - directMapBase: where physical address zero is mapped.
  ///   - size: bytes covered (a multiple of 4 KiB); page-table pages must come from below it.
  ///   - physicalAddressBits: MAXPHYADDR, at most 52 (CPUID leaf 0x80000008).
  ///   - wireCountStorage: `size / 4096` counters, which need not be initialised.
  /// - Precondition: `size` is a multiple of 4 KiB and `physicalAddressBits` is in `32 ... 52`.
  @inlinable
  public init(
    directMapBase: UnsafeMutableRawPointer, size: UInt64, physicalAddressBits: Int = 52,
    wireCountStorage: UnsafeMutablePointer<UInt16>
  ) {
    precondition(size & 0xfff == 0, "PhysicalMemory: size must be a multiple of 4 KiB")
    precondition((32...52).contains(physicalAddressBits), "PhysicalMemory: MAXPHYADDR must be 32...52")
    self.directMapBase = directMapBase
    self.size = size
    self.physicalAddressBits = physicalAddressBits
    self.physicalAddressLimit = 1 << UInt64(physicalAddressBits)
    self.wireCounts = wireCountStorage
  }

  /// The number of 4 KiB frames the direct map covers.
  @inlinable public var frameCount: Int { Int(truncatingIfNeeded: size >> 12) }

  /// Whether the 4 KiB frame at `frame` is covered by the direct map.
  @inlinable @inline(__always)
  public func covers(_ frame: PhysicalAddress) -> Bool { frame.rawValue < size }

  /// The direct-map pointer to physical address `address` (NetBSD's `PMAP_DIRECT_MAP`).
  ///
  /// - Precondition: (unchecked for speed) `address` lies below ``size``.
  @inlinable @inline(__always)
  public func pointer(to address: PhysicalAddress) -> UnsafeMutableRawPointer {
    directMapBase + Int(truncatingIfNeeded: address.rawValue)
  }

  /// The entry `index` of the page-table page at `table`.
  @inlinable @inline(__always)
  public func entry(in table: PhysicalAddress, at index: Int) -> EntryPointer {
    EntryPointer(
      (directMapBase + (Int(truncatingIfNeeded: table.rawValue) &+ (index &<< 3)))
        .assumingMemoryBound(to: UInt64.self))
  }

  /// Fills the 4 KiB frame at `frame` with zeros (NetBSD's `pmap_zero_page`).
  ///
  /// - Precondition: (unchecked) `frame` is 4 KiB aligned and lies below ``size``.
  @inlinable
  public func zeroFrame(_ frame: PhysicalAddress) {
    pointer(to: frame).initializeMemory(as: UInt64.self, repeating: 0, count: 512)
  }

  /// Zeroes the page-table page at `frame` one entry at a time with atomic stores, for a page
  /// that a lock-free walk (``Pmap/extract(_:)``) may still be reading as a table it freed: its
  /// loads then race only with atomic stores, and its generation check discards what it read.
  ///
  /// - Precondition: (unchecked) `frame` is 4 KiB aligned and below ``size``.
  /// - Complexity: 512 stores.
  @inlinable
  public func zeroTable(_ frame: PhysicalAddress) {
    for i in 0..<512 { entry(in: frame, at: i).storeRelaxed(0) }
  }

  /// The wire count of the page-table page at `table` (1 + its live entries, as NetBSD).
  @inlinable @inline(__always)
  public func wireCount(of table: PhysicalAddress) -> Int {
    Int(wireCounts[Int(truncatingIfNeeded: table.rawValue >> 12)])
  }

  @inlinable @inline(__always)
  func setWireCount(of table: PhysicalAddress, to value: Int) {
    wireCounts[Int(truncatingIfNeeded: table.rawValue >> 12)] = UInt16(truncatingIfNeeded: value)
  }

  @inlinable @inline(__always)
  func adjustWireCount(of table: PhysicalAddress, by delta: Int) {
    let i = Int(truncatingIfNeeded: table.rawValue >> 12)
    wireCounts[i] = UInt16(truncatingIfNeeded: Int(wireCounts[i]) &+ delta)
  }
}
