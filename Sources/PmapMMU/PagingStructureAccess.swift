import Pmap

/// Whether a walk is a real access or a side-effect-free look.
enum WalkMode: Sendable {
  /// An access: rights are checked and A/D written (as the policy says).
  case access
  /// A look for the TLB checker: no rights check, nothing written.
  case probe
}

/// How a native walk reaches paging-structure entries: directly in (host-)physical memory, or
/// through an EPT for a guest's tables.
protocol PagingStructureAccess {
  /// The entry at `address` (8-aligned), for reading.
  func entry(at address: UInt64) -> Result<EntryPointer, MMUFault>
  /// Called before the walk writes A/D into the entry at `address` (a write access to it).
  func prepareUpdate(at address: UInt64) -> Result<Void, MMUFault>
}

/// Paging structures in host-physical memory, reached through the direct map.
struct HostPhysicalAccess: PagingStructureAccess {
  let memory: PhysicalMemory

  func entry(at address: UInt64) -> Result<EntryPointer, MMUFault> {
    guard let p = memory.entryPointer(atPhysical: address) else { return .failure(.unbackedPhysicalAddress(address)) }
    return .success(p)
  }

  func prepareUpdate(at address: UInt64) -> Result<Void, MMUFault> { .success(()) }
}

extension PhysicalMemory {
  /// The entry at physical `address` (8-aligned), or `nil` outside the simulated RAM.
  func entryPointer(atPhysical address: UInt64) -> EntryPointer? {
    guard address & 7 == 0, address < size, size - address >= 8 else { return nil }
    return EntryPointer(pointer(to: PhysicalAddress(truncating: address)).assumingMemoryBound(to: UInt64.self))
  }

  /// Whether `count` bytes from physical `address` lie inside the simulated RAM.
  func contains(_ address: UInt64, count: Int) -> Bool {
    address < size && size - address >= UInt64(count)
  }
}

/// Bits 51 down to MAXPHYADDR: reserved in every present entry (native and EPT).
@inline(__always)
func reservedAddressBits(_ physicalAddressBits: Int) -> UInt64 {
  let all: UInt64 = (1 << 52) - 1
  return all & ~((1 << UInt64(physicalAddressBits)) - 1)
}

/// The frame field of an entry: bits 51:12.
let entryFrameMask: UInt64 = 0x000f_ffff_ffff_f000

/// Writes `bits` into an entry read as `old`, atomically: fails when the entry changed since.
@inline(__always)
func setAtomically(_ entry: EntryPointer, old: UInt64, bits: UInt64) -> Bool {
  if old | bits == old { return true }  // nothing to write: the CPU does not touch the entry
  return entry.compareExchange(expected: old, desired: old | bits).exchanged
}
