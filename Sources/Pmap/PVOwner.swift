/// What a page operation asks of a pmap that maps a managed page: each pmap answers with its own
/// entry format. ``Pmap`` conforms; the protocol is internal to the library.
@usableFromInline
protocol PVOwner: AnyObject {
  /// The root of the pmap (its identity in reports).
  var pvRoot: PhysicalAddress { get }
  /// The attributes recorded in the leaf that maps `linear`.
  func pvAttributes(atLinear linear: UInt64) -> PageAttributes
  /// Clears `attributes` (`.referenced`, `.modified`) in the leaf that maps `linear`, with
  /// compare-and-swap; returns what the leaf recorded before. Without hardware A/D nothing is
  /// cleared (the entry must keep reporting both).
  func pvClear(_ attributes: PageAttributes, atLinear linear: UInt64) -> PageAttributes
  /// Removes write permission from the leaf that maps `linear`; returns its attributes.
  func pvWriteProtect(atLinear linear: UInt64) -> PageAttributes
  /// Removes the leaf that maps `linear` (statistics, page-table pages, invalidation) but not its
  /// pv entry, which the caller is dismantling; returns its final attributes.
  func pvRemove(atLinear linear: UInt64) -> PageAttributes
  /// Reports the invalidations the calls above queued.
  func pvFinish()
  /// The frame of the present, pv-tracked 4 KiB leaf at `linear`, or `nil` (for checkers).
  func pvFrame(atLinear linear: UInt64) -> PhysicalAddress?
  /// How many present leaves carry the pv-tracked bit (for checkers).
  func pvTrackedLeafCount() -> Int
}
