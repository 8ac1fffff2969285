/// Long flag names of `botrt-engine` (without the leading `--`); the engine's parser declares its options with these.
public enum EngineFlag {
  // Every repository command.
  public static let repo = "repo"
  public static let kms = "kms"
  public static let s3Endpoint = "s3-endpoint"
  public static let s3Region = "s3-region"
  public static let s3PathStyle = "s3-path-style"
  public static let s3SSE = "s3-sse"
  public static let s3SSEKMSKeyId = "s3-sse-kms-key-id"
  public static let vaultTokenFile = "vault-token-file"
  public static let kmsTokenFile = "kms-token-file"
  public static let vaultCAFile = "vault-ca-file"
  /// restic's name: PEM certificates trusted in addition to the system's for every HTTPS connection.
  public static let caCert = "cacert"
  public static let kmsEndpoint = "kms-endpoint"
  public static let resultFile = "result-file"
  public static let quiet = "quiet"
  /// Machine output: progress lines (`EngineProgress`) and the result line on stdout.
  public static let json = "json"
  public static let retryLock = "retry-lock"
  public static let expectRepositoryID = "expect-repository-id"
  public static let expectSigningKey = "expect-signing-key"
  /// Open the repository without changing it: no lock object, no audit object, every write refused.
  public static let readOnly = "read-only"
  // backup.
  public static let dataType = "data-type"
  public static let tag = "tag"
  public static let stdin = "stdin"
  public static let stdinName = "stdin-name"
  public static let stdinFrom = "stdin-from"
  public static let stdinStatus = "stdin-status"
  public static let stdinTimeout = "stdin-timeout"
  public static let compression = "compression"
  public static let initIfMissing = "init-if-missing"
  public static let objectLock = "object-lock"
  // backup's file selection (restic's names).
  public static let exclude = "exclude"
  public static let iexclude = "iexclude"
  public static let excludeFile = "exclude-file"
  public static let iexcludeFile = "iexclude-file"
  public static let excludeFileRoot = "exclude-file-root"
  public static let excludeIfPresent = "exclude-if-present"
  public static let excludeCaches = "exclude-caches"
  public static let oneFileSystem = "one-file-system"
  public static let filesFrom = "files-from"
  public static let filesFromVerbatim = "files-from-verbatim"
  public static let filesFromRaw = "files-from-raw"
  // restore, verify.
  public static let before = "before"
  public static let target = "target"
  public static let stdout = "stdout"
  public static let path = "path"
  public static let stripComponents = "strip-components"
  public static let excludePath = "exclude-path"
  public static let keepSetID = "keep-setid"
  public static let requireSnapshot = "require-snapshot"
  public static let snapshotFrom = "snapshot-from"
  public static let verify = "verify"
  public static let all = "all"
  public static let readData = "read-data"
  public static let readDataSubset = "read-data-subset"
  // forget, copy's retention.
  public static let keepLast = "keep-last"
  public static let keepHourly = "keep-hourly"
  public static let keepDaily = "keep-daily"
  public static let keepWeekly = "keep-weekly"
  public static let keepMonthly = "keep-monthly"
  public static let keepYearly = "keep-yearly"
  public static let maxAge = "max-age"
  public static let prune = "prune"
  // copy.
  public static let to = "to"
  public static let toKMS = "to-kms"
  public static let toS3Endpoint = "to-s3-endpoint"
  public static let toS3Region = "to-s3-region"
  public static let toS3SSE = "to-s3-sse"
  public static let toS3SSEKMSKeyId = "to-s3-sse-kms-key-id"
  public static let toKMSEndpoint = "to-kms-endpoint"
  public static let toKMSTokenFile = "to-kms-token-file"
  public static let toVaultTokenFile = "to-vault-token-file"
  /// The target's pins, as `expect-repository-id` and `expect-signing-key` are the source's.
  public static let toExpectRepositoryID = "to-expect-repository-id"
  public static let toExpectSigningKey = "to-expect-signing-key"
  // rotate-keys, delete-repository.
  public static let newKMS = "new-kms"
  public static let newKEK = "new-kek"
  public static let confirm = "confirm"
  // gate.
  public static let file = "file"
  public static let key = "key"
  public static let messageKey = "message-key"
  public static let timeout = "timeout"

  /// `--NAME`.
  public static func long(_ name: String) -> String { "--" + name }
}

/// The engine's subcommand names.
public enum EngineCommandName {
  public static let backup = "backup"
  public static let forget = "forget"
  public static let verify = "verify"
  public static let restore = "restore"
  public static let copy = "copy"
  public static let rotateKeys = "rotate-keys"
  public static let deleteRepository = "delete-repository"
  public static let gate = "gate"
}

/// The kind of key service a KMS URL names (its scheme).
public enum EngineKMSKind: String, Sendable, Hashable, CaseIterable {
  case localKey = "file"
  case vaultTransit = "vault-transit"
  case awsKMS = "awskms"
  case azureKeyVault = "azurekv"
  case gcpKMS = "gcpkms"

  /// The kind of a KMS URL, from its scheme; nil for an unknown scheme.
  public init?(kmsURL: String) {
    guard let colon = kmsURL.firstIndex(of: ":") else { return nil }
    self.init(rawValue: kmsURL[..<colon].lowercased())
  }

  /// Whether `rotate-keys --new-kek` works: the key service makes the new key-encryption key itself (a new Vault
  /// Transit, Azure Key Vault or Cloud KMS key version, or a new AWS KMS key). A local key needs `--new-kms`.
  public var makesNewKEK: Bool { self != .localKey }
}

/// Repository URLs as the controller writes them (`--repo`) and the engine reports them (`EngineResult.repository`).
public enum EngineRepositoryURL {
  /// The URL compared: scheme lowercased, query and trailing slashes dropped.
  public static func normalized(_ url: String) -> String {
    var u = url
    if let q = u.firstIndex(of: "?") { u = String(u[..<q]) }
    if let r = u.range(of: "://") {
      u = u[..<r.lowerBound].lowercased() + u[r.lowerBound...]
    }
    while u.hasSuffix("/"), !u.hasSuffix("://"), !u.hasSuffix(":///") { u.removeLast() }
    return u
  }

  /// Whether two URLs name the same repository.
  public static func same(_ a: String, _ b: String) -> Bool { normalized(a) == normalized(b) }

  /// Whether `id` and `key` have the pins' shapes: 32 and 64 hex digits.
  public static func validPins(id: String, signingKey key: String) -> Bool {
    func hex(_ s: String, _ n: Int) -> Bool { s.count == n && s.allSatisfy(\.isHexDigit) }
    return hex(id, 32) && hex(key, 64)
  }
}

/// Flags of every repository command: the repository, its key service and how to reach them.
public struct EngineCommonArguments: Sendable, Hashable {
  public var repo: String
  public var kms: String
  /// How long to wait for a conflicting lock (`--retry-lock`), in seconds.
  public var retryLockSeconds: Int64?
  public var s3Endpoint: String?
  public var s3Region: String?
  public var s3PathStyle: Bool = false
  public var s3SSE: String?
  public var s3SSEKMSKeyId: String?
  public var vaultTokenFile: String?
  public var vaultCAFile: String?
  /// A PEM file of certificates trusted in addition to the system's for HTTPS to the storage and the key service
  /// (`--cacert`).
  public var caCertFile: String?
  public var kmsEndpoint: String?
  public var kmsTokenFile: String?
  /// No progress output (`--quiet`), as in every Job that does not report `progress`.
  public var quiet: Bool = true
  /// Progress lines for the controller (`--json` instead of `--quiet`): `EngineProgress` on stdout, at the rate the
  /// container's `BOTRT_PROGRESS_FPS` sets (`EngineProgress.jobFramesPerSecond`), then the result line. Backups and
  /// restores the controller follows set it.
  public var progress: Bool = false
  /// The repository id the repository must have (`--expect-repository-id`, 32 hex digits), as the result of the
  /// run that created it reported it (`EngineResult.repositoryId`).
  public var expectedRepositoryID: String?
  /// The Ed25519 public key (64 hex digits) that must sign the repository's config and key files
  /// (`--expect-signing-key`), as reported in `EngineResult.signingKey`.
  public var expectedSigningKey: String?
  /// Open the repository read-only (`--read-only`): a restore-only policy's restores and verifies, on a disaster
  /// recovery cluster, write nothing into the repository the primary cluster backs up into (no lock, no audit object).
  public var readOnly: Bool = false

  public init(repo: String, kms: String, retryLockSeconds: Int64? = nil) {
    self.repo = repo
    self.kms = kms
    self.retryLockSeconds = retryLockSeconds
  }

  /// `--repo R --kms K` and the settings, in a fixed order (`--quiet` or `--json` is rendered last by the command).
  public var argv: [String] {
    let l = EngineFlag.long
    var a = [l(EngineFlag.repo), repo, l(EngineFlag.kms), kms]
    if let r = retryLockSeconds { a += [l(EngineFlag.retryLock), EngineDuration.format(seconds: r)] }
    if let v = s3Endpoint { a += [l(EngineFlag.s3Endpoint), v] }
    if let v = s3Region { a += [l(EngineFlag.s3Region), v] }
    if s3PathStyle { a.append(l(EngineFlag.s3PathStyle)) }
    if let v = s3SSE { a += [l(EngineFlag.s3SSE), v] }
    if let v = s3SSEKMSKeyId { a += [l(EngineFlag.s3SSEKMSKeyId), v] }
    if let v = vaultTokenFile { a += [l(EngineFlag.vaultTokenFile), v] }
    if let v = vaultCAFile { a += [l(EngineFlag.vaultCAFile), v] }
    if let v = caCertFile { a += [l(EngineFlag.caCert), v] }
    if let v = kmsEndpoint { a += [l(EngineFlag.kmsEndpoint), v] }
    if let v = kmsTokenFile { a += [l(EngineFlag.kmsTokenFile), v] }
    if let v = expectedRepositoryID { a += [l(EngineFlag.expectRepositoryID), v] }
    if let v = expectedSigningKey { a += [l(EngineFlag.expectSigningKey), v] }
    if readOnly { a.append(l(EngineFlag.readOnly)) }
    return a
  }
}

/// S3 Object Lock for a repository a run creates (`--object-lock MODE:DAYS`).
public struct EngineObjectLock: Sendable, Hashable {
  public enum Mode: String, Sendable, Hashable { case compliance, governance }
  public var mode: Mode
  public var days: Int64
  public init(mode: Mode, days: Int64) {
    self.mode = mode
    self.days = days
  }
  var text: String { "\(mode.rawValue):\(days)" }
}

/// The retention rules of `forget` and of `copy`'s target.
public struct EngineRetention: Sendable, Hashable {
  public var keepLast: Int64?
  public var keepHourly: Int64?
  public var keepDaily: Int64?
  public var keepWeekly: Int64?
  public var keepMonthly: Int64?
  public var keepYearly: Int64?
  /// Keep every snapshot within this age of the newest one (`--max-age`, restic's `--keep-within`; rendered in the
  /// duration grammar: m is minutes).
  public var maxAgeSeconds: Int64?

  public init(
    keepLast: Int64? = nil, keepHourly: Int64? = nil, keepDaily: Int64? = nil, keepWeekly: Int64? = nil,
    keepMonthly: Int64? = nil, keepYearly: Int64? = nil, maxAgeSeconds: Int64? = nil
  ) {
    self.keepLast = keepLast
    self.keepHourly = keepHourly
    self.keepDaily = keepDaily
    self.keepWeekly = keepWeekly
    self.keepMonthly = keepMonthly
    self.keepYearly = keepYearly
    self.maxAgeSeconds = maxAgeSeconds
  }

  /// Whether no rule is set (the engine's forget needs at least one).
  public var isEmpty: Bool { argv.isEmpty }

  public var argv: [String] {
    let l = EngineFlag.long
    var a: [String] = []
    let counts: [(String, Int64?)] = [
      (EngineFlag.keepLast, keepLast), (EngineFlag.keepHourly, keepHourly), (EngineFlag.keepDaily, keepDaily),
      (EngineFlag.keepWeekly, keepWeekly), (EngineFlag.keepMonthly, keepMonthly), (EngineFlag.keepYearly, keepYearly),
    ]
    for (flag, value) in counts { if let v = value { a += [l(flag), String(v)] } }
    if let s = maxAgeSeconds { a += [l(EngineFlag.maxAge), EngineDuration.format(seconds: s)] }
    return a
  }
}

/// What a backup of paths leaves out, with restic's options and semantics (docs/engine-cli.md); patterns match the
/// absolute path in the container (for a claim, below `/backup/<claim>`).
public struct EngineFileSelection: Sendable, Hashable {
  /// `--exclude PATTERN` each, in order (a `!` pattern re-includes what an earlier one excluded).
  public var exclude: [String] = []
  /// `--iexclude PATTERN` each: as `exclude`, ignoring case.
  public var iexclude: [String] = []
  /// `--exclude-file FILE` each: patterns, one a line, read from a file in the container.
  public var excludeFiles: [String] = []
  /// `--iexclude-file FILE` each.
  public var iexcludeFiles: [String] = []
  /// `--exclude-file-root DIR`: the exclude files are paths below DIR, read there as untrusted data (a claim's own
  /// file: no symlink followed, a regular file of at most 1 MiB, no `$VAR` expansion), and a leading `/` in their
  /// patterns anchors at DIR.
  public var excludeFileRoot: String?
  /// `--exclude-if-present NAME[:HEADER]` each: directories holding such a file keep only it.
  public var excludeIfPresent: [String] = []
  /// `--exclude-caches`: as `--exclude-if-present` of a CACHEDIR.TAG with its signature.
  public var excludeCaches: Bool = false
  /// `--one-file-system`: do not descend into other file systems (mount points are kept, empty).
  public var oneFileSystem: Bool = false

  public init(
    exclude: [String] = [], iexclude: [String] = [], excludeFiles: [String] = [], iexcludeFiles: [String] = [],
    excludeIfPresent: [String] = [], excludeCaches: Bool = false, oneFileSystem: Bool = false
  ) {
    self.exclude = exclude
    self.iexclude = iexclude
    self.excludeFiles = excludeFiles
    self.iexcludeFiles = iexcludeFiles
    self.excludeIfPresent = excludeIfPresent
    self.excludeCaches = excludeCaches
    self.oneFileSystem = oneFileSystem
  }

  public var isEmpty: Bool { argv.isEmpty }

  /// `--exclude P` for each pattern, then `--iexclude`, `--exclude-file`, `--iexclude-file`, `--exclude-if-present`
  /// (each repeated per value, in order), `--exclude-caches` and `--one-file-system`.
  public var argv: [String] {
    let l = EngineFlag.long
    var a: [String] = []
    let lists: [(String, [String])] = [
      (EngineFlag.exclude, exclude), (EngineFlag.iexclude, iexclude), (EngineFlag.excludeFile, excludeFiles),
      (EngineFlag.iexcludeFile, iexcludeFiles), (EngineFlag.excludeIfPresent, excludeIfPresent),
    ]
    // `--flag=value`: a pattern starting with `-` stays the flag's value.
    for (flag, values) in lists { for v in values { a.append(l(flag) + "=" + v) } }
    if let r = excludeFileRoot { a.append(l(EngineFlag.excludeFileRoot) + "=" + r) }
    if excludeCaches { a.append(l(EngineFlag.excludeCaches)) }
    if oneFileSystem { a.append(l(EngineFlag.oneFileSystem)) }
    return a
  }
}

/// `botrt-engine backup`.
public struct EngineBackupArguments: Sendable, Hashable {
  public enum Source: Sendable, Hashable {
    /// Paths in the container.
    case paths([String])
    /// Standard input, stored as one file of this name.
    case stdin(name: String)
    /// A stream stored as one file of this name, read from a named pipe that a producer in another container writes
    /// (`--stdin-from PIPE`); the producer's exit status is read from `status` after the stream ends.
    case pipe(name: String, pipe: String, status: String)
  }
  public var common: EngineCommonArguments
  public var dataType: String
  public var tags: [String]
  public var initIfMissing: Bool
  public var objectLock: EngineObjectLock?
  public var compression: String?
  public var source: Source
  /// What a `.paths` backup leaves out (rendered before the paths); a stream source has no files to select, so it is
  /// not rendered for one.
  public var selection = EngineFileSelection()

  public init(
    common: EngineCommonArguments, dataType: String, tags: [String], initIfMissing: Bool,
    objectLock: EngineObjectLock?, compression: String?, source: Source
  ) {
    self.common = common
    self.dataType = dataType
    self.tags = tags
    self.initIfMissing = initIfMissing
    self.objectLock = objectLock
    self.compression = compression
    self.source = source
  }
}

/// `botrt-engine forget` (with `--prune`, as the controller always runs it).
public struct EngineForgetArguments: Sendable, Hashable {
  public var common: EngineCommonArguments
  public var retention: EngineRetention
  public var prune: Bool
  public init(common: EngineCommonArguments, retention: EngineRetention, prune: Bool = true) {
    self.common = common
    self.retention = retention
    self.prune = prune
  }
}

/// `botrt-engine verify`.
public struct EngineVerifyArguments: Sendable, Hashable {
  public enum Which: Sendable, Hashable {
    case all
    case snapshot(String)
    /// The newest snapshot that verifies (`latest`), as restore's `latest` selects it.
    case latest
    /// The newest snapshot at or before an RFC 3339 time that verifies (`latest --before TIME`).
    case latestBefore(String)
    /// The snapshot a restore in the same Pod restored, read from the result file it wrote (`--snapshot-from FILE`,
    /// `EngineRestoreArguments.resultFiles`): `latest` resolved once, so a backup landing between the restore and
    /// the verify cannot make them check different snapshots.
    case restoredBy(resultFile: String)

  }
  public var common: EngineCommonArguments
  public var which: Which
  public var readData: Bool
  /// `--read-data-subset` (instead of --read-data): a percentage or n/t of the packs.
  public var readDataSubset: String?
  public var requireSnapshot: String?
  /// `--tag K=V` (repeatable): `latest` picks among the snapshots with every one of these tags (e.g. `claim=NAME`,
  /// one claim of a multi-claim policy).
  public var tags: [String] = []
  public init(common: EngineCommonArguments, which: Which, readData: Bool, requireSnapshot: String?) {
    self.common = common
    self.which = which
    self.readData = readData
    self.requireSnapshot = requireSnapshot
  }
}

/// `botrt-engine restore`.
public struct EngineRestoreArguments: Sendable, Hashable {
  public enum Snapshot: Sendable, Hashable {
    case latest
    case id(String)
    /// The newest snapshot at or before an RFC 3339 time (`latest --before TIME`).
    case latestBefore(String)
  }
  public enum Output: Sendable, Hashable {
    case target(String)
    /// One file (`--path`) to standard output.
    case stdout(path: String)
    /// One file (`--path`) into a directory (`--target`).
    case file(path: String, into: String)
  }
  public var common: EngineCommonArguments
  public var snapshot: Snapshot
  public var requireSnapshot: String?
  public var output: Output
  /// Leading path components dropped from a `.target` restore (`--strip-components`): 1 puts a claim's backup,
  /// stored under the claim's name, back at the target's root.
  public var stripComponents: Int
  /// `--tag K=V` (repeatable): `latest` picks among the snapshots with every one of these tags (e.g. `claim=NAME`,
  /// one claim of a multi-claim policy).
  public var tags: [String]
  /// Paths of a `.target` restore left out (`--exclude-path`, repeatable): a claim's restore leaves the snapshot's
  /// Kubernetes objects (`ObjectsLayout.snapshotEntry`) out.
  public var excludePaths: [String] = []
  /// Keep the set-user-ID and set-group-ID bits of restored files (`--keep-setid`; the engine runs as root, which
  /// restores the owner first): a restore into a claim as root (`into.pvc.runAsUser: 0`) restores them as recorded.
  public var keepSetID: Bool = false
  /// Where the result line goes (`--result-file`, repeatable; none: /dev/termination-log when it exists). A drill's
  /// restore also writes it to a shared emptyDir, where its verify reads the snapshot restored
  /// (`EngineVerifyArguments.Which.restoredBy`).
  public var resultFiles: [String] = []
  /// `--verify` (a `.target` restore): read every restored file back and check it against the snapshot (restic's
  /// `restore --verify`); a drill's data check, which downloads nothing more.
  public var verify: Bool = false
  public init(
    common: EngineCommonArguments, snapshot: Snapshot, requireSnapshot: String?, output: Output,
    stripComponents: Int = 0, tags: [String] = []
  ) {
    self.tags = tags
    self.common = common
    self.snapshot = snapshot
    self.requireSnapshot = requireSnapshot
    self.output = output
    self.stripComponents = stripComponents
  }
}

/// `botrt-engine copy`: the source is `common`, the target its own repository, key service and settings.
public struct EngineCopyArguments: Sendable, Hashable {
  public var common: EngineCommonArguments
  public var to: String
  public var toKMS: String
  public var toS3Endpoint: String?
  public var toS3Region: String?
  public var toS3SSE: String?
  public var toS3SSEKMSKeyId: String?
  public var toKMSEndpoint: String?
  public var toKMSTokenFile: String?
  public var toVaultTokenFile: String?
  /// The repository id the target must have (`--to-expect-repository-id`, 32 hex digits), as an earlier copy's
  /// result reported it (`EngineResult.targetRepositoryId`); a pinned target that vanished is not re-created.
  public var toExpectedRepositoryID: String?
  /// The Ed25519 public key (64 hex digits) that must sign the target's config and key files
  /// (`--to-expect-signing-key`, `EngineResult.targetSigningKey`).
  public var toExpectedSigningKey: String?
  public var initIfMissing: Bool = true
  public var objectLock: EngineObjectLock?
  /// The target's retention; with a rule, the target is also pruned.
  public var retention: EngineRetention?
  public init(common: EngineCommonArguments, to: String, toKMS: String) {
    self.common = common
    self.to = to
    self.toKMS = toKMS
  }
}

/// What `rotate-keys` rewraps the data keys under.
public enum EngineRotationTarget: Sendable, Hashable {
  /// Another key (`--new-kms URL`): an entry of a rotation keys Secret, or the primary's key for a replica.
  case newKMS(String)
  /// A new key-encryption key the key service makes (`--new-kek`): only for kinds where `makesNewKEK`.
  case newKEK
}

/// Thrown when typed arguments would be refused by the engine.
public struct EngineArgumentError: Error, Sendable, Hashable, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// `botrt-engine rotate-keys`.
public struct EngineRotateKeysArguments: Sendable, Hashable {
  public let common: EngineCommonArguments
  public let target: EngineRotationTarget

  /// Fails for `--new-kek` with a key service that cannot make a new key (a local key: give `.newKMS`).
  public init(common: EngineCommonArguments, target: EngineRotationTarget) throws(EngineArgumentError) {
    if target == .newKEK {
      guard let kind = EngineKMSKind(kmsURL: common.kms), kind.makesNewKEK else {
        throw EngineArgumentError(
          "rotate-keys --new-kek needs a key service that makes new keys (Vault Transit, AWS KMS, Azure Key Vault, "
            + "Google Cloud KMS); for \(common.kms.prefix { $0 != ":" }) give the new key with --new-kms")
      }
    }
    self.common = common
    self.target = target
  }
}

/// An engine command the controller starts, typed; `argv` is what follows the engine executable.
public enum EngineArguments: Sendable, Hashable {
  case backup(EngineBackupArguments)
  case forget(EngineForgetArguments)
  case verify(EngineVerifyArguments)
  case restore(EngineRestoreArguments)
  case copy(EngineCopyArguments)
  case rotateKeys(EngineRotateKeysArguments)
  case deleteRepository(EngineCommonArguments)

  public var common: EngineCommonArguments {
    switch self {
    case .backup(let a): a.common
    case .forget(let a): a.common
    case .verify(let a): a.common
    case .restore(let a): a.common
    case .copy(let a): a.common
    case .rotateKeys(let a): a.common
    case .deleteRepository(let c): c
    }
  }

  public var commandName: String {
    switch self {
    case .backup: EngineCommandName.backup
    case .forget: EngineCommandName.forget
    case .verify: EngineCommandName.verify
    case .restore: EngineCommandName.restore
    case .copy: EngineCommandName.copy
    case .rotateKeys: EngineCommandName.rotateKeys
    case .deleteRepository: EngineCommandName.deleteRepository
    }
  }

  /// The engine's arguments: the command, the common flags, the command's own, `--quiet` (before a backup's paths).
  public var argv: [String] {
    let l = EngineFlag.long
    var a = [commandName] + common.argv
    switch self {
    case .backup(let b):
      a += [l(EngineFlag.dataType), b.dataType]
      for t in b.tags { a += [l(EngineFlag.tag), t] }
      if b.initIfMissing { a.append(l(EngineFlag.initIfMissing)) }
      if let o = b.objectLock { a += [l(EngineFlag.objectLock), o.text] }
      if let c = b.compression { a += [l(EngineFlag.compression), c] }
      switch b.source {
      case .paths(let p):
        a += b.selection.argv
        // The paths last, after `--quiet` or `--json`.
        return a + common.outputArgv + p
      case .stdin(let name): a += [l(EngineFlag.stdin), l(EngineFlag.stdinName), name]
      case .pipe(let name, let pipe, let status):
        a += [
          l(EngineFlag.stdin), l(EngineFlag.stdinName), name, l(EngineFlag.stdinFrom), pipe, l(EngineFlag.stdinStatus),
          status,
        ]
      }
    case .forget(let f):
      a += f.retention.argv
      if f.prune { a.append(l(EngineFlag.prune)) }
    case .verify(let v):
      if let s = v.readDataSubset {
        a += [l(EngineFlag.readDataSubset), s]
      } else if v.readData {
        a.append(l(EngineFlag.readData))
      }
      switch v.which {
      case .all: a.append(l(EngineFlag.all))
      case .snapshot(let id): a.append(id)
      case .latest: a.append("latest")
      case .latestBefore(let t): a += ["latest", l(EngineFlag.before), t]
      case .restoredBy(let file): a += [l(EngineFlag.snapshotFrom), file]
      }
      for t in v.tags { a += [l(EngineFlag.tag), t] }
      if let r = v.requireSnapshot { a += [l(EngineFlag.requireSnapshot), r] }
    case .restore(let r):
      switch r.snapshot {
      case .latest: a.append("latest")
      case .id(let id): a.append(id)
      case .latestBefore(let t): a += ["latest", l(EngineFlag.before), t]
      }
      for t in r.tags { a += [l(EngineFlag.tag), t] }
      if let s = r.requireSnapshot { a += [l(EngineFlag.requireSnapshot), s] }
      for f in r.resultFiles { a += [l(EngineFlag.resultFile), f] }
      switch r.output {
      case .target(let dir):
        a += [l(EngineFlag.target), dir]
        if r.stripComponents > 0 { a += [l(EngineFlag.stripComponents), String(r.stripComponents)] }
        for p in r.excludePaths { a += [l(EngineFlag.excludePath), p] }
        if r.keepSetID { a.append(l(EngineFlag.keepSetID)) }
        if r.verify { a.append(l(EngineFlag.verify)) }
      case .stdout(let path): a += [l(EngineFlag.stdout), l(EngineFlag.path), path]
      case .file(let path, let dir):
        a += [l(EngineFlag.target), dir, l(EngineFlag.path), path]
        if r.verify { a.append(l(EngineFlag.verify)) }
      }
    case .copy(let c):
      a += [l(EngineFlag.to), c.to, l(EngineFlag.toKMS), c.toKMS]
      let opts: [(String, String?)] = [
        (EngineFlag.toS3Endpoint, c.toS3Endpoint), (EngineFlag.toS3Region, c.toS3Region),
        (EngineFlag.toS3SSE, c.toS3SSE), (EngineFlag.toS3SSEKMSKeyId, c.toS3SSEKMSKeyId),
        (EngineFlag.toKMSEndpoint, c.toKMSEndpoint), (EngineFlag.toKMSTokenFile, c.toKMSTokenFile),
        (EngineFlag.toVaultTokenFile, c.toVaultTokenFile), (EngineFlag.toExpectRepositoryID, c.toExpectedRepositoryID),
        (EngineFlag.toExpectSigningKey, c.toExpectedSigningKey),
      ]
      for (flag, value) in opts { if let v = value { a += [l(flag), v] } }
      if c.initIfMissing { a.append(l(EngineFlag.initIfMissing)) }
      if let o = c.objectLock { a += [l(EngineFlag.objectLock), o.text] }
      if let r = c.retention, !r.isEmpty { a += r.argv + [l(EngineFlag.prune)] }
    case .rotateKeys(let r):
      switch r.target {
      case .newKMS(let url): a += [l(EngineFlag.newKMS), url]
      case .newKEK: a.append(l(EngineFlag.newKEK))
      }
    case .deleteRepository:
      a.append(l(EngineFlag.confirm))
    }
    return a + common.outputArgv
  }
}

extension EngineCommonArguments {
  /// `--json` when the run reports progress, else `--quiet` when quiet, else nothing.
  var outputArgv: [String] {
    if progress { return [EngineFlag.long(EngineFlag.json)] }
    return quiet ? [EngineFlag.long(EngineFlag.quiet)] : []
  }
}
