import Pmap

extension UVM {
  /// Faults in pages `range` of `guest` and wires them: their EPT mappings are entered wired and
  /// their frames leave the paging queues, so no pressure evicts them (`uvm_fault_wire`; NVMM
  /// wires nothing by default, but a VMM wires pages it hands to devices). Wiring nests: each
  /// wire needs an unwire.
  ///
  /// - Throws: ``WiringError``: ``WiringError/outOfRange`` changes nothing; a fault error leaves
  ///   the pages before the failing one wired.
  public func wire(_ guest: GuestMemory, pages range: Range<Int>) throws(WiringError) {
    guard range.lowerBound >= 0, range.upperBound <= guest.pageCount else { throw .outOfRange }
    for index in range {
      // Resident already? Take it off its queue first so the fault enters the mapping wired.
      if case .resident(let r, _) = guest.residency(ofPage: index) {
        if pool.records[r].queue != .wired {
          pool.move(r, to: .wired)
          guest.counters[2] &+= 1
        }
        pool.records[r].wireCount &+= 1
        do throws(FaultError) {
          try enterPage(guest, page: index, record: r, access: [], host: false)
        } catch {
          unwireRecord(guest, r)
          throw .fault(error)
        }
        continue
      }
      do throws(FaultError) {
        _ = try resolve(guest, page: index, access: .read, host: false)
      } catch { throw .fault(error) }
      guard case .resident(let r, _) = guest.residency(ofPage: index) else { continue }
      pool.move(r, to: .wired)
      pool.records[r].wireCount = 1
      guest.counters[2] &+= 1
      do throws(FaultError) {
        try enterPage(guest, page: index, record: r, access: [], host: false)  // re-enter wired
      } catch {
        unwireRecord(guest, r)
        throw .fault(error)
      }
    }
  }

  /// Undoes one ``wire(_:pages:)`` of each page in `range`; a page whose wire count drops to
  /// zero returns to the active queue and its EPT mapping is unwired (`uvm_fault_unwire`).
  ///
  /// - Throws: ``WiringError/outOfRange`` or ``WiringError/notWired`` (checked for the whole
  ///   range first: nothing changed).
  public func unwire(_ guest: GuestMemory, pages range: Range<Int>) throws(WiringError) {
    guard range.lowerBound >= 0, range.upperBound <= guest.pageCount else { throw .outOfRange }
    for index in range {
      guard case .resident(let r, _) = guest.residency(ofPage: index), pool.records[r].queue == .wired else {
        throw .notWired
      }
    }
    for index in range {
      if case .resident(let r, _) = guest.residency(ofPage: index) { unwireRecord(guest, r) }
    }
  }

  /// Drops one wiring of frame `r`.
  func unwireRecord(_ guest: GuestMemory, _ r: Int) {
    pool.records[r].wireCount &-= 1
    guard pool.records[r].wireCount == 0 else { return }
    pool.move(r, to: .active)
    guest.counters[2] &-= 1
    _ = try? guest.ept.unwire(guest.guestVA(Int(pool.records[r].page)))
  }
}
