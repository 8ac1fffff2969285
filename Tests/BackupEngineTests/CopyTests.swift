import Foundation
import Logging
import Testing

@testable import BackupEngine

/// `copy` between two local repositories with different keys.
@Suite struct CopyTests {
  struct Fixture {
    let dir: String
    let source: Repository
    let target: Repository
    let sourceKMS: LocalKeyService
    let targetKMS: LocalKeyService
    let targetStore: LocalStore

    init(targetStore: (String) throws -> LocalStore = { try LocalStore(root: $0) }) async throws {
      dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-copy-\(UUID().uuidString)").path
      try FileManager.default.createDirectory(atPath: dir + "/src", withIntermediateDirectories: true)
      try makeFile(atPath: dir + "/kek1", contents: Data(Crypto.randomBytes(32)))
      try makeFile(atPath: dir + "/kek2", contents: Data(Crypto.randomBytes(32)))
      sourceKMS = try LocalKeyService(path: dir + "/kek1")
      targetKMS = try LocalKeyService(path: dir + "/kek2")
      source = try await Repository.initialize(
        store: try LocalStore(root: dir + "/repo1"), keyService: sourceKMS, objectLock: nil, logger: Logger(label: "t"))
      self.targetStore = try targetStore(dir + "/repo2")
      target = try await Repository.initialize(
        store: self.targetStore, keyService: targetKMS, objectLock: nil, logger: Logger(label: "t"))
    }

    func write(_ rel: String, _ data: Data) throws {
      let p = dir + "/src/" + rel
      try FileManager.default.createDirectory(
        atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
      try makeFile(atPath: p, contents: data)
    }

    func restore(_ repo: Repository, _ snap: ID, to rel: String) async throws -> String {
      let (snaps, _) = try await repo.loadSnapshots()
      let s = try #require(snaps.first { $0.id == snap })
      let (index, _) = try await repo.loadIndex()
      _ = try await repo.restore(s, index: index, options: RestoreOptions(target: dir + "/" + rel))
      return dir + "/" + rel
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }
  }

  static func contents(_ root: String) throws -> [String: Data] {
    var out: [String: Data] = [:]
    let e = try #require(FileManager.default.enumerator(atPath: root))
    while let f = e.nextObject() as? String {
      var isDir: ObjCBool = false
      if FileManager.default.fileExists(atPath: root + "/" + f, isDirectory: &isDir), !isDir.boolValue {
        out[f] = try Data(contentsOf: URL(fileURLWithPath: root + "/" + f))
      }
    }
    return out
  }

  @Test func copiesReencryptsAndIsIncremental() async throws {
    let f = try await Fixture()
    defer { f.cleanup() }
    let big = Data(Crypto.randomBytes(3 << 20))
    try f.write("a.bin", big)
    try f.write("d/b.txt", Data("hello copy\n".utf8))
    let s1 = try await f.source.backup(BackupOptions(paths: [f.dir + "/src"], tags: ["k": "v"]))
    try f.write("d/c.txt", Data(repeating: 7, count: 100_000))
    let s2 = try await f.source.backup(BackupOptions(paths: [f.dir + "/src"]))

    let r1 = try await f.source.copy(to: f.target)
    #expect(r1.copied.map(\.source) == [s1.snapshotID, s2.snapshotID])
    #expect(r1.skipped.isEmpty)
    #expect(r1.blobsNew > 0 && r1.bytesStored > 0)

    // The target's manifests are its own: signed with its key, sealed for its repo id, with the origin recorded.
    let (tsnaps, errors) = try await f.target.loadSnapshots(collectErrors: true)
    #expect(errors.isEmpty)
    #expect(tsnaps.count == 2)
    #expect(tsnaps.map { $0.manifest.origin?.snapshot } == [s1.snapshotID.hex, s2.snapshotID.hex])
    #expect(
      tsnaps.allSatisfy { $0.manifest.origin?.repo == f.source.config.id && $0.manifest.repo == f.target.config.id })
    #expect(tsnaps[0].manifest.tags == ["k": "v"])
    #expect(tsnaps[1].manifest.parent == tsnaps[0].id.hex)
    // Re-encrypted: no pack or blob id is shared between the repositories.
    let (si, _) = try await f.source.loadIndex()
    let (ti, _) = try await f.target.loadIndex()
    #expect(Set(si.packs.keys).isDisjoint(with: Set(ti.packs.keys)))
    #expect(
      Set(si.packContents().values.flatMap { $0.map(\.id) }).isDisjoint(
        with: ti.packContents().values.flatMap { $0.map(\.id) }))
    // The target restores and verifies with only its own key.
    let reopened = try await Repository.open(store: f.targetStore, keyService: f.targetKMS, logger: Logger(label: "t"))
    let out = try await f.restore(reopened, r1.copied[1].target, to: "out")
    let restored = try Self.contents(out)
    #expect(restored["src/a.bin"] == big)
    #expect(restored["src/d/b.txt"] == Data("hello copy\n".utf8))
    #expect(restored["src/d/c.txt"] == Data(repeating: 7, count: 100_000))
    let v = try await reopened.verify(snapshotRef: nil, readData: true)
    #expect(v.errors.isEmpty, "\(v.errors)")
    await #expect(throws: (any Error).self) {
      _ = try await Repository.open(store: f.targetStore, keyService: f.sourceKMS, logger: Logger(label: "t"))
    }

    // A second copy finds everything copied: nothing read, nothing stored.
    let before = try await f.targetStore.list(prefix: "").map(\.key).filter { !$0.hasPrefix("audit/") }
    let r2 = try await f.source.copy(to: f.target)
    #expect(r2.copied.isEmpty)
    #expect(r2.skipped == [s1.snapshotID, s2.snapshotID])
    #expect(r2.bytesStored == 0 && r2.bytesRead == 0)
    let after = try await f.targetStore.list(prefix: "").map(\.key).filter { !$0.hasPrefix("audit/") }
    #expect(Set(before) == Set(after))

    // A new source snapshot with one changed file: only that file's blobs are read and stored.
    try f.write("d/b.txt", Data("changed\n".utf8))
    let s3 = try await f.source.backup(BackupOptions(paths: [f.dir + "/src"]))
    let r3 = try await f.source.copy(to: f.target, options: CopyOptions(snapshots: ["latest"]))
    #expect(r3.copied.map(\.source) == [s3.snapshotID])
    #expect(r3.bytesRead == Int64("changed\n".utf8.count), "read \(r3.bytesRead) bytes from the source")
    #expect(r3.blobsNew == 1)
    let out3 = try await f.restore(f.target, r3.copied[0].target, to: "out3")
    #expect(try Self.contents(out3)["src/d/b.txt"] == Data("changed\n".utf8))
    #expect(try Self.contents(out3)["src/a.bin"] == big)
  }

  @Test func copyWritesPacksBeforeIndexBeforeManifestAndAudits() async throws {
    let f = try await Fixture()
    defer { f.cleanup() }
    try f.write("x", Data(Crypto.randomBytes(200_000)))
    _ = try await f.source.backup(BackupOptions(paths: [f.dir + "/src"]))
    // Both repositories opened as a copy run opens them (keys unwrapped through the KMS).
    let source = try await Repository.open(
      store: try LocalStore(root: f.dir + "/repo1"), keyService: f.sourceKMS, logger: Logger(label: "t"))
    let target = try await Repository.open(store: f.targetStore, keyService: f.targetKMS, logger: Logger(label: "t"))
    let r = try await source.copy(to: target)
    #expect(r.copied.count == 1)
    // Every blob the manifest's tree references is indexed in the target, and every index entry's pack exists.
    let (ti, _) = try await f.target.loadIndex()
    let listed = try await f.targetStore.list(prefix: "data/")
    #expect(Set(ti.packs.keys.map { Repository.packKey($0) }) == Set(listed.map(\.key)))
    let lines = target.audit.recorded
    #expect(lines.contains { $0.contains("\"action\":\"copied\"") && $0.contains(source.config.id) })
    #expect(source.audit.recorded.contains { $0.contains("\"action\":\"copied\"") })
    // The data key was unwrapped in each repository: one audit line per unwrap (4 at open, then "files").
    #expect(lines.contains { $0.contains("\"action\":\"unwrapped\"") && $0.contains("\"key\":\"files\"") })
    #expect(lines.filter { $0.contains("\"action\":\"unwrapped\"") }.count == 5)
    #expect(target.unwrapsByKMS == [f.targetKMS.descriptor: 5])
    #expect(source.unwrapsByKMS == [f.sourceKMS.descriptor: 5])
  }

  @Test func aFewBlobsOfALargePackAreReadByRange() async throws {
    let f = try await Fixture()
    defer { f.cleanup() }
    try f.write("big.bin", Data(Crypto.randomBytes(4 << 20)))
    try f.write("d/small.txt", Data("small\n".utf8))
    _ = try await f.source.backup(BackupOptions(paths: [f.dir + "/src"]))
    // A second group whose only blob sits in the first backup's pack, next to 4 MiB of other data.
    let b = try await f.source.backup(BackupOptions(paths: [f.dir + "/src/d"]))
    let r = try await f.source.copy(to: f.target, options: CopyOptions(snapshots: [b.snapshotID.hex]))
    #expect(r.copied.count == 1)
    #expect(r.bytesRead == 6)
    let out = try await f.restore(f.target, r.copied[0].target, to: "out")
    #expect(try Self.contents(out) == ["d/small.txt": Data("small\n".utf8)])
  }

  @Test func copyToTheSameRepositoryIsRefused() async throws {
    let f = try await Fixture()
    defer { f.cleanup() }
    await #expect(throws: EngineError.self) { _ = try await f.source.copy(to: f.source) }
  }

  @Test func openAuditsEachUnwrapWithoutKeyMaterial() async throws {
    let f = try await Fixture()
    defer { f.cleanup() }
    let repo = try await Repository.open(
      store: try LocalStore(root: f.dir + "/repo1"), keyService: f.sourceKMS, logger: Logger(label: "t"))
    let unwraps = repo.audit.recorded.filter { $0.contains("\"action\":\"unwrapped\"") }
    #expect(unwraps.count == 4)
    #expect(repo.unwrapsByKMS == [f.sourceKMS.descriptor: 4])
    for name in ["meta", "mac", "chunker", "signing"] {
      #expect(unwraps.contains { $0.contains("\"key\":\"\(name)\"") })
    }
    // No line carries a plaintext key in hex or base64.
    let keys = try await ["meta", "mac", "chunker", "signing"].asyncMap { try await repo.key($0) }
    for k in keys {
      for l in repo.audit.recorded {
        #expect(!l.contains(Hex.encode(k)) && !l.contains(Data(k).base64EncodedString()))
      }
    }
  }

  @Test func kmsURIRedaction() {
    #expect(KMSURI.redact("vault-transit://127.0.0.1:8200/transit/k") == "vault-transit://127.0.0.1:8200/transit/k")
    #expect(KMSURI.redact("vault-transit://user:pw@host/transit/k") == "vault-transit://host/transit/k")
    #expect(
      KMSURI.redact("azurekv://v.vault.azure.net/keys/k?token=abc&endpoint=http://x")
        == "azurekv://v.vault.azure.net/keys/k?endpoint=http://x")
    #expect(KMSURI.redact("awskms:///alias/x?region=us-east-1&secretKey=zz") == "awskms:///alias/x?region=us-east-1")
  }
}

extension Array {
  func asyncMap<T>(_ f: (Element) async throws -> T) async rethrows -> [T] {
    var out: [T] = []
    for e in self { out.append(try await f(e)) }
    return out
  }
}
