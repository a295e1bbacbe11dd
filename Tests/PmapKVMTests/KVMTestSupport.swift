import Pmap
import PmapHost
import PmapKVM
import PmapNative
import Testing

/// Whether the KVM tests can run here. When they cannot, the reason is printed once, in one
/// line, and every test that needs KVM is recorded as skipped (Swift Testing `.enabled(if:)`).
enum KVMAvailability {
  static let reason: String? = {
    let reason = KVMVirtualMachine.unavailabilityReason
    if let reason { print("PmapKVMTests: KVM tests skipped: \(reason)") }
    return reason
  }()

  static var isUsable: Bool { reason == nil }
}

/// A small hand-made address space for tests whose expected outcomes come from the SDM alone.
final class HandMadeSpace {
  let machine = SimulatedMachine(ramSize: 16 << 20, pageTableFrames: 255, recordsInvalidations: false)
  let pmap: NativePmap
  /// Frames 0 ..< HarnessLayout.frameCount of the data area belong to the harness.
  var harnessFrames: [PhysicalAddress] { (0..<HarnessLayout.frameCount).map { machine.dataFrame($0) } }

  init() throws {
    pmap = try machine.makeNativePmap(kind: .user)
  }

  /// The data frame used for page `n` (after the harness's frames), filled with `ret` bytes
  /// except for the first word, which holds `marker`.
  func frame(_ n: Int, marker: UInt64) -> PhysicalAddress {
    let f = machine.dataFrame(HarnessLayout.frameCount + n)
    machine.memory.pointer(to: f).initializeMemory(as: UInt8.self, repeating: 0xc3, count: 4096)
    machine.memory.pointer(to: f).storeBytes(of: marker, as: UInt64.self)
    return f
  }

  /// Maps `va` to a fresh frame `n` with `protection`; A and D clear.
  @discardableResult
  func map(_ va: UInt64, frame n: Int, _ protection: Protection, marker: UInt64 = 0xc3) throws -> EntryPointer {
    try pmap.enter(VirtualAddress(va), frame(n, marker: marker), protection: protection)
    let leaf = try #require(pmap.lookupLeaf(VirtualAddress(va)))
    leaf.entry.clearBits(NativePTE.accessed | NativePTE.dirty)
    return leaf.entry
  }

  func harness(_ mode: PagingMode) throws -> KVMAccessHarness {
    try KVMAccessHarness(
      memory: machine.memory, allocator: machine.allocator, invalidation: machine.sink, frames: harnessFrames,
      mode: mode)
  }
}
