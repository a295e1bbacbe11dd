import Pmap
import PmapNative

/// The native MMU without a TLB: one page walk per access, over host-physical memory.
///
/// It corresponds to KVM's software walker (`FNAME(walk_addr_generic)` in
/// arch/x86/kvm/mmu/paging_tmpl.h) for 64-bit paging. Use it for one-off accesses ("the CPU touched this page") or as the reference a TLB-less
/// comparison needs; ``SimulatedCPU`` adds a TLB and the data access itself.
public struct NativeWalker: Sendable {
  /// Physical memory holding the paging structures (the simulated RAM).
  public let memory: PhysicalMemory
  /// CR0/CR4/EFER/EFLAGS state.
  public var control: PagingControl

  /// Creates a walker over `memory`.
  public init(memory: PhysicalMemory, control: PagingControl = PagingControl()) {
    self.memory = memory
    self.control = control
  }

  /// Translates `linear` for an access of `type` at `privilege` in the address space whose
  /// top-level table is at `root` (CR3's address bits; PML5 with LA57, else PML4).
  ///
  /// On success A is set in every entry walked and D in the leaf for a write (atomically; only
  /// when the access is permitted). On failure nothing is written, unless
  /// ``PagingControl/accessedFlagPolicy`` says otherwise.
  ///
  /// - Returns: the translation, a ``MMUFault/pageFault(_:)`` with the architectural error code
  ///   and CR2, ``MMUFault/generalProtection(linearAddress:)`` for a non-canonical address, or
  ///   ``MMUFault/unbackedPhysicalAddress(_:)``. Never traps, whatever the entries hold.
  public func translate(
    _ linear: UInt64, _ type: AccessType, privilege: PrivilegeLevel, root: PhysicalAddress
  ) -> Result<NativeTranslation, MMUFault> {
    nativeWalk(
      linear: linear, type: type, privilege: privilege, root: root, control: control,
      tables: HostPhysicalAccess(memory: memory), mode: .access)
  }

  /// ``translate(_:_:privilege:root:)`` in `pmap`'s address space, at the privilege its leaves
  /// are made for (user for a `.user` pmap, supervisor for a `.kernel` one).
  public func translate(_ va: VirtualAddress, _ type: AccessType, in pmap: NativePmap) -> Result<
    NativeTranslation, MMUFault
  > {
    translate(va.rawValue, type, privilege: pmap.kind == .user ? .user : .supervisor, root: pmap.root)
  }

  /// The translation as the tables say now, without rights checks or A/D writes.
  func probe(_ linear: UInt64, root: PhysicalAddress) -> Result<NativeTranslation, MMUFault> {
    nativeWalk(
      linear: linear, type: .read, privilege: .supervisor, root: root, control: control,
      tables: HostPhysicalAccess(memory: memory), mode: .probe)
  }
}
