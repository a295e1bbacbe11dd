import KernelSupport
import Pmap

/// The kernel's ``InvalidationSink``: what the pmap reports after it changed or removed a
/// translation the TLB may hold (NetBSD's `pmap_tlb_shootdown` + `pmap_tlb_shootnow`).
///
/// Single CPU: an address space that is not loaded in CR3 has nothing in the TLB (PCID is off,
/// and CR4.PGE is off so the global bit the library sets in kernel leaves is ignored: a CR3 load
/// flushes everything), so only reports for the current root do work:
/// * a batch of pages: one `INVLPG` each (it also drops the paging-structure-cache entries for
///   the address, which the pmap relies on before it frees a page-table page);
/// * everything: reload CR3.
///
/// On a multiprocessor kernel this is where the IPIs go: after the local INVLPGs, send a
/// shootdown IPI (the addresses, or "all", and the root) to every other CPU whose CR3 holds
/// `root` (the pmap's CPU set, NetBSD's `pm_cpus`/`pm_kernel_cpus`; every CPU for kernel
/// mappings, or for global ones with PGE on), and spin until each has acknowledged; the
/// protocol requires a call not to return before the invalidation is complete everywhere.
/// `invalidate(_:)` receives what a page operation owes to several address spaces at once so
/// that one round of IPIs covers them all.
///
/// Reports for the kernel pmap (``kernelRoot``) are always carried out: its shared kernel half
/// is cached through every root.
///
/// For the tests it counts what it did and can be told to skip reports (``skipReports``): the
/// check that shows a stale translation survives when the sink does nothing.
final class TLBInvalidationSink: InvalidationSink {
  /// INVLPGs executed, CR3 reloads, and reports received.
  private(set) var pagesInvalidated = 0
  private(set) var fullFlushes = 0
  private(set) var reports = 0
  /// The last address invalidated with INVLPG.
  private(set) var lastPage: VirtualAddress?
  /// While positive, each report is dropped (and this is decremented): a deliberately broken
  /// sink, to show that the invalidation matters.
  var skipReports = 0
  private(set) var skippedReports = 0

  func invalidate(pages: UnsafeBufferPointer<VirtualAddress>, root: PhysicalAddress) {
    reports += 1
    if skip() { return }
    guard isLoaded(root) else { return }  // + IPIs to the CPUs that have `root` loaded
    for page in pages {
      ks_invlpg(page.rawValue)
      pagesInvalidated += 1
      lastPage = page
    }
  }

  func invalidateAll(root: PhysicalAddress) {
    reports += 1
    if skip() { return }
    guard isLoaded(root) else { return }  // + IPIs to the CPUs that have `root` loaded
    ks_write_cr3(ks_read_cr3())
    fullFlushes += 1
  }

  func invalidate(_ requests: InvalidationRequests) {
    // One round for everything a page operation owes: local INVLPGs now; on a multiprocessor,
    // one IPI per remote CPU carrying every (root, page) it has loaded, then wait for all.
    // (`requests` decodes each request from the page's reverse map as it is iterated: valid
    // only during this call.)
    reports += 1
    if skip() { return }
    for request in requests where isLoaded(request.root) {
      ks_invlpg(request.page.rawValue)
      pagesInvalidated += 1
      lastPage = request.page
    }
  }

  /// The kernel pmap's root. Its kernel half (the direct map) is shared by every address space,
  /// so its reports are carried out whatever root is loaded: the kernel pmap may be loaded on
  /// no CPU while its shared translations are cached through another root.
  var kernelRoot: PhysicalAddress?

  private func isLoaded(_ root: PhysicalAddress) -> Bool {
    root == kernelRoot || ks_read_cr3() & 0x000f_ffff_ffff_f000 == root.rawValue
  }

  private func skip() -> Bool {
    guard skipReports > 0 else { return false }
    skipReports -= 1
    skippedReports += 1
    return true
  }
}
