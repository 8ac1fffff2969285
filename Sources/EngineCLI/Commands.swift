import ArgumentParser
import BackupEngine
import EngineContract
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A command body that fills a result; errors are mapped to exit codes by `EngineMain`.
protocol EngineCommand: AsyncParsableCommand {
  var repoOptions: RepoOptions { get }
  var commandName: String { get }
  func execute(_ result: inout CommandResult) async throws
}

/// Runs an operation holding a repository lock, flushing the audit trail whatever happens.
func withLockedRepo<T>(
  _ repo: Repository, exclusive: Bool, wait: TimeInterval = 0, _ body: () async throws -> T
) async throws -> T {
  let lock = try await repo.lock(exclusive: exclusive, wait: wait)
  do {
    let r = try await body()
    await lock.release()
    try await repo.audit.flush()
    return r
  } catch {
    await lock.release()
    repo.audit.record("failed", outcome: "failure", details: ["error": "\(error)"])
    do { try await repo.audit.flush() } catch {
      FileHandle.standardError.write(Data("warning: could not store the audit trail: \(error)\n".utf8))
    }
    throw error
  }
}

func fill(_ result: inout CommandResult, _ repo: Repository) {
  // keyUnwraps comes from the process-wide ledger (EngineMain), so failed runs report theirs too.
  result.keyWraps = (result.keyWraps ?? 0) + repo.wrapCount
  if result.repositoryId == nil {
    result.repositoryId = repo.config.id
    result.signingKey = repo.config.publicKey
    result.repository = repo.store.location
  }
  let w = repo.warnings
  if !w.isEmpty { result.addWarnings(w) }
  // The result (a termination message) names the first few; the log names every object passed over.
  let all = repo.allWarnings
  if all.count > Repository.maxWarnings {
    for x in all { FileHandle.standardError.write(Data("warning: \(x)\n".utf8)) }
  }
}

/// `botrt-engine init`.
struct InitCommand: EngineCommand {
  static let configuration = CommandConfiguration(commandName: "init", abstract: "Create a repository.")
  @OptionGroup var repoOptions: RepoOptions
  @Option(
    name: .customLong("object-lock"), help: "compliance:DAYS or governance:DAYS (S3 Object Lock on every object).")
  var objectLock: String?
  var commandName: String { "init" }

  func execute(_ result: inout CommandResult) async throws {
    let ol = try objectLock.map { try ObjectLockConfig.parse($0) }
    let repo = try await Repository.initialize(
      store: try repoOptions.makeStore(), keyService: try repoOptions.makeKMS(), objectLock: ol,
      logger: repoOptions.logger())
    try await repo.audit.flush()
    fill(&result, repo)
    repoOptions.summary(["created repository \(HumanFormat.shortID(repo.config.id)) at \(repo.store.location)"])
  }
}

/// `botrt-engine backup`.
struct BackupCommand: EngineCommand {
  static let configuration = CommandConfiguration(commandName: "backup", abstract: "Back up paths or standard input.")
  @OptionGroup var repoOptions: RepoOptions
  @Option(name: .customLong("data-type"), help: "files, database or logs (selects the data key).")
  var dataType = "files"
  @Option(name: .customLong("tag"), help: "A K=V tag (repeatable).")
  var tags: [String] = []
  @Flag(help: "Back up standard input as one file.")
  var stdin = false
  @Option(name: .customLong("stdin-name"), help: "The file name to record for --stdin.")
  var stdinName: String?
  @Option(
    name: .customLong(EngineFlag.stdinFrom),
    help: ArgumentHelp(
      "With --stdin: read the stream from this named pipe (created when missing) instead of standard input; a "
        + "producer in another container writes into it."))
  var stdinFrom: String?
  @Option(
    name: .customLong(EngineFlag.stdinStatus),
    help: ArgumentHelp(
      "With --stdin-from: after the stream ends, wait for the producer's exit status in this file; a non-zero or "
        + "missing status fails the backup before a snapshot is written."))
  var stdinStatus: String?
  @Option(
    name: .customLong(EngineFlag.stdinTimeout),
    help: "With --stdin-from: seconds to wait for the producer to open the pipe, and for its exit status (600).")
  var stdinTimeout: Int = 600
  @Option(help: "Host name recorded in the snapshot (default: this host).")
  var host: String?
  @Option(
    help: """
      Compression of the data: auto (zstd level 1, the default), better (level 3), max (level 9), or off \
      (for data that is already compressed).
      """)
  var compression: Compression = .auto
  @Argument(help: "Paths to back up; each is stored under its base name.")
  var paths: [String] = []
  @OptionGroup(title: "File selection (restic's options and pattern syntax)")
  var selection: FileSelectionOptions
  @Flag(
    name: .customLong("init-if-missing"),
    help: "Create the repository first when it has no config yet (scheduled runs of a new policy use this).")
  var initIfMissing = false
  @Option(
    name: .customLong("object-lock"),
    help: "With --init-if-missing: compliance:DAYS or governance:DAYS for a repository created by this run.")
  var objectLock: String?
  @Option(
    help: ArgumentHelp(
      "The time to record in the snapshot instead of now (restic's --time): RFC 3339 (2026-01-02T15:04:05Z) or "
        + "'2026-01-02 15:04:05' in the local time zone. Retention and restore --before go by this time."))
  var time: String?
  var commandName: String { "backup" }

  func validate() throws {
    if stdin {
      guard let n = stdinName, !n.isEmpty else { throw ValidationError("--stdin needs --stdin-name NAME") }
      guard paths.isEmpty else { throw ValidationError("--stdin takes no paths") }
      if let flag = selection.givenFlag {
        throw ValidationError("--\(flag) selects files below PATHs; it does not apply to --stdin")
      }
    } else if stdinFrom != nil || stdinStatus != nil {
      throw ValidationError("--stdin-from and --stdin-status need --stdin")
    } else if paths.isEmpty && !selection.listsPaths {
      throw ValidationError("give at least one PATH (or --files-from FILE), or --stdin --stdin-name NAME")
    }
    guard KeyType(dataType: dataType) != nil else {
      throw ValidationError("--data-type must be files, database or logs")
    }
    for t in tags where !t.contains("=") { throw ValidationError("--tag '\(t)' must be K=V") }
    if objectLock != nil && !initIfMissing { throw ValidationError("--object-lock needs --init-if-missing") }
    if stdinStatus != nil && stdinFrom == nil { throw ValidationError("--stdin-status needs --stdin-from PIPE") }
    guard (1...86_400).contains(stdinTimeout) else {
      throw ValidationError("--stdin-timeout must be between 1 and 86400 seconds, not \(stdinTimeout)")
    }
    if let time { _ = try parseSnapshotTime(time) }
  }

  /// Opens the repository, creating it first with `--init-if-missing` when it has no config. A concurrent
  /// creator that wins the race (the config is written with if-none-match) is simply opened.
  func openOrCreate() async throws -> Repository {
    guard initIfMissing else { return try await repoOptions.open() }
    let store = try repoOptions.makeStore()
    if try await store.head("config") != nil { return try await repoOptions.open() }
    if let pinned = repoOptions.expectRepositoryID {
      // A pinned repository that vanished is not replaced by a new one: that would hide its loss, and give whoever
      // deleted it a fresh repository to watch.
      throw EngineError.integrity(
        object: "config",
        message:
          "repository \(pinned) was expected (pinned when it was created) but \(store.location) has no config: it "
          + "was deleted or the location is wrong; nothing was written. To start a new repository there, drop the "
          + "pins (--\(EngineFlag.expectRepositoryID), --\(EngineFlag.expectSigningKey))")
    }
    let lock = try objectLock.map { try ObjectLockConfig.parse($0) }
    do {
      let repo = try await Repository.initialize(
        store: store, keyService: try repoOptions.makeKMS(), objectLock: lock, logger: repoOptions.logger())
      try await repo.audit.flush()
      return repo
    } catch StorageError.alreadyExists {
      return try await repoOptions.open()
    }
  }

  func execute(_ result: inout CommandResult) async throws {
    let started = Date()
    var tagMap: [String: String] = [:]
    for t in tags {
      let p = t.split(separator: "=", maxSplits: 1)
      tagMap[String(p[0])] = p.count > 1 ? String(p[1]) : ""
    }
    // The pipe first: its producer waits for it to appear, and then blocks on a full pipe until the repository is
    // open and locked.
    let pipeFD = try stdinFrom.map { try StreamPipe.openForReading($0, timeout: Double(stdinTimeout)) }
    defer { if let fd = pipeFD { close(fd) } }
    // The selection before the repository: an unreadable exclude file or list of paths fails the run first.
    let chosen = try selection.selection(environment: repoOptions.env)
    let targets = stdin ? [] : try selection.targets(paths: paths, warnings: &result)
    let repo = try await openOrCreate()
    var opts = BackupOptions(
      paths: targets, dataType: KeyType(dataType: dataType)!, tags: tagMap, stdinName: stdin ? stdinName : nil,
      compression: compression, progress: repoOptions.progressHandler())
    opts.selection = chosen
    if let host { opts.hostname = host }
    if let fd = pipeFD {
      opts.stdinFD = fd
      if let statusPath = stdinStatus {
        let timeout = Double(stdinTimeout)
        opts.inputComplete = { try StreamPipe.checkStatus(statusPath, timeout: timeout, producer: "dump command") }
      }
    }
    opts.time = try time.map(parseSnapshotTime)
    let r = try await withLockedRepo(repo, exclusive: false, wait: try repoOptions.lockWait()) {
      // An older repository's key files are signed by its first backup with this version (section 2).
      if try await repo.upgradeKeyFileAuthentication() {
        repo.addWarnings(["upgraded the repository to signed key files (\(repo.keyFile))"])
      }
      // An older repository starts recording its deletions, so that objects hidden later are seen (section 2a).
      try await repo.upgradeDeletionRecords()
      return try await repo.backup(opts)
    }
    fill(&result, repo)
    result.snapshotId = r.snapshotID.hex
    result.snapshotTime = r.time
    result.files = r.files
    result.bytesRead = r.bytesRead
    result.bytesStored = r.bytesStored
    result.repositoryStoredBytes = r.repositoryPackBytes
    result.dedupRatio = (r.dedupRatio * 10000).rounded() / 10000
    result.errors = r.errors
    if selection.givenFlag != nil { result.excluded = r.excluded }
    if r.adoptedPacks > 0 { result.addWarnings(["adopted \(r.adoptedPacks) packs left by an interrupted backup"]) }
    if !r.warnings.isEmpty { result.addWarnings(r.warnings) }
    for w in r.warnings { FileHandle.standardError.write(Data("warning: \(w)\n".utf8)) }
    // The snapshot is saved also when some sources could not be read (exit 3): its summary is printed then too.
    repoOptions.summary(Self.summary(r, seconds: Date().timeIntervalSince(started)))
    if !r.errors.isEmpty { throw PartialBackupError(count: r.errors.count) }
  }
}

/// `botrt-engine restore`.
struct RestoreCommand: EngineCommand {
  static let configuration = CommandConfiguration(commandName: "restore", abstract: "Restore a snapshot.")
  @OptionGroup var repoOptions: RepoOptions
  @Argument(help: "Snapshot id (or a unique prefix) or 'latest'.")
  var snapshot: String
  @Option(
    help: "With 'latest': the newest snapshot taken at or before this time (RFC 3339, e.g. 2026-09-06T03:00:00Z).")
  var before: String?
  @Option(help: "Directory to restore into.")
  var target: String?
  @Flag(help: "Write the single selected file to standard output.")
  var stdout = false
  @Option(name: .customLong("path"), help: "Restore only this path (repeatable).")
  var paths: [String] = []
  @Option(
    name: .customLong(EngineFlag.excludePath),
    help: "Leave this path and everything below it out (repeatable; as --path names paths, e.g. _kubernetes).")
  var excludePaths: [String] = []
  @Option(
    name: .customLong(EngineFlag.stripComponents),
    help: ArgumentHelp(
      "Drop this many leading components from every restored path, as tar does (1 restores the content of a "
        + "backed-up directory into --target itself; entries that deep or less are skipped).",
      valueName: "n"))
  var stripComponents: Int = 0
  @Option(
    name: .customLong("require-snapshot"),
    help: ArgumentHelp(
      "Refuse to run (exit 5) unless this snapshot (id or prefix) is in the repository, e.g. the newest one a "
        + "controller recorded: a deleted newest snapshot or a repository rolled back would make 'latest' older."))
  var requireSnapshot: String?
  @Option(
    name: .customLong(EngineFlag.tag),
    help: "With 'latest': only snapshots with this K=V tag are candidates (repeatable; all must match).")
  var tags: [String] = []
  @Flag(
    name: .customLong(EngineFlag.keepSetID),
    help: ArgumentHelp(
      "Keep the set-user-ID and set-group-ID bits and file capabilities (security.capability) of restored files "
        + "(root only: the owner is restored first). Without it they are cleared, with a warning naming the files."))
  var keepSetID = false
  @Flag(
    name: .customLong(EngineFlag.verify),
    help: ArgumentHelp(
      "After the restore, read every restored file back from the target and check it against the snapshot (each "
        + "chunk's keyed hash must be its blob's id; restic's restore --verify). Reads the target again, downloads "
        + "nothing more."))
  var verify = false
  var commandName: String { "restore" }

  func validate() throws {
    if (target == nil) == !stdout { throw ValidationError("give exactly one of --target DIR or --stdout") }
    if verify && stdout { throw ValidationError("--verify reads the restored files back from --target, not --stdout") }
    if stripComponents < 0 { throw ValidationError("--strip-components must be 0 or more, not \(stripComponents)") }
    if stripComponents > 0 && stdout { throw ValidationError("--strip-components applies to --target, not --stdout") }
    try validateLatestTags(tags, snapshot: snapshot)
    if keepSetID && geteuid() != 0 {
      throw ValidationError(
        "--keep-setid keeps set-user-ID and set-group-ID bits only when restoring as root (the owner is restored "
          + "first); without it they are cleared")
    }
    if let before {
      _ = try parseBefore(before)
      if snapshot != "latest" {
        throw ValidationError(
          "--before picks the newest snapshot taken at or before a time, so the snapshot must be 'latest', not "
            + "'\(snapshot)'")
      }
    }
  }

  func execute(_ result: inout CommandResult) async throws {
    let started = Date()
    let repo = try await repoOptions.open()
    var skipped: [SkippedSnapshot] = []
    var time: String?
    let r = try await withLockedRepo(repo, exclusive: false, wait: try repoOptions.lockWait()) { () -> RestoreResult in
      let s: Snapshot
      let index: MasterIndex
      if snapshot == "latest" {
        // The newest snapshot that verifies; damaged newer ones are named and passed over.
        index = try await repo.loadIndexForRestore()
        let sel = try await repo.selectLatestVerified(
          before: try before.map(parseBefore), required: requireSnapshot, index: index, readData: false,
          tags: try tagMap(tags))
        s = sel.snapshot
        skipped = sel.skipped
      } else {
        let (snaps, damaged) = try await repo.loadSnapshotsChecked()
        try requirePresent(requireSnapshot, in: snaps)
        do { s = try selectSnapshot(snapshot, before: nil, in: snaps, repo: repo) } catch EngineError.snapshotNotFound(
          let ref)
        {
          // The snapshot asked for by id exists but its manifest fails its checks: say so (exit 5), naming it.
          if let e = damaged.first(where: { Repository.snapshotName(of: $0).hasPrefix(snapshot.lowercased()) }) {
            throw e
          }
          throw EngineError.snapshotNotFound(ref)
        }
        index = try await repo.loadIndexForRestore()
      }
      time = s.manifest.time
      if !stdout, let target {
        repoOptions.summary([
          "restoring snapshot \(HumanFormat.shortID(s.id.hex)) of [\(s.manifest.paths.joined(separator: ", "))] at "
            + "\(s.manifest.time) by \(s.manifest.hostname) to \(target)"
        ])
      }
      return try await repo.restore(
        s, index: index,
        options: RestoreOptions(
          target: target, stdoutFD: stdout ? 1 : nil, paths: paths, stripComponents: stripComponents,
          excludePaths: excludePaths,
          progress: repoOptions.progressHandler(dataOnStdout: stdout), keepSetID: keepSetID, verify: verify))
    }
    fill(&result, repo)
    result.snapshotId = r.snapshotID.hex
    result.snapshotTime = time
    result.filesVerified = r.verification?.files
    result.bytesVerified = r.verification?.bytes
    result.files = r.files
    result.bytesRead = r.bytes
    if !r.warnings.isEmpty { result.addWarnings(r.warnings) }
    for w in r.warnings { FileHandle.standardError.write(Data("warning: \(w)\n".utf8)) }
    reportSkipped(skipped, chosen: r.snapshotID.hex, into: &result)
    // With --stdout the data owns stdout: no summary.
    if !stdout {
      repoOptions.summary(
        [
          "Summary: Restored \(r.files) files (\(HumanFormat.bytes(r.bytes))) in "
            + HumanFormat.duration(Date().timeIntervalSince(started))
        ]
          + (r.verification.map {
            ["verified \($0.files) restored files (\(HumanFormat.bytes($0.bytes))) against the snapshot"]
          } ?? []))
    }
  }
}

/// Refuses `--tag` of restore and verify unless the snapshot is `latest` (a snapshot id names one snapshot) and every
/// tag is K=V.
func validateLatestTags(_ tags: [String], snapshot: String) throws {
  guard !tags.isEmpty else { return }
  if snapshot != "latest" {
    throw ValidationError("--tag picks among the snapshots 'latest' chooses from, so the snapshot must be 'latest'")
  }
  _ = try tagMap(tags)
}

/// `--tag K=V` values as a map (a repeated key: the last value).
func tagMap(_ tags: [String]) throws -> [String: String] {
  var out: [String: String] = [:]
  for t in tags {
    guard let eq = t.firstIndex(of: "="), eq != t.startIndex else { throw ValidationError("--tag '\(t)' must be K=V") }
    out[String(t[..<eq])] = String(t[t.index(after: eq)...])
  }
  return out
}

/// Names the snapshots `latest` passed over: in the result (`skippedSnapshots`, and a warning each) and on stderr.
func reportSkipped(_ skipped: [SkippedSnapshot], chosen: String, into result: inout CommandResult) {
  guard !skipped.isEmpty else { return }
  result.skippedSnapshots = skipped.map { EngineResult.SkippedSnapshot(id: $0.id, reason: $0.reason) }
  for s in skipped {
    let w = "skipped snapshot \(s.id) for latest (\(s.reason)); using \(chosen.prefix(12)), the newest that verifies"
    result.addWarnings([w])
    FileHandle.standardError.write(Data("warning: \(w)\n".utf8))
  }
}

/// Throws an integrity error unless a snapshot whose id starts with `required` is among `snaps`.
func requirePresent(_ required: String?, in snaps: [Snapshot]) throws {
  guard let required, !required.isEmpty else { return }
  guard snaps.contains(where: { $0.id.hex.hasPrefix(required.lowercased()) }) else {
    throw EngineError.integrity(
      object: "snapshots/\(required)",
      message:
        "snapshot \(required) is not in the repository, though it was required (it is the newest one recorded "
        + "elsewhere, e.g. by the controller): it was deleted or the repository was rolled back, so 'latest' "
        + "would be an older snapshot; the newest present is "
        + (snaps.max { $0.manifest.date < $1.manifest.date }.map { "\($0.id.hex) of \($0.manifest.time)" } ?? "none"))
  }
}

/// `botrt-engine verify`.
struct VerifyCommand: EngineCommand {
  static let configuration = CommandConfiguration(commandName: "verify", abstract: "Check the repository's integrity.")
  @OptionGroup var repoOptions: RepoOptions
  @Argument(
    help: ArgumentHelp(
      "Snapshot to verify (default: all). 'latest' is the newest snapshot that verifies: newer ones whose manifest "
        + "or data fails are named as skipped, and only the chosen snapshot's data is checked (with --read-data, "
        + "its blobs are read)."))
  var snapshot: String?
  @Option(help: "With 'latest': the newest snapshot taken at or before this time (RFC 3339).")
  var before: String?
  @Option(
    name: .customLong(EngineFlag.tag),
    help: "With 'latest': only snapshots with this K=V tag are candidates (repeatable; all must match).")
  var tags: [String] = []
  @Flag(help: "Verify all snapshots.")
  var all = false
  @Flag(
    name: .customLong("read-data"),
    help: "Read, decrypt, decompress and re-hash every pack (with a snapshot: the packs holding its blobs).")
  var readData = false
  @Option(
    name: .customLong("read-data-subset"),
    help: "Read only some packs: n/t (e.g. 1/7, a different part each day) or a percentage (e.g. 10%).")
  var readDataSubset: String?
  @Option(
    name: .customLong("require-snapshot"),
    help: ArgumentHelp(
      "Fail (exit 5) unless this snapshot (id or prefix) is in the repository, e.g. the newest one a controller "
        + "recorded."))
  var requireSnapshot: String?
  @Option(
    name: .customLong(EngineFlag.snapshotFrom),
    help: ArgumentHelp(
      "Verify the snapshot named in this result file (what a restore wrote with --result-file), instead of a "
        + "SNAPSHOT argument: a restore of 'latest' and its verify then check the same snapshot even when a backup "
        + "lands between them."))
  var snapshotFrom: String?
  @Option(
    name: .customLong("accept-unreadable"),
    help: ArgumentHelp(
      "A manifest or index file (e.g. snapshots/ID) that fails its checks and that you inspected and found planted: "
        + "a warning instead of an error (repeatable). Without it any such object makes verify exit 5."))
  var acceptUnreadable: [String] = []
  var commandName: String { "verify" }

  func validate() throws {
    if readData && readDataSubset != nil { throw ValidationError("give --read-data or --read-data-subset, not both") }
    if snapshotFrom != nil && (snapshot != nil || all || before != nil || !tags.isEmpty || readDataSubset != nil) {
      throw ValidationError(
        "--snapshot-from names the one snapshot to verify: give no SNAPSHOT, --all, --before, --tag or "
          + "--read-data-subset with it")
    }
    try validateLatestTags(tags, snapshot: snapshot ?? "")
    if let before {
      _ = try parseBefore(before)
      if snapshot != "latest" { throw ValidationError("--before needs the snapshot 'latest'") }
    }
    if snapshot == "latest" && (all || readDataSubset != nil) {
      throw ValidationError("'latest' verifies one snapshot: --all and --read-data-subset do not apply")
    }
    if let s = readDataSubset {
      do { _ = try ReadDataSubset.parse(s) } catch let e as EngineError { throw ValidationError(e.description) }
    }
  }

  func execute(_ result: inout CommandResult) async throws {
    if snapshot == "latest" && !all { return try await verifyLatest(&result) }
    // The repository first: one that fails its pins (a planted one) is the finding, whatever the result file says.
    let repo = try await repoOptions.open()
    let ref = try snapshotFrom.map(Self.restoredSnapshot) ?? (all ? nil : snapshot)
    let r = try await withLockedRepo(repo, exclusive: false, wait: try repoOptions.lockWait()) {
      if requireSnapshot != nil { try requirePresent(requireSnapshot, in: try await repo.loadSnapshotsChecked().0) }
      return try await repo.verify(
        snapshotRef: ref, readData: readData, subset: try readDataSubset.map(ReadDataSubset.parse),
        progress: repoOptions.progressHandler(), acceptUnreadable: Set(acceptUnreadable))
    }
    fill(&result, repo)
    result.errors = r.errors
    result.addWarnings(r.warnings)
    result.files = r.blobs
    result.bytesDownloaded = r.bytesRead
    result.snapshotsVerified = r.snapshots
    if let s = r.snapshot {
      result.snapshotId = s.id.hex
      result.snapshotTime = s.manifest.time
    }
    for e in r.errors { FileHandle.standardError.write(Data("error: \(e)\n".utf8)) }
    if !r.errors.isEmpty {
      throw EngineError.integrity(
        object: "repository", message: "\(r.errors.count) problems found; first: \(r.errors[0])")
    }
    var checked =
      "checked \(r.snapshot.map { "snapshot \(HumanFormat.shortID($0.id.hex))" } ?? "\(r.snapshots) snapshots"), "
      + "\(r.packs) packs, \(r.blobs) blobs"
    if r.packsRead > 0 { checked += "; read \(r.packsRead) packs (\(HumanFormat.bytes(r.bytesRead)))" }
    repoOptions.summary([checked] + r.warnings.map { "warning: \($0)" } + ["no errors were found"])
  }
}

extension VerifyCommand {
  /// The snapshot id in a restore's result file (`--snapshot-from`); an absent, unreadable or failed result is an
  /// error naming the file, never a fallback to another snapshot.
  static func restoredSnapshot(_ path: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw EngineError.usage(
        "--snapshot-from \(path): no such file or not readable; it is the --result-file of the restore whose "
          + "snapshot to verify, which must run first")
    }
    let result: EngineResult
    do { result = try JSONDecoder().decode(EngineResult.self, from: data) } catch {
      throw EngineError.usage("--snapshot-from \(path): not an engine result line (\(error))")
    }
    guard result.command == "restore", result.ok == true, let id = result.snapshotId, !id.isEmpty else {
      throw EngineError.usage(
        "--snapshot-from \(path): the result of '\(result.command ?? "?")' (ok: \(result.ok.map(String.init) ?? "?")) "
          + "names no restored snapshot; give the result file of a restore that succeeded")
    }
    return id
  }

  /// `verify latest`: selects the newest snapshot that verifies (reading its blobs with --read-data) and reports the
  /// ones passed over; index files that fail to load are warnings here (the chosen snapshot's blobs were found).
  func verifyLatest(_ result: inout CommandResult) async throws {
    let repo = try await repoOptions.open()
    let (sel, indexErrors) = try await withLockedRepo(repo, exclusive: false, wait: try repoOptions.lockWait()) {
      let (index, indexErrors) = try await repo.loadIndex(collectErrors: true)
      let sel = try await repo.selectLatestVerified(
        before: try before.map(parseBefore), required: requireSnapshot, index: index, readData: readData,
        tags: try tagMap(tags))
      return (sel, indexErrors)
    }
    fill(&result, repo)
    result.snapshotId = sel.snapshot.id.hex
    result.snapshotTime = sel.snapshot.manifest.time
    result.bytesDownloaded = sel.bytesRead
    result.addWarnings(indexErrors.map { $0.description })
    reportSkipped(sel.skipped, chosen: sel.snapshot.id.hex, into: &result)
    var lines = [
      "latest is snapshot \(HumanFormat.shortID(sel.snapshot.id.hex)) of \(sel.snapshot.manifest.time)"
        + (sel.skipped.isEmpty ? "" : " (\(sel.skipped.count) newer snapshots fail their checks and were skipped)")
    ]
    if readData { lines.append("read \(HumanFormat.bytes(sel.bytesRead)) of its data") }
    repoOptions.summary(lines + ["no errors were found"])
  }
}

/// `botrt-engine snapshots`.
struct SnapshotsCommand: EngineCommand {
  static let configuration = CommandConfiguration(commandName: "snapshots", abstract: "List snapshots.")
  @OptionGroup var repoOptions: RepoOptions
  @Option(help: "List only the snapshots taken at or before this time (RFC 3339, e.g. 2026-09-06T03:00:00Z).")
  var before: String?
  var commandName: String { "snapshots" }

  func validate() throws {
    if let before { _ = try parseBefore(before) }
  }

  func execute(_ result: inout CommandResult) async throws {
    let repo = try await repoOptions.open()
    var (snaps, _) = try await repo.loadSnapshotsChecked()
    if let t = try before.map(parseBefore) { snaps = snaps.filter { $0.manifest.date <= t } }
    fill(&result, repo)
    result.snapshots = snaps.map {
      let m = $0.manifest
      return EngineResult.SnapshotSummary(
        id: $0.id.hex, seq: m.seq, time: m.time, hostname: m.hostname, dataType: m.dataType, paths: m.paths,
        tags: m.tags,
        files: m.summary.files, bytes: m.summary.bytes, errors: m.summary.errors, parent: m.parent)
    }
    // The table is the command's output: stdout, as restic prints it; with --json stdout has only the result line.
    if !repoOptions.json {
      var out = "ID          SEQ  TIME                      HOST            TYPE      FILES      BYTES  PATHS\n"
      for s in result.snapshots ?? [] {
        out +=
          "\(s.id.prefix(10))  \(s.seq)  \(s.time)  \(s.hostname)  \(s.dataType)  \(s.files)  \(s.bytes)  \(s.paths.joined(separator: ","))\n"
      }
      FileHandle.standardOutput.write(Data(out.utf8))
    }
  }
}

/// `botrt-engine forget`.
struct ForgetCommand: EngineCommand {
  static let configuration = CommandConfiguration(commandName: "forget", abstract: "Remove snapshots by policy.")
  @OptionGroup var repoOptions: RepoOptions
  @OptionGroup var retention: RetentionOptions
  @Flag(help: "Delete data no snapshot references any more.")
  var prune = false
  @Flag(name: .customLong("dry-run"), help: "Only report what would be removed.")
  var dryRun = false
  @Option(
    name: .customLong("repack-unused"),
    help: "With --prune, rewrite a partly used pack when at least this percentage of it is unused (0-100; 100 never).")
  var repackUnused: Double = 10
  @Option(
    name: .customLong("accept-unreadable"),
    help: ArgumentHelp(
      "With --prune: a manifest or index file (e.g. snapshots/ID) that fails its checks and that you inspected and "
        + "found planted; it no longer stops the prune (repeatable). Without it any such object refuses the prune."))
  var acceptUnreadable: [String] = []
  var commandName: String { "forget" }

  func validate() throws {
    if retention.isEmpty { throw ValidationError("give at least one --keep-* rule or --max-age") }
    guard repackUnused >= 0 && repackUnused <= 100 else {
      throw ValidationError("--repack-unused \(repackUnused) must be a percentage from 0 to 100")
    }
  }

  func execute(_ result: inout CommandResult) async throws {
    let p = try retention.policy()
    let repo = try await repoOptions.open()
    let r = try await withLockedRepo(repo, exclusive: true, wait: try repoOptions.lockWait()) {
      // 100 % can never be reached by a pack that still holds a live blob: nothing is rewritten.
      try await repo.forget(
        policy: p, prune: prune, dryRun: dryRun, repackUnused: repackUnused >= 100 ? 2 : repackUnused / 100,
        acceptUnreadable: Set(acceptUnreadable))
    }
    fill(&result, repo)
    result.removed = r.removed
    result.packsDeleted = r.packsDeleted
    result.packsRepacked = prune && !dryRun ? r.packsRepacked : nil
    result.bytesStored = -r.bytesFreed
    result.repositoryStoredBytes = r.repositoryPackBytes
    result.addWarnings(r.retained.map { "retained by Object Lock, not deleted yet: \($0)" })
    if let first = r.pruneRefusedFor.first {
      // The snapshots were forgotten (result.removed); the prune deleted nothing. Exit 5, naming the objects.
      throw EngineError.integrity(
        object: first,
        message:
          "prune refused, nothing was deleted but the forgotten snapshots: \(r.pruneRefusedFor.count) manifests or "
          + "index files fail their checks (\(r.pruneRefusedFor.joined(separator: ", "))) and may be genuine; inspect "
          + "them, then remove them or name those found planted with --accept-unreadable")
    }
    repoOptions.summary(Self.summary(r, policy: p, prune: prune, dryRun: dryRun))
  }
}

/// The retention rules of `forget` (and of `copy`, for the target).
struct RetentionOptions: ParsableArguments {
  @Option(name: .customLong("keep-last"), help: "Keep the newest N snapshots.") var keepLast = 0
  @Option(name: .customLong("keep-hourly"), help: "Keep the newest snapshot of each of the last N hours.")
  var keepHourly = 0
  @Option(name: .customLong("keep-daily"), help: "Keep the newest snapshot of each of the last N days.")
  var keepDaily = 0
  @Option(name: .customLong("keep-weekly"), help: "Keep the newest snapshot of each of the last N weeks.")
  var keepWeekly = 0
  @Option(name: .customLong("keep-monthly"), help: "Keep the newest snapshot of each of the last N months.")
  var keepMonthly = 0
  @Option(name: .customLong("keep-yearly"), help: "Keep the newest snapshot of each of the last N years.")
  var keepYearly = 0
  @Option(
    name: .customLong("max-age"),
    help: ArgumentHelp(
      "Keep every snapshot taken within this duration of the newest snapshot (restic's --keep-within; 24h, 90d, "
        + "7y, 1h30m; m is minutes). Like the --keep-* rules it only adds to what is kept; snapshots dated in the "
        + "future are kept too."))
  var maxAge: String?

  func validate() throws {
    if let maxAge {
      do { _ = try EngineDuration.parseSeconds(maxAge) } catch { throw ValidationError("--max-age: \(error)") }
    }
  }

  /// No rule given.
  var isEmpty: Bool {
    keepLast + keepHourly + keepDaily + keepWeekly + keepMonthly + keepYearly == 0 && maxAge == nil
  }

  func policy() throws -> RetentionPolicy {
    var p = RetentionPolicy()
    p.keepLast = keepLast
    p.keepHourly = keepHourly
    p.keepDaily = keepDaily
    p.keepWeekly = keepWeekly
    p.keepMonthly = keepMonthly
    p.keepYearly = keepYearly
    if let maxAge {
      // The contract's duration grammar, as the CRDs write it (m is minutes).
      do { p.maxAge = TimeInterval(try EngineDuration.parseSeconds(maxAge)) } catch {
        throw EngineError.usage("--max-age: \(error)")
      }
    }
    return p
  }
}

/// `botrt-engine rotate-keys`.
struct RotateKeysCommand: EngineCommand {
  static let configuration = CommandConfiguration(
    commandName: "rotate-keys", abstract: "Rewrap the data keys under a new KEK (data untouched).",
    discussion: """
      Either give the new KEK with --new-kms, or let the key service make one with --new-kek: Vault Transit, Azure \
      Key Vault and Google Cloud KMS make a new version of the key (Cloud KMS also makes it the primary) and rewrap \
      under it; AWS KMS creates a new key and rewraps under its id (reported in the result's kms field). A local key \
      needs --new-kms file:///path/of/the/new/key.
      """)
  @OptionGroup var repoOptions: RepoOptions
  @Option(name: .customLong(EngineFlag.newKMS), help: "The new KMS URL.")
  var newKms: String?
  @Flag(
    name: .customLong(EngineFlag.newKEK),
    help: "Have the key service create the new KEK (Vault Transit, AWS KMS, Azure Key Vault, Google Cloud KMS).")
  var newKek = false
  var commandName: String { "rotate-keys" }

  func validate() throws {
    if (newKms == nil) == !newKek { throw ValidationError("give exactly one of --new-kms URL or --new-kek") }
    // The contract's rule: which key services make their own new KEK.
    if newKek, let url = repoOptions.kms ?? repoOptions.env[EngineEnv.kms],
      let kind = EngineKMSKind(kmsURL: url), !kind.makesNewKEK
    {
      throw ValidationError("--new-kek needs a key service that makes new keys; for \(kind.rawValue):// give --new-kms")
    }
  }

  /// The key service to rotate to.
  func newService() async throws -> any KeyService {
    if let newKms { return try repoOptions.makeKMS(newKms) }
    let current = try repoOptions.makeKMS()
    if let vault = current as? VaultTransitKeyService {
      try await vault.rotateKEK()
      return vault
    }
    if let aws = current as? AWSKMSKeyService {
      let id = try await aws.createKey(description: "botrt repository key (rotated from \(aws.descriptor))")
      guard var c = URLComponents(string: try repoOptions.kmsURL()) else {
        throw EngineError.usage("--kms is not a URL")
      }
      c.host = id
      c.path = ""
      guard let url = c.string else { throw EngineError.usage("cannot build the KMS URL of the new key \(id)") }
      return try repoOptions.makeKMS(url)
    }
    if let azure = current as? AzureKeyVaultKeyService {
      _ = try await azure.rotateKEK()
      // Wrap under the new (current) version, also when the URL pinned an older one.
      guard azure.keyVersion != nil else { return azure }
      return try repoOptions.makeKMS("azurekv://\(azure.vault)/keys/\(azure.keyName)")
    }
    if let gcp = current as? GCPKMSKeyService {
      _ = try await gcp.rotateKEK()
      return gcp
    }
    throw EngineError.usage(
      "--new-kek works with Vault Transit, AWS KMS, Azure Key Vault and Google Cloud KMS; for \(current.descriptor) "
        + "give the new key with --new-kms")
  }

  func execute(_ result: inout CommandResult) async throws {
    let repo = try await repoOptions.open()
    let w = try await withLockedRepo(repo, exclusive: true, wait: try repoOptions.lockWait()) { () -> [String] in
      let service = try await newService()
      let w = try await repo.rotateKeys(to: service)
      result.kms = service.descriptor
      result.keyVersion = repo.keyVersion
      return w
    }
    fill(&result, repo)
    result.addWarnings(w)
    repoOptions.summary(
      [
        "rewrapped the data keys under \(result.kms ?? "the new key")"
          + (result.keyVersion.map { " (key version \($0))" } ?? "")
      ] + w.map { "warning: \($0)" })
  }
}

/// `botrt-engine delete-repository`.
struct DeleteRepositoryCommand: EngineCommand {
  static let configuration = CommandConfiguration(
    commandName: "delete-repository",
    abstract: "Delete every object of the repository (what Object Lock still protects is kept and reported).",
    discussion: """
      The repository is opened first (so the key service must accept the caller) and locked exclusively. When \
      Object Lock retains any object, the config and key files are kept too, so that the retained data stays \
      readable until its retention ends; run the command again then.
      """)
  @OptionGroup var repoOptions: RepoOptions
  @Flag(help: "Required: confirms that every backup in the repository is to be deleted.")
  var confirm = false
  var commandName: String { "delete-repository" }

  func validate() throws {
    if !confirm { throw ValidationError("delete-repository deletes every backup; add --confirm to do it") }
  }

  func execute(_ result: inout CommandResult) async throws {
    let store = try repoOptions.makeStore()
    if try await store.head("config") == nil, try await store.list(prefix: "").isEmpty,
      try await store.listAllVersionedKeys(prefix: "").isEmpty
    {
      // Nothing was ever stored (a policy deleted before its first backup): nothing to delete. On a versioned bucket
      // an attacker's delete markers can hide every object; their stored versions are looked for too.
      result.objectsDeleted = 0
      result.objectsRetained = 0
      result.addWarnings(["there is no repository at \(store.location): nothing to delete"])
      repoOptions.summary(["there is no repository at \(store.location): nothing to delete"])
      return
    }
    let repo = try await repoOptions.open()
    let lock = try await repo.lock(exclusive: true, wait: try repoOptions.lockWait())
    let r: RepositoryDeletion
    do {
      r = try await repo.deleteEverything(keeping: lock.key)
    } catch {
      await lock.release()
      throw error
    }
    await lock.release()
    if r.retained.isEmpty {
      // Everything else is gone: the lock's own versions go too (on a versioned bucket its release leaves one).
      do { try await repo.store.deleteAllVersions(lock.key) } catch {
        result.addWarnings(["could not delete the lock object \(lock.key): \(error)"])
      }
    }
    if !r.retained.isEmpty {
      // The repository stays (retained data, config, keys): keep a record of what was deleted.
      repo.audit.record(
        "deleted", details: ["objectsDeleted": "\(r.deleted)", "objectsRetained": "\(r.retained.count)"])
      do { try await repo.audit.flush() } catch {
        result.addWarnings(["could not store the audit trail: \(error)"])
      }
    }
    fill(&result, repo)
    result.objectsDeleted = r.deleted
    result.objectsRetained = r.retained.count
    result.bytesStored = -r.bytesFreed
    // The result goes to a termination message (at most 4 KiB): name a few retained objects only.
    result.addWarnings(r.retained.prefix(5).map { "retained by Object Lock, not deleted: \($0)" })
    if r.retained.count > 5 { result.addWarnings(["and \(r.retained.count - 5) more retained objects"]) }
    var lines = ["deleted \(r.deleted) objects (\(HumanFormat.bytes(r.bytesFreed))) of \(repo.store.location)"]
    if !r.retained.isEmpty {
      lines.append(
        "\(r.retained.count) objects are retained by Object Lock; the config and key files were kept with them: run "
          + "delete-repository again when their retention ends")
    }
    repoOptions.summary(lines)
  }
}

extension Repository {
  /// Loads the snapshots whose manifests pass their checks; damaged or planted ones are named in the warnings and
  /// returned as errors.
  func loadSnapshotsChecked() async throws -> ([Snapshot], [EngineError]) {
    let (snaps, errors) = try await loadSnapshots(collectErrors: true)
    addWarnings(errors.map { "skipped snapshot manifest: \($0.description)" })
    return (snaps, errors)
  }
  /// Loads the index files that pass their checks; damaged or planted ones are named in the warnings (a blob only they
  /// listed is then reported missing, naming the blob).
  func loadIndexForRestore() async throws -> MasterIndex { try await loadIndexSkippingDamaged() }
}

/// Parses the time of `--before`: RFC 3339 with a zone (Z or an offset), with or without fractional seconds.
func parseBefore(_ text: String) throws -> Date {
  if let d = EngineTime.parse(text) { return d }
  throw ValidationError(
    "--before '\(text)' is not an RFC 3339 time with a zone; write it like 2026-09-06T03:00:00Z or "
      + "2026-09-06T05:00:00+02:00")
}

/// Parses `backup --time`: RFC 3339 with a zone, with or without fractional seconds, or restic's
/// "2006-01-02 15:04:05" (no zone: the local time zone, as restic reads it).
func parseSnapshotTime(_ text: String) throws -> Date {
  if let d = EngineTime.parse(text) { return d }
  let local = DateFormatter()
  local.locale = Locale(identifier: "en_US_POSIX")
  local.calendar = Calendar(identifier: .gregorian)
  local.timeZone = TimeZone.current
  local.dateFormat = "yyyy-MM-dd HH:mm:ss"
  local.isLenient = false
  if let d = local.date(from: text), local.string(from: d) == text { return d }
  throw ValidationError(
    "--time '\(text)' is not a time; write it like 2026-01-02T15:04:05Z (RFC 3339) or '2026-01-02 15:04:05' "
      + "(local time)")
}

/// The snapshot a restore reads: `ref` as `Repository.findSnapshot` resolves it, or, with a `before` time, the newest
/// snapshot taken at or before it (by manifest time, then sequence number).
func selectSnapshot(_ ref: String, before: Date?, in snaps: [Snapshot], repo: Repository) throws -> Snapshot {
  guard let before else { return try repo.findSnapshot(ref, in: snaps) }
  let eligible = snaps.filter { $0.manifest.date <= before }
  guard
    let s = eligible.max(by: { ($0.manifest.date, $0.manifest.seq) < ($1.manifest.date, $1.manifest.seq) })
  else {
    let f = ISO8601DateFormatter()
    let oldest = snaps.map(\.manifest.date).min()
    throw EngineError.snapshotNotFound(
      "latest --before \(f.string(from: before)) (no snapshot was taken at or before that time; "
        + (oldest.map { "the oldest is from \(f.string(from: $0)))" } ?? "the repository has no snapshots)"))
  }
  return s
}

extension Compression: ExpressibleByArgument {}
