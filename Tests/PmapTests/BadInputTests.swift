import Pmap
import PmapEPT
import PmapHost
import PmapNative
import Testing

/// A pmap with mappings of every size for the bad-input tests:
/// 4 KiB pages at `small[0]`, `small[1]` (in PD entry 0), a 2 MiB page at `large2M`
/// (PD entry 1, right after them), 4 KiB pages at `after2M` (PD entry 2), a 1 GiB page at
/// `large1G` (PDPT entry 1).
struct BadInputFixture<F: SimulatedFormat> {
  let machine = makeMachine()
  let pmap: Pmap<F>
  let small = [address(pml4: 0, pd: 0, pt: 510), address(pml4: 0, pd: 0, pt: 511)]
  let large2M = address(pml4: 0, pd: 1)
  let after2M = [address(pml4: 0, pd: 2, pt: 0), address(pml4: 0, pd: 2, pt: 1)]
  let large1G = address(pml4: 0, pdpt: 1)
  let untouched = address(pml4: 9, pt: 1)

  init() throws {
    pmap = try F.makePmap(on: machine)
    for (i, va) in (small + after2M).enumerated() {
      try pmap.enter(va, machine.dataFrame(i), protection: .readWrite, access: [.read])
    }
    try pmap.enter(large2M, PhysicalAddress(1 << 21), protection: .all, access: [.read], size: .size2M)
    try pmap.enter(large1G, PhysicalAddress(1 << 30), protection: .readWrite, access: [.read], size: .size1G)
    #expect(pmap.statistics == stats(4 + 512 + 262_144, 0, 5))
  }

  var probes: [VirtualAddress] {
    small + after2M + [large2M, large2M.plus(0x1000), large1G, large1G.plus(0x20_1000), untouched]
  }

  /// Runs `body`, which must throw `error`, and checks that nothing observable changed.
  func expectRefused<E: Error & Equatable>(
    _ error: E, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> Void
  ) {
    let before = TreeSnapshot(pmap, machine)
    let translations = probes.map { pmap.translation(of: $0) }
    let sinkCalls = machine.sink.callCount
    #expect(throws: error, comment, sourceLocation: sourceLocation) { try body() }
    #expect(TreeSnapshot(pmap, machine) == before, comment, sourceLocation: sourceLocation)
    #expect(probes.map { pmap.translation(of: $0) } == translations, comment, sourceLocation: sourceLocation)
    #expect(machine.sink.callCount == sinkCalls, comment, sourceLocation: sourceLocation)
    #expect(pmap.checkInvariants() == nil, comment, sourceLocation: sourceLocation)
  }
}

@Suite("Bad input: a typed error and nothing changed")
struct BadInputTests {
  @Test("unaligned addresses", arguments: Format.allCases)
  func unaligned(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let f = try BadInputFixture<F>()
      let va = f.untouched
      let pa = f.machine.dataFrame(9)
      f.expectRefused(EnterError.unalignedVirtualAddress) { try f.pmap.enter(va.plus(0x800), pa, protection: .read) }
      f.expectRefused(EnterError.unalignedVirtualAddress, "2M page at a 4K-aligned address") {
        try f.pmap.enter(address(pml4: 9, pd: 3, pt: 1), PhysicalAddress(1 << 21), protection: .read, size: .size2M)
      }
      f.expectRefused(EnterError.unalignedVirtualAddress, "1G page at a 2M-aligned address") {
        try f.pmap.enter(address(pml4: 9, pdpt: 3, pd: 1), PhysicalAddress(1 << 30), protection: .read, size: .size1G)
      }
      f.expectRefused(EnterError.unalignedPhysicalAddress) { try f.pmap.enter(va, pa.plus(0x10), protection: .read) }
      f.expectRefused(EnterError.unalignedPhysicalAddress, "2M page at a 4K-aligned frame") {
        try f.pmap.enter(address(pml4: 9, pd: 3), PhysicalAddress(0x20_1000), protection: .read, size: .size2M)
      }
      f.expectRefused(EnterError.unalignedPhysicalAddress, "1G page at a 2M-aligned frame") {
        try f.pmap.enter(address(pml4: 9, pdpt: 3), PhysicalAddress(3 << 21), protection: .read, size: .size1G)
      }
      // Alignment errors also win over everything else, even at a mapped address.
      f.expectRefused(EnterError.unalignedVirtualAddress) {
        try f.pmap.enter(f.small[0].plus(8), pa, protection: .read)
      }
    }
    try check(format.ops)
  }

  @Test("bad protections and accesses", arguments: Format.allCases)
  func badProtection(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let f = try BadInputFixture<F>()
      let pa = f.machine.dataFrame(9)
      for va in [f.untouched, f.small[0]] {
        f.expectRefused(EnterError.writeWithoutRead) { try f.pmap.enter(va, pa, protection: [.write]) }
        f.expectRefused(EnterError.writeWithoutRead) { try f.pmap.enter(va, pa, protection: [.write, .execute]) }
        f.expectRefused(EnterError.noRights) { try f.pmap.enter(va, pa, protection: []) }
        f.expectRefused(EnterError.accessExceedsProtection) {
          try f.pmap.enter(va, pa, protection: .read, access: [.write])
        }
        f.expectRefused(EnterError.accessExceedsProtection) {
          try f.pmap.enter(va, pa, protection: .readWrite, access: [.execute])
        }
        f.expectRefused(EnterError.accessExceedsProtection) {
          try f.pmap.enter(va, pa, protection: [.execute], access: [.write])
        }
      }
      f.expectRefused(EnterError.writeWithoutRead) {
        try f.pmap.enter(f.large2M, PhysicalAddress(1 << 21), protection: [.write], size: .size2M)
      }
      // Execute implies read, so a read access under execute-only protection is fine.
      try f.pmap.enter(f.untouched, pa, protection: [.execute], access: [.read])
      #expect(try #require(f.pmap.translation(of: f.untouched)).protection == .readExecute)
    }
    try check(format.ops)
  }

  @Test("physical addresses beyond MAXPHYADDR", arguments: Format.allCases)
  func physicalOutOfRange(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let ram = SimulatedRAM(size: 16 << 20, physicalAddressBits: 36)
      let allocator = TestFrameAllocator(
        memory: ram.memory, frames: PhysicalAddress(4096), to: PhysicalAddress(64 << 12))
      let sink = RecordingInvalidationSink()
      let pmap = try Pmap<F>(
        memory: ram.memory, allocator: KeepAliveAllocator(allocator, owner: ram), invalidation: sink)
      let va = address(pml4: 1)
      try pmap.enter(va, PhysicalAddress(0x1000), protection: .read)
      let before = TreeSnapshot(pmap, ram: ram, framesInUse: allocator.framesInUse)
      let limit: UInt64 = 1 << 36
      let cases: [(VirtualAddress, UInt64, PageSize)] = [
        (address(pml4: 2), limit, .size4K),
        (address(pml4: 2), limit + 0x1000, .size4K),
        (address(pml4: 2), (1 << 52) - 0x1000, .size4K),
        (address(pml4: 2), limit, .size2M),
        (address(pml4: 2), limit, .size1G),
        (address(pml4: 2), (1 << 52) - (1 << 30), .size1G),
        (va, limit, .size4K),  // over an existing mapping
      ]
      for (v, raw, size) in cases {
        #expect(throws: EnterError.physicalAddressOutOfRange, "\(raw) \(size.testDescription)") {
          try pmap.enter(v, PhysicalAddress(raw), protection: .read, size: size)
        }
        #expect(TreeSnapshot(pmap, ram: ram, framesInUse: allocator.framesInUse) == before)
        #expect(pmap.extract(va) == PhysicalAddress(0x1000))
        #expect(pmap.extract(v) == (v == va ? PhysicalAddress(0x1000) : nil))
      }
      // The last page of each size below the limit is fine.
      try pmap.enter(address(pml4: 3), PhysicalAddress(limit - 0x1000), protection: .read)
      try pmap.enter(address(pml4: 3, pd: 1), PhysicalAddress(limit - (1 << 21)), protection: .read, size: .size2M)
      try pmap.enter(address(pml4: 3, pdpt: 1), PhysicalAddress(limit - (1 << 30)), protection: .read, size: .size1G)
      #expect(pmap.extract(address(pml4: 3, offset: 0xfff)) == PhysicalAddress(limit - 1))
      #expect(pmap.extract(address(pml4: 3, pdpt: 1, offset: (1 << 30) - 1)) == PhysicalAddress(limit - 1))
      #expect(pmap.checkInvariants() == nil)
      pmap.destroy()
      #expect(allocator.framesInUse == 0)

      // With the full 52 bits, the top 1 GiB frame is fine.
      let machine = makeMachine()
      let wide = try F.makePmap(on: machine)
      #expect(wide.memory.physicalAddressBits == 52)
      try wide.enter(address(pml4: 1), PhysicalAddress((1 << 52) - (1 << 30)), protection: .read, size: .size1G)
      #expect(wide.extract(address(pml4: 1, offset: 0x1234)) == PhysicalAddress((1 << 52) - (1 << 30) + 0x1234))
    }
    try check(format.ops)
  }

  @Test("conflicts between page sizes", arguments: Format.allCases)
  func conflicts(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let f = try BadInputFixture<F>()
      let pa = f.machine.dataFrame(9)
      f.expectRefused(EnterError.conflictsWithLargeMapping, "4K under 2M") {
        try f.pmap.enter(f.large2M.plus(0x3000), pa, protection: .read)
      }
      f.expectRefused(EnterError.conflictsWithLargeMapping, "4K under 2M, first page") {
        try f.pmap.enter(f.large2M, pa, protection: .read)
      }
      f.expectRefused(EnterError.conflictsWithLargeMapping, "4K under 1G") {
        try f.pmap.enter(f.large1G.plus(0x1234_5000), pa, protection: .read)
      }
      f.expectRefused(EnterError.conflictsWithLargeMapping, "2M under 1G") {
        try f.pmap.enter(f.large1G.plus(0x20_0000), PhysicalAddress(1 << 21), protection: .read, size: .size2M)
      }
      f.expectRefused(EnterError.conflictsWithPageTable, "2M where a page table exists") {
        try f.pmap.enter(address(pml4: 0, pd: 0), PhysicalAddress(1 << 21), protection: .read, size: .size2M)
      }
      f.expectRefused(EnterError.conflictsWithPageTable, "1G where a page directory exists") {
        try f.pmap.enter(address(pml4: 0), PhysicalAddress(1 << 30), protection: .read, size: .size1G)
      }
    }
    try check(format.ops)
  }

  @Test("remove and protect refuse to split large mappings", arguments: Format.allCases)
  func splitsLargeMapping(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let f = try BadInputFixture<F>()
      let twoM: UInt64 = 1 << 21
      let oneG: UInt64 = 1 << 30
      let ranges: [(String, VirtualRange)] = [
        // Ends inside the 2M page, starting at the 4K pages before it.
        ("2M, end", try range(f.small[0], bytes: 0x2000 + 0x1000)),
        ("2M, end, range starts at the page", try range(f.large2M, bytes: twoM - 0x1000)),
        // Starts inside the 2M page, ending after the 4K pages behind it.
        ("2M, start", try range(f.large2M.plus(0x1000), bytes: twoM - 0x1000 + 0x2000)),
        ("2M, inside", try range(f.large2M.plus(0x1000), bytes: 0x2000)),
        ("2M, one page", try range(f.large2M.plus(0x5000), bytes: 0x1000)),
        ("2M, first page", try range(f.large2M, bytes: 0x1000)),
        // Ends inside the 1G page (not 2M aligned, and 2M aligned).
        ("1G, end", try range(f.after2M[0], bytes: oneG - 2 * twoM + 0x1000)),
        ("1G, end at 2M boundary", try range(f.after2M[0], bytes: oneG - 2 * twoM + twoM)),
        ("1G, start", try range(f.large1G.plus(twoM), bytes: oneG)),
        ("1G, one page", try range(f.large1G.plus(0x7000), bytes: 0x1000)),
        ("1G, everything but the last page", try range(f.small[0], bytes: 2 * oneG - f.small[0].rawValue - 0x1000)),
      ]
      for (name, r) in ranges {
        f.expectRefused(RangeOperationError.splitsLargeMapping, "remove \(name)") { try f.pmap.remove(r) }
        f.expectRefused(RangeOperationError.splitsLargeMapping, "protect \(name)") { try f.pmap.protect(r, to: .read) }
        f.expectRefused(RangeOperationError.splitsLargeMapping, "protect to none \(name)") {
          try f.pmap.protect(r, to: [])
        }
      }
      // Whole large pages are fine.
      try f.pmap.protect(range(f.large2M, bytes: twoM), to: .read)
      #expect(try #require(f.pmap.translation(of: f.large2M)).protection == .read)
      try f.pmap.remove(range(f.small[0], bytes: 0x2000 + twoM))
      #expect(f.pmap.extract(f.large2M) == nil)
      #expect(f.pmap.extract(f.small[1]) == nil)
      #expect(f.pmap.extract(f.after2M[0]) == f.machine.dataFrame(2))
      #expect(f.pmap.statistics == stats(2 + 262_144, 0, 4))
      expectInvariants(f.pmap)
    }
    try check(format.ops)
  }

  @Test("protect to write-only is refused", arguments: Format.allCases)
  func protectWriteOnly(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let f = try BadInputFixture<F>()
      let r = try range(f.small[0], bytes: 0x2000)
      f.expectRefused(RangeOperationError.writeWithoutRead) { try f.pmap.protect(r, to: [.write]) }
      f.expectRefused(RangeOperationError.writeWithoutRead) { try f.pmap.protect(r, to: [.write, .execute]) }
      f.expectRefused(RangeOperationError.writeWithoutRead, "single page") {
        try f.pmap.protect(range(f.small[0], bytes: 0x1000), to: [.write])
      }
      f.expectRefused(RangeOperationError.writeWithoutRead, "empty range") {
        try f.pmap.protect(range(f.small[0], bytes: 0), to: [.write])
      }
    }
    try check(format.ops)
  }

  @Test("unwire of unmapped or non-wired addresses", arguments: Format.allCases)
  func unwireErrors(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let f = try BadInputFixture<F>()
      f.expectRefused(UnwireError.notMapped) { try f.pmap.unwire(f.untouched) }
      f.expectRefused(UnwireError.notMapped, "next to a mapping") {
        try f.pmap.unwire(address(pml4: 0, pd: 0, pt: 509))
      }
      f.expectRefused(UnwireError.notWired) { try f.pmap.unwire(f.small[0]) }
      f.expectRefused(UnwireError.notWired, "2M") { try f.pmap.unwire(f.large2M.plus(0x3000)) }
      f.expectRefused(UnwireError.notWired, "1G") { try f.pmap.unwire(f.large1G) }
      // And once unwired, a second unwire is refused the same way.
      try f.pmap.enter(f.untouched, f.machine.dataFrame(9), protection: .read, options: .wired)
      try f.pmap.unwire(f.untouched)
      f.expectRefused(UnwireError.notWired, "twice") { try f.pmap.unwire(f.untouched) }
    }
    try check(format.ops)
  }

  @Test("1 GiB pages on a CPU without them", arguments: Format.allCases)
  func gigabytePagesUnsupported(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try Pmap<F>(
        memory: machine.memory, allocator: KeepAliveAllocator(machine.allocator, owner: machine),
        invalidation: machine.sink, supportsGigabytePages: false)
      #expect(!pmap.supportsGigabytePages)
      let framesBefore = machine.allocator.framesInUse
      #expect(throws: EnterError.unsupportedPageSize) {
        try pmap.enter(VirtualAddress(1 << 30), PhysicalAddress(1 << 30), protection: .read, size: .size1G)
      }
      #expect(pmap.statistics == stats(0, 0, 1))
      #expect(machine.allocator.framesInUse == framesBefore)
      // 2 MiB and 4 KiB pages are unaffected.
      try pmap.enter(VirtualAddress(1 << 21), PhysicalAddress(1 << 21), protection: .read, size: .size2M)
      try pmap.enter(VirtualAddress(0x1000), machine.dataFrame(0), protection: .read)
      #expect(pmap.checkInvariants() == nil)
    }
    try check(format.ops)
  }
}
