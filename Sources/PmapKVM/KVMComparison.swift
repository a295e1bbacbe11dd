import Glibc
import Pmap
import PmapHost
import PmapNative

/// Performs scripted accesses the way the architecture says, on its own memory: the model under
/// comparison (the seam between the harness and whatever it is compared with).
public protocol AccessOracle: AnyObject {
  /// Performs `access` with CR3 = `root` over `memory` under `mode` on a CPU with `features`
  /// (MAXPHYADDR, 1 GiB pages): sets the A/D bits the access sets, stores a write's value at
  /// the physical address it reaches, and returns the outcome (with the value a read loads).
  func perform(
    _ access: ScriptedAccess, root: PhysicalAddress, memory: PhysicalMemory, mode: PagingMode,
    features: GuestPagingFeatures
  ) -> AccessOutcome
}

/// An access on which KVM and the model disagree.
public struct OutcomeMismatch: Hashable, Sendable, CustomStringConvertible {
  /// Its position in the script.
  public var index: Int
  /// The access.
  public var access: ScriptedAccess
  /// What the KVM guest reported.
  public var kvm: AccessOutcome
  /// What the model computed.
  public var model: AccessOutcome
  public var description: String { "#\(index) \(access): KVM \(kvm), model \(model)" }
}

/// A page-table entry that ended the run with different values.
public struct EntryMismatch: Hashable, Sendable, CustomStringConvertible {
  /// The level of the table holding it (4 = PML4).
  public var level: PageTableLevel
  /// The first linear address the entry covers.
  public var linear: UInt64
  /// The entry's physical address.
  public var address: PhysicalAddress
  /// The entry as the KVM guest left it.
  public var kvm: UInt64
  /// The entry as the model left it.
  public var model: UInt64
  public var description: String {
    "level \(level.rawValue) entry for 0x\(String(linear, radix: 16)) at 0x\(String(address.rawValue, radix: 16)): "
      + "KVM 0x\(String(kvm, radix: 16)), model 0x\(String(model, radix: 16)) "
      + "(differ in 0x\(String(kvm ^ model, radix: 16)))"
  }
}

/// Everything one comparison run found.
public struct KVMComparisonResult: Sendable, CustomStringConvertible {
  /// The seed of the scenario.
  public var seed: UInt64
  /// The paging controls of the run.
  public var mode: PagingMode
  /// The guest's paging features (also given to the model).
  public var features: GuestPagingFeatures
  /// The script's accesses (all compared).
  public var accesses: Int
  /// Accesses that completed (per KVM).
  public var completed: Int
  /// Faults by vector (per KVM).
  public var faultsByVector: [UInt8: Int]
  /// Present page-table entries compared after the run.
  public var entriesCompared: Int
  /// Entries whose A or D bits the run set.
  public var entriesChangedByRun: Int
  /// 8-byte words of data memory compared (every scripted write lands in it).
  public var dataWordsCompared: Int
  /// Accesses on which KVM and the model disagree.
  public var outcomeMismatches: [OutcomeMismatch]
  /// Page-table entries on which they disagree after the run.
  public var entryMismatches: [EntryMismatch]
  /// Physical addresses of data words that differ.
  public var dataMismatches: [UInt64]
  /// KVM_RUN calls.
  public var kvmRuns: Int
  /// Wall-clock seconds of the KVM run.
  public var kvmSeconds: Double
  /// Wall-clock seconds of the model run.
  public var modelSeconds: Double
  /// The hand edits made to the tables, by kind.
  public var edits: [String: Int]
  /// What happened, by privilege, kind and outcome class (e.g. "CPL3 write: #PF(P|W|U)"),
  /// as KVM reported it: what the run covered.
  public var coverage: [String: Int]

  /// Whether KVM and the model agreed on everything.
  public var agrees: Bool { outcomeMismatches.isEmpty && entryMismatches.isEmpty && dataMismatches.isEmpty }

  public var description: String {
    let faults = faultsByVector.keys.sorted().map { "vector \($0): \(faultsByVector[$0]!)" }.joined(separator: ", ")
    var lines = [
      "seed \(seed), \(mode); guest CPUID: \(features)",
      "accesses compared: \(accesses) (\(completed) completed; \(faults.isEmpty ? "no faults" : faults))",
      "page-table entries compared: \(entriesCompared) (\(entriesChangedByRun) had A/D set by the run); "
        + "data words compared: \(dataWordsCompared)",
      "disagreements: \(outcomeMismatches.count) outcomes, \(entryMismatches.count) entries, "
        + "\(dataMismatches.count) data words",
      "KVM: \(kvmRuns) runs in \(formatted(kvmSeconds)) s; model: \(formatted(modelSeconds)) s",
    ]
    lines += outcomeMismatches.prefix(20).map { "  outcome \($0)" }
    lines += entryMismatches.prefix(20).map { "  entry \($0)" }
    return lines.joined(separator: "\n")
  }

  private func formatted(_ seconds: Double) -> String {
    let milliseconds = Int((seconds * 1000).rounded())
    return
      "\(milliseconds / 1000).\(String(repeating: "0", count: 3 - String(milliseconds % 1000).count))\(milliseconds % 1000)"
  }
}

/// Runs one scenario in KVM and through a model, and compares them access by access, entry by
/// entry and word by word.
public enum KVMComparison {
  /// Builds ``KVMScenario`` of `seed`, copies the whole guest memory, runs the script in a KVM
  /// guest on the original and through `oracle` on the copy, and compares: every access's
  /// outcome (completed, or vector, error code and CR2), every page-table entry reachable from
  /// CR3 (so every A and D bit), and every data word (so every write's destination).
  ///
  /// `userUpperHalf` (default: unless kvm_pvm serves /dev/kvm) lets CPL3 accesses go to the
  /// upper half; under kvm_pvm they always fault not-present (see Documentation/KVMComparison.md).
  ///
  /// - Throws: ``KVMError`` when KVM is unavailable or the harness fails; disagreements are not
  ///   errors, they are in the result.
  public static func run(
    seed: UInt64, accesses: Int, mode: PagingMode? = nil, supervisorFraction: Double = 0.1,
    userUpperHalf: Bool = !KVMVirtualMachine.isPagetableBasedVirtualMachine, oracle: any AccessOracle
  ) throws(KVMError) -> KVMComparisonResult {
    let features = try KVMVirtualMachine.supportedFeatures()
    let scenario = KVMScenario(
      seed: seed, accesses: accesses, mode: mode, supervisorFraction: supervisorFraction,
      physicalAddressBits: features.physicalAddressBits, userUpperHalf: userUpperHalf)
    let memory = scenario.machine.memory
    let copy = SimulatedRAM(size: memory.size)
    memcpy(copy.memory.directMapBase, memory.directMapBase, Int(memory.size))
    let initial = SimulatedRAM(size: memory.size)
    memcpy(initial.memory.directMapBase, memory.directMapBase, Int(memory.size))

    let harness = try KVMAccessHarness(
      memory: memory, allocator: scenario.machine.allocator, invalidation: scenario.machine.sink,
      frames: scenario.harnessFrames, mode: scenario.mode)
    let start = ContinuousClock.now
    let kvm = try harness.run(scenario.script, root: scenario.root)
    let kvmTime = ContinuousClock.now - start
    let modelStart = ContinuousClock.now
    let model = scenario.script.map {
      oracle.perform(
        $0, root: scenario.root, memory: copy.memory, mode: scenario.mode, features: harness.features)
    }
    let modelTime = ContinuousClock.now - modelStart

    var outcomeMismatches: [OutcomeMismatch] = []
    var faults: [UInt8: Int] = [:]
    var coverage: [String: Int] = [:]
    for (i, (k, m)) in zip(kvm, model).enumerated() {
      let a = scenario.script[i]
      let what: String
      switch k {
      case .completed: what = "completed"
      case .fault(14, let code, _): what = "#PF(\(FaultErrorCode(rawValue: code)))"
      case .fault(let vector, _, _): what = "vector \(vector)"
      }
      let cpl = a.privilege == .user ? "CPL3" : (a.alignmentCheckFlag ? "CPL0+AC" : "CPL0")
      coverage["\(cpl) \(a.kind): \(what)", default: 0] += 1
      if k != m { outcomeMismatches.append(OutcomeMismatch(index: i, access: scenario.script[i], kvm: k, model: m)) }
      if case .fault(let vector, _, _) = k { faults[vector, default: 0] += 1 }
    }
    var result = KVMComparisonResult(
      seed: seed, mode: scenario.mode, features: harness.features, accesses: kvm.count,
      completed: kvm.filter { if case .completed = $0 { true } else { false } }.count, faultsByVector: faults,
      entriesCompared: 0,
      entriesChangedByRun: 0, dataWordsCompared: 0, outcomeMismatches: outcomeMismatches, entryMismatches: [],
      dataMismatches: [], kvmRuns: harness.runCount, kvmSeconds: seconds(kvmTime), modelSeconds: seconds(modelTime),
      edits: scenario.edits, coverage: coverage)
    compareTables(kvm: memory, model: copy.memory, initial: initial.memory, root: scenario.root, into: &result)
    compareData(
      kvm: memory, model: copy.memory, from: scenario.machine.dataFrame(HarnessLayout.frameCount).rawValue,
      into: &result)
    return result
  }

  private static func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
  }

  /// Compares every entry of every table reachable from `root` in the KVM memory with the same
  /// entry in the model's memory (the two trees have the same shape: only A/D bits may change).
  static func compareTables(
    kvm: PhysicalMemory, model: PhysicalMemory, initial: PhysicalMemory, root: PhysicalAddress,
    into result: inout KVMComparisonResult
  ) {
    func visit(_ table: PhysicalAddress, _ level: PageTableLevel, base: UInt64) {
      for i in 0..<512 {
        let k = kvm.entry(in: table, at: i).load()
        let m = model.entry(in: table, at: i).load()
        var linear = base | UInt64(i) << level.shift
        if linear & (1 << 47) != 0 { linear |= 0xffff_0000_0000_0000 }
        if k & NativePTE.present != 0 { result.entriesCompared += 1 }
        if k != initial.entry(in: table, at: i).load() { result.entriesChangedByRun += 1 }
        if k != m {
          result.entryMismatches.append(
            EntryMismatch(
              level: level, linear: linear,
              address: PhysicalAddress(table.rawValue + UInt64(i) * 8), kvm: k, model: m))
        }
        guard k & NativePTE.present != 0, let child = level.child,
          level == .pml4 || k & NativePTE.pageSize == 0
        else { continue }
        let frame = k & NativePTE.frameMask
        if frame + 0x1000 <= kvm.size { visit(PhysicalAddress(frame), child, base: linear) }
      }
    }
    visit(root, .pml4, base: 0)
  }

  /// Compares the data area word by word (writes land there).
  static func compareData(
    kvm: PhysicalMemory, model: PhysicalMemory, from start: UInt64, into result: inout KVMComparisonResult
  ) {
    let k = kvm.pointer(to: PhysicalAddress(start)).assumingMemoryBound(to: UInt64.self)
    let m = model.pointer(to: PhysicalAddress(start)).assumingMemoryBound(to: UInt64.self)
    let words = Int((kvm.size - start) / 8)
    result.dataWordsCompared = words
    for i in 0..<words where k[i] != m[i] {
      result.dataMismatches.append(start + UInt64(i) * 8)
    }
  }
}
