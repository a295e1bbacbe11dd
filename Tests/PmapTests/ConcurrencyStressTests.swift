import Foundation
import Pmap
import PmapEPT
import PmapHost
import PmapMMU
import PmapNative
import Synchronization
import Testing

// Several threads at once on pmaps of both formats that share frames: two mutators (enter,
// remove, protect), a hardware thread that accesses memory through the MMU model (PmapMMU: walk,
// then set A, or A and D, with compare-and-swaps on the entries it read), and a pagedaemon thread
// (page operations). The hardware thread logs every write; at the end each logged write must be
// reflected: its page is reported modified unless a clear-modify of that page completed after
// the write (the exact-semantics check of KVM's dirty_log_test, adapted to merged attributes).

/// The invalidation sink of the stress test: it records the calls and, like a TLB shootdown
/// that waits for every CPU's acknowledgement, returns only once the hardware thread is not in
/// the middle of a walk, so a page-table page freed after the call is no longer being read.
final class ShootdownSink: InvalidationSink, @unchecked Sendable {
  // @unchecked: only atomics.
  /// Odd while the hardware thread is walking; bumped on entry and exit.
  let walkEpoch = Atomic<Int>(0)
  let calls = Atomic<Int>(0)

  func invalidate(pages: UnsafeBufferPointer<VirtualAddress>, root: PhysicalAddress) { waitForQuiescence() }
  func invalidateAll(root: PhysicalAddress) { waitForQuiescence() }

  /// Waits until any walk in progress at the time of the call is over.
  func waitForQuiescence() {
    calls.add(1, ordering: .relaxed)
    let seen = walkEpoch.load(ordering: .acquiring)
    if seen & 1 == 0 { return }
    while walkEpoch.load(ordering: .acquiring) == seen { sched_yield() }
  }

  func beginWalk() { walkEpoch.add(1, ordering: .sequentiallyConsistent) }
  func endWalk() { walkEpoch.add(1, ordering: .releasing) }
}

/// One pmap of either format, as the hardware thread sees it.
private struct StressSpace: @unchecked Sendable {
  // @unchecked: pmaps are thread-safe (documented); the closures capture only them.
  let name: String
  /// Accesses `va` through the MMU model (A, and D for a write, set with compare-and-swap when
  /// the access is allowed); returns the frame accessed, or nil.
  let access: (_ va: VirtualAddress, _ write: Bool) -> PhysicalAddress?
  let enter: (_ va: VirtualAddress, _ frame: PhysicalAddress, _ writable: Bool) -> Void
  let remove: (_ va: VirtualAddress) -> Void
  let protect: (_ va: VirtualAddress) -> Void
  let checkInvariants: () -> InvariantViolation?
  let destroy: () -> Void
}

private func makeSpace<Ops: PTEOps>(_ pmap: Pmap<Ops>, name: String) -> StressSpace {
  StressSpace(
    name: name,
    access: { va, write in
      // The MMU model's walk: A (and D) set with compare-and-swap, only if the access is allowed.
      try? pmap.accessThroughMMU(va, write ? .write : .read).get().alignedDown()
    },
    enter: { va, frame, writable in
      try? pmap.enter(va, frame, protection: writable ? .readWrite : .read, options: [.canFail])
    },
    remove: { va in try? pmap.remove(VirtualRange(page: va)) },
    protect: { va in try? pmap.protect(VirtualRange(page: va), to: .read) },
    checkInvariants: { pmap.checkInvariants() },
    destroy: { pmap.destroy() })
}

/// A small deterministic generator per thread.
private struct StressRandom {
  var state: UInt64
  mutating func next(_ n: Int) -> Int {
    state &+= 0x9e37_79b9_7f4a_7c15
    var z = state
    z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
    z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
    return Int(truncatingIfNeeded: (z ^ (z >> 31)) % UInt64(n))
  }
}

@Suite("Concurrency: mutators, a hardware thread and a pagedaemon at once")
struct ConcurrencyStressTests {
  static let frameCount = 48
  static let pagesPerSpace = 96

  @Test("every write the hardware made is reported modified unless a clear-modify came after it")
  func dirtyLogSemantics() throws {
    let operations = Int(ProcessInfo.processInfo.environment["PMAP_STRESS_OPS"] ?? "") ?? 20_000
    try withPVMachine(ramSize: 32 << 20, pageTableFrames: 2048) { machine in
      let sink = ShootdownSink()
      let pages = machine.pages
      let pmaps: [StressSpace] = [
        makeSpace(
          try NativePmap(memory: machine.memory, allocator: machine.allocator, invalidation: sink, pages: pages),
          name: "native 0"),
        makeSpace(
          try EPTPmap(memory: machine.memory, allocator: machine.allocator, invalidation: sink, pages: pages),
          name: "ept 1"),
        makeSpace(
          try NativePmap(memory: machine.memory, allocator: machine.allocator, invalidation: sink, pages: pages),
          name: "native 2"),
        makeSpace(
          try EPTPmap(memory: machine.memory, allocator: machine.allocator, invalidation: sink, pages: pages),
          name: "ept 3"),
      ]
      let frames = (0..<Self.frameCount).map { machine.dataFrame($0) }

      let shared = StressShared(frames: Self.frameCount)
      let start = Date()
      let threads: [@Sendable () -> Void] = [
        // Mutators: thread k owns pmaps k and k + 2.
        { Self.mutate(pmaps[0], pmaps[2], frames, seed: 1, operations, shared) },
        { Self.mutate(pmaps[1], pmaps[3], frames, seed: 2, operations, shared) },
        // The hardware thread.
        {
          var random = StressRandom(state: 3)
          var writes = 0
          while shared.mutatorsRunning.load(ordering: .acquiring) > 0 {
            let space = pmaps[random.next(pmaps.count)]
            let write = random.next(3) == 0
            // The ticket is drawn before the access: a write whose ticket is above a clear's
            // (drawn when the clear returned) surely set D after that clear, however long this
            // thread is preempted between its compare-and-swap and the log.
            let ticket = shared.sequence.add(1, ordering: .sequentiallyConsistent).newValue
            sink.beginWalk()
            let frame = space.access(Self.va(random.next(Self.pagesPerSpace)), write)
            sink.endWalk()
            if write, let frame {
              let index = Int((frame.rawValue - frames[0].rawValue) >> 12)
              shared.lastWrite(index).pointee.store(ticket, ordering: .releasing)
              writes += 1
            }
          }
          shared.writes = writes
        },
        // The pagedaemon.
        {
          var random = StressRandom(state: 4)
          var clears = 0
          while shared.mutatorsRunning.load(ordering: .acquiring) > 0 {
            let index = random.next(Self.frameCount)
            let f = frames[index]
            switch random.next(10) {
            case 0..<4:
              // A write logged before the clear starts happened before it: the clear must see it.
              let written = shared.lastWrite(index).pointee.load(ordering: .acquiring) > shared.lastClear[index]
              let wasModified = pages.clearModify(f)
              if written && !wasModified { shared.lostAtClear.add(1, ordering: .relaxed) }
              shared.lastClear[index] = shared.sequence.add(1, ordering: .sequentiallyConsistent).newValue
              clears += 1
            case 4..<6: _ = pages.referencedCount(f)
            case 6: pages.clearReference(f)
            case 7: pages.protectPage(f, to: .read)
            case 8:
              // The pageout check: after removing every mapping, a logged write must show.
              let written = shared.lastWrite(index).pointee.load(ordering: .acquiring) > shared.lastClear[index]
              pages.removeAllMappings(f)
              if written && !pages.isModified(f) { shared.lostAtClear.add(1, ordering: .relaxed) }
            default: _ = pages.isModified(f)
            }
          }
          shared.clears = clears
        },
      ]
      let done = DispatchGroup()
      for body in threads {
        done.enter()
        Thread.detachNewThread {
          body()
          done.leave()
        }
      }
      done.wait()
      let seconds = Date().timeIntervalSince(start)

      // Every write after the last completed clear-modify of its page must be visible.
      var missed: [String] = []
      for i in 0..<Self.frameCount {
        let write = shared.lastWrite(i).pointee.load(ordering: .relaxed)
        if write > shared.lastClear[i] && !pages.isModified(frames[i]) {
          missed.append("frame \(i): write #\(write) after clear #\(shared.lastClear[i]) is lost")
        }
      }
      #expect(missed.isEmpty, "\(missed)")
      #expect(shared.lostAtClear.load(ordering: .relaxed) == 0, "a page operation missed a logged write")
      for space in pmaps { #expect(space.checkInvariants() == nil, "\(space.name)") }
      #expect(pages.checkInvariants() == nil)
      // The run did real work on every side.
      #expect(shared.mutations.load(ordering: .relaxed) == 2 * operations)
      #expect(shared.writes > 0 && shared.clears > 0)
      print(
        "stress: \(2 * operations) mutations, \(shared.writes) logged writes, \(shared.clears) clears, "
          + "\(sink.calls.load(ordering: .relaxed)) shootdowns in \(String(format: "%.2f", seconds)) s")
      for space in pmaps { space.destroy() }
      #expect(pages.statistics.mappings == 0)
    }
  }

  /// The addresses the test uses: spread so that they share some page tables and not others.
  static func va(_ i: Int) -> VirtualAddress { pvPage(0x4000_0000, i * 7) }

  /// A mutator: random enters (read-only or writable, random frame), removes and
  /// write-protects of single pages in two pmaps.
  private static func mutate(
    _ a: StressSpace, _ b: StressSpace, _ frames: [PhysicalAddress], seed: UInt64, _ operations: Int,
    _ shared: StressShared
  ) {
    var random = StressRandom(state: seed)
    for _ in 0..<operations {
      let space = random.next(2) == 0 ? a : b
      let page = va(random.next(pagesPerSpace))
      switch random.next(8) {
      case 0..<4: space.enter(page, frames[random.next(frames.count)], random.next(4) != 0)
      case 4..<6: space.remove(page)
      default: space.protect(page)
      }
    }
    shared.mutations.add(operations, ordering: .relaxed)
    shared.mutatorsRunning.subtract(1, ordering: .releasing)
  }
}

/// What the threads of the stress test share. Each plain field has one writer thread and is
/// read only after every thread has finished.
private final class StressShared: @unchecked Sendable {
  // @unchecked: atomics, plus fields with a single writer read after the threads are joined.
  let sequence = Atomic<Int>(0)
  let mutatorsRunning = Atomic<Int>(2)
  let mutations = Atomic<Int>(0)
  /// Clear-modify calls, or removals of every mapping, after which a page was reported clean
  /// although a write was logged before them.
  let lostAtClear = Atomic<Int>(0)
  /// Per frame: the sequence number of the last logged write (written by the hardware thread,
  /// read by the pagedaemon).
  private let lastWrites: UnsafeMutableRawPointer
  /// Per frame: the sequence number of the last completed clear-modify (pagedaemon only).
  let lastClear: UnsafeMutableBufferPointer<Int>
  var writes = 0
  var clears = 0

  init(frames: Int) {
    lastWrites = .allocate(byteCount: frames * 8, alignment: 8)
    lastWrites.initializeMemory(as: Int.self, repeating: -1, count: frames)
    lastClear = .allocate(capacity: frames)
    lastClear.initialize(repeating: -1)
  }

  deinit {
    lastWrites.deallocate()
    lastClear.deallocate()
  }

  /// The last logged write to frame `i`.
  func lastWrite(_ i: Int) -> UnsafeMutablePointer<Atomic<Int>> {
    (lastWrites + i * 8).assumingMemoryBound(to: Atomic<Int>.self)
  }
}
