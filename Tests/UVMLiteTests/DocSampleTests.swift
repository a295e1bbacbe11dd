import Pmap
import PmapEPT
import PmapHost
import Testing
import UVMLite

@Suite struct UVMLiteDocSampleTests {
  /// The sample of the UVMLite catalog's landing page, verbatim, over a simulated machine.
  @Test func landingPageSample() throws {
    let ram = SimulatedRAM(size: 32 << 20)
    let tables = TestFrameAllocator(
      memory: ram.memory, frames: PhysicalAddress(4096), to: PhysicalAddress(4 << 20), backing: ram)
    let pages = PageDatabase(memory: ram.memory, base: PhysicalAddress(4 << 20), pageCount: 7168, allocator: tables)
    let invept = RecordingInvalidationSink(records: false)

    let uvm = UVM(pool: FramePool(pages: pages), swap: MemorySwapStore(slotCount: 4096), pageTableAllocator: tables)
    let guest = try uvm.makeGuest(byteCount: 64 << 20, invalidation: invept)
    let exit = EPTViolationExit(exitQualification: 0x2, guestPhysicalAddress: 0x12_3000)
    let outcome = try uvm.fault(guest, violation: exit)  // .resolved(.zeroFill): resume the guest

    #expect(outcome == .resolved(.zeroFill))
    #expect(guest.ept.extract(VirtualAddress(0x12_3000)) != nil)
    #expect(uvm.checkInvariants() == nil)
    uvm.destroyGuest(guest)
    withExtendedLifetime(ram) {}
  }
}
