/// Why a swap store could not read or write a page.
public enum SwapIOError: Error, Equatable, Sendable {
  /// The slot is beyond the store's capacity.
  case slotOutOfRange
  /// The device failed (a file store: `pread`/`pwrite` returned an error or a short count); the
  /// errno or other code the store reports.
  case deviceError(Int32)
}

/// Backing storage for evicted pages: numbered 4 KiB slots (NetBSD's swap device behind
/// `uvm_swap_get` / `uvm_swap_put`). The ``UVM`` allocates slots itself (``SwapSpace``); a store
/// only moves bytes.
///
/// Class-bound so that `any SwapStore` works in Embedded Swift. Implementations: ``MemorySwapStore``
/// here, a file-backed store in the host-only `UVMLiteHost` module.
public protocol SwapStore: AnyObject {
  /// The number of slots: slot numbers are `0 ..< slotCount`.
  var slotCount: Int { get }
  /// Writes the 4096 bytes at `source` to `slot`.
  func writePage(_ source: UnsafeRawPointer, toSlot slot: Int) throws(SwapIOError)
  /// Reads `slot` into the 4096 bytes at `destination`.
  func readPage(fromSlot slot: Int, into destination: UnsafeMutableRawPointer) throws(SwapIOError)
}

/// A swap store in host memory: `slotCount` × 4 KiB allocated up front. For tests, the demo's
/// default and small kernels. It can be told to fail, to test the error paths.
public final class MemorySwapStore: SwapStore {
  /// The number of slots.
  public let slotCount: Int
  @usableFromInline let storage: UnsafeMutableRawPointer
  /// When set, every write fails with this error (reads still work).
  public var failWrites: SwapIOError?
  /// When set, every read fails with this error.
  public var failReads: SwapIOError?
  /// Pages written so far.
  public private(set) var writes = 0
  /// Pages read so far.
  public private(set) var reads = 0

  /// Creates a store of `slotCount` slots.
  ///
  /// - Precondition: `slotCount >= 0`.
  public init(slotCount: Int) {
    precondition(slotCount >= 0, "MemorySwapStore: negative size")
    self.slotCount = slotCount
    storage = .allocate(byteCount: max(1, slotCount) << 12, alignment: 4096)
  }

  deinit { storage.deallocate() }

  /// Copies the 4096 bytes at `source` into `slot`.
  ///
  /// - Throws: ``SwapIOError/slotOutOfRange``, or ``failWrites`` when set.
  public func writePage(_ source: UnsafeRawPointer, toSlot slot: Int) throws(SwapIOError) {
    guard slot >= 0, slot < slotCount else { throw .slotOutOfRange }
    if let failWrites { throw failWrites }
    (storage + slot << 12).copyMemory(from: source, byteCount: 4096)
    writes += 1
  }

  /// Copies `slot` into the 4096 bytes at `destination`.
  ///
  /// - Throws: ``SwapIOError/slotOutOfRange``, or ``failReads`` when set.
  public func readPage(fromSlot slot: Int, into destination: UnsafeMutableRawPointer) throws(SwapIOError) {
    guard slot >= 0, slot < slotCount else { throw .slotOutOfRange }
    if let failReads { throw failReads }
    destination.copyMemory(from: storage + slot << 12, byteCount: 4096)
    reads += 1
  }
}

/// The slot map of a swap store (NetBSD's `swapmap` extent): which slots hold a page. A LIFO
/// stack of free slot numbers; O(1) allocate and free, nothing allocated after creation.
public final class SwapSpace {
  /// The store the slots belong to.
  public let store: any SwapStore
  @usableFromInline let free: UnsafeMutablePointer<Int32>
  @usableFromInline var freeTop: Int
  /// Slot numbers in use.
  public var slotsInUse: Int { store.slotCount - freeTop }
  /// Slots in total.
  public var slotCount: Int { store.slotCount }
  /// Whether every slot is in use.
  @inlinable public var isFull: Bool { freeTop == 0 }

  /// Creates the map of `store`, every slot free.
  public init(store: any SwapStore) {
    self.store = store
    let n = store.slotCount
    precondition(n < Int(Int32.max), "SwapSpace: too many slots")
    free = .allocate(capacity: max(1, n))
    for i in 0..<n { free[i] = Int32(n - 1 - i) }
    freeTop = n
  }

  deinit { free.deallocate() }

  /// A free slot, or `nil` when the store is full.
  @inlinable
  public func allocate() -> Int? {
    guard freeTop > 0 else { return nil }
    freeTop -= 1
    return Int(free[freeTop])
  }

  /// Gives back `slot`.
  ///
  /// - Precondition: the slot was allocated (kernel misuse traps).
  @inlinable
  public func release(_ slot: Int) {
    precondition(slot >= 0 && slot < store.slotCount && freeTop < store.slotCount, "SwapSpace: bad release")
    free[freeTop] = Int32(slot)
    freeTop += 1
  }
}
