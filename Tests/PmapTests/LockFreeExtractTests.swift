import Foundation
import Pmap
import PmapHost
import Synchronization
import Testing

// extract and translation(of:) take no lock: they walk while other threads enter and remove,
// and start over when the table generation says a table they went through may have been freed.
// Here a writer thread keeps mapping and unmapping one page in each of four 512 GiB regions,
// so every round frees the region's three page-table pages and the next round of another region
// reuses them at once (a LIFO allocator). The four addresses share their indices below the
// PML4, so a walk that kept a freed table's address would read another region's entries and
// answer that region's frame. Readers must only ever see "nothing mapped" or the right frame.

/// A frame allocator that never writes into the frames it holds (a free list threaded through
/// freed frames would race with a walk still reading them; StackFrameAllocator does that) and
/// hands back the most recently freed frame first.
private final class LIFOFrames: FrameAllocator, Sendable {
  private let state: HostMutex<(free: [PhysicalAddress], next: UInt64, end: UInt64)>
  init(from start: UInt64, to end: UInt64) { state = HostMutex((free: [], next: start, end: end)) }
  func allocateFrame() -> PhysicalAddress? {
    state.withLock { s in
      if let frame = s.free.popLast() { return frame }
      guard s.next < s.end else { return nil }
      defer { s.next += 4096 }
      return PhysicalAddress(s.next)
    }
  }
  func releaseFrame(_ frame: PhysicalAddress) { state.withLock { $0.free.append(frame) } }
}

@Suite("Lock-free extract")
struct LockFreeExtractTests {
  @Test("a lock-free extract never answers through a freed and reused table", arguments: Format.allCases)
  func extractDuringTableChurn(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let ram = SimulatedRAM(size: 64 << 20)
      let frames = LIFOFrames(from: 4096, to: 16 << 20)
      let pmap = try Pmap<F>(memory: ram.memory, allocator: frames, invalidation: CountingInvalidationSink())
      let regions = 4
      let addresses = (0..<regions).map { address(pml4: UInt64($0) + 1, pdpt: 5, pd: 7, pt: 9) }
      let frameOf = (0..<regions).map { PhysicalAddress(UInt64(32 + $0) << 20) }
      let rounds = Int(ProcessInfo.processInfo.environment["PMAP_LOCKFREE_ROUNDS"] ?? "") ?? 150_000
      let done = Atomic<Bool>(false)
      let wrong = Atomic<Int>(0)
      let found = Atomic<Int>(0)
      let started = Atomic<Int>(0)
      let readers = 1
      let finished = Atomic<Int>(0)
      for r in 0..<readers {
        Thread.detachNewThread {
          started.add(1, ordering: .relaxed)
          var i = r
          var hits = 0
          while !done.load(ordering: .relaxed) {
            let k = i % regions
            if let pa = pmap.extract(addresses[k]) {
              if pa == frameOf[k] { hits += 1 } else { wrong.add(1, ordering: .relaxed) }
            }
            if let t = pmap.translation(of: addresses[k]), t.physicalAddress != frameOf[k] {
              wrong.add(1, ordering: .relaxed)
            }
            i &+= 1
          }
          found.add(hits, ordering: .relaxed)
          finished.add(1, ordering: .releasing)
        }
      }
      while started.load(ordering: .relaxed) < readers { sched_yield() }
      for round in 0..<rounds {
        let k = round % regions
        try pmap.enter(addresses[k], frameOf[k], protection: .readWrite)
        try pmap.remove(VirtualRange(page: addresses[k]))
      }
      done.store(true, ordering: .relaxed)
      while finished.load(ordering: .acquiring) < readers { sched_yield() }
      #expect(wrong.load(ordering: .relaxed) == 0)
      // The readers did see mappings (the check is not vacuous) and every table went back.
      #expect(found.load(ordering: .relaxed) > 0)
      #expect(pmap.statistics.pageTablePages == 1)
      pmap.destroy()
    }
    try check(format.ops)
  }
}
