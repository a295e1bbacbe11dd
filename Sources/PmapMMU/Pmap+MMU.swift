import Pmap
import PmapEPT
import PmapNative

extension Pmap {
  /// One access to `va` through this pmap's tables, made as the processor makes it, without a
  /// TLB: for a native pmap a user-mode access (supervisor-mode for a `.kernel` pmap) walked by
  /// ``NativeWalker`` under `control`; for an EPT pmap a guest access to guest-physical
  /// `va.linear` (guest paging off) walked by ``EPTWalker`` with the pmap's EPT pointer. A and D
  /// are set exactly as the walk sets them (atomically, only on success).
  ///
  /// Safe to call from a "hardware thread" while other threads operate on the pmap, as long as
  /// page-table pages are not released under a walk in progress (a shootdown that waits for it).
  ///
  /// - Returns: the (host-)physical address accessed, or the fault.
  /// - Precondition: the pmap is a `NativePmap` or an `EPTPmap`.
  public func accessThroughMMU(
    _ va: VirtualAddress, _ type: AccessType, control: PagingControl = PagingControl()
  ) -> Result<PhysicalAddress, MMUFault> {
    if let native = self as? NativePmap {
      return NativeWalker(memory: memory, control: control).translate(va, type, in: native).map(\.physicalAddress)
    }
    if let ept = self as? EPTPmap {
      return EPTWalker(ept).translate(va.linear, type, linearAddress: va.linear).map(\.hostPhysicalAddress)
    }
    preconditionFailure("accessThroughMMU: no MMU model for the \(Ops.formatName) format")
  }
}
