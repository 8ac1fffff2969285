import EngineContract
import Foundation
import Testing

@testable import BackupEngine

/// `--read-only`: a disaster recovery cluster restores and verifies from the repository the primary cluster still
/// backs up into, and must not change it: no lock object, no audit object, no delete marker (issue 15, DR-cluster
/// mode: "a restore-only policy never writes to the repository"). Checked on a versioned moto bucket with Object
/// Lock, where every write leaves a version or a delete marker behind, so nothing a run wrote can hide.
@Suite(.serialized) struct ReadOnlyRepositoryTests {
  /// Every key of the bucket's repository prefix with its stored version ids (delete markers included: a key only
  /// a delete marker hides is listed with its versions all the same, and `hidden` names it).
  struct Fingerprint: Equatable, CustomStringConvertible {
    var versions: [String: [String]]
    var hidden: Set<String>
    var description: String {
      versions.keys.sorted().map { "\($0)\(hidden.contains($0) ? " (hidden)" : ""): \(versions[$0]!.count)" }
        .joined(separator: ", ")
    }
  }

  static func fingerprint(_ store: S3Store) async throws -> Fingerprint {
    var v: [String: [String]] = [:]
    for key in try await store.listAllVersionedKeys(prefix: "") { v[key] = try await store.versions(of: key) }
    return Fingerprint(versions: v, hidden: Set(try await store.listHidden(prefix: "").map(\.key)))
  }

  @Test func aReadOnlyRunChangesNothingInAVersionedRepository() async throws {
    let (endpoint, env) = try ServiceEnv.s3(.moto)
    let bucket = ServiceEnv.bucketName("readonly")
    let store = try S3Store(
      url: try #require(URLComponents(string: "s3://\(bucket)/repo")),
      options: StoreOptions(endpoint: endpoint, environment: env))
    try await store.createBucket(objectLock: true)
    let sh = try EngineShell()
    defer { sh.cleanup() }
    try sh.write("key", Data((Hex.encode(Crypto.randomBytes(32)) + "\n").utf8))
    let payload = randomData(2 << 20)
    try sh.write("src/a.bin", payload)
    try sh.write("src/b.txt", Data("bravo\n".utf8))
    let repoEnv = [
      "BOTRT_REPO": "s3://\(bucket)/repo", "BOTRT_KMS": "file://\(sh.dir)/key", "BOTRT_S3_ENDPOINT": endpoint,
    ]
    try sh.ok("\"$ENGINE\" backup --quiet --json --init-if-missing --object-lock governance:1 src", env: repoEnv)
    try sh.write("src/c.txt", Data("charlie\n".utf8))
    try sh.ok("\"$ENGINE\" backup --quiet --json src", env: repoEnv)
    let before = try await Self.fingerprint(store)
    #expect(before.versions.keys.contains { $0.hasPrefix("audit/") }, "the backups' audit objects: \(before)")

    // Every reading command, read-only: the bucket is as it was, down to the versions.
    let restored = try sh.ok("\"$ENGINE\" restore --json --read-only latest --target out", env: repoEnv)
    try sh.ok("\"$ENGINE\" verify --quiet --json --read-only --all --read-data", env: repoEnv)
    try sh.ok("\"$ENGINE\" snapshots --quiet --json --read-only", env: repoEnv)
    try sh.ok("\"$ENGINE\" ls --quiet --json --read-only latest", env: repoEnv)
    try sh.ok("\"$ENGINE\" restore --quiet --read-only latest --stdout --path src/b.txt > b.out", env: repoEnv)
    #expect(try await Self.fingerprint(store) == before)
    #expect(try sh.read("out/src/a.bin") == payload)
    #expect(try sh.read("b.out") == Data("bravo\n".utf8))
    // Who read what stays in the run's log.
    #expect(restored.stderr.contains("audit: {"), "\(restored.stderr)")
    #expect(restored.stderr.contains("\"action\":\"restored\""), "\(restored.stderr)")

    // A command that must write is refused, naming the flag, and changes nothing either.
    let forget = try sh.run("\"$ENGINE\" forget --quiet --json --read-only --keep-last 1 --prune", env: repoEnv)
    #expect(forget.code == EngineExitCode.usage, "\(forget.stderr)")
    #expect(forget.stderr.contains("--read-only"), "\(forget.stderr)")
    try sh.write("src/d.txt", Data("delta\n".utf8))
    let backup = try sh.run("\"$ENGINE\" backup --quiet --json --read-only src", env: repoEnv)
    #expect(backup.code == EngineExitCode.storage, "\(backup.stderr)")
    #expect(backup.stderr.contains("opened read-only (--read-only)"), "\(backup.stderr)")
    #expect(try await Self.fingerprint(store) == before)

    // The same restore without the flag writes a lock (then hides it) and an audit object: what the flag prevents.
    try sh.ok("\"$ENGINE\" restore --quiet --json latest --target out2", env: repoEnv)
    let after = try await Self.fingerprint(store)
    let added = Set(after.versions.keys).subtracting(before.versions.keys)
    #expect(added.contains { $0.hasPrefix("locks/") } && added.contains { $0.hasPrefix("audit/") }, "\(after)")
  }

  /// A read-only run waits for (and, without --retry-lock, fails on) a live exclusive lock, as a shared lock would,
  /// and leaves a stale lock where it is: removing it would be a write.
  @Test func aReadOnlyRunHonoursExclusiveLocksAndLeavesStaleOnes() throws {
    let sh = try EngineShell()
    defer { sh.cleanup() }
    try sh.write("key", Data((Hex.encode(Crypto.randomBytes(32)) + "\n").utf8))
    try sh.write("src/a.txt", Data("alpha\n".utf8))
    let env = ["BOTRT_REPO": "file://\(sh.dir)/repo", "BOTRT_KMS": "file://\(sh.dir)/key"]
    try sh.ok("\"$ENGINE\" backup --quiet --json --init-if-missing src", env: env)
    func plant(_ name: String, exclusive: Bool, expires: Date) throws {
      let record = LockRecord(
        host: "primary-cluster-node", pid: 4242, time: Manifest.formatTime(Date()),
        expires: Manifest.formatTime(expires), exclusive: exclusive)
      try sh.write("repo/locks/\(name)", try JSONEncoder().encode(record))
    }
    let live = Hex.encode(Crypto.randomBytes(16))
    try plant(live, exclusive: true, expires: Date().addingTimeInterval(600))
    let refused = try sh.run("\"$ENGINE\" restore --quiet --json --read-only latest --target out", env: env)
    #expect(refused.code == EngineExitCode.locked, "\(refused.stderr)")
    #expect(refused.stderr.contains("exclusive"), "\(refused.stderr)")

    try FileManager.default.removeItem(atPath: sh.dir + "/repo/locks/\(live)")
    let stale = Hex.encode(Crypto.randomBytes(16))
    try plant(stale, exclusive: true, expires: Date().addingTimeInterval(-60))
    try sh.ok("\"$ENGINE\" restore --quiet --json --read-only latest --target out", env: env)
    #expect(try sh.read("out/src/a.txt") == Data("alpha\n".utf8))
    #expect(FileManager.default.fileExists(atPath: sh.dir + "/repo/locks/\(stale)"), "the stale lock was removed")
    #expect(
      try LocalFiles.regularFiles(under: sh.dir + "/repo").filter { $0.hasPrefix("locks/") } == ["locks/\(stale)"])
  }
}

/// A local directory or an S3 bucket (moto).
enum StoreKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
  case local, s3
  var testDescription: String { rawValue }
}

/// `storageBytesRead` in every result: the bytes fetched from the storage, as stored. A DRDrill's
/// status.lastResult.bytesRead adds its restore's and verify's, so it must count what came over the wire (or off
/// the disk), not the restored bytes.
@Suite(.serialized) struct StorageBytesReadTests {
  @Test(arguments: StoreKind.allCases) func restoreAndVerifyCountTheBytesFetchedAsStored(_ kind: StoreKind) async throws
  {
    let sh = try EngineShell()
    defer { sh.cleanup() }
    try sh.write("key", Data((Hex.encode(Crypto.randomBytes(32)) + "\n").utf8))
    var env = ["BOTRT_KMS": "file://\(sh.dir)/key"]
    // Everything stored, from a listing of the storage itself.
    let stored: () async throws -> (all: Int64, data: Int64)
    switch kind {
    case .local:
      env["BOTRT_REPO"] = "file://\(sh.dir)/repo"
      stored = {
        var all: Int64 = 0
        var data: Int64 = 0
        for f in try LocalFiles.regularFiles(under: sh.dir + "/repo") {
          let size = (try FileManager.default.attributesOfItem(atPath: sh.dir + "/repo/" + f)[.size] as? Int64) ?? 0
          all += size
          if f.hasPrefix("data/") { data += size }
        }
        return (all, data)
      }
    case .s3:
      let (endpoint, s3env) = try ServiceEnv.s3(.moto)
      let bucket = ServiceEnv.bucketName("bytesread")
      let store = try S3Store(
        url: try #require(URLComponents(string: "s3://\(bucket)/repo")),
        options: StoreOptions(endpoint: endpoint, environment: s3env))
      try await store.createBucket(objectLock: false)
      env["BOTRT_REPO"] = "s3://\(bucket)/repo"
      env["BOTRT_S3_ENDPOINT"] = endpoint
      stored = {
        let objects = try await store.list(prefix: "")
        return (
          objects.reduce(0) { $0 + $1.size }, objects.filter { $0.key.hasPrefix("data/") }.reduce(0) { $0 + $1.size }
        )
      }
    }
    // 8 MiB that compress to almost nothing, and 2 MiB that do not.
    try sh.write("src/text.log", Data(String(repeating: "GET /index.html 200 1024\n", count: 335_545).utf8))
    try sh.write("src/random.bin", randomData(2 << 20))
    try sh.ok("\"$ENGINE\" backup --quiet --json --init-if-missing src", env: env)
    let (all, data) = try await stored()
    let restore = try sh.ok("\"$ENGINE\" restore --quiet --json latest --target out", env: env)
    let r = try #require(
      try JSONSerialization.jsonObject(with: Data(restore.stdout.split(separator: "\n").last!.utf8))
        as? [String: Any])
    let restored = try #require(r["bytesRead"] as? Int)
    let fetched = Int64(try #require(r["storageBytesRead"] as? Int, "\(r)"))
    // Every data blob was fetched once, as stored (the packs' headers aside); far less than the restored bytes.
    #expect(fetched >= data * 9 / 10 && fetched <= all + 64 * 1024, "fetched \(fetched), data \(data), all \(all)")
    #expect(restored > 10 << 20 && fetched < Int64(restored) / 2, "restored \(restored), fetched \(fetched)")
    let verify = try sh.ok("\"$ENGINE\" verify --quiet --json --all --read-data", env: env)
    let v = try #require(
      try JSONSerialization.jsonObject(with: Data(verify.stdout.split(separator: "\n").last!.utf8))
        as? [String: Any])
    let packs = Int64(try #require(v["bytesDownloaded"] as? Int))
    let verifyFetched = Int64(try #require(v["storageBytesRead"] as? Int))
    #expect(packs >= data && verifyFetched >= packs && verifyFetched <= all + 64 * 1024, "\(v)")
  }
}
