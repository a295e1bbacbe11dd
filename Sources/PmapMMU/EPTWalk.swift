import Pmap
import PmapEPT

/// EPT entry bits from the SDM (Vol. 3C §29.3.2, Tables 29-1 to 29-6), independent of the
/// library's `EPTPTE`.
enum EPTBits {
  static let read: UInt64 = 1 << 0
  static let write: UInt64 = 1 << 1
  static let execute: UInt64 = 1 << 2
  static let large: UInt64 = 1 << 7
  static let accessed: UInt64 = 1 << 8
  static let dirty: UInt64 = 1 << 9
}

/// The EPT of one guest, as the processor sees it: the EPT pointer, the processor's EPT
/// capabilities and the host-physical memory the EPT paging structures live in.
///
/// `translate` is the EPT page walk of SDM Vol. 3C §29.3.2 with the checks of §29.3.3 (EPT
/// misconfigurations, EPT violations) and the A/D rules of §29.3.5 (KVM: the `PTTYPE_EPT`
/// instance of `walk_addr_generic`, used for nested EPT).
public struct EPTWalker: Sendable {
  /// Host-physical memory (the simulated RAM).
  public let memory: PhysicalMemory
  /// The EPT pointer: root table, walk length (must be 4) and the A/D enable (bit 6).
  public let eptPointer: EPTPointer
  /// The processor's EPT features.
  public let capabilities: EPTCapabilities

  /// Creates the walker.
  ///
  /// - Precondition: `eptPointer` names a four-level walk (a VM entry with any other would fail).
  public init(memory: PhysicalMemory, eptPointer: EPTPointer, capabilities: EPTCapabilities = EPTCapabilities()) {
    precondition(eptPointer.walkLength == 4, "EPTWalker: only four-level EPT is modelled")
    self.memory = memory
    self.eptPointer = eptPointer
    self.capabilities = capabilities
  }

  /// The walker for `pmap`'s EPT (its ``EPTPointer``, A/D as the pmap was created).
  public init(_ pmap: EPTPmap, capabilities: EPTCapabilities = EPTCapabilities()) {
    self.init(memory: pmap.memory, eptPointer: pmap.eptPointer, capabilities: capabilities)
  }

  /// Whether the processor maintains EPT A/D bits for this EPT (EPTP bit 6).
  public var accessedDirtyEnabled: Bool { eptPointer.accessedDirtyEnabled }

  /// Translates `guestPhysicalAddress` for an access of `type`, setting EPT A (every entry
  /// walked) and D (the leaf, for a write) when EPTP bit 6 enables them and the access is
  /// permitted.
  ///
  /// - Parameters:
  ///   - linearAddress: the guest linear address whose translation this access belongs to, or
  ///     `nil` for an access without one (the violation then has qualification bit 7 clear).
  ///   - pagingStructureAccess: `true` when the access reads or updates a guest paging-structure
  ///     entry (qualification bit 8 clear); `false` for the access to the final translation.
  /// - Returns: the translation, or ``MMUFault/eptViolation(_:)``,
  ///   ``MMUFault/eptMisconfiguration(guestPhysicalAddress:)`` or
  ///   ``MMUFault/unbackedPhysicalAddress(_:)``. Never traps, whatever the entries hold.
  /// - Complexity: four entry reads; a compare-and-swap per entry whose A/D changes.
  public func translate(
    _ guestPhysicalAddress: UInt64, _ type: AccessType, linearAddress: UInt64? = nil,
    pagingStructureAccess: Bool = false
  ) -> Result<EPTTranslation, MMUFault> {
    walk(
      guestPhysicalAddress, type, linearAddress: linearAddress, pagingStructureAccess: pagingStructureAccess,
      mode: .access)
  }

  /// The translation without checking rights or writing A/D (for the TLB checker).
  func probe(_ guestPhysicalAddress: UInt64) -> Result<EPTTranslation, MMUFault> {
    walk(guestPhysicalAddress, .read, linearAddress: nil, pagingStructureAccess: false, mode: .probe)
  }

  func walk(
    _ gpa: UInt64, _ type: AccessType, linearAddress: UInt64?, pagingStructureAccess: Bool, mode: WalkMode
  ) -> Result<EPTTranslation, MMUFault> {
    // Access bits 0-2. A paging-structure access with EPT A/D on is treated as a write
    // (§29.3.5), and then reports both bit 0 and bit 1.
    var accessBits: EPTExitQualification
    switch type {
    case .read: accessBits = .read
    case .write: accessBits = pagingStructureAccess ? [.read, .write] : .write
    case .fetch: accessBits = .fetch
    }
    let treatedAsWrite = type == .write || (pagingStructureAccess && accessedDirtyEnabled)
    if pagingStructureAccess && accessedDirtyEnabled { accessBits = [.read, .write] }
    var context: EPTExitQualification = []
    if linearAddress != nil {
      context.insert(.linearAddressValid)
      if !pagingStructureAccess { context.insert(.finalTranslation) }
    }
    func violation(_ rights: UInt64) -> Result<EPTTranslation, MMUFault> {
      let q = EPTExitQualification(rawValue: accessBits.rawValue | context.rawValue | (rights & 7) << 3)
      return .failure(
        .eptViolation(EPTViolation(qualification: q, guestPhysicalAddress: gpa, guestLinearAddress: linearAddress)))
    }
    // A four-level EPT translates 48 bits; a guest-physical address beyond that cannot be mapped.
    guard gpa >> 48 == 0 else { return violation(0) }
    let reservedHigh = reservedAddressBits(capabilities.physicalAddressBits)

    retry: while true {
      var steps: [WalkStep] = []
      steps.reserveCapacity(4)
      var table = eptPointer.root.rawValue
      var rights: UInt64 = 7
      var level = 4
      while true {
        let address = table | ((gpa >> UInt64(12 + 9 * (level - 1))) & 511) << 3
        guard let pointer = memory.entryPointer(atPhysical: address) else {
          return .failure(.unbackedPhysicalAddress(address))
        }
        let e = pointer.load()
        rights &= e & 7
        // §29.3.3.2: an entry with R, W and X all clear is not present: an EPT violation.
        if e & 7 == 0 { return violation(rights) }
        if isMisconfigured(e, level: level, reservedHigh: reservedHigh) {
          return .failure(.eptMisconfiguration(guestPhysicalAddress: gpa))
        }
        steps.append(WalkStep(address: address, pointer: pointer, value: e))
        if level == 1 || (level <= 3 && e & EPTBits.large != 0) { break }
        table = e & entryFrameMask
        level -= 1
      }
      if mode == .access {
        let needed: UInt64 =
          switch type {
          case .fetch: EPTBits.execute
          case .read, .write: treatedAsWrite ? EPTBits.write : EPTBits.read
          }
        if rights & needed == 0 { return violation(rights) }
      }
      let leaf = steps[steps.count - 1]
      var leafValue = leaf.value
      if mode == .access && accessedDirtyEnabled {
        for (i, step) in steps.enumerated() {
          let isLeaf = i == steps.count - 1
          let bits = EPTBits.accessed | (isLeaf && treatedAsWrite ? EPTBits.dirty : 0)
          if !setAtomically(step.pointer, old: step.value, bits: bits) { continue retry }
          if isLeaf { leafValue |= bits }
        }
      }
      let size = PageSize(rawValue: UInt8(level))!
      let offsetMask = size.bytes - 1
      var permissions: Protection = []
      if rights & EPTBits.read != 0 { permissions.insert(.read) }
      if rights & EPTBits.write != 0 { permissions.insert(.write) }
      if rights & EPTBits.execute != 0 { permissions.insert(.execute) }
      return .success(
        EPTTranslation(
          hostPhysicalAddress: PhysicalAddress(
            truncating: (leaf.value & entryFrameMask & ~offsetMask) | (gpa & offsetMask)),
          pageSize: size, permissions: permissions, memoryType: UInt8((leaf.value >> 3) & 7),
          ignoresGuestPAT: leaf.value & (1 << 6) != 0, leafEntryAddress: PhysicalAddress(truncating: leaf.address),
          leafEntry: leafValue))
    }
  }

  /// §29.3.3.1: whether a present EPT entry at `level` is an EPT misconfiguration.
  func isMisconfigured(_ e: UInt64, level: Int, reservedHigh: UInt64) -> Bool {
    // W without R; X without R unless execute-only translations are supported.
    if e & EPTBits.read == 0 {
      if e & EPTBits.write != 0 { return true }
      if e & EPTBits.execute != 0 && !capabilities.executeOnly { return true }
    }
    if e & reservedHigh != 0 { return true }
    let large = e & EPTBits.large != 0
    let isLeaf = level == 1 || (level <= 3 && large)
    if !isLeaf {
      // A PML4E, or a PDPTE / PDE referencing a table: bits 7:3 are reserved.
      return e & (0b11111 << 3) != 0
    }
    if level == 3 && !capabilities.supports1GBPages { return true }
    switch (e >> 3) & 7 {
    case 2, 3, 7: return true  // reserved memory types
    default: break
    }
    switch level {
    case 3: return e & 0x3fff_f000 != 0  // 1 GiB page: bits 29:12 reserved
    case 2: return e & 0x001f_f000 != 0  // 2 MiB page: bits 20:12 reserved
    default: return false
    }
  }
}
