import Foundation
import Testing

@testable import BackupEngine

/// Issue 14 items 5 and 6 through the engine binary: what a Job's result says about planted objects, and the pins.
@Suite struct CLIHostileRepositoryTests {
  /// A planted key file and a junk manifest: backup and restore succeed, and the result's warnings name both; the
  /// result reports the repository id and signing key, and pinning other values refuses (exit 5) before any work.
  @Test func plantedObjectsAreNamedInTheResultAndPinsRefuseAnotherRepository() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/a.txt", Data("hello\n".utf8))
    let first = try h.run(["backup", "--init-if-missing", h.dir + "/src"])
    #expect(first.code == 0, "\(first.stderr)")
    let repoID = try #require(first.result["repositoryId"] as? String)
    let signingKey = try #require(first.result["signingKey"] as? String)
    #expect(repoID.count == 32 && signingKey.count == 64)

    let keyFile = try #require(try FileManager.default.contentsOfDirectory(atPath: h.repo + "/keys").first)
    var planted = try #require(
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: h.repo + "/keys/" + keyFile)))
        as? [String: Any])
    planted["signature"] = nil
    planted["created"] = "2099-01-01T00:00:00Z"
    let plantedName = String(repeating: "0", count: 32)
    try JSONSerialization.data(withJSONObject: planted).write(to: URL(fileURLWithPath: h.repo + "/keys/" + plantedName))
    let junk = Hex.encode(Crypto.randomBytes(32))
    try Data("junk".utf8).write(to: URL(fileURLWithPath: h.repo + "/snapshots/" + junk))

    let pins = ["--expect-repository-id", repoID, "--expect-signing-key", signingKey]
    let b = try h.run(["backup"] + pins + [h.dir + "/src"])
    #expect(b.code == 0, "\(b.stderr)")
    let warnings = b.result["warnings"] as? [String] ?? []
    #expect(warnings.contains { $0.contains("keys/" + plantedName) && $0.contains("refused") }, "\(warnings)")
    #expect(warnings.contains { $0.contains("snapshots/" + junk) && $0.contains("skipped") }, "\(warnings)")
    let r = try h.run(["restore", "latest", "--target", h.dir + "/out"] + pins)
    #expect(r.code == 0, "\(r.stderr)")
    #expect(FileManager.default.contents(atPath: h.dir + "/out/src/a.txt") == Data("hello\n".utf8))
    let s = try h.run(["snapshots", "--json"])
    #expect(s.code == 0, "\(s.stderr)")

    let other = String(repeating: "ab", count: 16)
    let refused = try h.run(["restore", "latest", "--target", h.dir + "/out2", "--expect-repository-id", other])
    #expect(refused.code == 5)
    #expect(refused.stderr.contains("expected"), "\(refused.stderr)")
    #expect(!FileManager.default.fileExists(atPath: h.dir + "/out2"))
    let badKey = try h.run(["snapshots", "--expect-signing-key", String(repeating: "cd", count: 32)])
    #expect(badKey.code == 5)
    let malformed = try h.run(["snapshots", "--expect-repository-id", "nothex"])
    #expect(malformed.code == 2)
  }
}
