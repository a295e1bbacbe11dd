import Pmap
import PmapHost
import PmapNative

/// Random page tables and an access script from a seed: what one comparison run executes.
///
/// Built with the library itself: a `.user` `NativePmap` for the lower half and a `.kernel` one
/// for the upper half whose top-level entries are shared into the user root (as a kernel
/// shares its half with every process), populated with random `enter` (4 KiB and a few 2 MiB;
/// read-only, read-write, executable or not; with A/D preset or not), `protect` and `remove`,
/// then edited by hand the way a guest or a pagedaemon would: A/D bits cleared at every level,
/// a few intermediate entries made supervisor-only, read-only or no-execute, a few user leaves
/// in the upper half, and a few reserved bits set (which the teardown undoes).
///
/// Memory (``ramSize``): page tables in the first 4 MiB, then the harness's frames, then 4 KiB
/// data frames up to 6 MiB, then 2 MiB data frames from 8 MiB; one 1 GiB page (in its own
/// region) maps physical 0, and accesses through it stay in the data frames. Every 8-byte data
/// word holds `0xC3 | address << 8` (its own physical address), and every scripted write
/// stores `0xC3 | index << 8`: a fetch from any 8-byte aligned data address executes `ret`
/// (0xC3), and the value a read loads says which physical word the translation reached.
public final class KVMScenario {
  /// Bytes of simulated RAM (= guest memory).
  public static var ramSize: UInt64 { 32 << 20 }
  /// The machine the tables live in.
  public let machine: SimulatedMachine
  /// Lower-half (user) mappings; its root is CR3.
  public let userPmap: NativePmap
  /// Upper-half (kernel) mappings, shared into ``userPmap``'s root.
  public let kernelPmap: NativePmap
  /// Frames reserved for the harness (see ``HarnessLayout/frameCount``).
  public let harnessFrames: [PhysicalAddress]
  /// The paging controls of the run.
  public let mode: PagingMode
  /// The accesses, in order.
  public private(set) var script: [ScriptedAccess] = []
  /// The seed everything came from.
  public let seed: UInt64
  /// Count of hand edits made to entries, by kind (for reports).
  public private(set) var edits: [String: Int] = [:]

  /// CR3.
  public var root: PhysicalAddress { userPmap.root }

  private var sharedSlots: [Int] = []
  private var structuralEdits: [(EntryPointer, UInt64)] = []

  /// Linear bases of the regions mappings are made in: three user and two kernel ones, each
  /// 8 MiB (four page tables), in distinct top-level slots away from the harness's.
  static var userRegions: [UInt64] { [0x0000_0000_0040_0000, 0x0000_0080_3fe0_0000, 0x0000_7f7f_ff80_0000] }
  /// The kernel regions: one in the lower half (slot 128), so that CPL3 accesses to
  /// supervisor pages reach KVM's native path even under kvm_pvm, and two in the upper half.
  static var kernelRegions: [UInt64] { [0x0000_4000_0000_0000, 0xffff_8000_0000_0000, 0xffff_ff00_7fc0_0000] }
  static var regionBytes: UInt64 { 8 << 20 }
  /// Regions holding one 1 GiB page each (user, then kernel), mapping physical 0.
  static var hugeRegions: [UInt64] { [0x0000_0100_0000_0000, 0x0000_0180_0000_0000] }
  /// A region with nothing mapped at any level below the root.
  static var emptyRegion: UInt64 { 0x0000_0400_0000_0000 }

  static var smallFrameBase: UInt64 { 4 << 20 }
  static var smallFrameEnd: UInt64 { 6 << 20 }
  static var largeFrameBase: UInt64 { 8 << 20 }

  /// Builds the scenario of `seed` with `accesses` accesses, of which about
  /// `supervisorFraction` run at CPL0.
  ///
  /// - Parameters:
  ///   - mode: the paging controls; `nil` draws them from the seed (NXE and WP mostly on).
  ///   - physicalAddressBits: the guest's MAXPHYADDR; reserved-bit edits use bits above it
  ///     (none when it is 52).
  ///   - userUpperHalf: whether CPL3 accesses may go to the upper half; when `false` (needed
  ///     under kvm_pvm, see ``KVMVirtualMachine/isPagetableBasedVirtualMachine``) an access drawn
  ///     there is made at CPL0 instead.
  public init(
    seed: UInt64, accesses: Int, mode: PagingMode? = nil, supervisorFraction: Double = 0.1,
    physicalAddressBits: Int = 48, userUpperHalf: Bool = true
  ) {
    self.seed = seed
    var rng = SplitMix64(seed: seed)
    self.mode =
      mode
      ?? PagingMode(
        writeProtect: rng.chance(0.8), noExecuteEnabled: rng.chance(0.9),
        supervisorModeExecutionPrevention: rng.chance(0.5), supervisorModeAccessPrevention: rng.chance(0.5))
    let machine = SimulatedMachine(ramSize: Self.ramSize, pageTableFrames: 1023, recordsInvalidations: false)
    self.machine = machine
    // Page-table frames are 1 ..< 1024: nothing is allocated before these two, so they cannot fail.
    userPmap = try! machine.makeNativePmap(kind: .user)
    kernelPmap = try! machine.makeNativePmap(kind: .kernel)
    harnessFrames = (0..<HarnessLayout.frameCount).map { machine.dataFrame($0) }
    let dataStart = machine.dataFrame(HarnessLayout.frameCount).rawValue
    let words = machine.memory.pointer(to: PhysicalAddress(dataStart)).assumingMemoryBound(to: UInt64.self)
    for i in 0..<Int((Self.ramSize - dataStart) / 8) { words[i] = 0xc3 | (dataStart + UInt64(i) * 8) << 8 }

    let smallFrames = (dataStart >> 12)..<(Self.smallFrameEnd >> 12)
    let largeFrames = (Self.largeFrameBase >> 21)..<(Self.ramSize >> 21)
    populate(&rng, smallFrames: smallFrames, largeFrames: largeFrames)
    for (pmap, base) in zip([userPmap, kernelPmap], Self.hugeRegions) where rng.chance(0.7) {
      let protection = Self.randomProtection(&rng)
      if (try? pmap.enter(
        VirtualAddress(base), PhysicalAddress(0), protection: protection, access: rng.chance(0.5) ? [] : .read,
        size: .size1G)) != nil
      {
        count("enter 1G")
      }
    }
    // Collected before the hand edits: the pmaps walk only tables they made.
    var mapped: [(UInt64, UInt64)] = []
    userPmap.forEachMapping(in: .lowerHalf) { va, t in mapped.append((va.rawValue, t.size.bytes)) }
    kernelPmap.forEachMapping(in: .lowerHalf) { va, t in mapped.append((va.rawValue, t.size.bytes)) }
    kernelPmap.forEachMapping(in: .upperHalf) { va, t in mapped.append((va.rawValue, t.size.bytes)) }
    editByHand(&rng, physicalAddressBits: physicalAddressBits)
    // Share the kernel regions: copy the kernel root's populated top-level entries.
    for slot in 0..<512 where !HarnessLayout.reservedSlots.contains(slot) {
      let e = machine.memory.entry(in: kernelPmap.root, at: slot).load()
      if e != 0 && machine.memory.entry(in: userPmap.root, at: slot).load() == 0 {
        machine.memory.entry(in: userPmap.root, at: slot).store(e)
        sharedSlots.append(slot)
      }
    }
    script = Self.makeScript(
      &rng, count: accesses, supervisorFraction: supervisorFraction, mapped: mapped, userUpperHalf: userUpperHalf,
      dataStart: dataStart)
  }

  deinit {
    // Undo what the pmaps' own teardown must not see: shared kernel slots and reserved bits.
    for slot in sharedSlots { machine.memory.entry(in: userPmap.root, at: slot).exchange(0) }
    for (p, bits) in structuralEdits { p.clearBits(bits) }
  }

  private func count(_ edit: String) { edits[edit, default: 0] += 1 }

  private static func randomProtection(_ rng: inout SplitMix64) -> Protection {
    [Protection.read, .readWrite, .readExecute, .all].randomElement(using: &rng)!
  }

  private func populate(_ rng: inout SplitMix64, smallFrames: Range<UInt64>, largeFrames: Range<UInt64>) {
    for (pmap, regions) in [(userPmap, Self.userRegions), (kernelPmap, Self.kernelRegions)] {
      for base in regions {
        // A few 2 MiB pages in the region's 2 MiB slots (the third and fourth), then 4 KiB pages.
        for slot in 2..<4 where rng.chance(0.5) {
          let va = VirtualAddress(base + UInt64(slot) << 21)
          let pa = PhysicalAddress(UInt64.random(in: largeFrames, using: &rng) << 21)
          let protection = Self.randomProtection(&rng)
          let access: Protection =
            rng.chance(0.5) ? [] : (rng.chance(0.5) ? .read : protection.intersection(.readWrite))
          if (try? pmap.enter(va, pa, protection: protection, access: access, size: .size2M)) != nil {
            count("enter 2M")
          }
        }
        for _ in 0..<160 {
          let va = VirtualAddress(base + UInt64.random(in: 0..<(Self.regionBytes >> 12), using: &rng) << 12)
          let pa = PhysicalAddress(UInt64.random(in: smallFrames, using: &rng) << 12)
          let protection = Self.randomProtection(&rng)
          let access: Protection =
            rng.chance(0.5) ? [] : (rng.chance(0.5) ? .read : protection.intersection(.readWrite))
          if (try? pmap.enter(va, pa, protection: protection, access: access)) != nil { count("enter 4K") }
        }
        for _ in 0..<6 {
          let start = base + UInt64.random(in: 0..<(Self.regionBytes >> 12), using: &rng) << 12
          let pages = UInt64.random(in: 1...24, using: &rng)
          guard let range = try? VirtualRange(start: VirtualAddress(start), byteCount: pages << 12) else { continue }
          if rng.chance(0.5) {
            if (try? pmap.protect(range, to: Self.randomProtection(&rng))) != nil { count("protect") }
          } else {
            if (try? pmap.remove(range)) != nil { count("remove") }
          }
        }
      }
    }
  }

  /// Every present entry reachable from `root` (top-level slots in `slots`), with its level.
  private func entries(root: PhysicalAddress, slots: [Int]) -> [(EntryPointer, PageTableLevel, UInt64)] {
    var found: [(EntryPointer, PageTableLevel, UInt64)] = []
    func visit(_ table: PhysicalAddress, _ level: PageTableLevel, _ indices: [Int]) {
      for i in indices {
        let p = machine.memory.entry(in: table, at: i)
        let e = p.load()
        guard e & NativePTE.present != 0 else { continue }
        found.append((p, level, e))
        if let child = level.child, !(level != .pml4 && e & NativePTE.pageSize != 0) {
          visit(NativePTE.tableFrame(e), child, Array(0..<512))
        }
      }
    }
    visit(root, .pml4, slots)
    return found
  }

  private func editByHand(_ rng: inout SplitMix64, physicalAddressBits: Int) {
    let user = entries(root: userPmap.root, slots: Array(0..<256))
    let kernel = entries(root: kernelPmap.root, slots: Array(0..<512))
    for (p, level, e) in user + kernel {
      let leaf = level == .pageTable || (level != .pml4 && e & NativePTE.pageSize != 0)
      // A/D: clear A (and D) on a third of the entries, D alone on another sixth.
      if rng.chance(0.33) {
        p.clearBits(NativePTE.accessed | NativePTE.dirty)
        count("A/D cleared")
      } else if leaf && rng.chance(0.25) {
        p.clearBits(NativePTE.dirty)
        count("D cleared")
      }
      if !leaf {
        if rng.chance(0.04) {
          p.clearBits(NativePTE.user)
          count("table entry made supervisor")
        }
        if rng.chance(0.04) {
          p.clearBits(NativePTE.writable)
          count("table entry made read-only")
        }
        if rng.chance(0.04) {
          p.setBits(NativePTE.noExecute)
          count("table entry made no-execute")
        }
      } else if level != .pageTable && rng.chance(0.15) {
        // A reserved bit inside a large page's frame field (bits 13-20 for 2 MiB).
        p.setBits(1 << 13)
        structuralEdits.append((p, 1 << 13))
        count("reserved bit 13 in a large leaf")
      }
      if physicalAddressBits < 52 && rng.chance(0.02) {
        let bit: UInt64 = 1 << UInt64(Int.random(in: physicalAddressBits..<52, using: &rng))
        p.setBits(bit)
        structuralEdits.append((p, bit))
        count("reserved bit above MAXPHYADDR")
      }
      if level == .pml4 && rng.chance(0.05) {
        p.setBits(NativePTE.pageSize)
        structuralEdits.append((p, NativePTE.pageSize))
        count("PS in a PML4 entry")
      }
    }
    for (p, level, _) in kernel where level == .pageTable && rng.chance(0.05) {
      p.setBits(NativePTE.user)
      count("user leaf in a kernel region")
    }
    for (p, level, _) in user where level == .pageTable && rng.chance(0.05) {
      p.clearBits(NativePTE.user)
      count("supervisor leaf in a user region")
    }
  }

  private static func makeScript(
    _ rng: inout SplitMix64, count: Int, supervisorFraction: Double, mapped: [(UInt64, UInt64)],
    userUpperHalf: Bool, dataStart: UInt64
  ) -> [ScriptedAccess] {
    let regions = userRegions + kernelRegions
    var script: [ScriptedAccess] = []
    script.reserveCapacity(count)
    let large = mapped.filter { $0.1 > 4096 }
    for i in 0..<count {
      var linear: UInt64
      let placement = UInt64.random(in: 0..<100, using: &rng)
      if placement < 1 {
        // Not canonical (#GP before any walk): just above the lower half, or bit 63 alone.
        let low = UInt64.random(in: 0..<(1 << 46), using: &rng) & ~7
        linear = rng.chance(0.5) ? 1 << 47 | low : 1 << 63 | low
      } else if placement < 4 || mapped.isEmpty {
        // Nothing below the root here.
        linear = emptyRegion + UInt64.random(in: 0..<(1 << 30), using: &rng) & ~7
      } else if placement < 35 {
        // Anywhere in a region: mostly unmapped pages next to mapped ones.
        linear = regions.randomElement(using: &rng)! + UInt64.random(in: 0..<regionBytes, using: &rng) & ~7
      } else {
        // In a page the pmaps mapped (the hand edits may have made it fault anyway).
        // A quarter of these go to large pages (there are few of them).
        let (va, size) = (!large.isEmpty && rng.chance(0.25) ? large : mapped).randomElement(using: &rng)!
        // A 1 GiB page maps physical 0: stay within the data frames of guest memory.
        let offsets = size == PageSize.size1G.bytes ? dataStart..<ramSize : 0..<size
        linear = va + UInt64.random(in: offsets, using: &rng) & ~7
      }
      let r = UInt64.random(in: 0..<100, using: &rng)
      let kind: AccessKind = r < 40 ? .read : (r < 75 ? .write : .fetch)
      var privilege: GuestPrivilege = rng.chance(supervisorFraction) ? .supervisor : .user
      if !userUpperHalf && linear >> 63 != 0 { privilege = .supervisor }
      script.append(
        ScriptedAccess(
          kind, linear: linear, privilege: privilege,
          alignmentCheckFlag: privilege == .supervisor && rng.chance(0.5), value: 0xc3 | UInt64(i) << 8))
    }
    return script
  }
}
