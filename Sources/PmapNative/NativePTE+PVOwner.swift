import Pmap

extension NativePTE {
  /// Page operations reach native pmaps through ``NativePVOwner``, compiled for this format.
  public static func makePVOwner(for pmap: NativePmap) -> PVOwner { NativePVOwner(pmap) }
}

/// The ``/Pmap/PVOwner`` of a native pmap: forwards to its `_pv…` methods, specialised here.
public final class NativePVOwner: PVOwner {
  let pmap: Unmanaged<NativePmap>
  /// Creates the adapter of `pmap` (held unowned: the pmap's registration keeps this alive).
  public init(_ pmap: NativePmap) { self.pmap = Unmanaged.passUnretained(pmap) }
  /// The pmap's root table (its identity in the page database).
  public override var pvRoot: PhysicalAddress { pmap._withUnsafeGuaranteedRef { $0.root } }
  /// Removes the native leaf at `linear` (see ``/Pmap/PVOwner/pvRemove(atLinear:)``).
  public override func pvRemove(atLinear linear: UInt64) -> PageAttributes {
    pmap._withUnsafeGuaranteedRef { $0._pvRemove(atLinear: linear) }
  }
  /// The frame of the pv-tracked native leaf at `linear`, or `nil` (for checkers).
  public override func pvFrame(atLinear linear: UInt64) -> PhysicalAddress? {
    pmap._withUnsafeGuaranteedRef { $0._pvFrame(atLinear: linear) }
  }
  /// How many leaves of the pmap carry the pv-tracked bit (for checkers).
  public override func pvTrackedLeafCount() -> Int { pmap._withUnsafeGuaranteedRef { $0._pvTrackedLeafCount() } }
}
