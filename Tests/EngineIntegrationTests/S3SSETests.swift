import Foundation
import Testing

@testable import BackupEngine

/// S3 server-side encryption (aws:kms with a key id) on top of the client-side encryption, against both S3 servers:
/// SeaweedFS takes its data keys from moto's AWS KMS (hack/services.sh configures it so), where the tests create the key.
@Suite(.serialized) struct S3SSETests {
  /// The SSE headers of an object, read with a signed HEAD.
  static func sse(_ store: S3Store, _ key: String) async throws -> (mode: String?, keyId: String?) {
    let full = store.objectKey(key)
    let r = try await store.send("HEAD \(key)") { store.request("HEAD", key: full) }
    #expect(r.status == 200, "HEAD \(key) answered \(r.status)")
    return (r.header("x-amz-server-side-encryption"), r.header("x-amz-server-side-encryption-aws-kms-key-id"))
  }

  @Test(arguments: S3Server.allCases) func everyPutAndMultipartUploadCarriesSSEKMS(_ server: S3Server) async throws {
    let (endpoint, env) = try ServiceEnv.s3(server)
    let kmsEndpoint = try ServiceEnv.require("BOTRT_AWSKMS_ENDPOINT")
    let keyId = try await AWSKMSKeyService(
      url: try #require(URLComponents(string: "awskms://bootstrap?region=us-east-1")),
      options: KMSOptions(environment: env, endpoint: kmsEndpoint)
    ).createKey(description: "botrt sse")
    let bucket = ServiceEnv.bucketName("sse")
    var store = try S3Store(
      url: try #require(URLComponents(string: "s3://\(bucket)/p")),
      options: StoreOptions(endpoint: endpoint, environment: env, serverSideEncryption: "aws:kms", sseKMSKeyId: keyId))
    try await store.createBucket(objectLock: true)
    store.multipartThreshold = 6 << 20
    store.partSize = 5 << 20
    try await store.put("small", data: Data("x".utf8), options: PutOptions())
    try await store.put(
      "locked", data: Data("y".utf8),
      options: PutOptions(retention: ObjectRetention(mode: .governance, retainUntil: Date().addingTimeInterval(600))))
    try await store.put("big", data: randomData(11 << 20), options: PutOptions())
    for k in ["small", "locked", "big"] {
      let h = try await Self.sse(store, k)
      #expect(h.mode == "aws:kms", "\(k) stored without SSE")
      #expect(h.keyId?.hasSuffix(keyId) == true, "\(k) stored with key \(h.keyId ?? "none")")
    }
    // Without SSE settings nothing is asked for (the bucket default applies).
    let plain = try S3Store(
      url: try #require(URLComponents(string: "s3://\(bucket)/plain")),
      options: StoreOptions(endpoint: endpoint, environment: env))
    try await plain.put("o", data: Data("z".utf8), options: PutOptions())
    #expect(try await Self.sse(plain, "o").keyId == nil)
  }

  @Test(arguments: S3Server.allCases) func cliBackupWithSSEKMS(_ server: S3Server) async throws {
    let (endpoint, env) = try ServiceEnv.s3(server)
    let kmsEndpoint = try ServiceEnv.require("BOTRT_AWSKMS_ENDPOINT")
    let keyId = try await AWSKMSKeyService(
      url: try #require(URLComponents(string: "awskms://bootstrap?region=us-east-1")),
      options: KMSOptions(environment: env, endpoint: kmsEndpoint)
    ).createKey(description: "botrt sse cli")
    let bucket = ServiceEnv.bucketName("sse-cli")
    let store = try S3Store(
      url: try #require(URLComponents(string: "s3://\(bucket)/repo")),
      options: StoreOptions(endpoint: endpoint, environment: env))
    try await store.createBucket(objectLock: false)
    let sh = try EngineShell()
    defer { sh.cleanup() }
    try sh.write("kek", Data(Crypto.randomBytes(32)))
    try sh.write("src/a.bin", randomData(1 << 20))
    let repoEnv = [
      "BOTRT_REPO": "s3://\(bucket)/repo", "BOTRT_KMS": "file://\(sh.dir)/kek", "BOTRT_S3_ENDPOINT": endpoint,
      "BOTRT_S3_SSE": "aws:kms", "BOTRT_S3_SSE_KMS_KEY_ID": keyId,
    ]
    try sh.ok("\"$ENGINE\" init --quiet", env: repoEnv)
    try sh.ok("\"$ENGINE\" backup --quiet --s3-sse aws:kms --s3-sse-kms-key-id '\(keyId)' src", env: repoEnv)
    try sh.ok("\"$ENGINE\" verify --quiet --all --read-data", env: repoEnv)
    let objects = try await store.list(prefix: "")
    for prefix in ["config", "keys/", "data/", "index/", "snapshots/", "audit/"] {
      let o = try #require(objects.first { $0.key.hasPrefix(prefix) }, "no \(prefix) object")
      let h = try await Self.sse(store, o.key)
      #expect(h.mode == "aws:kms" && h.keyId?.hasSuffix(keyId) == true, "\(o.key): \(h)")
    }
    // A key id without the mode is a clear error.
    let bad = try sh.run(
      "\"$ENGINE\" snapshots --quiet", env: repoEnv.merging(["BOTRT_S3_SSE": ""]) { $1 })
    #expect(bad.code == 4)
    #expect(bad.stderr.contains("--s3-sse aws:kms"))
  }
}
