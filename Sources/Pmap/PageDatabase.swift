import Synchronization

/// Per-physical-page metadata for the frames the VM system manages, shared by every pmap of every
/// format (NetBSD's `struct pmap_page` inside `vm_page`, with its pv-list and `pp_attrs`).
///
/// For each managed 4 KiB frame it keeps:
/// * a pv-list: every (pmap, virtual address) that maps the frame, whatever the pmap's format.
///   The first mapping is embedded in the page's metadata (0 extra bytes); further ones take a
///   16-byte node from a pool that grows a frame at a time from the ``FrameAllocator``
///   (256 nodes per frame), so nothing is allocated on the Swift heap per mapping;
/// * the cached ``PageAttributes``: what mappings that no longer exist recorded (NetBSD ORs an
///   entry's A/D into `pp_attrs` whenever the entry is removed or replaced), plus what page
///   operations have already gathered.
///
/// Page operations (`isReferenced`, `clearModify`, `protectPage`, ...) walk the pv-list and read
/// or change each mapping's entry with its own pmap's format: "we take the Accessed bits from the
/// two pmaps using different PTE sets in each case, and combine them into a generic PP_ATTRS
/// flag" (NetBSD, EPT commit). The format's bits are kept per registered pmap (`PVFormat`), so
/// reading and clearing A/D/W needs no call into the pmap; removing a mapping goes through the
/// pmap's ``PVOwner`` adapter.
///
/// Physical addresses outside the managed range (device memory, MMIO) are unmanaged: mapped
/// without pv tracking and ignored by page operations.
///
/// Thread safety: every method may be called from any thread. Pages are locked by stripe (256
/// spin locks, 16 consecutive frames per stripe, FreeBSD's `pv_list_locks`); a stripe lock
/// guards the pv-lists and cached attributes of its pages. The node pool and the registry of
/// pmaps have their own lock. Lock order: pmap -> page stripe -> pool -> frame allocator. A page
/// operation starts from the page, so it only *tries* a pmap's lock and, when that fails,
/// drops the stripe and starts over (NetBSD's `pmap_pp_remove` does the same).
/// ``checkInvariants()`` must run while nothing else does.
public final class PageDatabase: @unchecked Sendable {
  // @unchecked: all mutable state is reached through raw pointers and guarded by the stripe
  // and pool locks described above; the stored properties themselves are immutable.
  /// The direct map (pv nodes live in frames reached through it).
  public let memory: PhysicalMemory
  /// The first managed physical address.
  public let base: PhysicalAddress
  /// The number of managed 4 KiB frames.
  public let pageCount: Int
  @usableFromInline let end: UInt64
  @usableFromInline let pages: UnsafeMutablePointer<ManagedPage>
  @usableFromInline let allocator: any FrameAllocator
  @usableFromInline let state: UnsafeMutablePointer<PVState>
  @usableFromInline let slots: UnsafeMutablePointer<OwnerSlot>
  /// One lock line per stripe.
  @usableFromInline let stripes: LockLines
  /// Whether page operations take locks, or the caller serialises everything.
  public let locking: Locking
  /// The lock of the node pool and the registry (``state``, ``slots``).
  @usableFromInline let poolLock: SpinLock
  /// Line 0: the pool lock; line 1: ``sinkCount``.
  let poolLockLine: LockLines
  /// How many distinct invalidation sinks the registered pmaps report to; changed under the pool
  /// lock, read without it (see ``reportPending(_:)``).
  @usableFromInline let sinkCount: UnsafeMutablePointer<Atomic<Int>>
  /// The most pmaps that can be registered at once.
  public let pmapCapacity: Int

  /// Creates the metadata of `pageCount` frames from `base`.
  ///
  /// - Parameters:
  ///   - memory: the direct map.
  ///   - base: the first managed frame (4 KiB aligned).
  ///   - pageCount: how many frames are managed.
  ///   - allocator: where pv-node frames come from (may be the page-table allocator).
  ///   - pmapCapacity: how many pmaps may map managed pages at once (at most 65535).
  ///   - locking: ``Locking/spinLocks`` (the default) or ``Locking/callerSerialized``; every
  ///     pmap registered here must use the same mode.
  /// - Precondition: `base` is aligned, the range is below 2^52, `pmapCapacity` in `1...65535`.
  public init(
    memory: PhysicalMemory, base: PhysicalAddress, pageCount: Int, allocator: any FrameAllocator,
    pmapCapacity: Int = 1024, locking: Locking = .spinLocks
  ) {
    precondition(base.isPageAligned, "PageDatabase: base must be 4 KiB aligned")
    precondition(
      pageCount > 0 && base.rawValue + UInt64(pageCount) << 12 <= PhysicalAddress.limit, "PageDatabase: bad range")
    precondition((1...65535).contains(pmapCapacity), "PageDatabase: pmapCapacity must be 1...65535")
    self.memory = memory
    self.base = base
    self.pageCount = pageCount
    self.end = base.rawValue + UInt64(pageCount) << 12
    self.allocator = allocator
    self.pmapCapacity = pmapCapacity
    pages = .allocate(capacity: pageCount)
    pages.initialize(repeating: ManagedPage(), count: pageCount)
    slots = .allocate(capacity: pmapCapacity)
    slots.initialize(repeating: OwnerSlot(), count: pmapCapacity)
    state = .allocate(capacity: 1)
    state.initialize(to: PVState())
    stripes = LockLines(count: PageStripes.count)
    poolLockLine = LockLines(count: 2)
    poolLock = poolLockLine.lock(0, elided: locking == .callerSerialized)
    sinkCount = (poolLockLine.base + 64).bindMemory(to: Atomic<Int>.self, capacity: 1)
    self.locking = locking
  }

  deinit {
    // Pmaps hold their PageDatabase strongly and unregister in destroy(): none is left here.
    var frame = state.pointee.poolFrames
    while frame != 0 {
      let next = memory.pointer(to: PhysicalAddress(truncating: frame)).load(fromByteOffset: 4080, as: UInt64.self)
      allocator.releaseFrame(PhysicalAddress(truncating: frame))
      frame = next
    }
    pages.deallocate()
    slots.deallocate()
    state.deallocate()
    stripes.deallocate()
    poolLockLine.deallocate()
  }

  /// Whether `address` lies in a managed frame.
  @inlinable @inline(__always)
  public func manages(_ address: PhysicalAddress) -> Bool {
    address.rawValue >= base.rawValue && address.rawValue < end
  }

  @inlinable @inline(__always)
  func page(_ address: PhysicalAddress) -> UnsafeMutablePointer<ManagedPage> {
    pages + Int(truncatingIfNeeded: (address.rawValue &- base.rawValue) >> 12)
  }

  /// The stripe of managed page `f` (16 consecutive frames share one).
  @inlinable @inline(__always)
  func stripe(of f: PhysicalAddress) -> Int {
    Int(truncatingIfNeeded: (f.rawValue &- base.rawValue) >> 16) & (PageStripes.count &- 1)
  }

  /// The lock guarding the pv-list and cached attributes of managed page `f`.
  @inlinable @inline(__always)
  func pageLock(_ f: PhysicalAddress) -> SpinLock { stripeLock(stripe(of: f)) }

  /// The lock of stripe `i`.
  @inlinable @inline(__always)
  func stripeLock(_ i: Int) -> SpinLock { stripes.lock(i, elided: locking == .callerSerialized) }

  /// Statistics of the pv machinery: the mappings counted on the pages' lists (each stripe
  /// under its lock), the nodes in use counted from the pool (under its lock). A snapshot while
  /// operations run. Nothing on the hot paths keeps a counter for it: the free nodes are
  /// counted by walking the pool's free list.
  ///
  /// - Complexity: O(managed pages + free pool nodes).
  public var statistics: PVStatistics {
    var pagesMapped = 0
    for i in 0..<PageStripes.count {
      stripeLock(i).lock()
      // Stripe i holds the pages whose index has bits 4-11 equal to i.
      var group = i
      while group &* PageStripes.framesPerGroup < pageCount {
        let first = group &* PageStripes.framesPerGroup
        for k in first..<min(pageCount, first &+ PageStripes.framesPerGroup) where pages[k].head != 0 {
          pagesMapped &+= 1
        }
        group &+= PageStripes.count
      }
      stripeLock(i).unlock()
    }
    poolLock.lock()
    let s = state.pointee
    var free = 0
    var ref = s.freeNodes
    while ref != 0 {
      free &+= 1
      ref = node(ref)[1]
    }
    poolLock.unlock()
    let nodes = s.poolFrameCount * PVNode.perFrame - free
    return PVStatistics(
      mappings: pagesMapped + nodes, overflowNodesInUse: nodes, poolFrames: s.poolFrameCount,
      registeredPmaps: s.registeredCount)
  }

  /// Bytes of pv storage per mapping beyond the page metadata that exists anyway: 0 for a
  /// page's first mapping, ``PVNode/size`` for each further one.
  public static var bytesPerAdditionalMapping: Int { PVNode.size }
}

/// Counters of a ``PageDatabase``.
public struct PVStatistics: Hashable, Sendable {
  /// Mappings of managed pages (pv entries), embedded or pooled.
  public var mappings: Int
  /// Pool nodes in use (mappings beyond the first of each page).
  public var overflowNodesInUse: Int
  /// Frames the pool has taken from the allocator.
  public var poolFrames: Int
  /// Pmaps registered.
  public var registeredPmaps: Int

  /// Creates a set of counters.
  public init(mappings: Int, overflowNodesInUse: Int, poolFrames: Int, registeredPmaps: Int) {
    self.mappings = mappings
    self.overflowNodesInUse = overflowNodesInUse
    self.poolFrames = poolFrames
    self.registeredPmaps = registeredPmaps
  }
}

/// One managed page's metadata: 16 bytes.
@usableFromInline
struct ManagedPage {
  /// The first pv entry (packed, see ``PVEntry``), or 0.
  @usableFromInline var head: UInt64 = 0
  /// Bits 0-51: physical address | 1 of the first pool node, or 0. Bits 56-63: the cached
  /// ``PageAttributes``.
  @usableFromInline var link: UInt64 = 0

  @inlinable init() {}

  @usableFromInline static var nodeMask: UInt64 { 0x000f_ffff_ffff_ffff }

  @inlinable @inline(__always) var firstNode: UInt64 { link & Self.nodeMask }
  @inlinable @inline(__always) mutating func setFirstNode(_ node: UInt64) {
    link = (link & ~Self.nodeMask) | node
  }
  @inlinable @inline(__always) var attributes: PageAttributes {
    get { PageAttributes(rawValue: UInt8(truncatingIfNeeded: link >> 56)) }
    set { link = (link & 0x00ff_ffff_ffff_ffff) | UInt64(newValue.rawValue) << 56 }
  }

  /// Records pv entry `entry` as a further mapping of `page`, in the pool node at `n` (whose
  /// reference is `ref`), linked at the front of the page's nodes (`pmap_enter_pv`).
  ///
  /// - Precondition: the caller holds the page's lock; the page has a mapping already.
  @inlinable @inline(__always)
  static func insert(
    _ entry: UInt64, into page: UnsafeMutablePointer<ManagedPage>, node n: UnsafeMutablePointer<UInt64>, ref: UInt64
  ) {
    // The link read once: after the stores to the node, which may alias it as far as the
    // compiler knows, it would be read again.
    let link = page.pointee.link
    n[0] = entry
    n[1] = link & nodeMask
    page.pointee.link = (link & ~nodeMask) | ref
  }
}

/// A pv entry packed in 64 bits: bits 0-35 the virtual page number (48-bit linear address >> 12),
/// bits 36-51 the pmap's registry slot + 1. Zero means "none".
@usableFromInline
enum PVEntry {
  @inlinable @inline(__always)
  static func make(slot: Int, linear: UInt64) -> UInt64 {
    (UInt64(truncatingIfNeeded: slot) &+ 1) << 36 | linear >> 12
  }
  @inlinable @inline(__always)
  static func slot(_ e: UInt64) -> Int { Int(truncatingIfNeeded: (e >> 36) & 0xffff) &- 1 }
  @inlinable @inline(__always)
  static func linear(_ e: UInt64) -> UInt64 { (e & 0xf_ffff_ffff) << 12 }
}

/// A pool node: a pv entry and the link to the next node (physical address | 1, or 0).
public enum PVNode {
  /// Bytes per node.
  public static var size: Int { 16 }
  /// Nodes carved from one 4 KiB frame (the last 8 bytes link the pool's frames).
  @inlinable static var perFrame: Int { 255 }

  /// The node at `ref` (physical address | 1, never 0) through `memory`'s direct map.
  /// Subtracting the tag, rather than masking it, folds into the address arithmetic of the
  /// loads and stores that follow.
  @inlinable @inline(__always)
  static func pointer(_ ref: UInt64, in memory: PhysicalMemory) -> UnsafeMutablePointer<UInt64> {
    pointer(ref, directMapBase: memory.directMapBase)
  }

  /// ``pointer(_:in:)``, with only the direct map's base.
  @inlinable @inline(__always)
  static func pointer(_ ref: UInt64, directMapBase: UnsafeRawPointer) -> UnsafeMutablePointer<UInt64> {
    UnsafeMutableRawPointer(mutating: directMapBase + (Int(truncatingIfNeeded: ref) &- 1))
      .assumingMemoryBound(to: UInt64.self)
  }
}

/// The page stripes' layout.
@usableFromInline
enum PageStripes {
  /// Stripes (a power of two).
  @inlinable static var count: Int { 256 }
  /// Consecutive frames that share a stripe.
  @inlinable static var framesPerGroup: Int { 16 }
}

/// The node pool and registry, guarded by ``PageDatabase/poolLock``.
@usableFromInline
struct PVState {
  @usableFromInline var freeNodes: UInt64 = 0  // physical address | 1 of the first free node
  @usableFromInline var poolFrames: UInt64 = 0  // physical address of the last pool frame, linked
  @usableFromInline var poolFrameCount = 0
  @usableFromInline var registeredCount = 0
  @usableFromInline var freeSlotHint = 0
  @inlinable init() {}

  /// Takes the first free node of the pool whose state is at `s`, without the pool lock and
  /// without growing the pool: 0, having changed nothing, when the pool is empty.
  /// ``PageDatabase/takeNode()`` calls it under the pool lock; `enter`, in a page database that
  /// takes no locks, calls it inline (no call, no lock) through the pointers its pmap keeps.
  ///
  /// - Precondition: the caller holds the pool lock, or the database was created with
  ///   ``Locking/callerSerialized``; `memory` is the database's direct map.
  /// - Complexity: O(1).
  @inlinable @inline(__always)
  static func popFreeNode(_ s: UnsafeMutablePointer<PVState>, in memory: PhysicalMemory) -> UInt64 {
    let ref = s.pointee.freeNodes
    if ref == 0 { return 0 }
    s.pointee.freeNodes = PVNode.pointer(ref, in: memory)[1]
    return ref
  }
}

/// Pool nodes freed by one page operation, gathered on its stack and returned to the pool
/// together (``PageDatabase/release(_:)``): one pool lock per page, not one per node.
@usableFromInline
struct PVFreeChain {
  /// Physical address | 1 of the first node and of the last, or 0.
  @usableFromInline var head: UInt64 = 0
  @usableFromInline var tail: UInt64 = 0
  @usableFromInline var count = 0
  @inlinable init() {}

  /// Adds node `ref` (0: nothing) to the chain.
  @inlinable @inline(__always)
  mutating func append(_ ref: UInt64, in database: PageDatabase) {
    if ref == 0 { return }
    database.node(ref)[1] = head
    if head == 0 { tail = ref }
    head = ref
    count &+= 1
  }
}

/// A registered pmap: the object page operations call, and its format's bits.
@usableFromInline
struct OwnerSlot {
  /// Retained by ``PageDatabase/register(_:lock:format:invalidation:)``, released by ``PageDatabase/unregister(slot:)``.
  @usableFromInline var owner: Unmanaged<PVOwner>? = nil
  /// The pmap's lock, which page operations try before removing a mapping.
  @usableFromInline var lock: SpinLock? = nil
  /// The pmap's root and the identity of its invalidation sink, cached at registration.
  @usableFromInline var root = PhysicalAddress(truncating: 0)
  @usableFromInline var sink: ObjectIdentifier? = nil
  /// The pmap's invalidation sink, boxed so that page operations call it through an unmanaged
  /// reference, with no ARC traffic.
  @usableFromInline var invalidation: Unmanaged<SinkReference>? = nil
  /// The pmap's entry format as masks, so that page operations read and clear A/D in its
  /// leaves themselves, with no call into the pmap.
  @usableFromInline var format = PVFormat()
  @inlinable init() {}
}

/// A registered pmap's invalidation sink, in a box the page database holds unmanaged: a
/// protocol existential loaded from memory would be retained and released around each call.
@usableFromInline
final class SinkReference {
  @usableFromInline let sink: any InvalidationSink
  @usableFromInline init(_ sink: any InvalidationSink) { self.sink = sink }
}

/// What page operations need of a registered pmap's entry format, as data (taken from its
/// ``PTEOps`` at registration): the accessed, dirty, writable and pv-tracked bits, the frame
/// field, and whether the hardware sets A/D. Attributes are still read "with each pmap's own
/// PTE set" (NetBSD's EPT commit); the page database just does it without a call per mapping.
@usableFromInline
struct PVFormat {
  @usableFromInline var accessed: UInt64 = 0
  @usableFromInline var dirty: UInt64 = 0
  @usableFromInline var writable: UInt64 = 0
  @usableFromInline var managed: UInt64 = 0
  @usableFromInline var frameMask: UInt64 = 0
  @usableFromInline var hardwareAD = false
  @inlinable init() {}

  /// The masks of format `Ops`, for a pmap with or without hardware A/D.
  @inlinable
  init<Ops: PTEOps>(_: Ops.Type, hardwareAD: Bool) {
    accessed = Ops.accessedBit
    dirty = Ops.dirtyBit
    writable = Ops.entryBits(for: .writable)
    managed = Ops.managedBit
    frameMask = Ops.tableFrame(0x000f_ffff_ffff_f000).rawValue
    self.hardwareAD = hardwareAD
    precondition(
      Ops.pageAttributes(of: accessed | dirty | writable) == [.referenced, .modified, .writable]
        && Ops.pageAttributes(of: ~(accessed | dirty | writable)).isEmpty,
      "PVFormat: the format's page attributes are not its A, D and W bits")
  }

  /// A -> referenced, D -> modified, W -> writable: the format's `pageAttributes(of:)`.
  @inlinable @inline(__always)
  func attributes(of entry: UInt64) -> PageAttributes {
    var a: PageAttributes = []
    if entry & accessed != 0 { a.insert(.referenced) }
    if entry & dirty != 0 { a.insert(.modified) }
    if entry & writable != 0 { a.insert(.writable) }
    return a
  }
}

/// Explicit invalidation requests a page operation owes, gathered across pmaps and reported once
/// per sink: on the stack of the operation, so that operations on different pages never share it.
/// (Only for pages with 63 mappings or more; see ``PageDatabase/reportOwed(_:of:)``.)
@usableFromInline
struct PendingRequests {
  @usableFromInline static var capacity: Int { 64 }
  @usableFromInline var count = 0
  @usableFromInline let requests: UnsafeMutablePointer<InvalidationRequest>
  @usableFromInline let slots: UnsafeMutablePointer<Int>

  @inlinable init(requests: UnsafeMutablePointer<InvalidationRequest>, slots: UnsafeMutablePointer<Int>) {
    self.requests = requests
    self.slots = slots
  }
}
