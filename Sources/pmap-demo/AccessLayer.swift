import Pmap
import UVMLite
import UVMLiteHost

/// How the demo's guests and VMM reach memory: through "the MMU". Today this is
/// ``SoftwareMMU`` (UVMLiteHost), which walks the pmaps with `lookupLeaf`, sets A/D in the
/// entries as the CPU would and raises EPT violations into `UVM.fault`. When the PmapMMU model is
/// on main, a conformance that translates with its `EPTWalker` / `NativeWalker` and turns an
/// `MMUFault.eptViolation(v)` into `uvm.fault(guest, violation: EPTViolationExit(exitQualification:
/// v.qualification.rawValue, guestPhysicalAddress: v.guestPhysicalAddress))` replaces it here.
protocol AccessLayer: AnyObject {
  /// The host pointer of `gpa` after the guest's access went through its EPT (faulting as needed).
  func guestPointer(_ guest: GuestMemory, _ gpa: UInt64, write: Bool) throws(AccessError) -> UnsafeMutableRawPointer
  /// The host pointer of `gpa` after the VMM's access through its native mapping of the guest.
  func hostPointer(_ guest: GuestMemory, _ gpa: UInt64, write: Bool) throws(AccessError) -> UnsafeMutableRawPointer
}

extension SoftwareMMU: AccessLayer {}
