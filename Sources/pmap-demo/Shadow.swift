import UVMLite

/// What every guest word must hold, kept outside the simulation: per word, the counter of its
/// last write (0: never written, so it must read zero). The value of a word is derived from its
/// address and that counter, so a stale or lost page cannot match.
final class Shadow: PagingObserver {
  /// Per guest, one counter per 8-byte word.
  var counters: [UnsafeMutablePointer<UInt32>] = []
  var wordsChecked = 0
  var pagesCheckedOnSwapIn = 0
  var mismatches = 0
  var firstMismatch: String? = nil

  func add(pages: Int) {
    let p = UnsafeMutablePointer<UInt32>.allocate(capacity: pages * 512)
    p.initialize(repeating: 0, count: pages * 512)
    counters.append(p)
  }

  deinit { for p in counters { p.deallocate() } }

  @inline(__always)
  static func value(guest: Int, word address: UInt64, counter: UInt32) -> UInt64 {
    if counter == 0 { return 0 }
    var x = (address &+ UInt64(guest) << 48) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(counter) &* 0xC2B2_AE3D_27D4_EB4F
    x ^= x >> 31
    return x | 1
  }

  /// The value word `w` of page `p` of guest `g` must hold.
  @inline(__always)
  func expected(_ g: Int, _ p: Int, _ w: Int) -> UInt64 {
    Shadow.value(guest: g, word: UInt64(p) << 12 | UInt64(w) << 3, counter: counters[g][p &* 512 &+ w])
  }

  func mismatch(_ g: Int, _ p: Int, _ w: Int, found: UInt64, when: String) {
    mismatches += 1
    if firstMismatch == nil {
      firstMismatch =
        "guest \(g) page \(p) word \(w) \(when): found 0x\(String(found, radix: 16)), expected 0x\(String(expected(g, p, w), radix: 16))"
    }
  }

  /// Checks all 512 words of page `p` of guest `g` at `contents`.
  func checkPage(_ g: Int, _ p: Int, _ contents: UnsafeRawPointer, when: String) {
    let words = contents.assumingMemoryBound(to: UInt64.self)
    for w in 0..<512 where words[w] != expected(g, p, w) { mismatch(g, p, w, found: words[w], when: when) }
    wordsChecked += 512
  }

  func pageSwappedIn(guest: GuestMemory, page: Int, contents: UnsafeRawPointer) {
    pagesCheckedOnSwapIn += 1
    checkPage(guest.id, page, contents, when: "on swap-in")
  }
}
