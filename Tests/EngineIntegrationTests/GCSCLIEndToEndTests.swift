import Foundation
import Testing

@testable import BackupEngine

/// The real CLI against fake-gcs-server with AWS KMS (moto) keys.
@Suite struct GCSCLIEndToEndTests {
  @Test func backupRestoreOnGCSWithAWSKMS() async throws {
    let gcs = try ServiceEnv.require("BOTRT_GCS_ENDPOINT")
    let kmsEndpoint = try ServiceEnv.require("BOTRT_AWSKMS_ENDPOINT")
    let bucket = ServiceEnv.bucketName("e2e-gcs")
    try await GCSStore(
      url: try #require(URLComponents(string: "gs://\(bucket)/repo")),
      options: StoreOptions(environment: ["BOTRT_GCS_ENDPOINT": gcs])
    ).createBucket()
    let keyId = try await AWSKMSKeyService(
      url: try #require(URLComponents(string: "awskms://bootstrap?region=us-east-1")),
      options: KMSOptions(environment: ServiceEnv.all, endpoint: kmsEndpoint)
    ).createKey(description: "botrt e2e")
    let sh = try EngineShell()
    defer { sh.cleanup() }
    let payload = randomData(2 << 20)
    try sh.write("src/data.bin", payload)
    try sh.write("src/notes.txt", Data("notes\n".utf8))
    let env = ["BOTRT_REPO": "gs://\(bucket)/repo", "BOTRT_KMS": "awskms://\(keyId)?region=us-east-1"]
    try sh.ok("\"$ENGINE\" init --quiet", env: env)
    try sh.ok("\"$ENGINE\" backup --quiet src", env: env)
    try sh.ok("\"$ENGINE\" restore --quiet latest --target out", env: env)
    let restored = try #require(
      FileManager.default.subpaths(atPath: sh.dir + "/out")?.first { $0.hasSuffix("data.bin") })
    #expect(try sh.read("out/" + restored) == payload)
    try sh.ok("\"$ENGINE\" verify --quiet --all --read-data", env: env)
    // Retention on GCS: a second backup without data.bin, forget the first with --prune (its tree pack is
    // deleted, the pack holding data.bin and notes.txt is dead or rewritten), then restore and verify again.
    try FileManager.default.removeItem(atPath: sh.dir + "/src/data.bin")
    try sh.write("src/more.txt", Data("more\n".utf8))
    try sh.ok("\"$ENGINE\" backup --quiet src", env: env)
    let store = try GCSStore(
      url: try #require(URLComponents(string: "gs://\(bucket)/repo")),
      options: StoreOptions(environment: ["BOTRT_GCS_ENDPOINT": gcs]))
    let before = try await store.list(prefix: "data/").reduce(Int64(0)) { $0 + $1.size }
    try sh.ok("\"$ENGINE\" forget --quiet --keep-last 1 --prune --result-file forget.json", env: env)
    let forget = try #require(
      try JSONSerialization.jsonObject(with: try sh.read("forget.json")) as? [String: Any])
    #expect((forget["removed"] as? [String])?.count == 1)
    #expect((forget["packsDeleted"] as? Int ?? 0) >= 1)
    let after = try await store.list(prefix: "data/").reduce(Int64(0)) { $0 + $1.size }
    #expect(before - after > 1_900_000, "data.bin's 2 MiB are reclaimed (\(before) -> \(after))")
    #expect(try await store.list(prefix: "snapshots/").count == 1)
    #expect(try await store.list(prefix: "index/").count == 1)
    try sh.ok("\"$ENGINE\" restore --quiet latest --target out2", env: env)
    let more = try #require(FileManager.default.subpaths(atPath: sh.dir + "/out2")?.first { $0.hasSuffix("more.txt") })
    #expect(try sh.read("out2/" + more) == Data("more\n".utf8))
    #expect(FileManager.default.subpaths(atPath: sh.dir + "/out2")?.contains { $0.hasSuffix("data.bin") } == false)
    try sh.ok("\"$ENGINE\" verify --quiet --all --read-data", env: env)
  }
}
