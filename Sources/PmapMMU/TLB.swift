import Pmap
import PmapEPT

/// One cached translation (SDM Vol. 3A §4.10.2): a linear page of one context, with the rights
/// combined over the walk and whether the leaf was dirty when it was cached.
struct TLBEntry {
  var context: TranslationContext
  var global: Bool
  var linearBase: UInt64
  var size: PageSize
  var physicalBase: UInt64
  var guestPhysicalBase: UInt64?
  // Native (or guest) rights: R/W and U/S ANDed, XD ORed.
  var writable: Bool
  var user: Bool
  var executeDisable: Bool
  /// EPT rights ANDed, in a guest context.
  var eptPermissions: Protection?
  /// The leaf's D was set (and EPT D, with EPT A/D on): a write can use the entry.
  var dirty: Bool
  /// The EPT pointer of a guest entry (its A/D enable decides what the checker compares).
  var eptPointer: EPTPointer?
}

/// Where a TLB entry lives: non-global entries under their context, global ones under their
/// EPT (or none for native) so that they match whatever CR3 is loaded.
struct TLBKey: Hashable {
  enum Space: Hashable {
    case native(root: UInt64)
    case nativeGlobal
    case guest(ept: UInt64, guestRoot: UInt64?)
    case guestGlobal(ept: UInt64)
  }
  var space: Space
  var size: UInt8
  var page: UInt64
}

/// The TLB of one CPU: translations only (no paging-structure caches: every miss walks from the
/// root, which is always allowed, SDM §4.10.3).
struct TLB {
  var entries: [TLBKey: TLBEntry] = [:]
  var statistics = TLBStatistics()

  static func spaces(for context: TranslationContext) -> (TLBKey.Space, TLBKey.Space) {
    switch context {
    case .native(let root): (.native(root: root.rawValue), .nativeGlobal)
    case .guest(let ept, let g): (.guest(ept: ept.rawValue, guestRoot: g?.rawValue), .guestGlobal(ept: ept.rawValue))
    }
  }

  func lookup(_ linear: UInt64, in context: TranslationContext) -> TLBKey? {
    let (local, global) = Self.spaces(for: context)
    for size in PageSize.allCases {
      let page = linear & ~size.offsetMask
      for space in [local, global] {
        let key = TLBKey(space: space, size: size.rawValue, page: page)
        if entries[key] != nil { return key }
      }
    }
    return nil
  }

  mutating func insert(_ entry: TLBEntry) {
    let (local, global) = Self.spaces(for: entry.context)
    let key = TLBKey(space: entry.global ? global : local, size: entry.size.rawValue, page: entry.linearBase)
    entries[key] = entry
    statistics.fills += 1
  }

  mutating func remove(where drop: (TLBKey, TLBEntry) -> Bool) {
    let before = entries.count
    entries = entries.filter { !drop($0.key, $0.value) }
    statistics.invalidated += before - entries.count
  }

  /// Whether the entry covers linear address `linear`.
  static func covers(_ e: TLBEntry, _ linear: UInt64) -> Bool {
    linear & ~e.size.offsetMask == e.linearBase
  }

  /// Whether `e` belongs to the EPT rooted at `ept`.
  static func isEPT(_ e: TLBEntry, _ ept: UInt64) -> Bool {
    if case .guest(let r, _) = e.context { return r.rawValue == ept }
    return false
  }
}
