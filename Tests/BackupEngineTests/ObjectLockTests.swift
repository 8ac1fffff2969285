import Foundation
import Logging
import Testing

@testable import BackupEngine

/// An in-memory store with S3 Object Lock semantics: retained objects cannot be deleted or overwritten.
final class LockingMemoryStore: ObjectStore, @unchecked Sendable {
  struct Object {
    var data: Data
    var retention: ObjectRetention?
  }
  private let state = Locked<(objects: [String: Object], extended: [String: ObjectRetention])>(
    (objects: [:], extended: [:]))
  var location: String { "mem://locking" }
  var supportsRetention: Bool { true }
  var objects: [String: Object] { state.with { $0.objects } }
  var extended: [String: ObjectRetention] { state.with { $0.extended } }

  func put(_ key: String, data: Data, options: PutOptions) async throws {
    try state.with { s in
      if let o = s.objects[key] {
        if options.ifNoneMatch { throw StorageError.alreadyExists(key: key) }
        if let r = o.retention, r.retainUntil > Date() { throw StorageError.locked(key: key, message: "retained") }
      }
      s.objects[key] = Object(data: data, retention: options.retention)
    }
  }
  func get(_ key: String) async throws -> Data {
    guard let o = state.with({ $0.objects[key] }) else { throw StorageError.notFound(key: key) }
    return o.data
  }
  func getRange(_ key: String, offset: Int64, length: Int64) async throws -> Data {
    let d = try await get(key)
    guard offset + length <= Int64(d.count) else { throw StorageError.failed(key: key, message: "short") }
    return d.subdata(in: Int(offset)..<Int(offset + length))
  }
  func head(_ key: String) async throws -> ObjectInfo? {
    state.with { s in s.objects[key].map { ObjectInfo(key: key, size: Int64($0.data.count)) } }
  }
  func list(prefix: String) async throws -> [ObjectInfo] {
    state.with { s in
      s.objects.filter { $0.key.hasPrefix(prefix) }.map { ObjectInfo(key: $0.key, size: Int64($0.value.data.count)) }
    }
  }
  func delete(_ key: String) async throws {
    try state.with { s in
      if let r = s.objects[key]?.retention, r.retainUntil > Date() {
        throw StorageError.locked(key: key, message: "retained until \(r.retainUntil)")
      }
      s.objects[key] = nil
    }
  }
  func extendRetention(_ key: String, to retention: ObjectRetention) async throws {
    state.with { s in
      s.extended[key] = retention
      if var o = s.objects[key], (o.retention?.retainUntil ?? .distantPast) < retention.retainUntil {
        o.retention = retention
        s.objects[key] = o
      }
    }
  }
}

@Suite struct ObjectLockTests {
  @Test func retentionOnEveryImmutableObjectAndPruneReportsLockedPacks() async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-ol-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir + "/src", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try makeFile(atPath: dir + "/kek", contents: Data(Crypto.randomBytes(32)))
    try makeFile(atPath: dir + "/src/a", contents: Data(Crypto.randomBytes(700_000)))
    let store = LockingMemoryStore()
    let kms = try LocalKeyService(path: dir + "/kek")
    let repo = try await Repository.initialize(
      store: store, keyService: kms, objectLock: try ObjectLockConfig.parse("compliance:30"), logger: Logger(label: "t")
    )
    let before = Date()
    _ = try await repo.backup(BackupOptions(paths: [dir + "/src"]))
    try await repo.audit.flush()
    let objs = store.objects
    for (k, o) in objs {
      let immutable = ["data/", "index/", "snapshots/", "audit/", "keys/", "config"].contains { k.hasPrefix($0) }
      if immutable {
        let r = try #require(o.retention, "\(k) has no retention")
        #expect(r.mode == .compliance)
        #expect(abs(r.retainUntil.timeIntervalSince(before) - 30 * 86400) < 120)
      } else {
        #expect(o.retention == nil, "\(k) (a lock) must stay replaceable")
      }
    }
    let packs = objs.keys.filter { $0.hasPrefix("data/") }
    #expect(!packs.isEmpty)
    // Every pack the snapshot references, the config and the key file got their retention extended.
    let keyFiles = objs.keys.filter { $0.hasPrefix("keys/") }
    #expect(keyFiles.count == 1)
    #expect(Set(store.extended.keys) == Set(packs + keyFiles + ["config"]))
    // Forget + prune: the locked snapshot and packs are reported, not lost, and not an error.
    // A newer snapshot, so the retention lets the first one go.
    var next = BackupOptions(paths: [dir + "/src"])
    next.time = before.addingTimeInterval(3600)
    _ = try await repo.backup(next)
    try await repo.audit.flush()
    let reopened = try await Repository.open(store: store, keyService: kms, logger: Logger(label: "t"))
    var p = RetentionPolicy()
    p.keepLast = 1
    let r = try await reopened.forget(policy: p, prune: false)
    #expect(r.removed.count == 1)
    #expect(r.retained.count == 1 && r.retained[0].contains("snapshots/"))
    #expect(store.objects.keys.contains { $0.hasPrefix("snapshots/") })
    // The config records the lock.
    #expect(reopened.config.objectLock == ObjectLockConfig(mode: .compliance, days: 30))
  }

  @Test func objectLockNeedsAStoreThatSupportsIt() async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-ol2-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try makeFile(atPath: dir + "/kek", contents: Data(Crypto.randomBytes(32)))
    await #expect(throws: EngineError.self) {
      try await Repository.initialize(
        store: try LocalStore(root: dir + "/repo"), keyService: try LocalKeyService(path: dir + "/kek"),
        objectLock: ObjectLockConfig(mode: .governance, days: 1), logger: Logger(label: "t"))
    }
    #expect(throws: EngineError.self) { try ObjectLockConfig.parse("compliance:0") }
    #expect(throws: EngineError.self) { try ObjectLockConfig.parse("legal:5") }
  }
}
