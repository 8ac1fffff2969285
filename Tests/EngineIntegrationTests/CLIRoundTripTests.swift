import Foundation
import Testing

@testable import BackupEngine

@Suite(.serialized) struct CLIRoundTripTests {
  /// A tree with a big file, small files, modes, a symlink, a hard link and an empty directory.
  func makeTree(_ h: CLIHarness) throws {
    try h.write("src/big.bin", sampleData(5 << 20))
    try h.write("src/a.txt", Data("hello\n".utf8), mode: 0o640)
    try h.write("src/sub/script.sh", Data("#!/bin/sh\necho hi\n".utf8), mode: 0o755)
    try FileManager.default.createDirectory(atPath: h.dir + "/src/sub/empty", withIntermediateDirectories: true)
    try FileManager.default.createSymbolicLink(atPath: h.dir + "/src/sub/link", withDestinationPath: "../a.txt")
    try FileManager.default.linkItem(atPath: h.dir + "/src/a.txt", toPath: h.dir + "/src/sub/hard")
    try FileManager.default.setAttributes([.posixPermissions: 0o710], ofItemAtPath: h.dir + "/src/sub")
    let old = Date(timeIntervalSince1970: 1_600_000_000)
    try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: h.dir + "/src/a.txt")
  }

  func attrs(_ p: String) throws -> (mode: Int, mtime: Double, size: Int, ino: Int) {
    var st = stat()
    guard lstat(p, &st) == 0 else { throw HarnessError("lstat \(p) failed") }
    return (Int(st.st_mode & 0o7777), Double(st.st_mtim.tv_sec), Int(st.st_size), Int(st.st_ino))
  }

  @Test func backupRestoreRoundTripPreservesTheTree() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try makeTree(h)
    #expect(try h.run(["init"]).code == 0)
    let b = try h.run(["backup", h.dir + "/src", "--tag", "app=test"])
    #expect(b.code == 0, "\(b.stderr)")
    let sid = try #require(b.result["snapshotId"] as? String)
    #expect(b.result["files"] as? Int == 5)
    // One entry per KMS key: the local key, by its URI, with 4 unwraps at open and the files data key.
    let unwraps = try #require(b.result["keyUnwraps"] as? [[String: Any]])
    #expect(unwraps.count == 1)
    #expect(unwraps.first?["key"] as? String == h.kmsURL)
    #expect(unwraps.first?["count"] as? Int == 5)
    // Object operations on the local repository count as storage requests: at least the pack, index, snapshot
    // and audit writes.
    #expect((b.result["storageRequests"] as? Int ?? 0) >= 4, "\(b.result)")
    let r = try h.run(["restore", sid, "--target", h.dir + "/out"])
    #expect(r.code == 0, "\(r.stderr)")
    let src = h.dir + "/src"
    let out = h.dir + "/out/src"
    for f in ["big.bin", "a.txt", "sub/script.sh", "sub/hard"] {
      #expect(
        FileManager.default.contents(atPath: out + "/" + f) == FileManager.default.contents(atPath: src + "/" + f),
        "\(f)")
    }
    #expect(try attrs(out + "/a.txt").mode == 0o640)
    #expect(try attrs(out + "/sub/script.sh").mode == 0o755)
    #expect(try attrs(out + "/sub").mode == 0o710)
    #expect(try attrs(out + "/a.txt").mtime == 1_600_000_000)
    #expect(try attrs(out + "/a.txt").ino == (try attrs(out + "/sub/hard")).ino)
    #expect(try FileManager.default.destinationOfSymbolicLink(atPath: out + "/sub/link") == "../a.txt")
    var isDir: ObjCBool = false
    #expect(FileManager.default.fileExists(atPath: out + "/sub/empty", isDirectory: &isDir) && isDir.boolValue)
    // --path restores only the selection.
    let p = try h.run(["restore", "latest", "--target", h.dir + "/part", "--path", "src/sub"])
    #expect(p.code == 0, "\(p.stderr)")
    #expect(FileManager.default.fileExists(atPath: h.dir + "/part/src/sub/script.sh"))
    #expect(!FileManager.default.fileExists(atPath: h.dir + "/part/src/big.bin"))
    // Snapshots --json lists it with its tag.
    let s = try h.run(["snapshots", "--json"])
    let snaps = try #require(s.result["snapshots"] as? [[String: Any]])
    #expect(snaps.count == 1)
    #expect((snaps[0]["tags"] as? [String: String])?["app"] == "test")
    // The audit trail holds no key material.
    let audit = try h.objects("audit")
    #expect(!audit.isEmpty)
    let kek = Hex.encode([UInt8](try Data(contentsOf: URL(fileURLWithPath: h.keyPath))))
    for a in audit {
      let text = try String(contentsOfFile: h.repo + "/" + a, encoding: .utf8)
      #expect(!text.contains(kek))
      #expect(text.contains("\"action\""))
    }
  }

  @Test func dedupAcrossFilesAndSnapshotsAndFastReBackup() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    let big = sampleData(6 << 20)
    try h.write("src/one.bin", big)
    #expect(try h.run(["init"]).code == 0)
    let b1 = try h.run(["backup", h.dir + "/src"])
    #expect(b1.code == 0, "\(b1.stderr)")
    let stored1 = try #require(b1.result["bytesStored"] as? Int)
    // A copy of the same file and a re-backup: almost nothing new is stored.
    try h.write("src/copy.bin", big)
    let b2 = try h.run(["backup", h.dir + "/src"])
    #expect(b2.code == 0)
    let stored2 = try #require(b2.result["bytesStored"] as? Int)
    #expect(stored2 < stored1 / 20, "copy stored \(stored2) bytes, first backup \(stored1)")
    #expect((b2.result["dedupRatio"] as? Double ?? 0) > 0.45)
    let b3 = try h.run(["backup", h.dir + "/src"])
    #expect(b3.result["bytesStored"] as? Int == 0)
    #expect(b3.result["dedupRatio"] as? Double == 1)
    let r = try h.run(["restore", "latest", "--target", h.dir + "/out"])
    #expect(r.code == 0)
    #expect(FileManager.default.contents(atPath: h.dir + "/out/src/copy.bin") == big)
  }

  @Test func stdinBackupAndRestoreToStdout() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    let dump = sampleData(3 << 20 + 123)
    #expect(try h.run(["init"]).code == 0)
    let b = try h.run(["backup", "--stdin", "--stdin-name", "db.sql", "--data-type", "database"], stdin: dump)
    #expect(b.code == 0, "\(b.stderr)")
    #expect(b.result["bytesRead"] as? Int == dump.count)
    let r = try h.run(["restore", "latest", "--stdout"])
    #expect(r.code == 0, "\(r.stderr)")
    #expect(r.stdout == dump)
    #expect(r.resultFromStderr["command"] as? String == "restore")
  }

  /// Each --compression level but off stores compressible text compressed, off stores it raw, and every
  /// snapshot restores to the same bytes from one repository that mixes them.
  @Test func compressionLevelsShareOneRepository() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    #expect(try h.run(["init"]).code == 0)
    var text = Data()
    var i = 0
    while text.count < 4 << 20 {
      text.append(Data("row \(i) customer=\(i % 977) amount=\(i * 37 % 10_000) status=shipped\n".utf8))
      i += 1
    }
    var stored: [String: Int] = [:]
    for (n, level) in ["off", "auto", "max"].enumerated() {
      // A different first line per level, so no level deduplicates against the previous one.
      let data = Data("level \(level) \(n)\n".utf8) + text
      let b = try h.run(["backup", "--stdin", "--stdin-name", "\(level).txt", "--compression", level], stdin: data)
      #expect(b.code == 0, "\(b.stderr)")
      stored[level] = try #require(b.result["bytesStored"] as? Int)
      let r = try h.run(["restore", try #require(b.result["snapshotId"] as? String), "--stdout"])
      #expect(r.code == 0 && r.stdout == data, "restore of the \(level) snapshot")
    }
    let off = try #require(stored["off"]), auto = try #require(stored["auto"]), max = try #require(stored["max"])
    #expect(off >= text.count, "off must store the bytes raw: \(stored)")
    #expect(auto < off / 4, "auto must compress text: \(stored)")
    #expect(max < off / 4, "max must compress text: \(stored)")
    let bad = try h.run(["backup", "--stdin", "--stdin-name", "x", "--compression", "fast"], stdin: text)
    #expect(bad.code == 2 && bad.stderr.contains("--compression"), "\(bad.stderr)")
    #expect(try h.run(["verify", "--all", "--read-data"]).code == 0)
  }

  /// A scheduled run of a new policy creates the repository; later runs open it and add snapshots to it.
  @Test func backupInitIfMissingCreatesTheRepositoryOnce() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    let plain = try h.run(["backup", "--stdin", "--stdin-name", "a.sql"], stdin: sampleData(1000))
    #expect(plain.code == 10, "without --init-if-missing a missing repository is exit 10: \(plain.stderr)")
    #expect(!FileManager.default.fileExists(atPath: h.repo + "/config"))
    let lockWithoutInit = try h.run(
      ["backup", "--stdin", "--stdin-name", "a.sql", "--object-lock", "compliance:1"], stdin: sampleData(10))
    #expect(lockWithoutInit.code == 2)
    let first = try h.run(["backup", "--init-if-missing", "--stdin", "--stdin-name", "a.sql"], stdin: sampleData(2000))
    #expect(first.code == 0, "\(first.stderr)")
    #expect(FileManager.default.fileExists(atPath: h.repo + "/config"))
    let keys = try h.objects("keys/")
    #expect(keys.count == 1)
    let second = try h.run(
      ["backup", "--init-if-missing", "--stdin", "--stdin-name", "a.sql"], stdin: sampleData(3000))
    #expect(second.code == 0, "\(second.stderr)")
    #expect(try h.objects("keys/") == keys, "the second run must not create another key file")
    let snaps = try h.run(["snapshots"])
    #expect(snaps.code == 0, "\(snaps.stderr)")
    #expect((snaps.result["snapshots"] as? [Any])?.count == 2)
  }

  @Test func verifyReadDataAndResultFile() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try makeTree(h)
    #expect(try h.run(["init"]).code == 0)
    #expect(try h.run(["backup", h.dir + "/src"]).code == 0)
    let rf = h.dir + "/result.json"
    let v = try h.run(["verify", "--all", "--read-data", "--result-file", rf])
    #expect(v.code == 0, "\(v.stderr)")
    let line = try #require(FileManager.default.contents(atPath: rf))
    let o = try #require(try JSONSerialization.jsonObject(with: line) as? [String: Any])
    #expect(o["command"] as? String == "verify")
    #expect(o["exitCode"] as? Int == 0)
    let unwraps = try #require(o["keyUnwraps"] as? [[String: Any]])
    #expect(unwraps.first?["key"] as? String == h.kmsURL)
    #expect((unwraps.first?["count"] as? Int ?? 0) >= 4)
  }

  @Test func usageErrorsExitTwo() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    #expect(try h.run(["backup"]).code == 2)
    #expect(try h.run(["frobnicate"], withRepo: false).code == 2)
    #expect(try h.run(["restore", "latest"]).code == 2)
    #expect(try h.run(["init", "--object-lock", "forever"]).code == 2)
    #expect(try h.run(["snapshots"]).code == 10)  // no repository yet
  }
}
