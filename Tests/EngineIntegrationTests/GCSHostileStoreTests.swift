import Foundation
import Testing

@testable import BackupEngine

/// Issue 14 item 6 on Google Cloud Storage (fake-gcs-server, BOTRT_GCS_ENDPOINT) with Object Versioning: an attacker
/// with the backup's storage credentials overwrites a pack and deletes every other object; GCS keeps the earlier
/// generations as noncurrent ones, and the engine reads them as it reads S3's stored versions.
@Suite struct GCSHostileStoreTests {
  @Test func overwrittenAndDeletedObjectsAreReadFromTheirGenerations() async throws {
    let endpoint = try ServiceEnv.require("BOTRT_GCS_ENDPOINT")
    let bucket = ServiceEnv.bucketName("gcs-hostile")
    let s = try GCSStore(
      url: try #require(URLComponents(string: "gs://\(bucket)/repo")),
      options: StoreOptions(environment: ["BOTRT_GCS_ENDPOINT": endpoint]))
    try await s.createBucket(versioning: true)
    let h = try CLIHarness()
    defer { h.cleanup() }
    func run(_ args: [String]) throws -> CLIHarness.Output {
      try h.run(args, repo: "gs://\(bucket)/repo")
    }
    #expect(try run(["init"]).code == 0)
    let a = Data(Crypto.randomBytes(300_000))
    let b = Data(Crypto.randomBytes(300_000))
    try h.write("src/a.bin", a)
    let first = try run(["backup", h.dir + "/src"])
    #expect(first.code == 0, "\(first.stderr)")
    let firstID = try #require(first.result["snapshotId"] as? String)
    try h.write("src/a.bin", b)
    let second = try run(["backup", h.dir + "/src"])
    #expect(second.code == 0, "\(second.stderr)")
    let secondID = try #require(second.result["snapshotId"] as? String)

    // The attacker: one pack overwritten with junk, every other object deleted.
    let objects = try await s.list(prefix: "").filter { !$0.key.hasPrefix("locks/") && !$0.key.hasPrefix("audit/") }
    let pack = try #require(objects.first { $0.key.hasPrefix("data/") }?.key)
    try await s.put(pack, data: Data(Crypto.randomBytes(5000)))
    for o in objects where o.key != pack { try await s.delete(o.key) }
    #expect(try await s.head("config") == nil)
    #expect(try await s.keysWithSeveralVersions(prefix: "data/")[pack] == 2)
    #expect(try await s.listHidden(prefix: "").contains { $0.key == "config" })

    let snaps = try run(["snapshots", "--json"])
    #expect(snaps.code == 0, "\(snaps.stderr)")
    let listed = (snaps.result["snapshots"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
    #expect(Set(listed) == [firstID, secondID])
    let w = snaps.result["warnings"] as? [String] ?? []
    // In GCS's own words: it has no delete markers, a deleted object's generation is kept as noncurrent.
    #expect(w.contains { $0.hasPrefix("config is deleted, its generation kept as noncurrent") }, "\(w)")
    #expect(!w.contains { $0.contains("delete marker") }, "\(w)")
    let r1 = try run(["restore", firstID, "--target", h.dir + "/out1"])
    #expect(r1.code == 0, "\(r1.stderr)")
    #expect(FileManager.default.contents(atPath: h.dir + "/out1/src/a.bin") == a)
    let r2 = try run(["restore", "latest", "--target", h.dir + "/out2"])
    #expect(r2.code == 0, "\(r2.stderr)")
    #expect(FileManager.default.contents(atPath: h.dir + "/out2/src/a.bin") == b)
    // verify raises the alarm: the pack's current generation is not what the index says (exit 5, named), while
    // both snapshots are checked.
    let v = try run(["verify", "--all", "--read-data"])
    #expect(v.code == 5, "\(v.stderr)")
    #expect(v.stderr.contains("\(pack): size 5000"), "\(v.stderr)")
    #expect(v.result["snapshotsVerified"] as? Int == 2)
    let vw = v.result["warnings"] as? [String] ?? []
    #expect(vw.contains { $0.hasPrefix("data/") && $0.contains("deleted, its generation kept as noncurrent") }, "\(vw)")
    #expect(!vw.contains { $0.contains("delete marker") }, "\(vw)")

    // delete-repository is not run here: fake-gcs-server ignores `generation` on DELETE (the live generation
    // becomes noncurrent, a noncurrent one answers 404), so generations cannot be deleted on it.
  }

  /// On a bucket without versioning, delete-repository (which deletes by generation) leaves nothing.
  @Test func deleteRepositoryOnAnUnversionedBucket() async throws {
    let endpoint = try ServiceEnv.require("BOTRT_GCS_ENDPOINT")
    let bucket = ServiceEnv.bucketName("gcs-delete")
    let s = try GCSStore(
      url: try #require(URLComponents(string: "gs://\(bucket)/repo")),
      options: StoreOptions(environment: ["BOTRT_GCS_ENDPOINT": endpoint]))
    try await s.createBucket()
    let h = try CLIHarness()
    defer { h.cleanup() }
    func run(_ args: [String]) throws -> CLIHarness.Output {
      try h.run(args, repo: "gs://\(bucket)/repo")
    }
    #expect(try run(["init"]).code == 0)
    try h.write("src/a.bin", Data(Crypto.randomBytes(100_000)))
    #expect(try run(["backup", h.dir + "/src"]).code == 0)
    #expect(try await s.list(prefix: "").count > 3)
    let d = try run(["delete-repository", "--confirm"])
    #expect(d.code == 0, "\(d.stderr)")
    #expect(try await s.list(prefix: "").isEmpty)
    #expect(try await s.listAllVersionedKeys(prefix: "").isEmpty)
  }
}
