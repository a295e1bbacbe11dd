import KernelSupport
import Pmap
import PmapNative

/// Virtual-address layout of the test kernel.
enum Layout {
  /// The direct map: physical address `pa` is at `directMapBase + pa` (PML4 slot 256, as the
  /// bootstrap tables and then the kernel's own pmap map it).
  static var directMapBase: UInt64 { 0xffff_8000_0000_0000 }
  /// Where the checks map and fault their pages (PML4 slot 128: nothing else there).
  static var testBase: UInt64 { 0x0000_4000_0000_0000 }
}

/// Everything the kernel built around the library.
final class Kernel {
  let memory: PhysicalMemory
  let frames: KernelFrameAllocator
  let pages: PageDatabase
  let sink: TLBInvalidationSink
  let pmap: NativePmap
  let pager: DemandPager
  /// Frames set aside at boot for the pagedaemon check's frame pool (a `PageDatabase` of its own).
  let pagedFrames: (base: PhysicalAddress, count: Int)
  /// Bytes of physical memory the direct map covers (from 0).
  var directMapSize: UInt64 { memory.size }

  init(
    memory: PhysicalMemory, frames: KernelFrameAllocator, pages: PageDatabase, sink: TLBInvalidationSink,
    pmap: NativePmap, pagedFrames: (base: PhysicalAddress, count: Int)
  ) {
    self.pagedFrames = pagedFrames
    self.memory = memory
    self.frames = frames
    self.pages = pages
    self.sink = sink
    self.pmap = pmap
    self.pager = DemandPager(pmap: pmap, frames: frames)
  }
}

/// Called by Kernel/Boot/boot.S in long mode on the bootstrap tables, with the multiboot magic
/// and information address. Never returns: ends QEMU through isa-debug-exit.
@_cdecl("kernel_main")
public func kernelMain(_ magic: UInt64, _ information: UInt64) {
  let startCycles = ks_rdtsc()
  Serial.initialize()
  print("swift-pmap test kernel: Embedded Swift, Pmap + PmapNative + PmapEPT + UVMLite")
  Descriptors.install()
  var report = Report()

  guard magic == UInt64(Multiboot.bootloaderMagic), let ram = Multiboot.availableMemory(information: information)
  else {
    print("no multiboot memory map (magic \(hex(magic)))\nFAIL")
    QEMU.exit(success: false)
  }
  guard let kernel = bootKernel(ram: ram, report: &report) else {
    print("FAIL")
    QEMU.exit(success: false)
  }
  runChecks(kernel, report: &report)

  let cycles = ks_rdtsc() - startCycles
  print(
    "summary: \(kernel.pager.faults) page faults (\(kernel.pager.zeroFills) zero-fill, \(kernel.pager.copies) copy, \(kernel.pager.upgrades) upgrade, \(kernel.pager.refusals) refused), \(kernel.sink.pagesInvalidated) INVLPG, \(kernel.sink.fullFlushes) CR3 reloads, peak \(kernel.frames.peakFramesInUse) frames, heap peak \(KernelHeap.peakBytesInUse) bytes, \(cycles) TSC cycles"
  )
  if report.failures == 0 {
    print("PASS")
    QEMU.exit(success: true)
  }
  print("FAIL (\(report.failures) of \(report.checks) checks)")
  QEMU.exit(success: false)
}

/// Builds the library's seam over the RAM QEMU reported, a fresh address space with NativePmap
/// (the kernel image identity-mapped with W^X rights, the direct map with 2 MiB pages), and
/// switches CR3 to it.
func bootKernel(ram: [PhysicalRange], report: inout Report) -> Kernel? {
  let kernelStart = ks_kernel_start()
  let kernelEnd = ks_kernel_end()
  var top: UInt64 = 0
  var usable: [PhysicalRange] = []
  var line = "memory map (multiboot): "
  for range in ram {
    line += "[\(hex(range.start)), \(hex(range.end))) "
    top = max(top, range.end)
    // Keep the first MiB (BIOS data, the multiboot information) and the kernel image.
    let start = max(range.start, kernelEnd)
    if start < range.end && range.end > 0x10_0000 { usable.append(PhysicalRange(start: start, end: range.end)) }
  }
  print(line)
  guard !usable.isEmpty, top <= 1 << 30 else {
    print("check memory: FAIL (no usable RAM above the kernel, or more than the 1 GiB the bootstrap maps)")
    return nil
  }

  // The seam: the direct map and 2 bytes of page-table-page counters per frame.
  var a: UInt32 = 0
  var b: UInt32 = 0
  var c: UInt32 = 0
  var d: UInt32 = 0
  ks_cpuid(0x8000_0008, &a, &b, &c, &d)
  let physicalAddressBits = Int(a & 0xff)
  let memory = PhysicalMemory(
    directMapBase: UnsafeMutableRawPointer(bitPattern: UInt(Layout.directMapBase)).unsafelyUnwrapped, size: top,
    physicalAddressBits: physicalAddressBits,
    wireCountStorage: UnsafeMutablePointer<UInt16>.allocate(capacity: Int(top >> 12)))
  // The pagedaemon check's frame pool: the first frames above the kernel, out of the allocator's
  // and the kernel PageDatabase's ranges (UVMLite's FramePool owns every frame of its database).
  let pagedFrames = (base: PhysicalAddress(usable[0].start), count: 64)
  guard usable[0].byteCount > UInt64(pagedFrames.count) << 12 else {
    print("check memory: FAIL (first RAM range too small)")
    return nil
  }
  usable[0].start += UInt64(pagedFrames.count) << 12
  let frames = KernelFrameAllocator(memory: memory, ranges: usable)
  let managedBase = usable[0].start
  let pages = PageDatabase(
    memory: memory, base: PhysicalAddress(managedBase), pageCount: Int((top - managedBase) >> 12), allocator: frames,
    pmapCapacity: 8)
  let sink = TLBInvalidationSink()
  report.record(
    "memory", frames.frameCount > 0,
    "\(frames.frameCount) frames (\((frames.frameCount * 4) >> 10) MiB) for the allocator, \(pages.pageCount) managed pages from \(hex(managedBase)), MAXPHYADDR \(physicalAddressBits)"
  )

  let pmap: NativePmap
  do throws(PmapCreationError) {
    pmap = try NativePmap(memory: memory, allocator: frames, invalidation: sink, pages: pages, kind: .kernel)
  } catch {
    print("check address space: FAIL (no frame for the root table)")
    return nil
  }
  do throws(EnterError) {
    try mapKernel(into: pmap, directMapSize: top)
  } catch {
    print("check address space: FAIL (enter refused a kernel mapping)")
    return nil
  }
  let kernel = Kernel(memory: memory, frames: frames, pages: pages, sink: sink, pmap: pmap, pagedFrames: pagedFrames)
  activePager = kernel.pager

  let bootstrapRoot = ks_read_cr3()
  ks_write_cr3(pmap.cr3)
  // Still running: this is code on the new tables, its stack and heap reached through them.
  let statistics = pmap.statistics
  var nullValue: UInt64 = 0
  let nullPageUnmapped = probe_read64(0, &nullValue) == 0  // the bootstrap identity map had it
  let rodataReadOnly = probe_write64(ks_text_end(), 0) == 0  // CR0.WP: read-only for ring 0 too
  let directMapAgrees = memory.pointer(to: PhysicalAddress(kernelStart)).load(as: UInt32.self) == 0x1bad_b002
  report.record(
    "address space",
    ks_read_cr3() == pmap.cr3 && pmap.checkInvariants() == nil && nullPageUnmapped && rodataReadOnly
      && directMapAgrees,
    "CR3 \(hex(bootstrapRoot)) -> \(hex(pmap.cr3)) (NativePmap), \(statistics.residentPages) pages resident in \(statistics.pageTablePages) page-table pages; null page unmapped: \(nullPageUnmapped), write to .rodata refused: \(rodataReadOnly), direct map reads the multiboot header: \(directMapAgrees)"
  )
  return kernel
}

/// Enters the kernel's own mappings into `pmap`: the kernel image identity-mapped in 4 KiB pages
/// (text read+execute, read-only data read, data and .bss, with stacks, heap and GDT,
/// read+write and never executable), and the direct map, all of RAM at `Layout.directMapBase`
/// in 2 MiB pages. Every address space the kernel runs on needs them (the library has no shared
/// kernel half: each pmap gets its own copy of these entries).
func mapKernel(into pmap: NativePmap, directMapSize: UInt64) throws(EnterError) {
  var pa = ks_kernel_start()
  while pa < ks_kernel_end() {
    let protection: Protection = pa < ks_text_end() ? .readExecute : pa < ks_rodata_end() ? .read : .readWrite
    try pmap.enter(VirtualAddress(pa), PhysicalAddress(pa), protection: protection, options: .wired)
    pa += 4096
  }
  pa = 0
  while pa < directMapSize {
    try pmap.enter(
      VirtualAddress(Layout.directMapBase + pa), PhysicalAddress(pa), protection: .readWrite, options: .wired,
      size: .size2M)
    pa += 2 << 20
  }
}

/// The checks' results: one line each on the console.
struct Report {
  private(set) var checks = 0
  private(set) var failures = 0

  mutating func record(_ name: String, _ passed: Bool, _ detail: String) {
    checks += 1
    if !passed { failures += 1 }
    print("check \(name): \(passed ? "ok" : "FAIL") - \(detail)")
  }
}
