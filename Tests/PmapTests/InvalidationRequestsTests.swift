import Pmap
import PmapDifferential
import PmapEPT
import PmapHost
import PmapNative
import Testing

/// A sink that keeps every batch of ``InvalidationRequests`` it receives, iterated twice (the
/// view must give the same requests each time, as many as its `count`).
final class BatchRecordingSink: InvalidationSink, @unchecked Sendable {
  private(set) var batches: [[InvalidationRequest]] = []
  private(set) var countMismatches = 0
  private(set) var otherCalls = 0

  func invalidate(_ requests: InvalidationRequests) {
    let first = Array(requests)
    let second = Array(requests)
    if first.count != requests.count || second != first || requests.isEmpty != first.isEmpty {
      countMismatches += 1
    }
    batches.append(first)
  }
  func invalidate(pages: UnsafeBufferPointer<VirtualAddress>, root: PhysicalAddress) { otherCalls += 1 }
  func invalidateAll(root: PhysicalAddress) { otherCalls += 1 }
  func reset() {
    batches = []
    otherCalls = 0
  }
}

/// A page operation that changes every mapping of a page.
enum PageChange: String, CaseIterable, Sendable, CustomTestStringConvertible {
  case clearReference
  case clearBoth
  case referencedCount
  case writeProtect
  var testDescription: String { rawValue }

  func run(on pages: PageDatabase, _ frame: PhysicalAddress) {
    switch self {
    case .clearReference: pages.clearReference(frame)
    case .clearBoth: pages.clearAttributes([.referenced, .modified], of: frame)
    case .referencedCount: _ = pages.referencedCount(frame)
    case .writeProtect: pages.protectPage(frame, to: .read)
    }
  }
}

@Suite("page operations: invalidations decoded from the pv-list")
struct InvalidationRequestsTests {
  /// Where pmap `i` maps the shared frame.
  static func address(_ i: Int) -> VirtualAddress { VirtualAddress(truncating: 0x40_0000 &+ UInt64(i) << 12) }

  // 62 and fewer mappings: the owed bits fit below the sentinel. 63 and more: explicit requests,
  // and from the 63rd mapping on one bit stands for all.
  @Test(
    "each sink gets exactly the mappings that owe an invalidation",
    arguments: [1, 2, 8, 62, 63, 64, 65, 70], [1, 2])
  func exactRequests(mappings: Int, sinkCount: Int) throws {
    try withPVMachine(pageTableFrames: 400) { machine in
      let sinks = (0..<sinkCount).map { _ in BatchRecordingSink() }
      var pmaps: [any PVHandle] = []
      for i in 0..<mappings {
        let sink = sinks[i % sinkCount]
        if i % 2 == 0 {
          pmaps.append(
            try NativePmap(
              memory: machine.memory, allocator: machine.allocator, invalidation: sink, pages: machine.pages))
        } else {
          pmaps.append(
            try EPTPmap(memory: machine.memory, allocator: machine.allocator, invalidation: sink, pages: machine.pages))
        }
      }
      let frame = machine.dataFrame(3)
      for change in PageChange.allCases {
        // Every pmap maps the frame read/write; two in three are touched (A set), one in three
        // is not, so its entry owes nothing.
        for (i, p) in pmaps.enumerated() {
          try p.pvEnter(Self.address(i), frame, protection: .readWrite, access: [], options: [])
          if i % 3 != 1 { #expect(p.pvTouch(Self.address(i), write: i % 3 == 0)) }
        }
        for s in sinks { s.reset() }
        // The page's list, in order, and which of its mappings owe an invalidation.
        var list: [InvalidationRequest] = []
        machine.pages.forEachMapping(of: frame) { root, va in list.append(InvalidationRequest(root: root, page: va)) }
        let owing = Set(
          pmaps.indices.filter { $0 % 3 != 1 }.map { InvalidationRequest(root: pmaps[$0].root, page: Self.address($0)) }
        )
        // Up to the 62nd mapping of the list, exactly those; from the 63rd on (one bit for all),
        // every one of them when any of them owes.
        let lateOwe = list.dropFirst(62).contains { owing.contains($0) }
        let expected = Set(
          list.enumerated().filter { $0.offset < 62 ? owing.contains($0.element) : lateOwe }.map(\.element))
        change.run(on: machine.pages, frame)
        #expect(list.count == mappings)
        for (k, sink) in sinks.enumerated() {
          let roots = Set(pmaps.indices.filter { $0 % sinkCount == k }.map { pmaps[$0].root })
          let got = sink.batches.flatMap { $0 }
          #expect(sink.countMismatches == 0, "\(change): a view's count or second iteration differs")
          #expect(sink.otherCalls == 0, "\(change)")
          #expect(Set(got).count == got.count, "\(change): a request reported twice")
          #expect(Set(got) == expected.filter { roots.contains($0.root) }, "\(change), sink \(k)")
          if mappings < 63 {
            #expect(sink.batches.count == (got.isEmpty ? 0 : 1), "\(change): one call per sink")
          }
        }
        // Nothing the hardware recorded is left set where the operation clears it.
        for (i, p) in pmaps.enumerated() {
          let a = p.translation(of: Self.address(i))?.attributes ?? []
          switch change {
          case .clearReference, .clearBoth, .referencedCount: #expect(!a.contains(.referenced))
          case .writeProtect: #expect(!a.contains(.writable))
          }
        }
        expectPVInvariants(machine, pmaps, "after \(change)")
        for (i, p) in pmaps.enumerated() { try p.remove(VirtualRange(page: Self.address(i))) }
      }
    }
  }

  @Test("requests built elsewhere come through the view unchanged")
  func explicitRequests() {
    let made = (0..<5).map {
      InvalidationRequest(root: PhysicalAddress(UInt64($0) << 12), page: VirtualAddress(UInt64($0) << 21))
    }
    made.withUnsafeBufferPointer { buffer in
      let view = InvalidationRequests(buffer)
      #expect(view.count == 5 && !view.isEmpty && view.underestimatedCount == 5)
      #expect(Array(view) == made)
      #expect(Array(view) == made, "a second iteration")
    }
    let none = InvalidationRequests(UnsafeBufferPointer(start: nil, count: 0))
    #expect(none.isEmpty && Array(none).isEmpty)
  }
}
