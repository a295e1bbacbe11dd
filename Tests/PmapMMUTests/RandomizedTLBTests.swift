import Pmap
import PmapEPT
import PmapHost
import PmapMMU
import PmapNative
import Testing

/// SplitMix64 (Steele, Lea, Flood 2014): a small seedable generator.
struct SplitMix64: RandomNumberGenerator {
  private var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9e37_79b9_7f4a_7c15
    var z = state
    z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
    z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
    return z ^ (z >> 31)
  }
}

/// Pmap operations, page operations and accesses on three CPUs' TLBs, interleaved from a seed:
/// two native pmaps (the CPUs switch CR3 between them) and two EPT pmaps (with and without A/D)
/// over shared data frames, every pmap reporting to a ``CPUGroup``.
struct TLBScenario {
  let m: SimulatedMachine
  let group: CPUGroup
  let natives: [NativePmap]
  let epts: [EPTPmap]
  var rng: SplitMix64
  var accesses = 0
  var faults = 0
  var tlbHits = 0
  var log: [String] = []

  static let pages = 12
  static let frames = 6
  static let nativeBase: UInt64 = 0x40_0000
  static let eptBase: UInt64 = 0x20_0000

  init(_ m: SimulatedMachine, seed: UInt64) throws {
    self.m = m
    let group = CPUGroup(count: 3, memory: m.memory)
    self.group = group
    natives = try (0..<2).map { _ in
      try NativePmap(memory: m.memory, allocator: m.allocator, invalidation: group, pages: m.pages)
    }
    epts = try [true, false].map {
      try EPTPmap(
        memory: m.memory, allocator: m.allocator, invalidation: group, pages: m.pages, hardwareManagesAccessedDirty: $0)
    }
    rng = SplitMix64(seed: seed)
    for cpu in group.cpus { cpu.loadCR3(of: natives[0]) }
  }

  mutating func below(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }

  /// Pmap `space` (0, 1 native; 2, 3 EPT) as page-level operations.
  func va(_ space: Int, _ page: Int) -> VirtualAddress {
    VirtualAddress((space < 2 ? Self.nativeBase : Self.eptBase) + UInt64(page) << 12)
  }

  func translation(_ space: Int, _ va: VirtualAddress) -> Translation? {
    space < 2 ? natives[space].translation(of: va) : epts[space - 2].translation(of: va)
  }

  /// One random step; `checking: false` leaves access outcomes unchecked (negative control).
  mutating func step(checking: Bool = true) throws {
    let space = below(4)
    let page = below(Self.pages)
    let v = va(space, page)
    let protections: [Protection] = [.read, .readWrite, .readExecute, .all]
    switch below(100) {
    case 0..<15:
      let frame = m.dataFrame(below(Self.frames))
      let p = protections[below(4)]
      log.append("enter \(space) \(page) \(p.rawValue)")
      if space < 2 {
        try natives[space].enter(v, frame, protection: p)
      } else {
        try epts[space - 2].enter(v, frame, protection: p)
      }
    case 15..<23:
      let n = 1 + below(4)
      let range = try VirtualRange(start: v, byteCount: UInt64(n) << 12)
      log.append("remove \(space) \(page)+\(n)")
      if space < 2 { try natives[space].remove(range) } else { try epts[space - 2].remove(range) }
    case 23..<31:
      let p = protections[below(4)]
      log.append("protect \(space) \(page) \(p.rawValue)")
      if space < 2 {
        try natives[space].protect(VirtualRange(page: v), to: p)
      } else {
        try epts[space - 2].protect(VirtualRange(page: v), to: p)
      }
    case 31..<41:
      let frame = m.dataFrame(below(Self.frames))
      let op = below(6)
      log.append("page op \(op) frame \(frame.rawValue >> 12)")
      switch op {
      case 0: _ = m.pages.clearReference(frame)
      case 1: _ = m.pages.clearModify(frame)
      case 2: _ = m.pages.referencedCount(frame)
      case 3: m.pages.protectPage(frame, to: .read)
      case 4: if below(4) == 0 { _ = m.pages.removeAllMappings(frame) }
      default: _ = m.pages.clearAttributes([.referenced, .modified], of: frame)
      }
    case 41..<46:
      let cpu = group.cpus[below(3)]
      log.append("switch cpu \(cpu.id) to \(space)")
      if space < 2 { cpu.loadCR3(of: natives[space]) } else { cpu.enterGuest(epts[space - 2], guestRoot: nil) }
    default:
      // A burst, so that translations get reused before the next change.
      for _ in 0..<4 { access(checking: checking) }
    }
  }

  /// An access on a random CPU in its current space, checked against the pmap's own view.
  mutating func access(checking: Bool) {
    let cpu = group.cpus[below(3)]
    let space: Int
    switch cpu.context! {
    case .native(let root): space = natives.firstIndex { $0.root == root }!
    case .guest(let ept, _): space = 2 + epts.firstIndex { $0.root == ept }!
    }
    let page = below(Self.pages)
    let v = va(space, page).rawValue | UInt64(below(512) * 8)
    let type = AccessType.allCases[below(3)]
    log.append("cpu \(cpu.id) \(type) \(space) \(page)")
    let expected = translation(space, VirtualAddress(v))
    let needed: Protection = type == .read ? .read : (type == .write ? .write : .execute)
    let result = cpu.access(type, at: v, value: rng.next(), privilege: .user)
    accesses += 1
    if !checking { return }
    if let t = expected, t.protection.contains(needed) {
      let done = success(result)
      #expect(done?.physicalAddress == t.physicalAddress, "\(log.suffix(8))")
      if done?.fromTLB == true { tlbHits += 1 }
      // The access is recorded in the page's attributes, whatever the TLB did.
      let frame = t.physicalAddress.alignedDown()
      #expect(m.pages.isReferenced(frame), "\(log.suffix(8))")
      if type == .write { #expect(m.pages.isModified(frame), "\(log.suffix(8))") }
    } else {
      faults += 1
      let f = failure(result)
      #expect(space < 2 ? f?.pageFault != nil : f?.eptViolation != nil, "\(result) \(log.suffix(8))")
    }
  }
}

@Suite("randomized: pmap operations interleaved with accesses on several CPUs' TLBs")
struct RandomizedTLBTests {
  @Test(
    "with every invalidation honoured, no access ever uses a stale translation", arguments: [1, 2, 3, 4, 5] as [UInt64])
  func honoured(seed: UInt64) throws {
    try withMachine { m in
      var s = try TLBScenario(m, seed: seed)
      for _ in 0..<2000 { try s.step() }
      let stale = s.group.takeStaleTranslations()
      #expect(stale.isEmpty, "\(stale.prefix(3))")
      #expect(s.tlbHits > 200, "the TLBs were exercised (\(s.tlbHits) hits of \(s.accesses))")
      #expect(s.faults > 10 && s.accesses - s.faults > 50)
      #expect(m.pages.checkInvariants() == nil)
      for p in s.natives { #expect(p.checkInvariants() == nil) }
      for p in s.epts { #expect(p.checkInvariants() == nil) }
    }
  }

  @Test("negative control: the same runs with invalidations dropped are caught", arguments: [1, 2, 3] as [UInt64])
  func dropped(seed: UInt64) throws {
    try withMachine { m in
      var s = try TLBScenario(m, seed: seed)
      var stale: [StaleTranslation] = []
      for i in 0..<2000 {
        if i % 50 == 0 { s.group.dropNextReports(1) }
        // Without the invalidation the CPU may disagree with the pmap: outcomes are not checked.
        try s.step(checking: false)
        stale += s.group.takeStaleTranslations()
      }
      #expect(s.group.droppedReports > 10)
      #expect(!stale.isEmpty, "dropped invalidations must show up as stale translations")
      for cpu in s.group.cpus { cpu.flushTLB() }
    }
  }
}
