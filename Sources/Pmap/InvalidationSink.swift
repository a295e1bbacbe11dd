/// Where a pmap reports translations that the hardware may have cached and that it has changed
/// or removed: the hardware seam, part three (NetBSD's `pmap_tlb_shootdown` /
/// `pmap_tlb_shootnow`).
///
/// A kernel implements it with `INVLPG` on the local CPU and IPIs to the other CPUs that have the
/// address space loaded; a hypervisor bumps the guest's TLB generation and executes `INVEPT`
/// (single-context with the EPT pointer) before the guest runs again, as NVMM does.
///
/// The pmap batches: within one operation it collects up to ``InvalidationBatch/capacity``
/// addresses and reports them in one call, or reports ``invalidateAll(root:)`` when there were
/// more. It always reports before it releases a page-table page it has unlinked, so no CPU can
/// walk a freed page through a stale paging-structure-cache entry. A call must not return before
/// the invalidation is complete on every CPU.
public protocol InvalidationSink: AnyObject {
  /// Invalidate the TLB entries for these 4 KiB-aligned addresses (for a large page, its first
  /// address), and the paging-structure caches, in the address space whose root table is `root`.
  func invalidate(pages: UnsafeBufferPointer<VirtualAddress>, root: PhysicalAddress)
  /// Invalidate every translation of the address space whose root table is `root`.
  func invalidateAll(root: PhysicalAddress)
  /// Invalidate translations of several address spaces at once (see the default in the
  /// extension). `requests` is valid only during the call.
  func invalidate(_ requests: InvalidationRequests)
}

/// One translation to invalidate: an address in the address space whose root table is `root`.
@frozen
public struct InvalidationRequest: Hashable, Sendable {
  /// The root table of the address space (CR3 / EPT PML4).
  public var root: PhysicalAddress
  /// The 4 KiB-aligned address.
  public var page: VirtualAddress

  /// Creates the request to invalidate `page` in the address space rooted at `root`.
  @inlinable
  public init(root: PhysicalAddress, page: VirtualAddress) {
    self.root = root
    self.page = page
  }
}

extension InvalidationSink {
  /// Invalidate translations of several address spaces at once: what a page operation owes
  /// after changing the mappings of one physical page in every pmap that maps it. A kernel
  /// implements it to send one shootdown round instead of one per address space; a hypervisor's
  /// EPT sink, which invalidates whole EPT contexts, needs only the roots. The default reports
  /// each request through ``invalidate(pages:root:)``.
  public func invalidate(_ requests: InvalidationRequests) {
    for r in requests {
      withUnsafePointer(to: r.page) { invalidate(pages: UnsafeBufferPointer(start: $0, count: 1), root: r.root) }
    }
  }
}
