import Pmap
import PmapHost
import Testing

/// Records what a pmap asks of its allocator, forwarding to a ``StackFrameAllocator``.
final class ZeroTrackingAllocator: FrameAllocator {
  let base: StackFrameAllocator
  let owner: AnyObject
  var zeroedHandedOut = 0
  var dirtyHandedOut = 0
  var zeroedTakenBack = 0
  var plainTakenBack = 0

  init(_ machine: SimulatedMachine) {
    base = StackFrameAllocator(memory: machine.memory, frames: machine.dataFrame(0), to: machine.dataFrame(256))
    owner = machine
  }

  func allocateFrame() -> PhysicalAddress? { base.allocateFrame() }
  func releaseFrame(_ frame: PhysicalAddress) {
    plainTakenBack += 1
    base.releaseFrame(frame)
  }
  func allocatePageTableFrame() -> (frame: PhysicalAddress, isZeroed: Bool)? {
    let answer = base.allocatePageTableFrame()
    if let answer { if answer.isZeroed { zeroedHandedOut += 1 } else { dirtyHandedOut += 1 } }
    return answer
  }
  func releaseZeroedFrame(_ frame: PhysicalAddress) {
    zeroedTakenBack += 1
    base.releaseZeroedFrame(frame)
  }
}

@Suite("Zeroed page-table frames (FreeBSD's PG_ZERO)")
struct ZeroedFrameTests {
  /// Whether the 4 KiB frame at `frame` is all zero.
  static func isZero(_ frame: PhysicalAddress, _ memory: PhysicalMemory) -> Bool {
    (0..<512).allSatisfy { memory.entry(in: frame, at: $0).load() == 0 }
  }

  @Test("the allocator hands zeroed frames back whole and never calls another frame zeroed")
  func stackAllocator() {
    let machine = makeMachine()
    let memory = machine.memory
    let allocator = StackFrameAllocator(memory: memory, frames: machine.dataFrame(0), to: machine.dataFrame(4))
    let a = allocator.allocateFrame()!
    let b = allocator.allocateFrame()!
    let c = allocator.allocateFrame()!
    // A frame given back dirty, one given back zeroed, one written to first.
    memory.entry(in: a, at: 7).storeRelaxed(0x1234)
    allocator.releaseFrame(a)
    allocator.releaseZeroedFrame(b)
    #expect(allocator.framesAvailable == 3)
    // Page tables get the zeroed frame first, its link word cleared: all zero again.
    let first = allocator.allocatePageTableFrame()
    #expect(first?.frame == b && first?.isZeroed == true)
    #expect(Self.isZero(b, memory))
    // Then the dirty one, not called zeroed; then a never-used one, not called zeroed either.
    let second = allocator.allocatePageTableFrame()
    #expect(second?.frame == a && second?.isZeroed == false)
    let third = allocator.allocatePageTableFrame()
    #expect(third?.frame != nil && third?.isZeroed == false)
    #expect(allocator.allocatePageTableFrame() == nil, "four frames, all handed out")
    // Other users take dirty frames first and zeroed ones last.
    allocator.releaseZeroedFrame(b)
    allocator.releaseFrame(c)
    #expect(allocator.allocateFrame() == c)
    #expect(allocator.allocateFrame() == b)
    #expect(allocator.framesInUse == 4)
  }

  @Test("page tables a pmap frees empty go back zeroed and are reused without zeroing", arguments: Format.allCases)
  func reuse(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let allocator = ZeroTrackingAllocator(machine)
      // A dirty frame given back plainly: the root gets it, and must be zeroed.
      let dirty = try #require(allocator.base.allocateFrame())
      for i in 0..<512 { machine.memory.entry(in: dirty, at: i).storeRelaxed(0xffff_ffff_ffff_ffff) }
      allocator.base.releaseFrame(dirty)
      let pmap = try Pmap<F>(memory: machine.memory, allocator: allocator, invalidation: machine.sink)
      #expect(pmap.root == dirty && Self.isZero(dirty, machine.memory))
      let r = try range(address(pml4: 3, pdpt: 5, pd: 100, pt: 510), bytes: 4 << 12)  // two page tables
      try pmap.enter(r, startingAt: machine.dataFrame(300), protection: .readWrite)
      #expect(pmap.statistics.pageTablePages == 1 + 1 + 1 + 2)
      #expect(allocator.dirtyHandedOut == 5 && allocator.zeroedHandedOut == 0)
      #expect(pmap.checkInvariants() == nil)
      try pmap.remove(r)
      #expect(allocator.zeroedTakenBack == 4 && allocator.plainTakenBack == 0)
      // The same range again: every table frame comes back zeroed, and the tree is right.
      try pmap.enter(r, startingAt: machine.dataFrame(300), protection: .readWrite)
      #expect(allocator.zeroedHandedOut == 4 && allocator.dirtyHandedOut == 5)
      #expect(pmap.checkInvariants() == nil)
      #expect(pmap.extract(r.start.plus(3 << 12)) == machine.dataFrame(303))
      pmap.destroy()
      #expect(allocator.zeroedTakenBack == 4 + 5, "destroy gives every table back zeroed, the root too")
      #expect(allocator.base.framesInUse == 0)
    }
    try check(format.ops)
  }
}
