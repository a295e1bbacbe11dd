import Pmap
import PmapEPT
import PmapMMU
import PmapNative
import UVMLite
import UVMLiteHost

/// How the demo's guests and VMM reach memory: through the MMU.
protocol AccessLayer: AnyObject {
  /// The host pointer of `gpa` after the guest's access went through its EPT (faulting as needed).
  func guestPointer(_ guest: GuestMemory, _ gpa: UInt64, write: Bool) throws(AccessError) -> UnsafeMutableRawPointer
  /// The host pointer of `gpa` after the VMM's access through its native mapping of the guest.
  func hostPointer(_ guest: GuestMemory, _ gpa: UInt64, write: Bool) throws(AccessError) -> UnsafeMutableRawPointer
}

/// The simple stand-in (`--mmu software`): a `lookupLeaf` walk and an atomic OR of A/D.
extension SoftwareMMU: AccessLayer {}

/// The default: every access goes through the x86 MMU model (PmapMMU), as the CPU would make it.
/// A guest access is an EPT walk (`EPTWalker`: rights, misconfigurations, A/D set atomically
/// only on success and only when the EPT pointer enables them); an EPT violation becomes the
/// exit qualification the CPU would report, which goes to ``UVM/fault(_:violation:)`` as NVMM
/// hands it to `uvm_fault`, and the access is retried. A VMM access is a native walk of the host
/// pmap at user privilege (`NativeWalker`); its page fault goes to ``UVM/hostFault(_:at:access:)``.
final class ModelMMU: AccessLayer {
  let uvm: UVM
  let native: NativeWalker

  init(uvm: UVM) {
    self.uvm = uvm
    native = NativeWalker(memory: uvm.memory)
  }

  func guestPointer(_ guest: GuestMemory, _ gpa: UInt64, write: Bool) throws(AccessError) -> UnsafeMutableRawPointer {
    let walker = EPTWalker(guest.ept)
    for _ in 0..<3 {
      switch walker.translate(gpa, write ? .write : .read) {
      case .success(let t):
        return uvm.memory.pointer(to: t.hostPhysicalAddress)
      case .failure(.eptViolation(let v)):
        let exit = EPTViolationExit(
          exitQualification: v.qualification.rawValue, guestPhysicalAddress: v.guestPhysicalAddress)
        try resolve { () throws(FaultError) in try uvm.fault(guest, violation: exit) }
      case .failure(let other):
        preconditionFailure("pmap-demo: the guest's EPT produced \(other)")
      }
    }
    preconditionFailure("pmap-demo: the fault path resolved the page but it is still not mapped")
  }

  func hostPointer(_ guest: GuestMemory, _ gpa: UInt64, write: Bool) throws(AccessError) -> UnsafeMutableRawPointer {
    guard let host = guest.hostPmap, let va = guest.hostAddress(of: GuestPhysicalAddress(gpa)) else {
      throw .outsideGuestMemory
    }
    for _ in 0..<3 {
      switch native.translate(va, write ? .write : .read, in: host) {
      case .success(let t):
        return uvm.memory.pointer(to: t.physicalAddress)
      case .failure(.pageFault):
        try resolve { () throws(FaultError) in
          try uvm.hostFault(guest, at: GuestPhysicalAddress(gpa), access: write ? .write : .read)
        }
      case .failure(let other):
        preconditionFailure("pmap-demo: the host pmap produced \(other)")
      }
    }
    preconditionFailure("pmap-demo: the fault path resolved the page but it is still not mapped")
  }

  /// Runs a fault; returns if it was resolved (the access is retried), throws otherwise.
  private func resolve(_ fault: () throws(FaultError) -> FaultOutcome) throws(AccessError) {
    let outcome: FaultOutcome
    do throws(FaultError) { outcome = try fault() } catch { throw .fault(error) }
    switch outcome {
    case .resolved: return
    case .outsideGuestMemory: throw .outsideGuestMemory
    case .accessDenied: throw .accessDenied
    }
  }
}
