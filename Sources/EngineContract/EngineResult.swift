import Foundation

/// The one-line JSON result every engine command writes (stdout, `--result-file`, `/dev/termination-log`), which the
/// controller reads back from the finished Pod. One type for both sides: the engine encodes it, the controller
/// decodes it.
///
/// Every field is optional on the wire, so a message of an older engine (or a shell wrapper's) still decodes; the
/// engine always writes command, ok, exitCode, durationSeconds, errors, warnings, keyUnwraps and keyWraps.
public struct EngineResult: Codable, Sendable, Hashable {
  public var command: String?
  /// The version of the engine that wrote the result (`EngineVersion.current`); absent from older engines.
  public var engineVersion: String?
  public var ok: Bool?
  public var exitCode: Int32?
  public var snapshotId: String?
  /// backup, restore: the point in time of the snapshot written or restored (RFC 3339, the manifest's time: when the
  /// backup started reading its data, or its `--time`). RPO ages are counted from it.
  public var snapshotTime: String?
  /// restore and verify of `latest`: newer snapshots passed over because they failed their checks (the result's
  /// snapshot is the newest one that passed).
  public var skippedSnapshots: [SkippedSnapshot]?
  public var files: Int?
  /// backup with file selection options (`--exclude` and the like): entries left out, each counted once (an excluded
  /// directory's content is not read, nor counted). Absent without such options.
  public var excluded: Int?
  public var bytesRead: Int64?
  /// backup, copy: the bytes of the pack files the run wrote (after deduplication, compression and encryption),
  /// which is what the snapshot added to the repository's data. forget --prune, delete-repository: minus the bytes
  /// freed.
  public var bytesStored: Int64?
  public var durationSeconds: Double?
  public var errors: [String]?
  public var warnings: [String]?
  /// rotate-keys: the KMS URL (no secrets) and key version now wrapping the keys.
  public var kms: String?
  /// The repository's id and the hex Ed25519 public key that signs its config, key files and manifests: a caller
  /// records them from the first run and pins them in later runs (`--expect-repository-id`, `--expect-signing-key`).
  public var repositoryId: String?
  public var signingKey: String?
  /// The repository the run opened, as a URL without credentials (`s3://BUCKET/PREFIX`, `gs://…`, `azblob://…`,
  /// `file:///PATH`): the id and signing key above belong to it. A caller pins them only for the repository it
  /// named (see `EngineRepositoryURL.same`), so a run of an older spec cannot pin a new location.
  public var repository: String?
  /// copy: the target repository's id, signing key and URL (without credentials), as `repositoryId`, `signingKey`
  /// and `repository` are the source's; a caller pins them for the target (`--to-expect-repository-id`,
  /// `--to-expect-signing-key`) only when `targetRepository` is the target it named.
  public var targetRepositoryId: String?
  public var targetSigningKey: String?
  public var targetRepository: String?
  public var keyVersion: String?
  /// delete-repository: objects deleted and objects Object Lock kept.
  public var objectsDeleted: Int?
  public var objectsRetained: Int?
  /// Data-key unwraps of the run by key (a KMS URI without secrets). Absent from older engines; an older engine's
  /// bare count is read as one entry with an empty key.
  public var keyUnwraps: [KeyUnwrap]?
  /// Requests the run made to the repositories' storage (HTTP attempts, retries included; object operations for a
  /// local directory).
  public var storageRequests: Int64?
  /// Bytes the run fetched from the repositories' storage: every response body (objects and ranges read: config,
  /// keys, indexes, snapshots, trees, pack data; and listings), as stored (compressed and encrypted). A DRDrill's status.lastResult.bytesRead
  /// adds its restore's and its verify's. Absent from older engines.
  public var storageBytesRead: Int64?
  /// verify: bytes of repository data (packs, or blob ranges of `latest`) read from the storage to check content; 0
  /// without --read-data. Absent from older engines.
  public var bytesDownloaded: Int64?
  /// verify: the snapshots checked. Absent from older engines.
  public var snapshotsVerified: Int?
  /// restore --verify: the restored files read back from the target and found equal to the snapshot, and their
  /// bytes. Absent without --verify.
  public var filesVerified: Int?
  public var bytesVerified: Int64?
  /// copy: each snapshot copied (source id → target id).
  public var copied: [Copied]?
  /// copy: source snapshots skipped because the target already holds a copy.
  public var skipped: [String]?
  /// copy with retention: source snapshots not copied because the target's retention would remove them.
  public var expired: [String]?
  public var dedupRatio: Double?
  /// Data keys wrapped by the run.
  public var keyWraps: Int?
  /// snapshots: the listing.
  public var snapshots: [SnapshotSummary]?
  /// forget: removed snapshots and deleted or rewritten packs.
  public var removed: [String]?
  public var packsDeleted: Int?
  public var packsRepacked: Int?
  /// backup, forget --prune: the repository's stored bytes after the run, the sizes of its pack files (data/)
  /// summed, from the listing the run makes anyway (index files, manifests and keys are not counted). Absent from
  /// older engines and from runs that list no packs (forget without --prune).
  public var repositoryStoredBytes: Int64?

  /// One key's unwrap count in a result.
  public struct KeyUnwrap: Codable, Sendable, Hashable {
    public var key: String
    public var count: Int64

    public init(key: String, count: Int64) {
      self.key = key
      self.count = count
    }
  }

  /// One copied snapshot: its id in the source and in the target.
  public struct Copied: Codable, Sendable, Hashable {
    public var source: String
    public var target: String

    public init(source: String, target: String) {
      self.source = source
      self.target = target
    }
  }

  /// A snapshot `latest` passed over, and why (the check it failed).
  public struct SkippedSnapshot: Codable, Sendable, Hashable {
    public var id: String
    public var reason: String

    public init(id: String, reason: String) {
      self.id = id
      self.reason = reason
    }
  }

  /// A snapshot as `snapshots --json` lists it.
  public struct SnapshotSummary: Codable, Sendable, Hashable {
    public var id: String
    public var seq: Int
    public var time: String
    public var hostname: String
    public var dataType: String
    public var paths: [String]
    public var tags: [String: String]
    public var files: Int
    public var bytes: Int64
    public var errors: Int
    public var parent: String?

    public init(
      id: String, seq: Int, time: String, hostname: String, dataType: String, paths: [String],
      tags: [String: String], files: Int, bytes: Int64, errors: Int, parent: String?
    ) {
      self.id = id
      self.seq = seq
      self.time = time
      self.hostname = hostname
      self.dataType = dataType
      self.paths = paths
      self.tags = tags
      self.files = files
      self.bytes = bytes
      self.errors = errors
      self.parent = parent
    }
  }

  enum CodingKeys: String, CodingKey {
    case command, ok, exitCode, snapshotId, files, excluded, bytesRead, bytesStored, durationSeconds, errors, keyUnwraps
    case storageRequests, storageBytesRead, warnings, kms, keyVersion, objectsDeleted, objectsRetained
    case copied, skipped, expired, dedupRatio, keyWraps, snapshots, removed, packsDeleted, packsRepacked
    case snapshotTime, skippedSnapshots, bytesDownloaded, engineVersion, repositoryId, signingKey, repository
    case repositoryStoredBytes, snapshotsVerified, targetRepositoryId, targetSigningKey, targetRepository
    case filesVerified, bytesVerified
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    command = try c.decodeIfPresent(String.self, forKey: .command)
    engineVersion = try c.decodeIfPresent(String.self, forKey: .engineVersion)
    ok = try c.decodeIfPresent(Bool.self, forKey: .ok)
    exitCode = try c.decodeIfPresent(Int32.self, forKey: .exitCode)
    snapshotId = try c.decodeIfPresent(String.self, forKey: .snapshotId)
    snapshotTime = try c.decodeIfPresent(String.self, forKey: .snapshotTime)
    skippedSnapshots = try c.decodeIfPresent([SkippedSnapshot].self, forKey: .skippedSnapshots)
    files = try c.decodeIfPresent(Int.self, forKey: .files)
    excluded = try c.decodeIfPresent(Int.self, forKey: .excluded)
    bytesRead = try c.decodeIfPresent(Int64.self, forKey: .bytesRead)
    bytesStored = try c.decodeIfPresent(Int64.self, forKey: .bytesStored)
    durationSeconds = try c.decodeIfPresent(Double.self, forKey: .durationSeconds)
    errors = try c.decodeIfPresent([String].self, forKey: .errors)
    storageRequests = try? c.decodeIfPresent(Int64.self, forKey: .storageRequests)
    storageBytesRead = try? c.decodeIfPresent(Int64.self, forKey: .storageBytesRead)
    bytesDownloaded = try? c.decodeIfPresent(Int64.self, forKey: .bytesDownloaded)
    snapshotsVerified = try? c.decodeIfPresent(Int.self, forKey: .snapshotsVerified)
    filesVerified = try? c.decodeIfPresent(Int.self, forKey: .filesVerified)
    bytesVerified = try? c.decodeIfPresent(Int64.self, forKey: .bytesVerified)
    warnings = try c.decodeIfPresent([String].self, forKey: .warnings)
    kms = try c.decodeIfPresent(String.self, forKey: .kms)
    keyVersion = try c.decodeIfPresent(String.self, forKey: .keyVersion)
    repositoryId = try c.decodeIfPresent(String.self, forKey: .repositoryId)
    signingKey = try c.decodeIfPresent(String.self, forKey: .signingKey)
    repository = try c.decodeIfPresent(String.self, forKey: .repository)
    targetRepositoryId = try c.decodeIfPresent(String.self, forKey: .targetRepositoryId)
    targetSigningKey = try c.decodeIfPresent(String.self, forKey: .targetSigningKey)
    targetRepository = try c.decodeIfPresent(String.self, forKey: .targetRepository)
    objectsDeleted = try c.decodeIfPresent(Int.self, forKey: .objectsDeleted)
    objectsRetained = try c.decodeIfPresent(Int.self, forKey: .objectsRetained)
    if let list = try? c.decodeIfPresent([KeyUnwrap].self, forKey: .keyUnwraps) {
      keyUnwraps = list
    } else if let count = try? c.decodeIfPresent(Int64.self, forKey: .keyUnwraps) {
      keyUnwraps = count > 0 ? [KeyUnwrap(key: "", count: count)] : []
    } else {
      keyUnwraps = nil
    }
    copied = try c.decodeIfPresent([Copied].self, forKey: .copied)
    skipped = try c.decodeIfPresent([String].self, forKey: .skipped)
    expired = try c.decodeIfPresent([String].self, forKey: .expired)
    dedupRatio = try c.decodeIfPresent(Double.self, forKey: .dedupRatio)
    keyWraps = try c.decodeIfPresent(Int.self, forKey: .keyWraps)
    snapshots = try c.decodeIfPresent([SnapshotSummary].self, forKey: .snapshots)
    removed = try c.decodeIfPresent([String].self, forKey: .removed)
    packsDeleted = try c.decodeIfPresent(Int.self, forKey: .packsDeleted)
    packsRepacked = try c.decodeIfPresent(Int.self, forKey: .packsRepacked)
    repositoryStoredBytes = try? c.decodeIfPresent(Int64.self, forKey: .repositoryStoredBytes)
  }

  public init(
    command: String? = nil, ok: Bool? = nil, exitCode: Int32? = nil, snapshotId: String? = nil, files: Int? = nil,
    bytesRead: Int64? = nil, bytesStored: Int64? = nil, durationSeconds: Double? = nil, errors: [String]? = nil,
    warnings: [String]? = nil, kms: String? = nil, keyVersion: String? = nil, objectsDeleted: Int? = nil,
    objectsRetained: Int? = nil, keyUnwraps: [KeyUnwrap]? = nil, storageRequests: Int64? = nil,
    copied: [Copied]? = nil, skipped: [String]? = nil
  ) {
    self.command = command
    self.ok = ok
    self.exitCode = exitCode
    self.snapshotId = snapshotId
    self.files = files
    self.bytesRead = bytesRead
    self.bytesStored = bytesStored
    self.durationSeconds = durationSeconds
    self.errors = errors
    self.warnings = warnings
    self.kms = kms
    self.keyVersion = keyVersion
    self.objectsDeleted = objectsDeleted
    self.objectsRetained = objectsRetained
    self.keyUnwraps = keyUnwraps
    self.storageRequests = storageRequests
    self.copied = copied
    self.skipped = skipped
  }

  /// The result an engine command starts from: ok, exit code 0, no errors, warnings or key use yet.
  public static func starting(_ command: String) -> EngineResult {
    var r = EngineResult(
      command: command, ok: true, exitCode: EngineExitCode.success, durationSeconds: 0, errors: [], warnings: [],
      keyUnwraps: [])
    r.keyWraps = 0
    return r
  }

  /// `snapshotTime` as a date (RFC 3339, with or without fractional seconds); nil when absent or unreadable.
  public var snapshotDate: Date? {
    snapshotTime.flatMap(EngineTime.parse)
  }

  /// Adds errors.
  public mutating func addErrors(_ e: [String]) { errors = (errors ?? []) + e }
  /// Adds warnings.
  public mutating func addWarnings(_ w: [String]) { warnings = (warnings ?? []) + w }

  /// Adds the unwrap counts of one repository (or KMS) to `keyUnwraps`, merged by key and sorted.
  public mutating func addUnwraps(_ counts: [String: Int]) {
    var m = Dictionary((keyUnwraps ?? []).map { ($0.key, $0.count) }, uniquingKeysWith: +)
    for (k, v) in counts where v > 0 { m[k, default: 0] += Int64(v) }
    keyUnwraps = m.keys.sorted().map { KeyUnwrap(key: $0, count: m[$0] ?? 0) }
  }

  /// Parses a termination message: its last line that starts with `{`; nil when there is none or it is not the
  /// engine's JSON (e.g. a shell error text).
  public static func parse(_ message: String?) -> EngineResult? { decodeLastJSONLine(message) }

  /// The kubelet keeps at most this many bytes of a container's termination message: a longer result would reach the
  /// controller cut off mid-JSON, unreadable.
  public static let terminationMessageLimit = 4096

  /// The one-line encoding, at most `maxBytes` long: the lists shrink first (each keeps its first entries, a count
  /// of the rest, and its last entry, where a failed verify puts its summary), then each text is cut to 300
  /// characters, then only the essentials remain. Ids, the exit code and the counters are kept.
  public func encodedLine(maxBytes: Int) throws -> Data {
    var line = try encodedLine()
    if line.count <= maxBytes { return line }
    func cap(_ a: [String]?, _ n: Int) -> [String]? {
      guard let a, a.count > n + 1 else { return a }
      return Array(a.prefix(n)) + ["and \(a.count - n - 1) more"] + [a[a.count - 1]]
    }
    var r = self
    for n in [16, 8, 4, 2, 1, 0] {
      r.errors = cap(errors, n)
      r.warnings = cap(warnings, n)
      r.removed = cap(removed, n)
      r.skipped = cap(skipped, n)
      r.expired = cap(expired, n)
      r.copied = copied.map { Array($0.suffix(max(n, 1))) }
      r.skippedSnapshots = skippedSnapshots.map { Array($0.prefix(n)) }
      r.snapshots = n >= 8 ? snapshots : nil
      r.keyUnwraps = keyUnwraps.map { Array($0.prefix(max(n, 1))) }
      line = try r.encodedLine()
      if line.count <= maxBytes { return line }
    }
    func cut(_ t: String) -> String { t.count > 300 ? String(t.prefix(300)) + "…" : t }
    r.errors = r.errors?.map(cut)
    r.warnings = r.warnings?.map(cut)
    line = try r.encodedLine()
    if line.count <= maxBytes { return line }
    var e = EngineResult(command: command, ok: ok, exitCode: exitCode, snapshotId: snapshotId, files: files)
    e.engineVersion = engineVersion
    e.errors = errors.map { $0.isEmpty ? [] : [cut($0[0]), "and \($0.count - 1) more (result cut to fit)"] }
    e.snapshotTime = snapshotTime
    e.repositoryId = repositoryId
    e.signingKey = signingKey
    e.repository = repository.map(cut)
    e.targetRepositoryId = targetRepositoryId
    e.targetSigningKey = targetSigningKey
    e.targetRepository = targetRepository.map(cut)
    return try e.encodedLine()
  }

  /// The one-line encoding the engine writes (sorted keys, slashes unescaped, a newline at the end).
  public func encodedLine() throws -> Data {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return try enc.encode(self) + Data("\n".utf8)
  }
}

/// The last line of a termination message that starts with `{`, decoded as `T`; nil when there is none or it does
/// not decode (e.g. a shell error text). Shared by the engine's and `botrt-objects`' results.
func decodeLastJSONLine<T: Decodable>(_ message: String?) -> T? {
  guard let message, let line = message.split(separator: "\n").last(where: { $0.hasPrefix("{") }) else {
    return nil
  }
  return try? JSONDecoder().decode(T.self, from: Data(line.utf8))
}
