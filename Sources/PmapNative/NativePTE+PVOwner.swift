import Pmap

extension NativePTE {
  /// Page operations reach native pmaps through ``NativePVOwner``, compiled for this format.
  public static func makePVOwner(for pmap: NativePmap) -> PVOwner { NativePVOwner(pmap) }
}

/// The ``PVOwner`` of a native pmap: forwards to its `_pv…` methods, specialised here.
public final class NativePVOwner: PVOwner {
  let pmap: Unmanaged<NativePmap>
  /// Creates the adapter of `pmap` (held unowned: the pmap's registration keeps this alive).
  public init(_ pmap: NativePmap) { self.pmap = Unmanaged.passUnretained(pmap) }
  public override var pvRoot: PhysicalAddress { pmap._withUnsafeGuaranteedRef { $0.root } }
  public override func pvAttributes(atLinear linear: UInt64) -> PageAttributes {
    pmap._withUnsafeGuaranteedRef { $0._pvAttributes(atLinear: linear) }
  }
  public override func pvClear(_ attributes: PageAttributes, atLinear linear: UInt64) -> PageAttributes {
    pmap._withUnsafeGuaranteedRef { $0._pvClear(attributes, atLinear: linear) }
  }
  public override func pvWriteProtect(atLinear linear: UInt64) -> PageAttributes {
    pmap._withUnsafeGuaranteedRef { $0._pvWriteProtect(atLinear: linear) }
  }
  public override func pvRemove(atLinear linear: UInt64) -> PageAttributes {
    pmap._withUnsafeGuaranteedRef { $0._pvRemove(atLinear: linear) }
  }
  public override func pvInvalidate(_ requests: UnsafeBufferPointer<InvalidationRequest>) {
    pmap._withUnsafeGuaranteedRef { $0._pvInvalidate(requests) }
  }
  public override var pvSinkIdentity: ObjectIdentifier { pmap._withUnsafeGuaranteedRef { $0._pvSinkIdentity } }
  public override func pvFrame(atLinear linear: UInt64) -> PhysicalAddress? {
    pmap._withUnsafeGuaranteedRef { $0._pvFrame(atLinear: linear) }
  }
  public override func pvTrackedLeafCount() -> Int { pmap._withUnsafeGuaranteedRef { $0._pvTrackedLeafCount() } }
}
