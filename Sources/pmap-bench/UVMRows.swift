// UVMLite rows (`pmap-bench --formats uvm`): the zero-fill fault against its comparator, and the
// pagedaemon's scan. Each run builds its own frame pool over the first N + 64 data frames of the
// machine (the other rows never touch data frames; these do, so N is capped at 65536 = 256 MiB).
//
// * zero-fill fault: `UVM.fault` on N never-touched pages of a fresh guest: take a free frame,
//   zero it, enter it into the guest's EPT (pv-tracked, page tables allocated as needed), queue it.
// * memset 4 KiB + enter: the comparator the issue names: zero the same frame with the direct
//   map's 4 KiB fill, then one `enter` into a fresh pv-tracked EPT pmap. (The C reference has no
//   fault row; comparing with Swift's own enter keeps the two sides on the same tables and pv
//   code, so the ratio measures only what the fault path adds.)
// * referencedCount, 1 map: the page operation every visit of either hand starts with, on each of
//   the N pages (each referenced once by its fault), for scale.
// * pagedaemon scan, clean: N resident, never-written pages; one run with the free target at every
//   frame, so each page is visited by both hands until evicted (dropped: no swap I/O). ns per page
//   scanned (visits, not pages).
// * pagedaemon page-out, dirty (information, includes the 4 KiB copy to an in-memory swap store): the
//   same with every page written once, ns per page evicted.
//
// These rows are timed with the thread's CPU clock (CLOCK_THREAD_CPUTIME_ID), not the wall clock:
// on these shared 2-vCPU machines a neighbour's load preempts the run and inflates wall-clock
// figures by 2-4x; CPU time leaves out the time the thread was not running (it still includes the
// cache damage a neighbour does).
import Glibc
import Pmap
import PmapEPT
import PmapHost
import UVMLite

enum UVMRow: Int, CaseIterable {
  case zeroFill, memsetEnter, referencedCount, scanClean, pageOutDirty
  var name: String {
    switch self {
    case .zeroFill: "zero-fill fault"
    case .memsetEnter: "memset 4K + enter"
    case .referencedCount: "referencedCount, 1 map"
    case .scanClean: "pagedaemon scan/page*"
    case .pageOutDirty: "page-out dirty (memswap)"
    }
  }
}

/// Builds a UVM over the first `frames` data frames of `m`, and one guest of `pages` pages.
func makeUVM(on m: Machine, frames: Int, high: Int, pages: Int, swap: MemorySwapStore) -> (UVM, GuestMemory) {
  let db = PageDatabase(
    memory: m.ram.memory, base: PhysicalAddress(dataBase), pageCount: frames, allocator: m.pageTableFrames)
  let pool = FramePool(pages: db, lowWatermark: 1, highWatermark: high)
  let uvm = UVM(pool: pool, swap: swap, pageTableAllocator: m.pageTableFrames)
  guard let g = try? uvm.makeGuest(byteCount: UInt64(pages) << 12, invalidation: m.sink) else { fail("uvm guest") }
  return (uvm, g)
}

/// The calling thread's CPU time in nanoseconds.
@inline(never)
func cpuNow() -> Double {
  var ts = timespec()
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
  return Double(ts.tv_sec) * 1e9 + Double(ts.tv_nsec)
}

@inline(never)
func runUVMOnce(on m: Machine, n: Int, swap: MemorySwapStore, into results: inout [Double]) {
  // Zero-fill faults: no pagedaemon (frames to spare).
  do {
    let (uvm, g) = makeUVM(on: m, frames: n + 64, high: 2, pages: n, swap: swap)
    let t = cpuNow()
    for i in 0..<n {
      do {
        guard try uvm.fault(g, at: GuestPhysicalAddress(page: i), access: .write) == .resolved(.zeroFill) else {
          fail("zero-fill kind")
        }
      } catch { fail("zero-fill fault") }
    }
    results[UVMRow.zeroFill.rawValue] = (cpuNow() - t) / Double(n)
    if g.residentPages != n || uvm.statistics.pagedaemonRuns != 0 { fail("zero-fill count") }
    uvm.destroyGuest(g)
  }
  // The comparator: the same frames, zeroed, entered into a fresh pv-tracked EPT pmap.
  do {
    let db = PageDatabase(
      memory: m.ram.memory, base: PhysicalAddress(dataBase), pageCount: n + 64, allocator: m.pageTableFrames)
    guard let ept = try? EPTPmap(memory: m.ram.memory, allocator: m.pageTableFrames, invalidation: m.sink, pages: db)
    else { fail("ept") }
    let memory = m.ram.memory
    let t = cpuNow()
    for i in 0..<n {
      let frame = PhysicalAddress(dataBase + UInt64(i) << 12)
      memory.zeroFrame(frame)
      do {
        try ept.enter(VirtualAddress(UInt64(i) << 12), frame, protection: .all, access: .write, options: .canFail)
      } catch {
        fail("enter")
      }
    }
    results[UVMRow.memsetEnter.rawValue] = (cpuNow() - t) / Double(n)
    ept.destroy()
  }
  // The pagedaemon over clean pages (read once: zero-filled, never modified, so dropped).
  do {
    let (uvm, g) = makeUVM(on: m, frames: n, high: n, pages: n, swap: swap)
    for i in 0..<n { _ = try? uvm.fault(g, at: GuestPhysicalAddress(page: i), access: .read) }
    // The page operation each visit starts with, alone (it clears A: the scan below then sees the
    // pages unreferenced from its first visit, as a cold working set would be).
    var referenced = 0
    var t = cpuNow()
    for r in 0..<n { referenced &+= uvm.pages.referencedCount(uvm.pool.frame(r)) }
    results[UVMRow.referencedCount.rawValue] = (cpuNow() - t) / Double(n)
    if referenced != n { fail("referencedCount: \(referenced) of \(n)") }
    t = cpuNow()
    let run = uvm.runPagedaemon()
    let elapsed = cpuNow() - t
    if run.freed != n || run.pagedOut != 0 { fail("scan clean: freed \(run.freed) of \(n)") }
    results[UVMRow.scanClean.rawValue] = elapsed / Double(run.scanned)
    uvm.destroyGuest(g)
  }
  // The pagedaemon over dirty pages: every page written to an in-memory swap store.
  do {
    let (uvm, g) = makeUVM(on: m, frames: n, high: n, pages: n, swap: swap)
    for i in 0..<n { _ = try? uvm.fault(g, at: GuestPhysicalAddress(page: i), access: .write) }
    let t = cpuNow()
    let run = uvm.runPagedaemon()
    let elapsed = cpuNow() - t
    if run.pagedOut != n { fail("page-out dirty: \(run.pagedOut) of \(n)") }
    results[UVMRow.pageOutDirty.rawValue] = elapsed / Double(run.freed)
    uvm.destroyGuest(g)
  }
}

/// Measures and prints the UVMLite rows (table, or TSV with format "uvm").
func runUVMRows(on m: Machine) {
  // Capped at 65536 pages (see the top of this file), each size once.
  var sizes: [Int] = []
  for n in m.sizes.map({ min($0, 65536) }) where !sizes.contains(n) { sizes.append(n) }
  // One swap store for every run, so its memory is committed once (by the warm-up), not timed.
  let swap = MemorySwapStore(slotCount: sizes.max() ?? 0)
  var table = [[Cell]](repeating: [Cell](repeating: Cell(), count: sizes.count), count: UVMRow.allCases.count)
  // The fault's ratio to its comparator, per repetition (both measured back to back, so a
  // neighbour's load hits both alike), and its median over the repetitions.
  var medianRatio = [Double](repeating: 0, count: sizes.count)
  for (k, n) in sizes.enumerated() {
    var samples = [[Double]](repeating: [], count: UVMRow.allCases.count)
    var results = [Double](repeating: 0, count: UVMRow.allCases.count)
    var ratios: [Double] = []
    runUVMOnce(on: m, n: n, swap: swap, into: &results)  // warm-up: commits the frames and the swap store
    // Each sample averages enough runs to cover 65536 pages: a run over 4096 pages lasts half a
    // millisecond, which one preemption or cache flush by a neighbour skews.
    let inner = max(1, 65536 / n)
    for _ in 0..<repetitions {
      var sums = [Double](repeating: 0, count: UVMRow.allCases.count)
      for _ in 0..<inner {
        runUVMOnce(on: m, n: n, swap: swap, into: &results)
        for r in UVMRow.allCases { sums[r.rawValue] += results[r.rawValue] / Double(inner) }
      }
      for r in UVMRow.allCases { samples[r.rawValue].append(sums[r.rawValue]) }
      ratios.append(sums[UVMRow.zeroFill.rawValue] / sums[UVMRow.memsetEnter.rawValue])
    }
    for r in UVMRow.allCases {
      let s = samples[r.rawValue].sorted()
      table[r.rawValue][k] = Cell(median: s[repetitions / 2], min: s[0], max: s[repetitions - 1])
    }
    medianRatio[k] = ratios.sorted()[repetitions / 2]
  }
  if m.tsv {
    for r in UVMRow.allCases {
      for (k, n) in sizes.enumerated() { print("uvm\t\(r.name)\t\(n)\t\(format(table[r.rawValue][k].median))") }
    }
    return
  }
  print(
    "swift-pmap uvm: ns/op of thread CPU time, median of \(repetitions) [min-max]; each sample averages runs"
      + " over 65536 pages")
  print(pad("op", 26, left: true) + sizes.map { pad("N=\($0)", 23) }.joined())
  for r in UVMRow.allCases {
    var line = pad(r.name, 26, left: true)
    for k in sizes.indices {
      let c = table[r.rawValue][k]
      line += pad("\(format(c.median)) [\(format(c.min))-\(format(c.max))]", 23)
    }
    print(line)
  }
  var ratios = pad("fault / (memset+enter)", 26, left: true)
  for k in sizes.indices { ratios += pad(format(medianRatio[k]) + "x", 23) }
  print(ratios + "   (target <= 1.5x; median of the per-repetition ratios)")
  print("* ns per page visited by either hand (target <= 50); no swap I/O. Page-out row: ns per page evicted.")
}
