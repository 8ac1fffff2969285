import Foundation
import Logging
import Testing

@testable import BackupEngine

@Suite(.serialized) struct CLIBadInputTests {
  /// A repository with two snapshots of a small tree.
  func setUp() throws -> CLIHarness {
    let h = try CLIHarness()
    try h.write("src/big.bin", sampleData(3 << 20))
    try h.write("src/small.txt", Data("small\n".utf8))
    #expect(try h.run(["init"]).code == 0)
    #expect(try h.run(["backup", h.dir + "/src"]).code == 0)
    try h.write("src/more.txt", Data("more\n".utf8))
    #expect(try h.run(["backup", h.dir + "/src"]).code == 0)
    return h
  }

  func openRepo(_ h: CLIHarness) async throws -> Repository {
    try await Repository.open(
      store: try LocalStore(root: h.repo), keyService: try LocalKeyService(path: h.keyPath),
      logger: Logger(label: "test"))
  }

  /// `botrt-engine help COMMAND`, `COMMAND --help` and `COMMAND -h` print that command's help (not the top level's),
  /// on stdout, with exit code 0; an unknown option is a usage error (2) naming it.
  @Test func helpOfASubcommandIsThatSubcommandsHelp() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    for args in [["help", "backup"], ["backup", "--help"], ["backup", "-h"]] {
      let r = try h.run(args, withRepo: false)
      let out = String(decoding: r.stdout, as: UTF8.self)
      #expect(r.code == 0, "\(args)")
      #expect(out.contains("USAGE: botrt-engine backup"), "\(args): \(out.prefix(200))")
      #expect(out.contains("--stdin-name"), "\(args)")
    }
    let top = try h.run(["--help"], withRepo: false)
    #expect(top.code == 0)
    #expect(String(decoding: top.stdout, as: UTF8.self).contains("SUBCOMMANDS:"))
    let bad = try h.run(["backup", h.dir, "--no-such-flag"], withRepo: false)
    #expect(bad.code == 2)
    #expect(bad.stderr.contains("--no-such-flag"))
    // A lock wait without a unit names the flag.
    let wait = try h.run(["snapshots", "--retry-lock", "10"])
    #expect(wait.code == 2 && wait.stderr.contains("--retry-lock"), "\(wait.stderr)")
    // A misspelt command in `help` is a usage error naming it, not the top-level help with exit 0.
    let nosuch = try h.run(["help", "bakup"], withRepo: false)
    #expect(nosuch.code == 2)
    #expect(nosuch.stderr.contains("no command 'bakup'") && nosuch.stderr.contains("backup"), "\(nosuch.stderr)")
    #expect(nosuch.stdout.isEmpty)
  }

  /// Deleting the newest manifest makes 'latest' an older snapshot without any damage verify could see;
  /// `--require-snapshot` with the id recorded elsewhere (by the controller) catches it.
  @Test func aDeletedNewestSnapshotIsCaughtByRequireSnapshot() throws {
    let h = try setUp()
    defer { h.cleanup() }
    let snaps = try h.objects("snapshots").sorted()
    #expect(snaps.count == 2)
    let list = try h.run(["snapshots", "--json"])
    let newest = try #require((list.result["snapshots"] as? [[String: Any]])?.compactMap { $0["id"] as? String }.last)
    #expect(try h.run(["verify", "--require-snapshot", String(newest.prefix(12))]).code == 0)
    let key = try #require(snaps.first { $0.hasSuffix(newest) })
    try FileManager.default.removeItem(atPath: h.repo + "/" + key)
    // Nothing is damaged: plain verify passes and latest restores the older snapshot.
    #expect(try h.run(["verify"]).code == 0)
    let v = try h.run(["verify", "--require-snapshot", newest])
    #expect(v.code == 5)
    #expect(v.stderr.contains("rolled back"), "\(v.stderr)")
    let r = try h.run(["restore", "latest", "--target", h.dir + "/out", "--require-snapshot", newest])
    #expect(r.code == 5)
    #expect(!FileManager.default.fileExists(atPath: h.dir + "/out/src"))
  }

  /// A backed-up directory is stored under its name (a claim's backup under the claim's); --strip-components puts
  /// its content at the target's root, as a restore into a claim needs. Bad counts name the flag.
  @Test func stripComponentsRestoresADirectorysContentIntoTheTarget() throws {
    let h = try setUp()
    defer { h.cleanup() }
    #expect(try h.run(["restore", "latest", "--target", h.dir + "/plain"]).code == 0)
    #expect(FileManager.default.fileExists(atPath: h.dir + "/plain/src/small.txt"))
    let r = try h.run(["restore", "latest", "--target", h.dir + "/out", "--strip-components", "1"])
    #expect(r.code == 0, "\(r.stderr)")
    #expect(try String(contentsOfFile: h.dir + "/out/small.txt", encoding: .utf8) == "small\n")
    #expect(
      try Data(contentsOf: URL(fileURLWithPath: h.dir + "/out/big.bin"))
        == Data(contentsOf: URL(fileURLWithPath: h.dir + "/src/big.bin")))
    #expect(!FileManager.default.fileExists(atPath: h.dir + "/out/src"))
    let tooMany = try h.run(["restore", "latest", "--target", h.dir + "/none", "--strip-components", "2"])
    #expect(tooMany.code == 2 && tooMany.stderr.contains("--strip-components 2 leaves nothing"), "\(tooMany.stderr)")
    let negative = try h.run(["restore", "latest", "--target", h.dir + "/neg", "--strip-components", "-1"])
    #expect(negative.code == 2 && negative.stderr.contains("--strip-components"), "\(negative.stderr)")
  }

  @Test func wrongKeyExitsTwelveMissingKeyThirteen() throws {
    let h = try setUp()
    defer { h.cleanup() }
    let other = h.dir + "/other-kek"
    try makeFile(atPath: other, contents: Data(Crypto.randomBytes(32)))
    let r = try h.run(["snapshots", "--repo", h.repoURL, "--kms", "file://\(other)"], withRepo: false)
    #expect(r.code == 12)
    #expect(r.stderr.contains("could not unwrap"))
    let m = try h.run(["snapshots", "--repo", h.repoURL, "--kms", "file://\(h.dir)/nope"], withRepo: false)
    #expect(m.code == 13)
    #expect(
      try h.run(["snapshots", "--repo", h.repoURL, "--kms", "vault-transit://127.0.0.1:1/transit/k"], withRepo: false)
        .code != 0)
  }

  @Test func flippedByteInPackIsNamedByVerifyAndRefusedByRestore() throws {
    let h = try setUp()
    defer { h.cleanup() }
    let packs = try h.objects("data")
    // The largest pack holds file data.
    let pack = try #require(
      packs.max { a, b in
        (try? FileManager.default.attributesOfItem(atPath: h.repo + "/" + a)[.size] as? Int ?? 0) ?? 0
          < (try? FileManager.default.attributesOfItem(atPath: h.repo + "/" + b)[.size] as? Int ?? 0) ?? 0
      })
    try h.flipByte(pack, at: 1000)
    let v = try h.run(["verify", "--read-data"])
    #expect(v.code == 5)
    #expect(v.stderr.contains(pack))
    let r = try h.run(["restore", "latest", "--target", h.dir + "/out"])
    #expect(r.code == 5, "\(r.stderr)")
    #expect(r.stderr.contains(pack))
  }

  @Test func flippedByteInIndexAndManifestAreNamed() throws {
    let h = try setUp()
    defer { h.cleanup() }
    let idx = try #require(try h.objects("index").first)
    try h.flipByte(idx, at: 50)
    let v = try h.run(["verify"])
    #expect(v.code == 5)
    #expect(v.stderr.contains(idx))
    let h2 = try setUp()
    defer { h2.cleanup() }
    let snap = try #require(try h2.objects("snapshots").first)
    try h2.flipByte(snap, at: -20)
    let v2 = try h2.run(["verify"])
    #expect(v2.code == 5)
    #expect(v2.stderr.contains(snap))
    // 'latest' is the newest snapshot that verifies: the damaged one is passed over and named (CLILatestTests).
    let r2 = try h2.run(["restore", "latest", "--target", h2.dir + "/out"])
    #expect(r2.code == 0, "\(r2.stderr)")
    #expect(r2.stderr.contains("skipped snapshot \(snap.dropFirst("snapshots/".count))"), "\(r2.stderr)")
  }

  @Test func truncatedPackAndMissingIndex() throws {
    let h = try setUp()
    defer { h.cleanup() }
    let pack = try #require(try h.objects("data").first)
    let path = h.repo + "/" + pack
    let d = try Data(contentsOf: URL(fileURLWithPath: path))
    try d.prefix(d.count / 2).write(to: URL(fileURLWithPath: path))
    let v = try h.run(["verify"])
    #expect(v.code == 5)
    #expect(v.stderr.contains(pack) && v.stderr.contains("truncated"))

    let h2 = try setUp()
    defer { h2.cleanup() }
    for i in try h2.objects("index") { try FileManager.default.removeItem(atPath: h2.repo + "/" + i) }
    let r = try h2.run(["restore", "latest", "--target", h2.dir + "/out"])
    #expect(r.code == 5)
    #expect(r.stderr.contains("not in any index"))
    #expect(try h2.run(["verify"]).code == 5)
    // A new backup re-indexes the orphaned packs, after which restore works again.
    let b = try h2.run(["backup", h2.dir + "/src"])
    #expect(b.code == 0, "\(b.stderr)")
    #expect(b.text.contains("adopted"))
    #expect(try h2.run(["restore", "latest", "--target", h2.dir + "/out2"]).code == 0)
  }

  @Test func forgedSignatureAndReplayedManifestAreRefused() async throws {
    let h = try setUp()
    defer { h.cleanup() }
    let repo = try await openRepo(h)
    let (snaps, _) = try await repo.loadSnapshots()
    #expect(snaps.count == 2)
    // Forged: a valid-looking manifest signed with a key that is not the repository's.
    let forged = try await repo.writeRawSnapshot(
      nodes: [TreeNode(kind: .file, path: "x")], seq: 9, parent: snaps[1].id.hex,
      signingKey: Ed25519.generatePrivateKey())
    let v = try h.run(["verify"])
    #expect(v.code == 5)
    #expect(v.stderr.contains("snapshots/\(forged.hex)") && v.stderr.contains("signature"))
    #expect(try h.run(["restore", forged.hex, "--target", h.dir + "/o1"]).code == 5)
    try FileManager.default.removeItem(atPath: h.repo + "/snapshots/" + forged.hex)
    #expect(try h.run(["verify"]).code == 0)

    // Replayed: the old manifest's bytes stored under the newest snapshot's name.
    let old = h.repo + "/snapshots/" + snaps[0].id.hex
    let newest = h.repo + "/snapshots/" + snaps[1].id.hex
    let saved = try Data(contentsOf: URL(fileURLWithPath: newest))
    try Data(contentsOf: URL(fileURLWithPath: old)).write(to: URL(fileURLWithPath: newest))
    let v2 = try h.run(["verify"])
    #expect(v2.code == 5)
    #expect(v2.stderr.contains("replayed"))
    // 'latest' passes over the replayed manifest, naming it; required (as the controller requires the newest it
    // recorded), it is a failure.
    let r2 = try h.run(["restore", "latest", "--target", h.dir + "/o2"])
    #expect(r2.code == 0 && r2.stderr.contains("skipped snapshot \(snaps[1].id.hex)"), "\(r2.stderr)")
    let r3 = try h.run(["restore", "latest", "--target", h.dir + "/o3", "--require-snapshot", snaps[1].id.hex])
    #expect(r3.code == 5, "\(r3.stderr)")
    try saved.write(to: URL(fileURLWithPath: newest))

    // Replayed sequence: correctly signed, but not after its parent.
    let stale = try await repo.writeRawSnapshot(
      nodes: [TreeNode(kind: .file, path: "x")], seq: 1, parent: snaps[1].id.hex)
    let v3 = try h.run(["verify"])
    #expect(v3.code == 5)
    #expect(v3.stderr.contains(stale.hex) && v3.stderr.contains("replayed old manifest"))
  }

  @Test func unknownFormatVersionIsRefused() throws {
    let h = try setUp()
    defer { h.cleanup() }
    let path = h.repo + "/config"
    let text = try String(contentsOfFile: path, encoding: .utf8)
    try text.replacingOccurrences(of: "\"version\":1", with: "\"version\":7").write(
      toFile: path, atomically: true, encoding: .utf8)
    let r = try h.run(["snapshots"])
    #expect(r.code == 5)
    #expect(r.stderr.contains("format version 7"))
  }

  @Test func pathTraversalEntriesAreRefused() async throws {
    let h = try setUp()
    defer { h.cleanup() }
    let repo = try await openRepo(h)
    let (snaps, _) = try await repo.loadSnapshots()
    var seq = 10
    for nodes in [
      [TreeNode(kind: .file, path: "../escaped")],
      [TreeNode(kind: .file, path: "/tmp/botrt-absolute")],
      [TreeNode(kind: .directory, path: "d"), TreeNode(kind: .file, path: "d/../../escaped")],
      [TreeNode(kind: .symlink, path: "s", linkTarget: h.dir), TreeNode(kind: .file, path: "s/escaped")],
    ] {
      seq += 1
      let id = try await repo.writeRawSnapshot(nodes: nodes, seq: seq, parent: snaps[1].id.hex)
      let r = try h.run(["restore", id.hex, "--target", h.dir + "/t/inner"])
      #expect(r.code == 5, "\(nodes.map { $0.path }): \(r.stderr)")
      #expect(r.stderr.contains("path traversal refused"))
      #expect(!FileManager.default.fileExists(atPath: h.dir + "/t/escaped"))
      #expect(!FileManager.default.fileExists(atPath: h.dir + "/escaped"))
      #expect(!FileManager.default.fileExists(atPath: "/tmp/botrt-absolute"))
      try FileManager.default.removeItem(atPath: h.repo + "/snapshots/" + id.hex)
    }
  }

  @Test func vanishedSourceGivesPartialBackup() throws {
    let h = try setUp()
    defer { h.cleanup() }
    let b = try h.run(["backup", h.dir + "/src", h.dir + "/does-not-exist"])
    #expect(b.code == 3, "\(b.stderr)")
    let errors = try #require(b.result["errors"] as? [String])
    #expect(errors.count == 1 && errors[0].contains("does-not-exist"))
    #expect(b.result["snapshotId"] as? String != nil)
    #expect(try h.run(["restore", "latest", "--target", h.dir + "/out"]).code == 0)
    #expect(FileManager.default.fileExists(atPath: h.dir + "/out/src/small.txt"))
  }

  @Test func unreadableFileGivesPartialBackupAsUnprivilegedUser() throws {
    // Root reads everything, so the engine runs as nobody via setpriv (util-linux).
    guard getuid() == 0 else {
      let h = try setUp()
      defer { h.cleanup() }
      try h.write("src/secret", Data("x".utf8), mode: 0o000)
      let b = try h.run(["backup", h.dir + "/src"])
      #expect(b.code == 3)
      return
    }
    let setpriv = "/usr/bin/setpriv"
    try #require(FileManager.default.isExecutableFile(atPath: setpriv), "setpriv is needed to drop root")
    let h = try setUp()
    defer { h.cleanup() }
    try h.write("src/secret", Data("x".utf8), mode: 0o000)
    for p in [h.dir, h.repo] { chmod(p, 0o777) }
    let chmodAll = Process()
    chmodAll.executableURL = URL(fileURLWithPath: "/bin/chmod")
    chmodAll.arguments = ["-R", "a+rwX", h.repo, h.keyPath]
    try chmodAll.run()
    chmodAll.waitUntilExit()
    chmod(h.dir + "/src/secret", 0)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: setpriv)
    p.arguments = [
      "--reuid=65534", "--regid=65534", "--clear-groups", try CLIHarness.binary(), "backup", h.dir + "/src", "--repo",
      h.repoURL, "--kms", h.kmsURL, "--quiet", "--result-file", h.dir + "/res.json",
    ]
    p.environment = ["HOME": "/tmp", "PATH": "/usr/bin:/bin"]
    try p.run()
    p.waitUntilExit()
    #expect(p.terminationStatus == 3)
    let o =
      try JSONSerialization.jsonObject(with: try Data(contentsOf: URL(fileURLWithPath: h.dir + "/res.json")))
      as? [String: Any]
    let errors = o?["errors"] as? [String] ?? []
    #expect(errors.contains { $0.contains("secret") && $0.contains("Permission denied") })
  }

  @Test func fullDiskDuringRestoreIsAClearError() throws {
    let h = try setUp()
    defer { h.cleanup() }
    // /dev/full fails every write with ENOSPC: a real full device for --stdout.
    let r = try h.run(["restore", "latest", "--stdout", "--path", "src/big.bin"], stdoutFile: "/dev/full")
    #expect(r.code == 4, "\(r.stderr)")
    #expect(r.stderr.contains("no space left"))
    // And a 1 MiB tmpfs for --target, where mounting is permitted.
    let mnt = h.dir + "/small"
    try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
    let m = Process()
    m.executableURL = URL(fileURLWithPath: "/bin/mount")
    m.arguments = ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt]
    try m.run()
    m.waitUntilExit()
    guard m.terminationStatus == 0 else { return }  // no CAP_SYS_ADMIN: /dev/full above covered ENOSPC
    defer {
      let u = Process()
      u.executableURL = URL(fileURLWithPath: "/bin/umount")
      u.arguments = [mnt]
      try? u.run()
      u.waitUntilExit()
    }
    let t = try h.run(["restore", "latest", "--target", mnt])
    #expect(t.code == 4, "\(t.stderr)")
    #expect(t.stderr.contains("no space left"))
  }
}
