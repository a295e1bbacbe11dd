import Pmap
import PmapEPT
import PmapHost
import PmapNative

/// One simulated logical processor: paging control state, a translation context (host CR3, or
/// a VMX guest on an EPT), a TLB, and loads, stores and fetches that move real bytes in the
/// simulated RAM through the translation.
///
/// TLB rules modelled (SDM Vol. 3A §4.10, Vol. 3C §29.4):
/// - only successful walks are cached, after A (and for a write D) were set in memory;
/// - a write through a cached entry whose leaf was clean re-walks (the processor must set D);
/// - a cached entry whose rights do not allow the access is dropped and the access re-walks
///   (the spurious fault the SDM allows for "optional invalidations", plus the retry every
///   kernel's fault handler does);
/// - `INVLPG` drops the address's entries, global ones too; loading CR3 drops non-global
///   entries; global entries survive it; ``flushTLB()`` drops everything;
/// - `INVEPT` single-context drops every entry derived from that EPT, all-context every
///   guest entry; a guest CR3 load drops the guest's non-global entries.
/// Not modelled: paging-structure caches (every miss walks from the root, always allowed), PCID
/// and VPID tags (host and guest entries are kept apart by their context instead).
///
/// Thread safety: every method may be called from any thread. An access holds the CPU's lock
/// from translation to the last byte moved, so an invalidation (a shootdown from a pmap on
/// another thread) completes only between accesses, as an IPI handler runs between
/// instructions. A/D bits are written with compare-and-swap on the entries in place, so pmap
/// operations on other threads never lose them.
public final class SimulatedCPU: InvalidationSink, Sendable {
  /// The CPU number (in reports).
  public let id: Int
  /// The simulated RAM.
  public let memory: PhysicalMemory
  /// Whether translations are cached at all (`false`: every access walks).
  public let cachesTranslations: Bool
  /// Whether every TLB hit is compared with the tables in memory (see ``StaleTranslation``).
  public let checksStaleTranslations: Bool
  let state: HostMutex<CPUState>

  struct CPUState: ~Copyable {
    var control: PagingControl
    var eptCapabilities: EPTCapabilities
    var context: TranslationContext?
    var eptPointer: EPTPointer?
    var tlb = TLB()
    var stale: [StaleTranslation] = []
  }

  /// Creates a CPU with an empty TLB and no address space loaded.
  public init(
    id: Int = 0, memory: PhysicalMemory, control: PagingControl = PagingControl(),
    eptCapabilities: EPTCapabilities = EPTCapabilities(), cachesTranslations: Bool = true,
    checksStaleTranslations: Bool = true
  ) {
    self.id = id
    self.memory = memory
    self.cachesTranslations = cachesTranslations
    self.checksStaleTranslations = checksStaleTranslations
    state = HostMutex(CPUState(control: control, eptCapabilities: eptCapabilities))
  }

  // MARK: State

  /// CR0/CR4/EFER/EFLAGS (of the guest, in a guest context). Changing it does not flush.
  public var control: PagingControl {
    get { state.withLock { $0.control } }
    set { state.withLock { $0.control = newValue } }
  }

  /// The current translation context, `nil` before the first CR3 load or guest entry.
  public var context: TranslationContext? { state.withLock { $0.context } }

  /// The TLB's counters.
  public var statistics: TLBStatistics { state.withLock { $0.tlb.statistics } }

  /// The number of translations cached now.
  public var cachedTranslationCount: Int { state.withLock { $0.tlb.entries.count } }

  /// The stale-translation reports collected so far.
  public var staleTranslations: [StaleTranslation] { state.withLock { $0.stale } }

  /// Returns the reports collected so far and forgets them.
  public func takeStaleTranslations() -> [StaleTranslation] {
    state.withLock {
      let r = $0.stale
      $0.stale = []
      return r
    }
  }

  // MARK: Context switches and TLB maintenance

  /// MOV to CR3 in host mode: switches to the native address space rooted at `root` and drops
  /// every non-global host translation (SDM §4.10.4.1), even when `root` is already loaded.
  public func loadCR3(_ root: PhysicalAddress) {
    state.withLock {
      $0.context = .native(root: root)
      $0.eptPointer = nil
      $0.tlb.remove { key, _ in if case .native = key.space { true } else { false } }
    }
  }

  /// ``loadCR3(_:)`` with `pmap`'s root.
  public func loadCR3(of pmap: NativePmap) { loadCR3(pmap.root) }

  /// Runs as a VMX guest on the EPT `eptPointer` names, with guest CR3 = `guestRoot` (a
  /// guest-physical address) or guest paging off (`nil`). Loading a guest CR3 drops the guest's
  /// non-global combined translations of that EPT, as a guest MOV to CR3 does; guest-physical
  /// translations (guest paging off) stay.
  public func enterGuest(eptPointer: EPTPointer, guestRoot: PhysicalAddress?) {
    precondition(eptPointer.walkLength == 4, "SimulatedCPU: only four-level EPT is modelled")
    state.withLock {
      let ept = eptPointer.root
      $0.context = .guest(ept: ept, guestRoot: guestRoot)
      $0.eptPointer = eptPointer
      if guestRoot != nil {
        $0.tlb.remove { key, _ in
          if case .guest(let e, let g) = key.space { e == ept.rawValue && g != nil } else { false }
        }
      }
    }
  }

  /// ``enterGuest(eptPointer:guestRoot:)`` on `pmap`'s EPT.
  public func enterGuest(_ pmap: EPTPmap, guestRoot: PhysicalAddress?) {
    enterGuest(eptPointer: pmap.eptPointer, guestRoot: guestRoot)
  }

  /// INVLPG `linear` in the current context: drops the translations covering it, global ones
  /// included (SDM §4.10.4.1). In a guest context it drops combined translations only.
  public func invalidatePage(_ linear: UInt64) {
    state.withLock {
      guard let context = $0.context else { return }
      let (local, global) = TLB.spaces(for: context)
      $0.tlb.remove { key, e in (key.space == local || key.space == global) && TLB.covers(e, linear) }
    }
  }

  /// INVEPT (SDM Vol. 3C §29.4.3.1; the instruction's operation in Vol. 3C §31.3).
  public func invalidateEPT(_ type: INVEPTType) {
    state.withLock {
      switch type {
      case .allContext:
        $0.tlb.remove { _, e in if case .guest = e.context { true } else { false } }
      case .singleContext(let ept):
        $0.tlb.remove { _, e in TLB.isEPT(e, ept.rawValue) }
      }
    }
  }

  /// Drops every cached translation, global ones included (as toggling CR4.PGE does).
  public func flushTLB() {
    state.withLock { $0.tlb.remove { _, _ in true } }
  }

  // MARK: InvalidationSink (a shootdown reaching this CPU)

  /// A shootdown for `pages` of the address space rooted at `root` (a pmap's report): drops the
  /// native translations of those pages filled from `root` (global ones too), the combined
  /// translations of a guest whose CR3 is `root`, and, when `root` is an EPT, everything derived
  /// from that EPT (INVEPT single-context: INVEPT has no per-page form).
  public func invalidate(pages: UnsafeBufferPointer<VirtualAddress>, root: PhysicalAddress) {
    let linears = pages.map(\.rawValue)
    state.withLock {
      $0.tlb.remove { _, e in
        switch e.context {
        case .native(let r): r == root && linears.contains { TLB.covers(e, $0) }
        case .guest(let ept, let g): ept == root || (g == root && linears.contains { TLB.covers(e, $0) })
        }
      }
    }
  }

  /// A shootdown of the whole address space rooted at `root` (global entries of it included).
  public func invalidateAll(root: PhysicalAddress) {
    state.withLock {
      $0.tlb.remove { _, e in
        switch e.context {
        case .native(let r): r == root
        case .guest(let ept, let g): ept == root || g == root
        }
      }
    }
  }
}
