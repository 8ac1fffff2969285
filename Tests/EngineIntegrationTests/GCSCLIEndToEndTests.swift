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
  }
}
