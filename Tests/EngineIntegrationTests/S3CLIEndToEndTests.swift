import Foundation
import Testing

@testable import BackupEngine

/// Runs the real botrt-engine binary (BOTRT_ENGINE_BIN) through a shell, with the test environment inherited.
struct EngineShell {
  let dir: String

  init() throws {
    _ = try CLIHarness.binary()
    dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-e2e-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  }

  struct Result {
    var code: Int32
    var stdout: String
    var stderr: String
  }

  /// Runs `script` with bash (pipefail on); `$ENGINE` is the binary. Secrets stay in the environment, not the script.
  @discardableResult
  func run(_ script: String, env extra: [String: String] = [:]) throws -> Result {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = ["-c", "set -euo pipefail\n" + script]
    var env = ProcessInfo.processInfo.environment
    env["ENGINE"] = try CLIHarness.binary()
    for (k, v) in extra { env[k] = v }
    p.environment = env
    p.currentDirectoryURL = URL(fileURLWithPath: dir)
    let out = Pipe()
    let err = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let box = DataBox()
    let g = DispatchGroup()
    g.enter()
    DispatchQueue.global().async {
      box.data = err.fileHandleForReading.readDataToEndOfFile()
      g.leave()
    }
    let o = out.fileHandleForReading.readDataToEndOfFile()
    g.wait()
    p.waitUntilExit()
    return Result(
      code: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
      stderr: String(decoding: box.data, as: UTF8.self))
  }

  /// Runs and fails the test with the output when the exit code is not 0.
  @discardableResult
  func ok(_ script: String, env: [String: String] = [:]) throws -> Result {
    let r = try run(script, env: env)
    guard r.code == 0 else {
      throw BackendTestError(
        "command failed with exit code \(r.code):\n\(script)\nstdout: \(r.stdout)\nstderr: \(r.stderr)")
    }
    return r
  }

  func write(_ rel: String, _ data: Data) throws {
    let path = dir + "/" + rel
    try FileManager.default.createDirectory(
      atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try data.write(to: URL(fileURLWithPath: path))
  }

  func read(_ rel: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: dir + "/" + rel)) }

  func cleanup() { do { try FileManager.default.removeItem(atPath: dir) } catch {} }
}

/// The real CLI against both S3 servers (moto and SeaweedFS) with Object Lock (COMPLIANCE) and Vault Transit keys.
@Suite(.serialized) struct S3CLIEndToEndTests {
  @Test(arguments: S3Server.allCases) func backupRestoreWithObjectLockAndVault(_ server: S3Server) async throws {
    let (endpoint, env) = try ServiceEnv.s3(server)
    let vault = try VaultTransitTests.authority(try ServiceEnv.require("VAULT_ADDR"))
    _ = try ServiceEnv.require("VAULT_TOKEN")
    let bucket = ServiceEnv.bucketName("e2e")
    let store = try S3Store(
      url: try #require(URLComponents(string: "s3://\(bucket)/repo")),
      options: StoreOptions(endpoint: endpoint, environment: env))
    try await store.createBucket(objectLock: true)
    let sh = try EngineShell()
    defer { sh.cleanup() }
    let files: [String: Data] = [
      "src/a.txt": Data("alpha\n".utf8), "src/dir/b.bin": randomData(3 << 20),
      "src/dir/c.txt": Data(repeating: 65, count: 10_000),
    ]
    for (k, v) in files { try sh.write(k, v) }
    let repoEnv = [
      "BOTRT_REPO": "s3://\(bucket)/repo", "BOTRT_KMS": "vault-transit://\(vault)/transit/botrt-test",
      "BOTRT_S3_ENDPOINT": endpoint,
    ]
    try sh.ok("\"$ENGINE\" init --quiet --json --object-lock compliance:1", env: repoEnv)
    let before = try await store.list(prefix: "").count
    let b = try sh.ok("\"$ENGINE\" backup --quiet --json --data-type files src", env: repoEnv)
    // The result counts the requests sent to S3 (botrt_storage_requests_total): at least one PUT per new object.
    let written = try await store.list(prefix: "").count - before
    let line = try #require(b.stdout.split(separator: "\n").last, "no result line: \(b.stdout)")
    let result = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    let requests = try #require(result["storageRequests"] as? Int, "no storageRequests in \(line)")
    #expect(written > 0)
    #expect(requests >= written, "\(requests) requests for \(written) new objects")
    try sh.ok("\"$ENGINE\" restore --quiet --json latest --target out", env: repoEnv)
    for (k, v) in files {
      let restored = FileManager.default.subpaths(atPath: sh.dir + "/out")?.first {
        $0.hasSuffix(String(k.dropFirst(4)))
      }
      let path = try #require(restored, "restored tree lacks \(k)")
      #expect(try sh.read("out/" + path) == v, "\(k) differs after restore")
    }
    try sh.ok("\"$ENGINE\" verify --quiet --json --all --read-data", env: repoEnv)
    // Every object written carries COMPLIANCE retention, so a pack cannot be deleted.
    let objects = try await store.list(prefix: "")
    let pack = try #require(objects.first { $0.key.hasPrefix("data/") }, "no pack in \(objects.map(\.key))")
    let until = try #require(try await store.retainUntil(store.objectKey(pack.key)))
    #expect(until > Date().addingTimeInterval(3600))
    await #expect(throws: StorageError.self) { try await store.deleteAllVersions(pack.key) }
    // The wrong Vault key cannot open the repository.
    let bad = try sh.run(
      "\"$ENGINE\" snapshots --quiet --json",
      env: repoEnv.merging(["BOTRT_KMS": "vault-transit://\(vault)/transit/botrt-test-2"]) { $1 })
    #expect(bad.code != 0)
  }
}
