// pmap-fuzz: the libFuzzer target (see Scripts/fuzz.sh).
//
// Built normally, it replays inputs: `pmap-fuzz FILE...` runs each file through the
// differential checker and exits 1 on the first mismatch. Built by Scripts/fuzz.sh with
// `-sanitize=fuzzer,address -parse-as-library -DFUZZING`, it hands control to libFuzzer's driver, which mutates
// inputs to find one that makes the pmaps and the reference model disagree (or crashes).
import PmapDifferential

#if canImport(Glibc)
  import Glibc
#endif

/// Runs one input; traps on a mismatch so that libFuzzer records the input.
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
  let failures = runFuzzInput(bytes)
  if let first = failures.first { fatalError("pmap-fuzz: mismatch\n\(first)") }
  return 0
}

#if FUZZING
  // Built with -parse-as-library. SwiftPM links an executable's entry point under the name
  // `pmap_fuzz_main` and aliases `main` to it, so libFuzzer's own main is not used: this one
  // hands the process to libFuzzer's driver with the callback.
  @_silgen_name("LLVMFuzzerRunDriver")
  func llvmFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
  ) -> Int32

  @_cdecl("pmap_fuzz_main")
  public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var count = argc
    var arguments = argv
    return llvmFuzzerRunDriver(&count, &arguments) { data, size in fuzzOne(data, size) }
  }

  /// The conventional entry point, for tools that link libFuzzer's own main instead.
  @_cdecl("LLVMFuzzerTestOneInput")
  public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 { fuzzOne(data, size) }
#else
  /// The replay driver of normal builds.
  @main
  enum ReplayInputs {
    static func main() {
      var replayed = 0
      for path in CommandLine.arguments.dropFirst() {
        guard let file = fopen(path, "rb") else {
          print("pmap-fuzz: cannot open \(path)")
          exit(2)
        }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
          let n = fread(&buffer, 1, buffer.count, file)
          if n <= 0 { break }
          bytes += buffer[0..<n]
        }
        fclose(file)
        let failures = runFuzzInput(bytes)
        if let first = failures.first {
          print("pmap-fuzz: \(path): mismatch\n\(first)")
          exit(1)
        }
        replayed += 1
      }
      print("pmap-fuzz: \(replayed) inputs replayed, no mismatch")
    }
  }
#endif
