import ArgumentParser
import BackupEngine
import CurlHTTP
import EngineContract
import Foundation
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// Distinct process exit codes: the contract's (`EngineExitCode`, documented in docs/repository-format.md section 15).
public enum ExitCode {
  public static let success = EngineExitCode.success
  public static let other = EngineExitCode.other
  public static let usage = EngineExitCode.usage
  public static let kms = EngineExitCode.kms
  public static let storage = EngineExitCode.storage
  public static let integrity = EngineExitCode.integrity
  public static let partial = EngineExitCode.partial
  public static let repositoryNotFound = EngineExitCode.repositoryNotFound
  public static let locked = EngineExitCode.locked
  public static let wrongKey = EngineExitCode.wrongKey

  /// The exit code class of an error.
  public static func of(_ error: any Error) -> Int32 {
    switch error {
    case let e as EngineError:
      switch e {
      case .usage, .snapshotNotFound: return usage
      case .integrity, .unsupportedFormat: return integrity
      case .noSpace, .io: return storage
      case .repositoryNotFound: return repositoryNotFound
      case .locked: return locked
      case .failed: return other
      }
    case KMSError.unwrapFailed: return wrongKey
    case is KMSError: return kms
    case is StorageError: return storage
    case is CryptoError, is FormatError: return integrity
    case is PartialBackupError: return partial
    default: return other
    }
  }
}

/// Thrown after a backup that stored a snapshot but could not read every source.
public struct PartialBackupError: Error, CustomStringConvertible {
  public var count: Int
  public var description: String { "backup finished but \(count) sources could not be read or changed while read" }
}

/// The one-line JSON result every command writes (stdout and --result-file): the contract's type, which the
/// controller decodes.
public typealias CommandResult = EngineResult

/// Flags every repository command takes.
public struct RepoOptions: ParsableArguments {
  @Option(
    name: [.customLong(EngineFlag.repo), .customShort("r")],
    help:
      "Repository URL: file:///path, s3://bucket/prefix, gs://bucket/prefix, azblob://account/container/prefix (env BOTRT_REPOSITORY or BOTRT_REPO)."
  )
  var repo: String?
  @Option(
    help:
      "KMS URL: file:///path/key, vault-transit://host:port/mount/key, awskms://keyId?region=..., azurekv://VAULT.vault.azure.net/keys/NAME[/VERSION], gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K (env BOTRT_KMS)."
  )
  var kms: String?
  @Option(
    name: .customLong(EngineFlag.s3Endpoint),
    help: "S3 endpoint URL (env BOTRT_S3_ENDPOINT, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL).")
  var s3Endpoint: String?
  @Option(name: .customLong(EngineFlag.s3Region), help: "S3 region (env AWS_REGION, AWS_DEFAULT_REGION).")
  var s3Region: String?
  @Flag(name: .customLong(EngineFlag.s3PathStyle), help: "Use path-style S3 URLs (env BOTRT_S3_PATH_STYLE=1).")
  var s3PathStyle = false
  @Option(
    name: .customLong(EngineFlag.s3SSE),
    help: "S3 server-side encryption on top of the client-side encryption: aws:kms or AES256 (env BOTRT_S3_SSE).")
  var s3SSE: String?
  @Option(
    name: .customLong(EngineFlag.s3SSEKMSKeyId),
    help: "KMS key id or ARN for --s3-sse aws:kms (env BOTRT_S3_SSE_KMS_KEY_ID).")
  var s3SSEKMSKeyId: String?
  @Option(
    name: .customLong(EngineFlag.vaultTokenFile),
    help:
      "File with the Vault token (else VAULT_TOKEN). A Vault Transit URL without a host (vault-transit:///mount/key) takes the server from VAULT_ADDR."
  )
  var vaultTokenFile: String?
  @Option(
    name: .customLong(EngineFlag.kmsTokenFile),
    help:
      "File with the access token for Azure Key Vault (else AZURE_ACCESS_TOKEN_FILE, AZURE_ACCESS_TOKEN) or Google Cloud KMS (else GOOGLE_OAUTH_ACCESS_TOKEN_FILE, GOOGLE_OAUTH_ACCESS_TOKEN)."
  )
  var kmsTokenFile: String?
  @Option(name: .customLong(EngineFlag.vaultCAFile), help: "PEM CA bundle for the Vault server (env VAULT_CACERT).")
  var vaultCAFile: String?
  @Option(
    name: .customLong(EngineFlag.caCert),
    help: ArgumentHelp(
      "PEM file of CA certificates trusted in addition to the system's for every HTTPS connection: storage and key "
        + "service (repeatable; env BOTRT_CACERT). --vault-ca-file still replaces the trust for Vault alone."))
  var caCert: [String] = []
  @Option(
    name: .customLong(EngineFlag.kmsEndpoint),
    help:
      "KMS endpoint override, e.g. in tests (else the KMS URL's ?endpoint=, then env BOTRT_AWSKMS_ENDPOINT, BOTRT_AZUREKV_ENDPOINT or BOTRT_GCPKMS_ENDPOINT)."
  )
  var kmsEndpoint: String?
  @Flag(
    name: .customLong(EngineFlag.json),
    help: ArgumentHelp(
      "Machine output: progress as JSON lines (message_type status; one per BOTRT_PROGRESS_FPS frame when set) and "
        + "the result line on stdout, nothing for people (restic's --json)."))
  var json = false
  @Option(
    name: .customLong(EngineFlag.resultFile),
    help: ArgumentHelp(
      "Write the one-line JSON result here (repeatable: to each file; default /dev/termination-log when it "
        + "exists)."))
  var resultFile: [String] = []
  @Flag(
    name: .shortAndLong,
    help: ArgumentHelp(
      "No progress and no summary (what ls, find, diff, stats and snapshots list is still printed); errors still go "
        + "to stderr. With --json: only the result line."))
  var quiet = false
  @Option(
    name: .customLong(EngineFlag.retryLock),
    help:
      "When another process holds a conflicting lock, try again for up to this long, e.g. 30s, 10m, 1h (env BOTRT_RETRY_LOCK; default: fail at once)."
  )
  var retryLock: String?
  @Option(
    name: .customLong(EngineFlag.expectRepositoryID),
    help: ArgumentHelp(
      "Refuse (exit 5) unless the repository has this id (32 hex digits; the result's repositoryId of an earlier "
        + "run): a repository replaced wholesale under the same location is not used."))
  var expectRepositoryID: String?
  @Option(
    name: .customLong(EngineFlag.expectSigningKey),
    help: ArgumentHelp(
      "Refuse (exit 5) unless the repository's config and key files are signed by this Ed25519 public key (64 hex "
        + "digits; the result's signingKey of an earlier run)."))
  var expectSigningKey: String?
  @Flag(
    name: .customLong(EngineFlag.readOnly),
    help: ArgumentHelp(
      "Change nothing in the repository: no lock object (only a check that no exclusive lock is held), the audit "
        + "lines go to stderr instead of audit/, and any write is refused (exit 4). For restore, verify, snapshots, "
        + "ls and the other reading commands of a cluster that must not write into another's repository."))
  var readOnly = false

  public init() {}

  public func validate() throws {
    do { _ = try lockWait() } catch let EngineError.usage(message) { throw ValidationError(message) }
    if let v = expectRepositoryID, v.count != 32 || Hex.decode(v) == nil {
      throw ValidationError("--\(EngineFlag.expectRepositoryID) '\(v)' must be 32 hex digits (a repository id)")
    }
    if let v = expectSigningKey, v.count != 64 || Hex.decode(v) == nil {
      throw ValidationError("--\(EngineFlag.expectSigningKey) '\(v)' must be 64 hex digits (an Ed25519 public key)")
    }
  }

  /// The pinned identity the repository must have.
  func expectation() -> RepositoryExpectation {
    RepositoryExpectation(repositoryID: expectRepositoryID, signingKey: expectSigningKey)
  }

  /// How long to wait for a conflicting lock (`--retry-lock`), in seconds: the contract's duration grammar (m is
  /// minutes, e.g. 30s, 11m, 1h30m), or 0.
  func lockWait() throws -> TimeInterval {
    guard let v = retryLock ?? env[EngineEnv.retryLock], !v.isEmpty, v != "0" else { return 0 }
    do { return TimeInterval(try EngineDuration.parseSeconds(v)) } catch {
      throw EngineError.usage("--retry-lock: \(error)")
    }
  }

  var env: [String: String] { ProcessInfo.processInfo.environment }

  func repoURL() throws -> String {
    if let r = repo, !r.isEmpty { return r }
    let e = env
    let fromEnv = [EngineEnv.repository, EngineEnv.repo].compactMap { n in e[n].flatMap { $0.isEmpty ? nil : (n, $0) } }
    if fromEnv.count == 2, fromEnv[0].1 != fromEnv[1].1 {
      throw EngineError.usage(
        "\(EngineEnv.repository) and \(EngineEnv.repo) name different repositories; set one, or give --repo")
    }
    guard let r = fromEnv.first?.1 else {
      throw EngineError.usage("--repo is required (or \(EngineEnv.repository) or \(EngineEnv.repo))")
    }
    return r
  }

  func kmsURL() throws -> String {
    guard let k = kms ?? env[EngineEnv.kms], !k.isEmpty else { throw EngineError.usage("--kms is required") }
    return k
  }

  /// The files of `--cacert` (else BOTRT_CACERT, paths separated by commas).
  var caCertFiles: [String] {
    if !caCert.isEmpty { return caCert }
    return (env[EngineEnv.caCert] ?? "").split(separator: ",").map(String.init).filter { !$0.isEmpty }
  }

  /// The certificates every HTTPS connection trusts when `--cacert` is given: the system's bundle and the files; nil
  /// without `--cacert` (libcurl's default). A file that cannot be read or holds no certificate is a usage error
  /// naming it.
  func trustedCAs() throws -> Data? {
    let files = caCertFiles
    guard !files.isEmpty else { return nil }
    var pem = CurlClient.systemCABundle() ?? Data()
    for f in files {
      guard let d = FileManager.default.contents(atPath: f) else {
        throw EngineError.usage(
          "--\(EngineFlag.caCert) \(f): the file cannot be read; give a PEM file of CA certificates")
      }
      guard String(decoding: d, as: UTF8.self).contains("-----BEGIN CERTIFICATE-----") else {
        throw EngineError.usage(
          "--\(EngineFlag.caCert) \(f): no PEM certificate (-----BEGIN CERTIFICATE-----) in the file; give a PEM file of CA "
            + "certificates")
      }
      if pem.last.map({ $0 != UInt8(ascii: "\n") }) ?? false { pem.append(UInt8(ascii: "\n")) }
      pem.append(d)
    }
    return pem
  }

  /// The HTTP client of the storage and key services: one that trusts `trustedCAs()`, or nil (each makes its own).
  /// The files are read when the command runs, not when its arguments are parsed.
  func httpClient() throws -> CurlClient? {
    guard let pem = try trustedCAs() else { return nil }
    return CurlClient(defaultCAPEM: pem)
  }

  func storeOptions() throws -> StoreOptions {
    let e = env
    let pathStyle = s3PathStyle || ["1", "true", "yes"].contains((e[EngineEnv.s3PathStyle] ?? "").lowercased())
    return StoreOptions(
      endpoint: s3Endpoint ?? e[EngineEnv.s3Endpoint] ?? e[EngineEnv.awsEndpointURLS3] ?? e[EngineEnv.awsEndpointURL],
      region: s3Region ?? e[EngineEnv.awsRegion] ?? e[EngineEnv.awsDefaultRegion], pathStyle: pathStyle, environment: e,
      httpClient: try httpClient(), serverSideEncryption: s3SSE, sseKMSKeyId: s3SSEKMSKeyId)
  }

  func kmsOptions() throws -> KMSOptions {
    let e = env
    return KMSOptions(
      environment: e, tokenFile: vaultTokenFile, caFile: vaultCAFile ?? e[EngineEnv.vaultCACert],
      endpoint: kmsEndpoint, httpClient: try httpClient(), accessTokenFile: kmsTokenFile)
  }

  func makeStore() throws -> any ObjectStore {
    let store = try makeObjectStore(url: try repoURL(), options: try storeOptions())
    return readOnly ? ReadOnlyStore(store) : store
  }
  func makeKMS(_ url: String? = nil) throws -> any KeyService {
    try makeKeyService(url: try url ?? kmsURL(), options: try kmsOptions())
  }

  func logger() -> Logger {
    var l = Logger(label: "botrt-engine") { label in StreamLogHandler.standardError(label: label) }
    l.logLevel = .warning
    return l
  }

  /// Opens the repository.
  func open() async throws -> Repository {
    try await Repository.open(
      store: try makeStore(), keyService: try makeKMS(), logger: logger(), expect: expectation())
  }

  /// A progress printer: JSON lines, a status line on a terminal, or nothing. With `--json` the lines go to stdout
  /// before the result line, as restic's (`"message_type": "status"`), unless stdout carries data
  /// (`restore --stdout`): then stderr. Without `--json`, when stdout is a terminal, one status line updated in place
  /// (`ProgressLine`); when stdout is a pipe or a file, nothing unless `BOTRT_PROGRESS_FPS` is set (as restic's
  /// RESTIC_PROGRESS_FPS): then a plain line per update at that rate. Nothing with `--quiet`.
  func progressHandler(dataOnStdout: Bool = false) -> ProgressHandler? {
    if quiet { return nil }
    if json {
      let out = dataOnStdout ? FileHandle.standardError : FileHandle.standardOutput
      // Every event (at most every 0.5 s), or at the rate BOTRT_PROGRESS_FPS sets (a Job's: one line every 5 s).
      let line = JSONProgress(interval: ProgressLine.progressFPS(env[EngineEnv.progressFPS]).map { 1 / $0 } ?? 0)
      return { ev in
        guard let data = line.encode(ev) else { return }
        out.write(data)
      }
    }
    // People watching a terminal get restic's updating status line on stdout; a pipe or file gets none.
    guard !dataOnStdout else { return nil }
    if isatty(1) == 1 { return { ev in ProgressLine.shared.update(ev) } }
    // A pipe or a file gets plain lines only when asked for, at the rate asked for.
    guard let fps = ProgressLine.progressFPS(env[EngineEnv.progressFPS]) else { return nil }
    let plain = ProgressLine(interval: 1 / fps, plain: true)
    return { ev in plain.update(ev) }
  }

  /// Where the result goes: the flag's files, else /dev/termination-log when it exists.
  func resultPaths() -> [String] {
    if !resultFile.isEmpty { return resultFile }
    return FileManager.default.fileExists(atPath: "/dev/termination-log") ? ["/dev/termination-log"] : []
  }
}
