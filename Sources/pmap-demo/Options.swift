import Glibc

/// The demo's settings, from the command line.
struct Options {
  var hostMiB = 64
  var guests = 3
  var guestMiB = 32
  var seconds = 10.0
  var workloads: [Workload.Kind] = [.zipf, .uniform, .sequential]
  var writeRatio = 0.3
  var vmmRatio = 0.01
  var csvPath: String? = nil
  var swapFile: String? = nil
  var intervalMs = 250
  var seed: UInt64 = 0x5EED
  var hardwareAccessedDirty = true
  var corrupt = false
  var softwareMMU = false

  static let usage = """
    usage: pmap-demo [options]
      --host-mib H         host frames for guest memory, MiB (default 64)
      --guests N           number of guests (default 3)
      --guest-mib G        RAM per guest, MiB (default 32; G x N should exceed H)
      --seconds S          how long the workload runs (default 10)
      --workloads LIST     per guest, cycled: uniform, zipf, seq (default zipf,uniform,seq)
      --write-ratio R      fraction of guest accesses that write (default 0.3)
      --vmm-ratio R        fraction of accesses made by the VMM through its native mapping (default 0.01)
      --swap-file PATH     swap to a real file with pread/pwrite (default: swap in memory)
      --csv FILE           write a time series (one row per interval) to FILE
      --interval-ms MS     progress and CSV interval (default 250)
      --seed N             random seed (default 24301)
      --no-ept-ad          guests' EPT without accessed/dirty bits (pages always look hot and dirty)
      --mmu model|software accesses through the x86 MMU model (default) or the simple stand-in
      --corrupt            self-test: change one resident word behind the MMU's back before the final
                           check, which must then fail (exit status 1)
    """

  /// Parses `arguments` (without the program name); exits with the usage on a bad one.
  init(_ arguments: [String]) {
    var i = 0
    func value() -> String {
      i += 1
      guard i < arguments.count else { Options.fail("missing value for \(arguments[i - 1])") }
      return arguments[i]
    }
    func int(_ s: String, _ range: ClosedRange<Int>) -> Int {
      guard let v = Int(s), range.contains(v) else { Options.fail("bad number \(s) (expected \(range))") }
      return v
    }
    func ratio(_ s: String) -> Double {
      guard let v = Double(s), v >= 0, v <= 1 else { Options.fail("bad ratio \(s) (expected 0...1)") }
      return v
    }
    while i < arguments.count {
      switch arguments[i] {
      case "--host-mib": hostMiB = int(value(), 1...65536)
      case "--guests": guests = int(value(), 1...64)
      case "--guest-mib": guestMiB = int(value(), 1...65536)
      case "--seconds":
        guard let s = Double(value()), s > 0, s <= 86400 else { Options.fail("bad --seconds") }
        seconds = s
      case "--workloads":
        let kinds = value().split(separator: ",").map { name -> Workload.Kind in
          guard let k = Workload.Kind(rawValue: String(name)) else { Options.fail("unknown workload \(name)") }
          return k
        }
        guard !kinds.isEmpty else { Options.fail("empty --workloads") }
        workloads = kinds
      case "--write-ratio": writeRatio = ratio(value())
      case "--vmm-ratio": vmmRatio = ratio(value())
      case "--csv": csvPath = value()
      case "--swap-file": swapFile = value()
      case "--interval-ms": intervalMs = int(value(), 10...60000)
      case "--seed":
        guard let s = UInt64(value()) else { Options.fail("bad --seed") }
        seed = s
      case "--no-ept-ad": hardwareAccessedDirty = false
      case "--corrupt": corrupt = true
      case "--mmu":
        switch value() {
        case "model": softwareMMU = false
        case "software": softwareMMU = true
        case let other: Options.fail("unknown MMU \(other) (model, software)")
        }
      case "-h", "--help":
        print(Options.usage)
        exit(0)
      default: Options.fail("unknown option \(arguments[i])")
      }
      i += 1
    }
  }

  static func fail(_ message: String) -> Never {
    printError("pmap-demo: \(message)\n\(usage)\n")
    exit(2)
  }
}

/// Writes `text` to standard error.
func printError(_ text: String) {
  var text = text
  text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
