import EngineContract
import Foundation
import Logging

/// Object Lock settings recorded in the config.
public struct ObjectLockConfig: Codable, Sendable, Hashable {
  public var mode: ObjectRetention.Mode
  public var days: Int
  public init(mode: ObjectRetention.Mode, days: Int) {
    self.mode = mode
    self.days = days
  }
  /// Parses "compliance:DAYS" or "governance:DAYS".
  public static func parse(_ s: String) throws -> ObjectLockConfig {
    let parts = s.split(separator: ":")
    guard parts.count == 2, let days = Int(parts[1]), days > 0 else {
      throw EngineError.usage("--object-lock '\(s)' must be compliance:DAYS or governance:DAYS, e.g. compliance:30")
    }
    switch parts[0].lowercased() {
    case "compliance": return ObjectLockConfig(mode: .compliance, days: days)
    case "governance": return ObjectLockConfig(mode: .governance, days: days)
    default: throw EngineError.usage("--object-lock mode '\(parts[0])' must be compliance or governance")
    }
  }
}

/// The repository config body (section 12 of docs/repository-format.md).
public struct RepoConfig: Codable, Sendable {
  /// Chunker settings as stored.
  public struct ChunkerConfig: Codable, Sendable {
    public var algorithm: String
    public var min: Int
    public var avg: Int
    public var max: Int
  }
  public var version: Int
  public var id: String
  public var created: String
  public var chunker: ChunkerConfig
  public var compression: String
  public var packSize: Int
  public var objectLock: ObjectLockConfig?
  public var kms: String
  public var publicKey: String
  /// How key files are authenticated: `KeyFile.signedScheme` when every key file must carry a valid signature
  /// (repositories created or upgraded by this version); absent in older repositories, whose unsigned key files are
  /// accepted until the first backup upgrades them (section 2 of docs/repository-format.md).
  public var keyFiles: String?
  /// `DeletionRecord.scheme` when this engine records its deletions (repositories created or upgraded by this
  /// version): only then do listings include objects a delete marker hides that no record names. Absent in older
  /// repositories, whose own forget and prune left delete markers without records, until a backup upgrades them
  /// (`upgradeDeletionRecords`).
  public var deletionRecords: String?
}

/// The key file (section 2).
struct KeyFile: Codable, Sendable {
  var version: Int
  var repo: String
  var created: String
  var kms: String
  var publicKey: String
  var keys: [String: WrappedKey]
  /// Hex Ed25519 signature with the repository's signing key over `"botrt-keyfile-v1" || body`, where body is the
  /// canonical JSON of the key file without this field. Absent in key files written before key files were signed.
  var signature: String?

  /// The value of `RepoConfig.keyFiles` in a repository whose key files must all be signed.
  static let signedScheme = "ed25519-signed-v1"

  /// The bytes the signature covers: the domain tag and the canonical JSON without `signature`.
  func signedBytes() throws -> [UInt8] {
    var body = self
    body.signature = nil
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return Array("botrt-keyfile-v1".utf8) + [UInt8](try e.encode(body))
  }

  /// This key file signed with `signingKey`.
  func signed(with signingKey: [UInt8]) throws -> KeyFile {
    var s = self
    s.signature = Hex.encode(try Ed25519.sign(try signedBytes(), privateKey: signingKey))
    return s
  }

  /// Whether the signature is present and valid under `publicKey`.
  func hasValidSignature(publicKey: [UInt8]) -> Bool {
    guard let sig = signature.flatMap(Hex.decode), let bytes = try? signedBytes() else { return false }
    return Ed25519.verify(bytes, signature: sig, publicKey: publicKey)
  }

  /// The canonical encoding stored under keys/.
  func encoded() throws -> Data {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return try e.encode(self)
  }
}

/// What the caller expects of the repository it opens (`--expect-repository-id`, `--expect-signing-key`): pinned
/// values, e.g. recorded by the controller when the repository was created, so a repository replaced wholesale
/// (another config and key files under the same location) is refused before any key is used.
public struct RepositoryExpectation: Sendable, Hashable {
  /// The repository id (32 hex digits), or nil.
  public var repositoryID: String?
  /// The Ed25519 public key (64 hex digits) that signs the config, key files and manifests, or nil.
  public var signingKey: String?
  public init(repositoryID: String? = nil, signingKey: String? = nil) {
    self.repositoryID = repositoryID?.lowercased()
    self.signingKey = signingKey?.lowercased()
  }
  public static let none = RepositoryExpectation()
}

/// The format version this build reads and writes.
public let repositoryFormatVersion = 1

/// An open repository: store, config and unwrapped keys (in memory only).
public final class Repository: @unchecked Sendable {
  public let store: any ObjectStore
  public internal(set) var config: RepoConfig
  let repoID: [UInt8]
  let keyService: any KeyService
  private let keyState = Locked<(keys: [String: [UInt8]], wrapped: [String: WrappedKey])>((keys: [:], wrapped: [:]))
  private(set) var keyFileName: String
  /// The key file in use, e.g. "keys/ab12...".
  public var keyFile: String { keyFileName }
  /// Whether the key file in use is signed (false only in an older repository not yet upgraded).
  var keyFileSigned = true
  private let warningState = Locked<[String]>([])
  /// Packs read whole because a blob in them failed its checks (see `verifiedPack`).
  let verifiedPackCache = Locked<[ID: Data]>([:])
  /// Packs no stored version of which matches their name (so a restore reads each such pack whole only once).
  let unverifiablePacks = Locked<Set<ID>>([])
  /// The keys the signed deletion records name, once read (see `engineDeletions`).
  let deletionState = Locked<Set<String>?>(nil)
  /// Problems the run passed over (refused key files, skipped manifests and index files, damaged current versions
  /// of content-addressed objects), each naming the object, at most `maxWarnings` of them plus a count of the rest.
  public var warnings: [String] {
    warningState.with { w in
      w.count <= Self.maxWarnings ? w : Array(w.prefix(Self.maxWarnings)) + ["and \(w.count - Self.maxWarnings) more"]
    }
  }
  /// The result goes to a termination message of at most 4 KiB; a store full of planted junk must not overflow it.
  public static let maxWarnings = 8
  /// Every warning of the run, uncapped.
  public var allWarnings: [String] { warningState.with { $0 } }
  /// Records problems passed over (see `warnings`); duplicates are dropped.
  public func addWarnings(_ ws: [String]) {
    warningState.with { w in for x in ws where !w.contains(x) { w.append(x) } }
  }
  /// Number of KMS unwrap calls made by this process.
  public var unwrapCount: Int { counters.with { $0.unwraps } }
  /// Number of KMS wrap calls made by this process.
  public var wrapCount: Int { counters.with { $0.wraps } }
  /// KMS unwrap calls made by this process, by KMS URI (secrets stripped, see `KMSURI.redact`).
  public var unwrapsByKMS: [String: Int] { counters.with { $0.byKMS } }
  let counters = Locked((unwraps: 0, wraps: 0, byKMS: [String: Int]()))
  let chunker: Chunker
  let macRoot: [UInt8]
  /// Per-key-type MAC keys for blob ids.
  let macKeys: [KeyType: Crypto.HMACKey]
  let signingKey: [UInt8]
  let publicKey: [UInt8]
  let metaKey: [UInt8]
  public let audit: AuditLog
  let logger: Logger

  private init(
    store: any ObjectStore, config: RepoConfig, keyService: any KeyService, keyFileName: String,
    wrapped: [String: WrappedKey], unwrapped: [String: [UInt8]], audit: AuditLog, logger: Logger
  ) throws {
    self.store = store
    self.config = config
    repoID = Hex.decode(config.id) ?? []
    self.keyService = keyService
    self.keyFileName = keyFileName
    keyState.with {
      $0.keys = unwrapped
      $0.wrapped = wrapped
    }
    chunker = Chunker(
      secret: unwrapped["chunker"]!,
      parameters: ChunkerParameters(min: config.chunker.min, avg: config.chunker.avg, max: config.chunker.max))
    macRoot = unwrapped["mac"]!
    var mk: [KeyType: Crypto.HMACKey] = [:]
    for t in KeyType.allCases {
      mk[t] = Crypto.HMACKey(Crypto.hmacSHA256(key: unwrapped["mac"]!, Array("botrt-mac-\(t.name)".utf8)))
    }
    macKeys = mk
    signingKey = unwrapped["signing"]!
    metaKey = unwrapped["meta"]!
    publicKey = try Ed25519.publicKey(privateKey: signingKey)
    self.audit = audit
    self.logger = logger
  }

  static let keyNames = ["meta", "mac", "chunker", "signing", "files", "database", "logs"]

  static func context(_ repo: String, _ name: String) -> String { "botrt:\(repo):\(name)" }

  static func now() -> String { Manifest.formatTime(Date()) }

  static func signConfig(_ body: [UInt8], key: [UInt8]) throws -> [UInt8] {
    try Ed25519.sign(Array("botrt-config-v1".utf8) + body, privateKey: key)
  }

  static func encodeConfig(_ c: RepoConfig, signingKey: [UInt8]) throws -> Data {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let body = [UInt8](try e.encode(c))
    let sig = try signConfig(body, key: signingKey)
    return Data(body + Array("\n".utf8) + Array(Hex.encode(sig).utf8) + Array("\n".utf8))
  }

  /// Creates a new repository; fails if one exists.
  public static func initialize(
    store: any ObjectStore, keyService: any KeyService, objectLock: ObjectLockConfig?, logger: Logger
  ) async throws -> Repository {
    if try await store.head("config") != nil {
      throw EngineError.usage("a repository already exists at \(store.location)")
    }
    // A config a delete marker hides (a plain delete with the storage credentials) is still a repository: a new one
    // must not be created over its retained snapshots.
    if let v = try await store.versions(of: "config").first {
      throw EngineError.usage(
        "a repository exists at \(store.location), \(store.deletedButKept) (its config version \(v) is stored): it is "
          + "opened from that version; make it current again instead of creating a new repository")
    }
    if objectLock != nil && !store.supportsRetention {
      throw EngineError.usage("--object-lock needs a store with Object Lock (S3); \(store.location) has none")
    }
    let repoHex = Hex.encode(Crypto.randomBytes(16))
    var plain: [String: [UInt8]] = [:]
    for n in keyNames { plain[n] = Crypto.randomBytes(32) }
    let pub = try Ed25519.publicKey(privateKey: plain["signing"]!)
    var wrapped: [String: WrappedKey] = [:]
    for n in keyNames { wrapped[n] = try await keyService.wrap(plain[n]!, context: context(repoHex, n)) }
    let audit = AuditLog(store: store, retention: nil)
    let config = RepoConfig(
      version: repositoryFormatVersion, id: repoHex, created: now(),
      chunker: .init(
        algorithm: "fastcdc-gear-keyed", min: ChunkerParameters.default.min, avg: ChunkerParameters.default.avg,
        max: ChunkerParameters.default.max),
      compression: "zstd-3", packSize: 8 << 20, objectLock: objectLock, kms: keyService.descriptor,
      publicKey: Hex.encode(pub), keyFiles: KeyFile.signedScheme, deletionRecords: DeletionRecord.scheme)
    let kf = try KeyFile(
      version: 1, repo: repoHex, created: now(), kms: keyService.descriptor, publicKey: Hex.encode(pub), keys: wrapped
    ).signed(with: plain["signing"]!)
    let kname = "keys/" + Hex.encode(Crypto.randomBytes(16))
    // With Object Lock the key file and config are retained like data (section 11): without them no locked
    // snapshot could be read, so they must not be deletable with the backup's own credentials.
    let locked = PutOptions(retention: Self.retention(objectLock))
    try await store.create(kname, data: try kf.encoded(), options: locked)
    do {
      try await store.create("config", data: try encodeConfig(config, signingKey: plain["signing"]!), options: locked)
    } catch StorageError.alreadyExists(let key) {
      // Another run created the repository first (two runs of a new policy racing): our key file belongs to a
      // repository that does not exist; remove it so that only the winner's key file remains.
      do { try await store.delete(kname) } catch {
        logger.warning(
          "could not remove the unused key file \(kname) after losing the race to create the repository: \(error)")
      }
      throw StorageError.alreadyExists(key: key)
    }
    let repo = try Repository(
      store: store, config: config, keyService: keyService, keyFileName: kname, wrapped: wrapped, unwrapped: plain,
      audit: audit, logger: logger)
    repo.counters.with { $0.wraps = keyNames.count }
    repo.audit.retention = repo.retention()
    repo.audit.record(
      "created",
      details: [
        "repo": repoHex, "kms": keyService.descriptor,
        "objectLock": objectLock.map { "\($0.mode.rawValue):\($0.days)" } ?? "none",
      ])
    return repo
  }

  /// Opens a repository: checks the format version, the pinned identity (`expect`), the config signature, and each key
  /// file's signature before any of its keys is unwrapped (section 2 of docs/repository-format.md). Key files that
  /// fail a check are refused, named in `warnings`, and never used; the repository opens with a good one.
  public static func open(
    store: any ObjectStore, keyService: any KeyService, logger: Logger, expect: RepositoryExpectation = .none
  ) async throws -> Repository {
    let raw: Data
    // Objects read from behind a delete marker (on a versioned store), named in the warnings of the opened repository.
    var hiddenWarnings: [String] = []
    do { raw = try await store.get("config") } catch StorageError.notFound {
      guard let (r, w) = try await hiddenConfig(store, expect: expect) else {
        throw EngineError.repositoryNotFound(store.location)
      }
      raw = r
      hiddenWarnings.append(w)
    }
    let (config, configPub) = try readConfig(raw, location: store.location, expect: expect)
    // Find a key file that this KEK can unwrap.
    let keyObjs = try await store.list(prefix: "keys/").sorted { $0.key < $1.key }
    var lastError: (any Error)?
    var unwraps = 0
    // Every unwrap attempt (key name, key version, outcome), audited once the repository is open.
    var attempts: [(name: String, version: String?, outcome: String, keyFile: String)] = []
    // Key files refused before any unwrap (not a key file, another repository, another signing key, unsigned where
    // signatures are required, a bad signature): an attacker with write access to the storage may plant them.
    var refused: [(key: String, reason: String)] = []
    // Several key files exist after a rotation whose old key files Object Lock still retains: try first those
    // made for the config's KMS and for this key service, newest first. An old key file of another KEK then
    // neither hides the current one nor breaks opening; one this KEK can unwrap still opens the repository.
    var candidates: [(key: String, file: KeyFile)] = []
    for ko in keyObjs {
      let bytes: Data
      do { bytes = try await store.get(ko.key) } catch StorageError.notFound {
        continue  // deleted since the listing (a rotation or a lost race); not an error
      }
      switch checkKeyFile(bytes, config: config, configPublicKey: configPub) {
      case .success(let kf): candidates.append((ko.key, kf))
      case .failure(let r): refused.append((ko.key, r.reason))
      }
    }
    // Key files a delete marker hides, read from their newest stored version, come last: they are tried only when
    // no listed key file opens the repository (an attacker hid the genuine ones). Those refused are not reported: a
    // rotation or an upgrade to signed key files hides the key files it replaced.
    var hiddenVersions: [String: String] = [:]
    for h in try await hiddenKeyFiles(store) {
      if case .success(let kf) = checkKeyFile(h.bytes, config: config, configPublicKey: configPub) {
        candidates.append((h.key, kf))
        hiddenVersions[h.key] = h.version
      }
    }
    guard !keyObjs.isEmpty || !candidates.isEmpty else {
      throw EngineError.integrity(object: "keys/", message: "no key file in the repository")
    }
    func rank(_ k: String, _ f: KeyFile) -> Int {
      (hiddenVersions[k] == nil ? 0 : 8) + (f.signature == nil ? 4 : 0) + (f.kms == keyService.descriptor ? 0 : 2)
        + (f.kms == config.kms ? 0 : 1)
    }
    candidates.sort {
      (rank($0.key, $0.file), Manifest.parseTime($1.file.created) ?? .distantPast, $0.key)
        < (rank($1.key, $1.file), Manifest.parseTime($0.file.created) ?? .distantPast, $1.key)
    }
    let refusedWarnings = refused.map {
      "key file \($0.key) refused and not used: \($0.reason); if nobody you trust wrote it, it was planted by someone "
        + "with write access to the storage: check who wrote it, then remove it"
    }
    for w in refusedWarnings { logger.warning("\(w)") }
    for (key, kf) in candidates {
      var plain: [String: [UInt8]] = [:]
      do {
        for n in ["meta", "mac", "chunker", "signing"] {
          guard let w = kf.keys[n] else { throw EngineError.integrity(object: key, message: "key \(n) missing") }
          unwraps += 1
          KeyUnwrapLedger.add(KMSURI.redact(keyService.descriptor))
          let k: [UInt8]
          do { k = try await keyService.unwrap(w, context: context(config.id, n)) } catch {
            attempts.append((n, w.keyVersion, "failure", key))
            throw error
          }
          attempts.append((n, w.keyVersion, "success", key))
          guard k.count == 32 else {
            throw EngineError.integrity(object: key, message: "key \(n) has \(k.count) bytes")
          }
          plain[n] = k
        }
      } catch KMSError.unwrapFailed(let kms, let m) {
        lastError = KMSError.unwrapFailed(kms: kms, message: "\(key): \(m)")
        continue
      } catch let e as KMSError where kf.kms != keyService.descriptor {
        // A key file of another KMS (an old one a rotation kept, or one a rotation to a foreign key wrote): this
        // key service may fail on it in any way; try the next one.
        if lastError == nil { lastError = e }
        continue
      }
      let pub = try Ed25519.publicKey(privateKey: plain["signing"]!)
      guard pub == configPub else {
        throw EngineError.integrity(object: key, message: "signing key does not match the recorded public key")
      }
      let audit = AuditLog(store: store, retention: nil)
      let repo = try Repository(
        store: store, config: config, keyService: keyService, keyFileName: key, wrapped: kf.keys, unwrapped: plain,
        audit: audit, logger: logger)
      repo.keyFileSigned = kf.signature != nil
      repo.addWarnings(hiddenWarnings + refusedWarnings)
      if let v = hiddenVersions[key] {
        repo.addWarnings([
          "key file \(key) is \(store.deletedButKept) (deleted with the storage credentials, not by this "
            + "engine): opened with its newest stored version \(v), whose signature is valid; make that version "
            + "current again"
        ])
      }
      let kmsKey = KMSURI.redact(keyService.descriptor)
      repo.counters.with {
        $0.unwraps = unwraps
        $0.byKMS[kmsKey] = unwraps
      }
      audit.retention = repo.retention()
      for a in attempts {
        repo.recordUnwrap(kms: kmsKey, name: a.name, version: a.version, outcome: a.outcome, keyFile: a.keyFile)
      }
      for r in refused { audit.record("refused", outcome: "failure", details: ["keyFile": r.key, "reason": r.reason]) }
      return repo
    }
    if lastError == nil, let f = refused.first {
      // Every key file was refused: config or key files were replaced, or only planted ones are left.
      let others = refused.dropFirst().map(\.key)
      throw EngineError.integrity(
        object: f.key,
        message:
          f.reason + (others.isEmpty ? "" : "; also refused: \(others.joined(separator: ", "))")
          + "; no key file of this repository is left that passes its checks")
    }
    throw lastError ?? KMSError.unwrapFailed(kms: keyService.descriptor, message: "no key file could be unwrapped")
  }

  /// The checks `open` makes of the config object before anything else is read: a body line and a signature line,
  /// the format version, the JSON, the pinned identity (`expect`), the public key, the signature over the body, and
  /// the key file scheme. Returns the config and its signing key. Pure (botrt-fuzz's `config` target calls it).
  public static func readConfig(
    _ raw: Data, location: String, expect: RepositoryExpectation = .none
  ) throws -> (config: RepoConfig, publicKey: [UInt8]) {
    let lines = raw.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
    guard lines.count >= 2 else {
      throw EngineError.integrity(object: "config", message: "malformed config (expected body and signature lines)")
    }
    let body = Data(lines[0])
    struct VersionOnly: Decodable { var version: Int }
    let version: Int
    do { version = try JSONDecoder().decode(VersionOnly.self, from: body).version } catch {
      throw EngineError.integrity(object: "config", message: "config is not valid JSON with a version field")
    }
    guard version == repositoryFormatVersion else {
      throw EngineError.unsupportedFormat(
        "repository \(location) has format version \(version); this botrt-engine supports only version "
          + "\(repositoryFormatVersion); use a botrt-engine release that supports it")
    }
    let config: RepoConfig
    do { config = try JSONDecoder().decode(RepoConfig.self, from: body) } catch {
      throw EngineError.integrity(object: "config", message: "config is malformed: \(error)")
    }
    if let want = expect.repositoryID, want != config.id.lowercased() {
      throw EngineError.integrity(
        object: "config",
        message:
          "config names repository \(config.id), but repository \(want) was expected (pinned when it was created): "
          + "the repository at \(location) was replaced or the location is wrong; nothing was read or written")
    }
    if let want = expect.signingKey, want != config.publicKey.lowercased() {
      throw EngineError.integrity(
        object: "config",
        message:
          "config's signing key \(config.publicKey.prefix(16))... is not the expected \(want.prefix(16))... (pinned "
          + "when the repository was created): config and key files were replaced; nothing was read or written")
    }
    guard let configPub = Hex.decode(config.publicKey), configPub.count == 32 else {
      throw EngineError.integrity(object: "config", message: "config's publicKey is not a 32-byte hex Ed25519 key")
    }
    guard let sig = Hex.decode(String(decoding: lines[1], as: UTF8.self)),
      Ed25519.verify(Array("botrt-config-v1".utf8) + [UInt8](body), signature: sig, publicKey: configPub)
    else {
      throw EngineError.integrity(object: "config", message: "config signature is invalid (config was modified)")
    }
    // What opening and writing make of the numbers (found by botrt-fuzz's `config` target): the chunker's gear shift
    // is derived from avg (from 2^62 on its loop never ends), a negative min reads before the buffer, a max of 0 cuts
    // empty chunks forever, and a backup allocates 2 × max and about packSize up front.
    let c = config.chunker
    guard Self.chunkerBounds.contains(c.min), Self.chunkerBounds.contains(c.avg), Self.chunkerBounds.contains(c.max),
      c.min <= c.avg, c.avg <= c.max
    else {
      throw EngineError.integrity(
        object: "config",
        message:
          "config's chunker sizes min \(c.min), avg \(c.avg), max \(c.max) are not 64 B <= min <= avg <= max <= 64 MiB")
    }
    guard Self.packSizeBounds.contains(config.packSize) else {
      throw EngineError.integrity(
        object: "config", message: "config's packSize \(config.packSize) is not between 4 KiB and 1 GiB")
    }
    if let k = config.keyFiles, k != KeyFile.signedScheme {
      throw EngineError.unsupportedFormat(
        "repository \(location) authenticates key files with '\(k)', which this botrt-engine does not know; "
          + "use a botrt-engine release that supports it")
    }
    return (config, configPub)
  }

  /// The chunk sizes a config may name (this version writes 512 KiB, 1 MiB, 8 MiB).
  static let chunkerBounds = 64...(64 << 20)
  /// The pack sizes a config may name (this version writes 8 MiB; a pack's offsets are 32-bit).
  static let packSizeBounds = (4 << 10)...(1 << 30)

  /// Why `open` refuses a key file (before any of its keys is unwrapped).
  struct KeyFileRefused: Error {
    var reason: String
  }

  /// The checks `open` makes of one key file before any of its keys is unwrapped: JSON, repository, signing key,
  /// signature (required when the config says so). An attacker with write access to the storage may plant key files.
  static func checkKeyFile(
    _ bytes: Data, config: RepoConfig, configPublicKey: [UInt8]
  ) -> Result<KeyFile, KeyFileRefused> {
    let kf: KeyFile
    do { kf = try JSONDecoder().decode(KeyFile.self, from: bytes) } catch {
      return .failure(.init(reason: "not a key file (malformed JSON)"))
    }
    if kf.repo != config.id {
      return .failure(
        .init(
          reason: "key file is for repository \(kf.repo), but config names repository \(config.id) "
            + "(config or key file copied from another repository)"))
    }
    if kf.publicKey.lowercased() != config.publicKey.lowercased() {
      return .failure(.init(reason: "key file names another signing key than the config (planted or copied)"))
    }
    if kf.signature != nil {
      guard kf.hasValidSignature(publicKey: configPublicKey) else {
        return .failure(.init(reason: "key file signature is invalid (planted or modified key file)"))
      }
    } else if config.keyFiles == KeyFile.signedScheme {
      return .failure(
        .init(reason: "key file is not signed, but this repository's key files are signed (planted key file)"))
    }
    return .success(kf)  // signed, or an older repository's unsigned key file (until its upgrade)
  }

  /// `checkKeyFile` for callers outside the engine (botrt-fuzz's `keyfile` target): the wrapped keys of a key file
  /// `open` would try, or why it refuses the file.
  public static func acceptedKeyFile(
    _ bytes: Data, config: RepoConfig, configPublicKey: [UInt8]
  ) -> Result<[String: WrappedKey], any Error> {
    checkKeyFile(bytes, config: config, configPublicKey: configPublicKey).map(\.keys).mapError { $0 }
  }

  /// The plaintext key named `n` (a data key is unwrapped on first use).
  func key(_ n: String) async throws -> [UInt8] {
    if let k = keyState.with({ $0.keys[n] }) { return k }
    guard let w = keyState.with({ $0.wrapped[n] }) else {
      throw EngineError.integrity(object: keyFileName, message: "key \(n) missing")
    }
    let k: [UInt8]
    do { k = try await unwrapCounted(keyService, w, name: n) } catch KMSError.unwrapFailed(let kms, let m) {
      // Name the key file: a data key wrapped for another repository or key fails here, not at open.
      throw KMSError.unwrapFailed(kms: kms, message: "\(keyFileName), data key \"\(n)\": \(m)")
    }
    guard k.count == 32 else {
      throw EngineError.integrity(object: keyFileName, message: "key \(n) has \(k.count) bytes")
    }
    keyState.with { $0.keys[n] = k }
    return k
  }

  /// Unwraps `w` through `service`, counting the call by KMS and recording one audit line (never key material).
  func unwrapCounted(
    _ service: any KeyService, _ w: WrappedKey, name: String, keyFile: String? = nil
  ) async throws -> [UInt8] {
    let kmsKey = KMSURI.redact(service.descriptor)
    counters.with {
      $0.unwraps += 1
      $0.byKMS[kmsKey, default: 0] += 1
    }
    KeyUnwrapLedger.add(kmsKey)
    do {
      let k = try await service.unwrap(w, context: Self.context(config.id, name))
      recordUnwrap(kms: kmsKey, name: name, version: w.keyVersion, outcome: "success", keyFile: keyFile ?? keyFileName)
      return k
    } catch {
      recordUnwrap(kms: kmsKey, name: name, version: w.keyVersion, outcome: "failure", keyFile: keyFile ?? keyFileName)
      throw error
    }
  }

  /// One audit line per KMS unwrap: which key (by name), which KMS, which KEK version, the outcome.
  func recordUnwrap(kms: String, name: String, version: String?, outcome: String, keyFile: String) {
    var d = ["key": name, "kms": kms, "keyFile": keyFile]
    if let version { d["keyVersion"] = version }
    audit.record("unwrapped", outcome: outcome, details: d)
  }

  /// Keys for every key type, unwrapping the requested data types.
  func keys(for types: Set<KeyType>) async throws -> [KeyType: [UInt8]] {
    var out: [KeyType: [UInt8]] = [.meta: metaKey]
    for t in types where t != .meta { out[t] = try await key(t.name) }
    return out
  }

  /// The per-key-type MAC key for blob ids.
  func macKey(_ t: KeyType) -> Crypto.HMACKey { macKeys[t]! }

  /// The retention to put on packs, index, manifests, audit objects, the config and key files, if Object Lock is
  /// configured.
  func retention(from now: Date = Date()) -> ObjectRetention? { Self.retention(config.objectLock, from: now) }

  static func retention(_ objectLock: ObjectLockConfig?, from now: Date = Date()) -> ObjectRetention? {
    guard let ol = objectLock else { return nil }
    return ObjectRetention(mode: ol.mode, retainUntil: now.addingTimeInterval(TimeInterval(ol.days) * 86400))
  }

  /// Extends the retention of the config and of the key file in use to `r`, as a backup does for its packs: the
  /// locked snapshots stay readable for as long as they are retained.
  func extendKeyRetention(to r: ObjectRetention) async throws {
    guard store.supportsRetention else { return }
    try await store.extendRetention("config", to: r)
    try await store.extendRetention(keyFileName, to: r)
  }

  func putOptions() -> PutOptions { PutOptions(retention: retention()) }

  /// Stores a content-addressed object and returns its id.
  func putContentAddressed(prefix: String, bytes: [UInt8]) async throws -> ID {
    let id = ID(Crypto.sha256(bytes))
    try await store.put(prefix + id.hex, data: Data(bytes), options: putOptions())
    return id
  }

  /// Reads a content-addressed object and checks that its name is the SHA-256 of its bytes. When the current version
  /// does not match (the object was overwritten) and the store keeps versions, the newest older version that matches
  /// is read instead, with a warning naming the object.
  func getContentAddressed(_ key: String) async throws -> [UInt8] {
    let d: [UInt8]
    let name = String(key.split(separator: "/").last ?? "")
    do { d = [UInt8](try await store.get(key)) } catch StorageError.notFound {
      // A delete marker hides it (a plain delete with the storage credentials): its stored version that matches.
      if let id = ID(hex: name), let good = try await matchingVersion(key, id: id, hidden: true) {
        return [UInt8](good)
      }
      throw EngineError.integrity(object: key, message: "object is missing")
    }
    guard Hex.encode(Crypto.sha256(d)) == name else {
      if let id = ID(hex: name), let good = try await matchingVersion(key, id: id) { return [UInt8](good) }
      throw EngineError.integrity(
        object: key, message: "content does not match its name (damaged, truncated, or a replayed/renamed object)")
    }
    return d
  }

  /// The newest stored version of the content-addressed object `key` whose SHA-256 is `id`, or nil when the store
  /// keeps no versions or none matches. A found version is named in `warnings`: the current one was overwritten.
  /// With `hidden`, the object has no current version (a delete marker hides it) and the warning says so.
  func matchingVersion(_ key: String, id: ID, hidden: Bool = false) async throws -> Data? {
    let versions: [String]
    do { versions = try await store.versions(of: key) } catch StorageError.accessDenied(_, let m) {
      addWarnings(["\(key) is damaged and its older versions cannot be listed (access denied: \(m))"])
      return nil
    }
    for v in versions {
      let d: Data
      do { d = try await store.get(key, version: v) } catch StorageError.notFound {
        continue
      } catch StorageError.accessDenied(_, let m) {
        addWarnings(["\(key) is damaged and its older versions cannot be read (access denied: \(m))"])
        return nil
      }
      if Crypto.sha256([UInt8](d)) == id.bytes {
        addWarnings([
          hidden
            ? "\(key) is \(store.deletedButKept) (deleted with the storage credentials, not by this engine); "
              + "read its stored version \(v), which matches its name"
            : "\(key): the current version does not match its name (overwritten or damaged); read the older version "
              + "\(v), which does"
        ])
        return d
      }
    }
    return nil
  }

  /// The whole pack `id` in a version that matches its name, for a read whose blob failed its checks: the current
  /// version when it matches after all, else an older one (`matchingVersion`). Nil when no stored version matches.
  func verifiedPack(_ id: ID) async throws -> Data? {
    if let d = verifiedPackCache.with({ $0[id] }) { return d }
    if unverifiablePacks.with({ $0.contains(id) }) { return nil }
    let key = Self.packKey(id)
    var found: Data?
    var hidden = false
    do {
      let cur = try await store.get(key)
      if Crypto.sha256([UInt8](cur)) == id.bytes { found = cur }
    } catch StorageError.notFound {
      hidden = true
    }
    if found == nil { found = try await matchingVersion(key, id: id, hidden: hidden) }
    guard let found else {
      unverifiablePacks.with { _ = $0.insert(id) }
      return nil
    }
    verifiedPackCache.with { c in
      if c.count >= 4 { c.removeAll() }  // a few packs at most (up to packSize each)
      c[id] = found
    }
    return found
  }

  /// Path of a pack.
  static func packKey(_ id: ID) -> String { "data/\(id.hex.prefix(2))/\(id.hex)" }

  // MARK: key rotation

  /// The KEK version (Vault), key id (AWS KMS) or fingerprint (local) that wraps the keys now.
  public var keyVersion: String? { keyState.with { $0.wrapped["meta"]?.keyVersion } }

  /// Rewraps every key under `newService`, writes a new key file and config, deletes the old key files.
  public func rotateKeys(to newService: any KeyService) async throws -> [String] {
    var plain: [String: [UInt8]] = [:]
    for n in Self.keyNames { plain[n] = try await key(n) }
    var wrapped: [String: WrappedKey] = [:]
    for n in Self.keyNames {
      wrapped[n] = try await newService.wrap(plain[n]!, context: Self.context(config.id, n))
      counters.with { $0.wraps += 1 }
    }
    let kf = try KeyFile(
      version: 1, repo: config.id, created: Self.now(), kms: newService.descriptor, publicKey: config.publicKey,
      keys: wrapped
    ).signed(with: signingKey)
    let kname = "keys/" + Hex.encode(Crypto.randomBytes(16))
    try await store.create(kname, data: try kf.encoded(), options: putOptions())
    // Check the new key file unwraps before removing anything.
    let back = try await unwrapCounted(newService, wrapped["meta"]!, name: "meta", keyFile: kname)
    guard back == plain["meta"]! else {
      throw KMSError.unwrapFailed(kms: newService.descriptor, message: "round trip through the new KEK failed")
    }
    var newConfig = config
    newConfig.kms = newService.descriptor
    // The new key file is signed: from now on every key file must be (an older repository is upgraded here too).
    newConfig.keyFiles = KeyFile.signedScheme
    // On a versioned (Object Lock) bucket this adds a version; the retained earlier ones stay.
    try await store.put("config", data: try Self.encodeConfig(newConfig, signingKey: signingKey), options: putOptions())
    config = newConfig
    keyState.with { $0.wrapped = wrapped }
    keyFileName = kname
    keyFileSigned = true
    var warnings: [String] = []
    for ko in try await store.list(prefix: "keys/") where ko.key != kname {
      // A key file Object Lock still retains is kept (and stays readable): a plain delete would only hide it
      // behind a delete marker, and a rotation to a key of an attacker's choice must not take the old one away.
      if store.supportsRetention, let until = try await store.retention(of: ko.key), until > Date() {
        warnings.append(
          "old key file \(ko.key) is retained by Object Lock until \(Manifest.formatTime(until)) and was kept; "
            + "the old KEK can unwrap it until then")
        continue
      }
      do { try await store.delete(ko.key) } catch StorageError.locked(let k, let m) {
        warnings.append("old key file \(k) is retained by Object Lock and could not be deleted yet: \(m)")
      }
    }
    audit.record(
      "rotated", details: ["oldKms": keyService.descriptor, "newKms": newService.descriptor, "keyFile": kname])
    return warnings
  }
}

extension Repository {
  /// Upgrades an older repository whose key files are unsigned (section 2, "Upgrading"): every unsigned key file
  /// that this KEK unwraps must hold exactly the keys in use (else one was planted, and the upgrade is refused naming
  /// it); then a signed copy of the key file in use is written, the config is rewritten to require signed key files,
  /// and the unsigned ones are deleted the plain way (a retained one stays behind its delete marker, and is refused
  /// from now on). Wrapped keys are copied, not re-wrapped: nothing stored becomes unreadable. Returns whether it
  /// upgraded; a no-op in a repository whose key files are signed already.
  @discardableResult
  public func upgradeKeyFileAuthentication() async throws -> Bool {
    guard config.keyFiles == nil else { return false }
    var plain: [String: [UInt8]] = [:]
    for n in Self.keyNames { plain[n] = try await key(n) }
    var unsigned: [String] = []
    for ko in try await store.list(prefix: "keys/") {
      let kf: KeyFile
      do { kf = try JSONDecoder().decode(KeyFile.self, from: try await store.get(ko.key)) } catch StorageError
        .notFound
      {
        continue
      } catch let e as StorageError {
        throw e
      } catch {
        continue  // not a key file: refused at every open anyway
      }
      guard kf.signature == nil, kf.repo == config.id, kf.publicKey == config.publicKey else { continue }
      unsigned.append(ko.key)
      if ko.key == keyFileName { continue }
      for n in Self.keyNames {
        guard let w = kf.keys[n] else {
          throw EngineError.integrity(
            object: ko.key, message: "key file lacks key \(n); remove it if nobody you trust wrote it, then run again")
        }
        let k: [UInt8]
        do { k = try await unwrapCounted(keyService, w, name: n, keyFile: ko.key) } catch is KMSError {
          break  // wrapped by another KEK (an old key file a rotation kept): this KEK cannot read it at all
        }
        guard k == plain[n] else {
          throw EngineError.integrity(
            object: ko.key,
            message:
              "key file holds a different \"\(n)\" key than \(keyFileName), though both are unsigned and unwrap with "
              + "this KEK: one of them was planted; the upgrade to signed key files is refused until the planted one "
              + "is removed (the genuine one is the key file that existed before the attack)")
        }
      }
    }
    try await checkDataKeysOpenStoredData(plain)
    let wrapped = keyState.with { $0.wrapped }
    let kf = try KeyFile(
      version: 1, repo: config.id, created: Self.now(), kms: keyService.descriptor, publicKey: config.publicKey,
      keys: wrapped
    ).signed(with: signingKey)
    let kname = "keys/" + Hex.encode(Crypto.randomBytes(16))
    try await store.create(kname, data: try kf.encoded(), options: putOptions())
    var newConfig = config
    newConfig.keyFiles = KeyFile.signedScheme
    try await store.put("config", data: try Self.encodeConfig(newConfig, signingKey: signingKey), options: putOptions())
    config = newConfig
    let old = keyFileName
    keyFileName = kname
    keyFileSigned = true
    for k in unsigned {
      do { try await store.delete(k) } catch let e as StorageError {
        addWarnings(["unsigned key file \(k) could not be removed after the upgrade to signed key files: \(e)"])
      }
    }
    audit.record("upgraded", details: ["keyFile": kname, "replaces": old, "keyFiles": KeyFile.signedScheme])
    return true
  }
}

extension Repository {
  /// Before an unsigned key file is signed: each data key must open stored data of its type (a blob in up to three
  /// packs; the index itself was opened with `meta`, and a blob's id check uses `mac`). A key file planted where the
  /// genuine one was hidden (a delete marker) and the config rolled back to its unsigned version would pass every
  /// other check; its data keys cannot open the data backed up before.
  func checkDataKeysOpenStoredData(_ plain: [String: [UInt8]]) async throws {
    let (index, _) = try await loadIndex(collectErrors: true)
    var samples: [KeyType: [ID]] = [:]
    for (_, entries) in index.packContents() {
      for t in [KeyType.files, .database, .logs] where (samples[t]?.count ?? 0) < 3 {
        if let e = entries.first(where: { $0.keyType == t && $0.type == .data }) {
          samples[t, default: []].append(e.id)
        }
      }
    }
    for (t, ids) in samples {
      guard let k = plain[t.name] else { continue }
      let ciphers: [KeyType: AESGCM] = [t: try AESGCM(key: k)]
      var opened = false
      var lastError: (any Error)?
      for id in ids {
        do {
          _ = try await readBlob(id, index: index, ciphers: ciphers, zstd: ZstdContext())
          opened = true
          break
        } catch let e as EngineError {
          lastError = e
        }
      }
      guard opened else {
        throw EngineError.integrity(
          object: keyFileName,
          message:
            "its \"\(t.name)\" data key opens none of \(ids.count) stored \(t.name) blobs (last: \(lastError.map { "\($0)" } ?? "")): "
            + "the key file was planted (or the data is damaged); the upgrade to signed key files is refused, check "
            + "the key files and run `botrt-engine verify`")
      }
    }
  }
}

/// Every KMS unwrap call of this process, by KMS URI (secrets stripped), including attempts that failed and
/// those made while opening a repository that then could not be opened: the command's result reports these, so a
/// failed run still accounts for the key access it made.
public enum KeyUnwrapLedger {
  private static let counts = Locked<[String: Int]>([:])
  static func add(_ kms: String) { counts.with { $0[kms, default: 0] += 1 } }
  /// The counts so far.
  public static var byKMS: [String: Int] { counts.with { $0 } }
}

/// What `deleteEverything` did.
public struct RepositoryDeletion: Sendable {
  /// Objects deleted.
  public var deleted: Int
  /// Bytes of the deleted objects.
  public var bytesFreed: Int64
  /// Objects Object Lock kept, with the store's reason.
  public var retained: [String]
}

extension Repository {
  /// Deletes every object of the repository but `keeping` (the caller's lock, released afterwards). Data, index,
  /// snapshots and the audit trail go first; the key files and the config last, and only when Object Lock kept
  /// nothing, so retained data stays readable. Objects Object Lock protects are reported, never counted as deleted.
  public func deleteEverything(keeping: String?) async throws -> RepositoryDeletion {
    var all = try await store.list(prefix: "")
    // Objects a plain delete (a released lock, a pruned pack) left behind a delete marker: their versions go too.
    let current = Set(all.map(\.key))
    for k in try await store.listAllVersionedKeys(prefix: "") where !current.contains(k) {
      all.append(ObjectInfo(key: k, size: 0))
    }
    let last = Set(["config"])
    var first: [ObjectInfo] = []
    var keys: [ObjectInfo] = []
    for o in all where o.key != keeping {
      if o.key.hasPrefix("keys/") { keys.append(o) } else if !last.contains(o.key) { first.append(o) }
    }
    var out = RepositoryDeletion(deleted: 0, bytesFreed: 0, retained: [])
    func remove(_ o: ObjectInfo) async throws {
      do {
        try await store.deleteAllVersions(o.key)
        out.deleted += 1
        out.bytesFreed += o.size
      } catch StorageError.locked(let k, let m) {
        out.retained.append("\(k): \(m)")
      }
    }
    for o in first.sorted(by: { $0.key < $1.key }) { try await remove(o) }
    guard out.retained.isEmpty else { return out }
    for o in keys { try await remove(o) }
    if let c = all.first(where: { $0.key == "config" }) { try await remove(c) }
    return out
  }
}

/// Collects audit lines for one run and stores them as one object.
public final class AuditLog: @unchecked Sendable {
  let store: any ObjectStore
  var retention: ObjectRetention?
  private let lines = Locked<[String]>([])
  let actor: String

  init(store: any ObjectStore, retention: ObjectRetention?) {
    self.store = store
    self.retention = retention
    let user = ProcessInfo.processInfo.environment[EngineEnv.user] ?? "uid \(getuid())"
    actor = "\(user)@\(ProcessInfo.processInfo.hostName) pid \(getpid())"
  }

  /// Records one action (details must hold no key material).
  public func record(_ action: String, outcome: String = "success", details: [String: String]) {
    struct Line: Codable {
      var time: String
      var actor: String
      var action: String
      var outcome: String
      var details: [String: String]
    }
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let l = Line(time: Repository.now(), actor: actor, action: action, outcome: outcome, details: details)
    do {
      let d = try e.encode(l)
      lines.with { $0.append(String(decoding: d, as: UTF8.self)) }
    } catch {
      FileHandle.standardError.write(Data("warning: audit line for \(action) not encodable: \(error)\n".utf8))
    }
  }

  /// The lines recorded so far.
  public var recorded: [String] { lines.with { $0 } }

  /// Stores the lines as audit/<time>-<rand>.jsonl. A repository opened read-only (`ReadOnlyStore`) cannot hold
  /// them: they go to standard error, one `audit: LINE` each, so the run's log keeps who read what.
  public func flush() async throws {
    let ls = lines.with { l -> [String] in
      defer { l.removeAll() }
      return l
    }
    guard !ls.isEmpty else { return }
    if store.isReadOnly {
      FileHandle.standardError.write(Data(ls.map { "audit: \($0)\n" }.joined().utf8))
      return
    }
    let f = DateFormatter()
    f.locale = Locale(identifier: "en_US_POSIX")
    f.timeZone = TimeZone(identifier: "UTC")
    f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
    let name = "audit/\(f.string(from: Date()))-\(Hex.encode(Crypto.randomBytes(6))).jsonl"
    try await store.put(
      name, data: Data((ls.joined(separator: "\n") + "\n").utf8), options: PutOptions(retention: retention))
  }
}
