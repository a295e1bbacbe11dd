import Pmap
import PmapEPT
import PmapNative

/// Drives every public operation of both formats and of the page database once, over the memory
/// the caller provides. Built for bare metal by `.ci/run` (Embedded Swift compiles generic code
/// only where it is specialised, so this is what makes the Embedded build check all of it) and
/// run on the host by the tests.
///
/// - Parameters:
///   - memory: the direct map; frames `tables` are handed out for page tables and pv nodes.
///   - tables: `start ..< end` of frames for the frame allocator.
///   - data: the first of 16 data frames to map (managed).
///   - sink: where invalidations go.
/// - Returns: the number of checks that failed (0 when all is well).
public func exerciseEverything(
  memory: PhysicalMemory, tables: (PhysicalAddress, PhysicalAddress), data: PhysicalAddress,
  sink: any InvalidationSink
) -> Int {
  var failures = 0
  func check(_ condition: Bool) { if !condition { failures += 1 } }

  let allocator = StackFrameAllocator(memory: memory, frames: tables.0, to: tables.1)
  let pages = PageDatabase(memory: memory, base: data, pageCount: 16, allocator: allocator, pmapCapacity: 4)
  guard
    let host = try? NativePmap(memory: memory, allocator: allocator, invalidation: sink, pages: pages),
    let guest = try? EPTPmap(memory: memory, allocator: allocator, invalidation: sink, pages: pages)
  else { return 1 }
  let frame = data
  let hostVA = VirtualAddress(0x7000_0000_0000)
  let guestVA = VirtualAddress(0x1000)

  do throws(EnterError) {
    try host.enter(hostVA, frame, protection: .readWrite, access: .read, options: [.wired, .canFail])
    try guest.enter(guestVA, frame, protection: .all, access: .write, options: .canFail, cacheMode: .writeBack)
    try guest.enter(VirtualAddress(0x20_0000), PhysicalAddress(0x4000_0000), protection: .read, size: .size2M)
  } catch { failures += 1 }
  check(host.extract(hostVA) == frame)
  check(guest.translation(of: guestVA)?.attributes.contains(.modified) == true)
  check(pages.isModified(frame) && pages.isReferenced(frame))
  check(pages.clearModify(frame) && !pages.isModified(frame))
  check(pages.referencedCount(frame) >= 1)
  _ = pages.clearAttributes([.referenced], of: frame)
  pages.protectPage(frame, to: .read)
  check(host.translation(of: hostVA)?.protection.contains(.write) == false)
  do throws(UnwireError) { try host.unwire(hostVA) } catch { failures += 1 }
  do throws(RangeOperationError) {
    try host.protect(VirtualRange(page: hostVA), to: .read)
    try guest.protect(hugeRange(), to: .read)
  } catch { failures += 1 }
  check(pages.mappingCount(of: frame) == 2)
  check(host.checkInvariants() == nil && guest.checkInvariants() == nil && pages.checkInvariants() == nil)
  check(pages.removeAllMappings(frame) == 2)
  do throws(RangeOperationError) { try guest.remove(.lowerHalf) } catch { failures += 1 }
  check(EPTPointer(guest).isValid && host.cr3 == host.root.rawValue)
  check(host.statistics.residentPages == 0 && guest.statistics.pageTablePages == 1)
  // A kernel half shared by a second address space, filled by a range enter.
  guard
    let kernel = try? NativePmap(
      memory: memory, allocator: allocator, invalidation: sink, kind: .kernel,
      kernelHalfSlots: 511..<512),
    let process = try? NativePmap(
      memory: memory, allocator: allocator, invalidation: sink,
      sharingKernelHalfWith: kernel)
  else { return failures + 1 }
  let kernelVA = VirtualAddress(0xffff_ff80_0000_0000)
  do throws(EnterError) {
    try kernel.enter(
      VirtualRange(page: kernelVA), startingAt: frame, protection: .read, options: .canFail, largestPageSize: .size2M)
    try guest.enter(hugeRange(), startingAt: PhysicalAddress(0x4000_0000), protection: .read, largestPageSize: .size2M)
  } catch { failures += 1 }
  check(process.extract(kernelVA) == frame && guest.statistics.residentPages == 512)
  var refused = false
  do throws(EnterError) { try process.enter(kernelVA, frame, protection: .read) } catch {
    refused = error == .addressInSharedKernelHalf
  }
  check(refused)
  check(process.checkInvariants() == nil && kernel.checkInvariants() == nil)
  process.destroy()
  kernel.destroy()
  host.destroy()
  guest.destroy()
  check(allocator.framesInUse == pages.statistics.poolFrames)
  return failures
}

/// The 2 MiB range at 2 MiB (built without a throwing initialiser).
func hugeRange() -> VirtualRange {
  (try? VirtualRange(start: VirtualAddress(0x20_0000), byteCount: 2 << 20)) ?? .lowerHalf
}
