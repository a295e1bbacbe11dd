import Pmap
import PmapMMU

/// The x86 MMU model (`PmapMMU`'s ``NativeWalker``) as an ``AccessOracle``: one page walk per
/// access (no TLB: the tables do not change during a run, so a TLB changes nothing), with the
/// same CR0.WP, EFER.NXE, CR4.SMEP/SMAP, EFLAGS.AC, MAXPHYADDR and 1 GiB-page support as the
/// KVM guest, and A set
/// only when the access succeeds (``AccessedFlagPolicy/onSuccessOnly``; see
/// Documentation/KVMComparison.md for why that is what both sides must agree on).
public final class MMUModelOracle: AccessOracle {
  /// What the model does with A bits when an access faults.
  public let accessedFlagPolicy: AccessedFlagPolicy

  /// Creates the oracle.
  public init(accessedFlagPolicy: AccessedFlagPolicy = .onSuccessOnly) {
    self.accessedFlagPolicy = accessedFlagPolicy
  }

  public func perform(
    _ access: ScriptedAccess, root: PhysicalAddress, memory: PhysicalMemory, mode: PagingMode,
    features: GuestPagingFeatures
  ) -> AccessOutcome {
    let supervisor = access.privilege == .supervisor
    let control = PagingControl(
      noExecuteEnabled: mode.noExecuteEnabled, writeProtect: mode.writeProtect,
      smep: mode.supervisorModeExecutionPrevention, smap: mode.supervisorModeAccessPrevention,
      alignmentCheck: supervisor && access.alignmentCheckFlag, physicalAddressBits: features.physicalAddressBits,
      supports1GBPages: features.supports1GBPages, accessedFlagPolicy: accessedFlagPolicy)
    let walker = NativeWalker(memory: memory, control: control)
    let type: AccessType =
      switch access.kind {
      case .read: .read
      case .write: .write
      case .fetch: .fetch
      }
    switch walker.translate(
      access.linear, type, privilege: supervisor ? .supervisor : .user, root: root)
    {
    case .success(let translation):
      let pa = translation.physicalAddress
      guard pa.rawValue + 8 <= memory.size else { return .fault(vector: 255, errorCode: 0, faultingAddress: 0) }
      switch access.kind {
      case .read: return .completed(value: memory.pointer(to: pa).load(as: UInt64.self))
      case .write: memory.pointer(to: pa).storeBytes(of: access.value, as: UInt64.self)
      case .fetch: break
      }
      return .completed(value: 0)
    case .failure(.pageFault(let fault)):
      return .pageFault(FaultErrorCode(rawValue: fault.errorCode.rawValue), at: fault.address)
    case .failure(.generalProtection):
      return .fault(vector: 13, errorCode: 0, faultingAddress: 0)
    case .failure(let other):
      // Not architectural for a native walk over RAM (EPT results, unbacked memory): an
      // impossible vector, so the comparison reports it as a disagreement.
      _ = other
      return .fault(vector: 255, errorCode: 0, faultingAddress: 0)
    }
  }
}
