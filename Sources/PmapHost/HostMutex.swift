#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A mutual-exclusion lock around a value, for the host-only targets (test allocators, recording
/// sinks, the MMU model's CPUs): a `pthread_mutex_t`.
///
/// Why not `Synchronization.Mutex`: on Linux its contended path (`_lockSlow`, a priority-
/// inheritance futex) runs inside the uninstrumented standard library, and the kernel hands the
/// lock to the waiter. Thread Sanitizer then sees no happens-before edge between the two critical
/// sections and reports a race on the protected state whenever the lock was contended. Thread
/// Sanitizer intercepts `pthread_mutex_lock` / `unlock`, so it sees every edge of this lock.
///
/// The library modules use neither: their locks are ``SpinLock``s over atomics, which Thread
/// Sanitizer sees because the atomics are compiled into the instrumented code.
public final class HostMutex<Value: ~Copyable>: @unchecked Sendable {
  // @unchecked: `value` is read and written only between pthread_mutex_lock and _unlock.
  private let handle: UnsafeMutablePointer<pthread_mutex_t>
  private var value: Value

  /// A lock that protects `initialValue`.
  public init(_ initialValue: consuming Value) {
    handle = .allocate(capacity: 1)
    handle.initialize(to: pthread_mutex_t())
    let status = pthread_mutex_init(handle, nil)
    precondition(status == 0, "pthread_mutex_init failed with \(status)")
    value = initialValue
  }

  deinit {
    pthread_mutex_destroy(handle)
    handle.deinitialize(count: 1)
    handle.deallocate()
  }

  /// Runs `body` with the lock held and the protected value lent to it.
  ///
  /// - Precondition: the calling thread does not hold the lock (it is not recursive).
  public func withLock<Result, Failure: Error>(
    _ body: (inout Value) throws(Failure) -> Result
  ) throws(Failure) -> Result {
    pthread_mutex_lock(handle)
    defer { pthread_mutex_unlock(handle) }
    return try body(&value)
  }
}
