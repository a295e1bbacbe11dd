import Pmap
import PmapEPT
import PmapHost
import PmapNative
import Testing

@Suite("PmapHost: simulated machine")
struct PmapHostTests {
  @Test("the machine's allocator hands out frames above 0 and below the data area")
  func allocatorLayout() throws {
    let machine = SimulatedMachine(ramSize: 16 << 20, pageTableFrames: 8)
    #expect(machine.dataBase == PhysicalAddress(9 << 12))
    #expect(machine.dataFrame(2) == PhysicalAddress(11 << 12))
    var frames: [PhysicalAddress] = []
    while let f = machine.allocator.allocateFrame() { frames.append(f) }
    #expect(frames.count == 8)
    #expect(frames.allSatisfy { $0.rawValue >= 4096 && $0 < machine.dataBase && $0.isPageAligned })
    #expect(machine.allocator.allocationCalls == 9)
    for f in frames { machine.allocator.releaseFrame(f) }
    #expect(machine.allocator.framesInUse == 0)
    #expect(machine.allocator.peakFramesInUse == 8)
  }

  @Test("failAtCall fails one call, or every call from then on with keepFailing")
  func failAtCall() {
    let machine = SimulatedMachine(ramSize: 16 << 20, pageTableFrames: 8)
    let allocator = machine.allocator
    allocator.failAtCall = 2
    #expect(allocator.allocateFrame() != nil)
    #expect(allocator.allocateFrame() == nil)
    #expect(allocator.allocateFrame() != nil)
    allocator.failAtCall = 4
    allocator.keepFailing = true
    #expect(allocator.allocateFrame() == nil)
    #expect(allocator.allocateFrame() == nil)
    #expect(allocator.failures == 3)
    #expect(allocator.framesInUse == 2)
  }
}
