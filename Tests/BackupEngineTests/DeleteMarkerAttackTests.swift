import Foundation
import Logging
import Testing

@testable import BackupEngine

/// Issue 14 item 6, the leftovers: an attacker with the backup Job's storage credentials (write, plain delete; no
/// version deletion) hides every object behind a delete marker and plants junk. Reads see past the markers, every
/// read-only or prune path skips the junk naming it, and prune deletes nothing while a manifest or index file it
/// cannot read might be genuine.
@Suite struct DeleteMarkerAttackTests {
  static let log = Logger(label: "t")

  typealias Setup = ScratchRepositorySetup
}

extension ScratchRepositorySetup {
  /// Backs up `content` as src/a (one snapshot, its own packs).
  func backup(_ repo: Repository, _ content: Data, hour: Double) async throws -> ID {
    try makeFile(atPath: dir + "/src/a", contents: content)
    let lock = try await repo.lock(exclusive: false)
    var o = BackupOptions(paths: [dir + "/src"])
    o.time = Date().addingTimeInterval(-86400 + hour * 3600)
    let r = try await repo.backup(o)
    await lock.release()
    return r.snapshotID
  }

  func restored(_ repo: Repository, _ id: ID, _ name: String) async throws -> Data? {
    let snaps = try await repo.loadSnapshotsSkippingDamaged()
    let s = try #require(snaps.first { $0.id == id })
    _ = try await repo.restore(
      s, index: try await repo.loadIndexSkippingDamaged(), options: RestoreOptions(target: dir + "/" + name))
    return FileManager.default.contents(atPath: dir + "/" + name + "/src/a")
  }
}

extension DeleteMarkerAttackTests {
  /// Every object hidden behind a delete marker (config, key file, manifests, index files, packs), and a junk
  /// manifest and index file planted: the repository opens, lists and restores both snapshots, verify checks them
  /// and names the junk, prune is refused (forget goes on, and what it forgets stays hidden), and with the junk
  /// accepted as planted prune runs and the kept snapshot still restores. Before, the repository did not open at all
  /// (config not found), and with only the manifests hidden it listed no snapshot.
  @Test func hiddenRepositoryIsReadFromItsStoredVersions() async throws {
    let t = try Setup()
    defer { t.cleanup() }
    let store = VersionedLockingStore()
    let repo = try await Repository.initialize(
      store: store, keyService: t.kek, objectLock: try ObjectLockConfig.parse("compliance:30"), logger: Self.log)
    let a = Data(Crypto.randomBytes(200_000))
    let b = Data(Crypto.randomBytes(200_000))
    let first = try await t.backup(repo, a, hour: 1)
    let second = try await t.backup(repo, b, hour: 2)

    // The attacker: a plain DELETE on everything (the Job may delete that way), junk with the Job's PUT.
    let hidden = try await store.list(prefix: "").map(\.key).filter { !$0.hasPrefix("audit/") }
    for k in hidden { try await store.delete(k) }
    #expect(try await store.list(prefix: "snapshots/").isEmpty)
    let junkManifest = "snapshots/" + Hex.encode(Crypto.randomBytes(32))
    let junkIndex = "index/" + Hex.encode(Crypto.randomBytes(32))
    for k in [junkManifest, junkIndex] {
      try await store.put(k, data: Data(Crypto.randomBytes(500)), options: PutOptions())
    }

    // No new repository is created over the hidden one.
    await #expect(throws: EngineError.self) {
      _ = try await Repository.initialize(store: store, keyService: t.kek, objectLock: nil, logger: Self.log)
    }
    let victim = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    let w0 = victim.allWarnings
    #expect(w0.contains { $0.hasPrefix("config is hidden behind a delete marker") }, "\(w0)")
    #expect(w0.contains { $0.contains(victim.keyFile) && $0.contains("hidden behind a delete marker") }, "\(w0)")
    let snaps = try await victim.loadSnapshotsSkippingDamaged()
    #expect(Set(snaps.map(\.id)) == [first, second])
    for id in [first, second] {
      #expect(victim.allWarnings.contains { $0.contains("snapshots/\(id.hex) is hidden behind a delete marker") })
    }
    #expect(victim.allWarnings.contains { $0.contains(junkManifest) && $0.contains("skipped") })
    // restore latest: the newest snapshot that verifies, its packs read from behind their delete markers.
    let latest = try await victim.selectLatestVerified(
      before: nil, required: nil, index: try await victim.loadIndexSkippingDamaged(), readData: true)
    #expect(latest.snapshot.id == second)
    #expect(latest.skipped.map(\.id) == [String(junkManifest.dropFirst("snapshots/".count))])
    #expect(try await t.restored(victim, first, "out1") == a)
    #expect(try await t.restored(victim, second, "out2") == b)
    #expect(victim.allWarnings.contains { $0.contains(junkIndex) && $0.contains("skipped index file") })
    #expect(victim.allWarnings.contains { $0.hasPrefix("data/") && $0.contains("hidden behind a delete marker") })

    // verify: the junk is an error (it cannot be told from a damaged genuine object) and named; both snapshots and
    // every pack are checked from their stored versions. Accepted as planted, the junk is a warning.
    let v = try await victim.verify(snapshotRef: nil, readData: true)
    #expect(v.snapshots == 2)
    #expect(Set(v.errors.map { $0.contains(junkManifest) || $0.contains(junkIndex) }) == [true], "\(v.errors)")
    #expect(v.errors.count == 2)
    #expect(v.packsRead > 0)
    #expect(v.warnings.contains { $0.hasPrefix("data/") && $0.contains("hidden behind a delete marker") })
    let accepted = try await victim.verify(
      snapshotRef: nil, readData: true, acceptUnreadable: [junkManifest, junkIndex])
    #expect(accepted.errors.isEmpty, "\(accepted.errors)")
    #expect(accepted.warnings.filter { $0.contains("accepted as planted") }.count == 2)

    // forget --keep-last 1 --prune: the first snapshot is forgotten, the prune refused naming the junk.
    let before = store.versions
    let f = try await victim.forget(
      policy: {
        var p = RetentionPolicy(); p.keepLast = 1; return p
      }(), prune: true)
    #expect(f.removed == [first.hex])
    #expect(f.pruneRefusedFor == [junkIndex, junkManifest])
    #expect(f.packsDeleted == 0)
    for (k, vs) in before where k.hasPrefix("data/") || k.hasPrefix("index/") {
      #expect(store.versions[k]?.count == vs.count, "\(k) was touched by a refused prune")
    }
    #expect(victim.allWarnings.contains { $0.contains("prune refused") && $0.contains(junkManifest) })
    // What forget removed stays removed (a signed deletion record names it); the hidden second snapshot stays.
    let reopened = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    #expect(try await reopened.loadSnapshotsSkippingDamaged().map(\.id) == [second])

    // The operator accepts the junk as planted: prune runs, deletes the first snapshot's packs, keeps the second's.
    let g = try await reopened.forget(
      policy: {
        var p = RetentionPolicy(); p.keepLast = 1; return p
      }(), prune: true,
      acceptUnreadable: [junkManifest, junkIndex])
    #expect(g.pruneRefusedFor.isEmpty)
    #expect(g.packsDeleted > 0)
    let after = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    #expect(try await after.loadSnapshotsSkippingDamaged().map(\.id) == [second])
    #expect(try await t.restored(after, second, "out3") == b)
    let clean = try await after.verify(
      snapshotRef: nil, readData: true, acceptUnreadable: [junkManifest, junkIndex])
    #expect(clean.errors.isEmpty, "\(clean.errors)")
    // Nothing locked was lost: every version written before the attack is still stored.
    for (k, vs) in before {
      for v in vs where v.data != nil {
        #expect(store.get(k, version: v.id) != nil, "\(k) version \(v.id) is gone")
      }
    }
  }

  /// A deletion record that is not signed with the repository's key hides nothing: an attacker cannot use one to
  /// make a hidden snapshot stay hidden.
  @Test func forgedDeletionRecordsAreIgnored() async throws {
    let t = try Setup()
    defer { t.cleanup() }
    let store = VersionedLockingStore()
    let repo = try await Repository.initialize(
      store: store, keyService: t.kek, objectLock: try ObjectLockConfig.parse("compliance:30"), logger: Self.log)
    let id = try await t.backup(repo, Data(Crypto.randomBytes(10_000)), hour: 1)
    try await store.delete("snapshots/" + id.hex)
    let forged = DeletionRecord(
      version: 1, repo: repo.config.id, time: "2026-01-01T00:00:00Z", keys: ["snapshots/" + id.hex])
    try await store.put(
      "deletions/" + String(repeating: "f", count: 32),
      data: try forged.encoded(signingKey: Ed25519.generatePrivateKey()), options: PutOptions())
    let victim = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    #expect(try await victim.loadSnapshotsSkippingDamaged().map(\.id) == [id])
    #expect(victim.allWarnings.contains { $0.contains("deletion record deletions/fff") && $0.contains("refused") })
  }

  /// Without versions (a local directory): a junk manifest and a damaged genuine index file. forget goes on, naming
  /// both; the prune deletes nothing, since the index file's packs would look unreferenced. Before, forget threw on
  /// the junk manifest before doing anything.
  @Test func pruneRefusesWhileAnIndexFileIsUnreadable() async throws {
    let t = try Setup()
    defer { t.cleanup() }
    let store = try LocalStore(root: t.dir + "/repo")
    let repo = try await Repository.initialize(store: store, keyService: t.kek, objectLock: nil, logger: Self.log)
    let a = Data(Crypto.randomBytes(100_000))
    _ = try await t.backup(repo, a, hour: 1)
    let second = try await t.backup(repo, Data(Crypto.randomBytes(100_000)), hour: 2)
    let indexFiles = try await store.list(prefix: "index/").map(\.key).sorted()
    let damaged = try #require(indexFiles.first)
    try await store.put(damaged, data: Data(Crypto.randomBytes(64)), options: PutOptions())
    let junk = "snapshots/" + Hex.encode(Crypto.randomBytes(32))
    try await store.put(junk, data: Data("junk".utf8), options: PutOptions())
    let packsBefore = try await store.list(prefix: "data/").map(\.key).sorted()

    let victim = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    let f = try await victim.forget(
      policy: {
        var p = RetentionPolicy(); p.keepLast = 1; return p
      }(), prune: true)
    #expect(f.removed.count == 1)
    #expect(f.kept == [second.hex])
    #expect(f.pruneRefusedFor == [damaged, junk])
    #expect(f.packsDeleted == 0)
    #expect(try await store.list(prefix: "data/").map(\.key).sorted() == packsBefore)
    #expect(try await store.list(prefix: "index/").map(\.key).sorted() == indexFiles)
    #expect(victim.allWarnings.contains { $0.contains(damaged) && $0.contains("skipped index file") })
    #expect(victim.allWarnings.contains { $0.contains(junk) && $0.contains("skipped snapshot manifest") })
  }

  /// An older repository (no `deletionRecords` in its config), whose forget left a delete marker without a record:
  /// the forgotten snapshot does not come back, before the upgrade (hidden objects are not listed) nor after it
  /// (the upgrade records every object hidden until then); a snapshot an attacker hides after it is seen again.
  @Test func olderRepositoriesAdoptTheirDeleteMarkersOnUpgrade() async throws {
    let t = try Setup()
    defer { t.cleanup() }
    let store = VersionedLockingStore()
    let repo = try await Repository.initialize(
      store: store, keyService: t.kek, objectLock: try ObjectLockConfig.parse("compliance:30"), logger: Self.log)
    let old = try await t.backup(repo, Data(Crypto.randomBytes(10_000)), hour: 1)
    let kept = try await t.backup(repo, Data(Crypto.randomBytes(10_000)), hour: 2)
    var legacy = repo.config
    legacy.deletionRecords = nil
    try await store.put(
      "config", data: try Repository.encodeConfig(legacy, signingKey: repo.signingKey), options: PutOptions())
    try await store.delete("snapshots/" + old.hex)  // the older engine's forget: a marker, no record

    let before = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    #expect(before.config.deletionRecords == nil)
    #expect(try await before.loadSnapshotsSkippingDamaged().map(\.id) == [kept])
    #expect(try await before.upgradeDeletionRecords())
    let after = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    #expect(after.config.deletionRecords == DeletionRecord.scheme)
    #expect(try await after.upgradeDeletionRecords() == false)
    #expect(try await after.loadSnapshotsSkippingDamaged().map(\.id) == [kept])
    try await store.delete("snapshots/" + kept.hex)  // the attacker, after the upgrade
    let attacked = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    #expect(try await attacked.loadSnapshotsSkippingDamaged().map(\.id) == [kept])
  }

  /// Prune serves a blob from a listed pack where it can: with the first-loaded index file naming a pack a delete
  /// marker hides, the listed copy would otherwise look like an unreferenced duplicate and be deleted.
  @Test func pruneServesBlobsFromListedPacks() {
    let index = MasterIndex()
    let blob = ID(Crypto.randomBytes(32))
    let other = ID(Crypto.randomBytes(32))
    let hiddenPack = ID(Crypto.randomBytes(32))
    let listedPack = ID(Crypto.randomBytes(32))
    func entry(_ id: ID) -> BlobEntry {
      BlobEntry(id: id, type: .data, keyType: .files, compressed: false, offset: 0, sealedLength: 60, rawLength: 32)
    }
    index.add(IndexPack(packID: hiddenPack, packSize: 200, entries: [entry(blob)]))
    index.add(IndexPack(packID: listedPack, packSize: 200, entries: [entry(blob), entry(other)]))
    #expect(index.lookup(blob)?.pack == hiddenPack)
    index.prefer(packs: [listedPack])
    #expect(index.lookup(blob)?.pack == listedPack)
    #expect(index.alternates(blob).map(\.pack) == [hiddenPack])
    #expect(index.packContents()[listedPack]?.count == 2)
    #expect(index.packContents()[hiddenPack] == nil)
  }
}
