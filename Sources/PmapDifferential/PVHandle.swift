import Pmap
import PmapEPT
import PmapHost
import PmapMMU
import PmapNative

/// A pmap of either format, behind one interface, so that tests can mix formats in one array.
public protocol PVHandle: AnyObject {
  var root: PhysicalAddress { get }
  var hardwareManagesAccessedDirty: Bool { get }
  var statistics: PmapStatistics { get }
  /// "native", "ept" or "ept-noAD".
  var pvName: String { get }
  func extract(_ va: VirtualAddress) -> PhysicalAddress?
  func translation(of va: VirtualAddress) -> Translation?
  func pvEnter(
    _ va: VirtualAddress, _ pa: PhysicalAddress, protection: Protection, access: Protection, options: EnterOptions
  ) throws(EnterError)
  func remove(_ range: VirtualRange) throws(RangeOperationError)
  func protect(_ range: VirtualRange, to protection: Protection) throws(RangeOperationError)
  func unwire(_ va: VirtualAddress) throws(UnwireError)
  /// ``simulatedAccess(_:_:write:)``.
  func pvTouch(_ va: VirtualAddress, write: Bool) -> Bool
  func checkInvariants() -> InvariantViolation?
  /// Every mapping of the lower half.
  func pvAllMappings() -> [VirtualAddress: Translation]
  /// Every page-table page of the tree with its contents and wire count.
  func pvTree(_ ram: SimulatedRAM) -> [PhysicalAddress: PVTablePage]
}

/// One page-table page as ``PVHandle/pvTree(_:)`` records it.
public struct PVTablePage: Equatable, Sendable {
  /// The 512 entries.
  public var entries: [UInt64]
  /// The frame's wire count.
  public var wireCount: Int
}

extension Pmap: PVHandle {
  public var pvName: String {
    let name = "\(Ops.formatName)"
    return hardwareManagesAccessedDirty ? name : name + "-noAD"
  }

  public func pvEnter(
    _ va: VirtualAddress, _ pa: PhysicalAddress, protection: Protection, access: Protection, options: EnterOptions
  ) throws(EnterError) {
    try enter(va, pa, protection: protection, access: access, options: options)
  }

  public func pvTouch(_ va: VirtualAddress, write: Bool) -> Bool { simulatedAccess(self, va, write: write) }

  public func pvAllMappings() -> [VirtualAddress: Translation] {
    var result: [VirtualAddress: Translation] = [:]
    forEachMapping(in: .lowerHalf) { va, t in result[va] = t }
    return result
  }

  public func pvTree(_ ram: SimulatedRAM) -> [PhysicalAddress: PVTablePage] {
    var result: [PhysicalAddress: PVTablePage] = [:]
    forEachPageTablePage { frame, _ in
      result[frame] = PVTablePage(entries: ram.frameContents(frame), wireCount: memory.wireCount(of: frame))
    }
    return result
  }
}

/// The kinds of pmap the parameterised tests mix.
public enum PVKind: String, Sendable, CaseIterable {
  case native
  case ept
  case eptNoAD

  /// A new pmap of this kind on `machine`.
  public func make(on machine: SimulatedMachine) throws -> any PVHandle {
    switch self {
    case .native: try machine.makeNativePmap()
    case .ept: try machine.makeEPTPmap(accessedDirty: true)
    case .eptNoAD: try machine.makeEPTPmap(accessedDirty: false)
    }
  }
}

/// The CPU accesses `va` through `pmap`, as the MMU model walks it (PmapMMU's
/// `Pmap.accessThroughMMU`): A set in every entry walked and D in the leaf of a write, with a
/// compare-and-swap on the values the walk read, only when the access is permitted. Returns
/// whether it was.
@discardableResult
public func simulatedAccess<Ops: PTEOps>(_ pmap: Pmap<Ops>, _ va: VirtualAddress, write: Bool) -> Bool {
  (try? pmap.accessThroughMMU(va, write ? .write : .read).get()) != nil
}

/// Every mapping of a managed page, as (pmap root, address) pairs, order-free.
public func pvMappings(of frame: PhysicalAddress, in pages: PageDatabase) -> Set<PVMapping> {
  var result = Set<PVMapping>()
  pages.forEachMapping(of: frame) { root, va in result.insert(PVMapping(root: root, va: va)) }
  return result
}

/// One pv entry as the page database reports it.
public struct PVMapping: Hashable, CustomStringConvertible, Sendable {
  /// The pmap's root.
  public var root: PhysicalAddress
  /// The mapped address.
  public var va: VirtualAddress
  /// A mapping.
  public init(root: PhysicalAddress, va: VirtualAddress) {
    self.root = root
    self.va = va
  }
  public var description: String {
    "root 0x\(String(root.rawValue, radix: 16)) va 0x\(String(va.rawValue, radix: 16))"
  }
}
