/// The adapter through which page operations (``PageDatabase``) reach a pmap that maps a
/// managed page, each pmap answering in its own entry format.
///
/// A generic class's protocol conformances are not specialised, so calling a `Pmap<Ops>`
/// through an existential would run unspecialised code. Instead each format provides a small
/// non-generic subclass of `PVOwner` (see ``PTEOps/makePVOwner(for:)``) whose overrides call the
/// `@inlinable` `_pv…` methods of its concrete `Pmap`, so they are compiled specialised in the
/// format's module; the page database holds owners unmanaged and calls them without ARC traffic.
/// ``GenericPVOwner`` is the fallback for formats that do not provide one.
///
/// Every method is abstract here.
open class PVOwner {
  /// Creates an adapter; only subclasses are ever instantiated.
  public init() {}

  /// The root of the pmap (its identity in reports).
  open var pvRoot: PhysicalAddress { preconditionFailure("PVOwner.pvRoot is abstract") }
  /// Removes the leaf that maps `linear`, but not its pv entry, and reports the invalidation it
  /// owes (page-table pages it frees wait for it); returns the leaf's final attributes.
  open func pvRemove(atLinear linear: UInt64) -> PageAttributes {
    preconditionFailure("PVOwner.pvRemove is abstract")
  }
  /// The frame of the present, pv-tracked 4 KiB leaf at `linear`, or `nil` (for checkers).
  open func pvFrame(atLinear linear: UInt64) -> PhysicalAddress? { preconditionFailure("PVOwner.pvFrame is abstract") }
  /// How many present leaves carry the pv-tracked bit (for checkers).
  open func pvTrackedLeafCount() -> Int { preconditionFailure("PVOwner.pvTrackedLeafCount is abstract") }
}

/// The ``PVOwner`` of any format, unspecialised outside Embedded Swift: correct, but a format
/// should provide its own (a subclass forwarding to the `_pv…` methods) for speed.
public final class GenericPVOwner<Ops: PTEOps>: PVOwner {
  let pmap: Unmanaged<Pmap<Ops>>
  /// Creates the owner of `pmap` (held unowned: the pmap owns its owner).
  public init(_ pmap: Pmap<Ops>) { self.pmap = Unmanaged.passUnretained(pmap) }
  /// The pmap's ``Pmap/root``.
  public override var pvRoot: PhysicalAddress { pmap._withUnsafeGuaranteedRef { $0.root } }
  /// Forwards to the pmap's `_pvRemove(atLinear:)`.
  public override func pvRemove(atLinear linear: UInt64) -> PageAttributes {
    pmap._withUnsafeGuaranteedRef { $0._pvRemove(atLinear: linear) }
  }
  /// Forwards to the pmap's `_pvFrame(atLinear:)`.
  public override func pvFrame(atLinear linear: UInt64) -> PhysicalAddress? {
    pmap._withUnsafeGuaranteedRef { $0._pvFrame(atLinear: linear) }
  }
  /// Forwards to the pmap's `_pvTrackedLeafCount()`.
  public override func pvTrackedLeafCount() -> Int { pmap._withUnsafeGuaranteedRef { $0._pvTrackedLeafCount() } }
}

extension PTEOps {
  /// The default adapter: ``GenericPVOwner``.
  public static func makePVOwner(for pmap: Pmap<Self>) -> PVOwner { GenericPVOwner(pmap) }
}
