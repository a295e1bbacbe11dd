import Synchronization

/// A test-and-test-and-set spin lock over one 32-bit word, usable on bare metal (Embedded Swift
/// 6.3 has no `Mutex`): the lock every pmap, every pv-list stripe and the pv-node pool use.
///
/// Acquiring is one `lock cmpxchg` when the lock is free; releasing is a plain store with release
/// ordering (a `mov` on x86-64). A waiter spins on relaxed loads, with exponential backoff, and
/// after a while calls ``SpinLockBackoff/yield`` if the host installed one (a kernel leaves it
/// `nil` and just spins; a user-space host installs `sched_yield` so that a waiter does not burn
/// its time slice while the holder is preempted).
///
/// The word lives wherever its owner keeps it (a pmap's state, a stripe array); `SpinLock` is a
/// pointer to it, freely copied. It is not recursive.
///
/// An *elided* lock (``Locking/callerSerialized``) does nothing: what a spin lock compiles to in
/// a uniprocessor kernel.
@frozen
public struct SpinLock: @unchecked Sendable {
  // @unchecked: a raw address of a word that is only ever accessed atomically.
  @usableFromInline let word: UnsafeMutablePointer<Atomic<UInt32>>
  @usableFromInline let isElided: Bool

  /// The lock whose word is at `word` (which must stay allocated, zero = unlocked); with
  /// `elided`, every operation is a no-op.
  @inlinable @inline(__always)
  public init(word: UnsafeMutableRawPointer, elided: Bool = false) {
    self.word = word.assumingMemoryBound(to: Atomic<UInt32>.self)
    self.isElided = elided
  }

  /// Acquires the lock, spinning while another thread holds it.
  ///
  /// - Complexity: one atomic compare-and-swap when uncontended.
  @inlinable @inline(__always)
  public func lock() {
    if isElided { return }
    if word.pointee.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged { return }
    lockContended()
  }

  /// Acquires the lock if it is free; returns whether it did. Never waits.
  @inlinable @inline(__always)
  public func tryLock() -> Bool {
    if isElided { return true }
    return word.pointee.load(ordering: .relaxed) == 0
      && word.pointee.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged
  }

  /// Releases the lock.
  ///
  /// - Precondition: the caller holds it.
  @inlinable @inline(__always)
  public func unlock() {
    if isElided { return }
    word.pointee.store(0, ordering: .releasing)
  }

  /// Releases the lock with the store whether or not it is elided: an elided lock's word is
  /// never set, so the store writes the 0 it holds. After the critical section only the
  /// word's address is then needed, not the mode: the lock of `enter`, whose inlined body
  /// leaves a caller's loop few registers.
  ///
  /// - Precondition: the caller holds the lock, or the lock is elided.
  @inlinable @inline(__always)
  public func unlockStoringAlways() {
    word.pointee.store(0, ordering: .releasing)
  }

  /// Whether some thread holds the lock (a snapshot, for assertions).
  @inlinable
  public var isLocked: Bool { word.pointee.load(ordering: .relaxed) != 0 }

  @inlinable @inline(never)
  func lockContended() {
    while true {
      var spins = 0
      // Spin on plain loads (the line stays shared) until the lock looks free.
      while word.pointee.load(ordering: .relaxed) != 0 {
        spins &+= 1
        if spins == 4096, let yield = SpinLockBackoff.yield {
          yield()
          spins = 0
        }
      }
      if word.pointee.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged { return }
    }
  }
}

/// Whether a pmap and its page database lock, or rely on their caller to serialise.
public enum Locking: Sendable, Hashable {
  /// Every operation takes spin locks (the default): pmaps and page operations may be used from
  /// any number of CPUs at once.
  case spinLocks
  /// No locks are taken: the caller guarantees that no two operations on a pmap, or on the page
  /// database and any pmap registered with it, ever run at once (a uniprocessor kernel with
  /// interrupts masked around pmap calls, or a pmap only one thread uses). The MMU may still
  /// update A/D bits concurrently: entries stay atomic.
  case callerSerialized
}

/// How waiters on a ``SpinLock`` back off.
public enum SpinLockBackoff {
  /// Called by a waiter that has spun for a long time, if set: a user-space host sets it to
  /// `sched_yield` (see `PmapHost`); a kernel leaves it `nil`. Set it once, before any lock is
  /// contended.
  nonisolated(unsafe) public static var yield: (@convention(c) () -> Void)? = nil
}

/// Memory for spin-lock words: `count` cache lines of 64 bytes, zeroed, each starting with a
/// lock word (so that two locks never share a line).
@usableFromInline
struct LockLines {
  @usableFromInline let base: UnsafeMutableRawPointer
  @usableFromInline let count: Int

  @usableFromInline init(count: Int) {
    self.count = count
    base = UnsafeMutableRawPointer.allocate(byteCount: count * 64, alignment: 64)
    base.initializeMemory(as: UInt64.self, repeating: 0, count: count * 8)
  }

  @usableFromInline func deallocate() { base.deallocate() }

  /// The lock of line `i`.
  @inlinable @inline(__always)
  func lock(_ i: Int, elided: Bool = false) -> SpinLock { SpinLock(word: base + i &* 64, elided: elided) }
}
