import ArgumentParser
import BackupEngine
import Foundation
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// Distinct process exit codes (documented in docs/repository-format.md section 15).
public enum ExitCode {
  public static let success: Int32 = 0
  public static let other: Int32 = 1
  public static let usage: Int32 = 2
  public static let kms: Int32 = 3
  public static let storage: Int32 = 4
  public static let integrity: Int32 = 5
  public static let partial: Int32 = 6

  /// The exit code class of an error.
  public static func of(_ error: any Error) -> Int32 {
    switch error {
    case let e as EngineError:
      switch e {
      case .usage, .snapshotNotFound: return usage
      case .integrity, .unsupportedFormat: return integrity
      case .noSpace, .io: return storage
      case .locked, .failed: return other
      }
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

/// The one-line JSON result every command writes (stdout and --result-file).
public struct CommandResult: Codable, Sendable {
  public var command: String
  public var ok: Bool = true
  public var exitCode: Int32 = 0
  public var snapshotId: String?
  public var files: Int?
  public var bytesRead: Int64?
  public var bytesStored: Int64?
  public var dedupRatio: Double?
  public var durationSeconds: Double = 0
  public var errors: [String] = []
  public var warnings: [String] = []
  /// KMS unwrap calls of this run, per KMS URI (secrets stripped).
  public var keyUnwraps: [KeyUnwraps] = []
  public var keyWraps: Int = 0
  public var snapshots: [SnapshotSummary]?
  public var removed: [String]?
  public var packsDeleted: Int?
  /// `copy`: each snapshot copied (source id → target id).
  public var copied: [CopiedSnapshot]?
  /// `copy`: source snapshots skipped because the target already holds a copy.
  public var skipped: [String]?
  /// `copy` with retention: source snapshots not copied because the target's retention would remove them.
  public var expired: [String]?
  /// Partly used packs that prune rewrote.
  public var packsRepacked: Int?
  /// delete-repository: objects deleted and objects Object Lock kept.
  public var objectsDeleted: Int?
  public var objectsRetained: Int?
  /// rotate-keys: the KMS URL (no secrets) and KEK version now wrapping the keys.
  public var kms: String?
  public var keyVersion: String?
  /// Requests sent to the repositories' storage (HTTP attempts, retries included; object operations for a local
  /// directory).
  public var storageRequests: Int64?
  public init(command: String) { self.command = command }

  /// Adds the unwrap counts of one repository (or KMS) to `keyUnwraps`, merged by key and sorted.
  public mutating func addUnwraps(_ counts: [String: Int]) {
    var m = Dictionary(keyUnwraps.map { ($0.key, $0.count) }, uniquingKeysWith: +)
    for (k, v) in counts where v > 0 { m[k, default: 0] += v }
    keyUnwraps = m.keys.sorted().map { KeyUnwraps(key: $0, count: m[$0]!) }
  }
}

/// One entry of the result's `keyUnwraps`: a KMS key (its URI without secrets) and how often it unwrapped.
public struct KeyUnwraps: Codable, Sendable, Hashable {
  public var key: String
  public var count: Int
  public init(key: String, count: Int) {
    self.key = key
    self.count = count
  }
}

/// One snapshot copied by `copy`.
public struct CopiedSnapshot: Codable, Sendable, Hashable {
  public var source: String
  public var target: String
}

/// A snapshot as `snapshots --json` lists it.
public struct SnapshotSummary: Codable, Sendable {
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
}

/// Flags every repository command takes.
public struct RepoOptions: ParsableArguments {
  @Option(
    help:
      "Repository URL: file:///path, s3://bucket/prefix, gs://bucket/prefix, azblob://account/container/prefix (env BOTRT_REPO)."
  )
  var repo: String?
  @Option(
    help:
      "KMS URL: file:///path/key, vault-transit://host:port/mount/key, awskms://keyId?region=..., azurekv://VAULT.vault.azure.net/keys/NAME[/VERSION], gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K (env BOTRT_KMS)."
  )
  var kms: String?
  @Option(
    name: .customLong("s3-endpoint"),
    help: "S3 endpoint URL (env BOTRT_S3_ENDPOINT, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL).")
  var s3Endpoint: String?
  @Option(name: .customLong("s3-region"), help: "S3 region (env AWS_REGION, AWS_DEFAULT_REGION).")
  var s3Region: String?
  @Flag(name: .customLong("s3-path-style"), help: "Use path-style S3 URLs (env BOTRT_S3_PATH_STYLE=1).")
  var s3PathStyle = false
  @Option(
    name: .customLong("s3-sse"),
    help: "S3 server-side encryption on top of the client-side encryption: aws:kms or AES256 (env BOTRT_S3_SSE).")
  var s3SSE: String?
  @Option(
    name: .customLong("s3-sse-kms-key-id"),
    help: "KMS key id or ARN for --s3-sse aws:kms (env BOTRT_S3_SSE_KMS_KEY_ID).")
  var s3SSEKMSKeyId: String?
  @Option(name: .customLong("vault-token-file"), help: "File with the Vault token (else VAULT_TOKEN).")
  var vaultTokenFile: String?
  @Option(
    name: .customLong("kms-token-file"),
    help:
      "File with the access token for Azure Key Vault (else AZURE_ACCESS_TOKEN_FILE, AZURE_ACCESS_TOKEN) or Google Cloud KMS (else GOOGLE_OAUTH_ACCESS_TOKEN_FILE, GOOGLE_OAUTH_ACCESS_TOKEN)."
  )
  var kmsTokenFile: String?
  @Option(name: .customLong("vault-ca-file"), help: "PEM CA bundle for the Vault server (env VAULT_CACERT).")
  var vaultCAFile: String?
  @Option(
    name: .customLong("kms-endpoint"),
    help:
      "KMS endpoint override, e.g. in tests (else the KMS URL's ?endpoint=, then env BOTRT_AWSKMS_ENDPOINT, BOTRT_AZUREKV_ENDPOINT or BOTRT_GCPKMS_ENDPOINT)."
  )
  var kmsEndpoint: String?
  @Flag(help: "Print progress as JSON lines on stderr.")
  var json = false
  @Option(
    name: .customLong("result-file"),
    help: "Write the one-line JSON result here (default /dev/termination-log when it exists).")
  var resultFile: String?
  @Flag(name: .shortAndLong, help: "No progress output.")
  var quiet = false
  @Option(
    name: .customLong("retry-lock"),
    help:
      "When another process holds a conflicting lock, try again for up to this long, e.g. 30s, 10m, 1h (env BOTRT_RETRY_LOCK; default: fail at once)."
  )
  var retryLock: String?

  public init() {}

  public func validate() throws {
    do { _ = try lockWait() } catch let EngineError.usage(message) { throw ValidationError(message) }
  }

  /// How long to wait for a conflicting lock (`--retry-lock`), in seconds.
  func lockWait() throws -> TimeInterval {
    guard let v = retryLock ?? env["BOTRT_RETRY_LOCK"], !v.isEmpty, v != "0" else { return 0 }
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600]
    guard let u = v.last, let f = units[u], let n = Double(v.dropLast()), n >= 0, n.isFinite else {
      throw EngineError.usage("--retry-lock '\(v)' must be a number and a unit: s, m or h, e.g. 10m")
    }
    return n * f
  }

  var env: [String: String] { ProcessInfo.processInfo.environment }

  func repoURL() throws -> String {
    guard let r = repo ?? env["BOTRT_REPO"], !r.isEmpty else { throw EngineError.usage("--repo is required") }
    return r
  }

  func kmsURL() throws -> String {
    guard let k = kms ?? env["BOTRT_KMS"], !k.isEmpty else { throw EngineError.usage("--kms is required") }
    return k
  }

  func storeOptions() -> StoreOptions {
    let e = env
    let pathStyle = s3PathStyle || ["1", "true", "yes"].contains((e["BOTRT_S3_PATH_STYLE"] ?? "").lowercased())
    return StoreOptions(
      endpoint: s3Endpoint ?? e["BOTRT_S3_ENDPOINT"] ?? e["AWS_ENDPOINT_URL_S3"] ?? e["AWS_ENDPOINT_URL"],
      region: s3Region ?? e["AWS_REGION"] ?? e["AWS_DEFAULT_REGION"], pathStyle: pathStyle, environment: e,
      serverSideEncryption: s3SSE, sseKMSKeyId: s3SSEKMSKeyId)
  }

  func kmsOptions() -> KMSOptions {
    let e = env
    return KMSOptions(
      environment: e, tokenFile: vaultTokenFile, caFile: vaultCAFile ?? e["VAULT_CACERT"],
      endpoint: kmsEndpoint, accessTokenFile: kmsTokenFile)
  }

  func makeStore() throws -> any ObjectStore { try makeObjectStore(url: try repoURL(), options: storeOptions()) }
  func makeKMS(_ url: String? = nil) throws -> any KeyService {
    try makeKeyService(url: try url ?? kmsURL(), options: kmsOptions())
  }

  func logger() -> Logger {
    var l = Logger(label: "botrt-engine") { label in StreamLogHandler.standardError(label: label) }
    l.logLevel = .warning
    return l
  }

  /// Opens the repository.
  func open() async throws -> Repository {
    try await Repository.open(store: try makeStore(), keyService: try makeKMS(), logger: logger())
  }

  /// A progress printer: JSON lines, a TTY bar, or nothing.
  func progressHandler() -> ProgressHandler? {
    if quiet { return nil }
    if json {
      return { ev in
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        do { FileHandle.standardError.write(try e.encode(ev) + Data("\n".utf8)) } catch {
          FileHandle.standardError.write(Data("warning: progress not encodable: \(error)\n".utf8))
        }
      }
    }
    guard isatty(2) == 1 else { return nil }
    return { ev in
      let mb = Double(ev.bytesDone) / 1_048_576
      var line = "\r\(ev.phase): \(ev.files) files, \(String(format: "%.1f", mb)) MiB"
      if let t = ev.bytesTotal, t > 0 {
        let frac = min(1, Double(ev.bytesDone) / Double(t))
        let w = 30
        let filled = Int(frac * Double(w))
        line =
          "\r\(ev.phase) [" + String(repeating: "#", count: filled) + String(repeating: " ", count: w - filled)
          + "] \(Int(frac * 100))% \(String(format: "%.1f", mb)) MiB"
      }
      if ev.errors > 0 { line += ", \(ev.errors) errors" }
      FileHandle.standardError.write(Data((line + "\u{1B}[K").utf8))
    }
  }

  /// Where the result goes: the flag, else /dev/termination-log when it exists.
  func resultPath() -> String? {
    if let r = resultFile { return r }
    return FileManager.default.fileExists(atPath: "/dev/termination-log") ? "/dev/termination-log" : nil
  }
}
