import Pmap

extension EPTPTE {
  /// Page operations reach EPT pmaps through ``EPTPVOwner``, compiled for this format.
  public static func makePVOwner(for pmap: EPTPmap) -> PVOwner { EPTPVOwner(pmap) }
}

/// The ``PVOwner`` of an EPT pmap: forwards to its `_pv…` methods, specialised here.
public final class EPTPVOwner: PVOwner {
  let pmap: Unmanaged<EPTPmap>
  /// Creates the adapter of `pmap` (held unowned: the pmap's registration keeps this alive).
  public init(_ pmap: EPTPmap) { self.pmap = Unmanaged.passUnretained(pmap) }
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
