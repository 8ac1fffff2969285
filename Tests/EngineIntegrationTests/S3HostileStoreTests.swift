import Foundation
import Logging
import Testing

@testable import BackupEngine

/// Issue 14 item 6 against a real S3 server (moto, BOTRT_S3_ENDPOINT) with versioning and Object Lock: the engine
/// finds an overwritten object's matching version through ListObjectVersions and GET ?versionId.
@Suite(.serialized) struct S3HostileStoreTests {
  static let log = Logger(label: "t")

  func makeStore() async throws -> S3Store {
    let (endpoint, env) = try ServiceEnv.s3()
    let url = try #require(
      URLComponents(string: "s3://\(ServiceEnv.bucketName("hostile"))/repo-\(UUID().uuidString.prefix(8))"))
    let store = try S3Store(url: url, options: StoreOptions(endpoint: endpoint, environment: env))
    try await store.createBucket(objectLock: true)
    return store
  }

  /// The store calls: versions newest first without delete markers, a version read by id, and the keys with
  /// several versions from one listing.
  @Test func versionsOfAnOverwrittenObject() async throws {
    let s = try await makeStore()
    let retained = PutOptions(
      retention: ObjectRetention(mode: .compliance, retainUntil: Date().addingTimeInterval(86_400)))
    try await s.put("data/ab/pack", data: Data("genuine".utf8), options: retained)
    try await s.put("data/ab/pack", data: Data("ransom".utf8), options: PutOptions())
    try await s.put("data/cd/single", data: Data("once".utf8), options: PutOptions())
    try await s.put("data/ef/hidden", data: Data("old".utf8), options: PutOptions())
    try await s.delete("data/ef/hidden")
    let vs = try await s.versions(of: "data/ab/pack")
    #expect(vs.count == 2)
    #expect(try await s.get("data/ab/pack", version: vs[0]) == Data("ransom".utf8))
    #expect(try await s.get("data/ab/pack", version: vs[1]) == Data("genuine".utf8))
    #expect(try await s.versions(of: "data/cd/single").count == 1)
    // A delete marker is not a version.
    #expect(try await s.versions(of: "data/ef/hidden").count == 1)
    #expect(try await s.versions(of: "data/none").isEmpty)
    #expect(try await s.keysWithSeveralVersions(prefix: "data/") == ["data/ab/pack": 2])
    await #expect(throws: StorageError.self) { _ = try await s.get("data/ab/pack", version: "no-such-version") }
  }

  /// The hostile store end to end: every pack, index file and manifest overwritten (same size), junk manifests and
  /// key files planted. Every snapshot restores from the matching versions, and a new backup stores the blobs of the
  /// overwritten packs again.
  @Test func overwrittenRepositoryStillRestores() async throws {
    let s = try await makeStore()
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-s3h-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir + "/src", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    #expect(FileManager.default.createFile(atPath: dir + "/kek", contents: Data(Crypto.randomBytes(32))))
    let kek = try LocalKeyService(path: dir + "/kek")
    let repo = try await Repository.initialize(
      store: s, keyService: kek, objectLock: try ObjectLockConfig.parse("compliance:1"), logger: Self.log)
    let content = Data(Crypto.randomBytes(1_500_000))
    #expect(FileManager.default.createFile(atPath: dir + "/src/a", contents: content))
    func backup(_ r: Repository) async throws -> BackupResult {
      let lock = try await r.lock(exclusive: false)
      let out = try await r.backup(BackupOptions(paths: [dir + "/src"]))
      await lock.release()
      return out
    }
    let first = try await backup(repo)

    let packs = try await s.list(prefix: "data/")
    for o in try await packs + s.list(prefix: "index/") + s.list(prefix: "snapshots/") {
      try await s.put(o.key, data: Data(Crypto.randomBytes(Int(o.size))), options: PutOptions())
    }
    let junkManifest = "snapshots/" + Hex.encode(Crypto.randomBytes(32))
    let junkKey = "keys/" + Hex.encode(Crypto.randomBytes(16))
    for k in [junkManifest, junkKey] {
      try await s.put(k, data: Data(Crypto.randomBytes(300)), options: PutOptions())
    }

    let victim = try await Repository.open(store: s, keyService: kek, logger: Self.log)
    #expect(victim.allWarnings.contains { $0.contains(junkKey) })
    let snaps = try await victim.loadSnapshotsSkippingDamaged()
    #expect(snaps.map(\.id) == [first.snapshotID])
    #expect(victim.allWarnings.contains { $0.contains(junkManifest) && $0.contains("skipped") })
    let index = try await victim.loadIndexSkippingDamaged()
    _ = try await victim.restore(snaps[0], index: index, options: RestoreOptions(target: dir + "/out1", workers: 2))
    #expect(FileManager.default.contents(atPath: dir + "/out1/src/a") == content)
    #expect(victim.allWarnings.contains { $0.contains("data/") && $0.contains("read the older version") })

    let second = try await backup(victim)
    #expect(
      victim.allWarnings.filter { $0.contains("does not deduplicate against it") }.count == packs.count,
      "\(victim.allWarnings)")
    let after = try await Repository.open(store: s, keyService: kek, logger: Self.log)
    let snap2 = try #require(try await after.loadSnapshotsSkippingDamaged().first { $0.id == second.snapshotID })
    _ = try await after.restore(
      snap2, index: try await after.loadIndexSkippingDamaged(), options: RestoreOptions(target: dir + "/out2"))
    #expect(FileManager.default.contents(atPath: dir + "/out2/src/a") == content)
  }
}
