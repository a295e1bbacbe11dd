/// The machine code and descriptor tables the harness writes into guest memory. Every byte is
/// spelled out here (Intel SDM Vol. 2 encodings); nothing is assembled at run time.
enum GuestCode {
  /// The three access stubs, each at ``HarnessLayout/stubOffset(_:)``: the access with RAX as
  /// the address (and RBX as the value stored or loaded), then the report of completion (CPL0:
  /// `out 0xe0, al`; CPL3: `mov [rcx], al` to the MMIO report page), then `ud2` (never reached:
  /// the host sets RIP before every run).
  static func accessStub(_ kind: AccessKind, privilege: GuestPrivilege) -> [UInt8] {
    let access: [UInt8]
    switch kind {
    case .read: access = [0x48, 0x8b, 0x18]  // mov rbx, [rax]
    case .write: access = [0x48, 0x89, 0x18]  // mov [rax], rbx
    case .fetch: access = [0xff, 0xd0]  // call rax
    }
    let report: [UInt8] =
      privilege == .user
      ? [0x88, 0x01]  // mov [rcx], al
      : [0xe6, UInt8(HarnessLayout.completedPort)]  // out 0xe0, al
    return access + report + [0x0f, 0x0b]  // ud2
  }

  /// The exception entry of `vector`: pushes a zero error code when the CPU pushes none, then
  /// the vector, then jumps to the common tail at ``HarnessLayout/exceptionCommonOffset``.
  static func exceptionEntry(_ vector: Int) -> [UInt8] {
    var code: [UInt8] = []
    if !HarnessLayout.vectorsWithErrorCode.contains(vector) { code += [0x6a, 0x00] }  // push 0
    code += [0x6a, UInt8(vector)]  // push vector
    let here = HarnessLayout.exceptionEntryOffset(vector) + UInt64(code.count) + 5
    let displacement = Int32(Int64(HarnessLayout.exceptionCommonOffset) - Int64(here))
    code.append(0xe9)  // jmp rel32
    withUnsafeBytes(of: displacement.littleEndian) { code += $0 }
    return code
  }

  /// The common tail: RBX = vector, RCX = error code, RDX = CR2, RSI = the faulting RIP,
  /// RDI = the faulting CS; `out 0xe1, al` reports them; then `hlt` forever.
  static var exceptionCommon: [UInt8] {
    [
      0x5b,  // pop rbx
      0x59,  // pop rcx
      0x0f, 0x20, 0xd2,  // mov rdx, cr2
      0x48, 0x8b, 0x34, 0x24,  // mov rsi, [rsp]
      0x48, 0x8b, 0x7c, 0x24, 0x08,  // mov rdi, [rsp + 8]
      0xe6, UInt8(HarnessLayout.faultPort),  // out 0xe1, al
      0xf4,  // hlt
      0xeb, 0xfd,  // jmp back to hlt
    ]
  }

  /// A 64-bit IDT gate: interrupt gate (type 0xE), present, DPL 0, no IST.
  static func interruptGate(offset: UInt64, selector: UInt16) -> (UInt64, UInt64) {
    let low =
      (offset & 0xffff) | UInt64(selector) << 16 | UInt64(0x8e) << 40 | ((offset >> 16) & 0xffff) << 48
    return (low, offset >> 32)
  }

  /// The GDT's first five descriptors: null, kernel code (64-bit), kernel data, user data,
  /// user code (64-bit); all with the accessed bit already set so the CPU never writes them.
  static var segmentDescriptors: [UInt64] {
    [
      0,
      0x00af_9b00_0000_ffff,  // kernel code: L, P, DPL 0, execute/read, accessed
      0x00cf_9300_0000_ffff,  // kernel data: P, DPL 0, read/write, accessed
      0x00cf_f300_0000_ffff,  // user data: P, DPL 3, read/write, accessed
      0x00af_fb00_0000_ffff,  // user code: L, P, DPL 3, execute/read, accessed
    ]
  }

  /// The 16-byte descriptor of a 64-bit TSS at `base` (type 0xB, busy, as TR holds it).
  static func tssDescriptor(base: UInt64, limit: UInt32 = 0x67) -> (UInt64, UInt64) {
    let low =
      UInt64(limit & 0xffff) | (base & 0xff_ffff) << 16 | UInt64(0x8b) << 40 | UInt64((limit >> 16) & 0xf) << 48
      | ((base >> 24) & 0xff) << 56
    return (low, base >> 32)
  }
}
