// pmap-kvm-compare: runs random page tables and access scripts in a KVM guest and through the
// x86 MMU model (PmapMMU), and reports every disagreement. See Documentation/KVMComparison.md.
//
//   pmap-kvm-compare [--seed S] [--seeds N] [--accesses A] [--supervisor-fraction F]
//                    [--user-upper-half] [--verbose]
//
// Runs seeds S ..< S+N with A accesses each; exits 0 when KVM and the model agree on everything,
// 1 on any disagreement, 2 on bad arguments, 77 when /dev/kvm is not usable (the one-line reason
// is printed).
import Glibc
import PmapKVM

struct Options {
  var seed: UInt64 = 1
  var seeds = 1
  var accesses = 2000
  var supervisorFraction = 0.1
  var userUpperHalf = !KVMVirtualMachine.isPagetableBasedVirtualMachine
  var verbose = false
}

func usage(_ message: String) -> Never {
  print("pmap-kvm-compare: \(message)")
  print(
    "usage: pmap-kvm-compare [--seed S] [--seeds N] [--accesses A] [--supervisor-fraction F] [--user-upper-half] "
      + "[--verbose]")
  exit(2)
}

var options = Options()
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
  func value() -> String {
    guard let v = arguments.popFirst() else { usage("\(argument) needs a value") }
    return v
  }
  switch argument {
  case "--seed": options.seed = UInt64(value()) ?? { usage("--seed takes an unsigned integer") }()
  case "--seeds": options.seeds = Int(value()).flatMap { $0 > 0 ? $0 : nil } ?? { usage("--seeds takes a count") }()
  case "--accesses":
    options.accesses = Int(value()).flatMap { $0 > 0 ? $0 : nil } ?? { usage("--accesses takes a count") }()
  case "--supervisor-fraction":
    options.supervisorFraction =
      Double(value()).flatMap { (0...1).contains($0) ? $0 : nil } ?? { usage("--supervisor-fraction takes 0...1") }()
  case "--user-upper-half": options.userUpperHalf = true
  case "--verbose": options.verbose = true
  default: usage("unknown argument \(argument)")
  }
}

if let reason = KVMVirtualMachine.unavailabilityReason {
  print("pmap-kvm-compare: skipped: \(reason)")
  exit(77)
}

let clock = ContinuousClock()
let start = clock.now
var accesses = 0
var entries = 0
var disagreements = 0
var faults = 0
var coverage: [String: Int] = [:]
var edits: [String: Int] = [:]
for seed in options.seed..<options.seed + UInt64(options.seeds) {
  let result: KVMComparisonResult
  do {
    result = try KVMComparison.run(
      seed: seed, accesses: options.accesses, supervisorFraction: options.supervisorFraction,
      userUpperHalf: options.userUpperHalf, oracle: MMUModelOracle())
  } catch {
    print("pmap-kvm-compare: seed \(seed): \(error)")
    exit(1)
  }
  accesses += result.accesses
  entries += result.entriesCompared
  faults += result.accesses - result.completed
  let found = result.outcomeMismatches.count + result.entryMismatches.count + result.dataMismatches.count
  disagreements += found
  if options.verbose || found != 0 { print(result) }
  coverage.merge(result.coverage, uniquingKeysWith: +)
  edits.merge(result.edits, uniquingKeysWith: +)
}
let elapsed = clock.now - start
if options.verbose {
  print("table construction and hand edits (all seeds):")
  for key in edits.keys.sorted() { print("  \(key): \(edits[key]!)") }
  print("outcomes as KVM reported them (all seeds):")
  for key in coverage.keys.sorted() { print("  \(key): \(coverage[key]!)") }
}
print(
  "pmap-kvm-compare: \(options.seeds) seeds, \(accesses) accesses compared (\(faults) faulted), "
    + "\(entries) page-table entries compared, \(disagreements) disagreements, \(elapsed)")
exit(disagreements == 0 ? 0 : 1)
