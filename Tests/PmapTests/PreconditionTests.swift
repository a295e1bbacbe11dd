import Pmap
import PmapEPT
import PmapHost
import PmapNative
import Testing

/// Documented preconditions trap. Exit tests run their body in a child process; the body cannot
/// capture anything, so each builds what it needs.
@Suite("Documented preconditions trap")
struct PreconditionTests {
  @Test("a non-canonical VirtualAddress traps")
  func nonCanonicalVirtualAddress() async {
    await #expect(processExitsWith: .failure) {
      let raw = UInt64(0x0000_8000_0000_0000)
      _ = VirtualAddress(raw)
    }
  }

  @Test("a PhysicalAddress at 2^52 traps")
  func physicalAddressTooLarge() async {
    await #expect(processExitsWith: .failure) {
      let raw = UInt64(1) << 52
      _ = PhysicalAddress(raw)
    }
  }

  @Test("TableIndex(512) traps")
  func tableIndexOutOfRange() async {
    await #expect(processExitsWith: .failure) {
      let value = 512
      _ = TableIndex(value)
    }
  }

  @Test("the valid counterparts do not trap")
  func validValuesExitCleanly() async {
    await #expect(processExitsWith: .success) {
      _ = VirtualAddress(0x0000_7fff_ffff_f000)
      _ = VirtualAddress(0xffff_8000_0000_0000)
      _ = PhysicalAddress((1 << 52) - 1)
      _ = TableIndex(511)
    }
  }

  @Test("enter without .canFail traps when the allocator is exhausted (native)")
  func enterWithoutCanFailNative() async {
    await #expect(processExitsWith: .failure) {
      let machine = SimulatedMachine(ramSize: 16 << 20, pageTableFrames: 16)
      let pmap = try machine.makeNativePmap()
      machine.allocator.failAtCall = machine.allocator.allocationCalls + 1
      machine.allocator.keepFailing = true
      try? pmap.enter(VirtualAddress(0x1000), machine.dataFrame(0), protection: .read)
    }
  }

  @Test("enter without .canFail traps when the allocator is exhausted (EPT)")
  func enterWithoutCanFailEPT() async {
    await #expect(processExitsWith: .failure) {
      let machine = SimulatedMachine(ramSize: 16 << 20, pageTableFrames: 16)
      let pmap = try machine.makeEPTPmap()
      machine.allocator.failAtCall = machine.allocator.allocationCalls + 2
      machine.allocator.keepFailing = true
      try? pmap.enter(VirtualAddress(0x1000), machine.dataFrame(0), protection: .read)
    }
  }

  @Test("enter without .canFail succeeds while frames last")
  func enterWithoutCanFailWhileFramesLast() async {
    await #expect(processExitsWith: .success) {
      let machine = SimulatedMachine(ramSize: 16 << 20, pageTableFrames: 16)
      let pmap = try machine.makeNativePmap()
      machine.allocator.failAtCall = machine.allocator.allocationCalls + 4
      machine.allocator.keepFailing = true
      try pmap.enter(VirtualAddress(0x1000), machine.dataFrame(0), protection: .read)
    }
  }

  @Test("using a pmap after destroy() traps: extract")
  func useAfterDestroyExtract() async {
    await #expect(processExitsWith: .failure) {
      let machine = SimulatedMachine(ramSize: 16 << 20, pageTableFrames: 16)
      let pmap = try machine.makeNativePmap()
      try pmap.enter(VirtualAddress(0x1000), machine.dataFrame(0), protection: .read)
      pmap.destroy()
      _ = pmap.extract(VirtualAddress(0x1000))
    }
  }

  @Test("using a pmap after destroy() traps: enter")
  func useAfterDestroyEnter() async {
    await #expect(processExitsWith: .failure) {
      let machine = SimulatedMachine(ramSize: 16 << 20, pageTableFrames: 16)
      let pmap = try machine.makeEPTPmap()
      pmap.destroy()
      try? pmap.enter(VirtualAddress(0x1000), machine.dataFrame(0), protection: .read)
    }
  }

  @Test("using a pmap after destroy() traps: enter next to what it mapped (its page-table hint's region)")
  func useAfterDestroyEnterInHintedRegion() async {
    await #expect(processExitsWith: .failure) {
      let machine = SimulatedMachine(ramSize: 16 << 20, pageTableFrames: 16)
      let pmap = try machine.makeNativePmap()
      try pmap.enter(VirtualAddress(0x1000), machine.dataFrame(0), protection: .read)
      try pmap.enter(VirtualAddress(0x2000), machine.dataFrame(1), protection: .read)
      pmap.destroy()
      try? pmap.enter(VirtualAddress(0x3000), machine.dataFrame(2), protection: .read)
    }
  }

  @Test("a pmap over a page database that manages frames beyond MAXPHYADDR traps")
  func pageDatabaseBeyondPhysicalAddressLimit() async {
    // The last 16 frames below 2^36, and one more.
    await #expect(processExitsWith: .failure) { makePmapOverFramesBelowMAXPHYADDR(16, extra: 1) }
  }

  @Test("a pmap over a page database that ends at MAXPHYADDR does not trap")
  func pageDatabaseUpToPhysicalAddressLimit() async {
    await #expect(processExitsWith: .success) { makePmapOverFramesBelowMAXPHYADDR(16, extra: 0) }
  }

  @Test("using a pmap after destroy() traps: destroy again")
  func destroyTwice() async {
    await #expect(processExitsWith: .failure) {
      let machine = SimulatedMachine(ramSize: 16 << 20, pageTableFrames: 16)
      let pmap = try machine.makeNativePmap()
      pmap.destroy()
      pmap.destroy()
    }
  }

  @Test("a page operation on an unmanaged frame traps", arguments: 0..<4)
  func pageOperationOnUnmanagedFrame(_ which: Int) async {
    await #expect(processExitsWith: .failure) { [which] in
      let machine = SimulatedMachine(ramSize: 8 << 20, pageTableFrames: 64)
      let unmanaged = PhysicalAddress(0x1000)  // a page-table-area frame, below the managed range
      switch which {
      case 0: _ = machine.pages.isReferenced(unmanaged)
      case 1: _ = machine.pages.clearModify(unmanaged)
      case 2: _ = machine.pages.referencedCount(unmanaged)
      default: machine.pages.protectPage(unmanaged, to: [])
      }
    }
  }

  @Test("manages(_:) says which frames page operations accept")
  func managesAnswersWithoutTrapping() {
    let machine = SimulatedMachine(ramSize: 8 << 20, pageTableFrames: 64)
    #expect(!machine.pages.manages(PhysicalAddress(0x1000)))
    #expect(machine.pages.manages(machine.dataFrame(0)))
    #expect(!machine.pages.manages(PhysicalAddress(8 << 20)))
  }

  @Test("a VirtualRange of an unaligned page traps")
  func unalignedPageRange() async {
    await #expect(processExitsWith: .failure) {
      let va = VirtualAddress(0x1234)
      _ = VirtualRange(page: va)
    }
  }

  @Test("releasing a frame the StackFrameAllocator does not own traps")
  func foreignFrameRelease() async {
    await #expect(processExitsWith: .failure) {
      let machine = SimulatedMachine(ramSize: 8 << 20, pageTableFrames: 64)
      let allocator = StackFrameAllocator(
        memory: machine.memory, frames: PhysicalAddress(0x10_0000), to: PhysicalAddress(0x20_0000))
      allocator.releaseFrame(PhysicalAddress(0x30_0000))
    }
  }

  @Test("registering more pmaps than pmapCapacity traps")
  func pmapCapacityExceeded() async {
    await #expect(processExitsWith: .failure) {
      let machine = SimulatedMachine(ramSize: 8 << 20, pageTableFrames: 64)
      let pages = PageDatabase(
        memory: machine.memory, base: machine.dataFrame(0), pageCount: 16, allocator: machine.allocator,
        pmapCapacity: 1)
      let first = try NativePmap(
        memory: machine.memory, allocator: machine.allocator, invalidation: machine.sink, pages: pages)
      let second = try NativePmap(
        memory: machine.memory, allocator: machine.allocator, invalidation: machine.sink, pages: pages)
      withExtendedLifetime((first, second)) {}
    }
  }

  @Test("PhysicalMemory with a size that is not a multiple of 4 KiB traps")
  func physicalMemoryBadSize() async {
    await #expect(processExitsWith: .failure) {
      let base = UnsafeMutableRawPointer.allocate(byteCount: 8192, alignment: 4096)
      let counters = UnsafeMutablePointer<UInt16>.allocate(capacity: 2)
      _ = PhysicalMemory(directMapBase: base, size: 4095, wireCountStorage: counters)
    }
  }
}

/// Creates (and destroys) a native pmap over a page database of the last `count` frames below
/// 2^36, plus `extra` frames beyond, on a machine whose MAXPHYADDR is 36: for the exit tests of
/// the managed-range precondition.
func makePmapOverFramesBelowMAXPHYADDR(_ count: Int, extra: Int) {
  let ram = SimulatedRAM(size: 8 << 20, physicalAddressBits: 36)
  let allocator = StackFrameAllocator(memory: ram.memory, frames: PhysicalAddress(4096), to: PhysicalAddress(1 << 20))
  let pages = PageDatabase(
    memory: ram.memory, base: PhysicalAddress((1 << 36) - (UInt64(count) << 12)), pageCount: count + extra,
    allocator: allocator)
  // `try!`: creation itself must not fail here (it would pass the trapping test for a wrong
  // reason, and fail the other).
  let pmap = try! NativePmap(
    memory: ram.memory, allocator: allocator, invalidation: CountingInvalidationSink(), pages: pages)
  pmap.destroy()
}
