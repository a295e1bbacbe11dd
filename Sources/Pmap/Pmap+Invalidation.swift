import Synchronization

extension Pmap {
  /// Records that the translation of `linear` (a 48-bit linear address) may be cached and has
  /// changed (`pmap_tlb_shootdown`).
  ///
  /// - Complexity: O(1).
  @inlinable
  func queueInvalidation(linear: UInt64) {
    let s = state
    if s.pointee.pendingAll { return }
    let n = s.pointee.pendingCount
    let va = VirtualAddress(truncating: linear)
    s.pointee.hasPendingWork = true
    if n != 0 && s.pointee.pendingPages[n &- 1] == va { return }  // a freed table under the same page
    if n == InvalidationBatch.capacity {
      s.pointee.pendingAll = true
      return
    }
    s.pointee.pendingPages[n] = va
    s.pointee.pendingCount = n &+ 1
  }

  /// Reports the owed invalidations to the sink, then releases the page-table pages that were
  /// waiting for them (`pmap_tlb_shootnow`, then freeing the PTPs).
  @inlinable
  func flushInvalidations() {
    let s = state
    if s.pointee.pendingAll {
      invalidation.invalidateAll(root: root)
    } else if s.pointee.pendingCount != 0 {
      invalidation.invalidate(
        pages: UnsafeBufferPointer(start: s.pointee.pendingPages, count: s.pointee.pendingCount), root: root)
    }
    s.pointee.pendingAll = false
    s.pointee.pendingCount = 0
    s.pointee.hasPendingWork = false
    let retired = s.pointee.retiredCount
    if retired != 0 {
      s.pointee.retiredCount = 0
      bumpTableGeneration()
      // An unlinked page-table page held no entry: all zero (``releaseTableFrame(_:)``).
      for i in 0..<retired { releaseTableFrame(s.pointee.retiredTables[i]) }
    }
  }

  /// Flushes only if something is owed: the cheap end of every operation.
  @inlinable @inline(__always)
  func finishOperation() {
    if state.pointee.hasPendingWork { flushInvalidations() }
  }

  /// Takes an unlinked page-table page out of service: its address range is invalidated (which
  /// flushes paging-structure caches that may still point at it) before the frame is released.
  /// The pmap's page-table hint (``pageTable(for:)``) is dropped: it may name this table or
  /// one below it. Every unlink of a page-table page goes through here.
  @inlinable
  func retireTable(_ table: PhysicalAddress, linear: UInt64) {
    queueInvalidation(linear: linear)
    // Before the wire count goes: the hinted table may be this one.
    dropPageTableHint()
    memory.setWireCount(of: table, to: 0)
    let s = state
    s.pointee.pageTablePageCount &-= 1
    if s.pointee.retiredCount == InvalidationBatch.retiredCapacity { flushInvalidations() }
    s.pointee.retiredTables[s.pointee.retiredCount] = table
    s.pointee.retiredCount &+= 1
    s.pointee.hasPendingWork = true
  }

  /// Tells lock-free walks that page-table pages are about to be freed (a seqlock's write
  /// side): the bump is ordered after the unlinks (release) and before anything the frames'
  /// next owners write (full fence). Called under the pmap's lock, right before the frames go
  /// back to the allocator.
  @inlinable
  func bumpTableGeneration() {
    let generation = tableGeneration
    generation.pointee.store(generation.pointee.load(ordering: .relaxed) &+ 1, ordering: .releasing)
    atomicMemoryFence(ordering: .sequentiallyConsistent)
  }
}
