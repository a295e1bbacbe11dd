import Pmap

/// Native entry bits, from the SDM (Vol. 3A §4.5, Tables 4-15 to 4-20), independent of the
/// library's `NativePTE` so the model checks the library rather than repeating it.
enum NativeBits {
  static let present: UInt64 = 1 << 0
  static let writable: UInt64 = 1 << 1
  static let user: UInt64 = 1 << 2
  static let accessed: UInt64 = 1 << 5
  static let dirty: UInt64 = 1 << 6
  static let pageSize: UInt64 = 1 << 7
  static let global: UInt64 = 1 << 8
  static let executeDisable: UInt64 = 1 << 63
}

/// One entry a walk used.
struct WalkStep {
  var address: UInt64
  var pointer: EntryPointer
  var value: UInt64
}

/// The native (IA-32e, 4- and 5-level) page walk of SDM Vol. 3A §4.5, over any way of reaching
/// the paging structures.
///
/// - Returns: the translation, or the fault. In `.access` mode A is set in every entry walked
///   and D in the leaf for a write, each with a compare-and-swap against the value the walk
///   read, and only when the access is permitted; a failed compare-and-swap restarts the walk
///   (as KVM's `walk_addr_generic` retries, and as the processor's locked update does).
func nativeWalk<Tables: PagingStructureAccess>(
  linear: UInt64, type: AccessType, privilege: PrivilegeLevel, root: PhysicalAddress, control: PagingControl,
  tables: Tables, mode: WalkMode
) -> Result<NativeTranslation, MMUFault> {
  guard control.isCanonical(linear) else { return .failure(.generalProtection(linearAddress: linear)) }
  var code: PageFaultErrorCode = []
  if type == .write { code.insert(.write) }
  if privilege == .user { code.insert(.user) }
  // §4.7: I/D is reported only when NXE or SMEP is set.
  if type == .fetch && (control.noExecuteEnabled || control.smep) { code.insert(.instructionFetch) }
  let reservedHigh = reservedAddressBits(control.physicalAddressBits) | (control.noExecuteEnabled ? 0 : 1 << 63)

  retry: while true {
    var steps: [WalkStep] = []
    steps.reserveCapacity(5)
    var table = root.rawValue & entryFrameMask
    var writable = true
    var user = true
    var executeDisable = false
    var level = control.levels

    func fault(_ extra: PageFaultErrorCode, at level: Int, upperSteps: ArraySlice<WalkStep>) -> Result<
      NativeTranslation, MMUFault
    > {
      if mode == .access && control.accessedFlagPolicy == .upperLevelsOnFault {
        for step in upperSteps {
          if case .success = tables.prepareUpdate(at: step.address) {
            _ = setAtomically(step.pointer, old: step.value, bits: NativeBits.accessed)
          }
        }
      }
      return .failure(.pageFault(PageFault(errorCode: code.union(extra), address: linear, level: level)))
    }

    while true {
      let index = (linear >> UInt64(12 + 9 * (level - 1))) & 511
      let address = table | index << 3
      let pointer: EntryPointer
      switch tables.entry(at: address) {
      case .success(let p): pointer = p
      case .failure(let f): return .failure(f)
      }
      let e = pointer.load()
      if e & NativeBits.present == 0 { return fault([], at: level, upperSteps: steps[...]) }
      if isReserved(e, level: level, reservedHigh: reservedHigh, control: control) {
        return fault([.present, .reservedBit], at: level, upperSteps: steps[...])
      }
      steps.append(WalkStep(address: address, pointer: pointer, value: e))
      writable = writable && e & NativeBits.writable != 0
      user = user && e & NativeBits.user != 0
      if control.noExecuteEnabled && e & NativeBits.executeDisable != 0 { executeDisable = true }
      if level == 1 || (level <= 3 && e & NativeBits.pageSize != 0) { break }
      table = e & entryFrameMask
      level -= 1
    }

    let leaf = steps[steps.count - 1]
    let size = PageSize(rawValue: UInt8(level))!
    let offsetMask = size.bytes - 1
    let frame = leaf.value & entryFrameMask & ~offsetMask
    if mode == .access
      && !nativeAccessPermitted(
        writable: writable, user: user, executeDisable: executeDisable, type: type, privilege: privilege,
        control: control)
    {
      return fault(.present, at: level, upperSteps: steps.dropLast())
    }
    var leafValue = leaf.value
    if mode == .access {
      for (i, step) in steps.enumerated() {
        let isLeaf = i == steps.count - 1
        let bits = NativeBits.accessed | (isLeaf && type == .write ? NativeBits.dirty : 0)
        if step.value | bits == step.value { continue }
        if case .failure(let f) = tables.prepareUpdate(at: step.address) { return .failure(f) }
        if !setAtomically(step.pointer, old: step.value, bits: bits) { continue retry }
        if isLeaf { leafValue |= bits }
      }
    }
    return .success(
      NativeTranslation(
        physicalAddress: PhysicalAddress(truncating: frame | (linear & offsetMask)), pageSize: size,
        writable: writable, userAccessible: user, executeDisable: executeDisable,
        global: leaf.value & NativeBits.global != 0, leafEntryAddress: PhysicalAddress(truncating: leaf.address),
        leafEntry: leafValue))
  }
}

/// Whether a present entry at `level` has a reserved bit set (SDM Vol. 3A §4.5, Tables 4-15 to
/// 4-20, and §4.7 "RSVD").
func isReserved(_ e: UInt64, level: Int, reservedHigh: UInt64, control: PagingControl) -> Bool {
  if e & reservedHigh != 0 { return true }
  let ps = e & NativeBits.pageSize != 0
  switch level {
  case 4, 5: return ps  // PS is reserved in PML4 and PML5 entries
  case 3: return ps && (!control.supports1GBPages || e & 0x3fff_e000 != 0)  // 1 GiB frame bits 29:13
  case 2: return ps && e & 0x001f_e000 != 0  // 2 MiB frame bits 20:13
  default: return false
  }
}
