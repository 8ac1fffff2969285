import Foundation
import Testing

@testable import BackupEngine

/// Issue 18: `verify SNAPSHOT --read-data` reads that snapshot's packs, not the repository's, and reports the bytes
/// it read from the storage (`bytesDownloaded`).
@Suite(.serialized) struct CLIVerifySnapshotTests {
  func size(_ h: CLIHarness, _ objects: [String]) throws -> Int64 {
    try objects.reduce(0) { n, o in
      let a = try FileManager.default.attributesOfItem(atPath: h.repo + "/" + o)
      return n + ((a[.size] as? NSNumber)?.int64Value ?? 0)
    }
  }

  @Test func verifyOfOneSnapshotReadsOnlyItsPacks() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    #expect(try h.run(["init"]).code == 0)
    // Two snapshots of unrelated data, the second four times the first: nothing deduplicates between them.
    try h.write("a/one.bin", Data(Crypto.randomBytes(1 << 20)))
    let b1 = try h.run(["backup", h.dir + "/a"])
    #expect(b1.code == 0, "\(b1.stderr)")
    let packsA = try h.objects("data")
    try h.write("b/two.bin", Data(Crypto.randomBytes(4 << 20)))
    let b2 = try h.run(["backup", h.dir + "/b"])
    #expect(b2.code == 0, "\(b2.stderr)")
    let all = try h.objects("data")
    let a = try #require(b1.result["snapshotId"] as? String)
    let b = try #require(b2.result["snapshotId"] as? String)
    let storedA = try size(h, packsA)
    let storedAll = try size(h, all)
    #expect(storedAll > 4 * storedA)

    let v = try h.run(["verify", String(a.prefix(12)), "--read-data"])
    #expect(v.code == 0, "\(v.stderr)")
    #expect(v.result["snapshotId"] as? String == a, "verify names the full id of the snapshot it checked")
    let readA = try #require((v.result["bytesDownloaded"] as? NSNumber)?.int64Value, "\(v.result)")
    #expect(readA > 0)
    #expect(Double(readA) <= 1.1 * Double(storedA), "read \(readA) of snapshot \(a) stored in \(storedA)")

    // `latest` (as a drill verifies it) reads the newest snapshot's blobs only.
    let l = try h.run(["verify", "latest", "--read-data"])
    #expect(l.code == 0, "\(l.stderr)")
    #expect(l.result["snapshotId"] as? String == b)
    let readB = try #require((l.result["bytesDownloaded"] as? NSNumber)?.int64Value, "\(l.result)")
    #expect(readB > 0 && readB <= storedAll - storedA + storedA / 10, "read \(readB)")

    // --all --read-data reads every pack; without --read-data nothing is downloaded for content.
    let full = try h.run(["verify", "--all", "--read-data"])
    #expect(full.code == 0, "\(full.stderr)")
    #expect((full.result["bytesDownloaded"] as? NSNumber)?.int64Value == storedAll)
    let structure = try h.run(["verify", a])
    #expect(structure.code == 0 && (structure.result["bytesDownloaded"] as? NSNumber)?.int64Value == 0)
  }

  /// A damaged pack of another snapshot does not fail the verify of this one (it is not read).
  @Test func aDamagedPackOfAnotherSnapshotIsNotRead() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    #expect(try h.run(["init"]).code == 0)
    try h.write("a/one.bin", Data(Crypto.randomBytes(256 << 10)))
    let b1 = try h.run(["backup", h.dir + "/a"])
    let a = try #require(b1.result["snapshotId"] as? String)
    let before = Set(try h.objects("data"))
    try h.write("b/two.bin", Data(Crypto.randomBytes(256 << 10)))
    #expect(try h.run(["backup", h.dir + "/b"]).code == 0)
    let newPacks = try h.objects("data").filter { !before.contains($0) }
    #expect(!newPacks.isEmpty)
    for p in newPacks {
      var d = try Data(contentsOf: URL(fileURLWithPath: h.repo + "/" + p))
      d[d.count / 2] ^= 0xFF
      try d.write(to: URL(fileURLWithPath: h.repo + "/" + p))
    }
    let v = try h.run(["verify", a, "--read-data"])
    #expect(v.code == 0, "\(v.stderr)")
    #expect(try h.run(["verify", "--all", "--read-data"]).code != 0)
  }
}
