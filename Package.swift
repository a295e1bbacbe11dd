// swift-tools-version: 6.2
//
// swift-pmap: x86-64 page tables (native and Intel EPT) after NetBSD's pmap(9).
//
// The library modules (Pmap, PmapNative, PmapEPT) import nothing but the standard library and
// Synchronization, and build for bare metal with Embedded Swift (see .ci/run). Host-only code
// (simulated RAM, benchmark) lives in its own targets.
import PackageDescription

let package = Package(
  name: "swift-pmap",
  products: [
    .library(name: "Pmap", targets: ["Pmap"]),
    .library(name: "PmapNative", targets: ["PmapNative"]),
    .library(name: "PmapEPT", targets: ["PmapEPT"]),
    .library(name: "PmapHost", targets: ["PmapHost"]),
    .library(name: "PmapDifferential", targets: ["PmapDifferential"]),
    .library(name: "UVMLite", targets: ["UVMLite"]),
    .library(name: "PmapMMU", targets: ["PmapMMU"]),
    .executable(name: "pmap-bench", targets: ["pmap-bench"]),
    .executable(name: "pmap-fuzz", targets: ["pmap-fuzz"]),
    .executable(name: "pmap-demo", targets: ["pmap-demo"]),
    .executable(name: "pmap-kvm-compare", targets: ["pmap-kvm-compare"]),
  ],
  targets: [
    .target(name: "Pmap"),
    .target(name: "PmapNative", dependencies: ["Pmap"]),
    .target(name: "PmapEPT", dependencies: ["Pmap"]),
    .target(name: "PmapHost", dependencies: ["Pmap", "PmapNative", "PmapEPT"]),
    // Built for bare metal in CI to force specialisation of all generic library code.
    .target(name: "PmapEmbeddedCheck", dependencies: ["Pmap", "PmapNative", "PmapEPT"]),
    // Host-only: the reference model and randomized driver shared by the tests and the fuzzer.
    .target(name: "PmapDifferential", dependencies: ["Pmap", "PmapNative", "PmapEPT", "PmapHost", "PmapMMU"]),
    // The libFuzzer target (Scripts/fuzz.sh); built normally it replays inputs.
    .executableTarget(name: "pmap-fuzz", dependencies: ["PmapDifferential"]),
    .executableTarget(name: "pmap-bench", dependencies: ["Pmap", "PmapNative", "PmapEPT", "PmapHost", "UVMLite"]),
    // Pageable guest memory: fault path, page queues, pagedaemon, swap (Embedded-clean).
    .target(name: "UVMLite", dependencies: ["Pmap", "PmapNative", "PmapEPT"]),
    // Host-only UVMLite pieces: the file-backed swap store, the software MMU.
    .target(name: "UVMLiteHost", dependencies: ["UVMLite"]),
    .executableTarget(
      name: "pmap-demo",
      dependencies: ["Pmap", "PmapNative", "PmapEPT", "PmapHost", "PmapMMU", "UVMLite", "UVMLiteHost"]),
    .testTarget(
      name: "UVMLiteTests", dependencies: ["Pmap", "PmapNative", "PmapEPT", "PmapHost", "UVMLite", "UVMLiteHost"]),
    // Host-only model of the x86 MMU and EPT (issue 4): used by tests and tools, never by a library.
    .target(name: "PmapMMU", dependencies: ["Pmap", "PmapNative", "PmapEPT", "PmapHost"]),
    .testTarget(
      name: "PmapTests",
      dependencies: ["Pmap", "PmapNative", "PmapEPT", "PmapHost", "PmapEmbeddedCheck", "PmapDifferential", "PmapMMU"]),
    .testTarget(name: "PmapMMUTests", dependencies: ["Pmap", "PmapNative", "PmapEPT", "PmapHost", "PmapMMU"]),
    // Host-only: the KVM comparison harness (Linux /dev/kvm) and its command-line runner.
    .target(name: "CKVM"),
    .target(name: "PmapKVM", dependencies: ["CKVM", "Pmap", "PmapNative", "PmapHost", "PmapMMU"]),
    .executableTarget(name: "pmap-kvm-compare", dependencies: ["PmapKVM"]),
    .testTarget(name: "PmapKVMTests", dependencies: ["PmapKVM", "Pmap", "PmapNative", "PmapHost", "PmapMMU"]),
  ],
  swiftLanguageModes: [.v6]
)
