import Foundation
import Testing

/// Every committed fuzz input (Fuzz/corpus/TARGET: the seeds and the inputs hack/fuzz.sh found) replayed through
/// the built botrt-fuzz, one process per target: an input that traps, hangs or is refused by the replay fails here,
/// so a regression of a fixed finding fails `swift test`, not only a fuzz run.
///
/// The replays run one at a time, each on a thread of its own: a process waited for on the test runner's cooperative
/// threads (two on a 2-core machine) starves every other test of the run meanwhile.
@Suite(.serialized) struct FuzzCorpusTests {
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

  /// botrt-fuzz beside the test bundle (the same build directory).
  static func binary() throws -> String {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
      let candidate = dir.appendingPathComponent("botrt-fuzz").path
      if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
      dir = dir.deletingLastPathComponent()
    }
    let fallback = root.appendingPathComponent(".build/debug/botrt-fuzz").path
    guard FileManager.default.isExecutableFile(atPath: fallback) else {
      throw ReplayError(message: "botrt-fuzz was not built (swift build --build-tests builds it)")
    }
    return fallback
  }

  struct ReplayError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
  }

  static func run(_ args: [String]) async throws -> (status: Int32, output: String) {
    try await withCheckedThrowingContinuation { done in
      Thread.detachNewThread {
        do {
          done.resume(returning: try runBlocking(args))
        } catch {
          done.resume(throwing: error)
        }
      }
    }
  }

  static func runBlocking(_ args: [String]) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: try binary())
    p.arguments = args
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
  }

  static var corpusTargets: [String] {
    let dir = root.appendingPathComponent("Fuzz/corpus").path
    return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
  }

  /// Every target of botrt-fuzz has a committed corpus, and every corpus a target.
  @Test func everyTargetHasACorpus() async throws {
    let listed = try await Self.run(["--list"])
    #expect(listed.status == 0)
    let targets = listed.output.split(separator: "\n").map(String.init).sorted()
    #expect(targets.count >= 12)
    #expect(targets == Self.corpusTargets)
  }

  @Test(arguments: corpusTargets) func theCorpusReplays(target: String) async throws {
    let dir = Self.root.appendingPathComponent("Fuzz/corpus/\(target)").path
    let files = try FileManager.default.contentsOfDirectory(atPath: dir)
    #expect(!files.isEmpty)
    let r = try await Self.run([target, dir])
    #expect(r.status == 0, "botrt-fuzz \(target) \(dir) exited \(r.status):\n\(r.output.suffix(2000))")
    #expect(r.output.contains("\(target): \(files.count) inputs replayed"), "\(r.output.suffix(2000))")
  }
}
