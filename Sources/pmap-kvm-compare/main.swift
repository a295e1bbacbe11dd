import Pmap
import PmapHost
import PmapKVM
import PmapNative

let m = SimulatedMachine(ramSize: 64 << 20, pageTableFrames: 1023)
let pmap = try m.makeNativePmap()
let frames = (0..<HarnessLayout.frameCount).map { m.dataFrame($0) }
let h = try KVMAccessHarness(memory: m.memory, allocator: m.allocator, invalidation: m.sink, frames: frames, mode: PagingMode())
let f = m.dataFrame(100)
m.memory.pointer(to: f).initializeMemory(as: UInt8.self, repeating: 0xc3, count: 4096)
try pmap.enter(VirtualAddress(0x40_0000), f, protection: .all)
try pmap.enter(VirtualAddress(0x40_1000), f, protection: .read)
let script: [ScriptedAccess] = [
  .init(.read, VirtualAddress(0x40_0000)), .init(.write, VirtualAddress(0x40_0008), value: 0xc3c3),
  .init(.fetch, VirtualAddress(0x40_0000)), .init(.write, VirtualAddress(0x40_1000)),
  .init(.fetch, VirtualAddress(0x40_1000)), .init(.read, VirtualAddress(0x50_0000)),
  .init(.read, VirtualAddress(0x40_1000), privilege: .supervisor),
  .init(.read, VirtualAddress(0x40_1000), privilege: .supervisor, alignmentCheckFlag: true),
  .init(.fetch, VirtualAddress(0x40_0000), privilege: .supervisor),
  .init(.read, VirtualAddress(0xffff_8000_0000_0000), privilege: .supervisor),
  .init(.read, VirtualAddress(0xffff_8000_0000_0000)),
]
let t0 = ContinuousClock.now
let out = try h.run(script, root: pmap.root)
print(ContinuousClock.now - t0)
for (a, o) in zip(script, out) { print(a, "->", o) }
print(String(pmap.lookupLeaf(VirtualAddress(0x40_0000))!.value, radix: 16))
