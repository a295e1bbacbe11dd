import Glibc
import Pmap
import PmapHost
import PmapNative
import Testing

@testable import PmapKVM

@Suite("KVM scenarios and guest code (no KVM needed)")
struct KVMScenarioTests {
  @Test("the same seed gives the same mode, script and tables; another seed does not")
  func deterministic() {
    let a = KVMScenario(seed: 42, accesses: 300)
    let b = KVMScenario(seed: 42, accesses: 300)
    let c = KVMScenario(seed: 43, accesses: 300)
    #expect(a.mode == b.mode)
    #expect(a.script == b.script)
    #expect(a.edits == b.edits)
    #expect(a.script != c.script)
    let tableBytes = Int(a.machine.dataBase.rawValue)
    #expect(memcmp(a.machine.memory.directMapBase, b.machine.memory.directMapBase, tableBytes) == 0)
  }

  @Test("scripts stay out of the harness's slots, are aligned, and keep CPL3 in the lower half when asked")
  func scriptShape() {
    let s = KVMScenario(seed: 7, accesses: 2000, userUpperHalf: false)
    #expect(s.script.count == 2000)
    #expect(s.script.allSatisfy { !HarnessLayout.isReserved($0.linear) && $0.linear & 7 == 0 })
    #expect(s.script.allSatisfy { $0.privilege == .supervisor || $0.linear >> 63 == 0 })
    #expect(s.script.contains { $0.privilege == .user } && s.script.contains { $0.privilege == .supervisor })
    for kind in AccessKind.allCases { #expect(s.script.contains { $0.kind == kind }) }
    for slot in HarnessLayout.reservedSlots { #expect(s.machine.memory.entry(in: s.root, at: slot).load() == 0) }
    #expect(s.edits["enter 4K", default: 0] > 0 && s.edits["A/D cleared", default: 0] > 0)
  }

  @Test("every exception entry pushes the vector and jumps to the common tail", arguments: 0..<32)
  func exceptionEntry(vector: Int) {
    let code = GuestCode.exceptionEntry(vector)
    let pushesZero = !HarnessLayout.vectorsWithErrorCode.contains(vector)
    #expect(code.prefix(pushesZero ? 2 : 0) == (pushesZero ? [0x6a, 0x00] : []))
    let jump = code.count - 5
    #expect(code[jump - 2] == 0x6a && code[jump - 1] == UInt8(vector) && code[jump] == 0xe9)
    let displacement = code[(jump + 1)...].reversed().reduce(Int32(0)) { $0 << 8 | Int32($1) }
    let target = Int64(HarnessLayout.exceptionEntryOffset(vector)) + Int64(code.count) + Int64(displacement)
    #expect(target == Int64(HarnessLayout.exceptionCommonOffset))
    #expect(code.count <= 16)
  }

  @Test("gates and descriptors encode the SDM's fields")
  func descriptors() {
    let (low, high) = GuestCode.interruptGate(offset: 0xffff_ff80_1234_5678, selector: 0x08)
    #expect(low & 0xffff == 0x5678 && (low >> 48) & 0xffff == 0x1234 && high == 0xffff_ff80)
    #expect((low >> 16) & 0xffff == 0x08 && (low >> 40) & 0xff == 0x8e)
    let (tssLow, tssHigh) = GuestCode.tssDescriptor(base: 0xffff_ff80_0000_1100)
    #expect(tssLow & 0xffff == 0x67 && (tssLow >> 16) & 0xff_ffff == 0x1100 && (tssLow >> 40) & 0xff == 0x8b)
    #expect(tssHigh == 0xffff_ff80)
  }
}
