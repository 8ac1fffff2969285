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

  /// The attacker of the leftovers against moto, through the engine binary: with the store's own credentials a plain
  /// DELETE (a delete marker) on config, key files, manifests, index files and packs, and a junk manifest and index
  /// file planted. snapshots, restore, ls, verify, copy and forget --prune work on the good snapshots, the warnings
  /// name the objects, the prune deletes nothing until the junk is accepted as planted, and no stored version is lost.
  @Test func deleteMarkersAndJunkThroughTheCLI() async throws {
    let s = try await makeStore()
    let h = try CLIHarness()
    defer { h.cleanup() }
    let repoURL = "s3://\(s.bucket)/\(s.prefix)"
    func run(_ args: [String]) throws -> CLIHarness.Output {
      try h.run(args, repo: repoURL)
    }
    func warnings(_ o: CLIHarness.Output) -> [String] { o.result["warnings"] as? [String] ?? [] }
    #expect(try run(["init", "--object-lock", "compliance:1"]).code == 0)
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

    // The attacker, with the backup's credentials.
    var versionsBefore: [String: [String]] = [:]
    for o in try await s.list(prefix: "") where !o.key.hasPrefix("audit/") && !o.key.hasPrefix("locks/") {
      versionsBefore[o.key] = try await s.versions(of: o.key)
      try await s.delete(o.key)
    }
    #expect(try await s.list(prefix: "snapshots/").isEmpty)
    #expect(try await s.head("config") == nil)
    let junkManifest = "snapshots/" + Hex.encode(Crypto.randomBytes(32))
    let junkIndex = "index/" + Hex.encode(Crypto.randomBytes(32))
    for k in [junkManifest, junkIndex] {
      try await s.put(k, data: Data(Crypto.randomBytes(400)), options: PutOptions())
    }

    let snaps = try run(["snapshots", "--json"])
    #expect(snaps.code == 0, "\(snaps.stderr)")
    let listed = (snaps.result["snapshots"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
    #expect(Set(listed) == [firstID, secondID])
    let w = warnings(snaps)
    #expect(w.contains { $0.hasPrefix("config is hidden behind a delete marker") }, "\(w)")
    #expect(w.contains { $0.hasPrefix("key file keys/") && $0.contains("hidden behind a delete marker") }, "\(w)")
    for id in [firstID, secondID] {
      #expect(w.contains { $0.contains("snapshots/\(id) is hidden behind a delete marker") }, "\(w)")
    }
    #expect(w.contains { $0.contains(junkManifest) && $0.contains("skipped") }, "\(w)")

    let r1 = try run(["restore", firstID, "--target", h.dir + "/out1"])
    #expect(r1.code == 0, "\(r1.stderr)")
    #expect(FileManager.default.contents(atPath: h.dir + "/out1/src/a.bin") == a)
    let r2 = try run(["restore", "latest", "--target", h.dir + "/out2"])
    #expect(r2.code == 0, "\(r2.stderr)")
    #expect(FileManager.default.contents(atPath: h.dir + "/out2/src/a.bin") == b)
    #expect(r2.text.contains(junkIndex), "the junk index file is not named: \(r2.text)")
    let ls = try run(["ls", "latest"])
    #expect(ls.code == 0, "\(ls.stderr)")
    #expect(String(decoding: ls.stdout, as: UTF8.self).contains("a.bin"))

    // verify: the junk fails it (exit 5, named); both snapshots and every pack are checked. Accepted as planted: ok.
    let v = try run(["verify", "--all", "--read-data"])
    #expect(v.code == 5, "\(v.stderr)")
    #expect(v.stderr.contains(junkManifest) && v.stderr.contains(junkIndex), "\(v.stderr)")
    #expect(v.result["snapshotsVerified"] as? Int == 2)
    let accept = ["--accept-unreadable", junkManifest, "--accept-unreadable", junkIndex]
    let va = try run(["verify", "--all", "--read-data"] + accept)
    #expect(va.code == 0, "\(va.stderr)")

    // copy: both good snapshots reach a replica that restores.
    let replica = "file://\(h.dir)/replica"
    let c = try run(["copy", "--all", "--to", replica, "--to-kms", h.kmsURL, "--init-if-missing"])
    #expect(c.code == 0, "\(c.stderr)")
    #expect((c.result["copied"] as? [[String: Any]])?.count == 2, "\(c.result)")
    let rr = try h.run(["restore", "latest", "--target", h.dir + "/out3"], repo: replica)
    #expect(rr.code == 0, "\(rr.stderr)")
    #expect(FileManager.default.contents(atPath: h.dir + "/out3/src/a.bin") == b)

    // forget --prune: the first snapshot is forgotten, the prune is refused (exit 5) naming the junk.
    let f = try run(["forget", "--keep-last", "1", "--prune"])
    #expect(f.code == 5, "\(f.stderr)")
    #expect(f.stderr.contains("prune refused") && f.stderr.contains(junkIndex), "\(f.stderr)")
    #expect(f.result["removed"] as? [String] == [firstID])
    #expect(f.result["packsDeleted"] as? Int == 0)
    let after = try run(["snapshots", "--json"])
    #expect((after.result["snapshots"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String } == [secondID])
    // Accepted as planted, the prune runs; the kept snapshot restores.
    let g = try run(["forget", "--keep-last", "1", "--prune"] + accept)
    #expect(g.code == 0, "\(g.stderr)")
    #expect((g.result["packsDeleted"] as? Int ?? 0) > 0, "\(g.result)")
    let r4 = try run(["restore", "latest", "--target", h.dir + "/out4"])
    #expect(r4.code == 0, "\(r4.stderr)")
    #expect(FileManager.default.contents(atPath: h.dir + "/out4/src/a.bin") == b)

    // Nothing locked was lost: every version stored before the attack is still stored.
    for (k, vs) in versionsBefore {
      let now = Set(try await s.versions(of: k))
      #expect(Set(vs).isSubset(of: now), "\(k): versions lost")
    }
  }

  /// A repository whose every object an attacker hid behind a delete marker is not "nothing to delete":
  /// delete-repository finds the stored versions, deletes them, and no version is left.
  @Test func deleteRepositoryDeletesAHiddenRepository() async throws {
    let s = try await makeStore()
    let h = try CLIHarness()
    defer { h.cleanup() }
    let repoURL = "s3://\(s.bucket)/\(s.prefix)"
    func run(_ args: [String]) throws -> CLIHarness.Output {
      try h.run(args, repo: repoURL)
    }
    #expect(try run(["init"]).code == 0)
    try h.write("src/a.bin", Data(Crypto.randomBytes(200_000)))
    let b = try run(["backup", h.dir + "/src"])
    #expect(b.code == 0, "\(b.stderr)")
    for o in try await s.list(prefix: "") { try await s.delete(o.key) }
    #expect(try await s.list(prefix: "").isEmpty)
    let stored = try await s.listAllVersionedKeys(prefix: "")
    #expect(stored.contains("config") && stored.contains { $0.hasPrefix("packs/") || $0.hasPrefix("data/") })
    let d = try run(["delete-repository", "--confirm", "--json"])
    #expect(d.code == 0, "\(d.stderr)")
    #expect((d.result["objectsDeleted"] as? Int ?? 0) >= stored.count - 1, "\(d.result)")
    let left = try await s.listAllVersionedKeys(prefix: "")
    #expect(left.isEmpty, "versions are left after delete-repository: \(left)")
  }
}
