import KernelSupport
import Pmap
import PmapNative

/// The kernel's page-fault resolution (a miniature `uvm_fault`): virtual regions with a policy,
/// and a handler that resolves a fault through the library or refuses it.
///
/// | region | not present | write to a present read-only page |
/// |---|---|---|
/// | anonymous (read/write) | zero-filled frame, entered read/write | the page was write-protected by the kernel (e.g. `protectPage` for clean tracking): re-enter it writable |
/// | read-only | zero-filled frame, entered read-only (a write refused) | refused |
/// | copy-on-write | zero-filled frame, read/write | copy the frame into a new one and enter it writable in place of the shared one |
///
/// A refused fault is fatal unless it happened at one of the probe instructions
/// (`probe_read64` / `probe_write64`, Kernel/Boot/traps.S), which then return 0, as `copyin`
/// returns `EFAULT`.
///
/// Runs in the #PF handler at ring 0 with interrupts off. A multiprocessor kernel would take the
/// region's (object's) lock, then the pmap lock inside `enter`, in the library's lock order.
final class DemandPager {
  enum Policy {
    case anonymous
    case readOnly
    case copyOnWrite
  }

  struct Region {
    var range: VirtualRange
    var policy: Policy
  }

  let pmap: NativePmap
  let frames: KernelFrameAllocator
  private(set) var regions: [Region] = []

  /// Page faults seen, and how each ended.
  private(set) var faults = 0
  private(set) var zeroFills = 0
  private(set) var copies = 0
  private(set) var upgrades = 0
  private(set) var refusals = 0
  /// The last fault's address (CR2) and error code.
  private(set) var lastAddress: UInt64 = 0
  private(set) var lastErrorCode: UInt64 = 0

  init(pmap: NativePmap, frames: KernelFrameAllocator) {
    self.pmap = pmap
    self.frames = frames
  }

  /// Declares `pages` pages from `start` as a region with `policy`.
  func addRegion(at start: VirtualAddress, pages: Int, policy: Policy) throws(RangeError) {
    regions.append(Region(range: try VirtualRange(start: start, byteCount: UInt64(pages) << 12), policy: policy))
  }

  /// Handles a page fault at `address` with the CPU's error code (bit 0: the page was present,
  /// bit 1: write, bit 3: reserved bit set, bit 4: instruction fetch). Returns whether it was
  /// resolved: then the faulting instruction is restarted.
  func handleFault(at address: UInt64, errorCode: UInt64) -> Bool {
    faults += 1
    lastAddress = address
    lastErrorCode = errorCode
    let present = errorCode & 1 != 0
    let write = errorCode & 2 != 0
    guard errorCode & 0x18 == 0,  // a reserved-bit fault is a page-table bug; no code runs from regions
      let va = VirtualAddress(exactly: address)?.alignedDown(),
      let region = regions.first(where: { $0.range.contains(va) })
    else { return refuse() }

    if !present {
      if write && region.policy == .readOnly { return refuse() }
      guard let frame = frames.allocateFrame() else { return refuse() }
      pmap.memory.zeroFrame(frame)
      let protection: Protection = region.policy == .readOnly ? .read : .readWrite
      do throws(EnterError) {
        // The faulting access seeds A (and D for a write), as NetBSD's pmap_enter does.
        try pmap.enter(va, frame, protection: protection, access: write ? .readWrite : .read, options: .canFail)
      } catch {
        frames.releaseFrame(frame)
        return refuse()
      }
      zeroFills += 1
      return true
    }

    guard write, let current = pmap.translation(of: va), !current.protection.contains(.write) else { return refuse() }
    switch region.policy {
    case .readOnly:
      return refuse()
    case .anonymous:
      // Write-protected by the kernel: give the write right back (the re-enter of the same frame
      // keeps the A/D bits the MMU recorded). A write fault on a present entry already dropped
      // the faulting translation from the TLB, so no invalidation is owed for raising rights.
      do throws(EnterError) {
        try pmap.enter(va, current.frame, protection: .readWrite, access: .readWrite, options: .canFail)
      } catch { return refuse() }
      upgrades += 1
      return true
    case .copyOnWrite:
      guard let copy = frames.allocateFrame() else { return refuse() }
      pmap.memory.pointer(to: copy).copyMemory(from: pmap.memory.pointer(to: current.frame), byteCount: 4096)
      do throws(EnterError) {
        // Replacing the shared frame: the pmap takes the old mapping off the frame's pv-list,
        // merges its A/D into the page's attributes and invalidates it before returning.
        try pmap.enter(va, copy, protection: .readWrite, access: .readWrite, options: .canFail)
      } catch {
        frames.releaseFrame(copy)
        return refuse()
      }
      copies += 1
      return true
    }
  }

  private func refuse() -> Bool {
    refusals += 1
    return false
  }
}

/// The pager the trap handler consults (set once the kernel's address space is live).
nonisolated(unsafe) var activePager: DemandPager? = nil

/// Every exception of vectors 0-31 arrives here (Kernel/Boot/traps.S) with the saved registers.
/// A page fault is given to the pager; a refused one at a probe instruction resumes at the
/// probe's recovery label; anything else is fatal: registers on the console, FAIL, exit.
@_cdecl("kernel_trap")
public func kernelTrap(_ frame: UnsafeMutablePointer<TrapFrame>) {
  let vector = frame.pointee.vector
  if vector == 14 {
    let address = ks_read_cr2()
    if let window = activePagedWindow, window.owns(address),
      window.handleFault(at: address, errorCode: frame.pointee.errorCode)
    {
      return
    }
    if let pager = activePager, pager.handleFault(at: address, errorCode: frame.pointee.errorCode) { return }
    let rip = frame.pointee.rip
    if rip == ks_probe_read_access() || rip == ks_probe_write_access() {
      frame.pointee.rip = ks_probe_recover()
      return
    }
  }
  Console.write("\nunexpected exception: vector ")
  Console.write(decimal: Int(vector))
  Console.write(" error code ")
  Console.write(hex: frame.pointee.errorCode)
  Console.write(" rip ")
  Console.write(hex: frame.pointee.rip)
  Console.write(" cr2 ")
  Console.write(hex: ks_read_cr2())
  Console.write(" rsp ")
  Console.write(hex: frame.pointee.rsp)
  Console.write("\nFAIL\n")
  QEMU.exit(success: false)
}

/// QEMU's `isa-debug-exit` device at port 0xf4: writing v ends QEMU with status (v << 1) | 1.
enum QEMU {
  static func exit(success: Bool) -> Never {
    ks_outl(0xf4, success ? 0x10 : 0x11)  // status 33 or 35
    ks_halt_forever()
  }
}
