import Pmap
import PmapHost

/// Choices read from a fuzzer's input: one byte per choice below 256, two above; the run ends
/// when the bytes do.
public struct ByteChoices: ChoiceSource {
  let bytes: [UInt8]
  var position = 0

  /// Choices from `bytes`.
  public init(_ bytes: [UInt8]) { self.bytes = bytes }

  public mutating func below(_ n: Int) -> Int {
    var value = 0
    let width = n <= 256 ? 1 : 2
    for _ in 0..<width {
      value = value << 8 | Int(position < bytes.count ? bytes[position] : 0)
      position += 1
    }
    return value % n
  }

  public var isExhausted: Bool { position >= bytes.count }
}

/// Runs one fuzzer input: a fresh machine with a native pmap, an EPT pmap with A/D, an EPT pmap
/// without A/D and another native pmap sharing 64 managed frames; the input's bytes choose the
/// operations (enter, remove, protect, unwire, accesses, every page operation). After every
/// operation what it touched is compared with the model (translations, pv-lists, counters);
/// every 8 operations and at the end, the full checkpoint runs (every mapping, every pv-list,
/// counters, both invariant checkers).
///
/// - Returns: the mismatches found (empty when the pmaps agree with the model throughout).
public func runFuzzInput(_ bytes: [UInt8], maxOperations: Int = 4096) -> [String] {
  let frames = Differential<ByteChoices>.frameCount
  let machine = SimulatedMachine(
    ramSize: UInt64(128 + 1 + frames) << 12, pageTableFrames: 128, recordsInvalidations: false)
  let ram = machine.ram
  defer { withExtendedLifetime(ram) {} }
  do {
    var run = try Differential(
      machine: machine, kinds: [.native, .ept, .eptNoAD, .native], source: ByteChoices(bytes), label: "fuzz input")
    run.checkpointInterval = 8
    run.run(maxOperations)
    return run.failureMessages
  } catch {
    return ["setting up the pmaps failed: \(error)"]
  }
}
