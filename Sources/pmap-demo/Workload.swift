import Glibc

/// A guest's access pattern: which page and word it touches next, and whether it writes.
struct Workload {
  enum Kind: String {
    /// Every page equally likely.
    case uniform
    /// Zipf-like: page rank r is chosen with probability falling as a power of r (u^4 of a
    /// uniform u), the ranks scattered over the guest by a fixed permutation.
    case zipf
    /// A sequential scan through memory, one cache line (8 words) per access, wrapping around:
    /// 64 accesses per page, and the whole guest cycled (the clock's worst case).
    case sequential = "seq"
  }

  let kind: Kind
  let pages: Int
  let writeRatio: Double
  var random: Random
  var cursor = 0

  init(kind: Kind, pages: Int, writeRatio: Double, seed: UInt64) {
    self.kind = kind
    self.pages = pages
    self.writeRatio = writeRatio
    self.random = Random(seed: seed)
  }

  /// The next access: page, word (0..<512), write or read.
  mutating func next() -> (page: Int, word: Int, write: Bool) {
    let page: Int
    if kind == .sequential {
      // `cursor` counts cache lines.
      let line = cursor
      cursor = cursor + 1 == pages * 64 ? 0 : cursor + 1
      return (line >> 6, (line & 63) << 3, random.unit() < writeRatio)
    }
    switch kind {
    case .uniform: page = random.below(pages)
    case .zipf:
      let u = random.unit()
      let rank = min(pages - 1, Int(Double(pages) * u * u * u * u))
      page = Int((UInt64(rank) &* 0x9E37_79B1) % UInt64(pages))  // scatter the hot ranks
    case .sequential: page = 0  // handled above
    }
    return (page, random.below(512), random.unit() < writeRatio)
  }
}

/// xorshift64*: fast, deterministic per seed.
struct Random {
  var state: UInt64
  init(seed: UInt64) { state = seed | 1 }
  mutating func next() -> UInt64 {
    state ^= state >> 12
    state ^= state << 25
    state ^= state >> 27
    return state &* 0x2545_F491_4F6C_DD1D
  }
  mutating func below(_ n: Int) -> Int { Int((next() >> 11) % UInt64(n)) }
  mutating func unit() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }
}
