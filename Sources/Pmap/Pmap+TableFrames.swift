extension PhysicalMemory {
  /// A frame for a page-table page, all zero: from `allocator`'s
  /// ``FrameAllocator/allocatePageTableFrame()``, zeroed here unless the allocator knows it is
  /// zero already (a page table a pmap freed empty). `nil` when the allocator has none.
  ///
  /// - Precondition: the frame the allocator returns lies inside the direct map (checked).
  @inlinable
  func allocateTableFrame(from allocator: any FrameAllocator) -> PhysicalAddress? {
    guard let (frame, isZeroed) = allocator.allocatePageTableFrame() else { return nil }
    precondition(covers(frame), "Pmap: the allocator returned a frame outside the direct map")
    if !isZeroed { zeroTable(frame) }
    return frame
  }

  /// Gives the frame of a page-table page that holds no entry any more back to `allocator` as
  /// zeroed (``FrameAllocator/releaseZeroedFrame(_:)``): every entry a pmap removes is cleared
  /// to 0, so an empty table is all zero (checked in debug builds).
  @inlinable
  func releaseTableFrame(_ frame: PhysicalAddress, to allocator: any FrameAllocator) {
    assert(
      UnsafeBufferPointer(start: pointer(to: frame).assumingMemoryBound(to: UInt64.self), count: 512)
        .allSatisfy { $0 == 0 },
      "Pmap: a page-table page given back as zeroed holds an entry")
    allocator.releaseZeroedFrame(frame)
  }
}

extension Pmap {
  /// ``PhysicalMemory/allocateTableFrame(from:)`` with this pmap's allocator.
  @inlinable
  func allocateTableFrame() -> PhysicalAddress? { memory.allocateTableFrame(from: allocator) }

  /// ``PhysicalMemory/releaseTableFrame(_:to:)`` with this pmap's allocator.
  @inlinable
  func releaseTableFrame(_ frame: PhysicalAddress) { memory.releaseTableFrame(frame, to: allocator) }
}
