import Pmap
import PmapEPT

/// A successful two-dimensional translation: guest linear -> guest physical (the guest's own
/// tables, if guest paging is on) -> host physical (the EPT).
public struct NestedTranslation: Hashable, Sendable {
  /// The guest's translation, or `nil` when guest paging is off (linear = guest-physical).
  public var guest: NativeTranslation?
  /// The EPT translation of the final guest-physical address.
  public var ept: EPTTranslation

  /// The guest-physical address accessed.
  public var guestPhysicalAddress: PhysicalAddress

  /// Creates a translation record.
  public init(guest: NativeTranslation?, ept: EPTTranslation, guestPhysicalAddress: PhysicalAddress) {
    self.guest = guest
    self.ept = ept
    self.guestPhysicalAddress = guestPhysicalAddress
  }

  /// The host-physical address accessed.
  public var hostPhysicalAddress: PhysicalAddress { ept.hostPhysicalAddress }
}

/// Guest paging structures in guest-physical memory: every entry reference goes through the EPT
/// (SDM Vol. 3C §29.3.2: "guest-physical addresses used by the guest's paging structures are
/// translated through EPT").
struct GuestPhysicalAccess: PagingStructureAccess {
  let ept: EPTWalker
  let linear: UInt64
  let mode: WalkMode

  func entry(at address: UInt64) -> Result<EntryPointer, MMUFault> {
    let result =
      mode == .probe
      ? ept.probe(address) : ept.walk(address, .read, linearAddress: linear, pagingStructureAccess: true, mode: mode)
    switch result {
    case .failure(let f): return .failure(f)
    case .success(let t):
      guard let p = ept.memory.entryPointer(atPhysical: t.hostPhysicalAddress.rawValue) else {
        return .failure(.unbackedPhysicalAddress(t.hostPhysicalAddress.rawValue))
      }
      return .success(p)
    }
  }

  func prepareUpdate(at address: UInt64) -> Result<Void, MMUFault> {
    // Setting a guest A/D bit writes the guest paging-structure entry.
    ept.walk(address, .write, linearAddress: linear, pagingStructureAccess: true, mode: mode).map { _ in () }
  }
}

/// The two-dimensional MMU of a VMX guest with EPT, without a TLB: the guest's native walk over
/// guest-physical memory, each table reference and the final access translated through the EPT.
public struct NestedWalker: Sendable {
  /// The EPT.
  public let ept: EPTWalker
  /// The guest's CR0/CR4/EFER/EFLAGS state.
  public var guestControl: PagingControl

  /// Creates the walker.
  public init(ept: EPTWalker, guestControl: PagingControl = PagingControl()) {
    self.ept = ept
    self.guestControl = guestControl
  }

  /// Translates guest linear address `linear` for an access of `type` at `privilege`.
  ///
  /// - Parameter guestRoot: the guest-physical address of the guest's top-level table (guest
  ///   CR3), or `nil` when guest paging is off (the linear address is the guest-physical one).
  /// - Returns: the translation; a guest ``MMUFault/pageFault(_:)``; an
  ///   ``MMUFault/eptViolation(_:)`` (qualification bit 8 tells whether it happened on a guest
  ///   paging-structure access or on the final access); an
  ///   ``MMUFault/eptMisconfiguration(guestPhysicalAddress:)``; or
  ///   ``MMUFault/unbackedPhysicalAddress(_:)``.
  ///
  /// Order of events, as the SDM describes a walk: each guest entry is read through the EPT
  /// (an EPT read; a write when EPT A/D is on), the guest's rights are checked (a guest page
  /// fault), then the guest's A/D bits are written (each an EPT write to the entry's
  /// guest-physical address), then the final guest-physical address is translated for the
  /// access itself.
  public func translate(
    _ linear: UInt64, _ type: AccessType, privilege: PrivilegeLevel, guestRoot: PhysicalAddress?
  ) -> Result<NestedTranslation, MMUFault> {
    walk(linear, type, privilege: privilege, guestRoot: guestRoot, mode: .access)
  }

  func walk(
    _ linear: UInt64, _ type: AccessType, privilege: PrivilegeLevel, guestRoot: PhysicalAddress?, mode: WalkMode
  ) -> Result<NestedTranslation, MMUFault> {
    var guest: NativeTranslation?
    var gpa = linear
    if let guestRoot {
      let result = nativeWalk(
        linear: linear, type: type, privilege: privilege, root: guestRoot, control: guestControl,
        tables: GuestPhysicalAccess(ept: ept, linear: linear, mode: mode), mode: mode)
      switch result {
      case .failure(let f): return .failure(f)
      case .success(let t):
        guest = t
        gpa = t.physicalAddress.rawValue
      }
    }
    let final =
      mode == .probe
      ? ept.probe(gpa) : ept.walk(gpa, type, linearAddress: linear, pagingStructureAccess: false, mode: mode)
    return final.map {
      NestedTranslation(guest: guest, ept: $0, guestPhysicalAddress: PhysicalAddress(truncating: gpa))
    }
  }
}
