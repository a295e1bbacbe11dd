import CKVM
import Glibc

/// The paging-related CPUID bits a KVM guest gets (SDM Vol. 2A, CPUID).
public struct GuestPagingFeatures: Hashable, Sendable, CustomStringConvertible {
  /// MAXPHYADDR, CPUID.80000008H:EAX[7:0].
  public var physicalAddressBits: Int
  /// 1 GiB pages, CPUID.80000001H:EDX[26]; without them PS in a PDPTE is reserved.
  public var supports1GBPages: Bool
  /// Execute-disable, CPUID.80000001H:EDX[20] (EFER.NXE may be set).
  public var noExecute: Bool
  /// SMEP, CPUID.(EAX=7,ECX=0):EBX[7].
  public var smep: Bool
  /// SMAP, CPUID.(EAX=7,ECX=0):EBX[20].
  public var smap: Bool

  public var description: String {
    "MAXPHYADDR \(physicalAddressBits), 1 GiB pages \(supports1GBPages ? "yes" : "no"), "
      + "NX \(noExecute ? "yes" : "no"), SMEP \(smep ? "yes" : "no"), SMAP \(smap ? "yes" : "no")"
  }
}

/// One virtual machine with one vCPU, created through `/dev/kvm`, whose guest-physical memory
/// is a host buffer the caller owns (KVM_SET_USER_MEMORY_REGION, slot 0 at guest-physical 0).
///
/// The guest's page-table walker writes accessed and dirty bits straight into that buffer, so
/// page tables built there by a pmap are the guest's page tables.
///
/// Corresponds to the userspace half of a KVM VMM (what QEMU's `kvm_init_vcpu` and
/// `kvm_cpu_exec` do), reduced to what the MMU comparison needs.
public final class KVMVirtualMachine {
  private let systemFD: Int32
  private let vmFD: Int32
  private let vcpuFD: Int32
  private let runArea: UnsafeMutablePointer<kvm_run>
  private let runSize: Int
  /// The paging features of the CPUID the guest was given.
  public let features: GuestPagingFeatures
  /// Guest MAXPHYADDR as given to the guest in CPUID leaf 0x8000_0008 (EAX bits 0-7).
  public var physicalAddressBits: Int { features.physicalAddressBits }

  /// What stopped the vCPU.
  public enum Exit: Equatable, Sendable {
    /// An `out` to `port` of `size` bytes.
    case output(port: UInt16, size: Int)
    /// An access to guest-physical `address` outside guest memory.
    case mmio(address: UInt64, isWrite: Bool)
    /// An `in` or any other exit reason, by its KVM_EXIT_* number.
    case other(reason: UInt32, detail: UInt64)
    /// `hlt` at CPL0.
    case halt
    /// Triple fault.
    case shutdown
    /// KVM could not emulate an instruction (KVM_EXIT_INTERNAL_ERROR, with its suberror).
    case internalError(suberror: UInt32)
  }

  /// Whether `/dev/kvm` is served by kvm_pvm (Pagetable-based Virtual Machine): the guest then
  /// runs in hardware ring 3 and its user mode may only use the lower half of the linear
  /// address space (the host kernel owns the upper half of the shadow tables); a CPL3 access to
  /// an upper-half address gets a not-present #PF whatever the guest's tables say.
  public static var isPagetableBasedVirtualMachine: Bool { access("/sys/module/kvm_pvm", F_OK) == 0 }

  /// The first line of why `/dev/kvm` is not usable here, or `nil` when it is (it can be
  /// opened read-write and answers KVM_GET_API_VERSION with 12).
  public static var unavailabilityReason: String? {
    let fd = open("/dev/kvm", O_RDWR | O_CLOEXEC)
    if fd < 0 { return "/dev/kvm cannot be opened read-write (errno \(errno))" }
    defer { close(fd) }
    let version = ckvm_ioctl(fd, ckvm_get_api_version(), nil)
    if version != 12 { return "/dev/kvm answers API version \(version), expected 12" }
    return nil
  }

  /// Creates the VM over `memory` (`size` bytes, page-aligned, used as guest-physical
  /// `0 ..< size`) and one vCPU that gets the CPUID KVM supports.
  ///
  /// - Throws: ``KVMError/unavailable(_:)`` when `/dev/kvm` cannot be used, ``KVMError/call(_:errno:)``
  ///   when a setup call fails. Nothing is left open on failure.
  public init(memory: UnsafeMutableRawPointer, size: UInt64) throws(KVMError) {
    if let reason = Self.unavailabilityReason { throw .unavailable(reason) }
    systemFD = open("/dev/kvm", O_RDWR | O_CLOEXEC)
    guard systemFD >= 0 else { throw .unavailable("/dev/kvm cannot be opened (errno \(errno))") }
    var opened: [Int32] = [systemFD]
    func fail(_ name: String) -> KVMError {
      let e = ckvm_errno()
      for fd in opened.reversed() { close(fd) }
      return .call(name, errno: e)
    }
    let vm = ckvm_ioctl_value(systemFD, ckvm_create_vm(), 0)
    guard vm >= 0 else { throw fail("KVM_CREATE_VM") }
    vmFD = vm
    opened.append(vm)
    var region = kvm_userspace_memory_region(
      slot: 0, flags: 0, guest_phys_addr: 0, memory_size: size, userspace_addr: UInt64(UInt(bitPattern: memory)))
    guard ckvm_ioctl(vmFD, ckvm_set_user_memory_region(), &region) == 0 else {
      throw fail("KVM_SET_USER_MEMORY_REGION")
    }
    let vcpu = ckvm_ioctl_value(vmFD, ckvm_create_vcpu(), 0)
    guard vcpu >= 0 else { throw fail("KVM_CREATE_VCPU") }
    vcpuFD = vcpu
    opened.append(vcpu)
    let mmapSize = ckvm_ioctl(systemFD, ckvm_get_vcpu_mmap_size(), nil)
    guard mmapSize > 0 else { throw fail("KVM_GET_VCPU_MMAP_SIZE") }
    let area = mmap(nil, Int(mmapSize), PROT_READ | PROT_WRITE, MAP_SHARED, vcpuFD, 0)
    guard let area, area != MAP_FAILED else { throw fail("mmap of the kvm_run area") }
    runSize = Int(mmapSize)
    runArea = area.assumingMemoryBound(to: kvm_run.self)
    do {
      features = try Self.installSupportedCPUID(system: systemFD, vcpu: vcpuFD)
    } catch {
      munmap(area, Int(mmapSize))
      for fd in opened.reversed() { close(fd) }
      throw error
    }
  }

  deinit {
    munmap(UnsafeMutableRawPointer(runArea), runSize)
    close(vcpuFD)
    close(vmFD)
    close(systemFD)
  }

  /// The paging features a guest of this host gets (KVM_GET_SUPPORTED_CPUID, all of which the
  /// harness gives its guest).
  ///
  /// - Throws: ``KVMError/unavailable(_:)`` or ``KVMError/call(_:errno:)``.
  public static func supportedFeatures() throws(KVMError) -> GuestPagingFeatures {
    if let reason = unavailabilityReason { throw .unavailable(reason) }
    let fd = open("/dev/kvm", O_RDWR | O_CLOEXEC)
    guard fd >= 0 else { throw .unavailable("/dev/kvm cannot be opened (errno \(errno))") }
    defer { close(fd) }
    return try withSupportedCPUID(system: fd) { _ throws(KVMError) in }
  }

  /// Gives the vCPU every CPUID leaf KVM supports (so CR4.SMEP/SMAP and EFER.NXE are accepted)
  /// and returns the paging features they report.
  private static func installSupportedCPUID(system: Int32, vcpu: Int32) throws(KVMError) -> GuestPagingFeatures {
    try withSupportedCPUID(system: system) { buffer throws(KVMError) in
      guard ckvm_ioctl(vcpu, ckvm_set_cpuid2(), buffer) == 0 else {
        throw .call("KVM_SET_CPUID2", errno: ckvm_errno())
      }
    }
  }

  /// Reads KVM_GET_SUPPORTED_CPUID, passes the kvm_cpuid2 buffer to `body`, returns the
  /// paging features it reports.
  private static func withSupportedCPUID(
    system: Int32, _ body: (UnsafeMutableRawPointer) throws(KVMError) -> Void
  ) throws(KVMError) -> GuestPagingFeatures {
    let capacity = 256
    let bytes = MemoryLayout<kvm_cpuid2>.size + capacity * MemoryLayout<kvm_cpuid_entry2>.stride
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 8)
    defer { buffer.deallocate() }
    buffer.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
    let header = buffer.assumingMemoryBound(to: kvm_cpuid2.self)
    header.pointee.nent = UInt32(capacity)
    guard ckvm_ioctl(system, ckvm_get_supported_cpuid(), buffer) == 0 else {
      throw .call("KVM_GET_SUPPORTED_CPUID", errno: ckvm_errno())
    }
    let entries = (buffer + MemoryLayout<kvm_cpuid2>.size).assumingMemoryBound(to: kvm_cpuid_entry2.self)
    // The architectural default MAXPHYADDR when leaf 0x8000_0008 is absent is 36.
    var features = GuestPagingFeatures(
      physicalAddressBits: 36, supports1GBPages: false, noExecute: false, smep: false, smap: false)
    for i in 0..<Int(header.pointee.nent) {
      let e = entries[i]
      switch (e.function, e.index) {
      case (0x8000_0008, _): features.physicalAddressBits = Int(e.eax & 0xff)
      case (0x8000_0001, _):
        features.noExecute = e.edx & (1 << 20) != 0
        features.supports1GBPages = e.edx & (1 << 26) != 0
      case (7, 0):
        features.smep = e.ebx & (1 << 7) != 0
        features.smap = e.ebx & (1 << 20) != 0
      default: break
      }
    }
    try body(buffer)
    return features
  }

  /// The value of model-specific register `index` (KVM_GET_MSRS), or `nil` when KVM does not
  /// implement it for this vCPU.
  public func modelSpecificRegister(_ index: UInt32) throws(KVMError) -> UInt64? {
    var value: UInt64 = 0
    let n = ckvm_get_msr(vcpuFD, index, &value)
    if n < 0 { throw .call("KVM_GET_MSRS", errno: ckvm_errno()) }
    return n == 1 ? value : nil
  }

  /// The general registers (KVM_GET_REGS).
  public func registers() throws(KVMError) -> kvm_regs {
    var r = kvm_regs()
    guard ckvm_ioctl(vcpuFD, ckvm_get_regs(), &r) == 0 else { throw .call("KVM_GET_REGS", errno: ckvm_errno()) }
    return r
  }

  /// Sets the general registers (KVM_SET_REGS).
  public func setRegisters(_ r: kvm_regs) throws(KVMError) {
    var r = r
    guard ckvm_ioctl(vcpuFD, ckvm_set_regs(), &r) == 0 else { throw .call("KVM_SET_REGS", errno: ckvm_errno()) }
  }

  /// The special registers: segments, descriptor tables, control registers, EFER (KVM_GET_SREGS).
  public func specialRegisters() throws(KVMError) -> kvm_sregs {
    var s = kvm_sregs()
    guard ckvm_ioctl(vcpuFD, ckvm_get_sregs(), &s) == 0 else { throw .call("KVM_GET_SREGS", errno: ckvm_errno()) }
    return s
  }

  /// Sets the special registers (KVM_SET_SREGS).
  public func setSpecialRegisters(_ s: kvm_sregs) throws(KVMError) {
    var s = s
    guard ckvm_ioctl(vcpuFD, ckvm_set_sregs(), &s) == 0 else { throw .call("KVM_SET_SREGS", errno: ckvm_errno()) }
  }

  /// Runs the vCPU until it exits to us (KVM_RUN), and says why.
  public func run() throws(KVMError) -> Exit {
    while true {
      if ckvm_ioctl_value(vcpuFD, ckvm_run(), 0) == 0 { break }
      let e = ckvm_errno()
      if e == EINTR || e == EAGAIN { continue }
      throw .call("KVM_RUN", errno: e)
    }
    let reason = runArea.pointee.exit_reason
    switch Int32(reason) {
    case KVM_EXIT_IO:
      let io = ckvm_run_io(runArea)
      if io.direction == UInt8(KVM_EXIT_IO_OUT) { return .output(port: io.port, size: Int(io.size)) }
      return .other(reason: reason, detail: UInt64(io.port))
    case KVM_EXIT_MMIO:
      var isWrite: Int32 = 0
      let address = ckvm_run_mmio_address(runArea, &isWrite)
      return .mmio(address: address, isWrite: isWrite != 0)
    case KVM_EXIT_HLT: return .halt
    case KVM_EXIT_SHUTDOWN: return .shutdown
    case KVM_EXIT_INTERNAL_ERROR: return .internalError(suberror: ckvm_run_internal_suberror(runArea))
    case KVM_EXIT_FAIL_ENTRY: return .other(reason: reason, detail: ckvm_run_fail_entry_reason(runArea))
    default: return .other(reason: reason, detail: 0)
    }
  }
}
