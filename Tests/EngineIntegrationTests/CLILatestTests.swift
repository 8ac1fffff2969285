import Foundation
import Testing

/// `latest` is the newest snapshot that verifies: a damaged newer snapshot is passed over and named.
@Suite(.serialized) struct CLILatestTests {
  /// Two snapshots; returns the harness, the older and newer ids, and the packs only the newer one wrote.
  func setUp() throws -> (CLIHarness, older: String, newer: String, newPacks: [String]) {
    let h = try CLIHarness()
    try h.write("src/big.bin", sampleData(1 << 20))
    try h.write("src/small.txt", Data("small\n".utf8))
    #expect(try h.run(["init"]).code == 0)
    let b1 = try h.run(["backup", h.dir + "/src"])
    #expect(b1.code == 0, "\(b1.stderr)")
    let before = Set(try h.objects("data"))
    try h.write("src/more.txt", sampleData(64 << 10))
    let b2 = try h.run(["backup", h.dir + "/src"])
    #expect(b2.code == 0, "\(b2.stderr)")
    let older = try #require(b1.result["snapshotId"] as? String)
    let newer = try #require(b2.result["snapshotId"] as? String)
    #expect((b2.result["snapshotTime"] as? String)?.isEmpty == false, "backup reports the snapshot's time")
    let newPacks = try h.objects("data").filter { !before.contains($0) }
    #expect(!newPacks.isEmpty)
    return (h, older, newer, newPacks)
  }

  func skippedIDs(_ r: CLIHarness.Output) -> [String] {
    (r.result["skippedSnapshots"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
  }

  @Test func aMissingPackOfTheNewestSnapshotRestoresTheOlderAndNamesIt() throws {
    let (h, older, newer, newPacks) = try setUp()
    defer { h.cleanup() }
    for p in newPacks { try FileManager.default.removeItem(atPath: h.repo + "/" + p) }

    let r = try h.run(["restore", "latest", "--target", h.dir + "/out"])
    #expect(r.code == 0, "\(r.stderr)")
    #expect(r.result["snapshotId"] as? String == older)
    #expect(skippedIDs(r) == [newer])
    #expect(r.stderr.contains("skipped snapshot \(newer)"), "\(r.stderr)")
    #expect(FileManager.default.fileExists(atPath: h.dir + "/out/src/small.txt"))
    #expect(!FileManager.default.fileExists(atPath: h.dir + "/out/src/more.txt"))

    // --before selects the same way.
    let b = try h.run(["restore", "latest", "--before", "2999-01-01T00:00:00Z", "--target", h.dir + "/out2"])
    #expect(b.code == 0 && b.result["snapshotId"] as? String == older && skippedIDs(b) == [newer], "\(b.stderr)")

    // A required snapshot that fails is a failure, not skipped.
    let req = try h.run(["restore", "latest", "--target", h.dir + "/out3", "--require-snapshot", newer])
    #expect(req.code == 5, "\(req.stderr)")
    #expect(req.stderr.contains("required snapshot does not verify"), "\(req.stderr)")
    #expect(!FileManager.default.fileExists(atPath: h.dir + "/out3/src"))

    // verify latest names it too, and succeeds on the older snapshot.
    let v = try h.run(["verify", "latest"])
    #expect(v.code == 0, "\(v.stderr)")
    #expect(v.result["snapshotId"] as? String == older && skippedIDs(v) == [newer])
  }

  @Test func aDamagedManifestIsSkipped() throws {
    let (h, older, newer, _) = try setUp()
    defer { h.cleanup() }
    try h.flipByte("snapshots/\(newer)", at: -20)
    let r = try h.run(["restore", "latest", "--target", h.dir + "/out"])
    #expect(r.code == 0, "\(r.stderr)")
    #expect(r.result["snapshotId"] as? String == older)
    #expect(skippedIDs(r) == [newer])
    let reasons = (r.result["skippedSnapshots"] as? [[String: Any]] ?? []).compactMap { $0["reason"] as? String }
    #expect(reasons.first?.contains("manifest") == true, "\(reasons)")
    #expect((r.result["warnings"] as? [String] ?? []).contains { $0.contains(newer) })
  }

  @Test func readDataSkipsASnapshotWhoseBlobsDoNotDecrypt() throws {
    let (h, older, newer, newPacks) = try setUp()
    defer { h.cleanup() }
    for p in newPacks { try h.flipByte(p, at: 40) }
    let v = try h.run(["verify", "latest", "--read-data"])
    #expect(v.code == 0, "\(v.stderr)")
    #expect(v.result["snapshotId"] as? String == older)
    #expect(skippedIDs(v) == [newer])
  }

  @Test func noSnapshotThatVerifiesIsAnIntegrityFailure() throws {
    let (h, _, _, _) = try setUp()
    defer { h.cleanup() }
    for p in try h.objects("data") { try FileManager.default.removeItem(atPath: h.repo + "/" + p) }
    let r = try h.run(["restore", "latest", "--target", h.dir + "/out"])
    #expect(r.code == 5, "\(r.stderr)")
    #expect(r.stderr.contains("no snapshot for latest verifies"), "\(r.stderr)")
  }
}
