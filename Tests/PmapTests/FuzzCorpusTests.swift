import Foundation
import PmapDifferential
import Testing

/// The fuzzer's seed corpus (Fuzz/Corpus), replayed through the same differential checker the
/// fuzzer runs: every input there must pass, so an input that once found a bug stays a test.
@Suite("fuzz corpus replay")
struct FuzzCorpusTests {
  static var corpus: URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("Fuzz/Corpus")
  }

  @Test("every input of Fuzz/Corpus agrees with the reference model")
  func replayCorpus() throws {
    let files = try FileManager.default.contentsOfDirectory(at: Self.corpus, includingPropertiesForKeys: nil)
    #expect(files.count >= 10, "the seed corpus is missing")
    for file in files.sorted(by: { $0.path < $1.path }) {
      let bytes = [UInt8](try Data(contentsOf: file))
      let failures = runFuzzInput(bytes)
      #expect(failures.isEmpty, "\(file.lastPathComponent): \(failures.first ?? "")")
    }
  }

  @Test("a byte stream decodes into choices and runs dry")
  func byteChoices() {
    var choices = ByteChoices([7, 0x01, 0x02])
    #expect(choices.below(5) == 2)  // 7 % 5
    #expect(!choices.isExhausted)
    #expect(choices.below(1000) == 258)  // 0x0102 % 1000
    #expect(choices.isExhausted)
    #expect(choices.below(10) == 0)  // past the end reads zeros
  }
}
