import Pmap
import PmapEPT
import PmapHost
import PmapMMU
import PmapNative
import Testing

/// The complete example of the article "Writing tests with the MMU model" (Pmap.docc): a user's
/// own test of accessed/dirty combining across a guest's EPT and the VMM's native pmap, with
/// two simulated CPUs whose TLBs the pmaps invalidate. The body is the article's sample verbatim.
@Suite("guide: writing tests with the MMU model")
struct MMUModelGuideTests {
  @Test("a page the guest wrote and the VMM read, seen through the page database")
  func accessedDirtyAcrossPmaps() throws {
    let machine = SimulatedMachine()
    // Two CPUs with TLBs; the pmaps report their invalidations to them (and to the recorder).
    let cpus = CPUGroup(count: 2, memory: machine.memory, forwardingTo: machine.sink)
    let guest = try EPTPmap(
      memory: machine.memory, allocator: machine.allocator, invalidation: cpus, pages: machine.pages)
    let host = try NativePmap(
      memory: machine.memory, allocator: machine.allocator, invalidation: cpus, pages: machine.pages)
    let frame = machine.dataFrame(0)
    try guest.enter(VirtualAddress(0x1000), frame, protection: .all)
    try host.enter(VirtualAddress(0x7000_0000_1000), frame, protection: .readWrite)

    // CPU 0 runs the guest (EPT only, guest paging off); CPU 1 runs the VMM.
    let vcpu = cpus.cpus[0]
    let vmm = cpus.cpus[1]
    vcpu.enterGuest(guest, guestRoot: nil)
    vmm.loadCR3(of: host)

    // The guest writes: the EPT walk sets A and D in the guest's entry.
    _ = try vcpu.write(0xfeed, to: 0x1234).get()
    #expect(machine.pages.isModified(frame))
    #expect(machine.pages.clearModify(frame))  // clears D everywhere, invalidates (INVEPT)
    #expect(!machine.pages.isModified(frame))

    // The VMM reads the same page through its own mapping: A, not D, in the native entry.
    #expect(try vmm.read(VirtualAddress(0x7000_0000_1234)).get().value == 0xfeed)
    #expect(machine.pages.isReferenced(frame))
    #expect(!machine.pages.isModified(frame))

    // The clock hand: both mappings referenced, both cleared; then a write through the guest's
    // cached translation must set D again (its TLB entry had D clear, so the CPU re-walks).
    #expect(machine.pages.referencedCount(frame) == 2)
    _ = try vcpu.write(1, to: 0x1000).get()
    #expect(machine.pages.isModified(frame))

    // No CPU ever used a translation the pmaps had changed without invalidating it.
    #expect(cpus.takeStaleTranslations().isEmpty)
  }
}
