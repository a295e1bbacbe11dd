// pmap-bench: the operations of ../shared/bench/cref.c over the same model, for both entry
// formats. Physical memory is one 8 GiB lazily committed mapping (a direct map); page-table
// pages come from frames [1, 1M) through a LIFO allocator; data frames start at 4 GiB and are
// never touched. Prints ns/op, median of 5 runs after a warm-up.
//
//   swift run -c release pmap-bench            a table
//   swift run -c release pmap-bench --tsv      format<TAB>op<TAB>N<TAB>median_ns, one per line
//   ... --sizes 4096,65536                     other N
//   ... --formats ept,native                   which formats, in this order
//   ... --no-warmup                            skip the 1.5 s warm-up (for instruction counting)
//   ... --locking serialized                   pmaps and page database without locks
//                                              (Locking.callerSerialized; the default is
//                                              spin locks); formats are then labelled "… unlocked"
import Glibc
import Pmap
import PmapEPT
import PmapHost
import PmapNative

let repetitions = 5
let dataBase: UInt64 = 4 << 30
let vaBase: UInt64 = 0x0000_4000_0000_0000

/// The simulated machine every run uses, as in the C reference.
final class Machine {
  let ram = SimulatedRAM(size: 8 << 30)
  /// Page-table pages: physical [4 KiB, 3 GiB), as the C reference's table frames.
  let pageTableFrames: StackFrameAllocator
  /// pv-pool frames: physical [3 GiB, 4 GiB), a region of their own as the C reference's pv pool
  /// (a separate mapping). Drawn from the page tables' allocator instead, pool frames end up
  /// between page tables, and the 8-space rows at 65536 pages and more take about 2 ns a page
  /// longer (2026-11-29).
  let poolFrames: StackFrameAllocator
  let sink = CountingInvalidationSink()
  /// The data frames, 4 GiB up to the end, are managed: pv-lists for the pv rows.
  let pages: PageDatabase
  let sizes: [Int]
  let formats: [String]
  let tsv: Bool
  let locking: Locking

  init(arguments: [String]) {
    pageTableFrames = StackFrameAllocator(
      memory: ram.memory, frames: PhysicalAddress(4096), to: PhysicalAddress(3 << 30))
    poolFrames = StackFrameAllocator(
      memory: ram.memory, frames: PhysicalAddress(3 << 30), to: PhysicalAddress(4 << 30))
    if let i = arguments.firstIndex(of: "--locking"), i + 1 < arguments.count, arguments[i + 1] == "serialized" {
      locking = .callerSerialized
    } else {
      locking = .spinLocks
    }
    pages = PageDatabase(
      memory: ram.memory, base: PhysicalAddress(dataBase), pageCount: 1 << 20, allocator: poolFrames,
      locking: locking)
    tsv = arguments.contains("--tsv")
    if let i = arguments.firstIndex(of: "--sizes"), i + 1 < arguments.count {
      sizes = arguments[i + 1].split(separator: ",").compactMap { Int($0) }
    } else {
      sizes = [4096, 65536, 1_048_576]
    }
    if let i = arguments.firstIndex(of: "--formats"), i + 1 < arguments.count {
      formats = arguments[i + 1].split(separator: ",").map(String.init)
    } else {
      formats = ["native", "ept", "mixed"]
    }
  }
}

@inline(never)
func now() -> Double {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return Double(ts.tv_sec) * 1e9 + Double(ts.tv_nsec)
}

func fail(_ what: String) -> Never {
  print("pmap-bench: check failed: \(what)")
  exit(1)
}

/// The rows, named exactly as the C reference names them.
enum Row: Int, CaseIterable {
  case map, translateSequential, translateRandom, protect, unmap, mapRange
  case mapPV, removeAll1, map8, clearAD8, removeAll8
  var name: String {
    switch self {
    case .map: "map (fresh tables)"
    case .translateSequential: "translate seq"
    case .translateRandom: "translate random"
    case .protect: "protect (clear W)"
    case .unmap: "unmap (+free tables)"
    case .mapRange: "map range (Swift only)"
    case .mapPV: "map + pv insert"
    case .removeAll1: "remove_all, 1 mapping"
    case .map8: "map+pv into 8 spaces*"
    case .clearAD8: "test&clear A/D, 8 maps"
    case .removeAll8: "remove_all, 8 mappings"
    }
  }
  /// Rows that need pv-lists but a single format; the mixed case runs only the 8-space rows.
  var isEightSpaces: Bool { self == .map8 || self == .clearAD8 || self == .removeAll8 }
  var isSingleSpace: Bool { !isEightSpaces }
}

/// The protect row's loop, in a function of its own as a caller would have it: inside the large
/// `runOnce` the optimizer left `protect` (`@inline(__always)`) a call, 7.0 ns a page against
/// 5.9 ns inlined here (unlocked, N = 4096). Moving the translate and remove rows' loops out the
/// same way changed no inlining decision, only code layout (up to 1 ns either way), so they stay
/// inline.
@inline(never)
func protectEach<Ops: PTEOps>(_ pmap: Pmap<Ops>, n: Int) {
  for i in 0..<n {
    let range = VirtualRange(page: VirtualAddress(truncating: vaBase + UInt64(i) << 12))
    do { try pmap.protect(range, to: .read) } catch { fail("protect") }
  }
}

/// The map rows' loop (with and without pv tracking), in a function of its own for the same
/// reason: `enter`'s quick path inlines into the loop, and inside the large `runOnce` the loop's
/// values did not fit in registers next to everything else (eight spills and reloads a page).
@inline(never)
func enterEach<Ops: PTEOps>(_ pmap: Pmap<Ops>, n: Int, failure: StaticString) {
  for i in 0..<n {
    let va = VirtualAddress(truncating: vaBase + UInt64(i) << 12)
    let pa = PhysicalAddress(dataBase + UInt64(i) << 12)
    do { try pmap.enter(va, pa, protection: .readWrite) } catch { fail("\(failure)") }
  }
}

@inline(never)
func runOnce<Ops: PTEOps>(
  _: Ops.Type, on m: Machine, n: Int, randomOrder: [VirtualAddress], into results: inout [Double]
) {
  let pmap: Pmap<Ops>
  do {
    pmap = try Pmap<Ops>(
      memory: m.ram.memory, allocator: m.pageTableFrames, invalidation: m.sink, locking: m.locking)
  } catch {
    fail("pmap creation")
  }
  let expectedSum = UInt64(n) * dataBase + ((UInt64(n) * UInt64(n - 1) / 2) << 12)

  var t = now()
  enterEach(pmap, n: n, failure: "enter")
  results[Row.map.rawValue] = (now() - t) / Double(n)

  var sum: UInt64 = 0
  t = now()
  for i in 0..<n {
    sum &+= pmap.extract(VirtualAddress(truncating: vaBase + UInt64(i) << 12))?.rawValue ?? .max
  }
  results[Row.translateSequential.rawValue] = (now() - t) / Double(n)
  if sum != expectedSum { fail("translate seq") }

  sum = 0
  t = now()
  randomOrder.withUnsafeBufferPointer { order in
    for i in 0..<n { sum &+= pmap.extract(order[i])?.rawValue ?? .max }
  }
  results[Row.translateRandom.rawValue] = (now() - t) / Double(n)
  if sum != expectedSum { fail("translate random") }

  t = now()
  protectEach(pmap, n: n)
  results[Row.protect.rawValue] = (now() - t) / Double(n)
  if pmap.translation(of: VirtualAddress(vaBase))?.protection.contains(.write) != false { fail("protect") }

  t = now()
  for i in 0..<n {
    let range = VirtualRange(page: VirtualAddress(truncating: vaBase + UInt64(i) << 12))
    do { try pmap.remove(range) } catch { fail("unmap") }
  }
  results[Row.unmap.rawValue] = (now() - t) / Double(n)
  if pmap.statistics.pageTablePages != 1 || pmap.statistics.residentPages != 0 { fail("unmap freed everything") }

  // The same N pages in one range enter (fresh tables again), per page: no C counterpart.
  do {
    let range = try VirtualRange(start: VirtualAddress(vaBase), byteCount: UInt64(n) << 12)
    t = now()
    try pmap.enter(range, startingAt: PhysicalAddress(dataBase), protection: .readWrite)
    results[Row.mapRange.rawValue] = (now() - t) / Double(n)
    try pmap.remove(range)
  } catch { fail("map range") }
  if pmap.statistics.pageTablePages != 1 { fail("map range freed everything") }
  pmap.destroy()

  // The same enter, now with reverse-map tracking, then remove every mapping of each page.
  let tracked: Pmap<Ops>
  do {
    tracked = try Pmap<Ops>(
      memory: m.ram.memory, allocator: m.pageTableFrames, invalidation: m.sink, pages: m.pages, locking: m.locking)
  } catch { fail("pmap creation") }
  t = now()
  enterEach(tracked, n: n, failure: "enter pv")
  results[Row.mapPV.rawValue] = (now() - t) / Double(n)
  var removed = 0
  t = now()
  for i in 0..<n { removed &+= m.pages.removeAllMappings(PhysicalAddress(dataBase + UInt64(i) << 12)) }
  results[Row.removeAll1.rawValue] = (now() - t) / Double(n)
  if removed != n || tracked.statistics.pageTablePages != 1 { fail("remove_all 1") }
  tracked.destroy()
}

/// Enters page `pa` at `va` into each pmap of `spaces`, held unretained as a kernel keeps its
/// address spaces: the C reference's loop over the spaces. One enter site per format: with the
/// loop unrolled over a constant count, the four sites of each closure kept it out of line, a
/// call per enter (8 spaces: 68-73 ns against 61-66 ns here, unlocked, N = 65536).
@inline(__always)
func enterAll<Ops: PTEOps>(
  _ spaces: UnsafeBufferPointer<Unmanaged<Pmap<Ops>>>, _ va: VirtualAddress, _ pa: PhysicalAddress
) {
  for u in spaces {
    u._withUnsafeGuaranteedRef { p in
      do { try p.enter(va, pa, protection: .readWrite, access: .write) } catch { fail("enter 8") }
    }
  }
}

/// Enters page `pa` at `va` into the pmap `space` holds unretained (one enter site of a loop).
@inline(__always)
func enterOne<Ops: PTEOps>(_ space: Unmanaged<Pmap<Ops>>, _ va: VirtualAddress, _ pa: PhysicalAddress) {
  space._withUnsafeGuaranteedRef { p in
    do { try p.enter(va, pa, protection: .readWrite, access: .write) } catch { fail("enter 8") }
  }
}

/// The 8-space rows: every data page entered into 8 pmaps, four of format A and four of format B
/// (A = B for the single-format cases), with A and D set as the C reference does. With one
/// format the enter loop runs over the 8 spaces at once, as the C reference's; with two, over
/// four pairs of one pmap of each format, as a hypervisor maps a guest page into the guest's
/// EPT and into its VMM's native address space. (Two loops of 4, one per format, cost 1-1.5 ns
/// a page more, unlocked: the second loop stayed a call; so did one loop of 8 with a
/// same-format split.)
@inline(never)
func runEight<A: PTEOps, B: PTEOps>(_: A.Type, _: B.Type, on m: Machine, n: Int, into results: inout [Double]) {
  var a: [Pmap<A>] = []
  var b: [Pmap<B>] = []
  do {
    for _ in 0..<4 {
      a.append(
        try Pmap<A>(
          memory: m.ram.memory, allocator: m.pageTableFrames, invalidation: m.sink, pages: m.pages, locking: m.locking))
      b.append(
        try Pmap<B>(
          memory: m.ram.memory, allocator: m.pageTableFrames, invalidation: m.sink, pages: m.pages, locking: m.locking))
    }
  } catch { fail("pmap creation") }
  // As the C reference, a loop over the spaces (one enter site per format), through unretained
  // references as a kernel would keep them: an array element passed on would be retained.
  var spacesA = a.map { Unmanaged.passUnretained($0) }
  let spacesB = b.map { Unmanaged.passUnretained($0) }
  // One format: one loop over all 8 spaces, as the C reference's.
  let oneFormat = A.self == B.self
  if oneFormat { spacesA += b.map { Unmanaged<Pmap<A>>.fromOpaque(Unmanaged.passUnretained($0).toOpaque()) } }
  var t = now()
  spacesA.withUnsafeBufferPointer { spacesA in
    spacesB.withUnsafeBufferPointer { spacesB in
      for i in 0..<n {
        let va = VirtualAddress(truncating: vaBase + UInt64(i) << 12)
        let pa = PhysicalAddress(dataBase + UInt64(i) << 12)
        if oneFormat {
          enterAll(spacesA, va, pa)
        } else {
          for s in 0..<4 {
            enterOne(spacesA[s], va, pa)
            enterOne(spacesB[s], va, pa)
          }
        }
      }
    }
  }
  results[Row.map8.rawValue] = (now() - t) / Double(n)
  var seen = 0
  t = now()
  for i in 0..<n {
    let found = m.pages.clearAttributes([.referenced, .modified], of: PhysicalAddress(dataBase + UInt64(i) << 12))
    seen &+= Int(found.rawValue & 3)
  }
  results[Row.clearAD8.rawValue] = (now() - t) / Double(n)
  if seen != 3 * n { fail("test&clear A/D") }
  var removed = 0
  t = now()
  for i in 0..<n { removed &+= m.pages.removeAllMappings(PhysicalAddress(dataBase + UInt64(i) << 12)) }
  results[Row.removeAll8.rawValue] = (now() - t) / Double(n)
  if removed != 8 * n { fail("remove_all 8") }
  for p in a { p.destroy() }
  for p in b { p.destroy() }
}

func randomPermutation(_ n: Int) -> [VirtualAddress] {
  var order = (0..<n).map { VirtualAddress(truncating: vaBase + UInt64($0) << 12) }
  var x: UInt64 = 0x9E37_79B9_7F4A_7C15  // xorshift64, the C reference's seed
  var i = n - 1
  while i > 0 {
    x ^= x << 13
    x ^= x >> 7
    x ^= x << 17
    let j = Int(x % UInt64(i + 1))
    order.swapAt(i, j)
    i -= 1
  }
  return order
}

struct Cell {
  var median = 0.0
  var min = 0.0
  var max = 0.0
}

func measure(on m: Machine, _ run: (Int, [VirtualAddress], inout [Double]) -> Void) -> [[Cell]] {
  let sizes = m.sizes
  var table = [[Cell]](repeating: [Cell](repeating: Cell(), count: sizes.count), count: Row.allCases.count)
  for (k, n) in sizes.enumerated() {
    let order = randomPermutation(n)
    var samples = [[Double]](repeating: [], count: Row.allCases.count)
    var results = [Double](repeating: 0, count: Row.allCases.count)
    run(n, order, &results)  // warm-up, discarded
    for _ in 0..<repetitions {
      run(n, order, &results)
      for r in Row.allCases { samples[r.rawValue].append(results[r.rawValue]) }
    }
    for r in Row.allCases {
      let s = samples[r.rawValue].sorted()
      table[r.rawValue][k] = Cell(median: s[repetitions / 2], min: s[0], max: s[repetitions - 1])
    }
  }
  return table
}

func format(_ x: Double) -> String {
  let scaled = Int((x * 100).rounded())
  let frac = scaled % 100
  return "\(scaled / 100).\(frac < 10 ? "0" : "")\(frac)"
}

func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
  let fill = String(repeating: " ", count: max(0, width - s.count))
  return left ? s + fill : fill + s
}

func report(_ formatName: String, _ table: [[Cell]], rows: [Row], on m: Machine) {
  let name = m.locking == .spinLocks ? formatName : formatName + " unlocked"
  let sizes = m.sizes
  if m.tsv {
    for r in rows {
      for (k, n) in sizes.enumerated() { print("\(name)\t\(r.name)\t\(n)\t\(format(table[r.rawValue][k].median))") }
    }
    return
  }
  print("swift-pmap \(name): ns/op, median of \(repetitions) [min-max]")
  print(pad("op", 24, left: true) + sizes.map { pad("N=\($0)", 23) }.joined())
  for r in rows {
    var line = pad(r.name, 24, left: true)
    for k in sizes.indices {
      let c = table[r.rawValue][k]
      line += pad("\(format(c.median)) [\(format(c.min))-\(format(c.max))]", 23)
    }
    print(line)
  }
  if rows.contains(.map8) { print("* per physical page (8 mappings each); A/D and remove_all rows likewise.") }
}

let machine = Machine(arguments: CommandLine.arguments)

// --alloc-probe K: K rounds of the per-page operations on pages whose page-table pages already
// exist (unmanaged pages in each format, managed pages shared by a native and an EPT pmap with
// every page operation, translation through a shared kernel half), and nothing else.
// Scripts/check-allocations.sh runs it for two values of K, under valgrind and under a
// retain/release counter: equal counts mean the hot paths allocate nothing and do no reference
// counting per page.
if let i = CommandLine.arguments.firstIndex(of: "--alloc-probe"), i + 1 < CommandLine.arguments.count,
  let rounds = Int(CommandLine.arguments[i + 1])
{
  func probe<Ops: PTEOps>(_: Ops.Type) {
    guard
      let pmap = try? Pmap<Ops>(
        memory: machine.ram.memory, allocator: machine.pageTableFrames, invalidation: machine.sink)
    else { fail("pmap creation") }
    let keep = VirtualAddress(vaBase + (511 << 12))
    do { try pmap.enter(keep, PhysicalAddress(dataBase), protection: .readWrite) } catch { fail("enter") }
    for r in 0..<rounds {
      let va = VirtualAddress(vaBase + UInt64(r % 500) << 12)
      let pa = PhysicalAddress(dataBase + UInt64(r) << 12)
      do {
        try pmap.enter(va, pa, protection: .all, access: .write, options: .wired)
        try pmap.enter(va, pa, protection: .readWrite, options: .wired)  // re-enter the same frame
        if pmap.extract(va) != pa { fail("extract") }
        _ = pmap.translation(of: va)
        _ = pmap.lookupLeaf(va)?.entry.setBits(Ops.accessedBit)  // as the MMU would
        try pmap.protect(VirtualRange(page: va), to: .read)
        try pmap.unwire(va)
        try pmap.remove(VirtualRange(page: va))
      } catch { fail("probe round \(r)") }
    }
    pmap.destroy()
  }
  // Managed pages shared by a native and an EPT pmap: pv inserts and removes (the second
  // mapping of a page takes a pool node), and every page operation.
  func probeManaged() {
    guard
      let host = try? Pmap<NativePTE>(
        memory: machine.ram.memory, allocator: machine.pageTableFrames, invalidation: machine.sink,
        pages: machine.pages, locking: machine.locking),
      let guest = try? Pmap<EPTPTE>(
        memory: machine.ram.memory, allocator: machine.pageTableFrames, invalidation: machine.sink,
        pages: machine.pages, locking: machine.locking)
    else { fail("pmap creation") }
    let keep = VirtualAddress(vaBase + (511 << 12))
    do {
      try host.enter(keep, PhysicalAddress(dataBase), protection: .readWrite)
      try guest.enter(keep, PhysicalAddress(dataBase), protection: .readWrite)
    } catch { fail("enter") }
    let pages = machine.pages
    for r in 0..<rounds {
      let va = VirtualAddress(vaBase + UInt64(r % 500) << 12)
      let pa = PhysicalAddress(dataBase + UInt64(1 + r % 4096) << 12)
      do {
        try host.enter(va, pa, protection: .readWrite, access: .write)
        try guest.enter(va, pa, protection: .all, access: .read)
        _ = pages.isReferenced(pa)
        _ = pages.isModified(pa)
        _ = pages.clearReference(pa)
        _ = pages.clearModify(pa)
        _ = pages.referencedCount(pa)
        _ = pages.attributes(of: pa)
        pages.protectPage(pa, to: .read)
        try guest.remove(VirtualRange(page: va))
        try guest.enter(va, pa, protection: .readWrite)
        pages.protectPage(pa, to: [])
      } catch { fail("managed probe round \(r)") }
    }
    host.destroy()
    guest.destroy()
  }
  // A process pmap sharing a kernel pmap's upper half: lock-free translation through the
  // kernel's tables (guarded by the kernel pmap's generation).
  func probeKernelHalf() {
    guard
      let kernel = try? NativePmap(
        memory: machine.ram.memory, allocator: machine.pageTableFrames, invalidation: machine.sink,
        kind: .kernel, locking: machine.locking, kernelHalfSlots: 511..<512),
      let process = try? NativePmap(
        memory: machine.ram.memory, allocator: machine.pageTableFrames, invalidation: machine.sink,
        locking: machine.locking, sharingKernelHalfWith: kernel)
    else { fail("kernel half pmaps") }
    let va = VirtualAddress(truncating: 0xffff_ff80_0000_0000)
    do { try kernel.enter(va, PhysicalAddress(dataBase), protection: .readWrite) } catch { fail("kernel enter") }
    for _ in 0..<rounds {
      if process.extract(va) != PhysicalAddress(dataBase) { fail("kernel-half extract") }
      _ = process.translation(of: va)
    }
    process.destroy()
    kernel.destroy()
  }
  probe(NativePTE.self)
  probe(EPTPTE.self)
  probeManaged()
  probeKernelHalf()
  print("alloc-probe: \(rounds) rounds done")
  exit(0)
}
// Warm up for a second and a half first: on these machines the first second or two of a
// process runs markedly slower (clock ramp), which would bias whichever format ran first.
if !CommandLine.arguments.contains("--no-warmup") {
  var scratch = [Double](repeating: 0, count: Row.allCases.count)
  let order = randomPermutation(65536)
  let start = now()
  while now() - start < 1.5e9 { runOnce(NativePTE.self, on: machine, n: 65536, randomOrder: order, into: &scratch) }
}
func both<Ops: PTEOps>(_: Ops.Type, on m: Machine, n: Int, order: [VirtualAddress], results: inout [Double]) {
  runOnce(Ops.self, on: m, n: n, randomOrder: order, into: &results)
  runEight(Ops.self, Ops.self, on: m, n: n, into: &results)
}

for name in machine.formats {
  switch name {
  case "native":
    report(
      name, measure(on: machine) { both(NativePTE.self, on: machine, n: $0, order: $1, results: &$2) },
      rows: Row.allCases, on: machine)
  case "ept":
    report(
      name, measure(on: machine) { both(EPTPTE.self, on: machine, n: $0, order: $1, results: &$2) }, rows: Row.allCases,
      on: machine)
  case "mixed":
    let table = measure(on: machine) { n, _, results in
      runEight(NativePTE.self, EPTPTE.self, on: machine, n: n, into: &results)
    }
    report(name, table, rows: Row.allCases.filter(\.isEightSpaces), on: machine)
  case "uvm": runUVMRows(on: machine)  // UVMLite rows, Sources/pmap-bench/UVMRows.swift
  default: fail("unknown format \(name) (native, ept, mixed)")
  }
}
print(
  "pv storage: 0 bytes for a page's first mapping, \(PageDatabase.bytesPerAdditionalMapping) bytes for each further one; page-table frames at peak: \(machine.pageTableFrames.peakFramesInUse)"
)
