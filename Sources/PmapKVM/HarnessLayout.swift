import Pmap

/// Where the harness keeps its own code, descriptor tables and stacks, in the guest's linear
/// address space: two top-level slots that scripts must leave empty.
///
/// | slot | linear base | pages (in order) |
/// |---|---|---|
/// | PML4 255 | `0x0000_7f80_0000_0000` | user code (R-X, user), user stack (RW-, user), report page (RW-, user, guest-physical just above guest memory) |
/// | PML4 511 | `0xffff_ff80_0000_0000` | kernel code (R-X), GDT+TSS (RW-), IDT (R--), kernel stack (RW-), all supervisor |
public enum HarnessLayout {
  /// The top-level slot of the harness's user pages.
  public static var userSlot: Int { 255 }
  /// The top-level slot of the harness's supervisor pages.
  public static var kernelSlot: Int { 511 }
  /// The top-level slots a script's page tables must leave empty.
  public static var reservedSlots: [Int] { [userSlot, kernelSlot] }

  /// Linear base of the user slot.
  public static var userBase: UInt64 { 0x0000_7f80_0000_0000 }
  /// Linear base of the kernel slot.
  public static var kernelBase: UInt64 { 0xffff_ff80_0000_0000 }

  static var userCode: UInt64 { userBase }
  static var userStack: UInt64 { userBase + 0x1000 }
  /// CPL3 code cannot use `out` under every KVM (kvm_pvm ignores IOPL), so it reports by
  /// writing this page, which maps a guest-physical address outside guest memory: the write
  /// exits to the host as MMIO.
  static var userReport: UInt64 { userBase + 0x2000 }
  static var kernelCode: UInt64 { kernelBase }
  static var descriptorTables: UInt64 { kernelBase + 0x1000 }
  static var interruptTable: UInt64 { kernelBase + 0x2000 }
  static var kernelStack: UInt64 { kernelBase + 0x3000 }

  /// The GDT sits at the start of its page, the TSS at this offset.
  static var tssOffset: UInt64 { 0x100 }
  static var tss: UInt64 { descriptorTables + tssOffset }

  /// Frames the harness needs, in the order of ``pages``.
  public static var frameCount: Int { pages.count }

  /// The harness's pages: linear address, protection, user-accessible.
  static var pages: [(address: UInt64, protection: Protection, user: Bool)] {
    [
      (userCode, .readExecute, true),
      (userStack, .readWrite, true),
      (kernelCode, .readExecute, false),
      (descriptorTables, .readWrite, false),
      (interruptTable, .read, false),
      (kernelStack, .readWrite, false),
    ]
  }

  // Selectors (GDT index << 3 | RPL).
  static var kernelCodeSelector: UInt16 { 0x08 }
  static var kernelDataSelector: UInt16 { 0x10 }
  static var userDataSelector: UInt16 { 0x18 | 3 }
  static var userCodeSelector: UInt16 { 0x20 | 3 }
  static var tssSelector: UInt16 { 0x28 }

  /// I/O ports the guest code reports through.
  static var completedPort: UInt16 { 0xe0 }
  static var faultPort: UInt16 { 0xe1 }

  /// Offsets of the access stubs in either code page (same code at CPL3 and CPL0).
  static func stubOffset(_ kind: AccessKind) -> UInt64 { UInt64(kind.rawValue) * 0x10 }
  /// Offset of the exception entry for `vector` in the kernel code page.
  static func exceptionEntryOffset(_ vector: Int) -> UInt64 { 0x100 + UInt64(vector) * 0x10 }
  static var exceptionCommonOffset: UInt64 { 0x400 }
  /// Vectors whose exceptions push an error code (SDM Vol. 3A Table 6-1).
  static var vectorsWithErrorCode: Set<Int> { [8, 10, 11, 12, 13, 14, 17, 21, 29, 30] }

  /// Stack pointers: the user stack, and the kernel stack for CPL0 accesses (below the part
  /// the TSS's RSP0 hands to exceptions from CPL3; both are the same page).
  static var userStackTop: UInt64 { userStack + 0x1000 - 0x80 }
  static var kernelAccessStackTop: UInt64 { kernelStack + 0x800 }
  static var kernelStackTop: UInt64 { kernelStack + 0x1000 }

  /// Whether `linear` is a canonical address in a slot the harness reserves.
  public static func isReserved(_ linear: UInt64) -> Bool {
    VirtualAddress.isCanonical(linear) && reservedSlots.contains(Int((linear >> 39) & 511))
  }
}
