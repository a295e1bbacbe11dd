import KernelSupport

/// The task-state segment and the interrupt descriptor table.
///
/// The GDT itself is static (Kernel/Boot/boot.S: null, code 0x08, data 0x10, TSS 0x18); the TSS
/// is only needed for its interrupt stack table: a double fault switches to a stack of its own
/// (IST1), so a fault on a broken stack still reports instead of triple-faulting. The page-fault
/// handler runs on the interrupted stack (no IST): the kernel is compiled without a red zone, so
/// the frame the CPU pushes below RSP overwrites nothing live.
enum Descriptors {
  static var codeSelector: UInt16 { 0x08 }
  static var tssSelector: UInt16 { 0x18 }

  /// Builds the TSS and IDT on the kernel heap and loads them (LTR, LIDT).
  static func install() {
    // TSS: 104 bytes; IST1 at offset 36, I/O map base at 102 (beyond the limit: no I/O bitmap).
    let tss = UnsafeMutableRawPointer.allocate(byteCount: 104, alignment: 16)
    tss.initializeMemory(as: UInt8.self, repeating: 0, count: 104)
    tss.storeBytes(of: ks_double_fault_stack_top(), toByteOffset: 36, as: UInt64.self)
    tss.storeBytes(of: 104, toByteOffset: 102, as: UInt16.self)
    let base = UInt64(UInt(bitPattern: tss))
    let limit: UInt64 = 103
    let descriptor = UnsafeMutableRawPointer(bitPattern: UInt(ks_gdt() + UInt64(tssSelector))).unsafelyUnwrapped
    // Available 64-bit TSS (type 9), present; base split as the descriptor format wants.
    let low =
      (limit & 0xffff) | (base & 0xff_ffff) << 16 | 0x89 << 40 | ((limit >> 16) & 0xf) << 48 | ((base >> 24) & 0xff)
      << 56
    descriptor.storeBytes(of: low, as: UInt64.self)
    descriptor.storeBytes(of: base >> 32, toByteOffset: 8, as: UInt64.self)
    ks_ltr(tssSelector)

    // IDT: 256 gates of 16 bytes; the 32 exception vectors get interrupt gates (IF cleared on
    // entry), #DF on IST1.
    let idt = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 16)
    idt.initializeMemory(as: UInt8.self, repeating: 0, count: 4096)
    for vector in 0..<32 {
      let handler = ks_trap_stub(Int32(vector))
      let ist: UInt64 = vector == 8 ? 1 : 0
      let gateLow =
        (handler & 0xffff) | UInt64(codeSelector) << 16 | ist << 32 | 0x8e << 40 | ((handler >> 16) & 0xffff) << 48
      idt.storeBytes(of: gateLow, toByteOffset: vector * 16, as: UInt64.self)
      idt.storeBytes(of: handler >> 32, toByteOffset: vector * 16 + 8, as: UInt64.self)
    }
    ks_lidt(UInt64(UInt(bitPattern: idt)), 4095)
  }
}
