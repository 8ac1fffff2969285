import Foundation

/// Object Lock retention to set on an object as it is written (S3 Object Lock semantics).
public struct ObjectRetention: Sendable, Hashable, Codable {
  public enum Mode: String, Sendable, Codable { case compliance = "COMPLIANCE", governance = "GOVERNANCE" }
  public var mode: Mode
  public var retainUntil: Date
  public init(mode: Mode, retainUntil: Date) {
    self.mode = mode
    self.retainUntil = retainUntil
  }
}

/// Options for one write.
public struct PutOptions: Sendable, Hashable {
  /// Lock the object until this date where the store supports it.
  public var retention: ObjectRetention?
  /// Fail with `StorageError.alreadyExists` instead of overwriting (used for locks and manifests).
  public var ifNoneMatch: Bool
  public init(retention: ObjectRetention? = nil, ifNoneMatch: Bool = false) {
    self.retention = retention
    self.ifNoneMatch = ifNoneMatch
  }
}

/// What a listing returns for one object.
public struct ObjectInfo: Sendable, Hashable {
  /// Key relative to the repository root, e.g. "data/ab/abcdef...".
  public var key: String
  public var size: Int64
  public var lastModified: Date?
  public init(key: String, size: Int64, lastModified: Date? = nil) {
    self.key = key
    self.size = size
    self.lastModified = lastModified
  }
}

/// Typed storage failures. Every case names the object or location involved; none carries credentials.
public enum StorageError: Error, Sendable, CustomStringConvertible {
  /// The object does not exist.
  case notFound(key: String)
  /// `PutOptions.ifNoneMatch` was set and the object exists.
  case alreadyExists(key: String)
  /// The store refused the credentials or the operation (HTTP 401/403, EACCES).
  case accessDenied(key: String, message: String)
  /// An Object Lock retention forbids deleting or overwriting the object yet.
  case locked(key: String, message: String)
  /// A failure that retries did not cure: 5xx, resets, stalls.
  case unavailable(location: String, message: String, attempts: Int)
  /// The store is full (ENOSPC, quota).
  case noSpace(location: String, message: String)
  /// Anything else, with the store's message.
  case failed(key: String, message: String)
  /// The repository was opened read-only (`--read-only`, `ReadOnlyStore`) and the run tried to change an object.
  case readOnly(key: String, operation: String)

  public var description: String {
    switch self {
    case .notFound(let k): return "object \(k) not found"
    case .alreadyExists(let k): return "object \(k) already exists"
    case .accessDenied(let k, let m):
      return "access denied to \(k): \(m); check the storage credentials and their permissions"
    case .locked(let k, let m): return "object \(k) is protected by Object Lock: \(m)"
    case .unavailable(let l, let m, let n): return "storage \(l) unavailable after \(n) attempts: \(m)"
    case .noSpace(let l, let m): return "no space left on \(l): \(m)"
    case .failed(let k, let m): return "storage operation on \(k) failed: \(m)"
    case .readOnly(let k, let o):
      return "refused to \(o) \(k): the repository is opened read-only (--read-only), so this run may not change it; "
        + "run this command without --read-only from the cluster that writes to the repository"
    }
  }
}

/// A flat object store: local directory, S3, GCS or Azure Blob. Keys use "/" separators and are
/// relative to the repository's prefix; implementations add the prefix themselves.
public protocol ObjectStore: Sendable {
  /// A human-readable location without credentials, e.g. "s3://bucket/prefix".
  var location: String { get }
  /// Whether `PutOptions.retention` and `extendRetention` are honoured.
  var supportsRetention: Bool { get }
  /// How a warning says that an object was deleted while the store keeps a version of it, in the store's own
  /// words: S3 hides it behind a delete marker, GCS keeps it as a noncurrent generation.
  var deletedButKept: String { get }
  /// Writes an object atomically: readers see the whole object or none.
  func put(_ key: String, data: Data, options: PutOptions) async throws
  /// Reads a whole object.
  func get(_ key: String) async throws -> Data
  /// Reads `length` bytes at `offset`.
  func getRange(_ key: String, offset: Int64, length: Int64) async throws -> Data
  /// Size and date of an object, or nil when it does not exist.
  func head(_ key: String) async throws -> ObjectInfo?
  /// All objects whose key starts with `prefix`, in no particular order.
  func list(prefix: String) async throws -> [ObjectInfo]
  /// Deletes an object the plain way; deleting a missing object is not an error. On a versioned (Object Lock)
  /// bucket this only adds a delete marker: every earlier version stays, a retained one until its retention ends.
  /// It never needs the right to delete object versions (s3:DeleteObjectVersion), so every routine operation
  /// (lock release, forget, prune, rotation) uses it.
  func delete(_ key: String) async throws
  /// Deletes every version of an object (and its delete markers), so nothing is left behind on a versioned bucket;
  /// throws `StorageError.locked` for a version Object Lock still protects. Only `delete-repository` uses it; the
  /// default is `delete`, for stores without versions.
  func deleteAllVersions(_ key: String) async throws
  /// The keys under `prefix` that have any version, also those a delete marker hides (for `delete-repository`,
  /// which removes those versions too). The default is the keys `list` returns.
  func listAllVersionedKeys(prefix: String) async throws -> [String]
  /// The retain-until date of the object's current version, or nil when it has none (or the store has no
  /// retention). The default is nil.
  func retention(of key: String) async throws -> Date?
  /// Extends (never shortens) an object's retention; a no-op where retention is unsupported.
  func extendRetention(_ key: String, to retention: ObjectRetention) async throws
  /// The ids of the stored versions of `key` (delete markers excluded), newest first: the current one and those an
  /// overwrite or a plain delete left behind on a versioned bucket. The default, for stores without versions, is [].
  func versions(of key: String) async throws -> [String]
  /// Reads one version of an object (an id from `versions(of:)`). The default throws `notFound`.
  func get(_ key: String, version: String) async throws -> Data
  /// How many stored versions (delete markers excluded) each key under `prefix` has, for keys with more than one: a
  /// content-addressed object is written once, so a second version means it was overwritten. One listing; the
  /// default, for stores without versions, is empty.
  func keysWithSeveralVersions(prefix: String) async throws -> [String: Int]
  /// The objects under `prefix` that a delete marker hides although a stored version remains (a plain DELETE on a
  /// versioned bucket), each with the size of its newest stored version; `list` does not return them and `get`
  /// answers `notFound`. One listing; the default, for stores without versions, is empty.
  func listHidden(prefix: String) async throws -> [ObjectInfo]
}

extension ObjectStore {
  public var deletedButKept: String { "hidden behind a delete marker" }
}

extension ObjectStore {
  public func versions(of key: String) async throws -> [String] { [] }
  public func get(_ key: String, version: String) async throws -> Data { throw StorageError.notFound(key: key) }
  public func keysWithSeveralVersions(prefix: String) async throws -> [String: Int] { [:] }
  public func listHidden(prefix: String) async throws -> [ObjectInfo] { [] }
  public func deleteAllVersions(_ key: String) async throws { try await delete(key) }
  public func retention(of key: String) async throws -> Date? { nil }
  public func listAllVersionedKeys(prefix: String) async throws -> [String] {
    try await list(prefix: prefix).map(\.key)
  }

  public func put(_ key: String, data: Data) async throws { try await put(key, data: data, options: PutOptions()) }

  /// Creates `key` only if it does not exist (`ifNoneMatch`). A write whose answer was lost is retried by the
  /// store and then finds the object it wrote itself: an existing object with exactly these bytes counts as
  /// written (without this, a repository's first config write could be taken for another run's and the new
  /// repository's key file removed). `options` may add retention.
  public func create(_ key: String, data: Data, options: PutOptions = PutOptions()) async throws {
    var o = options
    o.ifNoneMatch = true
    do {
      try await put(key, data: data, options: o)
    } catch StorageError.alreadyExists(let k) {
      if let existing = try? await get(key), existing == data { return }
      throw StorageError.alreadyExists(key: k)
    }
  }
}
