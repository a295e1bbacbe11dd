/// The format-neutral attributes of a physical page (NetBSD's `PP_ATTRS_U`, `PP_ATTRS_M`,
/// `PP_ATTRS_W`).
///
/// Every ``PTEOps`` format converts its own accessed, dirty and writable bits to and from this set
/// (NetBSD's `pmap_pte_to_pp_attrs` / `pmap_ept_to_pp_attrs` and their inverses), so that a page
/// mapped by pmaps of different formats can merge what each recorded.
@frozen
public struct PageAttributes: OptionSet, Hashable, Sendable {
  /// The bits: 1 referenced, 2 modified, 4 writable.
  public let rawValue: UInt8
  /// Creates the set with the bits of `rawValue` (see ``rawValue``).
  @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

  /// The page was accessed through some mapping (`PP_ATTRS_U`, the A bit).
  @inlinable public static var referenced: PageAttributes { PageAttributes(rawValue: 1) }
  /// The page was written through some mapping (`PP_ATTRS_M`, the D bit).
  @inlinable public static var modified: PageAttributes { PageAttributes(rawValue: 2) }
  /// Some mapping allows writes (`PP_ATTRS_W`).
  @inlinable public static var writable: PageAttributes { PageAttributes(rawValue: 4) }
}
