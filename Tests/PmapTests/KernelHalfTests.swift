import Pmap
import PmapHost
import PmapMMU
import PmapNative
import Testing

/// An address in the upper half: PML4 slot `slot` (256...511), plus `offset`.
func upper(slot: UInt64, _ offset: UInt64 = 0) -> VirtualAddress {
  VirtualAddress(truncating: 0xffff_0000_0000_0000 | slot << 39 | offset)
}

/// A kernel pmap owning `slots` and its sharers, on `machine` (native only: EPT has no kernel half).
func makeKernel(
  _ machine: SimulatedMachine, slots: Range<Int> = NativePmap.upperHalfSlots, sink: (any InvalidationSink)? = nil
) throws -> NativePmap {
  try NativePmap(
    memory: machine.memory, allocator: machine.allocator, invalidation: sink ?? machine.sink, pages: machine.pages,
    kind: .kernel, kernelHalfSlots: slots)
}

func makeSharer(
  _ machine: SimulatedMachine, _ kernel: NativePmap, sink: (any InvalidationSink)? = nil
) throws -> NativePmap {
  try NativePmap(
    memory: machine.memory, allocator: machine.allocator, invalidation: sink ?? machine.sink, pages: machine.pages,
    kind: .user, sharingKernelHalfWith: kernel)
}

@Suite("a kernel half shared between pmaps (native only: EPT has no kernel half)")
struct KernelHalfTests {
  @Test("a kernel pmap preallocates its kernel-half tables and never frees them while alive")
  func preallocation() throws {
    try withPVMachine { machine in
      let kernel = try makeKernel(machine)
      #expect(kernel.statistics == stats(0, 0, 257))
      #expect(machine.allocator.framesInUse == 257)
      #expect(kernel.memory.wireCount(of: kernel.root) == 257)
      #expect(kernel.checkInvariants() == nil)
      let va = upper(slot: 300, 5 << 30 | 7 << 21)
      try kernel.enter(va, machine.dataFrame(0), protection: .readWrite, options: .wired)
      #expect(kernel.statistics == stats(1, 1, 259))
      #expect(kernel.checkInvariants() == nil)
      try kernel.remove(VirtualRange(page: va))
      #expect(kernel.statistics == stats(0, 0, 257), "the page directory and table go, the PDPT stays")
      try kernel.enter(upper(slot: 301), PhysicalAddress(0), protection: .read, size: .size1G)
      #expect(kernel.statistics == stats(262_144, 0, 257), "a 1 GiB leaf in a preallocated PDPT")
      try kernel.remove(.upperHalf)
      #expect(kernel.statistics == stats(0, 0, 257))
      #expect(kernel.checkInvariants() == nil)
      kernel.destroy()
      #expect(machine.allocator.framesInUse == 0)
    }
  }

  @Test("creating a kernel pmap gives back every frame when the allocator fails at the k-th call")
  func creationFailure() throws {
    try withPVMachine { machine in
      for k in 1...5 {
        machine.allocator.failAtCall = machine.allocator.allocationCalls + k
        #expect(throws: PmapCreationError.outOfPageTableMemory) { try makeKernel(machine, slots: 256..<260) }
        #expect(machine.allocator.framesInUse == 0, "fail at call +\(k)")
      }
      machine.allocator.failAtCall = nil
      let kernel = try makeKernel(machine, slots: 256..<260)
      #expect(kernel.statistics.pageTablePages == 5)
    }
  }

  @Test("a sharer sees the kernel's mappings, entered before or after it was created")
  func sharing() throws {
    try withPVMachine { machine in
      let kernel = try makeKernel(machine)
      let early = upper(slot: 256)
      try kernel.enter(early, machine.dataFrame(1), protection: .readExecute, options: .wired)
      let user = try makeSharer(machine, kernel)
      #expect(user.sharesKernelHalf && user.kernelHalfOwner === kernel)
      #expect(user.kernelHalfSlots == 256..<512)
      #expect(user.statistics == stats(0, 0, 1), "the shared tables are the kernel's")
      #expect(machine.allocator.framesInUse == 259 + 1)
      for slot in 256..<512 {
        #expect(
          user.memory.entry(in: user.root, at: slot).load() == kernel.memory.entry(in: kernel.root, at: slot).load())
      }
      let late = upper(slot: 511, 1 << 30)
      try kernel.enter(late, machine.dataFrame(2), protection: .readWrite, size: .size4K)
      try kernel.enter(upper(slot: 400), PhysicalAddress(1 << 21), protection: .read, size: .size2M)
      #expect(user.extract(early) == machine.dataFrame(1))
      #expect(user.extract(late) == machine.dataFrame(2))
      #expect(user.extract(upper(slot: 400, 0x1234)) == PhysicalAddress(1 << 21 | 0x1234))
      let t = try #require(user.translation(of: late))
      #expect(t.protection == .readWrite && !t.isWired)
      // The user's own half is its own.
      try user.enter(address(pml4: 1), machine.dataFrame(3), protection: .readWrite)
      #expect(kernel.extract(address(pml4: 1)) == nil)
      #expect(user.statistics == stats(1, 0, 4))
      #expect(user.checkInvariants() == nil)
      #expect(kernel.checkInvariants() == nil)
      // Kernel removal is seen at once, too.
      try kernel.remove(VirtualRange(page: late))
      #expect(user.extract(late) == nil)
      // A user enumeration stays in what it owns.
      var seen: [VirtualAddress] = []
      user.forEachMapping(in: .upperHalf) { va, _ in seen.append(va) }
      #expect(seen.isEmpty)
      var tables = 0
      user.forEachPageTablePage { _, _ in tables += 1 }
      #expect(tables == 4)
    }
  }

  @Test("operations of a sharer in the kernel half are refused and change nothing")
  func refusedInSharedHalf() throws {
    try withPVMachine { machine in
      let kernel = try makeKernel(machine)
      let va = upper(slot: 300)
      try kernel.enter(va, machine.dataFrame(0), protection: .readWrite, options: .wired)
      let user = try makeSharer(machine, kernel)
      try user.enter(address(pml4: 0), machine.dataFrame(1), protection: .read)
      let kernelBefore = TreeSnapshot(kernel, machine)
      let userBefore = TreeSnapshot(user, machine)
      let shared = try VirtualRange(start: va, byteCount: 1 << 21)
      #expect(throws: EnterError.addressInSharedKernelHalf) {
        try user.enter(upper(slot: 301), machine.dataFrame(2), protection: .read)
      }
      #expect(throws: EnterError.addressInSharedKernelHalf) {
        try user.enter(va, machine.dataFrame(0), protection: .read)
      }
      // An empty leaf in a page table the kernel linked, reachable by a walk from the sharer's
      // root: enter's quick path must refuse it too, whatever page table it used last.
      try user.enter(address(pml4: 0, pt: 1), machine.dataFrame(3), protection: .read)
      #expect(throws: EnterError.addressInSharedKernelHalf) {
        try user.enter(upper(slot: 300, 4096), machine.dataFrame(3), protection: .read)
      }
      #expect(user.checkInvariants() == nil)
      try user.remove(VirtualRange(page: address(pml4: 0, pt: 1)))
      #expect(throws: EnterError.addressInSharedKernelHalf) {
        try user.enter(upper(slot: 256), PhysicalAddress(0), protection: .read, size: .size1G)
      }
      #expect(throws: EnterError.addressInSharedKernelHalf) {
        try user.enter(shared, startingAt: machine.dataFrame(8), protection: .read)
      }
      #expect(throws: RangeOperationError.addressInSharedKernelHalf) { try user.remove(VirtualRange(page: va)) }
      #expect(throws: RangeOperationError.addressInSharedKernelHalf) { try user.remove(shared) }
      #expect(throws: RangeOperationError.addressInSharedKernelHalf) { try user.remove(.upperHalf) }
      #expect(throws: RangeOperationError.addressInSharedKernelHalf) { try user.protect(shared, to: .read) }
      #expect(throws: RangeOperationError.addressInSharedKernelHalf) {
        try user.protect(VirtualRange(page: va), to: .read)
      }
      #expect(throws: RangeOperationError.addressInSharedKernelHalf) { try user.protect(shared, to: []) }
      #expect(throws: UnwireError.addressInSharedKernelHalf) { try user.unwire(va) }
      #expect(TreeSnapshot(kernel, machine) == kernelBefore)
      #expect(TreeSnapshot(user, machine) == userBefore)
      #expect(user.translation(of: va)?.isWired == true)
      // The lower half is unaffected.
      try user.remove(.lowerHalf)
      #expect(user.statistics == stats(0, 0, 1))
    }
  }

  @Test("a kernel half of some slots: the sharer owns the rest of its upper half")
  func partialKernelHalf() throws {
    try withPVMachine { machine in
      let kernel = try makeKernel(machine, slots: 510..<512)
      let user = try makeSharer(machine, kernel)
      try user.enter(upper(slot: 300), machine.dataFrame(0), protection: .read)
      #expect(user.statistics == stats(1, 0, 4))
      #expect(kernel.extract(upper(slot: 300)) == nil)
      #expect(throws: EnterError.addressInSharedKernelHalf) {
        try user.enter(upper(slot: 510), machine.dataFrame(0), protection: .read)
      }
      let straddling = try VirtualRange(from: upper(slot: 509, (1 << 39) - 4096), to: upper(slot: 510, 4096))
      #expect(throws: RangeOperationError.addressInSharedKernelHalf) { try user.remove(straddling) }
      try user.remove(VirtualRange(from: upper(slot: 256), to: upper(slot: 510)))
      #expect(user.statistics == stats(0, 0, 1))
      #expect(user.checkInvariants() == nil)
    }
  }

  @Test("destroying a sharer leaves the kernel half; destroying the kernel pmap then frees it")
  func destroy() throws {
    try withPVMachine { machine in
      let kernel = try makeKernel(machine)
      let va = upper(slot: 480, 3 << 21)
      try kernel.enter(va, machine.dataFrame(0), protection: .readWrite, options: .wired)
      let kernelBefore = TreeSnapshot(kernel, machine)
      let framesBefore = machine.allocator.framesInUse
      do {
        let user = try makeSharer(machine, kernel)
        try user.enter(address(pml4: 2), machine.dataFrame(1), protection: .read)
        user.destroy()
      }
      #expect(machine.allocator.framesInUse == framesBefore)
      #expect(TreeSnapshot(kernel, machine) == kernelBefore)
      #expect(kernel.extract(va) == machine.dataFrame(0))
      #expect(kernel.checkInvariants() == nil)
      do { _ = try makeSharer(machine, kernel) }  // released by deinit
      kernel.destroy()
      #expect(machine.allocator.framesInUse == 0)
    }
  }

  @Test("a managed kernel page has one pv entry, however many pmaps share it")
  func pvEntries() throws {
    try withPVMachine { machine in
      let kernel = try makeKernel(machine)
      let users = try (0..<3).map { _ in try makeSharer(machine, kernel) }
      let frame = machine.dataFrame(5)
      let va = upper(slot: 260)
      try kernel.enter(va, frame, protection: .readWrite)
      try users[0].enter(address(pml4: 0), frame, protection: .read)
      #expect(machine.pages.statistics.mappings == 2, "the kernel's and users[0]'s own")
      #expect(machine.pages.statistics.registeredPmaps == 4)
      // The kernel, running on users[1]'s root, writes the page; user code there may not.
      let mmu = NativeWalker(memory: machine.memory)
      #expect(throws: (any Error).self) {
        try mmu.translate(va.rawValue, .read, privilege: .user, root: users[1].root).get()
      }
      #expect(!machine.pages.isReferenced(frame))
      let written = try mmu.translate(va.rawValue, .write, privilege: .supervisor, root: users[1].root).get()
      #expect(written.physicalAddress == frame)
      #expect(machine.pages.isModified(frame))
      #expect(machine.pages.clearModify(frame))
      #expect(!machine.pages.isModified(frame))
      machine.pages.protectPage(frame, to: .read)
      #expect(users[2].translation(of: va)?.protection.contains(.write) == false)
      #expect(machine.pages.removeAllMappings(frame) == 2)
      for user in users { #expect(user.extract(va) == nil) }
      #expect(kernel.extract(va) == nil)
      expectPVInvariants(machine, [kernel] + users, "after page operations")
    }
  }

  @Test("kernel-half invalidations go to the kernel pmap's sink")
  func invalidationsGoToKernel() throws {
    try withPVMachine { machine in
      let kernelSink = RecordingInvalidationSink()
      let userSink = RecordingInvalidationSink()
      let kernel = try makeKernel(machine, sink: kernelSink)
      let user = try makeSharer(machine, kernel, sink: userSink)
      let va = upper(slot: 300)
      try kernel.enter(va, machine.dataFrame(0), protection: .readWrite)
      // The CPU (the kernel, on the user's root) used the translation: A set in the shared leaf.
      _ = try NativeWalker(memory: machine.memory).translate(
        va.rawValue, .read, privilege: .supervisor, root: user.root
      )
      .get()
      #expect(kernel.translation(of: va)?.attributes.contains(.referenced) == true)
      try kernel.protect(VirtualRange(page: va), to: .read)
      #expect(kernelSink.covered(va, root: kernel.root))
      #expect(userSink.callCount == 0)
    }
  }

  @Test("the invariant checker finds a shared root entry that differs from the kernel's")
  func checkerFindsMismatch() throws {
    try withPVMachine { machine in
      let kernel = try makeKernel(machine)
      let user = try makeSharer(machine, kernel)
      let p = user.memory.entry(in: user.root, at: 300)
      let saved = p.load()
      _ = p.setBits(NativePTE.accessedBit)
      #expect(user.checkInvariants() == nil, "the accessed bit is each root's own")
      p.store(user.memory.entry(in: user.root, at: 301).load())
      #expect(user.checkInvariants() == InvariantViolation(.sharedEntryMismatch, table: user.root, index: 300))
      p.store(saved)
      #expect(user.checkInvariants() == nil)
    }
  }
}
