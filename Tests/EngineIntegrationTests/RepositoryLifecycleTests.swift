import CurlHTTP
import Foundation
import Testing

@testable import BackupEngine

/// `rotate-keys --new-kek` with Vault Transit, and `delete-repository` on a plain and an Object Lock repository.
@Suite(.serialized) struct RepositoryLifecycleTests {
  /// Sets the Transit key's min_decryption_version, so that older key versions can no longer decrypt.
  static func retireOldVersions(addr: String, token: String, key: String, keep version: Int) async throws {
    let r = try await CurlClient().send(
      HTTPRequest(
        method: "POST", url: "\(addr)/v1/transit/keys/\(key)/config", headers: [("X-Vault-Token", token)],
        body: Data("{\"min_decryption_version\": \(version)}".utf8)))
    guard r.status / 100 == 2 else { throw BackendTestError("configuring \(key) answered \(r.status)") }
  }

  @Test func vaultNewKEKRewrapsAndTheOldVersionIsNotNeeded() async throws {
    let addr = try ServiceEnv.require("VAULT_ADDR")
    let token = try ServiceEnv.require("VAULT_TOKEN")
    let key = try await VaultTransitTests.createKey(addr: addr, token: token)
    let sh = try EngineShell()
    defer { sh.cleanup() }
    try sh.write("src/a.txt", Data("alpha\n".utf8))
    let env = [
      "BOTRT_REPO": "file://\(sh.dir)/repo",
      "BOTRT_KMS": "vault-transit://\(try VaultTransitTests.authority(addr))/transit/\(key)",
    ]
    try sh.ok("\"$ENGINE\" init --quiet --json", env: env)
    try sh.ok("\"$ENGINE\" backup --quiet --json src", env: env)
    let rot = try sh.ok("\"$ENGINE\" rotate-keys --quiet --json --new-kek", env: env)
    #expect(rot.stdout.contains("\"keyVersion\":\"2\""), "\(rot.stdout)")
    // Version 1 of the Transit key can no longer decrypt: the repository opens with version 2 alone.
    try await Self.retireOldVersions(addr: addr, token: token, key: key, keep: 2)
    try sh.ok("\"$ENGINE\" restore --quiet --json latest --target out", env: env)
    #expect(try sh.read("out/src/a.txt") == Data("alpha\n".utf8))
    // Neither flag, or both, is a usage error.
    #expect(try sh.run("\"$ENGINE\" rotate-keys --quiet --json", env: env).code == 2)
    let local = try sh.run("\"$ENGINE\" rotate-keys --quiet --json --new-kek --kms file://\(sh.dir)/nokey", env: env)
    #expect(local.code != 0)
  }

  @Test func deleteRepositoryRemovesEverythingAndNeedsConfirm() throws {
    let sh = try EngineShell()
    defer { sh.cleanup() }
    try sh.write("key", Data((Hex.encode(Crypto.randomBytes(32)) + "\n").utf8))
    try sh.write("src/a.bin", randomData(1 << 20))
    let env = ["BOTRT_REPO": "file://\(sh.dir)/repo", "BOTRT_KMS": "file://\(sh.dir)/key"]
    try sh.ok("\"$ENGINE\" backup --quiet --json --init-if-missing src", env: env)
    try sh.ok("\"$ENGINE\" backup --quiet --json src", env: env)
    let refused = try sh.run("\"$ENGINE\" delete-repository --quiet --json", env: env)
    #expect(refused.code == 2)
    #expect(refused.stderr.contains("--confirm"))
    #expect(try LocalFiles.regularFiles(under: sh.dir + "/repo").contains("config"))
    let r = try sh.ok("\"$ENGINE\" delete-repository --quiet --json --confirm", env: env)
    #expect(r.stdout.contains("\"objectsRetained\":0"), "\(r.stdout)")
    #expect(try LocalFiles.regularFiles(under: sh.dir + "/repo").isEmpty)
    #expect(try sh.run("\"$ENGINE\" snapshots --quiet --json", env: env).code != 0)
    // Again, or where nothing was ever stored: nothing to delete, and that is no error.
    let again = try sh.ok("\"$ENGINE\" delete-repository --quiet --json --confirm", env: env)
    #expect(again.stdout.contains("\"objectsDeleted\":0"), "\(again.stdout)")
    #expect(again.stdout.contains("nothing to delete"))
  }

  @Test(arguments: S3Server.allCases) func deleteRepositoryKeepsWhatObjectLockRetainsAndSaysSo(_ server: S3Server)
    async throws
  {
    let (endpoint, s3env) = try ServiceEnv.s3(server)
    let bucket = ServiceEnv.bucketName("delrepo")
    let store = try S3Store(
      url: try #require(URLComponents(string: "s3://\(bucket)/repo")),
      options: StoreOptions(endpoint: endpoint, environment: s3env))
    try await store.createBucket(objectLock: true)
    let sh = try EngineShell()
    defer { sh.cleanup() }
    try sh.write("key", Data((Hex.encode(Crypto.randomBytes(32)) + "\n").utf8))
    try sh.write("src/a.bin", randomData(1 << 20))
    let env = [
      "BOTRT_REPO": "s3://\(bucket)/repo", "BOTRT_KMS": "file://\(sh.dir)/key", "BOTRT_S3_ENDPOINT": endpoint,
    ]
    try sh.ok("\"$ENGINE\" backup --quiet --json --init-if-missing --object-lock governance:1 src", env: env)
    let before = try await store.list(prefix: "")
    let r = try sh.ok("\"$ENGINE\" delete-repository --quiet --json --confirm", env: env)
    let result = try #require(
      try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)")
    let retained = try #require(result["objectsRetained"] as? Int)
    let deleted = try #require(result["objectsDeleted"] as? Int)
    #expect(retained > 0)
    #expect((result["warnings"] as? [String])?.first?.contains("retained by Object Lock") == true)
    let after = try await store.list(prefix: "").map(\.key)
    // What is reported retained is still there, with the config and key files that keep it readable.
    #expect(after.contains("config"))
    #expect(after.contains { $0.hasPrefix("keys/") })
    #expect(after.contains { $0.hasPrefix("data/") })
    // The backup's released lock is behind a delete marker: not listed before, its version deleted now.
    #expect(deleted + retained <= before.count + 2)
    try sh.ok("\"$ENGINE\" snapshots --quiet --json", env: env)
  }
}

enum LocalFiles {
  /// Regular files under `dir`, relative paths.
  static func regularFiles(under dir: String) throws -> [String] {
    var out: [String] = []
    let e = FileManager.default.enumerator(atPath: dir)
    while let p = e?.nextObject() as? String {
      var isDir: ObjCBool = false
      if FileManager.default.fileExists(atPath: dir + "/" + p, isDirectory: &isDir), !isDir.boolValue {
        out.append(p)
      }
    }
    return out
  }
}
