// pmap-demo: pageable guests under host memory pressure. A host with H MiB of frames runs N
// guests of G MiB each (G x N > H); each guest runs a workload through the MMU (EPT walks that set
// A/D, EPT violations into UVMLite's fault path), the VMM reads and writes guest memory through its
// own native mapping, and the pagedaemon pages to swap. A shadow copy outside the simulation says
// what every word must hold; it is checked on every read, on every swap-in, and over all of guest
// memory at the end. Exit status 1 if any check failed.
//
//   swift run -c release pmap-demo                 the defaults: about ten seconds
//   swift run -c release pmap-demo --help          the options
import Glibc
import Pmap
import PmapEPT
import PmapHost
import PmapNative
import UVMLite
import UVMLiteHost

let options = Options(Array(CommandLine.arguments.dropFirst()))
let start = now()

// The machine: page-table frames first (lazily committed), then the host's data frames.
let guestPages = options.guestMiB << 8
let hostFrames = options.hostMiB << 8
let tableFrames = options.guests * (guestPages / 512 + 8) * 2 + 4096
let dataBase = UInt64(tableFrames + 1) << 12
let ram = SimulatedRAM(size: dataBase + UInt64(hostFrames) << 12)
let tables = StackFrameAllocator(memory: ram.memory, frames: PhysicalAddress(4096), to: PhysicalAddress(dataBase))
let pages = PageDatabase(
  memory: ram.memory, base: PhysicalAddress(dataBase), pageCount: hostFrames, allocator: tables)
let pool = FramePool(pages: pages)
let swapSlots = options.guests * guestPages
let store: any SwapStore
if let path = options.swapFile {
  do { store = try FileSwapStore(path: path, slotCount: swapSlots) } catch {
    Options.fail("cannot open swap file \(path): errno \(error.code)")
  }
} else {
  store = MemorySwapStore(slotCount: swapSlots)
}
let uvm = UVM(pool: pool, swap: store, pageTableAllocator: tables, backing: ram)
let shadow = Shadow()
uvm.observer = shadow
let sink = CountingInvalidationSink()
let vmmPmap: NativePmap
do { vmmPmap = try NativePmap(memory: ram.memory, allocator: tables, invalidation: sink, pages: pages) } catch {
  Options.fail("cannot create the VMM's pmap")
}
var guests: [GuestMemory] = []
var workloads: [Workload] = []
for i in 0..<options.guests {
  do {
    let g = try uvm.makeGuest(
      byteCount: UInt64(guestPages) << 12, invalidation: sink, hardwareAccessedDirty: options.hardwareAccessedDirty)
    try uvm.mapIntoHost(g, pmap: vmmPmap, at: VirtualAddress(UInt64(i + 1) << 40))
    guests.append(g)
  } catch { Options.fail("cannot create guest \(i): \(error)") }
  shadow.add(pages: guestPages)
  workloads.append(
    Workload(
      kind: options.workloads[i % options.workloads.count], pages: guestPages, writeRatio: options.writeRatio,
      seed: options.seed &+ UInt64(i) &* 0x1_0000_0001))
}
let mmu: any AccessLayer = options.softwareMMU ? SoftwareMMU(uvm: uvm) : ModelMMU(uvm: uvm)

// The run: round-robin over guests, a small share of accesses by the VMM.
let progress = Progress(options: options, tty: isatty(1) != 0)
progress.begin()
let (accesses, vmmAccesses, failedAccesses) = runWorkload(
  options: options, start: start, guests: guests, workloads: workloads, mmu: mmu, shadow: shadow, uvm: uvm,
  progress: progress)
let runTime = (now() - start) / 1e9
let runStatistics = uvm.statistics
let residentAtEnd = guests.map(\.residentPages)

// Self-test of the checker: flip one bit of a resident page through the direct map, where no
// pmap sees it; the final check must report it.
if options.corrupt, let g = guests.first,
  let page = (0..<guestPages).first(where: { g.ept.extract(VirtualAddress(UInt64($0) << 12)) != nil }),
  let frame = g.ept.extract(VirtualAddress(UInt64(page) << 12))
{
  let p = uvm.memory.pointer(to: frame)
  p.storeBytes(of: p.load(as: UInt64.self) ^ 0x40, as: UInt64.self)
  print("--corrupt: flipped bit 6 of guest 0 page \(page) word 0")
}

// The final check: every page of every guest, through the guest's MMU (swapping in as needed).
var finalPagesChecked = 0
for (g, guest) in guests.enumerated() {
  for page in 0..<guestPages {
    do throws(AccessError) {
      let p = try mmu.guestPointer(guest, UInt64(page) << 12, write: false)
      shadow.checkPage(g, page, UnsafeRawPointer(p), when: "at the end")
      finalPagesChecked += 1
    } catch {
      shadow.mismatch(g, page, 0, found: 0, when: "at the end: \(error)")
    }
  }
}
let invariantViolation = uvm.checkInvariants()

Report(
  options: options, runTime: runTime, totalTime: (now() - start) / 1e9, accesses: accesses, vmmAccesses: vmmAccesses,
  failedAccesses: failedAccesses, statistics: runStatistics, residentAtEnd: residentAtEnd, guests: guests, uvm: uvm,
  shadow: shadow, finalPagesChecked: finalPagesChecked, invariantViolation: invariantViolation,
  csvRows: progress.rows
).print()
if let path = options.csvPath { progress.writeCSV(to: path) }
exit(shadow.mismatches == 0 && invariantViolation == nil && failedAccesses == 0 ? 0 : 1)
