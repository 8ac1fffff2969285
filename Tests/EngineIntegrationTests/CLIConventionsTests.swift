import EngineContract
import Foundation
import Testing

/// The conventions restic users know: `version`, restic's exit codes, machine output on stdout, env fallbacks.
@Suite struct CLIConventionsTests {
  /// `botrt-engine version` and `--version` print the one version; every result carries it as `engineVersion`.
  @Test func versionIsPrintedAndInTheResult() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    for args in [["version"], ["--version"]] {
      let r = try h.run(args, withRepo: false)
      #expect(r.code == 0, "\(args): \(r.stderr)")
      #expect(String(decoding: r.stdout, as: UTF8.self).contains(EngineVersion.current), "\(args)")
    }
    #expect(try h.run(["init"]).code == 0)
    let s = try h.run(["snapshots"])
    #expect(s.code == 0, "\(s.stderr)")
    #expect(s.result["engineVersion"] as? String == EngineVersion.current)
  }

  /// A missing repository exits 10 and a repository another process holds locked exits 11, as in restic.
  @Test func missingRepositoryAndHeldLockUseResticsCodes() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    let none = try h.run(["snapshots"])
    #expect(none.code == EngineExitCode.repositoryNotFound && none.code == 10, "\(none.stderr)")
    #expect(none.result["exitCode"] as? Int == 10)
    #expect(try h.run(["init"]).code == 0)
    try h.write("src/a.txt", Data("a\n".utf8))
    let lock =
      #"{"host":"another-host","pid":1,"time":"2026-01-01T00:00:00Z","expires":"2999-01-01T00:00:00Z","exclusive":true}"#
    try FileManager.default.createDirectory(atPath: h.repo + "/locks", withIntermediateDirectories: true)
    try makeFile(atPath: h.repo + "/locks/" + String(repeating: "ab", count: 16), contents: Data(lock.utf8))
    let locked = try h.run(["backup", h.dir + "/src"])
    #expect(locked.code == EngineExitCode.locked && locked.code == 11, "\(locked.stderr)")
  }

  /// `snapshots` prints its table on stdout; with `--json` stdout holds only JSON; errors go to stderr.
  @Test func snapshotsTableOnStdoutJSONOnlyWithJSON() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/a.txt", Data("a\n".utf8))
    #expect(try h.run(["init"]).code == 0)
    let b = try h.run(["backup", h.dir + "/src"])
    #expect(b.code == 0, "\(b.stderr)")
    let id = try #require(b.result["snapshotId"] as? String)
    let table = try h.run(["snapshots"])
    let out = String(decoding: table.stdout, as: UTF8.self)
    #expect(table.code == 0)
    #expect(out.contains("ID          SEQ") && out.contains(String(id.prefix(10))), "\(out)")
    #expect(!table.stderr.contains("ID          SEQ"), "\(table.stderr)")
    let json = try h.run(["snapshots", "--json"])
    #expect(json.code == 0)
    let lines = String(decoding: json.stdout, as: UTF8.self).split(separator: "\n")
    #expect(!lines.isEmpty)
    for l in lines {
      #expect((try? JSONSerialization.jsonObject(with: Data(l.utf8))) != nil, "not JSON on stdout: \(l)")
    }
    #expect((json.result["snapshots"] as? [[String: Any]])?.first?["id"] as? String == id)
    let failed = try h.run(
      ["snapshots", "--json", "--repo", "file://\(h.dir)/nothing-here", "--kms", h.kmsURL], withRepo: false)
    #expect(failed.code == 10)
    #expect(failed.stderr.contains("error:"), "\(failed.stderr)")
    for l in String(decoding: failed.stdout, as: UTF8.self).split(separator: "\n") {
      #expect((try? JSONSerialization.jsonObject(with: Data(l.utf8))) != nil, "not JSON on stdout: \(l)")
    }
  }

  /// `-r` is `--repo`; BOTRT_REPOSITORY or BOTRT_REPO name the repository when no flag does; the flag wins.
  @Test func repositoryFromShortFlagAndEnvironment() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    #expect(try h.run(["init"]).code == 0)
    let kms = ["--kms", h.kmsURL, "--quiet"]
    let short = try h.run(["snapshots", "-r", h.repoURL] + kms, withRepo: false)
    #expect(short.code == 0, "\(short.stderr)")
    for name in ["BOTRT_REPOSITORY", "BOTRT_REPO"] {
      let r = try h.run(["snapshots"] + kms, withRepo: false, env: [name: h.repoURL])
      #expect(r.code == 0, "\(name): \(r.stderr)")
    }
    let flagWins = try h.run(
      ["snapshots", "-r", h.repoURL] + kms, withRepo: false, env: ["BOTRT_REPOSITORY": "file://\(h.dir)/nothing-here"])
    #expect(flagWins.code == 0, "\(flagWins.stderr)")
    let envOnly = try h.run(["snapshots"] + kms, withRepo: false, env: ["BOTRT_REPOSITORY": "file://\(h.dir)/nothing"])
    #expect(envOnly.code == 10, "\(envOnly.stderr)")
    let conflict = try h.run(
      ["snapshots"] + kms, withRepo: false, env: ["BOTRT_REPOSITORY": h.repoURL, "BOTRT_REPO": "file:///elsewhere"])
    #expect(conflict.code == 2 && conflict.stderr.contains("BOTRT_REPOSITORY"), "\(conflict.stderr)")
    #expect(EngineEnv.isRead("BOTRT_REPOSITORY") && EngineEnv.isRead("VAULT_ADDR"))
  }

  /// `--json`: progress as JSON lines on stdout (restic's `"message_type": "status"`), then the result line; nothing
  /// of it on stderr. With `restore --stdout` the data owns stdout, so progress and result go to stderr.
  @Test func jsonProgressGoesToStdoutBeforeTheResult() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    let payload = sampleData(3 << 20)
    try h.write("src/blob.bin", payload)
    let b = try h.run(
      ["backup", "--init-if-missing", "--json", "--repo", h.repoURL, "--kms", h.kmsURL, h.dir + "/src"],
      withRepo: false)
    #expect(b.code == 0, "\(b.stderr)")
    let lines = String(decoding: b.stdout, as: UTF8.self).split(separator: "\n").map {
      (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
    }
    #expect(lines.count >= 2 && lines.allSatisfy { $0 != nil }, "\(String(decoding: b.stdout, as: UTF8.self))")
    let status = lines.dropLast().compactMap { $0 }
    #expect(status.allSatisfy { $0["message_type"] as? String == "status" })
    #expect(status.last?["bytesDone"] as? Int == payload.count)
    #expect(lines.last??["command"] as? String == "backup")
    #expect(!b.stderr.contains("message_type"))

    let r = try h.run(
      ["restore", "latest", "--stdout", "--path", "src/blob.bin", "--json", "--repo", h.repoURL, "--kms", h.kmsURL],
      withRepo: false)
    #expect(r.code == 0, "\(r.stderr)")
    #expect(r.stdout == payload)
    #expect(r.resultFromStderr["command"] as? String == "restore")
  }
}
