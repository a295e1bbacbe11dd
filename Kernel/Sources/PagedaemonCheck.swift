import KernelSupport
import Pmap
import PmapNative
import UVMLite

/// A window of a second address space whose pages belong to UVMLite: a fault there is resolved
/// by `UVM.hostFault` (find the page: resident, in swap, or never touched; take a frame from the
/// pool, running the pagedaemon first when frames are short; enter it into the pmap).
final class PagedWindow {
  let uvm: UVM
  let memory: GuestMemory
  let base: VirtualAddress
  let pmap: NativePmap
  /// Faults resolved and refused here.
  private(set) var faults = 0
  private(set) var refusals = 0

  init(uvm: UVM, memory: GuestMemory, base: VirtualAddress, pmap: NativePmap) {
    self.uvm = uvm
    self.memory = memory
    self.base = base
    self.pmap = pmap
  }

  /// Whether the fault at `address` is this window's (CR3 holds its pmap and the address is
  /// inside it).
  func owns(_ address: UInt64) -> Bool {
    ks_read_cr3() & 0x000f_ffff_ffff_f000 == pmap.root.rawValue && address >= base.rawValue
      && address - base.rawValue < memory.byteCount
  }

  /// Resolves the fault through UVMLite; returns whether it was.
  func handleFault(at address: UInt64, errorCode: UInt64) -> Bool {
    let access: Protection = errorCode & 2 != 0 ? .readWrite : .read
    do throws(FaultError) {
      if case .resolved = try uvm.hostFault(memory, at: GuestPhysicalAddress(address - base.rawValue), access: access) {
        faults += 1
        return true
      }
    } catch {}
    refusals += 1
    return false
  }
}

/// The window the trap handler consults, while the check runs.
nonisolated(unsafe) var activePagedWindow: PagedWindow? = nil

extension Layout {
  /// Where the pagedaemon check's address space maps its paged memory.
  static var pagedWindow: UInt64 { 0x0000_5000_0000_0000 }
}

/// 8. Under a frame budget: a second address space (its own NativePmap with the kernel's
/// mappings) maps 3x more pageable memory than the UVMLite frame pool holds. Writing every page
/// faults them in through `UVM.hostFault`; the pool runs short and the pagedaemon (clock over the
/// active / inactive queues, referenced counts from the page database) evicts pages to an
/// in-memory swap, removing their mappings (INVLPG through the kernel's sink). Reading every page
/// back faults the evicted ones in from swap: every page must hold what was written.
func checkPagedaemon(_ kernel: Kernel, report: inout Report) {
  let name = "pagedaemon"
  let kernelFramesAtStart = kernel.frames.framesInUse
  let poolFrames = kernel.pagedFrames.count
  let pageCount = 3 * poolFrames
  let pages = PageDatabase(
    memory: kernel.memory, base: kernel.pagedFrames.base, pageCount: poolFrames, allocator: kernel.frames,
    pmapCapacity: 4)
  let pool = FramePool(pages: pages)
  let swap = MemorySwapStore(slotCount: pageCount)
  let uvm = UVM(pool: pool, swap: swap, pageTableAllocator: kernel.frames)
  // The memory object's own EPT pmap is never loaded (no VMX here): its sink is one more
  // TLBInvalidationSink, which finds its root never in CR3 and does nothing (INVEPT would go here).
  let eptSink = TLBInvalidationSink()
  let process: NativePmap
  let memory: GuestMemory
  do throws(PmapCreationError) {
    process = try NativePmap(
      memory: kernel.memory, allocator: kernel.frames, invalidation: kernel.sink, pages: pages, kind: .kernel)
  } catch {
    report.record(name, false, "no frame for the second address space")
    return
  }
  do throws(GuestCreationError) {
    memory = try uvm.makeGuest(byteCount: UInt64(pageCount) << 12, invalidation: eptSink, protection: .readWrite)
  } catch {
    report.record(name, false, "makeGuest failed")
    return
  }
  let window = PagedWindow(uvm: uvm, memory: memory, base: VirtualAddress(Layout.pagedWindow), pmap: process)
  do throws(EnterError) {
    try mapKernel(into: process, directMapSize: kernel.directMapSize)
  } catch {
    report.record(name, false, "kernel mappings refused")
    return
  }
  do throws(HostMappingError) {
    try uvm.mapIntoHost(memory, pmap: process, at: window.base)
  } catch {
    report.record(name, false, "mapIntoHost failed")
    return
  }

  activePagedWindow = window
  ks_write_cr3(process.cr3)
  var leastFree = pool.freeCount
  for i in 0..<pageCount {
    ks_store64(window.base.rawValue + UInt64(i) << 12 + UInt64(i % 512) * 8, TestPages.pattern(1000 + i))
    leastFree = min(leastFree, pool.freeCount)
  }
  let afterWrites = uvm.statistics
  let faultsWriting = window.faults
  var wrong = 0
  for i in 0..<pageCount
  where ks_load64(window.base.rawValue + UInt64(i) << 12 + UInt64(i % 512) * 8)
    != TestPages.pattern(1000 + i)
  {
    wrong += 1
  }
  let statistics = uvm.statistics
  let resident = memory.residentPages
  let invariants = uvm.checkInvariants() == nil && process.checkInvariants() == nil
  ks_write_cr3(kernel.pmap.cr3)
  activePagedWindow = nil

  // Every page-table page of both pmaps goes back to the kernel's allocator; what stays is the
  // pv-node pool of the check's PageDatabase (released when the database goes).
  uvm.destroyGuest(memory)
  process.destroy()
  let released = kernel.frames.framesInUse == kernelFramesAtStart + pages.statistics.poolFrames
  let swapEmpty = uvm.swap.slotsInUse == 0

  let passed =
    wrong == 0 && faultsWriting == pageCount && afterWrites.pageouts > 0 && statistics.swapInFaults > 0
    && statistics.pagedaemonRuns > 0 && resident <= poolFrames && window.refusals == 0 && invariants && released
    && swapEmpty
  report.record(
    name, passed,
    "\(pageCount) pages over a pool of \(poolFrames) frames (fewest free \(leastFree)): \(faultsWriting) faults writing, \(window.faults - faultsWriting) reading back; \(statistics.pagedaemonRuns) pagedaemon runs, \(statistics.pageouts) pageouts to swap, \(statistics.evictions) evictions, \(statistics.swapInFaults) swap-ins; \(wrong) pages with wrong contents, \(resident) resident at the end; invariants hold \(invariants); after destroy, kernel frames back \(released), swap slots free \(swapEmpty)"
  )
}
