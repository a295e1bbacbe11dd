import Glibc
import UVMLite
import UVMLiteHost

/// Runs the workloads until the deadline; returns (accesses, of which by the VMM, failed).
func runWorkload(
  options: Options, start: Double, guests: [GuestMemory], workloads: [Workload], mmu: any AccessLayer, shadow: Shadow,
  uvm: UVM, progress: Progress
) -> (Int, Int, Int) {
  var workloads = workloads
  let counters = shadow.counters
  let guestCount = guests.count
  var accesses = 0
  var vmmAccesses = 0
  var failed = 0
  var writeCounter: UInt32 = 0
  var wordsChecked = 0
  var vmmRandom = Random(seed: options.seed ^ 0xABCD)
  let vmmThreshold = UInt64(options.vmmRatio * 1024)
  let deadline = start + options.seconds * 1e9
  var nextTick = now() + Double(options.intervalMs) * 1e6
  while true {
    for _ in 0..<1024 {
      for g in 0..<guestCount {
        let a = workloads[g].next()
        let byVMM = vmmRandom.next() & 1023 < vmmThreshold
        let gpa = UInt64(a.page) << 12 | UInt64(a.word) << 3
        let p: UnsafeMutableRawPointer
        do throws(AccessError) {
          p =
            byVMM
            ? try mmu.hostPointer(guests[g], gpa, write: a.write) : try mmu.guestPointer(guests[g], gpa, write: a.write)
        } catch {
          failed += 1
          continue
        }
        let slot = a.page &* 512 &+ a.word
        if a.write {
          writeCounter = writeCounter == UInt32.max ? 1 : writeCounter + 1
          counters[g][slot] = writeCounter
          p.storeBytes(of: Shadow.value(guest: g, word: gpa, counter: writeCounter), as: UInt64.self)
        } else {
          let found = p.load(as: UInt64.self)
          wordsChecked &+= 1
          if found != Shadow.value(guest: g, word: gpa, counter: counters[g][slot]) {
            shadow.mismatch(g, a.page, a.word, found: found, when: byVMM ? "on a VMM read" : "on a guest read")
          }
        }
        if byVMM { vmmAccesses &+= 1 }
        accesses &+= 1
      }
    }
    let t = now()
    if t >= nextTick {
      progress.tick(at: t - start, accesses: accesses, uvm: uvm, guests: guests)
      nextTick += Double(options.intervalMs) * 1e6
    }
    if t >= deadline { break }
  }
  shadow.wordsChecked &+= wordsChecked
  progress.tick(at: now() - start, accesses: accesses, uvm: uvm, guests: guests, final: true)
  progress.end()
  return (accesses, vmmAccesses, failed)
}

func now() -> Double {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return Double(ts.tv_sec) * 1e9 + Double(ts.tv_nsec)
}
