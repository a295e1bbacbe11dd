/// Why the KVM harness could not do what was asked.
public enum KVMError: Error, Equatable, Sendable, CustomStringConvertible {
  /// `/dev/kvm` cannot be used here (missing, no permission, wrong API version); the string is
  /// the one-line reason.
  case unavailable(String)
  /// A KVM or system call failed with `errno`.
  case call(String, errno: Int32)
  /// The guest stopped in a way the harness does not plan for (shutdown, emulation failure,
  /// an unknown port): the harness or the guest code is wrong, not the page tables.
  case unexpectedExit(String)
  /// The scenario cannot be run: an address collides with the harness's own mappings, a
  /// frame lies outside guest memory, and the like.
  case invalidScenario(String)

  public var description: String {
    switch self {
    case .unavailable(let reason): "KVM unavailable: \(reason)"
    case .call(let name, let errno): "\(name) failed: errno \(errno)"
    case .unexpectedExit(let what): "unexpected guest exit: \(what)"
    case .invalidScenario(let what): "invalid scenario: \(what)"
    }
  }
}
