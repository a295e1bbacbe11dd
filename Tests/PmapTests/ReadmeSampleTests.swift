import Pmap
import PmapEPT
import PmapHost
import PmapMMU
import PmapNative
import Testing

/// The code samples of README.md and of the DocC catalogs, compiled and run. Each test's body (or
/// the part between its setup and its extra checks) is a sample verbatim: `Scripts/build-docs.sh`
/// fails when a ```swift block of a catalog article or of README.md does not appear in Tests/, so
/// the samples cannot rot.
@Suite("documentation samples")
struct ReadmeSampleTests {
  @Test("README: one page mapped by an EPT and a native pmap, its dirty bit merged, then evicted")
  func readmeSample() throws {
    let machine = SimulatedMachine()  // simulated RAM, page-table allocator, invalidation sink
    let host = try machine.makeNativePmap()  // the hypervisor's own view of guest RAM
    let guest = try machine.makeEPTPmap()  // the guest's EPT: guest-physical -> host-physical
    let frame = machine.dataFrame(7)  // one page of guest RAM, a managed frame

    try guest.enter(VirtualAddress(0x1000), frame, protection: .all)
    try host.enter(VirtualAddress(0x7000_0000_1000), frame, protection: .readWrite)
    #expect(guest.extract(VirtualAddress(0x1234)) == frame.advanced(by: 0x234))
    #expect(machine.pages.mappingCount(of: frame) == 2)  // one pv-list across both formats

    // The guest writes the page: the MMU model walks the EPT and sets A and D (bits 8 and 9).
    _ = EPTWalker(guest).translate(0x1000, .write)
    #expect(machine.pages.isModified(frame))  // seen through the page, whatever the format
    #expect(machine.pages.clearModify(frame))  // clears D in every mapping, invalidates
    #expect(!machine.pages.isModified(frame))

    // The pagedaemon evicts the page: every mapping goes, in both pmaps.
    #expect(machine.pages.removeAllMappings(frame) == 2)
    #expect(host.extract(VirtualAddress(0x7000_0000_1000)) == nil)
    #expect(machine.sink.covered(VirtualAddress(0x1000), root: guest.root))  // INVEPT owed, reported
  }

  @Test("Accessed and dirty bits across pmaps: the worked example")
  func acrossPmapsWorkedExample() throws {
    let machine = SimulatedMachine()
    let host = try machine.makeNativePmap()  // the VMM's view of guest RAM
    let guest = try machine.makeEPTPmap()  // the guest's EPT
    let frame = machine.dataFrame(7)
    try guest.enter(VirtualAddress(0x1000), frame, protection: .all)
    try host.enter(VirtualAddress(0x7000_0000_1000), frame, protection: .readWrite)

    // The guest writes the page: the EPT walk of the MMU model sets EPT A and D (bits 8, 9).
    _ = EPTWalker(guest).translate(0x1000, .write)
    #expect(machine.pages.isModified(frame))
    #expect(machine.pages.clearModify(frame))  // it was; now clear in every mapping
    #expect(!machine.pages.isModified(frame))
    #expect(machine.pages.isReferenced(frame))  // clearing D leaves A
    // The VMM writes through its own mapping: the native walk sets A and D (bits 5, 6).
    _ = NativeWalker(memory: machine.memory).translate(VirtualAddress(0x7000_0000_1000), .write, in: host)
    #expect(machine.pages.isModified(frame))  // modified again
    // The guest's mapping goes; what it recorded stays with the page.
    try guest.remove(VirtualRange(page: VirtualAddress(0x1000)))
    #expect(machine.pages.clearReference(frame))
    #expect(machine.pages.isModified(frame))  // D cleared with A stays in the page's cache
  }

  @Test("Pmap landing page: enter, extract, protect, remove")
  func pmapLandingSample() throws {
    let machine = SimulatedMachine()
    let (memory, allocator, shootdown, frame) = (machine.memory, machine.allocator, machine.sink, machine.dataFrame(1))

    let pmap = try NativePmap(memory: memory, allocator: allocator, invalidation: shootdown)
    try pmap.enter(VirtualAddress(0x40_0000), frame, protection: .readWrite, options: .wired)
    let pa = pmap.extract(VirtualAddress(0x40_0123))  // frame + 0x123
    try pmap.protect(VirtualRange(page: VirtualAddress(0x40_0000)), to: .read)
    try pmap.remove(VirtualRange(page: VirtualAddress(0x40_0000)))

    #expect(pa == frame.advanced(by: 0x123))
    #expect(pmap.extract(VirtualAddress(0x40_0123)) == nil)
    #expect(pmap.statistics == PmapStatistics(residentPages: 0, wiredPages: 0, pageTablePages: 1))
  }

  @Test("PmapNative landing page: a kernel pmap and its CR3")
  func nativeLandingSample() throws {
    let machine = SimulatedMachine()
    let (memory, allocator, shootdown, frame) = (machine.memory, machine.allocator, machine.sink, machine.dataFrame(1))

    let kernel = try NativePmap(memory: memory, allocator: allocator, invalidation: shootdown, kind: .kernel)
    try kernel.enter(VirtualAddress(0xffff_8000_0000_0000), frame, protection: .readWrite, options: .wired)
    let cr3 = kernel.cr3  // the kernel writes it to CR3

    #expect(cr3 == kernel.root.rawValue)
    let leaf = try #require(kernel.lookupLeaf(VirtualAddress(0xffff_8000_0000_0000)))
    #expect(leaf.value & NativePTE.global != 0 && leaf.value & NativePTE.user == 0)
    #expect(kernel.statistics.wiredPages == 1)
  }

  @Test("PmapEPT landing page: a guest's EPT and its EPT pointer")
  func eptLandingSample() throws {
    let machine = SimulatedMachine()
    let (memory, allocator, invept, pages, frame) = (
      machine.memory, machine.allocator, machine.sink, machine.pages, machine.dataFrame(1)
    )

    let guest = try EPTPmap(memory: memory, allocator: allocator, invalidation: invept, pages: pages)
    try guest.enter(VirtualAddress(0x1000), frame, protection: .all, access: .write)
    let eptp = guest.eptPointer  // write eptp.rawValue to the VMCS EPT pointer field

    #expect(eptp.isValid && eptp.accessedDirtyEnabled && eptp.root == guest.root)
    #expect(pages.isModified(frame))  // entered with A and D for the faulting write
  }

  @Test("VirtualAddress: a guest-physical address in 2^47..<2^48 maps through its sign-extended form")
  func guestPhysicalAboveLowerHalf() throws {
    let machine = SimulatedMachine()
    let guest = try machine.makeEPTPmap()
    let gpa = VirtualAddress(truncating: 1 << 47 | 0x5000)
    #expect(gpa.rawValue == 0xffff_8000_0000_5000 && gpa.linear == 1 << 47 | 0x5000)
    try guest.enter(gpa, machine.dataFrame(3), protection: .readWrite)
    // The entry the CPU uses for guest-physical 2^47 + 0x5000: PML4 index 256.
    #expect(EPTPTE.isPresent(guest.memory.entry(in: guest.root, at: 256).load()))
    #expect(guest.extract(gpa) == machine.dataFrame(3))
  }
}
