import Pmap
import PmapDifferential
import PmapHost
import Testing

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

// The randomized differential test: pmaps of both formats sharing managed pages, against the
// reference model of the PmapDifferential module (which states the rules it follows).

@Suite("differential: random operations against a reference model")
struct DifferentialTests {
  static func environment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
  }

  /// PMAP_DIFFERENTIAL_OPS (default 100 000) operations from PMAP_DIFFERENTIAL_SEED (default a
  /// fixed seed; decimal or 0x-hex).
  @Test("native, EPT with A/D, EPT without A/D and native pmaps sharing 64 frames")
  func randomOperations() throws {
    let operations = Self.environment("PMAP_DIFFERENTIAL_OPS").flatMap { Int($0) } ?? 100_000
    let seed: UInt64 =
      Self.environment("PMAP_DIFFERENTIAL_SEED").flatMap { s in
        s.hasPrefix("0x") ? UInt64(s.dropFirst(2), radix: 16) : UInt64(s)
      } ?? 0x5eed_0f_d1ff
    let clock = ContinuousClock()
    let start = clock.now
    var summary = ""
    try withPVMachine(
      ramSize: UInt64(128 + 1 + Differential<SplitMix64>.frameCount) << 12, pageTableFrames: 128,
      recordsInvalidations: false
    ) { machine in
      var run = try Differential(
        machine: machine, kinds: [.native, .ept, .eptNoAD, .native], source: SplitMix64(seed: seed),
        label: "seed 0x\(String(seed, radix: 16))")
      run.run(operations)
      for message in run.failureMessages { Issue.record(Comment(rawValue: message)) }
      #expect(
        run.failures == 0,
        "seed 0x\(String(seed, radix: 16)): \(run.failures) mismatches, first at op \(run.opIndex) (PMAP_DIFFERENTIAL_SEED=0x\(String(seed, radix: 16)))"
      )
      #expect(run.opIndex == operations || run.failures > 0)
      let shared = run.frameMappings.filter { $0.count > 1 }.count
      summary =
        "\(run.opIndex) operations, seed 0x\(String(seed, radix: 16)), \(run.entries.count) mappings at the end "
        + "(\(shared) frames mapped more than once): \(run.counts.sorted { $0.key < $1.key })"
    }
    print("differential: \(summary) in \(clock.now - start)")
  }
}
