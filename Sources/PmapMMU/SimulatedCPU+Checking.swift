import Pmap
import PmapEPT

extension SimulatedCPU {
  /// Compares a TLB entry about to serve an access with what the paging structures say now,
  /// and records a ``StaleTranslation`` for every difference the pmap owed an invalidation for.
  ///
  /// Differences that need no invalidation are not reported: more rights than cached (the
  /// SDM's optional invalidation: at worst a spurious fault), or A/D set since.
  func check(_ s: inout CPUState, _ e: TLBEntry, _ linear: UInt64, _ type: AccessType) {
    let offset = linear & e.size.offsetMask
    let cached = e.physicalBase | offset
    var reasons: [StaleTranslation.Reason] = []
    var current: UInt64?
    switch e.context {
    case .native(let root):
      switch NativeWalker(memory: memory, control: s.control).probe(linear, root: root) {
      case .failure: reasons.append(.removed)
      case .success(let t):
        current = t.physicalAddress.rawValue
        if t.physicalAddress.rawValue != cached { reasons.append(.frameChanged) }
        if (e.writable && !t.writable) || (e.user && !t.userAccessible) || (!e.executeDisable && t.executeDisable) {
          reasons.append(.rightsReduced)
        }
        if t.leafEntry & NativeBits.accessed == 0 { reasons.append(.accessedCleared) }
        if e.dirty && t.leafEntry & NativeBits.dirty == 0 { reasons.append(.dirtyCleared) }
      }
    case .guest(_, let guestRoot):
      let eptp = e.eptPointer!
      let walker = NestedWalker(
        ept: EPTWalker(memory: memory, eptPointer: eptp, capabilities: s.eptCapabilities), guestControl: s.control)
      switch walker.walk(linear, type, privilege: .supervisor, guestRoot: guestRoot, mode: .probe) {
      case .failure: reasons.append(.removed)
      case .success(let t):
        current = t.hostPhysicalAddress.rawValue
        if t.hostPhysicalAddress.rawValue != cached || t.guestPhysicalAddress.rawValue != e.guestPhysicalBase! | offset
        {
          reasons.append(.frameChanged)
        }
        var reduced = !t.ept.permissions.isSuperset(of: e.eptPermissions ?? [])
        var accessedCleared = false
        var dirtyCleared = false
        if let g = t.guest {
          if (e.writable && !g.writable) || (e.user && !g.userAccessible) || (!e.executeDisable && g.executeDisable) {
            reduced = true
          }
          if g.leafEntry & NativeBits.accessed == 0 { accessedCleared = true }
          if e.dirty && g.leafEntry & NativeBits.dirty == 0 { dirtyCleared = true }
        }
        if eptp.accessedDirtyEnabled {
          if t.ept.leafEntry & EPTBits.accessed == 0 { accessedCleared = true }
          if e.dirty && t.ept.leafEntry & EPTBits.dirty == 0 { dirtyCleared = true }
        }
        if reduced { reasons.append(.rightsReduced) }
        if accessedCleared { reasons.append(.accessedCleared) }
        if dirtyCleared { reasons.append(.dirtyCleared) }
      }
    }
    if reasons.isEmpty { return }
    s.stale.append(
      StaleTranslation(
        cpu: id, context: e.context, linearAddress: linear, access: type, reasons: reasons,
        cachedPhysicalAddress: cached, currentPhysicalAddress: current))
  }
}
