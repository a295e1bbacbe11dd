// pmap-bench: the operations of ../shared/bench/cref.c over the same model, for both entry
// formats. Physical memory is one 8 GiB lazily committed mapping (a direct map); page-table
// pages come from frames [1, 1M) through a LIFO allocator; data frames start at 4 GiB and are
// never touched. Prints ns/op, median of 5 runs after a warm-up.
//
//   swift run -c release pmap-bench            a table
//   swift run -c release pmap-bench --tsv      format<TAB>op<TAB>N<TAB>median_ns, one per line
//   ... --sizes 4096,65536                     other N
//   ... --formats ept,native                   which formats, in this order
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
  let pageTableFrames: StackFrameAllocator
  let sink = RecordingInvalidationSink(records: false)
  let sizes: [Int]
  let formats: [String]
  let tsv: Bool

  init(arguments: [String]) {
    pageTableFrames = StackFrameAllocator(
      memory: ram.memory, frames: PhysicalAddress(4096), to: PhysicalAddress(4 << 30))
    tsv = arguments.contains("--tsv")
    if let i = arguments.firstIndex(of: "--sizes"), i + 1 < arguments.count {
      sizes = arguments[i + 1].split(separator: ",").compactMap { Int($0) }
    } else {
      sizes = [4096, 65536, 1_048_576]
    }
    if let i = arguments.firstIndex(of: "--formats"), i + 1 < arguments.count {
      formats = arguments[i + 1].split(separator: ",").map(String.init)
    } else {
      formats = ["native", "ept"]
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
  case map, translateSequential, translateRandom, protect, unmap
  var name: String {
    switch self {
    case .map: "map (fresh tables)"
    case .translateSequential: "translate seq"
    case .translateRandom: "translate random"
    case .protect: "protect (clear W)"
    case .unmap: "unmap (+free tables)"
    }
  }
}

@inline(never)
func runOnce<Ops: PTEOps>(
  _: Ops.Type, on m: Machine, n: Int, randomOrder: [VirtualAddress], into results: inout [Double]
) {
  let pmap: Pmap<Ops>
  do { pmap = try Pmap<Ops>(memory: m.ram.memory, allocator: m.pageTableFrames, invalidation: m.sink) } catch {
    fail("pmap creation")
  }
  let expectedSum = UInt64(n) * dataBase + ((UInt64(n) * UInt64(n - 1) / 2) << 12)

  var t = now()
  for i in 0..<n {
    let va = VirtualAddress(truncating: vaBase + UInt64(i) << 12)
    let pa = PhysicalAddress(dataBase + UInt64(i) << 12)
    do { try pmap.enter(va, pa, protection: .readWrite) } catch { fail("enter") }
  }
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
  for i in 0..<n {
    let range = VirtualRange(page: VirtualAddress(truncating: vaBase + UInt64(i) << 12))
    do { try pmap.protect(range, to: .read) } catch { fail("protect") }
  }
  results[Row.protect.rawValue] = (now() - t) / Double(n)
  if pmap.translation(of: VirtualAddress(vaBase))?.protection.contains(.write) != false { fail("protect") }

  t = now()
  for i in 0..<n {
    let range = VirtualRange(page: VirtualAddress(truncating: vaBase + UInt64(i) << 12))
    do { try pmap.remove(range) } catch { fail("unmap") }
  }
  results[Row.unmap.rawValue] = (now() - t) / Double(n)
  if pmap.statistics.pageTablePages != 1 || pmap.statistics.residentPages != 0 { fail("unmap freed everything") }
  pmap.destroy()
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

func measure<Ops: PTEOps>(_ format: Ops.Type, on m: Machine) -> [[Cell]] {
  let sizes = m.sizes
  var table = [[Cell]](repeating: [Cell](repeating: Cell(), count: sizes.count), count: Row.allCases.count)
  for (k, n) in sizes.enumerated() {
    let order = randomPermutation(n)
    var samples = [[Double]](repeating: [], count: Row.allCases.count)
    var results = [Double](repeating: 0, count: Row.allCases.count)
    runOnce(format, on: m, n: n, randomOrder: order, into: &results)  // warm-up, discarded
    for _ in 0..<repetitions {
      runOnce(format, on: m, n: n, randomOrder: order, into: &results)
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

func report(_ name: String, _ table: [[Cell]], on m: Machine) {
  let sizes = m.sizes
  if m.tsv {
    for r in Row.allCases {
      for (k, n) in sizes.enumerated() { print("\(name)\t\(r.name)\t\(n)\t\(format(table[r.rawValue][k].median))") }
    }
    return
  }
  print("swift-pmap \(name): ns/op, median of \(repetitions) [min-max]")
  print(pad("op", 24, left: true) + sizes.map { pad("N=\($0)", 23) }.joined())
  for r in Row.allCases {
    var line = pad(r.name, 24, left: true)
    for k in sizes.indices {
      let c = table[r.rawValue][k]
      line += pad("\(format(c.median)) [\(format(c.min))-\(format(c.max))]", 23)
    }
    print(line)
  }
  print("page-table frames in use at peak: \(m.pageTableFrames.peakFramesInUse)")
}

let machine = Machine(arguments: CommandLine.arguments)

// --alloc-probe K: K rounds of the per-page operations on pages whose page-table pages already
// exist, and nothing else. Run under valgrind for two values of K: equal heap-allocation counts
// mean the hot paths allocate nothing per page (Scripts/check-allocations.sh).
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
  probe(NativePTE.self)
  probe(EPTPTE.self)
  print("alloc-probe: \(rounds) rounds done")
  exit(0)
}
// Warm up for a second and a half first: on these machines the first second or two of a
// process runs markedly slower (clock ramp), which would bias whichever format ran first.
do {
  var scratch = [Double](repeating: 0, count: Row.allCases.count)
  let order = randomPermutation(65536)
  let start = now()
  while now() - start < 1.5e9 { runOnce(NativePTE.self, on: machine, n: 65536, randomOrder: order, into: &scratch) }
}
for name in machine.formats {
  switch name {
  case "native": report(name, measure(NativePTE.self, on: machine), on: machine)
  case "ept": report(name, measure(EPTPTE.self, on: machine), on: machine)
  default: fail("unknown format \(name) (native, ept)")
  }
}
