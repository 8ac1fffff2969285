import Foundation

@testable import BackupEngine

/// A local store whose writes, lookups, listings and deletions a test can intercept, to stand for what a crash,
/// a race or a lost answer does to a caller. Each hook gets the call and the local store; the defaults forward.
struct HookedStore: ObjectStore {
  let inner: LocalStore
  var onPut: @Sendable (String, Data, PutOptions, LocalStore) async throws -> Void = {
    try await $3.put($0, data: $1, options: $2)
  }
  var onHead: @Sendable (String, LocalStore) async throws -> ObjectInfo? = { try await $1.head($0) }
  var onList: @Sendable (String, LocalStore) async throws -> [ObjectInfo] = { try await $1.list(prefix: $0) }
  var onDelete: @Sendable (String, LocalStore) async throws -> Void = { try await $1.delete($0) }

  var location: String { inner.location }
  var supportsRetention: Bool { inner.supportsRetention }
  func put(_ key: String, data: Data, options: PutOptions) async throws {
    try await onPut(key, data, options, inner)
  }
  func get(_ key: String) async throws -> Data { try await inner.get(key) }
  func getRange(_ key: String, offset: Int64, length: Int64) async throws -> Data {
    try await inner.getRange(key, offset: offset, length: length)
  }
  func head(_ key: String) async throws -> ObjectInfo? { try await onHead(key, inner) }
  func list(prefix: String) async throws -> [ObjectInfo] { try await onList(prefix, inner) }
  func delete(_ key: String) async throws { try await onDelete(key, inner) }
  func extendRetention(_ key: String, to retention: ObjectRetention) async throws {
    try await inner.extendRetention(key, to: retention)
  }

  /// Answers "no config yet" to `head("config")`, as a run sees it that checked just before another run created
  /// the repository.
  static func lateConfig(_ inner: LocalStore) -> HookedStore {
    HookedStore(inner: inner, onHead: { key, s in key == "config" ? nil : try await s.head(key) })
  }

  /// Fails the operation ("put", "delete") and key `crashes` picks, to stand for a process killed at that point.
  static func crashing(_ inner: LocalStore, crashes: @escaping @Sendable (String, String) -> Bool) -> HookedStore {
    let killed = { @Sendable in StorageError.unavailable(location: inner.location, message: "killed", attempts: 1) }
    return HookedStore(
      inner: inner,
      onPut: { key, data, options, s in
        if crashes("put", key) { throw killed() }
        try await s.put(key, data: data, options: options)
      },
      onDelete: { key, s in
        if crashes("delete", key) { throw killed() }
        try await s.delete(key)
      })
  }

  /// Its first listing of locks/ is empty, as a locker sees it that checked just before another wrote its lock.
  static func blindFirstLockList(_ inner: LocalStore) -> HookedStore {
    let listed = Locked(false)
    return HookedStore(
      inner: inner,
      onList: { prefix, s in
        if prefix == "locks/",
          listed.with({ l in
            defer { l = true }; return !l
          })
        {
          return []
        }
        return try await s.list(prefix: prefix)
      })
  }

  /// Conditional writes land but answer "already exists", as a write does whose first answer was lost and that
  /// the store's retry then finds in place.
  static func lostAnswers(_ inner: LocalStore) -> HookedStore {
    HookedStore(
      inner: inner,
      onPut: { key, data, options, s in
        try await s.put(key, data: data, options: options)
        if options.ifNoneMatch { throw StorageError.alreadyExists(key: key) }
      })
  }
}
