import Pmap
import PmapEPT
import PmapNative

// Locking (issue "Concurrency and robustness"): UVMLite's own lock will sit here, one per UVM
// (NetBSD's object lock plus the page-queue lock), taken by fault, wire, the pagedaemon and guest
// creation before any pmap lock. Order: object (this UVM) -> pmap -> pv-list of a page -> frame
// allocator. The pagedaemon runs page operations (page -> each pmap) with the object lock held,
// which is the same order. Until then a UVM is single-threaded: callers serialise.

/// Pageable guest memory over the host's frames: the fault path, the page queues, the
/// pagedaemon and swap (a small NetBSD UVM, as NVMM uses it: "we want pageable guests; that is,
/// we want to allow UVM to unmap guest pages when the host comes under pressure").
///
/// * Guests (``GuestMemory``) are ranges of guest-physical RAM with an EPT pmap each.
/// * ``fault(_:at:access:)`` is what a hypervisor calls on an EPT violation: find or make the page
///   (zero-fill or swap-in), enter it, return.
/// * Frames come from one ``FramePool`` shared by all guests and the host; when it runs low the
///   pagedaemon (``runPagedaemon()``) evicts pages chosen by a clock over the active and inactive
///   queues, using the referenced count merged over every pmap that maps a page.
/// * Evicted pages that were modified through any mapping go to a ``SwapStore``.
///
/// Thread safety: none yet (see the lock comment in this file); single-threaded.
public final class UVM {
  /// The direct map (frames are zeroed and copied through it).
  public let memory: PhysicalMemory
  /// The host's data frames.
  public let pool: FramePool
  /// The managed pages (`pool.pages`, kept here so hot paths load it without a retain).
  public let pages: PageDatabase
  /// Swap slots and their store.
  public let swap: SwapSpace
  /// Where the guests' EPT page-table pages come from.
  public let pageTableAllocator: any FrameAllocator
  /// Told about every swap-in (a VMM may verify or account); optional.
  public var observer: (any PagingObserver)?
  @usableFromInline var guests: [GuestMemory?] = []
  @usableFromInline let stats: UnsafeMutablePointer<UVMStatistics>
  /// Keeps the owner of the memory alive (pmaps walk it when destroyed).
  let backing: AnyObject?
  /// The front hand keeps the inactive queue at least this fraction (1/n) of the paged frames.
  @inlinable public static var inactiveFraction: Int { 3 }
  /// The activity a page may accumulate from referenced counts (FreeBSD's `ACT_MAX`, scaled).
  public static var activityMax: UInt8 { 7 }

  /// Creates the VM system over `pool`'s frames.
  ///
  /// - Parameters:
  ///   - pool: the host's data frames (over a ``/Pmap/PageDatabase``).
  ///   - swap: the backing store for evicted pages.
  ///   - pageTableAllocator: frames for EPT page-table pages and pv-pool frames (may be `pool`).
  ///   - backing: an object to keep alive as long as this UVM (the simulated RAM's owner).
  public init(pool: FramePool, swap: any SwapStore, pageTableAllocator: any FrameAllocator, backing: AnyObject? = nil) {
    self.memory = pool.pages.memory
    self.pool = pool
    self.pages = pool.pages
    self.swap = SwapSpace(store: swap)
    self.pageTableAllocator = pageTableAllocator
    self.backing = backing
    stats = .allocate(capacity: 1)
    stats.initialize(to: UVMStatistics())
  }

  deinit {
    for g in guests { if let g { destroyGuest(g) } }
    stats.deallocate()
  }

  /// The counters.
  public var statistics: UVMStatistics { stats.pointee }

  /// The live guests.
  public var allGuests: [GuestMemory] { guests.compactMap { $0 } }

  /// Creates a guest of `byteCount` bytes of RAM at guest-physical 0, nothing resident, and its
  /// EPT pmap (NVMM's `nvmm_machine_create` + `uvm_map` of the guest's memory object).
  ///
  /// - Parameters:
  ///   - byteCount: the RAM's size: a non-zero multiple of 4 KiB, at most 16 TiB.
  ///   - invalidation: the guest's INVEPT sink.
  ///   - protection: the rights the guest has on its RAM (default all).
  ///   - hardwareAccessedDirty: whether the CPU's EPT maintains A/D bits. Without them every
  ///     page always looks referenced and modified; the pagedaemon then evicts such pages only by
  ///     its forced sweep and always writes them out.
  /// - Throws: ``GuestCreationError``; nothing changed.
  public func makeGuest(
    byteCount: UInt64, invalidation: any InvalidationSink, protection: Protection = .all,
    hardwareAccessedDirty: Bool = true
  ) throws(GuestCreationError) -> GuestMemory {
    guard byteCount > 0, byteCount & 0xfff == 0, byteCount <= 1 << 44, protection.contains(.read),
      protection.isEncodable
    else { throw .badSize }
    var slot = guests.firstIndex { $0 == nil } ?? guests.count
    if slot == guests.count {
      guard guests.count < 0xffff else { throw .tooManyGuests }
      guests.append(nil)
      slot = guests.count - 1
    }
    let ept: EPTPmap
    do {
      ept = try EPTPmap(
        memory: memory, allocator: pageTableAllocator, invalidation: invalidation, pages: pages,
        hardwareManagesAccessedDirty: hardwareAccessedDirty)
    } catch { throw .outOfPageTableMemory }
    let g = GuestMemory(id: slot, pageCount: Int(byteCount >> 12), ept: ept, protection: protection)
    guests[slot] = g
    return g
  }

  /// Maps `guest`'s RAM into the VMM's native `pmap` at `base` (nothing is entered now: pages
  /// are entered by ``hostFault(_:at:access:)``, as the VMM touches them). A page is then shared
  /// by two pmaps of different formats and its attributes are merged over both.
  ///
  /// - Throws: ``HostMappingError``; nothing changed.
  public func mapIntoHost(_ guest: GuestMemory, pmap: NativePmap, at base: VirtualAddress) throws(HostMappingError) {
    guard guest.hostPmap == nil else { throw .alreadyMapped }
    guard pmap.pages === pages else { throw .foreignPmap }
    guard base.isPageAligned, base.linear < 1 << 47, guest.byteCount <= (1 << 47) - base.linear else {
      throw .badRange
    }
    guest.hostPmap = pmap
    guest.hostBase = base
  }

  /// Removes the VMM's mappings of `guest`'s RAM and forgets the host pmap.
  public func unmapFromHost(_ guest: GuestMemory) {
    guard let host = guest.hostPmap else { return }
    if let range = try? VirtualRange(start: guest.hostBase, byteCount: guest.byteCount) {
      _ = try? host.remove(range)  // 4 KiB mappings only: cannot split a large page
    }
    guest.hostPmap = nil
  }

  /// Frees everything `guest` holds: its mappings, frames, swap slots and EPT pmap
  /// (`uvm_unmap` + `pmap_destroy`). The guest is unusable afterwards.
  ///
  /// - Precondition: `guest` belongs to this UVM and was not destroyed.
  public func destroyGuest(_ guest: GuestMemory) {
    precondition(guest.id < guests.count && guests[guest.id] === guest, "UVM: not a live guest of this UVM")
    unmapFromHost(guest)
    for i in 0..<guest.pageCount {
      let s = guest.state[i]
      let r = Int(truncatingIfNeeded: s & 0xffff_ffff)
      if r != 0 {
        _ = pages.removeAllMappings(pool.frame(r - 1))
        pool.dequeue(r - 1)
        pool.putFree(r - 1)
      }
      let slot = Int(truncatingIfNeeded: s >> 32)
      if slot != 0 { swap.release(slot - 1) }
      guest.state[i] = 0
    }
    guest.counters.update(repeating: 0, count: 4)
    guest.ept.destroy()
    guests[guest.id] = nil
  }

  /// The guest in slot `id`, if live.
  public func guest(_ id: Int) -> GuestMemory? { id >= 0 && id < guests.count ? guests[id] : nil }
}

/// Told about paging events (for a VMM that checks or accounts for its guests' memory).
public protocol PagingObserver: AnyObject {
  /// Page `page` of `guest` was just read back from swap into the 4 KiB at `contents`, before
  /// it is mapped.
  func pageSwappedIn(guest: GuestMemory, page: Int, contents: UnsafeRawPointer)
}
