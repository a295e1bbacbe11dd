import Pmap

extension EPTPTE {
  /// Page operations reach EPT pmaps through ``EPTPVOwner``, compiled for this format.
  public static func makePVOwner(for pmap: EPTPmap) -> PVOwner { EPTPVOwner(pmap) }
}

/// The ``/Pmap/PVOwner`` of an EPT pmap: forwards to its `_pv…` methods, specialised here.
public final class EPTPVOwner: PVOwner {
  let pmap: Unmanaged<EPTPmap>
  /// Creates the adapter of `pmap` (held unowned: the pmap's registration keeps this alive).
  public init(_ pmap: EPTPmap) { self.pmap = Unmanaged.passUnretained(pmap) }
  /// The pmap's root table (its identity in the page database).
  public override var pvRoot: PhysicalAddress { pmap._withUnsafeGuaranteedRef { $0.root } }
  /// Removes the EPT leaf at `linear` (see ``/Pmap/PVOwner/pvRemove(atLinear:)``).
  public override func pvRemove(atLinear linear: UInt64) -> PageAttributes {
    pmap._withUnsafeGuaranteedRef { $0._pvRemove(atLinear: linear) }
  }
  /// The frame of the pv-tracked EPT leaf at `linear`, or `nil` (for checkers).
  public override func pvFrame(atLinear linear: UInt64) -> PhysicalAddress? {
    pmap._withUnsafeGuaranteedRef { $0._pvFrame(atLinear: linear) }
  }
  /// How many leaves of the pmap carry the pv-tracked bit (for checkers).
  public override func pvTrackedLeafCount() -> Int { pmap._withUnsafeGuaranteedRef { $0._pvTrackedLeafCount() } }
}
