import Pmap
import PmapEPT
import PmapNative
import UVMLite

/// Why a guest or VMM access through ``SoftwareMMU`` did not reach memory.
public enum AccessError: Error, Equatable, Sendable {
  /// The guest-physical address is not RAM (the hypervisor would emulate MMIO).
  case outsideGuestMemory
  /// The access asks for more than the RAM grants.
  case accessDenied
  /// The fault could not be resolved.
  case fault(FaultError)
}

/// A minimal stand-in for the MMU (the demo's `--mmu software`; the demo uses the PmapMMU model
/// by default): performs an access the way the hardware would on the pmaps' own entries, and
/// takes the fault path when it cannot.
///
/// A guest access walks the guest's EPT (`lookupLeaf`); when no present leaf grants the access it
/// builds the EPT-violation exit qualification the CPU would report (access kind, rights found)
/// and calls ``UVM/fault(_:violation:)``, then retries. When the leaf allows it, it sets A (and D
/// for a write) in the entry with an atomic OR, exactly the bits the CPU sets, and returns the
/// host pointer (direct map) of the byte. VMM accesses do the same on the native host pmap with
/// ``UVM/hostFault(_:at:access:)``. There is no TLB: every access walks, so A is set on every
/// access (a real TLB would set it once per cached translation; the pagedaemon's clears are
/// invalidated, so the difference is only in how often A is re-set).
public final class SoftwareMMU {
  /// The VM system whose faults this MMU raises.
  public let uvm: UVM
  /// Accesses performed, and those that faulted first.
  public private(set) var accesses = 0
  public private(set) var faultedAccesses = 0

  /// Creates the MMU of `uvm`.
  public init(uvm: UVM) { self.uvm = uvm }

  /// The host pointer of guest-physical `gpa` of `guest`, after the guest's access (`write` or
  /// read) went through its EPT, faulting as needed.
  public func guestPointer(_ guest: GuestMemory, _ gpa: UInt64, write: Bool) throws(AccessError)
    -> UnsafeMutableRawPointer
  {
    accesses &+= 1
    let needed: Protection = write ? .readWrite : .read
    var faulted = false
    for _ in 0..<3 {
      var found: Protection = []
      if gpa < 1 << 48, let leaf = guest.ept.lookupLeaf(VirtualAddress(truncating: gpa)) {
        found = EPTPTE.protection(of: leaf.value)
        if found.isSuperset(of: needed) {
          let bits = EPTPTE.accessed | (write ? EPTPTE.dirty : 0)
          if leaf.value & bits != bits { leaf.entry.setBits(bits) }
          if faulted { faultedAccesses &+= 1 }
          let frame = EPTPTE.leafFrame(leaf.value, at: leaf.level)
          let offset = Int(truncatingIfNeeded: gpa & (leaf.level.bytesPerEntry &- 1))
          return uvm.memory.pointer(to: frame) + offset
        }
      }
      faulted = true
      let exit = EPTViolationExit(
        access: write ? .write : .read, permitted: found, guestPhysicalAddress: gpa)
      let outcome: FaultOutcome
      do throws(FaultError) { outcome = try uvm.fault(guest, violation: exit) } catch { throw .fault(error) }
      switch outcome {
      case .resolved: continue
      case .outsideGuestMemory: throw .outsideGuestMemory
      case .accessDenied: throw .accessDenied
      }
    }
    preconditionFailure("SoftwareMMU: the fault path resolved the page but it is still not mapped")
  }

  /// The host pointer of guest-physical `gpa` of `guest`, after the VMM's access through its
  /// native mapping at `hostBase + gpa`, faulting with ``UVM/hostFault(_:at:access:)`` as needed.
  ///
  /// - Precondition: the guest is mapped into a host pmap.
  public func hostPointer(_ guest: GuestMemory, _ gpa: UInt64, write: Bool) throws(AccessError)
    -> UnsafeMutableRawPointer
  {
    accesses &+= 1
    guard let host = guest.hostPmap else { preconditionFailure("SoftwareMMU: guest not mapped into the host") }
    var faulted = false
    for _ in 0..<3 {
      if let va = guest.hostAddress(of: GuestPhysicalAddress(gpa)), let leaf = host.lookupLeaf(va) {
        let found = NativePTE.protection(of: leaf.value)
        if !write || found.contains(.write) {
          let bits = NativePTE.accessed | (write ? NativePTE.dirty : 0)
          if leaf.value & bits != bits { leaf.entry.setBits(bits) }
          if faulted { faultedAccesses &+= 1 }
          let frame = NativePTE.leafFrame(leaf.value, at: leaf.level)
          return uvm.memory.pointer(to: frame) + Int(truncatingIfNeeded: gpa & 0xfff)
        }
      }
      faulted = true
      let outcome: FaultOutcome
      do throws(FaultError) {
        outcome = try uvm.hostFault(guest, at: GuestPhysicalAddress(gpa), access: write ? .write : .read)
      } catch { throw .fault(error) }
      switch outcome {
      case .resolved: continue
      case .outsideGuestMemory: throw .outsideGuestMemory
      case .accessDenied: throw .accessDenied
      }
    }
    preconditionFailure("SoftwareMMU: the fault path resolved the page but it is still not mapped")
  }

  /// Reads the 64-bit word at `gpa` as the guest.
  public func guestLoad(_ guest: GuestMemory, _ gpa: UInt64) throws(AccessError) -> UInt64 {
    try guestPointer(guest, gpa, write: false).loadUnaligned(as: UInt64.self)
  }

  /// Writes the 64-bit word at `gpa` as the guest.
  public func guestStore(_ guest: GuestMemory, _ gpa: UInt64, _ value: UInt64) throws(AccessError) {
    try guestPointer(guest, gpa, write: true).storeBytes(of: value, as: UInt64.self)
  }

  /// Reads the 64-bit word at `gpa` as the VMM, through its native mapping.
  public func hostLoad(_ guest: GuestMemory, _ gpa: UInt64) throws(AccessError) -> UInt64 {
    try hostPointer(guest, gpa, write: false).loadUnaligned(as: UInt64.self)
  }

  /// Writes the 64-bit word at `gpa` as the VMM, through its native mapping.
  public func hostStore(_ guest: GuestMemory, _ gpa: UInt64, _ value: UInt64) throws(AccessError) {
    try hostPointer(guest, gpa, write: true).storeBytes(of: value, as: UInt64.self)
  }
}
