import Glibc
import UVMLite

/// A swap store on a real file: slot `n` is bytes `n * 4096 ..< (n + 1) * 4096`, moved with
/// `pread` / `pwrite` (NetBSD's swap on a vnode, `swread` / `swwrite`, without the buffer cache).
///
/// The file is created (or truncated) and sized to `slotCount` pages; it is sparse until pages
/// are written. Closed, and removed when `removeOnClose`, when the store goes away.
public final class FileSwapStore: SwapStore {
  public let slotCount: Int
  /// The file's path.
  public let path: String
  private let fd: Int32
  private let removeOnClose: Bool

  /// Why the file could not be opened.
  public struct OpenError: Error, Equatable {
    /// `errno` of the failing call.
    public let code: Int32
  }

  /// Opens (creates or truncates) `path` as a swap file of `slotCount` pages.
  ///
  /// - Throws: ``OpenError`` with the errno of `open` or `ftruncate`.
  public init(path: String, slotCount: Int, removeOnClose: Bool = true) throws(OpenError) {
    precondition(slotCount >= 0, "FileSwapStore: negative size")
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw OpenError(code: errno) }
    guard ftruncate(fd, off_t(slotCount) << 12) == 0 else {
      let e = errno
      close(fd)
      throw OpenError(code: e)
    }
    self.fd = fd
    self.path = path
    self.slotCount = slotCount
    self.removeOnClose = removeOnClose
  }

  deinit {
    close(fd)
    if removeOnClose { unlink(path) }
  }

  public func writePage(_ source: UnsafeRawPointer, toSlot slot: Int) throws(SwapIOError) {
    guard slot >= 0, slot < slotCount else { throw .slotOutOfRange }
    var done = 0
    while done < 4096 {
      let n = pwrite(fd, source + done, 4096 - done, off_t(slot) << 12 + off_t(done))
      if n < 0 {
        if errno == EINTR { continue }
        throw .deviceError(errno)
      }
      if n == 0 { throw .deviceError(EIO) }
      done += n
    }
  }

  public func readPage(fromSlot slot: Int, into destination: UnsafeMutableRawPointer) throws(SwapIOError) {
    guard slot >= 0, slot < slotCount else { throw .slotOutOfRange }
    var done = 0
    while done < 4096 {
      let n = pread(fd, destination + done, 4096 - done, off_t(slot) << 12 + off_t(done))
      if n < 0 {
        if errno == EINTR { continue }
        throw .deviceError(errno)
      }
      if n == 0 { throw .deviceError(EIO) }  // short file: never written and truncated under us
      done += n
    }
  }
}
