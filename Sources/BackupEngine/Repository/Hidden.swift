import Foundation

/// A record that this engine deleted objects (section 13 of docs/repository-format.md): `deletions/<random>`, a JSON
/// body line and a hex Ed25519 signature line over `"botrt-deletions-v1" || body`, like the config.
///
/// On a versioned (Object Lock) bucket a plain DELETE only adds a delete marker, and the backup's own storage
/// credentials can add one to any object: the object then drops out of listings and reads although its locked
/// version is still stored. The engine tells its own deletions (forget, prune) from someone else's by these records:
/// an object hidden behind a delete marker that no record signed with the repository's signing key names is still
/// part of the repository, and is read from its newest stored version.
struct DeletionRecord: Codable, Sendable {
  var version: Int
  /// The repository id: a record copied from another repository names nothing here.
  var repo: String
  var time: String
  /// The keys deleted, relative to the repository root.
  var keys: [String]

  static let domain = "botrt-deletions-v1"
  /// The value of `RepoConfig.deletionRecords` in a repository whose deletions are recorded.
  static let scheme = "ed25519-signed-v1"

  /// The stored bytes: canonical JSON, newline, hex signature, newline.
  func encoded(signingKey: [UInt8]) throws -> Data {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let body = [UInt8](try e.encode(self))
    let sig = try Ed25519.sign(Array(Self.domain.utf8) + body, privateKey: signingKey)
    return Data(body + Array("\n".utf8) + Array(Hex.encode(sig).utf8) + Array("\n".utf8))
  }

  /// The record in `raw` when its signature verifies under `publicKey` and it names repository `repo`; else why not.
  static func decode(_ raw: Data, repo: String, publicKey: [UInt8]) -> Result<DeletionRecord, EngineError> {
    let lines = raw.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
    guard lines.count >= 2, let sig = Hex.decode(String(decoding: lines[1], as: UTF8.self)),
      Ed25519.verify(Array(domain.utf8) + [UInt8](lines[0]), signature: sig, publicKey: publicKey)
    else {
      return .failure(.integrity(object: "deletions/", message: "signature is missing or invalid"))
    }
    guard let r = try? JSONDecoder().decode(DeletionRecord.self, from: Data(lines[0])), r.repo == repo else {
      return .failure(.integrity(object: "deletions/", message: "not a deletion record of this repository"))
    }
    return .success(r)
  }
}

extension Repository {
  static let deletionsPrefix = "deletions/"

  /// Signs and stores a record naming `keys` before they are deleted, on a store that keeps versions (S3): from
  /// then on, `listObjects` leaves them out although their versions stay behind delete markers. Retained like data.
  func recordDeletions(_ keys: [String]) async throws {
    guard store.supportsRetention, !keys.isEmpty else { return }
    let r = DeletionRecord(version: 1, repo: config.id, time: Self.now(), keys: keys.sorted())
    try await store.put(
      Self.deletionsPrefix + Hex.encode(Crypto.randomBytes(16)), data: try r.encoded(signingKey: signingKey),
      options: putOptions())
    deletionState.with { $0?.formUnion(keys) }
  }

  /// The keys this engine deleted, from the signed deletion records (read once per run). A record that fails its
  /// checks is named in `warnings` and ignored: it can only make more objects visible, never hide one.
  func engineDeletions() async throws -> Set<String> {
    if let s = deletionState.with({ $0 }) { return s }
    var out = Set<String>()
    for (_, r) in try await deletionRecords(warn: true) { out.formUnion(r.keys) }
    let result = out
    deletionState.with { $0 = result }
    return result
  }

  /// Above how many deletion records a prune compacts them (`compactDeletionRecords`): a daily prune writes one a
  /// day, and every run that lists hidden objects reads them all.
  static let compactDeletionRecordsAbove = 64

  /// Folds the signed deletion records into one once there are more than `above`: one new record names every key
  /// the valid records name that is still hidden (a key no longer hidden has no stored version left, or was stored
  /// again and is listed), then the merged records are deleted. The deletes are plain ones (delete markers on a
  /// versioned store: no version is deleted, and nothing reads a record a marker hides). The new record is written
  /// first, so a run killed in between leaves both, which name the same keys. Records that fail their checks are
  /// left alone (they are named in the warnings of every run, as before). Returns how many records were merged (0:
  /// none, e.g. too few, or versions cannot be listed). Run by a prune, under the exclusive lock.
  @discardableResult
  func compactDeletionRecords(above: Int = compactDeletionRecordsAbove) async throws -> Int {
    guard store.supportsRetention, config.deletionRecords != nil else { return 0 }
    guard try await store.list(prefix: Self.deletionsPrefix).count > above else { return 0 }
    let valid = try await deletionRecords(warn: false)
    let merged = valid.map(\.key)
    let named = valid.reduce(into: Set<String>()) { $0.formUnion($1.record.keys) }
    guard merged.count > 1 else { return 0 }
    var hidden = Set<String>()
    for prefix in ["snapshots/", "index/", "data/"] {
      do { hidden.formUnion(try await store.listHidden(prefix: prefix).map(\.key)) } catch StorageError.accessDenied {
        return 0  // which keys are still hidden cannot be known: keep the records as they are
      }
    }
    let keep = named.intersection(hidden)
    if !keep.isEmpty {
      let r = DeletionRecord(version: 1, repo: config.id, time: Self.now(), keys: keep.sorted())
      try await store.put(
        Self.deletionsPrefix + Hex.encode(Crypto.randomBytes(16)), data: try r.encoded(signingKey: signingKey),
        options: putOptions())
    }
    for k in merged { try await store.delete(k) }
    deletionState.with { $0 = nil }  // read again from the one record, if this run lists again
    audit.record(
      "compacted",
      details: [
        "deletionRecords": "\(merged.count)", "keysKept": "\(keep.count)", "keysDropped": "\(named.count - keep.count)",
      ])
    return merged.count
  }

  /// The listed deletion records whose checks pass, by key; with `warn`, each refused one is named in `warnings`.
  func deletionRecords(warn: Bool) async throws -> [(key: String, record: DeletionRecord)] {
    var out: [(key: String, record: DeletionRecord)] = []
    for o in try await store.list(prefix: Self.deletionsPrefix) {
      let d: Data
      do { d = try await store.get(o.key) } catch StorageError.notFound { continue }
      switch DeletionRecord.decode(d, repo: config.id, publicKey: publicKey) {
      case .success(let r): out.append((o.key, r))
      case .failure(let e):
        if warn { addWarnings(["deletion record \(o.key) refused and ignored: \(e.description)"]) }
      }
    }
    return out
  }

  /// The repository's objects under `prefix`: those listed, and on a versioned store those a delete marker hides
  /// that no signed deletion record names (hidden with the storage credentials, not deleted by this engine). Reads
  /// of those go to their stored versions (`getContentAddressed`, `verifiedPack`) and are named in `warnings` then.
  /// Where versions cannot be listed (no s3:ListBucketVersions) the listing is returned as it is, with a warning.
  func listObjects(_ prefix: String) async throws -> [ObjectInfo] {
    var objs = try await store.list(prefix: prefix)
    // An older repository's own deletions left delete markers without records: until it is upgraded, hidden
    // objects are not listed (those an index names are still read from their stored versions).
    guard config.deletionRecords != nil else { return objs }
    let hidden: [ObjectInfo]
    do { hidden = try await store.listHidden(prefix: prefix) } catch StorageError.accessDenied(_, let m) {
      addWarnings([
        "deleted objects under \(prefix) that the store still keeps cannot be seen: listing versions was refused (\(m))"
      ])
      return objs
    }
    guard !hidden.isEmpty else { return objs }
    let deleted = try await engineDeletions()
    let current = Set(objs.map(\.key))
    for h in hidden where !deleted.contains(h.key) && !current.contains(h.key) { objs.append(h) }
    return objs
  }

  /// Upgrades an older repository to recorded deletions (section 2a): every object under snapshots/, index/ and
  /// data/ that a delete marker hides now was hidden before deletions were recorded, by this engine's forget and
  /// prune as far as anyone can tell, so one signed record names them all; then the config says deletions are
  /// recorded, and from then on a hidden object no record names is read. Returns whether it upgraded; a no-op in a
  /// repository created or upgraded by this version. A backup calls it, as it signs older key files.
  @discardableResult
  public func upgradeDeletionRecords() async throws -> Bool {
    guard config.deletionRecords == nil else { return false }
    var hidden: [String] = []
    for prefix in ["snapshots/", "index/", "data/"] {
      do { hidden += try await store.listHidden(prefix: prefix).map(\.key) } catch StorageError.accessDenied {
        return false  // versions cannot be listed: stay as before, and try again next time
      }
    }
    try await recordDeletions(hidden)
    var newConfig = config
    newConfig.deletionRecords = DeletionRecord.scheme
    try await store.put("config", data: try Self.encodeConfig(newConfig, signingKey: signingKey), options: putOptions())
    config = newConfig
    audit.record("upgraded", details: ["deletionRecords": DeletionRecord.scheme, "hiddenBefore": "\(hidden.count)"])
    return true
  }

  /// The newest stored version of `config` whose checks pass, when a delete marker hides the config on a versioned
  /// store; nil when none is stored (no repository). Returns the raw bytes and a warning naming the version.
  static func hiddenConfig(
    _ store: any ObjectStore, expect: RepositoryExpectation
  ) async throws -> (raw: Data, warning: String)? {
    let versions = try await store.versions(of: "config")
    var firstError: (any Error)?
    for v in versions {
      let raw: Data
      do { raw = try await store.get("config", version: v) } catch StorageError.notFound { continue }
      do {
        _ = try readConfig(raw, location: store.location, expect: expect)
        return (
          raw,
          "config is \(store.deletedButKept) (deleted with the storage credentials; this engine never deletes "
            + "it): read its newest stored version \(v), whose signature is valid; make that version current again"
        )
      } catch {
        if firstError == nil { firstError = error }
      }
    }
    if let firstError { throw firstError }
    return nil
  }

  /// Key files a delete marker hides, each read from its newest stored version: tried only when no listed key file
  /// opens the repository (they pass the same checks; a rotation or an upgrade hides the old ones it replaced).
  static func hiddenKeyFiles(_ store: any ObjectStore) async throws -> [(key: String, bytes: Data, version: String)] {
    let hidden: [ObjectInfo]
    do { hidden = try await store.listHidden(prefix: "keys/") } catch StorageError.accessDenied { return [] }
    var out: [(key: String, bytes: Data, version: String)] = []
    for h in hidden.sorted(by: { $0.key < $1.key }) {
      guard let v = try await store.versions(of: h.key).first else { continue }
      do { out.append((h.key, try await store.get(h.key, version: v), v)) } catch StorageError.notFound { continue }
    }
    return out
  }
}
