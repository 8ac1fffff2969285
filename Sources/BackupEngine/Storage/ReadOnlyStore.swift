import Foundation

/// A store opened read-only (`botrt-engine --read-only`): every read goes to `base`, and every write (put, delete,
/// retention) is refused with `StorageError.readOnly` before anything reaches the store.
///
/// A disaster recovery cluster restores and verifies from the primary cluster's repository while the primary still
/// backs up into it: it must not add a lock, an audit record or a delete marker there. Opened through this store, a
/// repository takes no lock object (`Repository.lock` only checks that no exclusive lock is held), keeps its audit
/// lines in the run's log (`AuditTrail.flush`), and any other write fails the run naming the object instead of
/// reaching the bucket.
public struct ReadOnlyStore: ObjectStore {
  public let base: any ObjectStore

  public init(_ base: any ObjectStore) { self.base = base }

  public var location: String { base.location }
  public var supportsRetention: Bool { base.supportsRetention }
  public var deletedButKept: String { base.deletedButKept }

  func refuse(_ key: String, _ operation: String) -> StorageError {
    .readOnly(key: key, operation: operation)
  }

  public func put(_ key: String, data: Data, options: PutOptions) async throws { throw refuse(key, "write") }
  public func delete(_ key: String) async throws { throw refuse(key, "delete") }
  public func deleteAllVersions(_ key: String) async throws { throw refuse(key, "delete the versions of") }
  public func extendRetention(_ key: String, to retention: ObjectRetention) async throws {
    throw refuse(key, "extend the retention of")
  }

  public func get(_ key: String) async throws -> Data { try await base.get(key) }
  public func getRange(_ key: String, offset: Int64, length: Int64) async throws -> Data {
    try await base.getRange(key, offset: offset, length: length)
  }
  public func head(_ key: String) async throws -> ObjectInfo? { try await base.head(key) }
  public func list(prefix: String) async throws -> [ObjectInfo] { try await base.list(prefix: prefix) }
  public func listAllVersionedKeys(prefix: String) async throws -> [String] {
    try await base.listAllVersionedKeys(prefix: prefix)
  }
  public func retention(of key: String) async throws -> Date? { try await base.retention(of: key) }
  public func versions(of key: String) async throws -> [String] { try await base.versions(of: key) }
  public func get(_ key: String, version: String) async throws -> Data { try await base.get(key, version: version) }
  public func keysWithSeveralVersions(prefix: String) async throws -> [String: Int] {
    try await base.keysWithSeveralVersions(prefix: prefix)
  }
  public func listHidden(prefix: String) async throws -> [ObjectInfo] { try await base.listHidden(prefix: prefix) }
}

extension ObjectStore {
  /// Whether the store refuses every write (`ReadOnlyStore`).
  public var isReadOnly: Bool { self is ReadOnlyStore }
}
