import CKVM
import Pmap
import PmapNative

/// Runs access scripts in a KVM guest whose page tables are a native pmap's, and reports the
/// architectural outcome of every access: completed, or the exception with its vector, error
/// code and CR2. The accessed and dirty bits the guest's MMU sets land in the caller's tables.
///
/// The guest-physical memory is the whole of the given ``PhysicalMemory`` (guest-physical
/// `p` is physical `p`), so CR3 is simply the pmap's root. The harness maps its own code, GDT,
/// TSS, IDT and stacks in two top-level slots (``HarnessLayout``) through two small pmaps of
/// its own, links them into the script's root only for the duration of ``run(_:root:)``, and
/// unlinks them afterwards: the script's tables are left as the guest left them.
///
/// Each access is one KVM_RUN: the host sets RIP to the access stub of its kind (in the user or
/// the kernel code page, by CPL), RAX to the address and RBX to the value; the stub performs
/// the access and reports through `out`; an exception goes through the guest's IDT to a
/// handler that reports vector, error code, CR2 and the faulting RIP through another `out`.
/// At CPL3 the guest runs natively on KVM's shadow page tables; at CPL0 (handlers included)
/// KVM's instruction emulator runs it, which is slower: keep CPL0 accesses rare.
///
/// The counterpart of a VMM's run loop (QEMU `kvm_cpu_exec`), specialised to one instruction.
public final class KVMAccessHarness {
  /// The paging controls the guest runs with.
  public let mode: PagingMode
  /// The VM.
  public let machine: KVMVirtualMachine
  private let memory: PhysicalMemory
  private let userPages: NativePmap
  private let kernelPages: NativePmap
  private var baseRegisters: kvm_sregs
  /// KVM_RUN calls made so far.
  public private(set) var runCount = 0

  /// The guest's paging features (from the CPUID it was given): what the model must be told
  /// (MAXPHYADDR for reserved-bit checks, 1 GiB pages for PS in a PDPTE).
  public var features: GuestPagingFeatures { machine.features }

  /// Creates the VM over `memory` and builds the harness's pages in `frames` (see
  /// ``HarnessLayout/frameCount``), with page tables from `allocator`.
  ///
  /// - Throws: ``KVMError/unavailable(_:)`` when `/dev/kvm` cannot be used (check
  ///   ``KVMVirtualMachine/unavailabilityReason`` first to skip cleanly);
  ///   ``KVMError/invalidScenario(_:)`` for bad frames or no page-table memory.
  public init(
    memory: PhysicalMemory, allocator: any FrameAllocator, invalidation: any InvalidationSink,
    frames: [PhysicalAddress], mode: PagingMode
  ) throws(KVMError) {
    guard frames.count == HarnessLayout.frameCount else {
      throw .invalidScenario("the harness needs \(HarnessLayout.frameCount) frames, got \(frames.count)")
    }
    for frame in frames where frame.rawValue & 0xfff != 0 || frame.rawValue + 0x1000 > memory.size {
      throw .invalidScenario("harness frame 0x\(String(frame.rawValue, radix: 16)) is not a page of guest memory")
    }
    guard Set(frames).count == frames.count else { throw .invalidScenario("harness frames repeat") }
    self.mode = mode
    self.memory = memory
    do {
      userPages = try NativePmap(memory: memory, allocator: allocator, invalidation: invalidation, kind: .user)
      kernelPages = try NativePmap(memory: memory, allocator: allocator, invalidation: invalidation, kind: .kernel)
    } catch {
      throw .invalidScenario("no page-table memory for the harness")
    }
    for (page, frame) in zip(HarnessLayout.pages, frames) {
      // Without EFER.NXE bit 63 is reserved, so the harness's own pages must not carry XD.
      let protection = mode.noExecuteEnabled ? page.protection : page.protection.union(.execute)
      let pmap = page.user ? userPages : kernelPages
      do {
        try pmap.enter(
          VirtualAddress(page.address), frame, protection: protection, access: .read, options: [.wired, .canFail])
      } catch {
        throw .invalidScenario("harness page 0x\(String(page.address, radix: 16)): \(error)")
      }
      memory.zeroFrame(frame)
    }
    // The report page: just above guest memory, so CPL3's report write exits as MMIO.
    do {
      try userPages.enter(
        VirtualAddress(HarnessLayout.userReport), PhysicalAddress(memory.size),
        protection: mode.noExecuteEnabled ? .readWrite : .all, access: .read, options: [.wired, .canFail])
    } catch {
      throw .invalidScenario("harness report page: \(error)")
    }
    Self.writeImage(memory: memory, frames: frames)
    machine = try KVMVirtualMachine(memory: memory.directMapBase, size: memory.size)
    baseRegisters = try machine.specialRegisters()
    configureLongMode()
  }

  deinit {
    userPages.destroy()
    kernelPages.destroy()
  }

  /// Writes code, GDT, TSS and IDT into the harness frames.
  private static func writeImage(memory: PhysicalMemory, frames: [PhysicalAddress]) {
    func write(_ bytes: [UInt8], frame: Int, at offset: UInt64) {
      let p = memory.pointer(to: PhysicalAddress(frames[frame].rawValue + offset))
      for (i, b) in bytes.enumerated() { p.storeBytes(of: b, toByteOffset: i, as: UInt8.self) }
    }
    func write64(_ value: UInt64, frame: Int, at offset: UInt64) {
      memory.pointer(to: PhysicalAddress(frames[frame].rawValue + offset)).storeBytes(of: value, as: UInt64.self)
    }
    // Frames in HarnessLayout.pages order: 0 user code, 1 user stack, 2 kernel code,
    // 3 GDT+TSS, 4 IDT, 5 kernel stack.
    for kind in AccessKind.allCases {
      write(GuestCode.accessStub(kind, privilege: .user), frame: 0, at: HarnessLayout.stubOffset(kind))
      write(GuestCode.accessStub(kind, privilege: .supervisor), frame: 2, at: HarnessLayout.stubOffset(kind))
    }
    for vector in 0..<32 {
      write(GuestCode.exceptionEntry(vector), frame: 2, at: HarnessLayout.exceptionEntryOffset(vector))
      let entry = HarnessLayout.kernelCode + HarnessLayout.exceptionEntryOffset(vector)
      let (low, high) = GuestCode.interruptGate(offset: entry, selector: HarnessLayout.kernelCodeSelector)
      write64(low, frame: 4, at: UInt64(vector) * 16)
      write64(high, frame: 4, at: UInt64(vector) * 16 + 8)
    }
    write(GuestCode.exceptionCommon, frame: 2, at: HarnessLayout.exceptionCommonOffset)
    for (i, d) in GuestCode.segmentDescriptors.enumerated() { write64(d, frame: 3, at: UInt64(i) * 8) }
    let (tssLow, tssHigh) = GuestCode.tssDescriptor(base: HarnessLayout.tss)
    write64(tssLow, frame: 3, at: UInt64(HarnessLayout.tssSelector))
    write64(tssHigh, frame: 3, at: UInt64(HarnessLayout.tssSelector) + 8)
    // TSS: RSP0 at offset 4; I/O map base at 102 = the limit + 1 (no I/O bitmap).
    write64(HarnessLayout.kernelStackTop, frame: 3, at: HarnessLayout.tssOffset + 4)
    write([0x68, 0x00], frame: 3, at: HarnessLayout.tssOffset + 102)
  }

  /// Long mode straight away (no real-mode boot): CR0 = PE|MP|ET|NE|AM|PG (+WP), CR4 = PAE
  /// (+SMEP, SMAP), EFER = LME|LMA (+NXE), flat 64-bit segments, the harness's GDT, IDT and TSS.
  private func configureLongMode() {
    var s = baseRegisters
    s.cr0 = 0x8004_0033 | (mode.writeProtect ? 1 << 16 : 0)
    s.cr4 =
      1 << 5 | (mode.supervisorModeExecutionPrevention ? 1 << 20 : 0)
      | (mode.supervisorModeAccessPrevention ? 1 << 21 : 0)
    s.efer = 0x500 | (mode.noExecuteEnabled ? 1 << 11 : 0)
    s.gdt = kvm_dtable(base: HarnessLayout.descriptorTables, limit: 0x37, padding: (0, 0, 0))
    s.idt = kvm_dtable(base: HarnessLayout.interruptTable, limit: 32 * 16 - 1, padding: (0, 0, 0))
    s.tr = kvm_segment(
      base: HarnessLayout.tss, limit: 0x67, selector: HarnessLayout.tssSelector, type: 11, present: 1, dpl: 0,
      db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0, padding: 0)
    s.ldt = kvm_segment(
      base: 0, limit: 0xffff, selector: 0, type: 2, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0,
      unusable: 1, padding: 0)
    baseRegisters = s
  }

  private func segments(for privilege: GuestPrivilege) -> (code: kvm_segment, data: kvm_segment) {
    let user = privilege == .user
    let code = kvm_segment(
      base: 0, limit: 0xffff_ffff, selector: user ? HarnessLayout.userCodeSelector : HarnessLayout.kernelCodeSelector,
      type: 11, present: 1, dpl: user ? 3 : 0, db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0, padding: 0)
    let data = kvm_segment(
      base: 0, limit: 0xffff_ffff, selector: user ? HarnessLayout.userDataSelector : HarnessLayout.kernelDataSelector,
      type: 3, present: 1, dpl: user ? 3 : 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0, padding: 0)
    return (code, data)
  }

  private func enter(_ privilege: GuestPrivilege, root: PhysicalAddress) throws(KVMError) {
    var s = baseRegisters
    s.cr3 = root.rawValue
    let (code, data) = segments(for: privilege)
    s.cs = code
    s.ss = data
    s.ds = data
    s.es = data
    s.fs = data
    s.gs = data
    try machine.setSpecialRegisters(s)
  }

  /// Runs `script` with CR3 = `root` and returns one outcome per access, in order.
  ///
  /// The tables must stay unchanged during the run (the guest's TLB may hold translations);
  /// `root`'s top-level slots 255 and 511 must be empty (they are the harness's). Scripted
  /// fetch targets must hold `ret` (0xC3) where the access is meant to complete.
  ///
  /// - Throws: ``KVMError/invalidScenario(_:)`` for a root outside memory or with the harness
  ///   slots in use; ``KVMError/unexpectedExit(_:)`` when the guest stops in an unplanned way
  ///   (for instance an exception raised by something other than the scripted access).
  /// - Complexity: one KVM_RUN per access, plus KVM_SET_SREGS when the CPL changes or after a fault.
  public func run(_ script: [ScriptedAccess], root: PhysicalAddress) throws(KVMError) -> [AccessOutcome] {
    guard root.rawValue & 0xfff == 0, root.rawValue + 0x1000 <= memory.size else {
      throw .invalidScenario("root 0x\(String(root.rawValue, radix: 16)) is not a page of guest memory")
    }
    for slot in HarnessLayout.reservedSlots where memory.entry(in: root, at: slot).load() != 0 {
      throw .invalidScenario("top-level slot \(slot) is in use; the harness reserves slots 255 and 511")
    }
    for access in script where HarnessLayout.isReserved(access.linear) {
      throw .invalidScenario("\(access) touches a slot the harness reserves")
    }
    for slot in HarnessLayout.reservedSlots {
      let source = slot == HarnessLayout.userSlot ? userPages.root : kernelPages.root
      memory.entry(in: root, at: slot).store(memory.entry(in: source, at: slot).load())
    }
    defer { for slot in HarnessLayout.reservedSlots { memory.entry(in: root, at: slot).exchange(0) } }

    var outcomes: [AccessOutcome] = []
    outcomes.reserveCapacity(script.count)
    var current: GuestPrivilege? = nil
    for access in script {
      if current != access.privilege {
        try enter(access.privilege, root: root)
        current = access.privilege
      }
      let outcome = try perform(access)
      if case .fault = outcome { current = nil }  // the handler left the vCPU at CPL0
      outcomes.append(outcome)
    }
    return outcomes
  }

  private func perform(_ access: ScriptedAccess) throws(KVMError) -> AccessOutcome {
    let user = access.privilege == .user
    let stub = (user ? HarnessLayout.userCode : HarnessLayout.kernelCode) + HarnessLayout.stubOffset(access.kind)
    var r = kvm_regs()
    r.rax = access.linear
    r.rbx = access.value
    r.rcx = HarnessLayout.userReport
    r.rip = stub
    r.rsp = user ? HarnessLayout.userStackTop : HarnessLayout.kernelAccessStackTop
    // Bit 1 is always 1; IOPL 3 lets CPL3 report with `out`; AC only where asked (CPL0).
    r.rflags = 0x2 | 0x3000 | (!user && access.alignmentCheckFlag ? 1 << 18 : 0)
    try machine.setRegisters(r)
    runCount += 1
    let exit = try machine.run()
    switch exit {
    case .output(HarnessLayout.completedPort, _) where !user, .mmio(memory.size, true) where user:
      return .completed(value: access.kind == .read ? try machine.registers().rbx : 0)
    case .output(HarnessLayout.faultPort, _):
      let f = try machine.registers()
      let vector = UInt8(truncatingIfNeeded: f.rbx)
      // The access is the stub's first instruction; a fetch faults at its target, unless the
      // target is not canonical: then `call` itself raises #GP.
      let expectedRIP = access.kind == .fetch && access.isCanonical ? access.linear : stub
      guard f.rsi == expectedRIP, f.rdi & 3 == UInt64(access.privilege.rawValue) else {
        throw .unexpectedExit(
          "\(access): vector \(vector) error 0x\(String(f.rcx, radix: 16)) at RIP 0x\(String(f.rsi, radix: 16)) "
            + "CS 0x\(String(f.rdi, radix: 16)), not at the scripted access")
      }
      return .fault(
        vector: vector, errorCode: UInt32(truncatingIfNeeded: f.rcx), faultingAddress: vector == 14 ? f.rdx : 0)
    default:
      let rip = (try? machine.registers().rip) ?? 0
      throw .unexpectedExit("\(access): \(exit) at RIP 0x\(String(rip, radix: 16))")
    }
  }
}
