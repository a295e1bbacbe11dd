import Synchronization

// Locking (see Sources/Pmap/Pmap.docc/Architecture.md, "Locks and atomicity"):
//   Lock order: object (UVMLite guest memory) -> pmap -> page stripe (pv-list) -> pv pool
//   -> frame allocator. Every lock is a SpinLock (an Atomic word; no Mutex on bare metal).
//   - The pmap lock guards the pmap's tree structure, counters and invalidation batch: every
//     public operation takes it once.
//   - A page stripe lock guards the pv-lists and cached attributes of 16 consecutive frames; a
//     managed leaf is installed or removed together with its pv entry under it, so that while a
//     page's lock is held, its pv entries and the leaves mapping it agree exactly.
//   - Page operations start from the page (stripe lock) and read or CAS the leaves they find
//     without the pmap lock (the leaf, and so its tables, cannot go away while the page is
//     locked); removing a mapping needs the pmap lock too, which they only try (retrying after
//     dropping the page lock), since that goes against the order.
// Page-table entries are never protected by a lock against the MMU: every change to an entry the
// hardware may be updating goes through EntryPointer's atomic exchange / compare-and-swap.

/// An address space: a four-level page-table tree in one entry format (NetBSD's `struct pmap`).
///
/// `Pmap` is generic over the entry format so that one implementation of the walk, page-table
/// page lifecycle, statistics and invalidation serves native x86-64 tables (`NativePmap`) and
/// Intel EPT (`EPTPmap`), specialised at compile time for each.
///
/// Page-table pages come from the ``FrameAllocator`` and are reached through the direct map of
/// ``PhysicalMemory``; each has a wire count of 1 + its live entries, as NetBSD keeps it, and is
/// freed as soon as it becomes empty, after the invalidation that covers it has been reported to
/// the ``InvalidationSink``.
///
/// Thread safety: every operation may be called from any thread; each takes the pmap's spin
/// lock once (NetBSD's `pm_lock`). Page operations of ``PageDatabase`` may run concurrently on
/// the same pmap. The MMU may update A/D bits concurrently at any time: that is always safe.
/// ``lookupLeaf(_:)`` alone reads without the lock (a snapshot). The frame allocator and the
/// invalidation sink are called with the lock held and must be thread-safe themselves.
public final class Pmap<Ops: PTEOps>: @unchecked Sendable {
  // @unchecked: the stored properties are immutable; the mutable state behind `state` and the
  // lock line is only touched with the pmap's lock held (or atomically, for entries).
  /// The direct map and page-table-page counters this pmap uses.
  public let memory: PhysicalMemory
  @usableFromInline let allocator: any FrameAllocator
  @usableFromInline let invalidation: any InvalidationSink
  /// The physical address of the root (PML4) page: what CR3 or the EPT pointer holds.
  public let root: PhysicalAddress
  /// Whether leaves are user or kernel mappings (native format only; EPT ignores it).
  public let kind: AddressSpaceKind
  /// Whether the MMU maintains accessed and dirty bits in this pmap's entries. Always true for
  /// native tables; false for an EPT on a CPU without EPT A/D (IA32_VMX_EPT_VPID_CAP bit 21), in
  /// which case every mapping is entered with A and D set: it always reports referenced and
  /// modified, and every change to it is invalidated (NetBSD's answer, `pmap_ept_has_ad`).
  public let hardwareManagesAccessedDirty: Bool
  /// Whether `enter` accepts 1 GiB pages: the CPU must support them (native: CPUID
  /// 80000001h EDX bit 26, Page1GB; EPT: IA32_VMX_EPT_VPID_CAP bit 17). Without them, a 1 GiB
  /// enter fails with ``EnterError/unsupportedPageSize``.
  public let supportsGigabytePages: Bool
  @usableFromInline let state: UnsafeMutablePointer<PmapState>
  /// The pmap's lock word, alone on its cache line; on the next line, the table generation.
  @usableFromInline let lockLine: LockLines
  /// Whether this pmap takes its locks (``Locking/spinLocks``) or its caller serialises.
  public let locking: Locking
  /// The pmap's lock word: the first word of ``lockLine``, or with ``Locking/callerSerialized``
  /// the word 8 bytes further, which is never set. The address alone gives the mode, so that
  /// one load gives ``lock`` whole, and an unconditional release store to it
  /// (``SpinLock/unlockStoringAlways()``) needs no mask.
  @usableFromInline let lockWord: UnsafeMutableRawPointer
  /// The pmap's lock (a no-op when the caller serialises).
  @inlinable var lock: SpinLock {
    SpinLock(word: lockWord, elided: UInt(bitPattern: lockWord) & Self.elidedLockOffset != 0)
  }
  /// Where an elided pmap's lock word lies in its ``lockLine``: a 64-byte aligned line.
  @inlinable static var elidedLockOffset: UInt { 8 }
  /// The table generation: bumped before page-table pages go back to the allocator, so that a
  /// lock-free walk (``extract(_:)``, ``translation(of:)``) that may have read a freed table
  /// knows to start over. Alone on the second lock line: writers touch it only when they free
  /// tables, and readers only read it.
  @inlinable var tableGeneration: UnsafeMutablePointer<Atomic<UInt64>> {
    (lockLine.base + 64).assumingMemoryBound(to: Atomic<UInt64>.self)
  }
  /// The managed pages this pmap tracks mappings of, if any.
  public let pages: PageDatabase?
  /// This pmap's slot in ``pages``' registry.
  @inlinable var pvSlot: Int { state.pointee.pvSlot }
  /// The leaf templates `enter` starts from (``PmapState/leafTemplates(of:)``).
  @inlinable var leafTemplates: UnsafeMutablePointer<UInt64> { PmapState.leafTemplates(of: state) }
  /// The PML4 slots of the shared kernel half (see <doc:Architecture#A-shared-kernel-half>): for
  /// a kernel pmap created with `kernelHalfSlots:`, the slots whose PDPT pages it allocated at
  /// creation and keeps until ``destroy()``; for a pmap created `sharingKernelHalfWith:`, the
  /// same slots, copied from that kernel pmap and not owned. Empty otherwise.
  public let kernelHalfSlots: Range<Int>
  /// The kernel pmap whose kernel half this pmap shares (NetBSD's `pmap_pdp_init` copying the
  /// kernel's PML4 slots), or `nil`. Kept alive as long as this pmap.
  public let kernelHalfOwner: Pmap<Ops>?
  /// The PML4 slots of the whole upper (kernel) half, `256 ..< 512`.
  @inlinable public static var upperHalfSlots: Range<Int> { 256..<512 }

  /// Creates an empty address space: a zeroed root page and nothing else (`pmap_create`; an EPT
  /// pmap, like NetBSD's, never maps anything of the host kernel).
  ///
  /// - Parameters:
  ///   - memory: the direct map through which page-table pages are reached, and their counters.
  ///   - allocator: where page-table pages come from and go back to.
  ///   - invalidation: where the pmap reports translations it changed (TLB shootdown / INVEPT).
  ///   - pages: the managed pages: 4 KiB mappings of frames in its range go on their pv-lists, so
  ///     that page operations reach them. `nil`: nothing is pv-tracked (NetBSD's unmanaged
  ///     `pmap_kenter_pa` mappings are entered this way).
  ///   - kind: ``AddressSpaceKind/user`` or ``AddressSpaceKind/kernel`` leaves (native format).
  ///   - hardwareManagesAccessedDirty: whether the MMU sets A/D in this pmap's entries; pass
  ///     `false` for an EPT on a CPU without EPT A/D (IA32_VMX_EPT_VPID_CAP bit 21 clear).
  ///   - supportsGigabytePages: whether the CPU can map 1 GiB pages in this format.
  ///   - locking: ``Locking/spinLocks`` (the default), or ``Locking/callerSerialized`` when the
  ///     caller guarantees that operations never overlap; it must match `pages`' mode.
  ///   - kernelHalfSlots: for a kernel pmap that other pmaps will share its kernel half with: the
  ///     PML4 slots (inside ``upperHalfSlots``) whose PDPT pages are allocated, zeroed and linked
  ///     now and stay linked until ``destroy()``, so that the root entries other pmaps copy never
  ///     change (NetBSD preallocates the kernel's PML4 slots). One frame per slot: all of
  ///     ``upperHalfSlots`` costs 256 frames (1 MiB). Empty (the default): nothing preallocated.
  ///   - kernel: a kernel pmap created with `kernelHalfSlots:`, whose kernel half this pmap
  ///     shares: its root entries for those slots are copied into this pmap's root. Operations on
  ///     this pmap at an address in those slots are refused with `addressInSharedKernelHalf`
  ///     errors; the kernel pmap maps them, for every pmap sharing them at once.
  /// - Throws: ``PmapCreationError/outOfPageTableMemory`` when the allocator has no frame; the
  ///   frames already obtained are given back.
  /// - Precondition: the allocator's frames lie inside `memory`; `pages`, if given, uses the same
  ///   direct map, manages frames below `memory`'s ``PhysicalMemory/physicalAddressLimit`` and
  ///   has a free registry slot (``PageDatabase/pmapCapacity``). With
  ///   `kernelHalfSlots` or `kernel`: a format with a kernel half (``PTEOps/hasKernelHalf``:
  ///   native, not EPT); `kernelHalfSlots` lies in ``upperHalfSlots`` and `kind` is
  ///   ``AddressSpaceKind/kernel``; `kernel` is a live ``AddressSpaceKind/kernel`` pmap over the
  ///   same direct map, created with non-empty `kernelHalfSlots`; not both.
  /// - Complexity: O(1 + kernelHalfSlots.count) frames allocated and zeroed.
  public init(
    memory: PhysicalMemory, allocator: any FrameAllocator, invalidation: any InvalidationSink,
    pages: PageDatabase? = nil, kind: AddressSpaceKind = .user, hardwareManagesAccessedDirty: Bool = true,
    supportsGigabytePages: Bool = true, locking: Locking = .spinLocks, kernelHalfSlots: Range<Int> = 256..<256,
    sharingKernelHalfWith kernel: Pmap<Ops>? = nil
  ) throws(PmapCreationError) {
    precondition(pages == nil || pages!.locking == locking, "Pmap: locking differs from the page database's")
    if !kernelHalfSlots.isEmpty || kernel != nil {
      precondition(Ops.hasKernelHalf, "Pmap: this entry format has no kernel half")
      precondition(kernelHalfSlots.isEmpty || kernel == nil, "Pmap: a pmap either owns or shares a kernel half")
    }
    if !kernelHalfSlots.isEmpty {
      precondition(
        kernelHalfSlots.clamped(to: Self.upperHalfSlots) == kernelHalfSlots, "Pmap: kernel half outside the upper half")
      precondition(kind == .kernel, "Pmap: only a .kernel pmap can own a kernel half")
    }
    if let kernel {
      precondition(
        kernel.kind == .kernel && !kernel.kernelHalfSlots.isEmpty && kernel.kernelHalfOwner == nil,
        "Pmap: sharingKernelHalfWith needs a .kernel pmap created with kernelHalfSlots")
      precondition(kernel.memory.directMapBase == memory.directMapBase, "Pmap: kernel pmap over another direct map")
    }
    guard let frame = memory.allocateTableFrame(from: allocator) else { throw .outOfPageTableMemory }
    memory.setWireCount(of: frame, to: 1)
    // The kernel half: preallocated and pinned (wire count 2 + live entries, so that removing
    // the last mapping under one never frees it), or copied from the kernel pmap.
    var pinned = 0
    for slot in kernelHalfSlots {
      guard let table = memory.allocateTableFrame(from: allocator) else {
        for k in 0..<pinned {
          let e = memory.entry(in: frame, at: kernelHalfSlots.lowerBound + k).exchange(0)
          memory.setWireCount(of: Ops.tableFrame(e), to: 0)
          memory.releaseTableFrame(Ops.tableFrame(e), to: allocator)
        }
        memory.setWireCount(of: frame, to: 0)
        memory.releaseTableFrame(frame, to: allocator)
        throw .outOfPageTableMemory
      }
      memory.setWireCount(of: table, to: 2)
      memory.entry(in: frame, at: slot).store(Ops.tableEntry(for: table))
      pinned += 1
    }
    if let kernel {
      kernel.withLock {
        kernel.checkAlive()
        kernel.state.pointee.sharerCount += 1
      }
      for slot in kernel.kernelHalfSlots {
        memory.entry(in: frame, at: slot).store(memory.entry(in: kernel.root, at: slot).load() & ~Ops.accessedBit)
      }
    }
    self.kernelHalfSlots = kernel?.kernelHalfSlots ?? kernelHalfSlots
    self.kernelHalfOwner = kernel
    memory.setWireCount(of: frame, to: 1 + self.kernelHalfSlots.count)
    self.memory = memory
    self.allocator = allocator
    self.invalidation = invalidation
    self.root = frame
    self.kind = kind
    self.hardwareManagesAccessedDirty = hardwareManagesAccessedDirty
    self.supportsGigabytePages = supportsGigabytePages
    self.locking = locking
    self.state = PmapState.make(Ops.self, kind: kind, hardwareAD: hardwareManagesAccessedDirty)
    state.pointee.pageTablePageCount = 1 + pinned
    if kernel != nil {
      state.pointee.sharedSlotStart = self.kernelHalfSlots.lowerBound
      state.pointee.sharedSlotCount = self.kernelHalfSlots.count
    }
    self.lockLine = LockLines(count: 2)
    self.lockWord = lockLine.base + (locking == .callerSerialized ? Int(Self.elidedLockOffset) : 0)
    self.pages = pages
    if let pages {
      precondition(pages.memory.directMapBase == memory.directMapBase, "Pmap: PageDatabase over another direct map")
      precondition(pages.end <= memory.physicalAddressLimit, "Pmap: managed pages beyond the physical-address limit")
      state.pointee.managedBase = pages.base.rawValue
      state.pointee.managedEnd = pages.end
      state.pointee.managedPages = pages.pages
      state.pointee.pvPool = pages.state
      state.pointee.pvSlot = pages.register(
        Ops.makePVOwner(for: self), lock: lock,
        format: PVFormat(Ops.self, hardwareAD: hardwareManagesAccessedDirty), invalidation: invalidation)
    }
  }

  deinit {
    if !state.pointee.isDestroyed { destroy() }
    PmapState.free(state)
    lockLine.deallocate()
  }

  /// Removes every mapping, frees every page-table page including the root, and reports the
  /// invalidations owed (`pmap_destroy` once the last reference goes). The pmap is unusable
  /// afterwards; `deinit` calls this if the owner did not.
  ///
  /// A pmap sharing a kernel half only unlinks the shared entries from its own root: the kernel
  /// pmap's tables and mappings stay. A kernel pmap frees its preallocated kernel-half tables.
  ///
  /// - Complexity: proportional to the populated part of the tree.
  /// - Precondition: not already destroyed; for a kernel pmap owning a kernel half, no live pmap
  ///   shares it.
  public func destroy() {
    lock.lock()
    checkAlive()
    let s = state
    if kernelHalfOwner != nil {
      // Not ours: unlink the copies (no invalidation owed for the kernel's global translations).
      for slot in kernelHalfSlots { memory.entry(in: root, at: slot).exchange(0) }
      memory.adjustWireCount(of: root, by: -kernelHalfSlots.count)
      s.pointee.sharedSlotCount = 0
    } else if !kernelHalfSlots.isEmpty {
      precondition(s.pointee.sharerCount == 0, "Pmap: destroy() of a kernel pmap whose kernel half is still shared")
    }
    // Whole halves never split a large mapping, so neither call can fail.
    _ = try? removeRange(.lowerHalf)
    _ = try? removeRange(.upperHalf)
    if kernelHalfOwner == nil {
      for slot in kernelHalfSlots {
        let table = Ops.tableFrame(memory.entry(in: root, at: slot).exchange(0))
        memory.adjustWireCount(of: root, by: -1)
        retireTable(table, linear: UInt64(slot) << 39)
      }
    }
    flushInvalidations()
    state.pointee.isDestroyed = true
    // No page-table hint: every single-page operation misses it, and the lookup refuses a
    // destroyed pmap (`pageTable(for:)`), so enter's quick path goes to the body, which traps.
    dropPageTableHint()
    memory.setWireCount(of: root, to: 0)
    bumpTableGeneration()
    releaseTableFrame(root)
    lock.unlock()
    pages?.unregister(slot: pvSlot)
    if let kernel = kernelHalfOwner { kernel.withLock { kernel.state.pointee.sharerCount -= 1 } }
  }

  /// Whether ``destroy()`` has run.
  public var isDestroyed: Bool { withLock { state.pointee.isDestroyed } }

  /// Runs `body` with the pmap's lock held.
  @inlinable @inline(__always)
  func withLock<R>(_ body: () -> R) -> R {
    lock.lock()
    defer { lock.unlock() }
    return body()
  }

  @inlinable @inline(__always)
  func checkAlive() {
    precondition(!state.pointee.isDestroyed, "Pmap: used after destroy()")
  }

  /// The pmap's counters (`pmap_resident_count`, `pmap_wired_count`).
  @inlinable
  public var statistics: PmapStatistics {
    withLock {
      PmapStatistics(
        residentPages: residentPageCount, wiredPages: state.pointee.wiredCount,
        pageTablePages: state.pointee.pageTablePageCount)
    }
  }
}

/// Why a pmap could not be created.
public enum PmapCreationError: Error, Equatable, Sendable {
  /// The frame allocator had no frame for the root page.
  case outOfPageTableMemory
}

/// A pmap's counters. Pages are counted in 4 KiB units: a 2 MiB mapping counts 512.
@frozen
public struct PmapStatistics: Hashable, Sendable {
  /// 4 KiB pages mapped (`pm_stats.resident_count`).
  public var residentPages: Int
  /// 4 KiB pages mapped wired (`pm_stats.wired_count`).
  public var wiredPages: Int
  /// Page-table pages in use, the root included; for a pmap sharing a kernel half, the shared
  /// tables are the kernel pmap's and not counted here.
  public var pageTablePages: Int

  /// Creates a set of counters.
  @inlinable
  public init(residentPages: Int, wiredPages: Int, pageTablePages: Int) {
    self.residentPages = residentPages
    self.wiredPages = wiredPages
    self.pageTablePages = pageTablePages
  }
}

/// Mutable state of a pmap, kept out of line so that the hot paths update it through a pointer,
/// without the dynamic exclusivity checks that stored properties of a class would cost.
@usableFromInline
struct PmapState {
  /// The resident pages that the hinted page table's wire count does not count: the pmap's
  /// resident page count is this plus that wire count (``Pmap/residentPageCount``). See
  /// ``Pmap/setPageTableHint(region:table:)``.
  @usableFromInline var residentCount = 0
  @usableFromInline var wiredCount = 0
  @usableFromInline var pageTablePageCount = 1
  @usableFromInline var isDestroyed = false
  /// Addresses whose invalidation is owed, up to `InvalidationBatch.capacity`.
  @usableFromInline var pendingCount = 0
  /// More were owed than fit: invalidate the whole address space.
  @usableFromInline var pendingAll = false
  /// Invalidations are owed or tables wait for release: the one flag an operation checks last.
  @usableFromInline var hasPendingWork = false
  @usableFromInline var pendingPages: UnsafeMutablePointer<VirtualAddress>
  /// Page-table pages unlinked but not yet released (they may be in paging-structure caches).
  @usableFromInline var retiredCount = 0
  @usableFromInline var retiredTables: UnsafeMutablePointer<PhysicalAddress>
  /// The managed physical range (empty without a PageDatabase), for a check without a call.
  @usableFromInline var managedBase: UInt64 = 0
  @usableFromInline var managedEnd: UInt64 = 0
  @usableFromInline var pvSlot = -1
  /// The PageDatabase's page metadata and pool state (nil without one), kept here so that
  /// `enter` reaches a page and the pool without loading them from the database object.
  @usableFromInline var managedPages: UnsafeMutablePointer<ManagedPage>? = nil
  @usableFromInline var pvPool: UnsafeMutablePointer<PVState>? = nil
  /// The PML4 slots shared from a kernel pmap (`sharedSlotStart ..< + sharedSlotCount`), which
  /// operations refuse; count 0 when the pmap shares nothing.
  @usableFromInline var sharedSlotStart = 0
  @usableFromInline var sharedSlotCount = 0
  /// For a kernel pmap owning a kernel half: the live pmaps sharing it (under its lock).
  @usableFromInline var sharerCount = 0
  /// The 2 MiB region (`linear >> 21`) whose page table ``pageTableHint`` is, or `UInt64.max`:
  /// see ``Pmap/pageTable(for:)``.
  @usableFromInline var pageTableHintRegion: UInt64 = .max
  /// A page table linked in this pmap: the last one ``Pmap/pageTable(for:)`` found.
  @usableFromInline var pageTableHint: UInt64 = 0

  /// Where the leaf templates start: right after the state, in the same allocation, so that
  /// `enter` finds them at a constant offset from ``Pmap/state`` rather than through a pointer.
  @inlinable static var templatesOffset: Int {
    (MemoryLayout<PmapState>.stride + 63) & ~63
  }

  /// The templates of the state at `p`: `Ops.leafEntry` of a 4 KiB leaf for every protection
  /// (0-7) x cache mode (6), computed at creation (with A and D for a pmap without hardware
  /// A/D): `enter` ORs a template with the frame and the seeded A/D bits
  /// (``Pmap/seededAccessBits(_:)``) instead of re-encoding every call.
  @inlinable @inline(__always)
  static func leafTemplates(of p: UnsafeMutablePointer<PmapState>) -> UnsafeMutablePointer<UInt64> {
    (UnsafeMutableRawPointer(p) + templatesOffset).assumingMemoryBound(to: UInt64.self)
  }

  /// Templates after the state: 8 protections x 6 cache modes.
  static var templateCount: Int { 8 * 6 }

  static func make<Ops: PTEOps>(_: Ops.Type, kind: AddressSpaceKind, hardwareAD: Bool) -> UnsafeMutablePointer<
    PmapState
  > {
    let storage = UnsafeMutableRawPointer.allocate(
      byteCount: templatesOffset + templateCount * MemoryLayout<UInt64>.stride, alignment: 64)
    let p = storage.bindMemory(to: PmapState.self, capacity: 1)
    p.initialize(
      to: PmapState(
        pendingPages: .allocate(capacity: InvalidationBatch.capacity),
        retiredTables: .allocate(capacity: InvalidationBatch.retiredCapacity)))
    let templates = (storage + templatesOffset).bindMemory(to: UInt64.self, capacity: templateCount)
    let always: UInt64 = hardwareAD ? 0 : Ops.accessedBit | Ops.dirtyBit
    for raw in 0..<8 {
      let protection = Protection(rawValue: UInt8(raw))
      for mode in CacheMode.allCases {
        let template =
          protection.isEmpty || !protection.isEncodable
          ? 0
          : Ops.leafEntry(
            for: PhysicalAddress(truncating: 0), protection: protection.union(.read), cacheMode: mode,
            at: .pageTable, kind: kind)
        templates[raw * 6 + Int(mode.rawValue)] = template | always
      }
    }
    return p
  }

  static func free(_ p: UnsafeMutablePointer<PmapState>) {
    p.pointee.pendingPages.deallocate()
    p.pointee.retiredTables.deallocate()
    p.deinitialize(count: 1)
    UnsafeMutableRawPointer(p).deallocate()
  }
}

/// Sizes of a pmap's invalidation batch (NetBSD batches up to 16 addresses per shootdown).
public enum InvalidationBatch {
  /// Addresses collected before the batch turns into a full invalidation.
  @inlinable public static var capacity: Int { 16 }
  /// Unlinked page-table pages held before the batch is flushed so they can be released.
  @inlinable public static var retiredCapacity: Int { 32 }
}
