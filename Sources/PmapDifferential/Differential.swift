import Pmap
import PmapEPT
import PmapHost
import PmapNative

// A randomized differential test of pmaps of both formats sharing managed pages, against a
// reference model kept here.
//
// The model follows NetBSD's rules for page attributes:
// * an entry's A and D are OR-ed into its page's cached attributes when the entry is removed or
//   replaced by another frame (re-entering the same frame keeps A/D);
// * D implies A in every entry: an access through a mapping sets A, a write sets A and D, and
//   so does an enter with that access. Clearing A (clearReference, referencedCount) clears the
//   entry's D too and keeps "modified" in the page's cache, so the page is then modified but not
//   referenced until the next access; clearModify clears only D. Removing a mapping never
//   changes what the page reports;
// * isReferenced = cache.referenced || some mapping has A (likewise isModified with D);
//   clearReference / clearModify return whether the bit was set anywhere and clear it in the
//   cache and every mapping, except the mappings of a pmap without hardware A/D, whose entries
//   always carry A and D; referencedCount counts the mappings with A (clearing A where it can),
//   or 1 if none had A but the cache had referenced, and clears the cache's referenced bit;
// * protect never adds rights (new = old ∩ requested, read kept); protectPage(.read) removes
//   write from every mapping, protectPage([]) removes every mapping.

/// One mapping in the model.
public struct ModelEntry: Equatable, Sendable {
  var frame: Int
  var protection: Protection
  var wired: Bool
  var accessed: Bool
  var dirty: Bool
}

/// A (pmap, page of the window) pair.
public struct ModelKey: Hashable, Sendable {
  var pmap: Int
  var page: Int
}

/// A page's cached attributes in the model.
public struct ModelCache: Equatable, Sendable {
  var referenced = false
  var modified = false
}

/// An operation, kept for the failure report.
public enum DifferentialOp: CustomStringConvertible, Sendable {
  case enter(pmap: Int, page: Int, frame: Int, protection: Protection, access: Protection, wired: Bool)
  case remove(pmap: Int, page: Int, count: Int)
  case protect(pmap: Int, page: Int, count: Int, protection: Protection)
  case unwire(pmap: Int, page: Int)
  case touch(pmap: Int, page: Int, write: Bool)
  case isReferenced(frame: Int)
  case isModified(frame: Int)
  case clearReference(frame: Int)
  case clearModify(frame: Int)
  case referencedCount(frame: Int)
  case protectPageRead(frame: Int)
  case protectPageNone(frame: Int)

  /// The operation's name, for counts.
  public var kind: String {
    switch self {
    case .enter: "enter"
    case .remove: "remove"
    case .protect: "protect"
    case .unwire: "unwire"
    case .touch: "touch"
    case .isReferenced: "isReferenced"
    case .isModified: "isModified"
    case .clearReference: "clearReference"
    case .clearModify: "clearModify"
    case .referencedCount: "referencedCount"
    case .protectPageRead: "protectPage(.read)"
    case .protectPageNone: "protectPage([])"
    }
  }

  public var description: String {
    func p(_ x: Protection) -> String {
      (x.contains(.read) ? "r" : "-") + (x.contains(.write) ? "w" : "-") + (x.contains(.execute) ? "x" : "-")
    }
    switch self {
    case .enter(let m, let pg, let f, let prot, let access, let wired):
      return "enter pmap \(m) page \(pg) frame \(f) \(p(prot)) access \(p(access))\(wired ? " wired" : "")"
    case .remove(let m, let pg, let n): return "remove pmap \(m) pages \(pg)..<\(pg + n)"
    case .protect(let m, let pg, let n, let prot): return "protect pmap \(m) pages \(pg)..<\(pg + n) to \(p(prot))"
    case .unwire(let m, let pg): return "unwire pmap \(m) page \(pg)"
    case .touch(let m, let pg, let w): return "touch pmap \(m) page \(pg) \(w ? "write" : "read")"
    case .isReferenced(let f): return "isReferenced frame \(f)"
    case .isModified(let f): return "isModified frame \(f)"
    case .clearReference(let f): return "clearReference frame \(f)"
    case .clearModify(let f): return "clearModify frame \(f)"
    case .referencedCount(let f): return "referencedCount frame \(f)"
    case .protectPageRead(let f): return "protectPage frame \(f) to r--"
    case .protectPageNone(let f): return "protectPage frame \(f) to ---"
    }
  }
}

/// Where the run's choices come from: a seeded generator (the tests) or the fuzzer's bytes.
public protocol ChoiceSource {
  /// A choice in `0..<n` (n > 0).
  mutating func below(_ n: Int) -> Int
  /// Whether the source has run dry (the run then stops).
  var isExhausted: Bool { get }
}

extension SplitMix64: ChoiceSource {
  public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
  public var isExhausted: Bool { false }
}

/// The differential run: the real pmaps, the model, and the comparison. Mismatches are
/// collected in ``failureMessages`` (at most 8, each with the last operations); the run stops at
/// the first.
public struct Differential<Source: ChoiceSource> {
  public static var frameCount: Int { 64 }
  /// The window of every pmap: 256 pages in three regions (one page table; two page tables
  /// under a 2 MiB boundary; another PML4 slot), so page-table pages are freed and reallocated.
  static var regions: [(base: UInt64, pages: Int)] {
    [
      (0x0040_0000, 96),
      (0x4000_0000 + 0x20_0000 - 48 << 12, 96),
      (0x0080_4000_0000, 64),
    ]
  }
  /// Pages of every pmap's window.
  public static var pageCount: Int { regions.reduce(0) { $0 + $1.pages } }
  /// Operations between full checkpoints (every pmap's mappings, every pv-list, counters and
  /// both invariant checkers); 250 by default, 1 for the fuzzer.
  public var checkpointInterval = 250

  let machine: SimulatedMachine
  let pmaps: [any PVHandle]
  let noAD: [Bool]
  /// What the run is called in messages (the seed, or "fuzz input").
  public let label: String
  var rng: Source

  /// The model's mappings.
  public private(set) var entries: [ModelKey: ModelEntry] = [:]
  /// The model's pv-lists.
  public private(set) var frameMappings: [Set<ModelKey>]
  var cache: [ModelCache]
  var resident: [Int]
  var wired: [Int]

  /// Operations run so far.
  public private(set) var opIndex = 0
  var recent: [DifferentialOp] = []
  /// Mismatches found.
  public private(set) var failures = 0
  /// The first mismatches, each with the operations before it.
  public private(set) var failureMessages: [String] = []
  /// Operations run, by kind.
  public private(set) var counts: [String: Int] = [:]

  /// A run over new pmaps of `kinds` on `machine` (which needs ``frameCount`` data frames),
  /// choosing with `source`.
  public init(machine: SimulatedMachine, kinds: [PVKind], source: Source, label: String) throws {
    self.machine = machine
    pmaps = try kinds.map { try $0.make(on: machine) }
    noAD = kinds.map { $0 == .eptNoAD }
    self.label = label
    rng = source
    frameMappings = Array(repeating: [], count: Self.frameCount)
    cache = Array(repeating: ModelCache(), count: Self.frameCount)
    resident = Array(repeating: 0, count: kinds.count)
    wired = Array(repeating: 0, count: kinds.count)
  }

  static func va(_ page: Int) -> VirtualAddress {
    var p = page
    for r in regions {
      if p < r.pages { return VirtualAddress(r.base + UInt64(p) << 12) }
      p -= r.pages
    }
    preconditionFailure("page \(page) outside the window")
  }

  /// The pages of the window in `count` pages from `page` (a range stays in its region).
  static func pages(from page: Int, count: Int) -> Range<Int> {
    var start = 0
    for r in regions {
      if page < start + r.pages { return page..<min(page + count, start + r.pages) }
      start += r.pages
    }
    preconditionFailure("page \(page) outside the window")
  }

  func frame(_ f: Int) -> PhysicalAddress { machine.dataFrame(f) }

  mutating func below(_ n: Int) -> Int { rng.below(n) }

  // MARK: Comparison

  mutating func expectEqual<T: Equatable>(_ actual: T, _ expected: T, _ what: @autoclosure () -> String) {
    guard actual != expected else { return }
    failures += 1
    guard failures <= 8 else { return }
    let history = recent.suffix(16).enumerated().map {
      "  \(opIndex - min(recent.count, 16) + 1 + $0.offset): \($0.element)"
    }
    failureMessages.append(
      "\(label) op \(opIndex): \(what()): got \(actual), expected \(expected)\nlast operations:\n"
        + history.joined(separator: "\n"))
  }

  /// What the pmap must report for one page of its window.
  func expectedTranslation(_ key: ModelKey) -> Translation? {
    guard let e = entries[key] else { return nil }
    var attributes: PageAttributes = []
    if e.accessed { attributes.insert(.referenced) }
    if e.dirty { attributes.insert(.modified) }
    if e.protection.contains(.write) { attributes.insert(.writable) }
    return Translation(
      physicalAddress: frame(e.frame), size: .size4K, protection: e.protection, cacheMode: .writeBack,
      isWired: e.wired, isManaged: true, attributes: attributes)
  }

  mutating func compare(_ key: ModelKey) {
    let va = Self.va(key.page)
    let expected = expectedTranslation(key)
    expectEqual(pmaps[key.pmap].translation(of: va), expected, "translation of pmap \(key.pmap) page \(key.page)")
    expectEqual(pmaps[key.pmap].extract(va), expected?.physicalAddress, "extract of pmap \(key.pmap) page \(key.page)")
  }

  mutating func compareStatistics() {
    for i in pmaps.indices {
      let s = pmaps[i].statistics
      expectEqual(s.residentPages, resident[i], "residentPages of pmap \(i)")
      expectEqual(s.wiredPages, wired[i], "wiredPages of pmap \(i)")
    }
  }

  /// The pv-list of model frame `f`.
  mutating func compareFrame(_ f: Int) {
    let expected = Set(frameMappings[f].map { PVMapping(root: pmaps[$0.pmap].root, va: Self.va($0.page)) })
    expectEqual(machine.pages.mappingCount(of: frame(f)), expected.count, "mappingCount of frame \(f)")
    expectEqual(pvMappings(of: frame(f), in: machine.pages), expected, "pv-list of frame \(f)")
  }

  /// Everything: every mapping of every pmap, every pv-list, counters, page-table pages, and
  /// the invariant checkers.
  public mutating func checkpoint() {
    for i in pmaps.indices {
      var expected: [VirtualAddress: Translation] = [:]
      var tables = Set<UInt64>()
      for page in 0..<Self.pageCount {
        let key = ModelKey(pmap: i, page: page)
        guard let t = expectedTranslation(key) else { continue }
        let va = Self.va(page)
        expected[va] = t
        tables.insert(va.rawValue >> 39 | 1 << 60)
        tables.insert(va.rawValue >> 30 | 2 << 60)
        tables.insert(va.rawValue >> 21 | 3 << 60)
      }
      let actual = pmaps[i].pvAllMappings().mapValues { t in
        var t = t
        t.physicalAddress = t.frame
        return t
      }
      expectEqual(actual, expected, "all mappings of pmap \(i)")
      expectEqual(pmaps[i].statistics.pageTablePages, 1 + tables.count, "page-table pages of pmap \(i)")
      let name = pmaps[i].pvName
      expectEqual(pmaps[i].checkInvariants(), nil, "invariants of pmap \(i) (\(name))")
    }
    for f in 0..<Self.frameCount { compareFrame(f) }
    let counts = frameMappings.map(\.count)
    let pv = machine.pages.statistics
    expectEqual(pv.mappings, counts.reduce(0, +), "pv mappings")
    expectEqual(pv.overflowNodesInUse, counts.reduce(0) { $0 + max(0, $1 - 1) }, "pv nodes in use")
    expectEqual(
      machine.allocator.framesInUse, pmaps.reduce(0) { $0 + $1.statistics.pageTablePages } + pv.poolFrames,
      "frames in use")
    expectEqual(machine.pages.checkInvariants(), nil, "page database invariants")
    compareStatistics()
  }

  // MARK: Model

  mutating func modelRemove(_ key: ModelKey) {
    guard let e = entries.removeValue(forKey: key) else { return }
    cache[e.frame].referenced = cache[e.frame].referenced || e.accessed
    cache[e.frame].modified = cache[e.frame].modified || e.dirty
    frameMappings[e.frame].remove(key)
    resident[key.pmap] -= 1
    if e.wired { wired[key.pmap] -= 1 }
  }

  // MARK: Operations

  mutating func step() {
    let r = below(100)
    switch r {
    case 0..<28: enter()
    case 28..<36: removeRange()
    case 36..<42: protectRange()
    case 42..<46: unwire()
    case 46..<66: touch()
    default: pageOperation()
    }
    compareStatistics()
  }

  mutating func record(_ op: DifferentialOp) {
    if recent.count == 64 { recent.removeFirst(32) }
    recent.append(op)
    counts[op.kind, default: 0] += 1
  }

  mutating func enter() {
    let p = below(pmaps.count)
    let page = below(Self.pageCount)
    let f = below(Self.frameCount)
    let protection = [Protection.read, .readWrite, .readExecute, .all][below(4)]
    let access = Protection(rawValue: UInt8(below(8))).intersection(protection)
    let isWired = below(4) == 0
    record(.enter(pmap: p, page: page, frame: f, protection: protection, access: access, wired: isWired))
    let key = ModelKey(pmap: p, page: page)
    do {
      try pmaps[p].pvEnter(
        Self.va(page), frame(f), protection: protection, access: access, options: isWired ? [.wired] : [])
    } catch {
      expectEqual("\(error)", "no error", "enter")
    }
    var accessed = !access.isEmpty || noAD[p]
    var dirty = access.contains(.write) || noAD[p]
    if let old = entries[key] {
      if old.frame == f {
        accessed = accessed || old.accessed
        dirty = dirty || old.dirty
        if old.wired { wired[p] -= 1 }
        resident[p] -= 1
        entries[key] = nil
      } else {
        modelRemove(key)
      }
    }
    entries[key] = ModelEntry(frame: f, protection: protection, wired: isWired, accessed: accessed, dirty: dirty)
    frameMappings[f].insert(key)
    resident[p] += 1
    if isWired { wired[p] += 1 }
    compare(key)
  }

  mutating func removeRange() {
    let p = below(pmaps.count)
    let page = below(Self.pageCount)
    let count = 1 + below(40)
    record(.remove(pmap: p, page: page, count: count))
    do {
      try pmaps[p].remove(VirtualRange(start: Self.va(page), byteCount: UInt64(count) << 12))
    } catch {
      expectEqual("\(error)", "no error", "remove")
    }
    for q in Self.pages(from: page, count: count) {
      modelRemove(ModelKey(pmap: p, page: q))
      compare(ModelKey(pmap: p, page: q))
    }
  }

  mutating func protectRange() {
    let p = below(pmaps.count)
    let page = below(Self.pageCount)
    let count = 1 + below(40)
    let protection = [Protection.read, .readExecute, []][below(3)]
    record(.protect(pmap: p, page: page, count: count, protection: protection))
    do {
      try pmaps[p].protect(VirtualRange(start: Self.va(page), byteCount: UInt64(count) << 12), to: protection)
    } catch {
      expectEqual("\(error)", "no error", "protect")
    }
    for q in Self.pages(from: page, count: count) {
      let key = ModelKey(pmap: p, page: q)
      if protection.isEmpty {
        modelRemove(key)
      } else if entries[key] != nil {
        entries[key]!.protection.formIntersection(protection.union(.read))
      }
      compare(key)
    }
  }

  mutating func unwire() {
    let p = below(pmaps.count)
    let page = below(Self.pageCount)
    record(.unwire(pmap: p, page: page))
    let key = ModelKey(pmap: p, page: page)
    let expected: UnwireError?
    if let e = entries[key] {
      expected = e.wired ? nil : .notWired
    } else {
      expected = .notMapped
    }
    var actual: UnwireError? = nil
    do { try pmaps[p].unwire(Self.va(page)) } catch { actual = error }
    expectEqual(actual, expected, "unwire result")
    if expected == nil {
      entries[key]!.wired = false
      wired[p] -= 1
    }
    compare(key)
  }

  mutating func touch() {
    let p = below(pmaps.count)
    let page = below(Self.pageCount)
    var write = below(2) == 0
    let key = ModelKey(pmap: p, page: page)
    // An EPT without A/D: the hardware writes no bits (they are always set).
    if noAD[p] { return }
    if let e = entries[key], !e.protection.contains(.write) { write = false }
    record(.touch(pmap: p, page: page, write: write))
    let done = pmaps[p].pvTouch(Self.va(page), write: write)
    expectEqual(done, entries[key] != nil, "touch permitted")
    if entries[key] != nil {
      entries[key]!.accessed = true
      if write { entries[key]!.dirty = true }
    }
    compare(key)
  }

  /// Clearing A in an entry of a pmap with hardware A/D clears its D too; the page keeps
  /// "modified" in its cache.
  mutating func clearAccessed(_ keys: [ModelKey], frame f: Int) {
    for k in keys where !noAD[k.pmap] {
      if entries[k]!.dirty { cache[f].modified = true }
      entries[k]!.accessed = false
      entries[k]!.dirty = false
    }
  }

  mutating func pageOperation() {
    let f = below(Self.frameCount)
    let pa = frame(f)
    let pages = machine.pages
    let keys = Array(frameMappings[f])
    let anyAccessed = keys.contains { entries[$0]!.accessed }
    let anyDirty = keys.contains { entries[$0]!.dirty }
    switch below(20) {
    case 0..<4:
      record(.isReferenced(frame: f))
      expectEqual(pages.isReferenced(pa), cache[f].referenced || anyAccessed, "isReferenced of frame \(f)")
    case 4..<8:
      record(.isModified(frame: f))
      expectEqual(pages.isModified(pa), cache[f].modified || anyDirty, "isModified of frame \(f)")
    case 8..<11:
      record(.clearReference(frame: f))
      expectEqual(pages.clearReference(pa), cache[f].referenced || anyAccessed, "clearReference of frame \(f)")
      cache[f].referenced = false
      clearAccessed(keys, frame: f)
    case 11..<14:
      record(.clearModify(frame: f))
      expectEqual(pages.clearModify(pa), cache[f].modified || anyDirty, "clearModify of frame \(f)")
      cache[f].modified = false
      for k in keys where !noAD[k.pmap] { entries[k]!.dirty = false }
    case 14..<17:
      record(.referencedCount(frame: f))
      let counted = keys.filter { entries[$0]!.accessed }.count
      let expected = counted == 0 && cache[f].referenced ? 1 : counted
      expectEqual(pages.referencedCount(pa), expected, "referencedCount of frame \(f)")
      cache[f].referenced = false
      clearAccessed(keys, frame: f)
    case 17..<19:
      record(.protectPageRead(frame: f))
      pages.protectPage(pa, to: .read)
      for k in keys { entries[k]!.protection.remove(.write) }
    default:
      record(.protectPageNone(frame: f))
      if below(2) == 0 {
        pages.protectPage(pa, to: [])
      } else {
        expectEqual(pages.removeAllMappings(pa), keys.count, "removeAllMappings of frame \(f)")
      }
      for k in keys { modelRemove(k) }
    }
    for k in keys { compare(k) }
    compareFrame(f)
  }

  /// Runs up to `operations` operations (fewer if the source runs dry or a mismatch is found),
  /// with a full checkpoint every ``checkpointInterval`` operations and at the end.
  public mutating func run(_ operations: Int) {
    while opIndex < operations && failures == 0 && !rng.isExhausted {
      opIndex += 1
      step()
      if opIndex % checkpointInterval == 0 { checkpoint() }
    }
    if failures == 0 { checkpoint() }
  }
}
