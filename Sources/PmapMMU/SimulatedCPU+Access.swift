import Pmap
import PmapEPT

/// One translated piece of an access (within one page).
struct TranslatedPiece {
  var physical: UInt64
  var guestPhysical: UInt64?
  var fromTLB: Bool
}

extension SimulatedCPU {
  // MARK: Accesses

  /// Translates `linear` for an access of `type` at `privilege`, through the TLB, setting A/D
  /// on a walk, without moving data. `value` of the result is 0.
  ///
  /// - Precondition: an address space is loaded (``loadCR3(_:)`` or ``enterGuest(eptPointer:guestRoot:)``).
  public func translate(
    _ linear: UInt64, _ type: AccessType, privilege: PrivilegeLevel = .supervisor
  ) -> Result<CompletedAccess, MMUFault> {
    state.withLock { s in
      translate(&s, linear, type, privilege).map {
        CompletedAccess(
          value: 0, physicalAddress: PhysicalAddress(truncating: $0.physical),
          guestPhysicalAddress: $0.guestPhysical.map { PhysicalAddress(truncating: $0) }, fromTLB: $0.fromTLB)
      }
    }
  }

  /// Reads the little-endian 64-bit value at `linear` (which may cross a page boundary).
  public func read(_ linear: UInt64, privilege: PrivilegeLevel = .supervisor) -> Result<CompletedAccess, MMUFault> {
    var value: UInt64 = 0
    return withUnsafeMutableBytes(of: &value) { load(into: $0, from: linear, .read, privilege: privilege) }
  }

  /// Writes the little-endian 64-bit `value` at `linear` (which may cross a page boundary).
  public func write(
    _ value: UInt64, to linear: UInt64, privilege: PrivilegeLevel = .supervisor
  ) -> Result<CompletedAccess, MMUFault> {
    withUnsafeBytes(of: value) { store($0, to: linear, privilege: privilege) }
  }

  /// Fetches the 8 instruction bytes at `linear` (as a little-endian value).
  public func fetch(_ linear: UInt64, privilege: PrivilegeLevel = .supervisor) -> Result<CompletedAccess, MMUFault> {
    var value: UInt64 = 0
    return withUnsafeMutableBytes(of: &value) { load(into: $0, from: linear, .fetch, privilege: privilege) }
  }

  /// One 64-bit access of `type` at `linear`: a read, a write of `value`, or a fetch (for
  /// scripts and fuzzers that draw the access type).
  public func access(
    _ type: AccessType, at linear: UInt64, value: UInt64 = 0, privilege: PrivilegeLevel = .supervisor
  ) -> Result<CompletedAccess, MMUFault> {
    switch type {
    case .read: read(linear, privilege: privilege)
    case .write: write(value, to: linear, privilege: privilege)
    case .fetch: fetch(linear, privilege: privilege)
    }
  }

  /// ``read(_:privilege:)`` at a `VirtualAddress`.
  public func read(_ va: VirtualAddress, privilege: PrivilegeLevel = .supervisor) -> Result<CompletedAccess, MMUFault> {
    read(va.rawValue, privilege: privilege)
  }

  /// ``write(_:to:privilege:)`` at a `VirtualAddress`.
  public func write(
    _ value: UInt64, to va: VirtualAddress, privilege: PrivilegeLevel = .supervisor
  ) -> Result<CompletedAccess, MMUFault> {
    write(value, to: va.rawValue, privilege: privilege)
  }

  /// ``fetch(_:privilege:)`` at a `VirtualAddress`.
  public func fetch(_ va: VirtualAddress, privilege: PrivilegeLevel = .supervisor) -> Result<CompletedAccess, MMUFault>
  {
    fetch(va.rawValue, privilege: privilege)
  }

  /// Reads (or fetches, `type == .fetch`) `buffer.count` bytes from `linear`.
  ///
  /// Every page the range touches is translated, in address order, before any byte moves: a
  /// fault on a later page leaves the buffer unchanged (A/D already set for earlier pages stay
  /// set, as on hardware).
  /// - Precondition: `type` is `.read` or `.fetch`.
  public func load(
    into buffer: UnsafeMutableRawBufferPointer, from linear: UInt64, _ type: AccessType = .read,
    privilege: PrivilegeLevel = .supervisor
  ) -> Result<CompletedAccess, MMUFault> {
    precondition(type != .write, "SimulatedCPU.load: use store for writes")
    return access(linear, count: buffer.count, type, privilege) { offset, physical, length in
      buffer.baseAddress!.advanced(by: offset).copyMemory(
        from: memory.pointer(to: PhysicalAddress(truncating: physical)), byteCount: length)
    }.map { done in
      var value: UInt64 = 0
      withUnsafeMutableBytes(of: &value) { v in
        v.copyMemory(from: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer).prefix(8)))
      }
      return CompletedAccess(
        value: value, physicalAddress: done.physicalAddress, guestPhysicalAddress: done.guestPhysicalAddress,
        fromTLB: done.fromTLB)
    }
  }

  /// Writes `bytes` at `linear`, with the same all-pages-first rule as ``load(into:from:_:privilege:)``.
  public func store(
    _ bytes: UnsafeRawBufferPointer, to linear: UInt64, privilege: PrivilegeLevel = .supervisor
  ) -> Result<CompletedAccess, MMUFault> {
    access(linear, count: bytes.count, .write, privilege) { offset, physical, length in
      memory.pointer(to: PhysicalAddress(truncating: physical)).copyMemory(
        from: bytes.baseAddress!.advanced(by: offset), byteCount: length)
    }.map { done in
      var value: UInt64 = 0
      withUnsafeMutableBytes(of: &value) { v in v.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes.prefix(8))) }
      return CompletedAccess(
        value: value, physicalAddress: done.physicalAddress, guestPhysicalAddress: done.guestPhysicalAddress,
        fromTLB: done.fromTLB)
    }
  }

  /// Translates every page of `[linear, linear + count)`, then calls `move(offset, physical,
  /// length)` for each piece, all under the CPU's lock.
  private func access(
    _ linear: UInt64, count: Int, _ type: AccessType, _ privilege: PrivilegeLevel,
    move: (Int, UInt64, Int) -> Void
  ) -> Result<CompletedAccess, MMUFault> {
    state.withLock { s in
      var pieces: [(offset: Int, physical: UInt64, length: Int)] = []
      var first: TranslatedPiece?
      var offset = 0
      while offset < count || (count == 0 && first == nil) {
        let address = linear &+ UInt64(offset)
        let length = min(count - offset, Int(4096 - (address & 0xfff)))
        switch translate(&s, address, type, privilege) {
        case .failure(let f): return .failure(f)
        case .success(let piece):
          guard memory.contains(piece.physical, count: length) else {
            return .failure(.unbackedPhysicalAddress(piece.physical))
          }
          if first == nil { first = piece }
          pieces.append((offset, piece.physical, length))
        }
        if count == 0 { break }
        offset += length
      }
      for p in pieces where p.length > 0 { move(p.offset, p.physical, p.length) }
      let f = first!
      return .success(
        CompletedAccess(
          value: 0, physicalAddress: PhysicalAddress(truncating: f.physical),
          guestPhysicalAddress: f.guestPhysical.map { PhysicalAddress(truncating: $0) }, fromTLB: f.fromTLB))
    }
  }

  // MARK: Translation through the TLB

  func translate(
    _ s: inout CPUState, _ linear: UInt64, _ type: AccessType, _ privilege: PrivilegeLevel
  ) -> Result<TranslatedPiece, MMUFault> {
    guard let context = s.context else { preconditionFailure("SimulatedCPU: no address space loaded") }
    if cachesTranslations, let key = s.tlb.lookup(linear, in: context), let e = s.tlb.entries[key] {
      let allowed = Self.permits(e, type, privilege, s.control)
      if allowed && (type != .write || e.dirty) {
        s.tlb.statistics.hits += 1
        let offset = linear & e.size.offsetMask
        if checksStaleTranslations { check(&s, e, linear, type) }
        return .success(
          TranslatedPiece(
            physical: e.physicalBase | offset, guestPhysical: e.guestPhysicalBase.map { $0 | offset }, fromTLB: true))
      }
      // A clean entry cannot take a write (the walk must set D); an entry with too few rights
      // is dropped and the walk decides (a spurious fault's retry).
      s.tlb.entries[key] = nil
    }
    s.tlb.statistics.walks += 1
    switch context {
    case .native(let root):
      let walker = NativeWalker(memory: memory, control: s.control)
      switch walker.translate(linear, type, privilege: privilege, root: root) {
      case .failure(let f): return .failure(f)
      case .success(let t):
        if cachesTranslations {
          s.tlb.insert(
            TLBEntry(
              context: context, global: t.global, linearBase: linear & ~t.pageSize.offsetMask, size: t.pageSize,
              physicalBase: t.pageFrame.rawValue, guestPhysicalBase: nil, writable: t.writable,
              user: t.userAccessible, executeDisable: t.executeDisable, eptPermissions: nil,
              dirty: t.leafEntry & NativeBits.dirty != 0, eptPointer: nil))
        }
        return .success(TranslatedPiece(physical: t.physicalAddress.rawValue, guestPhysical: nil, fromTLB: false))
      }
    case .guest(_, let guestRoot):
      let eptp = s.eptPointer!
      let walker = NestedWalker(
        ept: EPTWalker(memory: memory, eptPointer: eptp, capabilities: s.eptCapabilities), guestControl: s.control)
      switch walker.translate(linear, type, privilege: privilege, guestRoot: guestRoot) {
      case .failure(let f): return .failure(f)
      case .success(let t):
        if cachesTranslations {
          let size = min(t.guest?.pageSize.rawValue ?? 3, t.ept.pageSize.rawValue)
          let pageSize = PageSize(rawValue: size)!
          let mask = pageSize.offsetMask
          let guestDirty = t.guest.map { $0.leafEntry & NativeBits.dirty != 0 } ?? true
          let eptDirty = !eptp.accessedDirtyEnabled || t.ept.leafEntry & EPTBits.dirty != 0
          s.tlb.insert(
            TLBEntry(
              context: context, global: t.guest?.global ?? false, linearBase: linear & ~mask, size: pageSize,
              physicalBase: t.hostPhysicalAddress.rawValue & ~mask,
              guestPhysicalBase: t.guestPhysicalAddress.rawValue & ~mask, writable: t.guest?.writable ?? true,
              user: t.guest?.userAccessible ?? true, executeDisable: t.guest?.executeDisable ?? false,
              eptPermissions: t.ept.permissions, dirty: guestDirty && eptDirty,
              eptPointer: eptp))
        }
        return .success(
          TranslatedPiece(
            physical: t.hostPhysicalAddress.rawValue, guestPhysical: t.guestPhysicalAddress.rawValue, fromTLB: false))
      }
    }
  }

  /// Whether a cached entry allows the access.
  static func permits(_ e: TLBEntry, _ type: AccessType, _ privilege: PrivilegeLevel, _ control: PagingControl) -> Bool
  {
    if let ept = e.eptPermissions {
      let needed: Protection =
        switch type {
        case .read: .read
        case .write: .write
        case .fetch: .execute
        }
      if !ept.contains(needed) { return false }
      if case .guest(_, nil) = e.context { return true }
    }
    return nativeAccessPermitted(
      writable: e.writable, user: e.user, executeDisable: e.executeDisable, type: type, privilege: privilege,
      control: control)
  }
}
