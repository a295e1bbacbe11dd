import Pmap
import PmapEPT
import PmapHost
import PmapMMU
import PmapNative
import Testing

// Entry bits, spelled out from the SDM (not taken from the library).
let bitP: UInt64 = 1 << 0
let bitRW: UInt64 = 1 << 1
let bitUS: UInt64 = 1 << 2
let bitA: UInt64 = 1 << 5
let bitD: UInt64 = 1 << 6
let bitPS: UInt64 = 1 << 7
let bitG: UInt64 = 1 << 8
let bitXD: UInt64 = 1 << 63
let eptR: UInt64 = 1 << 0
let eptW: UInt64 = 1 << 1
let eptX: UInt64 = 1 << 2
let eptWB: UInt64 = 6 << 3
let eptLarge: UInt64 = 1 << 7
let eptA: UInt64 = 1 << 8
let eptD: UInt64 = 1 << 9
let eptRWX: UInt64 = 7

/// Hand-built paging structures in a small simulated RAM: tests set every bit of every level.
final class Tables {
  let ram: SimulatedRAM
  private var next: UInt64 = 0x1000
  /// Frames at and above this address are data (tables come from below it).
  let dataBase: UInt64 = 0x40_0000

  init(size: UInt64 = 16 << 20) { ram = SimulatedRAM(size: size) }

  var memory: PhysicalMemory { ram.memory }

  /// A fresh zeroed table frame.
  func table() -> UInt64 {
    defer { next += 0x1000 }
    precondition(next < dataBase)
    return next
  }

  func load(_ address: UInt64) -> UInt64 { ram.load(at: PhysicalAddress(address)) }
  func store(_ value: UInt64, at address: UInt64) { ram.store(value, at: PhysicalAddress(address)) }

  /// The address of entry `index` of `table`.
  func slot(_ table: UInt64, _ index: UInt64) -> UInt64 { table + index * 8 }

  /// Maps `linear` to `physical` with a leaf at `leafLevel`, creating tables under `root`
  /// (`levels` deep) as needed. Table entries get `tableFlags` (or `flags[level]`), the leaf
  /// `leafFlags` (or `flags[leafLevel]`); `PS` is added to a large leaf. Returns the address of
  /// the entry at each level.
  @discardableResult
  func map(
    _ linear: UInt64, to physical: UInt64, root: UInt64, levels: Int = 4, leafLevel: Int = 1,
    tableFlags: UInt64 = bitP | bitRW | bitUS, leafFlags: UInt64 = bitP | bitRW | bitUS, flags: [Int: UInt64] = [:],
    largeBit: UInt64 = bitPS
  ) -> [Int: UInt64] {
    var entries: [Int: UInt64] = [:]
    var current = root
    var level = levels
    while true {
      let index = (linear >> UInt64(12 + 9 * (level - 1))) & 511
      let address = slot(current, index)
      entries[level] = address
      if level == leafLevel {
        let size: UInt64 = 1 << UInt64(12 + 9 * (level - 1))
        let bits = (flags[level] ?? leafFlags) | (level > 1 ? largeBit : 0)
        store((physical & ~(size - 1) & 0x000f_ffff_ffff_f000) | bits, at: address)
        return entries
      }
      var e = load(address)
      if e & 0x000f_ffff_ffff_f000 == 0 {
        e = table()
      } else {
        e &= 0x000f_ffff_ffff_f000
      }
      store(e | (flags[level] ?? tableFlags), at: address)
      current = e
      level -= 1
    }
  }
}

/// The linear address with these indices (four-level, lower half) plus `offset`.
func linear(_ pml4: UInt64, _ pdpt: UInt64 = 0, _ pd: UInt64 = 0, _ pt: UInt64 = 0, offset: UInt64 = 0) -> UInt64 {
  pml4 << 39 | pdpt << 30 | pd << 21 | pt << 12 | offset
}

/// The page fault of a result, or `nil`.
func pageFault<T>(_ r: Result<T, MMUFault>) -> PageFault? {
  if case .failure(let f) = r { return f.pageFault }
  return nil
}

/// The EPT violation of a result, or `nil`.
func violation<T>(_ r: Result<T, MMUFault>) -> EPTViolation? {
  if case .failure(let f) = r { return f.eptViolation }
  return nil
}

/// The error of a result, or `nil`.
func failure<T>(_ r: Result<T, MMUFault>) -> MMUFault? {
  if case .failure(let f) = r { return f }
  return nil
}

/// The success value of a result, or `nil`.
func success<T>(_ r: Result<T, MMUFault>) -> T? {
  if case .success(let t) = r { return t }
  return nil
}

/// An EPT pointer for `root`: write-back, four levels, A/D as asked.
func eptPointer(_ root: UInt64, accessedDirty: Bool) -> EPTPointer {
  EPTPointer(rawValue: root | 6 | 3 << 3 | (accessedDirty ? 1 << 6 : 0))
}

/// Runs `body` with a machine whose RAM outlives every pmap `body` made (a pmap's deinit walks
/// its tables).
func withMachine<R>(_ body: (SimulatedMachine) throws -> R) rethrows -> R {
  var machine: SimulatedMachine? = SimulatedMachine(ramSize: 32 << 20, pageTableFrames: 512)
  let ram = machine!.ram
  defer {
    machine = nil
    withExtendedLifetime(ram) {}
  }
  return try body(machine!)
}
