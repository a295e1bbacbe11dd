import Pmap
import PmapDifferential
import PmapEPT
import PmapHost
import PmapNative
import Testing

/// The user story: a guest's EPT pmap and the host VMM's native pmap map the same data frame,
/// and the VM system asks about and changes the page through the page database alone.
struct SharedFrame {
  let machine: SimulatedMachine
  let guest: EPTPmap
  let host: NativePmap
  let frame: PhysicalAddress
  /// Where the guest maps the frame (a guest-physical address).
  let gpa = VirtualAddress(0x20_0000)
  /// Where the host VMM maps it.
  let hva = VirtualAddress(0x7f00_0000_0000)

  var pages: PageDatabase { machine.pages }

  /// Both pmaps map data frame `n` (read/write, no access yet, so no A or D).
  init(_ machine: SimulatedMachine, frame n: Int = 0, hostOptions: EnterOptions = []) throws {
    self.machine = machine
    guest = try machine.makeEPTPmap()
    host = try machine.makeNativePmap()
    frame = machine.dataFrame(n)
    try guest.enter(gpa, frame, protection: .readWrite)
    try host.enter(hva, frame, protection: .readWrite, options: hostOptions)
  }

  func expectInvariants(_ context: String, sourceLocation: SourceLocation = #_sourceLocation) {
    expectPVInvariants(machine, [guest, host], context, sourceLocation: sourceLocation)
  }
}

/// Which of the two pmaps does something.
enum Side: String, CaseIterable, Sendable, CustomTestStringConvertible {
  case guest
  case host
  var testDescription: String { rawValue }
}

@Suite("page attributes across pmaps of different formats")
struct PageAttributeTests {
  @Test("a fresh shared page is neither referenced nor modified")
  func freshPage() throws {
    try withPVMachine { machine in
      let s = try SharedFrame(machine)
      #expect(!s.pages.isReferenced(s.frame))
      #expect(!s.pages.isModified(s.frame))
      #expect(s.pages.attributes(of: s.frame).intersection([.referenced, .modified]) == [])
      #expect(s.pages.mappingCount(of: s.frame) == 2)
      #expect(
        pvMappings(of: s.frame, in: s.pages)
          == [PVMapping(root: s.guest.root, va: s.gpa), PVMapping(root: s.host.root, va: s.hva)])
      #expect(!s.pages.clearReference(s.frame))
      #expect(!s.pages.clearModify(s.frame))
      #expect(s.pages.referencedCount(s.frame) == 0)
      s.expectInvariants("fresh")
    }
  }

  @Test("a guest write makes the page modified and referenced")
  func guestWrite() throws {
    try withPVMachine { machine in
      let s = try SharedFrame(machine)
      #expect(touch(s.guest, s.gpa, write: true))
      #expect(s.pages.isModified(s.frame))
      #expect(s.pages.isReferenced(s.frame))
      #expect(s.pages.attributes(of: s.frame).isSuperset(of: [.referenced, .modified]))
      // Only the guest's entry recorded it.
      #expect(s.guest.translation(of: s.gpa)?.attributes == [.referenced, .modified, .writable])
      #expect(s.host.translation(of: s.hva)?.attributes == [.writable])
      s.expectInvariants("after the guest's write")
    }
  }

  @Test("a host read of a fresh frame makes it referenced, not modified")
  func hostRead() throws {
    try withPVMachine { machine in
      let s = try SharedFrame(machine, frame: 5)
      #expect(touch(s.host, s.hva, write: false))
      #expect(s.pages.isReferenced(s.frame))
      #expect(!s.pages.isModified(s.frame))
      let attributes = s.pages.attributes(of: s.frame)
      #expect(attributes.contains(.referenced))
      #expect(!attributes.contains(.modified))
      // Another frame is not affected.
      #expect(!s.pages.isReferenced(machine.dataFrame(4)))
      #expect(!s.pages.isReferenced(machine.dataFrame(6)))
      s.expectInvariants("after the host's read")
    }
  }

  @Test("clearModify: true once, then not modified until the next write through either pmap", arguments: Side.allCases)
  func clearModifyUntilNextWrite(_ writer: Side) throws {
    try withPVMachine { machine in
      let s = try SharedFrame(machine)
      #expect(touch(s.guest, s.gpa, write: true))
      #expect(touch(s.host, s.hva, write: true))
      #expect(s.pages.isModified(s.frame))

      #expect(s.pages.clearModify(s.frame))
      #expect(!s.pages.isModified(s.frame))
      #expect(!s.pages.clearModify(s.frame))
      #expect(s.pages.isReferenced(s.frame), "clearModify must leave the referenced attribute")
      #expect(s.guest.translation(of: s.gpa)?.attributes.contains(.modified) == false)
      #expect(s.host.translation(of: s.hva)?.attributes.contains(.modified) == false)
      s.expectInvariants("after clearModify")

      // Reads through both do not make it modified.
      #expect(touch(s.guest, s.gpa, write: false))
      #expect(touch(s.host, s.hva, write: false))
      #expect(!s.pages.isModified(s.frame))

      // A write through one of them does.
      switch writer {
      case .guest: #expect(touch(s.guest, s.gpa, write: true))
      case .host: #expect(touch(s.host, s.hva, write: true))
      }
      #expect(s.pages.isModified(s.frame))
      #expect(s.pages.clearModify(s.frame))
      #expect(!s.pages.isModified(s.frame))
      s.expectInvariants("after the second clearModify")
    }
  }

  @Test("removing the guest's mapping after it dirtied the page keeps the page modified")
  func removeDirtyGuestMapping() throws {
    try withPVMachine { machine in
      let s = try SharedFrame(machine)
      #expect(touch(s.guest, s.gpa, write: true))
      #expect(s.pages.mappingCount(of: s.frame) == 2)

      try s.guest.remove(VirtualRange(page: s.gpa))
      #expect(s.guest.extract(s.gpa) == nil)
      #expect(s.pages.mappingCount(of: s.frame) == 1)
      #expect(pvMappings(of: s.frame, in: s.pages) == [PVMapping(root: s.host.root, va: s.hva)])
      // The host's entry never recorded anything: the attributes come from the page's cache.
      #expect(s.host.translation(of: s.hva)?.attributes == [.writable])
      #expect(s.pages.isModified(s.frame))
      #expect(s.pages.isReferenced(s.frame))
      s.expectInvariants("after removing the guest's mapping")

      #expect(s.pages.clearModify(s.frame))
      #expect(!s.pages.isModified(s.frame))
      #expect(s.pages.clearReference(s.frame))
      #expect(!s.pages.isReferenced(s.frame))
      s.expectInvariants("after clearing the cache")
    }
  }

  enum RemoveAll: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case protectNone = "protectPage(to: [])"
    case removeAllMappings = "removeAllMappings"
    var testDescription: String { rawValue }
  }

  @Test("removing every mapping of the page empties both pmaps", arguments: RemoveAll.allCases)
  func removeEveryMapping(_ how: RemoveAll) throws {
    try withPVMachine { machine in
      let s = try SharedFrame(machine, hostOptions: .wired)
      #expect(touch(s.guest, s.gpa, write: true))
      #expect(touch(s.host, s.hva, write: false))
      #expect(s.guest.statistics == PmapStatistics(residentPages: 1, wiredPages: 0, pageTablePages: 4))
      #expect(s.host.statistics == PmapStatistics(residentPages: 1, wiredPages: 1, pageTablePages: 4))
      #expect(s.pages.statistics.mappings == 2)
      #expect(s.pages.statistics.overflowNodesInUse == 1)
      machine.sink.reset()

      switch how {
      case .protectNone: s.pages.protectPage(s.frame, to: [])
      case .removeAllMappings: #expect(s.pages.removeAllMappings(s.frame) == 2)
      }

      #expect(s.guest.extract(s.gpa) == nil)
      #expect(s.host.extract(s.hva) == nil)
      #expect(pvInvalidated(machine, s.gpa, root: s.guest.root), "the guest's entry had A set")
      #expect(pvInvalidated(machine, s.hva, root: s.host.root), "the host's entry had A set")
      #expect(s.pages.mappingCount(of: s.frame) == 0)
      #expect(pvMappings(of: s.frame, in: s.pages).isEmpty)
      #expect(s.pages.statistics.mappings == 0)
      #expect(s.pages.statistics.overflowNodesInUse == 0)
      #expect(s.guest.statistics == PmapStatistics(residentPages: 0, wiredPages: 0, pageTablePages: 1))
      #expect(s.host.statistics == PmapStatistics(residentPages: 0, wiredPages: 0, pageTablePages: 1))
      // Two roots and the pv pool: every page-table page went back.
      #expect(machine.allocator.framesInUse == 2 + s.pages.statistics.poolFrames)
      // What the entries recorded is cached.
      #expect(s.pages.isModified(s.frame))
      #expect(s.pages.isReferenced(s.frame))
      s.expectInvariants("after removing every mapping")

      // Nothing left to remove.
      #expect(s.pages.removeAllMappings(s.frame) == 0)
      s.expectInvariants("after removing nothing")
    }
  }

  @Test("protectPage(to: .read) write-protects every mapping and keeps D")
  func writeProtectPage() throws {
    try withPVMachine { machine in
      let machineGuest = try machine.makeEPTPmap()
      let s = try SharedFrame(machine)
      // A third mapping, executable, in another guest.
      let other = VirtualAddress(0x40_0000)
      try machineGuest.enter(other, s.frame, protection: .all)
      #expect(touch(s.guest, s.gpa, write: true))
      machine.sink.reset()

      s.pages.protectPage(s.frame, to: .read)
      for (name, t) in [
        ("guest", s.guest.translation(of: s.gpa)), ("host", s.host.translation(of: s.hva)),
        ("other guest", machineGuest.translation(of: other)),
      ] {
        let t = try #require(t, "\(name) lost its mapping")
        #expect(!t.protection.contains(.write), "\(name)")
        #expect(t.protection.contains(.read), "\(name)")
        #expect(t.frame == s.frame, "\(name)")
        #expect(!t.attributes.contains(.writable), "\(name)")
      }
      #expect(s.guest.translation(of: s.gpa)?.attributes == [.referenced, .modified], "D must be kept")
      #expect(pvInvalidated(machine, s.gpa, root: s.guest.root), "the guest's entry had A set and lost W")
      #expect(s.pages.mappingCount(of: s.frame) == 3)
      #expect(s.pages.isModified(s.frame))
      // Writes are now refused by the MMU.
      #expect(!touch(s.guest, s.gpa, write: true))
      #expect(!touch(s.host, s.hva, write: true))
      #expect(!touch(machineGuest, other, write: true))
      #expect(s.pages.isModified(s.frame), "still modified after the write-protect")
      expectPVInvariants(machine, [s.guest, s.host, machineGuest], "after protectPage(to: .read)")

      // A protection with write changes nothing.
      s.pages.protectPage(s.frame, to: .all)
      #expect(s.guest.translation(of: s.gpa)?.protection == .read)
      #expect(machineGuest.translation(of: other)?.protection == .readExecute)

      #expect(s.pages.clearModify(s.frame))
      #expect(!s.pages.isModified(s.frame))
      expectPVInvariants(machine, [s.guest, s.host, machineGuest], "after clearModify")
    }
  }

  @Test("referencedCount counts the mappings with A and clears them")
  func referencedCount() throws {
    try withPVMachine { machine in
      let s = try SharedFrame(machine)
      #expect(s.pages.referencedCount(s.frame) == 0)
      #expect(touch(s.guest, s.gpa, write: false))
      #expect(touch(s.host, s.hva, write: false))
      #expect(s.pages.referencedCount(s.frame) == 2)
      #expect(s.guest.translation(of: s.gpa)?.attributes.contains(.referenced) == false)
      #expect(s.host.translation(of: s.hva)?.attributes.contains(.referenced) == false)
      #expect(s.pages.referencedCount(s.frame) == 0)
      #expect(!s.pages.isReferenced(s.frame))
      s.expectInvariants("after counting")

      #expect(touch(s.host, s.hva, write: false))
      #expect(s.pages.referencedCount(s.frame) == 1)
      #expect(s.pages.referencedCount(s.frame) == 0)

      // A reference left by a mapping that is gone counts once, then is cleared.
      #expect(touch(s.guest, s.gpa, write: false))
      try s.guest.remove(VirtualRange(page: s.gpa))
      #expect(s.pages.referencedCount(s.frame) == 1)
      #expect(s.pages.referencedCount(s.frame) == 0)
      #expect(!s.pages.isReferenced(s.frame))
      s.expectInvariants("after counting the cached reference")
    }
  }

  enum ClearOperation: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case clearReference
    case referencedCount
    case clearModify
    var testDescription: String { rawValue }
  }

  @Test(
    "clearing A or D of an entry with A set invalidates that address in that pmap", arguments: ClearOperation.allCases)
  func clearingInvalidates(_ operation: ClearOperation) throws {
    try withPVMachine { machine in
      let s = try SharedFrame(machine)
      let write = operation == .clearModify
      #expect(touch(s.guest, s.gpa, write: write))
      #expect(touch(s.host, s.hva, write: write))
      machine.sink.reset()
      switch operation {
      case .clearReference: #expect(s.pages.clearReference(s.frame))
      case .referencedCount: #expect(s.pages.referencedCount(s.frame) == 2)
      case .clearModify: #expect(s.pages.clearModify(s.frame))
      }
      #expect(pvInvalidated(machine, s.gpa, root: s.guest.root))
      #expect(pvInvalidated(machine, s.hva, root: s.host.root))
      s.expectInvariants("after \(operation)")
    }
  }

  @Test(
    "clearing the reference of a modified page: not referenced, still modified",
    arguments: [ClearOperation.clearReference, .referencedCount])
  func clearReferenceOfModifiedPage(_ operation: ClearOperation) throws {
    try withPVMachine { machine in
      let s = try SharedFrame(machine)
      #expect(touch(s.guest, s.gpa, write: true))
      #expect(s.pages.isModified(s.frame))
      switch operation {
      case .referencedCount: #expect(s.pages.referencedCount(s.frame) == 1)
      default: #expect(s.pages.clearReference(s.frame))
      }
      #expect(s.guest.translation(of: s.gpa)?.attributes.contains(.referenced) == false)
      // pmap_clear_reference / pmap_ts_referenced: the page is not referenced until the next
      // access, and remains modified.
      #expect(!s.pages.isReferenced(s.frame), "no access since the clear")
      #expect(s.pages.isModified(s.frame), "the write is not forgotten")
      #expect(s.pages.referencedCount(s.frame) == 0)
      s.expectInvariants("after clearing the reference of a modified page")

      // The next read makes it referenced again.
      #expect(touch(s.host, s.hva, write: false))
      #expect(s.pages.isReferenced(s.frame))
    }
  }
}

/// One combination of pmaps sharing a frame, for ``PageAttributeCombinationTests``.
struct PVCombination: Sendable, CustomTestStringConvertible {
  enum Layout: String, Sendable, CaseIterable {
    case allNative
    case allEPT
    case alternating
  }
  var count: Int
  var layout: Layout
  /// Whether the EPT pmaps have hardware A/D (irrelevant for `allNative`).
  var eptAccessedDirty: Bool

  var kinds: [PVKind] {
    let ept: PVKind = eptAccessedDirty ? .ept : .eptNoAD
    return (0..<count).map { i in
      switch layout {
      case .allNative: .native
      case .allEPT: ept
      case .alternating: i % 2 == 0 ? .native : ept
      }
    }
  }

  var testDescription: String {
    "\(count) × \(layout.rawValue)\(layout == .allNative ? "" : eptAccessedDirty ? " (EPT A/D)" : " (EPT without A/D)")"
  }

  static var all: [PVCombination] {
    var result: [PVCombination] = []
    for count in 1...8 {
      for layout in Layout.allCases {
        for ad in layout == .allNative ? [true] : [true, false] {
          result.append(PVCombination(count: count, layout: layout, eptAccessedDirty: ad))
        }
      }
    }
    return result
  }
}

/// An access a test makes through one mapping.
enum PVAccess: Sendable {
  case none
  case read
  case write
}

@Suite("page attributes over 1 to 8 pmaps of mixed formats")
struct PageAttributeCombinationTests {
  /// The subsets of mappings touched, and how, for `n` pmaps.
  static func patterns(_ n: Int) -> [[PVAccess]] {
    var result: [[PVAccess]] = [
      Array(repeating: .none, count: n),
      Array(repeating: .read, count: n),
      Array(repeating: .write, count: n),
      (0..<n).map { $0 % 2 == 0 ? .read : .write },
      (0..<n).map { $0 < n / 2 ? .write : .none },
    ]
    for j in 0..<n {
      result.append((0..<n).map { $0 == j ? .read : .none })
      result.append((0..<n).map { $0 == j ? .write : .none })
    }
    return result
  }

  @Test("isReferenced, isModified and referencedCount follow what was touched", arguments: PVCombination.all)
  func touchedSubsets(_ combination: PVCombination) throws {
    try withPVMachine { machine in
      let kinds = combination.kinds
      let pmaps = try kinds.map { try $0.make(on: machine) }
      let n = pmaps.count
      let noAD = kinds.map { $0 == .eptNoAD }
      let noADCount = noAD.filter { $0 }.count
      let pages = machine.pages
      for (k, pattern) in Self.patterns(n).enumerated() {
        let frame = machine.dataFrame(k)
        let vas = (0..<n).map { VirtualAddress(UInt64($0 + 1) << 30 | UInt64(k) << 12) }
        let context = "pattern \(k) \(pattern)"
        for i in 0..<n {
          try pmaps[i].pvEnter(vas[i], frame, protection: .readWrite, access: [], options: [])
        }
        #expect(pages.mappingCount(of: frame) == n)
        expectPVInvariants(machine, pmaps, "\(context): mapped")

        for i in 0..<n where pattern[i] != .none {
          #expect(pmaps[i].pvTouch(vas[i], write: pattern[i] == .write))
        }
        let touched = pattern.map { $0 != .none }
        let referenced = (0..<n).filter { touched[$0] || noAD[$0] }.count
        let modified = pattern.contains(.write) || noADCount > 0
        #expect(pages.isReferenced(frame) == (referenced > 0), "\(context)")
        #expect(pages.isModified(frame) == modified, "\(context)")
        expectPVInvariants(machine, pmaps, "\(context): touched")

        #expect(pages.referencedCount(frame) == referenced, "\(context)")
        expectPVInvariants(machine, pmaps, "\(context): after referencedCount")
        // A is cleared except where the pmap has no hardware A/D; D is untouched.
        #expect(pages.referencedCount(frame) == noADCount, "\(context): second count")
        #expect(pages.isReferenced(frame) == (noADCount > 0), "\(context): after counting")
        #expect(pages.isModified(frame) == modified, "\(context): after counting")
        expectPVInvariants(machine, pmaps, "\(context): after the second referencedCount")

        #expect(pages.clearModify(frame) == modified, "\(context)")
        #expect(pages.isModified(frame) == (noADCount > 0), "\(context): after clearModify")
        #expect(pages.clearReference(frame) == (noADCount > 0), "\(context)")
        #expect(pages.isReferenced(frame) == (noADCount > 0), "\(context): after clearReference")
        #expect(pages.clearModify(frame) == (noADCount > 0), "\(context): second clearModify")
        expectPVInvariants(machine, pmaps, "\(context): after the clears")

        // Without the no-A/D mappings, the normal behaviour returns.
        for i in 0..<n where noAD[i] { try pmaps[i].remove(VirtualRange(page: vas[i])) }
        #expect(pages.mappingCount(of: frame) == n - noADCount)
        if noADCount > 0 {
          // Their A and D went to the page's cache.
          #expect(pages.isReferenced(frame), "\(context): cached from the removed mappings")
          #expect(pages.isModified(frame), "\(context): cached from the removed mappings")
          #expect(pages.clearModify(frame), "\(context)")
          #expect(pages.clearReference(frame), "\(context)")
        }
        #expect(!pages.isReferenced(frame), "\(context): normal behaviour")
        #expect(!pages.isModified(frame), "\(context): normal behaviour")
        #expect(!pages.clearReference(frame), "\(context)")
        #expect(!pages.clearModify(frame), "\(context)")
        #expect(pages.referencedCount(frame) == 0, "\(context)")
        expectPVInvariants(machine, pmaps, "\(context): only mappings with hardware A/D left")
        if let i = (0..<n).first(where: { !noAD[$0] }) {
          #expect(pmaps[i].pvTouch(vas[i], write: false))
          #expect(pages.isReferenced(frame), "\(context): read again")
          #expect(!pages.isModified(frame), "\(context): read again")
          #expect(pmaps[i].pvTouch(vas[i], write: true))
          #expect(pages.isModified(frame), "\(context): written again")
        }

        #expect(pages.removeAllMappings(frame) == n - noADCount)
        for i in 0..<n { #expect(pmaps[i].extract(vas[i]) == nil) }
        expectPVInvariants(machine, pmaps, "\(context): all removed")
      }
      #expect(machine.pages.statistics.mappings == 0)
      for pmap in pmaps { #expect(pmap.statistics.residentPages == 0) }
    }
  }
}
