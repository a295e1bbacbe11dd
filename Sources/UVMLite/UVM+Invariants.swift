import Pmap

/// A broken invariant found by ``UVM/checkInvariants()``.
public enum UVMInvariantViolation: Error, Equatable, Sendable {
  /// A frame is on two lists, on none, or a queue link is wrong.
  case queueCorrupt(frame: Int)
  /// A list's count differs from its length.
  case queueCountMismatch(PageQueue, counted: Int, recorded: Int)
  /// A guest page and its frame's record disagree (owner, page, or queue).
  case frameOwnership(guest: Int, page: Int)
  /// A paged or wired frame that no guest page points at.
  case orphanFrame(frame: Int)
  /// A guest's resident / swapped / wired counter is wrong.
  case guestCounter(guest: Int)
  /// A swap slot is used twice, or the slot map's count is wrong.
  case swapSlots
  /// A mapping of a guest page points at another frame, or a non-resident page is mapped.
  case staleMapping(guest: Int, page: Int)
  /// A pmap's own checker failed.
  case pmap(guest: Int, InvariantViolation)
  /// The page database's checker failed.
  case pvList(PVInvariantViolation)
}

extension UVM {
  /// Checks everything (for tests and debug): the pool's lists; every guest page against its
  /// frame record, slot and mappings (EPT and host); counters; swap slots used once each; then
  /// each guest's EPT and host pmap checker and the page database's checker.
  ///
  /// - Complexity: O(frames + guest pages + swap slots + page-table pages).
  public func checkInvariants() -> UVMInvariantViolation? {
    if let v = pool.checkQueues() { return v }
    var claimed = [Bool](repeating: false, count: pool.frameCount)
    var slotUsed = [Bool](repeating: false, count: swap.slotCount)
    var slots = 0
    for case let g? in guests {
      var resident = 0
      var swapped = 0
      var wired = 0
      for i in 0..<g.pageCount {
        let residency = g.residency(ofPage: i)
        var slot: Int? = nil
        var frame: PhysicalAddress? = nil
        switch residency {
        case .untouched: break
        case .swapped(let s):
          slot = s
          swapped += 1
        case .resident(let r, let s):
          slot = s
          resident += 1
          guard r < pool.frameCount, !claimed[r] else { return .frameOwnership(guest: g.id, page: i) }
          let rec = pool.records[r]
          guard Int(rec.owner) == g.id + 1, Int(rec.page) == i,
            rec.queue == .active || rec.queue == .inactive || rec.queue == .wired
          else { return .frameOwnership(guest: g.id, page: i) }
          claimed[r] = true
          if rec.queue == .wired { wired += 1 }
          frame = pool.frame(r)
        }
        if let s = slot {
          guard s < swap.slotCount, !slotUsed[s] else { return .swapSlots }
          slotUsed[s] = true
          slots += 1
        }
        if let mapped = g.ept.extract(g.guestVA(i)), mapped != frame { return .staleMapping(guest: g.id, page: i) }
        if let host = g.hostPmap, let mapped = host.extract(g.hostVA(i)), mapped != frame {
          return .staleMapping(guest: g.id, page: i)
        }
      }
      if resident != g.residentPages || swapped != g.swappedPages || wired != g.wiredPages {
        return .guestCounter(guest: g.id)
      }
      if let v = g.ept.checkInvariants() { return .pmap(guest: g.id, v) }
      if let host = g.hostPmap, let v = host.checkInvariants() { return .pmap(guest: g.id, v) }
    }
    for r in 0..<pool.frameCount where !claimed[r] {
      let q = pool.records[r].queue
      if q == .active || q == .inactive || q == .wired { return .orphanFrame(frame: r) }
    }
    if slots != swap.slotsInUse { return .swapSlots }
    if let v = pages.checkInvariants() { return .pvList(v) }
    return nil
  }
}
