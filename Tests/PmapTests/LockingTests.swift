import Pmap
import PmapDifferential
import PmapEPT
import PmapHost
import PmapNative
import Testing

@Suite("Locking: spin locks and the caller-serialized mode")
struct LockingTests {
  @Test("a spin lock excludes, try-lock fails while held, an elided lock never blocks")
  func spinLockBasics() {
    let word = UnsafeMutableRawPointer.allocate(byteCount: 4, alignment: 4)
    defer { word.deallocate() }
    word.storeBytes(of: 0, as: UInt32.self)
    let lock = SpinLock(word: word)
    #expect(!lock.isLocked)
    lock.lock()
    #expect(lock.isLocked)
    #expect(!lock.tryLock())
    lock.unlock()
    #expect(lock.tryLock())
    lock.unlock()
    #expect(!lock.isLocked)

    let elided = SpinLock(word: word, elided: true)
    elided.lock()
    #expect(!elided.isLocked, "an elided lock never touches its word")
    #expect(elided.tryLock())
    elided.unlock()

    // The release that stores whatever the mode: it frees a held lock, and leaves an elided
    // lock's word at 0 (which `lock()` never set).
    lock.lock()
    lock.unlockStoringAlways()
    #expect(!lock.isLocked)
    #expect(lock.tryLock())
    lock.unlockStoringAlways()
    elided.lock()
    elided.unlockStoringAlways()
    #expect(!elided.isLocked)
    #expect(lock.tryLock(), "the word an elided lock released is still free")
    lock.unlock()
  }

  /// Runs the same script on pmaps of both formats over a page database in `locking` mode;
  /// returns what the page operations reported.
  func script(_ locking: Locking) throws -> [String] {
    let machine = SimulatedMachine(ramSize: 16 << 20, pageTableFrames: 256)
    let pages = PageDatabase(
      memory: machine.memory, base: machine.dataFrame(0), pageCount: 64, allocator: machine.allocator,
      locking: locking)
    let native = try NativePmap(
      memory: machine.memory, allocator: machine.allocator, invalidation: machine.sink, pages: pages, locking: locking)
    let ept = try EPTPmap(
      memory: machine.memory, allocator: machine.allocator, invalidation: machine.sink, pages: pages, locking: locking)
    #expect(native.locking == locking && ept.locking == locking && pages.locking == locking)
    var log: [String] = []
    for i in 0..<16 {
      let frame = machine.dataFrame(i % 4)
      try native.enter(VirtualAddress(UInt64(0x1000 * (i + 1))), frame, protection: .readWrite)
      try ept.enter(VirtualAddress(UInt64(0x20_0000 + 0x1000 * i)), frame, protection: .all)
      if i % 3 == 0 { simulatedAccess(native, VirtualAddress(UInt64(0x1000 * (i + 1))), write: true) }
      if i % 5 == 0 { simulatedAccess(ept, VirtualAddress(UInt64(0x20_0000 + 0x1000 * i)), write: false) }
    }
    for i in 0..<4 {
      let f = machine.dataFrame(i)
      log.append("\(i): \(pages.mappingCount(of: f)) \(pages.isModified(f)) \(pages.referencedCount(f))")
      log.append("clear \(pages.clearModify(f)) \(pages.isModified(f))")
    }
    pages.protectPage(machine.dataFrame(1), to: .read)
    log.append("removed \(pages.removeAllMappings(machine.dataFrame(2)))")
    log.append("\(native.statistics) \(ept.statistics) \(pages.statistics)")
    #expect(native.checkInvariants() == nil)
    #expect(ept.checkInvariants() == nil)
    #expect(pages.checkInvariants() == nil)
    native.destroy()
    ept.destroy()
    #expect(pages.statistics.mappings == 0)
    return log
  }

  @Test("the caller-serialized mode behaves exactly as the locked one")
  func serializedMatchesLocked() throws {
    let locked = try script(.spinLocks)
    let serialized = try script(.callerSerialized)
    #expect(locked == serialized)
    #expect(locked.count == 10)
    #expect(locked[1] == "clear true false", "frame 0 was written through the native mapping")
  }

  @Test("a pmap whose locking differs from its page database's traps")
  func mismatchedLockingTraps() async {
    await #expect(processExitsWith: .failure) {
      let machine = SimulatedMachine(ramSize: 8 << 20, pageTableFrames: 64)
      let pmap = try NativePmap(
        memory: machine.memory, allocator: machine.allocator, invalidation: machine.sink, pages: machine.pages,
        locking: .callerSerialized)
      withExtendedLifetime(pmap) {}
    }
  }
}
