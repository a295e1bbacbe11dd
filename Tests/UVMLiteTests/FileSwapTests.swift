import Glibc
import Pmap
import PmapHost
import Testing
import UVMLite
import UVMLiteHost

@Suite struct FileSwapTests {
  func tempPath() -> String { "/tmp/uvmlite-swap-test-\(getpid())-\(UInt64.random(in: 0...UInt64.max))" }

  @Test func roundTripsPagesThroughARealFile() throws {
    let path = tempPath()
    let store = try FileSwapStore(path: path, slotCount: 8)
    #expect(access(path, F_OK) == 0)
    let page = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
    let back = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
    defer {
      page.deallocate()
      back.deallocate()
    }
    for i in 0..<4096 { page[i] = UInt8(truncatingIfNeeded: i &* 7 &+ 3) }
    back.initializeMemory(as: UInt8.self, repeating: 0xff)
    try store.writePage(UnsafeRawPointer(page.baseAddress!), toSlot: 5)
    try store.readPage(fromSlot: 5, into: back.baseAddress!)
    #expect(Array(back) == Array(page))
    #expect(throws: SwapIOError.slotOutOfRange) { try store.writePage(UnsafeRawPointer(page.baseAddress!), toSlot: 8) }
    #expect(throws: SwapIOError.slotOutOfRange) { try store.readPage(fromSlot: -1, into: back.baseAddress!) }
  }

  @Test func removesItsFileAndReportsOpenErrors() throws {
    let path = tempPath()
    do { _ = try FileSwapStore(path: path, slotCount: 1) }
    #expect(access(path, F_OK) != 0)
    #expect(throws: FileSwapStore.OpenError.self) { try FileSwapStore(path: "/nonexistent-dir/x", slotCount: 1) }
  }

  @Test func aGuestPagesThroughTheFile() throws {
    let ram = SimulatedRAM(size: 600 << 12)
    let tables = TestFrameAllocator(
      memory: ram.memory, frames: PhysicalAddress(4096), to: PhysicalAddress(512 << 12), backing: ram)
    let pages = PageDatabase(memory: ram.memory, base: PhysicalAddress(512 << 12), pageCount: 88, allocator: tables)
    let store = try FileSwapStore(path: tempPath(), slotCount: 256)
    let uvm = UVM(pool: FramePool(pages: pages), swap: store, pageTableAllocator: tables, backing: ram)
    let mmu = SoftwareMMU(uvm: uvm)
    let g = try uvm.makeGuest(byteCount: 200 << 12, invalidation: RecordingInvalidationSink(records: false))
    for p in 0..<200 { try mmu.guestStore(g, UInt64(p) << 12 | 16, UInt64(p) &* 31 &+ 7) }
    for p in 0..<200 { #expect(try mmu.guestLoad(g, UInt64(p) << 12 | 16) == UInt64(p) &* 31 &+ 7) }
    #expect(uvm.statistics.pageouts > 100 && uvm.statistics.swapInFaults > 100)
    #expect(uvm.checkInvariants() == nil)
  }
}
