extension FramePool {
  @inlinable @inline(__always)
  func slot(_ q: PageQueue) -> Int { q == .active ? 0 : 1 }

  /// Appends frame `i` (on no list) to the tail of `q` (active, inactive), or just counts it for
  /// the unlinked lists (wired, host). O(1).
  @inlinable
  func enqueue(_ i: Int, on q: PageQueue) {
    records[i].queue = q
    counts[Int(q.rawValue)] &+= 1
    guard q == .active || q == .inactive else { return }
    let s = slot(q)
    let tail = queues[s].tail
    records[i].prev = tail
    records[i].next = -1
    if tail >= 0 { records[Int(tail)].next = Int32(i) } else { queues[s].head = Int32(i) }
    queues[s].tail = Int32(i)
    queues[s].count &+= 1
  }

  /// Takes frame `i` off its list (not the free list). O(1).
  @inlinable
  func dequeue(_ i: Int) {
    let q = records[i].queue
    precondition(q != .free, "FramePool: dequeue of a free frame")
    counts[Int(q.rawValue)] &-= 1
    guard q == .active || q == .inactive else { return }
    let s = slot(q)
    let prev = records[i].prev
    let next = records[i].next
    if prev >= 0 { records[Int(prev)].next = next } else { queues[s].head = next }
    if next >= 0 { records[Int(next)].prev = prev } else { queues[s].tail = prev }
    records[i].prev = -1
    records[i].next = -1
    queues[s].count &-= 1
  }

  /// Moves frame `i` to the tail of `q`. O(1).
  @inlinable
  func move(_ i: Int, to q: PageQueue) {
    dequeue(i)
    enqueue(i, on: q)
  }

  /// The frame at the head of `q` (active or inactive), or `nil` when it is empty.
  @inlinable
  func head(of q: PageQueue) -> Int? {
    let h = queues[slot(q)].head
    return h >= 0 ? Int(h) : nil
  }

  /// Checks the lists: every frame on exactly one, links consistent, counts right. For tests.
  ///
  /// - Complexity: O(frames).
  public func checkQueues() -> UVMInvariantViolation? {
    var seen = [UInt8](repeating: 0, count: frameCount)
    var f = freeHead
    var n = 0
    while f >= 0 {
      if seen[Int(f)] != 0 || records[Int(f)].queue != .free { return .queueCorrupt(frame: Int(f)) }
      seen[Int(f)] = 1
      n += 1
      f = records[Int(f)].next
    }
    if n != freeCount { return .queueCountMismatch(.free, counted: n, recorded: freeCount) }
    for q in [PageQueue.active, .inactive] {
      var i = queues[slot(q)].head
      var prev: Int32 = -1
      var k = 0
      while i >= 0 {
        if seen[Int(i)] != 0 || records[Int(i)].queue != q { return .queueCorrupt(frame: Int(i)) }
        if records[Int(i)].prev != prev { return .queueCorrupt(frame: Int(i)) }
        seen[Int(i)] = 1
        k += 1
        prev = i
        i = records[Int(i)].next
      }
      if queues[slot(q)].tail != prev { return .queueCorrupt(frame: Int(prev)) }
      if k != count(q) || k != queues[slot(q)].count { return .queueCountMismatch(q, counted: k, recorded: count(q)) }
    }
    var wired = 0
    var host = 0
    for i in 0..<frameCount where seen[i] == 0 {
      switch records[i].queue {
      case .wired: wired += 1
      case .host: host += 1
      default: return .queueCorrupt(frame: i)
      }
    }
    if wired != count(.wired) { return .queueCountMismatch(.wired, counted: wired, recorded: count(.wired)) }
    if host != count(.host) { return .queueCountMismatch(.host, counted: host, recorded: count(.host)) }
    return nil
  }
}
