extension Pmap {
  /// Clears the wired attribute of the mapping at `va` (`pmap_unwire`).
  ///
  /// - Throws: ``UnwireError/notMapped`` when nothing maps `va`; ``UnwireError/notWired`` when
  ///   the mapping is not wired. Nothing changed then.
  /// - Complexity: O(1).
  @inlinable
  public func unwire(_ va: VirtualAddress) throws(UnwireError) {
    lock.lock()
    defer { lock.unlock() }
    checkAlive()
    guard let leaf = lookupLeaf(va) else { throw .notMapped }
    let old = leaf.entry.clearBits(Ops.wiredBit)
    guard old & Ops.wiredBit != 0 else { throw .notWired }
    state.pointee.wiredCount &-= Int(truncatingIfNeeded: leaf.level.bytesPerEntry >> 12)
  }
}
