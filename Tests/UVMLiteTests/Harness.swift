import Pmap
import PmapEPT
import PmapHost
import PmapNative
import Testing
import UVMLite
import UVMLiteHost

/// A small host for UVMLite tests: simulated RAM with `tableFrames` frames for page tables (and
/// pv pool) and `frames` managed data frames, a frame pool, a memory swap store, a UVM and a
/// software MMU.
final class Harness {
  let ram: SimulatedRAM
  let tables: TestFrameAllocator
  let sink = RecordingInvalidationSink(records: false)
  let pages: PageDatabase
  let pool: FramePool
  let store: MemorySwapStore
  let uvm: UVM
  let mmu: SimulatedMMU

  init(frames: Int = 64, swapSlots: Int = 512, low: Int = 4, high: Int = 8, tableFrames: Int = 1024) {
    let dataBase = UInt64(tableFrames + 1) << 12
    ram = SimulatedRAM(size: dataBase + UInt64(frames) << 12)
    tables = TestFrameAllocator(
      memory: ram.memory, frames: PhysicalAddress(4096), to: PhysicalAddress(dataBase), backing: ram)
    pages = PageDatabase(memory: ram.memory, base: PhysicalAddress(dataBase), pageCount: frames, allocator: tables)
    pool = FramePool(pages: pages, lowWatermark: low, highWatermark: high)
    store = MemorySwapStore(slotCount: swapSlots)
    uvm = UVM(pool: pool, swap: store, pageTableAllocator: tables, backing: ram)
    mmu = SimulatedMMU(uvm: uvm)
  }

  func guest(pages n: Int, accessedDirty: Bool = true, protection: Protection = .all) throws -> GuestMemory {
    try uvm.makeGuest(
      byteCount: UInt64(n) << 12, invalidation: sink, protection: protection, hardwareAccessedDirty: accessedDirty)
  }

  /// A native pmap for the VMM, tracked in the pool's pages.
  func hostPmap() throws -> NativePmap {
    try NativePmap(memory: ram.memory, allocator: tables, invalidation: sink, pages: pages)
  }

  /// Every checker: UVM (queues, ownership, counters, slots), each pmap, the pv-lists.
  func checkInvariants(_ where: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    let v = uvm.checkInvariants()
    #expect(v == nil, "\(`where`): \(String(describing: v))", sourceLocation: sourceLocation)
  }

  /// The value page `p`, word `w`, version `k` of guest `g` must hold.
  static func value(guest g: Int, page p: Int, word w: Int, version k: Int) -> UInt64 {
    var x = UInt64(g) << 56 ^ UInt64(p) << 20 ^ UInt64(w) << 8 ^ UInt64(k) &* 0x9E37_79B9_7F4A_7C15
    x ^= x >> 29
    return x | 1  // never zero: a lost page (reads zero) never matches
  }

  /// Writes all 512 words of page `p` as the guest.
  func fillPage(_ g: GuestMemory, _ p: Int, version k: Int) throws {
    for w in 0..<512 {
      try mmu.guestStore(g, UInt64(p) << 12 | UInt64(w) << 3, Self.value(guest: g.id, page: p, word: w, version: k))
    }
  }

  /// Whether every word of page `p` holds version `k`, read as the guest.
  func pageHolds(_ g: GuestMemory, _ p: Int, version k: Int) throws -> Bool {
    for w in 0..<512 {
      let v = try mmu.guestLoad(g, UInt64(p) << 12 | UInt64(w) << 3)
      if v != Self.value(guest: g.id, page: p, word: w, version: k) { return false }
    }
    return true
  }
}

/// The tests' name for the software MMU.
typealias SimulatedMMU = SoftwareMMU
