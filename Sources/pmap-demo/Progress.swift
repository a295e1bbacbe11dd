import Glibc
import UVMLite

/// The live display (one line rewritten in place on a terminal, plain lines otherwise) and the
/// time series for `--csv`.
final class Progress {
  struct Row {
    var time: Double
    var accesses: Int
    var faults: Int
    var zeroFill: Int
    var swapIn: Int
    var resident: Int
    var evictions: Int
    var pageouts: Int
    var freeFrames: Int
    var residentPerGuest: [Int]
  }

  let options: Options
  let tty: Bool
  var rows: [Row] = []
  var lastPlainLine = -1.0

  init(options: Options, tty: Bool) {
    self.options = options
    self.tty = tty
  }

  func begin() {
    let total = options.guests * options.guestMiB
    let line =
      "pmap-demo: \(options.guests) guests x \(options.guestMiB) MiB = \(total) MiB of guest RAM on \(options.hostMiB) MiB of host frames, "
      + "workloads \(options.workloads.map(\.rawValue).joined(separator: ",")), write ratio \(options.writeRatio), "
      + "swap \(options.swapFile ?? "in memory"), \(options.seconds) s"
    Swift.print(line)
    fflush(nil)
  }

  func tick(at nanoseconds: Double, accesses: Int, uvm: UVM, guests: [GuestMemory], final: Bool = false) {
    let s = uvm.statistics
    let row = Row(
      time: nanoseconds / 1e9, accesses: accesses, faults: s.faults, zeroFill: s.zeroFillFaults, swapIn: s.swapInFaults,
      resident: guests.reduce(0) { $0 + $1.residentPages }, evictions: s.evictions, pageouts: s.pageouts,
      freeFrames: uvm.pool.freeCount, residentPerGuest: guests.map(\.residentPages))
    rows.append(row)
    let hit = accesses == 0 ? 0 : 100.0 * Double(max(0, accesses - s.faults)) / Double(accesses)
    let rss = row.residentPerGuest.map { fixed(Double($0) / 256, 1) }.joined(separator: "/")
    let line =
      "[\(fixed(row.time, 1))s] \(count(accesses)) accesses, hit \(fixed(hit, 2))%, faults \(count(s.faults)) "
      + "(zero \(count(s.zeroFillFaults)), swap-in \(count(s.swapInFaults)), soft \(count(s.residentFaults))), "
      + "pageouts \(count(s.pageouts)), free \(uvm.pool.freeCount), RSS MiB \(rss)"
    if tty {
      Swift.print("\r\u{1B}[K" + line, terminator: "")
      fflush(nil)
    } else if final || row.time - lastPlainLine >= 1 {
      Swift.print(line)
      lastPlainLine = row.time
    }
  }

  func end() {
    if tty { Swift.print("") }
  }

  /// Writes the time series: per interval, the faults, zero-fill and swap-in faults, evictions
  /// and pageouts in that interval, and the resident pages (total and per guest) at its end.
  func writeCSV(to path: String) {
    guard let f = fopen(path, "w") else {
      printError("pmap-demo: cannot write \(path)\n")
      return
    }
    defer { fclose(f) }
    var header = "time_s,accesses,faults,zero_fill_faults,swap_in_faults,evictions,pageouts,free_frames,resident_pages"
    for g in 0..<options.guests { header += ",resident_pages_g\(g)" }
    fputs(header + "\n", f)
    var previous: Row? = nil
    for r in rows {
      let p = previous
      var line = "\(fixed(r.time, 3)),\(r.accesses - (p?.accesses ?? 0)),\(r.faults - (p?.faults ?? 0)),"
      line += "\(r.zeroFill - (p?.zeroFill ?? 0)),\(r.swapIn - (p?.swapIn ?? 0)),"
      line += "\(r.evictions - (p?.evictions ?? 0)),\(r.pageouts - (p?.pageouts ?? 0)),\(r.freeFrames),\(r.resident)"
      for g in r.residentPerGuest { line += ",\(g)" }
      fputs(line + "\n", f)
      previous = r
    }
  }
}

/// `x` with `digits` decimals.
func fixed(_ x: Double, _ digits: Int) -> String {
  var scale = 1.0
  for _ in 0..<digits { scale *= 10 }
  let v = (x * scale).rounded() / scale
  var s = "\(v)"
  if let dot = s.firstIndex(of: ".") {
    let decimals = s.distance(from: dot, to: s.endIndex) - 1
    if decimals < digits { s += String(repeating: "0", count: digits - decimals) }
    if digits == 0 { s = String(s[..<dot]) }
  }
  return s
}

/// 1234567 -> "1.23M".
func count(_ n: Int) -> String {
  if n >= 1_000_000 { return fixed(Double(n) / 1e6, 2) + "M" }
  if n >= 10_000 { return fixed(Double(n) / 1e3, 1) + "k" }
  return "\(n)"
}
