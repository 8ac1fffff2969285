import Foundation
import Testing

@testable import BackupEngine

/// `botrt-engine copy` with the real binary: local -> S3 (moto and SeaweedFS, Object Lock) and S3 -> GCS (fake-gcs-server).
@Suite(.serialized) struct CopyCLITests {
  static func result(_ r: EngineShell.Result) throws -> [String: Any] {
    let line = try #require(r.stdout.split(separator: "\n").last, "no result line: \(r.stderr)")
    return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
  }

  /// `copy --keep-last 2 --prune`: the replica keeps what the policy keeps, expired source snapshots are not copied
  /// (again) on later runs, and a new backup replaces the oldest copy.
  @Test func copyWithRetentionKeepsTheTargetToThePolicy() async throws {
    let sh = try EngineShell()
    defer { sh.cleanup() }
    try sh.write("kek", Data(Crypto.randomBytes(32)))
    try sh.write("kek2", Data(Crypto.randomBytes(32)))
    let src = ["BOTRT_REPO": "file://\(sh.dir)/repo", "BOTRT_KMS": "file://\(sh.dir)/kek"]
    try sh.ok("\"$ENGINE\" init --quiet --json", env: src)
    for i in 1...4 {
      try sh.write("src/file.txt", Data("version \(i)\n".utf8))
      try sh.ok("\"$ENGINE\" backup --quiet --json src", env: src)
    }
    let copy =
      "\"$ENGINE\" copy --quiet --json --to 'file://\(sh.dir)/replica' --to-kms 'file://\(sh.dir)/kek2' --init-if-missing "
      + "--keep-last 2 --prune"
    let first = try Self.result(try sh.ok(copy, env: src))
    #expect((first["copied"] as? [[String: Any]])?.count == 2, "\(first)")
    #expect((first["expired"] as? [String])?.count == 2)
    #expect((first["removed"] as? [String])?.isEmpty == true)
    // Nothing new: nothing copied, the two expired snapshots are not copied again.
    let second = try Self.result(try sh.ok(copy, env: src))
    #expect((second["copied"] as? [[String: Any]])?.isEmpty == true)
    #expect((second["skipped"] as? [String])?.count == 2)
    #expect((second["expired"] as? [String])?.count == 2)
    #expect(second["bytesStored"] as? Int == 0)
    // A new backup is copied and the oldest copy goes.
    try sh.write("src/file.txt", Data("version 5\n".utf8))
    try sh.ok("\"$ENGINE\" backup --quiet --json src", env: src)
    let third = try Self.result(try sh.ok(copy, env: src))
    #expect((third["copied"] as? [[String: Any]])?.count == 1)
    #expect((third["removed"] as? [String])?.count == 1)
    let dst = ["BOTRT_REPO": "file://\(sh.dir)/replica", "BOTRT_KMS": "file://\(sh.dir)/kek2"]
    let snaps = try Self.result(try sh.ok("\"$ENGINE\" snapshots --quiet --json", env: dst))
    #expect((snaps["snapshots"] as? [[String: Any]])?.count == 2)
    try sh.ok("\"$ENGINE\" restore --quiet --json latest --target out", env: dst)
    #expect(try sh.read("out/src/file.txt") == Data("version 5\n".utf8))
    try sh.ok("\"$ENGINE\" verify --quiet --json --all --read-data", env: dst)
    // --prune without a rule is a usage error.
    let bad = try sh.run(
      "\"$ENGINE\" copy --quiet --to 'file://\(sh.dir)/replica' --to-kms 'file://\(sh.dir)/kek2' --prune", env: src)
    #expect(bad.code == 2)
  }

  @Test(arguments: S3Server.allCases) func localToS3WithObjectLockIsIncremental(_ server: S3Server) async throws {
    let (endpoint, env) = try ServiceEnv.s3(server)
    let kmsEndpoint = try ServiceEnv.require("BOTRT_AWSKMS_ENDPOINT")
    let bucket = ServiceEnv.bucketName("copy")
    let store = try S3Store(
      url: try #require(URLComponents(string: "s3://\(bucket)/replica")),
      options: StoreOptions(endpoint: endpoint, environment: env))
    try await store.createBucket(objectLock: true)
    let keyId = try await AWSKMSKeyService(
      url: try #require(URLComponents(string: "awskms://bootstrap?region=us-east-1")),
      options: KMSOptions(environment: env, endpoint: kmsEndpoint)
    ).createKey(description: "botrt copy target")
    let sh = try EngineShell()
    defer { sh.cleanup() }
    let big = randomData(5 << 20)
    try sh.write("src/big.bin", big)
    try sh.write("src/notes.txt", Data("notes\n".utf8))
    try sh.write("kek", Data(Crypto.randomBytes(32)))
    let target = "s3://\(bucket)/replica"
    let targetKMS = "awskms://\(keyId)?region=us-east-1"
    let repoEnv = [
      "BOTRT_REPO": "file://\(sh.dir)/repo", "BOTRT_KMS": "file://\(sh.dir)/kek", "BOTRT_S3_ENDPOINT": endpoint,
    ]
    try sh.ok("\"$ENGINE\" init --quiet --json", env: repoEnv)
    try sh.ok("\"$ENGINE\" backup --quiet --json src", env: repoEnv)
    try sh.ok("\"$ENGINE\" backup --quiet --json --data-type logs src/notes.txt", env: repoEnv)
    let copy =
      "\"$ENGINE\" copy --quiet --json --all --to '\(target)' --to-kms '\(targetKMS)' --init-if-missing --object-lock compliance:1"
    let first = try Self.result(try sh.ok(copy, env: repoEnv))
    #expect(first["command"] as? String == "copy")
    #expect((first["copied"] as? [[String: Any]])?.count == 2)
    #expect((first["skipped"] as? [String])?.isEmpty == true)
    #expect((first["bytesStored"] as? Int ?? 0) > 5 << 20)
    // Unwraps are counted per KMS: the source's local key (the target was created by this run: its keys were
    // generated, not unwrapped).
    let unwraps = try #require(first["keyUnwraps"] as? [[String: Any]])
    #expect(unwraps.compactMap { $0["key"] as? String } == ["file://\(sh.dir)/kek"])
    // Object Lock: every pack in the target carries COMPLIANCE retention and cannot be deleted.
    let objects = try await store.list(prefix: "")
    let packs = objects.filter { $0.key.hasPrefix("data/") }
    #expect(!packs.isEmpty)
    for p in packs {
      let until = try #require(try await store.retainUntil(store.objectKey(p.key)))
      #expect(until > Date().addingTimeInterval(3600))
    }
    await #expect(throws: StorageError.self) { try await store.deleteAllVersions(packs[0].key) }

    // A second copy uploads nothing new.
    let second = try Self.result(try sh.ok(copy, env: repoEnv))
    #expect((second["copied"] as? [[String: Any]])?.isEmpty == true)
    #expect((second["skipped"] as? [String])?.count == 2)
    #expect(second["bytesStored"] as? Int == 0)
    // Now both repositories were opened: the local key and the target's AWS KMS key (as its descriptor).
    let unwraps2 = try #require(second["keyUnwraps"] as? [[String: Any]])
    #expect(
      unwraps2.compactMap { $0["key"] as? String } == ["awskms:///\(keyId)?region=us-east-1", "file://\(sh.dir)/kek"])
    #expect(unwraps2.allSatisfy { $0["count"] as? Int == 4 })
    let after = try await store.list(prefix: "")
    let immutable = { (o: [ObjectInfo]) in
      Set(o.map(\.key).filter { ["data/", "index/", "snapshots/"].contains(where: $0.hasPrefix) })
    }
    #expect(immutable(after) == immutable(objects))

    // The target restores and verifies with only its own key.
    let targetEnv = ["BOTRT_REPO": target, "BOTRT_KMS": targetKMS, "BOTRT_S3_ENDPOINT": endpoint]
    try sh.ok("\"$ENGINE\" restore --quiet --json latest --target out --path notes.txt", env: targetEnv)
    #expect(try sh.read("out/notes.txt") == Data("notes\n".utf8))
    let snaps = try Self.result(try sh.ok("\"$ENGINE\" snapshots --quiet --json", env: targetEnv))
    let list = try #require(snaps["snapshots"] as? [[String: Any]])
    #expect(list.count == 2)
    let filesSnap = try #require(list.first { $0["dataType"] as? String == "files" }?["id"] as? String)
    try sh.ok("\"$ENGINE\" restore --quiet --json \(filesSnap) --target out2", env: targetEnv)
    #expect(try sh.read("out2/src/big.bin") == big)
    try sh.ok("\"$ENGINE\" verify --quiet --json --all --read-data", env: targetEnv)
  }

  @Test func s3ToGCSIsIncrementalAndRestorable() async throws {
    let (endpoint, env) = try ServiceEnv.s3()
    let gcs = try ServiceEnv.require("BOTRT_GCS_ENDPOINT")
    let vault = try VaultTransitTests.authority(try ServiceEnv.require("VAULT_ADDR"))
    _ = try ServiceEnv.require("VAULT_TOKEN")
    let s3Bucket = ServiceEnv.bucketName("copy-src")
    try await S3Store(
      url: try #require(URLComponents(string: "s3://\(s3Bucket)/repo")),
      options: StoreOptions(endpoint: endpoint, environment: env)
    ).createBucket(objectLock: false)
    let gcsBucket = ServiceEnv.bucketName("copy-dst")
    try await GCSStore(
      url: try #require(URLComponents(string: "gs://\(gcsBucket)/replica")),
      options: StoreOptions(environment: ["BOTRT_GCS_ENDPOINT": gcs])
    ).createBucket()
    let sh = try EngineShell()
    defer { sh.cleanup() }
    try sh.write("kek2", Data(Crypto.randomBytes(32)))
    let payload = randomData(3 << 20)
    try sh.write("src/a.bin", payload)
    try sh.write("src/b.txt", Data("bee\n".utf8))
    let sourceEnv = [
      "BOTRT_REPO": "s3://\(s3Bucket)/repo", "BOTRT_KMS": "vault-transit://\(vault)/transit/botrt-test",
      "BOTRT_S3_ENDPOINT": endpoint,
    ]
    try sh.ok("\"$ENGINE\" init --quiet --json", env: sourceEnv)
    try sh.ok("\"$ENGINE\" backup --quiet --json src", env: sourceEnv)
    let target = "gs://\(gcsBucket)/replica"
    let targetKMS = "file://\(sh.dir)/kek2"
    let targetEnv = ["BOTRT_REPO": target, "BOTRT_KMS": targetKMS]
    try sh.ok("\"$ENGINE\" init --quiet --json", env: targetEnv)
    let copy = "\"$ENGINE\" copy --quiet --json --to '\(target)' --to-kms '\(targetKMS)'"
    let first = try Self.result(try sh.ok(copy + " latest", env: sourceEnv))
    #expect((first["copied"] as? [[String: Any]])?.count == 1)
    let stored1 = first["bytesStored"] as? Int ?? 0
    #expect(stored1 > 3 << 20)

    // Another backup with one small change: the copy reads and stores only that.
    try sh.write("src/b.txt", Data("changed bee\n".utf8))
    try sh.ok("\"$ENGINE\" backup --quiet --json src", env: sourceEnv)
    let second = try Self.result(try sh.ok(copy + " --all", env: sourceEnv))
    #expect((second["copied"] as? [[String: Any]])?.count == 1)
    #expect((second["skipped"] as? [String])?.count == 1)
    #expect(second["bytesRead"] as? Int == "changed bee\n".utf8.count)
    #expect((second["bytesStored"] as? Int ?? Int.max) < 64 << 10)
    // A third copy: nothing new.
    let third = try Self.result(try sh.ok(copy, env: sourceEnv))
    #expect((third["copied"] as? [[String: Any]])?.isEmpty == true)
    #expect(third["bytesStored"] as? Int == 0)

    try sh.ok("\"$ENGINE\" restore --quiet --json latest --target out", env: targetEnv)
    #expect(try sh.read("out/src/a.bin") == payload)
    #expect(try sh.read("out/src/b.txt") == Data("changed bee\n".utf8))
    try sh.ok("\"$ENGINE\" verify --quiet --json --all --read-data", env: targetEnv)
    // The source's key cannot open the target.
    let bad = try sh.run(
      "\"$ENGINE\" snapshots --quiet --json", env: targetEnv.merging(["BOTRT_KMS": sourceEnv["BOTRT_KMS"]!]) { $1 })
    #expect(bad.code == 12, "wrong key: \(bad.stderr)")
  }
}
