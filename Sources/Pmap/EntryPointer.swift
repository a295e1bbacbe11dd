import Synchronization

/// A pointer to one 64-bit page-table entry, with the only operations the pmap uses on entries.
///
/// This file is the single place where entries are read and written. Every access is atomic:
/// the MMU sets accessed and dirty bits in present entries with locked read-modify-write cycles
/// at any time, so a plain `load; modify; store` could lose a bit it set in between. Bits that
/// may change under us are therefore only changed with ``exchange(_:)`` or
/// ``compareExchange(expected:desired:)``; a plain ``store(_:)`` is used only to fill an entry
/// that is not present (the MMU never writes those). On x86-64 a relaxed load or store compiles
/// to an ordinary `mov`, exchange to `xchg` and compare-exchange to `lock cmpxchg`.
@frozen
public struct EntryPointer: Hashable, @unchecked Sendable {
  // @unchecked: a raw address; the entry it names is only ever accessed atomically.
  /// The address of the entry.
  public let address: UnsafeMutablePointer<UInt64>

  /// Names the entry at `address`.
  ///
  /// - Precondition: `address` is 8-byte aligned and stays valid while the pointer is used (a
  ///   page-table page reached through ``PhysicalMemory/entry(in:at:)``).
  @inlinable @inline(__always)
  public init(_ address: UnsafeMutablePointer<UInt64>) { self.address = address }

  @inlinable @inline(__always)
  var atomic: UnsafeMutablePointer<Atomic<UInt64>> {
    UnsafeMutableRawPointer(address).assumingMemoryBound(to: Atomic<UInt64>.self)
  }

  /// Reads the entry.
  @inlinable @inline(__always)
  public func load() -> UInt64 { atomic.pointee.load(ordering: .relaxed) }

  /// Reads the entry with acquire ordering: a lock-free walk that finds a table linked sees the
  /// table's contents as they were when it was linked (a plain `mov` on x86-64).
  @inlinable @inline(__always)
  public func loadAcquiring() -> UInt64 { atomic.pointee.load(ordering: .acquiring) }

  /// Writes an entry that the hardware cannot be updating (a non-present one, or a page-table
  /// page not yet reachable). Release ordering publishes a zeroed child table before its link.
  @inlinable @inline(__always)
  public func store(_ value: UInt64) { atomic.pointee.store(value, ordering: .releasing) }

  /// Writes the entry with no ordering: for clearing a page-table page that is not linked.
  @inlinable @inline(__always)
  public func storeRelaxed(_ value: UInt64) { atomic.pointee.store(value, ordering: .relaxed) }

  /// Replaces the entry and returns the final old value, including any A/D bits the hardware
  /// set up to the instant of the swap (NetBSD's `pmap_pte_testset`).
  @inlinable @inline(__always)
  @discardableResult
  public func exchange(_ value: UInt64) -> UInt64 {
    atomic.pointee.exchange(value, ordering: .acquiringAndReleasing)
  }

  /// Replaces the entry only if it still holds `expected` (NetBSD's `pmap_pte_cas`).
  /// Returns whether it did, and the value found.
  @inlinable @inline(__always)
  public func compareExchange(expected: UInt64, desired: UInt64) -> (exchanged: Bool, original: UInt64) {
    atomic.pointee.compareExchange(expected: expected, desired: desired, ordering: .acquiringAndReleasing)
  }

  /// Atomically applies `transform` to the entry with a compare-and-swap loop, and returns the
  /// value it replaced. `transform` may be called more than once and must be pure.
  @inlinable @inline(__always)
  @discardableResult
  public func update(_ transform: (UInt64) -> UInt64) -> UInt64 {
    update(startingWith: load(), transform)
  }

  /// ``update(_:)`` starting from `guess`, a value of the entry read earlier (saves a load when
  /// the caller has one; a stale guess only costs one failed compare-and-swap).
  @inlinable @inline(__always)
  @discardableResult
  public func update(startingWith guess: UInt64, _ transform: (UInt64) -> UInt64) -> UInt64 {
    var old = guess
    while true {
      let new = transform(old)
      if new == old { return old }
      let (done, seen) = compareExchange(expected: old, desired: new)
      if done { return old }
      old = seen
    }
  }

  /// Atomically clears `bits` and returns the old value (`lock and` / CAS loop).
  @inlinable @inline(__always)
  @discardableResult
  public func clearBits(_ bits: UInt64) -> UInt64 {
    atomic.pointee.bitwiseAnd(~bits, ordering: .acquiringAndReleasing).oldValue
  }

  /// Atomically sets `bits` and returns the old value (what the MMU does to A and D).
  @inlinable @inline(__always)
  @discardableResult
  public func setBits(_ bits: UInt64) -> UInt64 {
    atomic.pointee.bitwiseOr(bits, ordering: .acquiringAndReleasing).oldValue
  }
}
