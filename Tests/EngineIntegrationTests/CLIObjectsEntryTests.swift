import EngineContract
import Foundation
import Testing

/// A claim's snapshot with the namespace's Kubernetes objects (BackupPolicy spec.objects): the backup pod backs up
/// the claim and the objects directory (`ObjectsLayout.backupMount`, whose last component is the snapshot's entry
/// `_kubernetes`) in one snapshot. A claim's restore (`--strip-components 1 --exclude-path _kubernetes`, as
/// `RecoveryJobs` builds it) puts back the claim's files and never the objects (Secrets among them); an objects
/// restore (`--path _kubernetes` into the objects volume) puts back the objects only.
@Suite(.serialized) struct CLIObjectsEntryTests {
  @Test func aClaimRestoreLeavesTheObjectsOutAndAnObjectsRestoreTakesOnlyThem() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("data/notes.txt", Data("claim file\n".utf8))
    try h.write("data/sub/more.txt", Data("more\n".utf8))
    let entry = ObjectsLayout.snapshotEntry
    try h.write("\(entry)/index.json", Data("{\"version\":1}\n".utf8))
    try h.write("\(entry)/core/Secret/web.json", Data("{\"data\":{\"password\":\"czNjcjN0\"}}\n".utf8))
    let common = EngineCommonArguments(repo: h.repoURL, kms: h.kmsURL)
    let backup = EngineBackupArguments(
      common: common, dataType: "files", tags: ["policy=shop/app"], initIfMissing: true, objectLock: nil,
      compression: nil, source: .paths([h.dir + "/data", h.dir + "/" + entry]))
    let b = try h.run(EngineArguments.backup(backup).argv, withRepo: false)
    #expect(b.code == 0, "\(b.stderr)")

    // The claim's restore.
    var claim = EngineRestoreArguments(
      common: common, snapshot: .latest, requireSnapshot: nil, output: .target(h.dir + "/claim"), stripComponents: 1)
    claim.excludePaths = [entry]
    let c = try h.run(EngineArguments.restore(claim).argv + ["--quiet"], withRepo: false)
    #expect(c.code == 0, "\(c.stderr)")
    let files = try FileManager.default.subpathsOfDirectory(atPath: h.dir + "/claim").sorted()
    #expect(files == ["notes.txt", "sub", "sub/more.txt"], "\(files)")

    // Without the exclusion the objects would land in the claim (what the controller never asks for).
    let plain = EngineRestoreArguments(
      common: common, snapshot: .latest, requireSnapshot: nil, output: .target(h.dir + "/plain"), stripComponents: 1)
    let p = try h.run(EngineArguments.restore(plain).argv + ["--quiet"], withRepo: false)
    #expect(p.code == 0, "\(p.stderr)")
    #expect(FileManager.default.fileExists(atPath: h.dir + "/plain/core/Secret/web.json"))

    // The objects' restore: the entry itself, below the objects volume.
    let objects = EngineRestoreArguments(
      common: common, snapshot: .latest, requireSnapshot: nil,
      output: .file(path: entry, into: h.dir + "/objects"))
    let o = try h.run(EngineArguments.restore(objects).argv + ["--quiet"], withRepo: false)
    #expect(o.code == 0, "\(o.stderr)")
    let restored = try FileManager.default.subpathsOfDirectory(atPath: h.dir + "/objects").sorted()
    #expect(
      restored == [
        entry, "\(entry)/core", "\(entry)/core/Secret", "\(entry)/core/Secret/web.json", "\(entry)/index.json",
      ],
      "\(restored)")

    // A snapshot without objects: the exclusion matches nothing and is no error; asking for the objects is.
    try FileManager.default.removeItem(atPath: h.dir + "/" + entry)
    let b2 = try h.run(
      EngineArguments.backup(
        EngineBackupArguments(
          common: common, dataType: "files", tags: [], initIfMissing: false, objectLock: nil, compression: nil,
          source: .paths([h.dir + "/data"]))
      ).argv, withRepo: false)
    #expect(b2.code == 0, "\(b2.stderr)")
    claim.output = .target(h.dir + "/claim2")
    let c2 = try h.run(EngineArguments.restore(claim).argv + ["--quiet"], withRepo: false)
    #expect(c2.code == 0, "\(c2.stderr)")
    #expect(FileManager.default.fileExists(atPath: h.dir + "/claim2/notes.txt"))
    let none = try h.run(
      EngineArguments.restore(
        EngineRestoreArguments(
          common: common, snapshot: .latest, requireSnapshot: nil, output: .file(path: entry, into: h.dir + "/o2"))
      ).argv + ["--quiet"], withRepo: false)
    #expect(none.code != 0)
    #expect(none.stderr.contains("matches nothing") || none.text.contains("matches nothing"), "\(none.text)")
  }
}
