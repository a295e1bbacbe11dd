import Glibc
import Pmap

/// Simulated physical memory for host-side tests and tools: one anonymous mapping in which
/// physical address `p` lives at `base + p`, committed lazily by the host kernel (untouched
/// frames cost nothing), plus the per-frame counters a ``PhysicalMemory`` needs.
public final class SimulatedRAM: @unchecked Sendable {
  // @unchecked: owns raw memory; concurrent use follows the pmap's own rules.
  /// The seam the pmaps use.
  public let memory: PhysicalMemory
  /// The size in bytes.
  public let size: UInt64
  private let base: UnsafeMutableRawPointer
  private let counters: UnsafeMutableRawPointer

  /// Reserves `size` bytes of simulated RAM (a multiple of 4 KiB).
  ///
  /// - Precondition: the host can reserve the address space (MAP_NORESERVE).
  public init(size: UInt64, physicalAddressBits: Int = 52) {
    precondition(size > 0 && size & 0xfff == 0, "SimulatedRAM: size must be a positive multiple of 4 KiB")
    HostLocks.install()  // a host process: contended spin locks yield (see HostLocks)
    self.size = size
    base = Self.reserve(Int(size))
    counters = Self.reserve(Int(size >> 12) * 2)
    memory = PhysicalMemory(
      directMapBase: base, size: size, physicalAddressBits: physicalAddressBits,
      wireCountStorage: counters.assumingMemoryBound(to: UInt16.self))
  }

  deinit {
    munmap(base, Int(size))
    munmap(counters, Int(size >> 12) * 2)
  }

  private static func reserve(_ bytes: Int) -> UnsafeMutableRawPointer {
    let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    guard let p, p != MAP_FAILED else { fatalError("SimulatedRAM: mmap of \(bytes) bytes failed") }
    return p
  }

  /// Reads the 64-bit word at physical address `address`.
  public func load(at address: PhysicalAddress) -> UInt64 {
    precondition(address.rawValue + 8 <= size)
    return memory.pointer(to: address).load(as: UInt64.self)
  }

  /// Writes the 64-bit word at physical address `address`.
  public func store(_ value: UInt64, at address: PhysicalAddress) {
    precondition(address.rawValue + 8 <= size)
    memory.pointer(to: address).storeBytes(of: value, as: UInt64.self)
  }

  /// A copy of the 4 KiB frame at `frame`.
  public func frameContents(_ frame: PhysicalAddress) -> [UInt64] {
    let p = memory.pointer(to: frame).assumingMemoryBound(to: UInt64.self)
    return Array(UnsafeBufferPointer(start: p, count: 512))
  }
}

/// Host-side settings of the library's spin locks.
public enum HostLocks {
  /// Makes a waiter on a contended ``SpinLock`` yield its time slice (`sched_yield`) after
  /// spinning a while, so that a preempted lock holder can run: what a user-space host wants
  /// (a kernel would keep spinning). Idempotent.
  public static func install() { _ = installed }
}

/// Runs the installation once, under the thread-safe lazy initialisation of globals
/// (`swift_once`): several simulated RAMs are created concurrently by parallel tests, and
/// unsynchronised writes of the hook were a data race (Thread Sanitizer).
private let installed: Void = { SpinLockBackoff.yield = { _ = sched_yield() } }()
