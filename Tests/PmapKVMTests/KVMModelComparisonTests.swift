import Pmap
import PmapKVM
import PmapMMU
import Testing

/// An oracle that gets one thing wrong on purpose, to show the comparison notices.
final class MisinformedOracle: AccessOracle {
  enum Mistake { case ignoresWriteProtect, corruptsWrites }
  let mistake: Mistake
  let model = MMUModelOracle()
  init(_ mistake: Mistake) { self.mistake = mistake }

  func perform(
    _ access: ScriptedAccess, root: PhysicalAddress, memory: PhysicalMemory, mode: PagingMode,
    features: GuestPagingFeatures
  ) -> AccessOutcome {
    switch mistake {
    case .ignoresWriteProtect:
      var lax = mode
      lax.writeProtect = false
      return model.perform(access, root: root, memory: memory, mode: lax, features: features)
    case .corruptsWrites:
      var wrong = access
      wrong.value ^= 1 << 40
      return model.perform(wrong, root: root, memory: memory, mode: mode, features: features)
    }
  }
}

@Suite("KVM against the MMU model", .enabled(if: KVMAvailability.isUsable, "needs a usable /dev/kvm"))
struct KVMModelComparisonTests {
  @Test("random tables and scripts: KVM and the model agree on every access, entry and data word", arguments: 1...4)
  func agree(seed: UInt64) throws {
    let result = try KVMComparison.run(seed: seed, accesses: 1000, oracle: MMUModelOracle())
    #expect(result.agrees, "\(result)")
    #expect(result.accesses == 1000)
    // The run is worth something: accesses completed and faulted in several ways, and A/D changed.
    #expect(result.completed > 50)
    let pageFaultKinds = Set(result.coverage.keys.filter { $0.contains("#PF") }.map { $0.split(separator: ":")[1] })
    #expect(pageFaultKinds.count >= 6)
    #expect(result.entriesChangedByRun > 20)
  }

  @Test("a model that ignores CR0.WP is caught on CPL0 writes")
  func wrongWriteProtect() throws {
    let result = try KVMComparison.run(
      seed: 11, accesses: 1000, mode: PagingMode(), supervisorFraction: 0.5,
      oracle: MisinformedOracle(.ignoresWriteProtect))
    #expect(!result.outcomeMismatches.isEmpty)
    #expect(
      result.outcomeMismatches.allSatisfy {
        $0.access.kind == .write && $0.access.privilege == .supervisor
          && $0.kvm == .pageFault([.present, .write], at: $0.access.linear)
      })
  }

  @Test("a model that sets A in upper levels on a fault is caught in the final entries")
  func wrongAccessedPolicy() throws {
    let result = try KVMComparison.run(
      seed: 12, accesses: 1000, oracle: MMUModelOracle(accessedFlagPolicy: .upperLevelsOnFault))
    #expect(result.outcomeMismatches.isEmpty)
    #expect(!result.entryMismatches.isEmpty)
    #expect(result.entryMismatches.allSatisfy { $0.kvm ^ $0.model == NativeBitsForTests.accessed })
  }

  @Test("a model that stores wrong values is caught in data memory and in later reads")
  func corruptedWrites() throws {
    let result = try KVMComparison.run(seed: 13, accesses: 1000, oracle: MisinformedOracle(.corruptsWrites))
    #expect(!result.dataMismatches.isEmpty)
    #expect(result.outcomeMismatches.allSatisfy { $0.access.kind == .read })
    #expect(result.entryMismatches.isEmpty)
  }
}

enum NativeBitsForTests {
  static let accessed: UInt64 = 1 << 5
}
