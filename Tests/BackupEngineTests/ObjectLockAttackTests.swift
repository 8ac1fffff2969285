import Foundation
import Logging
import Testing

@testable import BackupEngine

/// An in-memory store with the semantics of a versioned S3 bucket with Object Lock, used with the IAM policy of a
/// backup Job (docs/security-model.md): a PUT adds a version, a plain DELETE adds a delete marker, and deleting a
/// version needs s3:DeleteObjectVersion, which the Job does not have (AccessDenied). With `versionDeletion` (an
/// attacker holding broader credentials) a version still cannot be deleted while its retention lasts.
final class VersionedLockingStore: ObjectStore, @unchecked Sendable {
  struct Version {
    var id: Int
    /// nil for a delete marker.
    var data: Data?
    var retention: ObjectRetention?
    var isLocked: Bool { (retention?.retainUntil ?? .distantPast) > Date() }
  }
  private let state = Locked<(objects: [String: [Version]], next: Int, versionDeletion: Bool, denied: Int)>(
    (objects: [:], next: 1, versionDeletion: false, denied: 0))
  var location: String { "mem://versioned-locking" }
  var supportsRetention: Bool { true }
  /// Whether the credentials in use may delete object versions (s3:DeleteObjectVersion).
  var versionDeletion: Bool {
    get { state.with { $0.versionDeletion } }
    set { state.with { $0.versionDeletion = newValue } }
  }
  /// Version deletions refused with AccessDenied.
  var denied: Int { state.with { $0.denied } }
  /// Every version of every key, oldest first.
  var versions: [String: [Version]] { state.with { $0.objects } }

  private static func current(_ vs: [Version]?) -> Version? {
    guard let v = vs?.last, v.data != nil else { return nil }
    return v
  }

  func put(_ key: String, data: Data, options: PutOptions) async throws {
    try state.with { s in
      if options.ifNoneMatch && Self.current(s.objects[key]) != nil { throw StorageError.alreadyExists(key: key) }
      s.objects[key, default: []].append(Version(id: s.next, data: data, retention: options.retention))
      s.next += 1
    }
  }
  func get(_ key: String) async throws -> Data {
    guard let d = state.with({ Self.current($0.objects[key])?.data }) else { throw StorageError.notFound(key: key) }
    return d
  }
  func getRange(_ key: String, offset: Int64, length: Int64) async throws -> Data {
    let d = try await get(key)
    guard offset + length <= Int64(d.count) else { throw StorageError.failed(key: key, message: "short") }
    return d.subdata(in: Int(offset)..<Int(offset + length))
  }
  func head(_ key: String) async throws -> ObjectInfo? {
    state.with { s in Self.current(s.objects[key]).map { ObjectInfo(key: key, size: Int64($0.data!.count)) } }
  }
  func list(prefix: String) async throws -> [ObjectInfo] {
    state.with { s in
      s.objects.compactMap { k, vs in
        guard k.hasPrefix(prefix), let c = Self.current(vs) else { return nil }
        return ObjectInfo(key: k, size: Int64(c.data!.count))
      }
    }
  }
  /// A plain DELETE: a delete marker on top; every version stays.
  func delete(_ key: String) async throws {
    state.with { s in
      guard Self.current(s.objects[key]) != nil else { return }
      s.objects[key, default: []].append(Version(id: s.next, data: nil, retention: nil))
      s.next += 1
    }
  }
  /// DELETE ?versionId: AccessDenied without s3:DeleteObjectVersion, refused while the version is retained.
  func deleteVersion(_ key: String, id: Int) throws {
    try state.with { s in
      guard s.versionDeletion else {
        s.denied += 1
        throw StorageError.accessDenied(key: key, message: "s3:DeleteObjectVersion is not allowed")
      }
      guard let i = s.objects[key]?.firstIndex(where: { $0.id == id }) else { return }
      if s.objects[key]![i].isLocked { throw StorageError.locked(key: key, message: "version \(id) is retained") }
      s.objects[key]!.remove(at: i)
      if s.objects[key]!.isEmpty { s.objects[key] = nil }
    }
  }
  func deleteAllVersions(_ key: String) async throws {
    var locked: StorageError?
    for v in versions[key] ?? [] {
      do { try deleteVersion(key, id: v.id) } catch let e as StorageError {
        if case .locked = e { locked = e } else { throw e }
      }
    }
    if let locked { throw locked }
  }
  func listAllVersionedKeys(prefix: String) async throws -> [String] {
    state.with { s in s.objects.keys.filter { $0.hasPrefix(prefix) } }
  }
  func extendRetention(_ key: String, to retention: ObjectRetention) async throws {
    state.with { s in
      guard var vs = s.objects[key], let last = vs.last, last.data != nil else { return }
      if (last.retention?.retainUntil ?? .distantPast) < retention.retainUntil {
        vs[vs.count - 1].retention = retention
        s.objects[key] = vs
      }
    }
  }
  func retention(of key: String) async throws -> Date? {
    state.with { s in Self.current(s.objects[key])?.retention?.retainUntil }
  }
  /// ListObjectVersions for one key: its stored versions, newest first (delete markers excluded).
  func versions(of key: String) async throws -> [String] {
    state.with { s in (s.objects[key] ?? []).reversed().filter { $0.data != nil }.map { String($0.id) } }
  }
  /// GET ?versionId, as the engine reads it.
  func get(_ key: String, version: String) async throws -> Data {
    guard let id = Int(version), let d = get(key, version: id) else { throw StorageError.notFound(key: key) }
    return d
  }
  func keysWithSeveralVersions(prefix: String) async throws -> [String: Int] {
    state.with { s in
      s.objects.filter { $0.key.hasPrefix(prefix) }.mapValues { $0.filter { $0.data != nil }.count }.filter {
        $0.value > 1
      }
    }
  }
  /// Keys whose newest entry is a delete marker over a stored version, with that version's size.
  func listHidden(prefix: String) async throws -> [ObjectInfo] {
    state.with { s in
      s.objects.compactMap { k, vs in
        guard k.hasPrefix(prefix), vs.last?.data == nil, let d = vs.last(where: { $0.data != nil })?.data else {
          return nil
        }
        return ObjectInfo(key: k, size: Int64(d.count))
      }
    }
  }
  /// GET ?versionId.
  func get(_ key: String, version id: Int) -> Data? {
    versions[key]?.first { $0.id == id }?.data
  }
  /// What an operator does after an attack (`aws s3api copy-object --version-id`): makes the newest retained
  /// version of every key current again.
  func restoreRetainedVersions() {
    state.with { s in
      for (k, vs) in s.objects {
        guard let keep = vs.last(where: { $0.isLocked && $0.data != nil }), vs.last?.id != keep.id else { continue }
        s.objects[k]!.append(Version(id: s.next, data: keep.data, retention: nil))
        s.next += 1
      }
    }
  }
}

@Suite struct ObjectLockAttackTests {
  static let log = Logger(label: "t")

  /// The backup Job's own credentials (no version deletion) suffice for backup, forget --prune and rotate-keys;
  /// an attacker with those or broader credentials can neither delete nor replace the locked config, key files,
  /// packs, index, manifests or audit objects, and every locked snapshot restores afterwards.
  @Test func lockedRepositorySurvivesTheBackupJobsCredentials() async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-ola-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir + "/src", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try makeFile(atPath: dir + "/kek1", contents: Data(Crypto.randomBytes(32)))
    try makeFile(atPath: dir + "/kek2", contents: Data(Crypto.randomBytes(32)))
    let kek1 = try LocalKeyService(path: dir + "/kek1")
    let kek2 = try LocalKeyService(path: dir + "/kek2")
    let store = VersionedLockingStore()
    var contents: [String: Data] = [:]  // snapshot id -> the file's content in it

    // The backup Job: no s3:DeleteObjectVersion.
    store.versionDeletion = false
    _ = try await Repository.initialize(
      store: store, keyService: kek1, objectLock: try ObjectLockConfig.parse("compliance:30"), logger: Self.log)
    func backup(_ kek: LocalKeyService, hour: Double) async throws {
      let content = Data(Crypto.randomBytes(300_000))
      try makeFile(atPath: dir + "/src/a", contents: content)
      let repo = try await Repository.open(store: store, keyService: kek, logger: Self.log)
      let lock = try await repo.lock(exclusive: false)
      var o = BackupOptions(paths: [dir + "/src"])
      o.time = Date().addingTimeInterval(-86400 + hour * 3600)
      let r = try await repo.backup(o)
      await lock.release()
      try await repo.audit.flush()
      contents[r.snapshotID.hex] = content
    }
    try await backup(kek1, hour: 1)
    try await backup(kek1, hour: 2)
    try await backup(kek1, hour: 3)

    // forget --prune under an exclusive lock: the first snapshot's own packs go (plain deletes).
    do {
      let repo = try await Repository.open(store: store, keyService: kek1, logger: Self.log)
      let lock = try await repo.lock(exclusive: true)
      var p = RetentionPolicy()
      p.keepLast = 2
      let r = try await repo.forget(policy: p, prune: true, repackUnused: 1)
      #expect(r.removed.count == 1)
      #expect(r.packsDeleted > 0)
      await lock.release()
      try await repo.audit.flush()
    }

    // rotate-keys to another KEK (as an attacker with the Job's credentials could): the old key file is locked,
    // so it is kept, and reported.
    let oldKeyFiles = try await store.list(prefix: "keys/").map(\.key)
    #expect(oldKeyFiles.count == 1)
    do {
      let repo = try await Repository.open(store: store, keyService: kek1, logger: Self.log)
      let lock = try await repo.lock(exclusive: true)
      let warnings = try await repo.rotateKeys(to: kek2)
      await lock.release()
      try await repo.audit.flush()
      #expect(warnings.count == 1 && warnings[0].contains(oldKeyFiles[0]), "\(warnings)")
    }
    #expect(try await store.list(prefix: "keys/").count == 2)
    // Both KEKs open the repository; the new one picks the new key file.
    let rotated = try await Repository.open(store: store, keyService: kek2, logger: Self.log)
    #expect(rotated.keyFileName != oldKeyFiles[0])
    #expect(rotated.config.kms == kek2.descriptor)
    let viaOld = try await Repository.open(store: store, keyService: kek1, logger: Self.log)
    #expect(viaOld.keyFileName == oldKeyFiles[0])
    try await backup(kek2, hour: 4)

    // Nothing needed version deletion, and every lock was released (a failed release is only a warning).
    #expect(store.denied == 0)
    #expect(try await store.list(prefix: "locks/").isEmpty)
    // config, every key file, pack, index, manifest and audit object is retained; locks never are.
    for (k, vs) in store.versions {
      for v in vs where v.data != nil {
        if k.hasPrefix("locks/") {
          #expect(v.retention == nil, "\(k)")
        } else if v.retention == nil {
          Issue.record("\(k) version \(v.id) has no retention")
        }
      }
    }
    // The latest backup extended the config's and the current key file's retention like its packs'.
    var packDates: [Date] = []
    for o in try await store.list(prefix: "data/") {
      if let d = try await store.retention(of: o.key) { packDates.append(d) }
    }
    let packUntil = try #require(packDates.max())
    for k in ["config", rotated.keyFileName] {
      let until = try #require(try await store.retention(of: k), "\(k)")
      #expect(abs(until.timeIntervalSince(packUntil)) < 60, "\(k) retained until \(until), packs \(packUntil)")
    }

    // The attacker, even with s3:DeleteObjectVersion: no locked version can be deleted.
    store.versionDeletion = true
    let protected = ["config", "keys/", "data/", "index/", "snapshots/", "audit/"]
    var tried = 0
    for (k, vs) in store.versions where protected.contains(where: { k.hasPrefix($0) }) {
      for v in vs where v.data != nil {
        tried += 1
        #expect(throws: StorageError.self, "\(k) version \(v.id)") { try store.deleteVersion(k, id: v.id) }
      }
      await #expect(throws: StorageError.self, "\(k)") { try await store.deleteAllVersions(k) }
    }
    #expect(tried > 10)
    // Plain deletes and overwrites only add versions: the locked ones stay readable by version.
    let before = store.versions
    for (k, _) in before where protected.contains(where: { k.hasPrefix($0) }) {
      if k == "config" || k.hasPrefix("keys/") {
        try await store.put(k, data: Data("ransom".utf8), options: PutOptions())
      } else {
        try await store.delete(k)
      }
    }
    #expect(try await store.list(prefix: "snapshots/").isEmpty)
    for (k, vs) in before {
      for v in vs where v.isLocked { #expect(store.get(k, version: v.id) == v.data, "\(k) version \(v.id)") }
    }

    // Recovery from the retained versions: every snapshot ever taken (the forgotten one too) restores.
    store.restoreRetainedVersions()
    let repo = try await Repository.open(store: store, keyService: kek2, logger: Self.log)
    let (snaps, errs) = try await repo.loadSnapshots(collectErrors: true)
    #expect(errs.isEmpty, "\(errs)")
    #expect(Set(snaps.map(\.id.hex)) == Set(contents.keys))
    let (index, _) = try await repo.loadIndex()
    for s in snaps {
      let out = dir + "/out-\(s.id.hex)"
      _ = try await repo.restore(s, index: index, options: RestoreOptions(target: out))
      #expect(FileManager.default.contents(atPath: out + "/src/a") == contents[s.id.hex], "\(s.id.hex)")
    }
  }

  /// delete-repository is the one operation that deletes versions; with Object Lock it keeps config and keys.
  @Test func deleteRepositoryDeletesVersionsButKeepsRetainedKeys() async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-olb-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir + "/src", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try makeFile(atPath: dir + "/kek", contents: Data(Crypto.randomBytes(32)))
    try makeFile(atPath: dir + "/src/a", contents: Data(Crypto.randomBytes(1000)))
    let kek = try LocalKeyService(path: dir + "/kek")
    let store = VersionedLockingStore()
    store.versionDeletion = true
    let repo = try await Repository.initialize(
      store: store, keyService: kek, objectLock: ObjectLockConfig(mode: .governance, days: 1), logger: Self.log)
    _ = try await repo.backup(BackupOptions(paths: [dir + "/src"]))
    try await repo.audit.flush()
    let d = try await repo.deleteEverything(keeping: nil)
    #expect(d.deleted == 0)
    #expect(!d.retained.isEmpty)
    #expect(try await store.head("config") != nil)
    #expect(try await !store.list(prefix: "keys/").isEmpty)

    // Without Object Lock every version goes, also those of objects plain deletes hid (released locks, the
    // pruned snapshot).
    let plain = VersionedLockingStore()
    plain.versionDeletion = true
    let r2 = try await Repository.initialize(store: plain, keyService: kek, objectLock: nil, logger: Self.log)
    for _ in 0..<2 {
      let lock = try await r2.lock(exclusive: false)
      var o = BackupOptions(paths: [dir + "/src"])
      o.time = Date().addingTimeInterval(-Double(plain.versions.count) * 60)
      _ = try await r2.backup(o)
      await lock.release()
    }
    var p = RetentionPolicy()
    p.keepLast = 1
    _ = try await r2.forget(policy: p, prune: true)
    try await r2.audit.flush()
    #expect(plain.versions.keys.contains { $0.hasPrefix("locks/") })
    let lock = try await r2.lock(exclusive: true)
    let d2 = try await r2.deleteEverything(keeping: lock.key)
    await lock.release()
    #expect(d2.retained.isEmpty)
    #expect(Set(plain.versions.keys) == [lock.key], "\(plain.versions.keys.sorted())")
  }
}
