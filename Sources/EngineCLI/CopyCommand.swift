import ArgumentParser
import BackupEngine
import EngineContract
import Foundation

/// `botrt-engine copy`: copies snapshots to a second repository (another region or provider), re-encrypted
/// under the target's keys.
struct CopyCommand: EngineCommand {
  static let configuration = CommandConfiguration(
    commandName: "copy",
    abstract: "Copy snapshots to another repository, re-encrypted and re-signed with its keys (incremental).",
    discussion: """
      The source is --repo/--kms (or --from/--from-kms); the target is --to/--to-kms. Snapshots the target already \
      holds a copy of are skipped, and blobs it already stores are not uploaded again.
      """)
  @OptionGroup var repoOptions: RepoOptions
  @Option(help: "Source repository URL (same as --repo).")
  var from: String?
  @Option(name: .customLong("from-kms"), help: "Source KMS URL (same as --kms).")
  var fromKms: String?
  @Option(name: [.customLong("to"), .customLong("to-repo")], help: "Target repository URL (env BOTRT_TO_REPO).")
  var to: String?
  @Option(name: .customLong("to-kms"), help: "Target KMS URL (env BOTRT_TO_KMS).")
  var toKms: String?
  @Option(
    name: .customLong("to-s3-endpoint"),
    help:
      "S3 endpoint of the target when it differs from the source's (else the target URL's ?endpoint=, then the environment)."
  )
  var toS3Endpoint: String?
  @Option(name: .customLong("to-s3-region"), help: "S3 region of the target (else the target URL's ?region=).")
  var toS3Region: String?
  @Option(name: .customLong("to-s3-sse"), help: "S3 server-side encryption of the target: aws:kms or AES256.")
  var toS3SSE: String?
  @Option(name: .customLong("to-s3-sse-kms-key-id"), help: "KMS key id or ARN for the target's --to-s3-sse aws:kms.")
  var toS3SSEKMSKeyId: String?
  @Option(
    name: .customLong("to-kms-endpoint"),
    help: "KMS endpoint override for the target's KMS (else its URL's ?endpoint=, then the environment).")
  var toKmsEndpoint: String?
  @Option(
    name: .customLong("to-kms-token-file"),
    help: "File with the access token of the target's Azure Key Vault or Google Cloud KMS (else the environment).")
  var toKmsTokenFile: String?
  @Option(
    name: .customLong("to-vault-token-file"),
    help: "File with the target's Vault token (else --vault-token-file, VAULT_TOKEN).")
  var toVaultTokenFile: String?
  @Option(
    name: .customLong(EngineFlag.toExpectRepositoryID),
    help: ArgumentHelp(
      "Refuse (exit 5) unless the target has this repository id (32 hex digits; the result's targetRepositoryId of "
        + "an earlier copy): a target replaced wholesale under the same location receives nothing, and one that "
        + "vanished is not re-created by --init-if-missing."))
  var toExpectRepositoryID: String?
  @Option(
    name: .customLong(EngineFlag.toExpectSigningKey),
    help: ArgumentHelp(
      "Refuse (exit 5) unless the target's config and key files are signed by this Ed25519 public key (64 hex "
        + "digits; the result's targetSigningKey of an earlier copy)."))
  var toExpectSigningKey: String?
  @Flag(
    name: .customLong("init-if-missing"),
    help: "Create the target repository first when it has no config yet.")
  var initIfMissing = false
  @Option(
    name: .customLong("object-lock"),
    help: "With --init-if-missing: compliance:DAYS or governance:DAYS for a target created by this run.")
  var objectLock: String?
  @Argument(help: "Snapshots to copy (ids, unique prefixes or 'latest'); none with --all.")
  var snapshots: [String] = []
  @Flag(help: "Copy every snapshot (the default when no SNAPSHOT is given).")
  var all = false
  @OptionGroup(title: "Retention of the target")
  var retention: RetentionOptions
  @Flag(help: "With a retention rule: also delete the target's data no snapshot references any more.")
  var prune = false
  var commandName: String { "copy" }

  func validate() throws {
    if all && !snapshots.isEmpty { throw ValidationError("give SNAPSHOT ids or --all, not both") }
    if objectLock != nil && !initIfMissing { throw ValidationError("--object-lock needs --init-if-missing") }
    if prune && retention.isEmpty { throw ValidationError("--prune needs a --keep-* rule or --max-age") }
    if let v = toExpectRepositoryID, v.count != 32 || Hex.decode(v) == nil {
      throw ValidationError("--\(EngineFlag.toExpectRepositoryID) '\(v)' must be 32 hex digits (a repository id)")
    }
    if let v = toExpectSigningKey, v.count != 64 || Hex.decode(v) == nil {
      throw ValidationError("--\(EngineFlag.toExpectSigningKey) '\(v)' must be 64 hex digits (an Ed25519 public key)")
    }
  }

  /// The pinned identity the target must have.
  func targetExpectation() -> RepositoryExpectation {
    RepositoryExpectation(repositoryID: toExpectRepositoryID, signingKey: toExpectSigningKey)
  }

  var env: [String: String] { ProcessInfo.processInfo.environment }

  /// The prefix of environment variables meant for the target only: `BOTRT_TO_ENV_AWS_ACCESS_KEY_ID` is the target's
  /// `AWS_ACCESS_KEY_ID` (its own credentials, endpoints and settings when they differ from the source's).
  static let targetEnvPrefix = EngineEnv.toEnvPrefix

  /// The environment the target's store and key service see: the process environment with every
  /// `BOTRT_TO_ENV_<NAME>` variable set as `<NAME>`.
  static func targetEnvironment(_ env: [String: String]) -> [String: String] {
    var out = env
    for (k, v) in env where k.hasPrefix(targetEnvPrefix) && k.count > targetEnvPrefix.count {
      out[String(k.dropFirst(targetEnvPrefix.count))] = v
    }
    return out
  }

  func targetURL() throws -> String {
    guard let t = to ?? env[EngineEnv.toRepo], !t.isEmpty else {
      throw EngineError.usage("--to REPO2 is required (the target repository)")
    }
    return t
  }

  func targetKMS() throws -> String {
    guard let k = toKms ?? env[EngineEnv.toKMS], !k.isEmpty else {
      throw EngineError.usage("--to-kms KMS2 is required (the target repository's key)")
    }
    return k
  }

  /// Opens the target with its pins (`--to-expect-*`), creating it first with `--init-if-missing` when it has no
  /// config and no pins (a concurrent creator that wins the race is simply opened, and checked against the pins).
  func openOrCreateTarget(_ store: any ObjectStore, _ keys: any KeyService) async throws -> Repository {
    let expect = targetExpectation()
    if initIfMissing, try await store.head("config") == nil {
      if let pinned = toExpectRepositoryID {
        // As backup's --init-if-missing: a pinned target that vanished is not replaced by a new one, which would
        // hide its loss and give whoever deleted it a fresh repository to watch.
        throw EngineError.integrity(
          object: "config",
          message:
            "target repository \(pinned) was expected (pinned by an earlier copy) but \(store.location) has no "
            + "config: it was deleted or the location is wrong; nothing was copied. To start a new repository there, "
            + "drop the target's pins (--\(EngineFlag.toExpectRepositoryID), --\(EngineFlag.toExpectSigningKey))")
      }
      do {
        let repo = try await Repository.initialize(
          store: store, keyService: keys, objectLock: try objectLock.map { try ObjectLockConfig.parse($0) },
          logger: repoOptions.logger())
        try await repo.audit.flush()
        return repo
      } catch StorageError.alreadyExists {}
    }
    return try await Repository.open(store: store, keyService: keys, logger: repoOptions.logger(), expect: expect)
  }

  func execute(_ result: inout CommandResult) async throws {
    let sourceURL = try from ?? repoOptions.repoURL()
    let source = try await Repository.open(
      store: try makeObjectStore(url: sourceURL, options: try repoOptions.storeOptions()),
      keyService: try repoOptions.makeKMS(try fromKms ?? repoOptions.kmsURL()), logger: repoOptions.logger(),
      expect: repoOptions.expectation())  // the pins name the source; the target's are not taken yet
    let tURL = try targetURL()
    guard tURL != sourceURL else {
      throw EngineError.usage("--to is the source repository (\(tURL)); give a second repository")
    }
    let tEnv = Self.targetEnvironment(env)
    var so = try repoOptions.storeOptions()
    so.environment = tEnv
    so.endpoint = toS3Endpoint ?? tEnv[Self.targetEnvPrefix + "BOTRT_S3_ENDPOINT"]
    so.region = toS3Region ?? tEnv[Self.targetEnvPrefix + "AWS_REGION"]
    if ["1", "true", "yes"].contains((tEnv[Self.targetEnvPrefix + "BOTRT_S3_PATH_STYLE"] ?? "").lowercased()) {
      so.pathStyle = true
    }
    so.serverSideEncryption = toS3SSE
    so.sseKMSKeyId = toS3SSEKMSKeyId
    let targetStore = try makeObjectStore(url: tURL, options: so)
    var ko = try repoOptions.kmsOptions()
    ko.environment = tEnv
    if let ca = env[Self.targetEnvPrefix + "VAULT_CACERT"] { ko.caFile = ca }
    ko.endpoint = toKmsEndpoint
    ko.accessTokenFile = toKmsTokenFile
    if let toVaultTokenFile { ko.tokenFile = toVaultTokenFile }
    let targetKeys = try makeKeyService(url: try targetKMS(), options: ko)
    let target = try await openOrCreateTarget(targetStore, targetKeys)
    let policy = retention.isEmpty ? nil : try retention.policy()
    let r = try await withLockedRepo(source, exclusive: false, wait: try repoOptions.lockWait()) {
      try await withLockedRepo(target, exclusive: false, wait: try repoOptions.lockWait()) {
        try await source.copy(
          to: target,
          options: CopyOptions(
            snapshots: all ? [] : snapshots, progress: repoOptions.progressHandler(), retention: policy))
      }
    }
    if let policy {
      // The target's retention, as `forget` applies it, once the copy released its shared lock.
      let f = try await withLockedRepo(target, exclusive: true, wait: try repoOptions.lockWait()) {
        try await target.forget(policy: policy, prune: prune)
      }
      result.removed = f.removed
      result.packsDeleted = prune ? f.packsDeleted : nil
      result.addWarnings(f.retained.map { "retained by Object Lock, not deleted yet: \($0)" })
    }
    fill(&result, source)
    fill(&result, target)
    // The target's identity, for its pins in later copies (the source's is repositoryId and signingKey).
    result.targetRepositoryId = target.config.id
    result.targetSigningKey = target.config.publicKey
    result.targetRepository = target.store.location
    result.copied = r.copied.map { EngineResult.Copied(source: $0.source.hex, target: $0.target.hex) }
    result.skipped = r.skipped.map(\.hex)
    if policy != nil { result.expired = r.expired.map(\.hex) }
    result.snapshotId = r.copied.last?.target.hex
    result.files = r.files
    result.bytesRead = r.bytesRead
    result.bytesStored = r.bytesStored
    if r.bytes > 0 { result.dedupRatio = (max(0, 1 - Double(r.bytesRead) / Double(r.bytes)) * 10000).rounded() / 10000 }
    repoOptions.summary(Self.summary(r, removedFromTarget: policy == nil ? nil : result.removed?.count ?? 0))
  }
}
