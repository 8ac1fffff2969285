import Foundation
import Logging
import Testing

@testable import BackupEngine

/// The attacker of issue 14 items 5 and 6: someone who can write to the repository's storage (not delete locked
/// versions, not use the KEK to unwrap), and who plants key files, manifests and index files and overwrites packs.
@Suite struct HostileRepositoryTests {
  static let log = Logger(label: "t")

  /// A scratch directory with a source tree and a local KEK.
  typealias Setup = ScratchRepositorySetup

  static func decodeKeyFile(_ store: any ObjectStore, _ key: String) async throws -> KeyFile {
    try JSONDecoder().decode(KeyFile.self, from: try await store.get(key))
  }

  /// A key file as an attacker with only a KMS public key (or, here, the wrap side of the KEK) and write access
  /// makes it: the genuine file's wrapped meta, mac, chunker and signing keys, with data keys of the attacker's
  /// choice wrapped for this repository, dated in the future so that it is tried first.
  static func plantedKeyFile(
    _ genuine: KeyFile, kek: LocalKeyService, attackerKey: [UInt8], signature: String? = nil
  ) async throws -> KeyFile {
    var kf = genuine
    for n in ["files", "database", "logs"] {
      kf.keys[n] = try await kek.wrap(attackerKey, context: Repository.context(genuine.repo, n))
    }
    kf.created = "2099-01-01T00:00:00Z"
    kf.signature = signature
    return kf
  }

  static func backup(_ repo: Repository, _ paths: [String]) async throws -> BackupResult {
    let lock = try await repo.lock(exclusive: false)
    let r = try await repo.backup(BackupOptions(paths: paths))
    await lock.release()
    try await repo.audit.flush()
    return r
  }

  /// Item 5: a planted key file (unsigned, or with a forged signature, or copied from another repository) is refused
  /// before any of its keys is unwrapped and named in the warnings; the genuine data keys stay in use. Before key
  /// files were signed, the planted one (newest) was chosen and the attacker's data key encrypted new backups.
  @Test func plantedKeyFilesAreRefusedAndNamed() async throws {
    let t = try Setup()
    defer { t.cleanup() }
    let store = try LocalStore(root: t.dir + "/repo")
    let repo = try await Repository.initialize(store: store, keyService: t.kek, objectLock: nil, logger: Self.log)
    #expect(repo.config.keyFiles == KeyFile.signedScheme)
    let genuineName = repo.keyFile
    let genuine = try await Self.decodeKeyFile(store, genuineName)
    #expect(genuine.signature != nil)
    let genuineFilesKey = try await repo.key("files")
    let attackerKey = Crypto.randomBytes(32)

    let unsigned = try await Self.plantedKeyFile(genuine, kek: t.kek, attackerKey: attackerKey)
    let forged = try await Self.plantedKeyFile(
      genuine, kek: t.kek, attackerKey: attackerKey, signature: Hex.encode(Crypto.randomBytes(64)))
    // The genuine signature over other content: a signature does not move to another file.
    let moved = try await Self.plantedKeyFile(
      genuine, kek: t.kek, attackerKey: attackerKey, signature: genuine.signature)
    // A key file of another repository (same KEK), copied in.
    let other = try await Repository.initialize(
      store: try LocalStore(root: t.dir + "/other"), keyService: t.kek, objectLock: nil, logger: Self.log)
    let foreign = try await Self.decodeKeyFile(other.store, other.keyFile)
    let planted = [
      "keys/" + String(repeating: "a", count: 32): try unsigned.encoded(),
      "keys/" + String(repeating: "b", count: 32): try forged.encoded(),
      "keys/" + String(repeating: "c", count: 32): try moved.encoded(),
      "keys/" + String(repeating: "d", count: 32): try foreign.encoded(),
      "keys/" + String(repeating: "e", count: 32): Data("not json".utf8),
    ]
    for (k, d) in planted { try await store.put(k, data: d, options: PutOptions()) }

    let opened = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    #expect(opened.keyFile == genuineName)
    // No key of a refused file was unwrapped: 4 unwraps (meta, mac, chunker, signing), all from the genuine file.
    #expect(opened.unwrapCount == 4)
    #expect(try await opened.key("files") == genuineFilesKey)
    #expect(try await opened.key("files") != attackerKey)
    for k in planted.keys {
      #expect(opened.warnings.contains { $0.contains(k) && $0.contains("refused") }, "\(k): \(opened.warnings)")
    }
    #expect(opened.warnings.contains { $0.contains("ddddd") && $0.contains("another repository") })
    #expect(opened.warnings.contains { $0.contains("bbbbb") && $0.contains("signature is invalid") })
    #expect(opened.audit.recorded.allSatisfy { !$0.contains("unwrapped") || $0.contains(genuineName) })

    // With only planted key files left, opening fails naming one of them, and never uses the attacker's key.
    try FileManager.default.removeItem(atPath: t.dir + "/repo/" + genuineName)
    let err = await #expect(throws: EngineError.self) {
      _ = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    }
    guard case .integrity(let object, let message) = err else {
      Issue.record("expected an integrity error, got \(String(describing: err))")
      return
    }
    #expect(planted.keys.contains(object), "\(object)")
    #expect(message.contains("no key file of this repository is left"), "\(message)")
  }

  /// Item 5: a repository id and signing key pinned by the caller refuse a repository replaced wholesale (another
  /// config and key files at the same location, which are self-consistent) before anything is unwrapped.
  @Test func pinnedIdentityRefusesAReplacedRepository() async throws {
    let t = try Setup()
    defer { t.cleanup() }
    let store = try LocalStore(root: t.dir + "/repo")
    let original = try await Repository.initialize(
      store: store, keyService: t.kek, objectLock: nil, logger: Self.log)
    let pin = RepositoryExpectation(repositoryID: original.config.id, signingKey: original.config.publicKey)
    _ = try await Repository.open(store: store, keyService: t.kek, logger: Self.log, expect: pin)
    // The attacker replaces config and key files with those of a repository of their own (same KEK, or a KMS
    // public key).
    let replacement = try LocalStore(root: t.dir + "/evil")
    _ = try await Repository.initialize(store: replacement, keyService: t.kek, objectLock: nil, logger: Self.log)
    for k in try await store.list(prefix: "keys/") { try await store.delete(k.key) }
    for k in try await replacement.list(prefix: "keys/") {
      try await store.put(k.key, data: try await replacement.get(k.key), options: PutOptions())
    }
    try await store.put("config", data: try await replacement.get("config"), options: PutOptions())
    // Unpinned, it opens (it is a valid repository); pinned, it is refused, by id or by signing key.
    _ = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    for expect in [
      pin, RepositoryExpectation(repositoryID: original.config.id),
      RepositoryExpectation(signingKey: original.config.publicKey),
    ] {
      let err = await #expect(throws: EngineError.self) {
        _ = try await Repository.open(store: store, keyService: t.kek, logger: Self.log, expect: expect)
      }
      guard case .integrity(let object, let message) = err else {
        Issue.record("expected an integrity error, got \(String(describing: err))")
        continue
      }
      #expect(object == "config")
      #expect(message.contains("expected"), "\(message)")
    }
  }

  /// Turns a repository into one made before key files were signed: unsigned key file, config without `keyFiles`.
  static func makeLegacy(_ repo: Repository) async throws {
    var kf = try await decodeKeyFile(repo.store, repo.keyFile)
    kf.signature = nil
    try await repo.store.put(repo.keyFile, data: try kf.encoded(), options: PutOptions())
    var c = repo.config
    c.keyFiles = nil
    try await repo.store.put(
      "config", data: try Repository.encodeConfig(c, signingKey: repo.signingKey), options: PutOptions())
  }

  /// Migration: an older repository's unsigned key file keeps opening it; the upgrade signs a copy, requires signed
  /// key files from then on, removes the unsigned one, and every snapshot still restores.
  @Test func olderRepositoryOpensAndUpgradesToSignedKeyFiles() async throws {
    let t = try Setup()
    defer { t.cleanup() }
    let store = try LocalStore(root: t.dir + "/repo")
    let repo = try await Repository.initialize(store: store, keyService: t.kek, objectLock: nil, logger: Self.log)
    let content = Data(Crypto.randomBytes(200_000))
    try makeFile(atPath: t.dir + "/src/a", contents: content)
    let snap = try await Self.backup(repo, [t.dir + "/src"])
    try await Self.makeLegacy(repo)
    let legacyKeyFile = repo.keyFile

    let old = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    #expect(old.config.keyFiles == nil)
    #expect(!old.keyFileSigned)
    #expect(try await old.upgradeKeyFileAuthentication())
    #expect(old.keyFile != legacyKeyFile)
    #expect(try await store.head(legacyKeyFile) == nil)

    let upgraded = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    #expect(upgraded.config.keyFiles == KeyFile.signedScheme)
    #expect(upgraded.keyFileSigned)
    #expect(try await upgraded.upgradeKeyFileAuthentication() == false)
    let snaps = try await upgraded.loadSnapshotsSkippingDamaged()
    #expect(snaps.map(\.id) == [snap.snapshotID])
    let index = try await upgraded.loadIndexSkippingDamaged()
    _ = try await upgraded.restore(snaps[0], index: index, options: RestoreOptions(target: t.dir + "/out"))
    #expect(FileManager.default.contents(atPath: t.dir + "/out/src/a") == content)

    // After the upgrade an unsigned key file is refused, also one that is a genuine old copy.
    var unsigned = try await Self.decodeKeyFile(store, upgraded.keyFile)
    unsigned.signature = nil
    unsigned.created = "2099-01-01T00:00:00Z"
    let plantedName = "keys/" + String(repeating: "f", count: 32)
    try await store.put(plantedName, data: try unsigned.encoded(), options: PutOptions())
    let after = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    #expect(after.keyFile == upgraded.keyFile)
    #expect(after.warnings.contains { $0.contains(plantedName) && $0.contains("not signed") }, "\(after.warnings)")
  }

  /// Migration under attack: in an older repository, an unsigned key file planted before the upgrade holds other data
  /// keys than the one in use; the upgrade refuses, naming a key file, and signs neither.
  @Test func upgradeRefusesWhenAPlantedUnsignedKeyFileDisagrees() async throws {
    let t = try Setup()
    defer { t.cleanup() }
    let store = try LocalStore(root: t.dir + "/repo")
    let repo = try await Repository.initialize(store: store, keyService: t.kek, objectLock: nil, logger: Self.log)
    try await Self.makeLegacy(repo)
    let genuine = try await Self.decodeKeyFile(store, repo.keyFile)
    let planted = try await Self.plantedKeyFile(genuine, kek: t.kek, attackerKey: Crypto.randomBytes(32))
    let plantedName = "keys/" + String(repeating: "a", count: 32)
    try await store.put(plantedName, data: try planted.encoded(), options: PutOptions())
    let old = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    let err = await #expect(throws: EngineError.self) { try await old.upgradeKeyFileAuthentication() }
    guard case .integrity(let object, let message) = err else {
      Issue.record("expected an integrity error, got \(String(describing: err))")
      return
    }
    #expect([plantedName, repo.keyFile].contains(object), "\(object)")
    #expect(message.contains("planted"), "\(message)")
    let reopened = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    #expect(reopened.config.keyFiles == nil)
    #expect(try await store.list(prefix: "keys/").count == 2)
  }

  /// Migration under a rollback: the genuine signed key file hidden, the config replaced by its older unsigned version
  /// (validly signed), and an unsigned key file planted with other data keys. The repository opens with the planted
  /// file (nothing else is left), but the upgrade refuses to sign it: its data key opens no stored data.
  @Test func upgradeRefusesAPlantedKeyFileWhoseDataKeysOpenNoStoredData() async throws {
    let t = try Setup()
    defer { t.cleanup() }
    let store = try LocalStore(root: t.dir + "/repo")
    let repo = try await Repository.initialize(store: store, keyService: t.kek, objectLock: nil, logger: Self.log)
    try makeFile(atPath: t.dir + "/src/a", contents: Data(Crypto.randomBytes(100_000)))
    _ = try await Self.backup(repo, [t.dir + "/src"])
    let genuine = try await Self.decodeKeyFile(store, repo.keyFile)
    try await Self.makeLegacy(repo)  // the config as it was before the upgrade
    try await store.delete(repo.keyFile)  // hidden
    let planted = try await Self.plantedKeyFile(genuine, kek: t.kek, attackerKey: Crypto.randomBytes(32))
    let plantedName = "keys/" + String(repeating: "a", count: 32)
    try await store.put(plantedName, data: try planted.encoded(), options: PutOptions())
    let victim = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    #expect(victim.keyFile == plantedName)
    let err = await #expect(throws: EngineError.self) { try await victim.upgradeKeyFileAuthentication() }
    guard case .integrity(let object, let message) = err else {
      Issue.record("expected an integrity error, got \(String(describing: err))")
      return
    }
    #expect(object == plantedName)
    #expect(message.contains("\"files\" data key opens none"), "\(message)")
    #expect(try await Repository.open(store: store, keyService: t.kek, logger: Self.log).config.keyFiles == nil)
  }

  /// Item 6: a store that can write but not delete (a versioned bucket with Object Lock, and the backup Job's
  /// credentials) overwrites every locked pack, index file and manifest and plants junk manifests, index files and
  /// key files. Listing and restore skip the junk with warnings naming it and read the versions whose content matches
  /// its name; every good snapshot restores; a new backup does not deduplicate against the overwritten packs, so it
  /// restores even where no older version can be read.
  @Test func hostileStoreBlocksNeitherRestoreNorNewBackups() async throws {
    let t = try Setup()
    defer { t.cleanup() }
    let store = VersionedLockingStore()
    let repo = try await Repository.initialize(
      store: store, keyService: t.kek, objectLock: try ObjectLockConfig.parse("compliance:30"), logger: Self.log)
    var contents: [ID: [String: Data]] = [:]
    func write(_ files: [String: Data]) throws {
      for (n, d) in files { try makeFile(atPath: t.dir + "/src/" + n, contents: d) }
    }
    let first = ["a": Data(Crypto.randomBytes(600_000)), "b": Data(Crypto.randomBytes(3_000_000))]
    try write(first)
    let s1 = try await Self.backup(repo, [t.dir + "/src"])
    contents[s1.snapshotID] = first
    let second = ["a": first["a"]!, "b": first["b"]!, "c": Data(Crypto.randomBytes(100_000))]
    try write(second)
    let s2 = try await Self.backup(repo, [t.dir + "/src"])
    contents[s2.snapshotID] = second

    // The attack. Overwrites keep the size, so that only the versions give the pack away.
    let goodPacks = Set(try await store.list(prefix: "data/").map(\.key))
    for k in goodPacks {
      let size = try await store.get(k).count
      try await store.put(k, data: Data(Crypto.randomBytes(size)), options: PutOptions())
    }
    for k in try await store.list(prefix: "index/").map(\.key) + store.list(prefix: "snapshots/").map(\.key) {
      try await store.put(k, data: Data("ransom".utf8), options: PutOptions())
    }
    let junk = [
      "snapshots/" + Hex.encode(Crypto.randomBytes(32)), "index/" + Hex.encode(Crypto.randomBytes(32)),
      "keys/" + Hex.encode(Crypto.randomBytes(16)),
    ]
    for k in junk {
      try await store.put(
        k, data: Data(Crypto.randomBytes(500)),
        options: PutOptions(retention: ObjectRetention(mode: .compliance, retainUntil: Date().addingTimeInterval(1e9))))
    }
    // A manifest that is well-formed but belongs to nobody: a junk id whose name is its hash.
    let plantedManifest = Array("BRTS".utf8) + [1] + Crypto.randomBytes(100)
    let plantedName = "snapshots/" + Hex.encode(Crypto.sha256(plantedManifest))
    try await store.put(plantedName, data: Data(plantedManifest), options: PutOptions())

    let victim = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    #expect(victim.warnings.contains { $0.contains(junk[2]) }, "\(victim.warnings)")
    let snaps = try await victim.loadSnapshotsSkippingDamaged()
    #expect(Set(snaps.map(\.id)) == Set(contents.keys))
    let index = try await victim.loadIndexSkippingDamaged()
    for k in [junk[0], junk[1], plantedName] {
      #expect(victim.allWarnings.contains { $0.contains(k) && $0.contains("skipped") }, "\(k)")
    }
    // The overwritten index files and manifests were read from their matching older versions, and named.
    #expect(victim.allWarnings.filter { $0.contains("read the older version") }.count == 4, "\(victim.allWarnings)")
    #expect(victim.warnings.count <= Repository.maxWarnings + 1)
    for s in snaps {
      let out = t.dir + "/out-\(s.id.hex)"
      _ = try await victim.restore(s, index: index, options: RestoreOptions(target: out, workers: 2))
      for (n, d) in contents[s.id]! {
        #expect(FileManager.default.contents(atPath: out + "/src/" + n) == d, "\(s.id.short) \(n)")
      }
    }

    // A new backup of partly unchanged data: it must store the blobs of the overwritten packs again.
    let third = ["a": first["a"]!, "b": first["b"]!, "d": Data(Crypto.randomBytes(50_000))]
    try FileManager.default.removeItem(atPath: t.dir + "/src/c")
    try write(third)
    let s3 = try await Self.backup(victim, [t.dir + "/src"])
    #expect(
      victim.allWarnings.filter { $0.contains("does not deduplicate against it") }.count == goodPacks.count,
      "\(victim.allWarnings)")
    // Restore it through a view of the store in which no older version can be read (a store without versions, or
    // an operator who let the old versions expire): it needs none of the overwritten packs.
    let noVersions = NoVersionsView(inner: store)
    let later = try await Repository.open(store: noVersions, keyService: t.kek, logger: Self.log)
    let laterSnaps = try await later.loadSnapshotsSkippingDamaged()
    let s3snap = try #require(laterSnaps.first { $0.id == s3.snapshotID })
    let laterIndex = try await later.loadIndexSkippingDamaged()
    _ = try await later.restore(s3snap, index: laterIndex, options: RestoreOptions(target: t.dir + "/out3", workers: 2))
    for (n, d) in third {
      #expect(FileManager.default.contents(atPath: t.dir + "/out3/src/" + n) == d, "s3 \(n)")
    }
    // Without older versions, the snapshots taken before the attack are lost (their manifests were overwritten):
    // they are skipped and named, and do not hide the new one.
    #expect(laterSnaps.map(\.id) == [s3.snapshotID])
    for s in [s1, s2] {
      #expect(later.allWarnings.contains { $0.contains(s.snapshotID.hex) && $0.contains("skipped") })
    }
    // Through the versioned store, every snapshot, old and new, restores.
    let all = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    let allIndex = try await all.loadIndexSkippingDamaged()
    let allSnaps = try await all.loadSnapshotsSkippingDamaged()
    #expect(allSnaps.count == 3)
    contents[s3.snapshotID] = third
    for s in allSnaps {
      let out = t.dir + "/final-\(s.id.hex)"
      _ = try await all.restore(s, index: allIndex, options: RestoreOptions(target: out, workers: 2))
      for (n, d) in contents[s.id]! {
        #expect(FileManager.default.contents(atPath: out + "/src/" + n) == d, "\(s.id.short) \(n)")
      }
    }
  }
}

extension HostileRepositoryTests {
  /// Item 6 on a store without versions: a pack overwritten with junk of another size is in doubt, so the next backup
  /// stores its blobs again; a restore whose index names the junk pack first reads each blob from its copy (the
  /// fallback of both the bulk restore path and the single-blob path), and a blob with no copy fails naming the pack.
  @Test func restoreReadsCopiesWhenTheFirstPackIsDamaged() async throws {
    let t = try Setup()
    defer { t.cleanup() }
    let store = try LocalStore(root: t.dir + "/repo")
    let repo = try await Repository.initialize(store: store, keyService: t.kek, objectLock: nil, logger: Self.log)
    let big = Data(Crypto.randomBytes(2_500_000))
    try makeFile(atPath: t.dir + "/src/big", contents: big)
    try makeFile(atPath: t.dir + "/src/small", contents: Data(Crypto.randomBytes(1000)))
    let s1 = try await Self.backup(repo, [t.dir + "/src"])
    try FileManager.default.removeItem(atPath: t.dir + "/src/small")
    let oldIndexFiles = Set(try await store.list(prefix: "index/").map(\.key))
    let oldPacks = try await store.list(prefix: "data/")
    for o in oldPacks {
      try await store.put(o.key, data: Data(Crypto.randomBytes(Int(o.size) + 7)), options: PutOptions())
    }

    let again = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    let s2 = try await Self.backup(again, [t.dir + "/src"])
    #expect(again.allWarnings.filter { $0.contains("does not deduplicate against it") }.count == oldPacks.count)

    // An index that lists the damaged packs first (load order is otherwise whatever finishes first).
    let r = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    let index = MasterIndex()
    let files = try await store.list(prefix: "index/").map(\.key).sorted { a, b in
      (oldIndexFiles.contains(a) ? 0 : 1, a) < (oldIndexFiles.contains(b) ? 0 : 1, b)
    }
    for f in files {
      let packs = try IndexFormat.decodeObject(
        try await r.getContentAddressed(f), meta: try AESGCM(key: r.metaKey), zstd: ZstdContext(), repo: r.repoID)
      for p in packs { index.add(p) }
    }
    let snaps = try await r.loadSnapshotsSkippingDamaged()
    let snap2 = try #require(snaps.first { $0.id == s2.snapshotID })
    // The data blobs of big are looked up in the damaged packs first, with their copies as alternates.
    let oldPackKeys = Set(oldPacks.map(\.key))
    let tree = try await r.loadTree(snap2, index: index)
    let bigNode = try #require(tree.first { $0.path == "src/big" })
    #expect(!bigNode.content.isEmpty)
    for id in bigNode.content {
      let l = try #require(index.lookup(id))
      #expect(oldPackKeys.contains(Repository.packKey(l.pack)))
      #expect(!index.alternates(id).isEmpty)
    }
    _ = try await r.restore(snap2, index: index, options: RestoreOptions(target: t.dir + "/out2", workers: 2))
    #expect(FileManager.default.contents(atPath: t.dir + "/out2/src/big") == big)

    // The first snapshot's tree is only in a damaged pack: its restore fails naming that pack.
    let snap1 = try #require(snaps.first { $0.id == s1.snapshotID })
    let err = await #expect(throws: EngineError.self) {
      _ = try await r.restore(snap1, index: index, options: RestoreOptions(target: t.dir + "/out1"))
    }
    #expect(oldPacks.contains { String(describing: err).contains($0.key) }, "\(String(describing: err))")
  }
}

/// A versioned store seen without its older versions (as on a store that keeps none).
struct NoVersionsView: ObjectStore {
  let inner: VersionedLockingStore
  var location: String { inner.location }
  var supportsRetention: Bool { inner.supportsRetention }
  func put(_ key: String, data: Data, options: PutOptions) async throws {
    try await inner.put(key, data: data, options: options)
  }
  func get(_ key: String) async throws -> Data { try await inner.get(key) }
  func getRange(_ key: String, offset: Int64, length: Int64) async throws -> Data {
    try await inner.getRange(key, offset: offset, length: length)
  }
  func head(_ key: String) async throws -> ObjectInfo? { try await inner.head(key) }
  func list(prefix: String) async throws -> [ObjectInfo] { try await inner.list(prefix: prefix) }
  func delete(_ key: String) async throws { try await inner.delete(key) }
  func extendRetention(_ key: String, to retention: ObjectRetention) async throws {
    try await inner.extendRetention(key, to: retention)
  }
}
