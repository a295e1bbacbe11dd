import Pmap
import PmapEPT
import PmapNative

/// One guest's RAM: guest-physical `0 ..< byteCount`, 4 KiB pages each never touched (reads as
/// zero), resident in a host frame, or in swap (NetBSD: the anonymous `uvm_object` behind the
/// guest's `vmspace`, which NVMM maps with `uvm_map` and faults with `uvm_fault`).
///
/// Made by ``UVM/makeGuest(byteCount:invalidation:protection:hardwareAccessedDirty:)``, which
/// also creates its EPT pmap; the ``UVM`` owns the pages and changes them (fault, pagedaemon).
/// Optionally the VMM maps the same RAM into its own native pmap at ``hostBase`` + gpa
/// (``UVM/mapIntoHost(_:pmap:at:)``).
public final class GuestMemory {
  /// The guest's slot in its ``UVM``.
  public let id: Int
  /// Pages of RAM.
  public let pageCount: Int
  /// The guest's EPT (guest-physical -> host-physical).
  public let ept: EPTPmap
  /// The rights the guest has on its RAM (a fault asking for more is refused).
  public let protection: Protection
  /// The VMM's native pmap mapping this RAM, if any.
  public internal(set) var hostPmap: NativePmap?
  /// Where the VMM maps guest-physical 0 in ``hostPmap``.
  public internal(set) var hostBase = VirtualAddress(0)
  /// Per page: bits 0-31 the frame record + 1 (0: not resident), bits 32-63 the swap slot + 1
  /// (0: no swap copy). A page neither resident nor in swap reads as zero.
  @usableFromInline let state: UnsafeMutablePointer<UInt64>
  @usableFromInline let counters: UnsafeMutablePointer<Int>  // resident, swapped (not resident), wired, faults

  init(id: Int, pageCount: Int, ept: EPTPmap, protection: Protection) {
    self.id = id
    self.pageCount = pageCount
    self.ept = ept
    self.protection = protection
    state = .allocate(capacity: pageCount)
    state.initialize(repeating: 0, count: pageCount)
    counters = .allocate(capacity: 4)
    counters.initialize(repeating: 0, count: 4)
  }

  deinit {
    state.deallocate()
    counters.deallocate()
  }

  /// Bytes of RAM.
  public var byteCount: UInt64 { UInt64(pageCount) << 12 }

  /// The page index of `gpa`, or `nil` when `gpa` is not guest RAM (MMIO, or garbage).
  @inlinable
  public func pageIndex(of gpa: GuestPhysicalAddress) -> Int? {
    let n = gpa.pageNumber
    return n < UInt64(pageCount) ? Int(truncatingIfNeeded: n) : nil
  }

  /// Pages resident in host frames.
  public var residentPages: Int { counters[0] }
  /// Pages only in swap (not resident).
  public var swappedPages: Int { counters[1] }
  /// Pages wired (resident, never evicted).
  public var wiredPages: Int { counters[2] }
  /// Faults taken on this guest's RAM (guest and host mappings, every kind).
  public var faults: Int { counters[3] }

  /// Where page `index` is.
  ///
  /// - Precondition: `index` in `0 ..< pageCount`.
  public func residency(ofPage index: Int) -> PageResidency {
    precondition(index >= 0 && index < pageCount, "GuestMemory: page index out of range")
    let s = state[index]
    let frame = Int(truncatingIfNeeded: s & 0xffff_ffff)
    let slot = Int(truncatingIfNeeded: s >> 32)
    if frame != 0 { return .resident(recordIndex: frame - 1, swapSlot: slot == 0 ? nil : slot - 1) }
    if slot != 0 { return .swapped(slot: slot - 1) }
    return .untouched
  }

  /// The guest-physical address of page `index` as the EPT pmap's address type.
  @inlinable
  func guestVA(_ index: Int) -> VirtualAddress { VirtualAddress(truncating: UInt64(truncatingIfNeeded: index) << 12) }

  /// The VMM's virtual address for page `index`.
  @inlinable
  func hostVA(_ index: Int) -> VirtualAddress {
    VirtualAddress(truncating: hostBase.rawValue &+ UInt64(truncatingIfNeeded: index) << 12)
  }

  /// The VMM's virtual address of `gpa`, or `nil` when the guest is not mapped into the host or
  /// `gpa` is not RAM.
  public func hostAddress(of gpa: GuestPhysicalAddress) -> VirtualAddress? {
    guard hostPmap != nil, let i = pageIndex(of: gpa) else { return nil }
    return VirtualAddress(truncating: hostVA(i).rawValue | UInt64(gpa.pageOffset))
  }
}

/// Where a guest page is.
public enum PageResidency: Equatable, Sendable {
  /// Never touched, or dropped while all zero: reads as zero, takes no frame and no slot.
  case untouched
  /// In a host frame (the ``FramePool`` record `recordIndex`), with a swap copy in `swapSlot`
  /// when it was swapped in and not evicted since (stale once the page is modified).
  case resident(recordIndex: Int, swapSlot: Int?)
  /// Only in swap.
  case swapped(slot: Int)
}
