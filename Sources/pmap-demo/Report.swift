import UVMLite

/// The final report.
struct Report {
  let options: Options
  let runTime: Double
  let totalTime: Double
  let accesses: Int
  let vmmAccesses: Int
  let failedAccesses: Int
  let statistics: UVMStatistics
  let residentAtEnd: [Int]
  let guests: [GuestMemory]
  let uvm: UVM
  let shadow: Shadow
  let finalPagesChecked: Int
  let invariantViolation: UVMInvariantViolation?
  let csvRows: [Progress.Row]

  func print() {
    let s = statistics
    let hit = accesses == 0 ? 0 : 100 * Double(max(0, accesses - s.faults)) / Double(accesses)
    Swift.print("")
    Swift.print("== pmap-demo report ==")
    Swift.print(
      "time: \(fixed(runTime, 2)) s of workload, \(fixed(totalTime, 2)) s with the final check; \(count(accesses)) accesses (\(count(Int(Double(accesses) / runTime))) per s), \(count(vmmAccesses)) by the VMM through its native mapping"
    )
    Swift.print("hit ratio: \(fixed(hit, 3))% of accesses found their page mapped")
    Swift.print(
      "faults: \(s.faults) = zero-fill \(s.zeroFillFaults) + swap-in \(s.swapInFaults) + already resident \(s.residentFaults) + outside RAM \(s.outsideRAMFaults) + denied \(s.deniedFaults) + failed \(s.failedFaults)"
    )
    Swift.print(
      "pagedaemon: \(s.pagedaemonRuns) runs, \(s.pagesScanned) pages scanned, \(s.deactivations) deactivated, \(s.reactivations) reactivated, \(s.evictions) evicted (\(s.pageouts) paged out, \(s.cleanEvictions) dropped clean)"
    )
    Swift.print(
      "swap: \(uvm.swap.slotsInUse) of \(uvm.swap.slotCount) slots in use (\(fixed(Double(uvm.swap.slotsInUse) / 256, 1)) MiB), full skips \(s.swapFullSkips), write errors \(s.swapWriteErrors), read errors \(s.swapReadErrors)"
    )
    Swift.print(
      "host frames: \(uvm.pool.frameCount) (\(options.hostMiB) MiB), free \(uvm.pool.freeCount), watermarks \(uvm.pool.lowWatermark)/\(uvm.pool.highWatermark)"
    )
    for (i, g) in guests.enumerated() {
      let kind = options.workloads[i % options.workloads.count].rawValue
      Swift.print(
        "guest \(i) (\(kind)): resident \(residentAtEnd[i]) pages (\(fixed(Double(residentAtEnd[i]) / 256, 1)) of \(options.guestMiB) MiB), \(g.faults) faults"
      )
    }
    Swift.print(
      "content checks: \(count(shadow.wordsChecked)) words (every read, \(shadow.pagesCheckedOnSwapIn) pages on swap-in, all \(finalPagesChecked) pages at the end): \(shadow.mismatches) mismatches"
    )
    if let m = shadow.firstMismatch { Swift.print("first mismatch: \(m)") }
    if failedAccesses > 0 { Swift.print("failed accesses: \(failedAccesses)") }
    if let v = invariantViolation {
      Swift.print("invariant violation: \(v)")
    } else {
      Swift.print("invariants: UVM, every pmap and the pv-lists check clean")
    }
    if let path = options.csvPath { Swift.print("time series: \(csvRows.count) rows in \(path)") }
    Swift.print(shadow.mismatches == 0 && invariantViolation == nil && failedAccesses == 0 ? "OK" : "FAILED")
  }
}
