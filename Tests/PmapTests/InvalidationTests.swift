import Pmap
import PmapEPT
import PmapHost
import PmapNative
import Testing

@Suite("Invalidation reports")
struct InvalidationTests {
  @Test("removing an accessed mapping reports it; a never-accessed one reports nothing", arguments: Format.allCases)
  func removeReportsAccessed(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      let keep = address(pml4: 0, pd: 3, pt: 7)  // keeps the tables alive
      let accessed = address(pml4: 0, pd: 3, pt: 8)
      let touched = address(pml4: 0, pd: 3, pt: 9)
      let never = address(pml4: 0, pd: 3, pt: 10)
      try pmap.enter(keep, machine.dataFrame(0), protection: .read)
      try pmap.enter(accessed, machine.dataFrame(1), protection: .readWrite, access: [.read])
      try pmap.enter(touched, machine.dataFrame(2), protection: .readWrite)
      try pmap.enter(never, machine.dataFrame(3), protection: .readWrite)
      #expect(machine.sink.events.isEmpty, "entering into empty slots invalidates nothing")

      try pmap.remove(range(accessed, bytes: 0x1000))
      #expect(machine.sink.events == [.pages(root: pmap.root, [accessed])])
      #expect(machine.sink.covered(accessed, root: pmap.root))
      machine.sink.reset()

      // The hardware sets A later: that counts the same.
      try hardwareAccesses(pmap, at: touched)
      try pmap.remove(range(touched, bytes: 0x1000))
      #expect(machine.sink.events == [.pages(root: pmap.root, [touched])])
      machine.sink.reset()

      try pmap.remove(range(never, bytes: 0x1000))
      #expect(machine.sink.events.isEmpty, "a mapping never accessed cannot be cached")
      try pmap.remove(range(never, bytes: 0x4000))
      #expect(machine.sink.events.isEmpty)
      #expect(pmap.extract(keep) == machine.dataFrame(0))
      expectInvariants(pmap)
    }
    try check(format.ops)
  }

  @Test("protect of an accessed mapping reports; unchanged or never-accessed ones do not", arguments: Format.allCases)
  func protectReports(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      let a = address(pml4: 2, pt: 1)
      let b = address(pml4: 2, pt: 2)
      try pmap.enter(a, machine.dataFrame(1), protection: .readWrite, access: [.read])
      try pmap.enter(b, machine.dataFrame(2), protection: .readWrite)
      try pmap.protect(range(a, bytes: 0x1000), to: .read)
      #expect(machine.sink.events == [.pages(root: pmap.root, [a])])
      machine.sink.reset()
      try pmap.protect(range(b, bytes: 0x1000), to: .read)
      #expect(machine.sink.events.isEmpty, "never accessed")
      try pmap.protect(range(a, bytes: 0x2000), to: .read)
      #expect(machine.sink.events.isEmpty, "nothing changed")
      try pmap.protect(range(a, bytes: 0x2000), to: .all)
      #expect(machine.sink.events.isEmpty, "nothing changed")
      // Range path: two accessed pages in one call, one report.
      try pmap.enter(a, machine.dataFrame(1), protection: .all, access: [.read])
      try pmap.enter(b, machine.dataFrame(2), protection: .all, access: [.read])
      machine.sink.reset()
      try pmap.protect(range(a, bytes: 0x2000), to: .readExecute)
      #expect(machine.sink.events == [.pages(root: pmap.root, [a, b])])
      expectInvariants(pmap)
    }
    try check(format.ops)
  }

  @Test("more than 16 addresses in one operation become one full invalidation", arguments: Format.allCases)
  func batchOverflow(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      #expect(InvalidationBatch.capacity == 16)
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      let base = address(pml4: 1, pd: 1)
      for i in 0..<40 {
        try pmap.enter(base.plus(UInt64(i) << 12), machine.dataFrame(i), protection: .read, access: [.read])
      }
      machine.sink.reset()
      // Exactly 16: one report listing them in order.
      try pmap.remove(range(base, bytes: 16 << 12))
      let sixteen = (0..<16).map { base.plus(UInt64($0) << 12) }
      #expect(machine.sink.events == [.pages(root: pmap.root, sixteen)])
      machine.sink.reset()
      // 17: one full invalidation.
      try pmap.remove(range(base.plus(16 << 12), bytes: 17 << 12))
      #expect(machine.sink.events == [.all(root: pmap.root)])
      #expect(machine.sink.callCount == 1)
      machine.sink.reset()
      // Protect of the 8 left, of which only one changes: a list again.
      try pmap.enter(base, machine.dataFrame(0), protection: .readWrite, access: [.read])
      machine.sink.reset()
      try pmap.protect(range(base, bytes: 40 << 12), to: .read)
      #expect(machine.sink.events.count == 1)
      #expect(machine.sink.events.first?.addresses.count == 1)
      #expect(pmap.statistics == stats(8, 0, 4))
      expectInvariants(pmap)
    }
    try check(format.ops)
  }

  @Test("re-entering over an accessed mapping reports when the translation changes", arguments: Format.allCases)
  func reenterReports(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      let va = address(pml4: 4, pt: 4)
      let other = address(pml4: 4, pt: 5)
      try pmap.enter(va, machine.dataFrame(1), protection: .readWrite, access: [.read])
      try pmap.enter(other, machine.dataFrame(5), protection: .readWrite)
      machine.sink.reset()

      // Same frame, same everything: nothing to invalidate.
      try pmap.enter(va, machine.dataFrame(1), protection: .readWrite, access: [.read])
      #expect(machine.sink.events.isEmpty)
      // Different frame over an accessed mapping.
      try pmap.enter(va, machine.dataFrame(2), protection: .readWrite)
      #expect(machine.sink.events == [.pages(root: pmap.root, [va])])
      machine.sink.reset()
      // The new entry was entered without access: replacing it again needs nothing...
      try pmap.enter(va, machine.dataFrame(3), protection: .readWrite)
      #expect(machine.sink.events.isEmpty)
      // ...until the hardware uses it.
      try hardwareAccesses(pmap, at: va)
      try pmap.enter(va, machine.dataFrame(3), protection: .read)
      #expect(machine.sink.events == [.pages(root: pmap.root, [va])], "same frame, fewer rights")
      machine.sink.reset()
      // A different frame over a never-accessed mapping.
      try pmap.enter(other, machine.dataFrame(6), protection: .readWrite)
      #expect(machine.sink.events.isEmpty)
      #expect(pmap.extract(other) == machine.dataFrame(6))
      expectInvariants(pmap)
    }
    try check(format.ops)
  }

  @Test("removing a range reports everything in that call, tables included", arguments: Format.allCases)
  func tableFreeingReportsInCall(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let pmap = try F.makePmap(on: machine)
      let a = address(pml4: 3, pdpt: 2, pd: 1, pt: 5)
      try pmap.enter(a, machine.dataFrame(1), protection: .read)
      machine.sink.reset()
      let framesBefore = machine.allocator.framesInUse
      try pmap.remove(range(a, bytes: 0x1000))
      #expect(machine.allocator.framesInUse == framesBefore - 3)
      // Three tables were unlinked: their address ranges were reported, though the page never was.
      #expect(machine.sink.callCount == 1)
      let reported = machine.sink.events.flatMap(\.addresses)
      #expect(reported.count == 3)
      #expect(machine.sink.covered(a.alignedDown(to: .size2M), root: pmap.root))
      #expect(!reported.contains(a))
      expectInvariants(pmap)
    }
    try check(format.ops)
  }

  @Test("page-table pages are released only after an invalidation that covers them", arguments: Format.allCases)
  func releaseAfterInvalidation(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let recorder = OrderRecorder(machine: machine, frames: machine.dataFrame(0), to: machine.dataFrame(512))
      let pmap = try Pmap<F>(memory: machine.memory, allocator: recorder, invalidation: recorder)
      let root = pmap.root
      let memory = pmap.memory
      // 40 page tables under one PD (more than the retired-table batch of 32), never accessed,
      // plus a page in another PML4 slot, and one accessed page.
      for i in 0..<40 {
        try pmap.enter(address(pml4: 1, pdpt: 1, pd: UInt64(i), pt: 3), machine.dataFrame(1000 + i), protection: .read)
      }
      try pmap.enter(address(pml4: 2, pt: 1), machine.dataFrame(1100), protection: .read, access: [.read])
      #expect(pmap.statistics == stats(41, 0, 1 + 2 + 40 + 3))
      let bases = tableBases(F.self, root: root, memory: memory)
      #expect(bases.count == 46)

      var reachableAtRelease: [PhysicalAddress: Bool] = [:]
      recorder.onRelease = { frame in
        reachableAtRelease[frame] = tableBases(F.self, root: root, memory: memory)[frame] != nil
      }
      recorder.reset()
      try pmap.remove(.lowerHalf)
      #expect(recorder.framesInUse == 1)
      #expect(pmap.statistics == stats(0, 0, 1))

      let events = recorder.events
      let released = events.compactMap(\.releasedFrame)
      #expect(Set(released) == Set(bases.keys).subtracting([root]))
      #expect(released.count == 45)
      #expect(reachableAtRelease.values.allSatisfy { !$0 }, "released while still linked")
      for (i, event) in events.enumerated() {
        guard case .release(let frame) = event, let info = bases[frame] else { continue }
        let span = info.level.bytesPerEntry << 9
        let covered = events[..<i].contains { earlier in
          switch earlier {
          case .all(let r): r == root
          case .pages(let r, let vas):
            r == root && vas.contains { $0.linear >= info.base && $0.linear < info.base + span }
          default: false
          }
        }
        #expect(covered, "table \(frame) at level \(info.level) released before an invalidation covering it")
      }
      #expect(!events.contains { $0.isAllocation }, "remove allocates nothing")
      pmap.destroy()
      #expect(recorder.framesInUse == 0)
    }
    try check(format.ops)
  }

  @Test("page-table pages freed by a single-page remove are released after the report", arguments: Format.allCases)
  func singlePageCascadeOrder(_ format: Format) throws {
    func check<F: SimulatedFormat>(_: F.Type) throws {
      let machine = makeMachine()
      let recorder = OrderRecorder(machine: machine, frames: machine.dataFrame(0), to: machine.dataFrame(64))
      let pmap = try Pmap<F>(memory: machine.memory, allocator: recorder, invalidation: recorder)
      let va = address(pml4: 5, pdpt: 6, pd: 7, pt: 8)
      try pmap.enter(va, machine.dataFrame(100), protection: .read, access: [.read])
      let bases = tableBases(F.self, root: pmap.root, memory: pmap.memory)
      recorder.reset()
      try pmap.remove(range(va, bytes: 0x1000))
      let events = recorder.events
      #expect(events.count == 4, "one report, then three releases")
      guard case .pages(let root, let vas) = events.first else {
        Issue.record("the first event is not a report: \(events)")
        return
      }
      #expect(root == pmap.root)
      #expect(vas.contains(va))
      let released = events.dropFirst().compactMap(\.releasedFrame)
      #expect(Set(released) == Set(bases.keys).subtracting([pmap.root]))
      #expect(released.count == 3)
    }
    try check(format.ops)
  }

  @Test("EPT without hardware A/D: mappings are always referenced and modified, and always invalidated")
  func eptWithoutAccessedDirty() throws {
    let machine = makeMachine()
    let pmap = try EPTPTE.makePmap(on: machine, accessedDirty: false)
    #expect(!pmap.hardwareManagesAccessedDirty)
    #expect(!pmap.eptPointer.accessedDirtyEnabled)
    let vas = (0..<4).map { address(pml4: 0, pd: 1, pt: UInt64($0)) }
    let protections: [Protection] = [.read, .readWrite, .readExecute, .all]
    for (i, va) in vas.enumerated() {
      try pmap.enter(va, machine.dataFrame(i), protection: protections[i])
      let t = try #require(pmap.translation(of: va))
      #expect(t.attributes.isSuperset(of: [.referenced, .modified]), "\(protections[i])")
      #expect(t.protection == protections[i])
    }
    try pmap.enter(address(pml4: 0, pd: 2), PhysicalAddress(1 << 21), protection: .read, size: .size2M)
    #expect(try #require(pmap.translation(of: address(pml4: 0, pd: 2))).attributes == [.referenced, .modified])
    expectInvariants(pmap)
    #expect(machine.sink.events.isEmpty)

    // Re-entering the same frame with the same rights changes nothing.
    try pmap.enter(vas[0], machine.dataFrame(0), protection: .read)
    #expect(machine.sink.events.isEmpty)
    // Every change is invalidated.
    try pmap.protect(range(vas[1], bytes: 0x1000), to: .read)
    #expect(machine.sink.events == [.pages(root: pmap.root, [vas[1]])])
    machine.sink.reset()
    try pmap.protect(range(vas[2], bytes: 0x2000), to: .read)
    #expect(machine.sink.events == [.pages(root: pmap.root, [vas[2], vas[3]])])
    machine.sink.reset()
    try pmap.enter(vas[0], machine.dataFrame(9), protection: .read)
    #expect(machine.sink.events == [.pages(root: pmap.root, [vas[0]])])
    machine.sink.reset()
    try pmap.remove(range(vas[0], bytes: 0x1000))
    #expect(machine.sink.events == [.pages(root: pmap.root, [vas[0]])])
    machine.sink.reset()
    try pmap.remove(range(vas[1], bytes: 0x2000))
    #expect(machine.sink.events == [.pages(root: pmap.root, [vas[1], vas[2]])])
    machine.sink.reset()
    try pmap.remove(range(address(pml4: 0, pd: 2), bytes: 1 << 21))
    #expect(machine.sink.covered(address(pml4: 0, pd: 2), root: pmap.root))
    #expect(pmap.statistics == stats(1, 0, 4))
    expectInvariants(pmap)
  }
}
