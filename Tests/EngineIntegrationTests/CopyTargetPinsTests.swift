import EngineContract
import Foundation
import Testing

@testable import BackupEngine

/// Issue 14 item 5 for replicas, the engine alone: `copy` pins its target (`--to-expect-repository-id`,
/// `--to-expect-signing-key`), so a target replaced under the same location receives nothing and a vanished one is
/// not re-created; its result reports the target's identity.
@Suite struct CopyTargetPinsTests {
  /// Every file below `dir` (relative paths) with its contents.
  static func snapshotOfFiles(_ dir: String) -> [String: Data] {
    var out: [String: Data] = [:]
    guard let e = FileManager.default.enumerator(atPath: dir) else { return out }
    while let f = e.nextObject() as? String {
      var isDir: ObjCBool = false
      if FileManager.default.fileExists(atPath: dir + "/" + f, isDirectory: &isDir), !isDir.boolValue {
        out[f] = FileManager.default.contents(atPath: dir + "/" + f) ?? Data()
      }
    }
    return out
  }

  @Test func aPinnedTargetThatWasReplacedOrVanishedReceivesNothing() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/a.txt", Data("hello\n".utf8))
    try h.write("kek2", Data(Crypto.randomBytes(32)))
    try h.write("kek3", Data(Crypto.randomBytes(32)))
    #expect(try h.run(["init"]).code == 0)
    #expect(try h.run(["backup", h.dir + "/src"]).code == 0)
    let replica = h.dir + "/replica"
    let copy = ["copy", "--to", "file://" + replica, "--to-kms", "file://\(h.dir)/kek2", "--init-if-missing"]

    // The first copy creates the target and reports its identity beside the source's.
    let first = try h.run(copy)
    #expect(first.code == 0, "\(first.stderr)")
    let r = try #require(EngineResult.parse(first.resultLine))
    let id = try #require(r.targetRepositoryId)
    let key = try #require(r.targetSigningKey)
    #expect(EngineRepositoryURL.validPins(id: id, signingKey: key))
    #expect(r.targetRepository.map { EngineRepositoryURL.same($0, "file://" + replica) } == true, "\(r)")
    #expect(r.repositoryId != id && r.repository.map { EngineRepositoryURL.same($0, h.repoURL) } == true)
    let pins = [
      EngineFlag.long(EngineFlag.toExpectRepositoryID), id, EngineFlag.long(EngineFlag.toExpectSigningKey), key,
    ]

    // Copies with the pins work on the genuine target.
    try h.write("src/b.txt", Data("more\n".utf8))
    #expect(try h.run(["backup", h.dir + "/src"]).code == 0)
    let pinned = try h.run(copy + pins)
    #expect(pinned.code == 0, "\(pinned.stderr)")
    #expect((pinned.result["copied"] as? [[String: Any]])?.count == 1, "\(pinned.result)")

    // Malformed pins are a usage error.
    let bad = try h.run(copy + [EngineFlag.long(EngineFlag.toExpectRepositoryID), "xyz"])
    #expect(bad.code == EngineExitCode.usage, "\(bad.stderr)")

    // Someone with write access replaces the target with a repository of their own: refused with the primary's
    // refusal code, and the planted repository receives nothing (not a lock, not an audit record).
    try FileManager.default.removeItem(atPath: replica)
    let planted = try h.run(
      ["init", "--repo", "file://" + replica, "--kms", "file://\(h.dir)/kek2", "--quiet"], withRepo: false)
    #expect(planted.code == 0, "\(planted.stderr)")
    let before = Self.snapshotOfFiles(replica)
    let refused = try h.run(copy + pins)
    #expect(refused.code == EngineExitCode.integrity, "\(refused.stderr)")
    #expect(refused.stderr.contains("was expected"), "\(refused.stderr)")
    #expect(Self.snapshotOfFiles(replica) == before, "the planted repository was written to")
    // Without the pins the same copy would have written into it: the pins are what refuses it.
    #expect(r.targetRepositoryId != (planted.result["repositoryId"] as? String))

    // The target vanishes: a pinned copy does not re-create it, even with --init-if-missing.
    try FileManager.default.removeItem(atPath: replica)
    let vanished = try h.run(copy + pins)
    #expect(vanished.code == EngineExitCode.integrity, "\(vanished.stderr)")
    #expect(vanished.stderr.contains(id), "\(vanished.stderr)")
    #expect(!FileManager.default.fileExists(atPath: replica + "/config"))
  }
}
