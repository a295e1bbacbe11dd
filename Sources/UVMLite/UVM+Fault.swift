import Pmap
import PmapEPT
import PmapNative

extension UVM {
  /// Resolves a fault by the guest on its RAM: what a hypervisor does on an EPT violation (NVMM's
  /// `vmx_exit_epf` -> `uvm_fault` on the guest's map, then VM entry again).
  ///
  /// Validates the address (not RAM -> ``FaultOutcome/outsideGuestMemory``, never a crash) and
  /// the access (beyond the RAM's protection -> ``FaultOutcome/accessDenied``); then finds the
  /// page: resident (only the EPT mapping was missing), in swap (read into a free frame) or never
  /// touched (a free frame filled with zeros); and enters it into the guest's EPT with the RAM's
  /// protection, A and D seeded from `access`. When the free count is below the low watermark the
  /// pagedaemon runs first.
  ///
  /// - Parameters:
  ///   - guest: a live guest of this UVM.
  ///   - gpa: the guest-physical address (any value: guest-controlled).
  ///   - access: the access that faulted (`.read`, `.write`, `.execute`; empty counts as read).
  /// - Throws: ``FaultError``; nothing changed then.
  /// - Complexity: O(1) plus a pagedaemon run when frames are short; allocates nothing.
  @inlinable
  public func fault(_ guest: GuestMemory, at gpa: GuestPhysicalAddress, access: Protection) throws(FaultError)
    -> FaultOutcome
  {
    guard let index = guest.pageIndex(of: gpa) else {
      stats.pointee.outsideRAMFaults &+= 1
      return .outsideGuestMemory
    }
    let access = access.intersection(.all)
    guard guest.protection.union(.read).isSuperset(of: access) else {
      stats.pointee.deniedFaults &+= 1
      return .accessDenied
    }
    return .resolved(try resolve(guest, page: index, access: access, host: false))
  }

  /// ``fault(_:at:access:)`` from a raw EPT violation: the exit qualification's access bits and
  /// the guest-physical address. A malformed qualification (reserved bits, no access kind) is
  /// treated as a read of the address; an address beyond 48 bits is outside RAM. Never traps.
  @inlinable
  public func fault(_ guest: GuestMemory, violation: EPTViolationExit) throws(FaultError) -> FaultOutcome {
    try fault(guest, at: GuestPhysicalAddress(violation.guestPhysicalAddress), access: violation.access)
  }

  /// Resolves a fault by the VMM on its native mapping of `guest`'s RAM (the emulator touching
  /// guest memory at `hostBase + gpa`): the same page lookup, entered into the host pmap
  /// read-write.
  ///
  /// - Precondition: the guest is mapped into a host pmap (``mapIntoHost(_:pmap:at:)``).
  /// - Throws: ``FaultError``; nothing changed then.
  @inlinable
  public func hostFault(_ guest: GuestMemory, at gpa: GuestPhysicalAddress, access: Protection) throws(FaultError)
    -> FaultOutcome
  {
    precondition(guest.hostPmap != nil, "UVM.hostFault: the guest is not mapped into a host pmap")
    guard let index = guest.pageIndex(of: gpa) else {
      stats.pointee.outsideRAMFaults &+= 1
      return .outsideGuestMemory
    }
    let access = access.intersection(.all)
    guard Protection.readWrite.isSuperset(of: access) else {
      stats.pointee.deniedFaults &+= 1
      return .accessDenied
    }
    return .resolved(try resolve(guest, page: index, access: access, host: true))
  }

  /// Finds or makes page `index` and enters it into the guest's EPT (or the host pmap).
  @inlinable
  func resolve(_ guest: GuestMemory, page index: Int, access: Protection, host: Bool) throws(FaultError) -> FaultKind {
    guest.counters[3] &+= 1
    let s = guest.state[index]
    let resident = Int(truncatingIfNeeded: s & 0xffff_ffff)
    if resident != 0 {
      let r = resident &- 1
      try enterPage(guest, page: index, record: r, access: access, host: host)
      if pool.records[r].queue == .inactive { pool.move(r, to: .active) }
      stats.pointee.residentFaults &+= 1
      return .alreadyResident
    }
    if pool.freeCount < pool.lowWatermark { runPagedaemon() }
    guard let r = pool.takeFree() else {
      stats.pointee.failedFaults &+= 1
      throw .outOfMemory
    }
    let frame = pool.frame(r)
    let slot = Int(truncatingIfNeeded: s >> 32)
    let kind: FaultKind
    if slot != 0 {
      do throws(SwapIOError) {
        try swap.store.readPage(fromSlot: slot &- 1, into: memory.pointer(to: frame))
      } catch {
        pool.putFree(r)
        stats.pointee.swapReadErrors &+= 1
        stats.pointee.failedFaults &+= 1
        throw .swapReadFailed(error)
      }
      observer?.pageSwappedIn(guest: guest, page: index, contents: UnsafeRawPointer(memory.pointer(to: frame)))
      kind = .swapIn
    } else {
      memory.zeroFrame(frame)
      kind = .zeroFill
    }
    do throws(FaultError) {
      try enterPage(guest, page: index, record: r, access: access, host: host)
    } catch {
      pool.putFree(r)
      throw error
    }
    pool.records[r].owner = UInt32(truncatingIfNeeded: guest.id &+ 1)
    pool.records[r].page = UInt32(truncatingIfNeeded: index)
    pool.records[r].activity = 1
    pool.enqueue(r, on: .active)
    guest.state[index] = s | UInt64(r &+ 1)
    guest.counters[0] &+= 1
    if slot != 0 {
      guest.counters[1] &-= 1
      stats.pointee.swapInFaults &+= 1
    } else {
      stats.pointee.zeroFillFaults &+= 1
    }
    return kind
  }

  /// Enters frame record `r` for page `index` into the guest's EPT or the host pmap.
  @inlinable
  func enterPage(_ guest: GuestMemory, page index: Int, record r: Int, access: Protection, host: Bool)
    throws(FaultError)
  {
    let frame = pool.frame(r)
    do throws(EnterError) {
      if host {
        try guest.hostPmap.unsafelyUnwrapped.enter(
          guest.hostVA(index), frame, protection: .readWrite, access: access, options: .canFail)
      } else {
        let options: EnterOptions = pool.records[r].queue == .wired ? [.canFail, .wired] : .canFail
        try guest.ept.enter(guest.guestVA(index), frame, protection: guest.protection, access: access, options: options)
      }
    } catch {
      stats.pointee.failedFaults &+= 1
      switch error {
      case .outOfPageTableMemory, .outOfPVEntries: throw .outOfPageTableMemory
      default: preconditionFailure("UVM: enter of a guest page refused its own arguments")
      }
    }
  }
}
