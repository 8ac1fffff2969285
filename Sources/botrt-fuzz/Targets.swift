// The fuzz targets of the repository's signed objects and of the controller's inputs (see main.swift).
import BackupEngine
import CurlHTTP
import DRAPI
import EngineContract
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Reconcilers

extension Fuzz {
  /// The harness's Ed25519 signing key (private and public), so fuzzer input can be signed to reach what is behind the
  /// signature checks.
  static let harnessSigning = [UInt8](repeating: 3, count: 32)
  static let harnessPublic = (try? Ed25519.publicKey(privateKey: harnessSigning)) ?? []
  static let harnessRepoHex = Hex.encode(harnessRepo)
  /// The harness's key-encryption key, in a file (a `LocalKeyService` reads its key from one).
  static let harnessKEK = [UInt8](repeating: 5, count: 32)
  static let harnessKeyService: LocalKeyService? = {
    let path = NSTemporaryDirectory() + "/botrt-fuzz-kek-\(getpid())"
    guard FileManager.default.createFile(atPath: path, contents: Data(harnessKEK)) else { return nil }
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try? LocalKeyService(path: path)
  }()

  /// The signed message of a config body: "botrt-config-v1" || body (as `Repository.readConfig` checks it).
  static func signedConfig(body: [UInt8]) -> [UInt8]? {
    guard let sig = try? Ed25519.sign(Array("botrt-config-v1".utf8) + body, privateKey: harnessSigning) else {
      return nil
    }
    return body + Array("\n".utf8) + Array(Hex.encode(sig).utf8) + Array("\n".utf8)
  }

  /// Runs an async call to its end from the synchronous fuzz callback.
  static func blocking<T: Sendable>(_ f: @escaping @Sendable () async throws -> T) -> T? {
    let box = BlockingBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
      box.value = try? await f()
      done.signal()
    }
    done.wait()
    return box.value
  }

  /// The result of a `blocking` call (written by its task, read after the semaphore).
  final class BlockingBox<T>: @unchecked Sendable { var value: T? }

  // MARK: - manifest

  /// A stored snapshot object through `SnapshotFormat.decodeManifest` (what a listing does with each manifest). The
  /// first byte chooses what the rest is: 0 the stored object as is (magic, AES-GCM); 1 the framed plaintext (length,
  /// body, signature), sealed with the harness key; 2 the manifest JSON, signed and sealed with the harness keys (the
  /// JSON decoding and the checks after the signature).
  static let manifest: @Sendable ([UInt8]) -> Void = { input in
    guard let mode = input.first, let meta = try? AESGCM(key: Fuzz.harnessKey) else { return }
    let rest = Array(input.dropFirst())
    let z = ZstdContext()
    let magic = Array("BRTS".utf8) + [1]
    let aad = Array("botrt-snapshot-v1".utf8) + Fuzz.harnessRepo
    var obj = rest
    switch mode % 3 {
    case 0: break
    case 1:
      guard let sealed = try? meta.seal(z.compressFramed(rest), aad: aad) else { return }
      obj = magic + sealed
    default:
      guard let sig = try? Ed25519.sign(Array("botrt-manifest-v1".utf8) + rest, privateKey: Fuzz.harnessSigning)
      else { return }
      var w = ByteWriter()
      w.u32(UInt32(rest.count))
      w.bytes(rest)
      w.bytes(sig)
      guard let sealed = try? meta.seal(z.compressFramed(w.data), aad: aad) else { return }
      obj = magic + sealed
    }
    guard
      let m = try? SnapshotFormat.decodeManifest(
        obj, name: "fuzz", publicKey: Fuzz.harnessPublic, meta: meta, zstd: z, repo: Fuzz.harnessRepo,
        repositoryID: Fuzz.harnessRepoHex)
    else { return }
    // What readers do next: the time, the tree ids, the canonical form (copy re-signs it).
    _ = m.date
    _ = m.tree.map { ID(hex: $0) }
    _ = try? SnapshotFormat.canonical(m)
  }

  // MARK: - config

  /// A repository config object through `Repository.readConfig`, then what opening makes of it: the chunker of its
  /// parameters (a 4 KiB buffer cut into chunks) and the Object Lock retention. The first byte: 0 the object as is
  /// (self-signed: the signature is checked against the public key in it); 1 the body line, signed with the harness
  /// key (the seeds name its public key, so the checks after the signature are reached), also with pinned identity.
  static let config: @Sendable ([UInt8]) -> Void = { input in
    guard let mode = input.first else { return }
    var raw = Array(input.dropFirst())
    if mode & 1 == 1 {
      let body = raw.split(separator: 10, maxSplits: 1, omittingEmptySubsequences: false).first.map(Array.init) ?? []
      guard let signed = Fuzz.signedConfig(body: body) else { return }
      raw = signed
    }
    let pinned = RepositoryExpectation(repositoryID: Fuzz.harnessRepoHex, signingKey: Hex.encode(Fuzz.harnessPublic))
    _ = try? Repository.readConfig(Data(raw), location: "fuzz", expect: pinned)
    guard let (config, _) = try? Repository.readConfig(Data(raw), location: "fuzz") else { return }
    Fuzz.useConfig(config)
  }

  /// What `Repository.open` does with a config that passed its checks, without a store: the chunker and retention.
  static func useConfig(_ config: RepoConfig) {
    let c = config.chunker
    let chunker = Chunker(
      secret: [UInt8](repeating: 9, count: 32), parameters: ChunkerParameters(min: c.min, avg: c.avg, max: c.max))
    let buffer = [UInt8]((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31) })
    var offset = 0
    buffer.withUnsafeBytes { all in
      while offset < all.count {
        let rest = UnsafeRawBufferPointer(rebasing: all[offset...])
        guard let n = chunker.nextBoundary(rest, isFinal: true) else { break }
        // A chunk of no bytes (or more than there are) would stall or overrun the backup's loop.
        guard n > 0, n <= rest.count else { fatalError("the chunker cut \(n) of \(rest.count) bytes") }
        offset += n
      }
    }
    _ = config.objectLock.map { Date().addingTimeInterval(TimeInterval($0.days) * 86400) }
  }

  // MARK: - keyfile

  /// A key file through `Repository.acceptedKeyFile` (JSON, repository, signing key, signature), then the unwrap of
  /// its keys with the harness KEK, as `Repository.open` does. The input is a config object, a NUL byte and the key
  /// file (the seeds are a real repository's, made with the harness KEK); without a NUL, or when the config does
  /// not pass, the whole input is the key file, against a harness config that requires signed key files and one of
  /// an older repository that does not.
  static let keyfile: @Sendable ([UInt8]) -> Void = { input in
    var configs: [(RepoConfig, [UInt8])] = []
    var file = input
    if let nul = input.firstIndex(of: 0),
      let c = try? Repository.readConfig(Data(input[..<nul]), location: "fuzz")
    {
      configs = [c]
      file = Array(input[(nul + 1)...])
    } else {
      for scheme in ["ed25519-signed-v1", nil] {
        if let c = Fuzz.harnessConfig(keyFiles: scheme) { configs.append((c, Fuzz.harnessPublic)) }
      }
    }
    for (config, pub) in configs {
      guard case .success(let keys) = Repository.acceptedKeyFile(Data(file), config: config, configPublicKey: pub),
        let service = Fuzz.harnessKeyService
      else { continue }
      let id = config.id
      _ = Fuzz.blocking {
        for n in ["meta", "mac", "chunker", "signing"] {
          guard let w = keys[n] else { break }
          let k = try await service.unwrap(w, context: "botrt:\(id):\(n)")
          if n == "signing", k.count == 32 { _ = try Ed25519.publicKey(privateKey: k) }
        }
      }
    }
  }

  /// A config of the harness's repository (its id and signing key), requiring signed key files or (nil) not.
  static func harnessConfig(keyFiles: String?) -> RepoConfig? {
    let json =
      #"{"chunker":{"algorithm":"fastcdc-gear-keyed","avg":1048576,"max":8388608,"min":524288},"#
      + #""compression":"zstd-3","created":"2026-01-01T00:00:00Z","id":"\#(harnessRepoHex)","kms":"file:///fuzz","#
      + #""packSize":8388608,"publicKey":"\#(Hex.encode(harnessPublic))","version":1"#
      + (keyFiles.map { #","keyFiles":"\#($0)"}"# } ?? "}")
    return try? JSONDecoder().decode(RepoConfig.self, from: Data(json.utf8))
  }

  // MARK: - result

  /// A container's termination message as the controller reads it: `EngineResult.parse`, then what the reconcilers
  /// make of it for a finished backup, prune, verify, restore and audited Job (repository pins, retention and verify
  /// outcomes, the skipped-snapshot text, the drill's figures), and the engine's own cut to 4 KiB.
  static let result: @Sendable ([UInt8]) -> Void = { input in
    let message = String(decoding: input, as: UTF8.self)
    let parsed = EngineResult.parse(message)
    for succeeded in [true, false] {
      let job: JSONValue = [
        "metadata": ["name": "job-fuzz", "annotations": ["a": "b"]],
        "status":
          succeeded
          ? ["succeeded": 1, "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:01:00Z"]
          : [
            "startTime": "2026-01-01T00:00:00Z",
            "conditions": [
              [
                "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                "lastTransitionTime": "2026-01-01T00:01:00Z",
              ]
            ],
          ],
      ]
      let exitCode: JSONValue = .int(Int64(parsed?.exitCode ?? (succeeded ? 0 : 1)))
      let terminated: JSONValue = [
        "exitCode": exitCode, "reason": succeeded ? "Completed" : "Error", "message": .string(message),
        "finishedAt": "2026-01-01T00:01:00Z",
      ]
      let pods: [JSONValue] = [
        [
          "status": [
            "containerStatuses": [
              ["name": "backup", "state": ["terminated": terminated]],
              ["name": "verify", "state": ["terminated": terminated]],
            ]
          ]
        ]
      ]
      let run = BackupRun.observe(job: job, pods: pods)
      let verifyRun = BackupRun.observe(job: job, pods: pods, container: VerifyOutcome.container)
      _ = BackupPolicyStatusLogic.repositoryIdentity(
        previous: nil, runs: [run, run], repositoryURL: "s3://bucket/prefix")
      _ = RetentionOutcome.evaluate([run])
      let verify = VerifyOutcome.evaluate([verifyRun], previous: nil)
      var status = BackupPolicyStatus()
      _ = verify.apply(to: &status, generation: 1, now: Date(timeIntervalSince1970: 1_800_000_000))
      _ = SecurityAudit.newestResult(pods: pods)
      let observed = JobObservation.observe(job: job, pods: pods)
      for (_, t) in observed.containers { _ = t.engineResult }
      if let r = run.result {
        _ = SkippedSnapshotsText.describe(r.skippedSnapshots ?? [], chosen: r.snapshotId)
        _ = DrillLogic.restoredSnapshotTime(r, policy: status)
        _ = DrillLogic.bytesRead(restore: r, verify: r)
        _ = SecurityAudit.refusal(exitCode: r.exitCode, errors: r.errors ?? [])
      }
    }
    // The engine's side: a result cut to fit a termination message decodes back (the fields it never cuts, such as
    // ids, are the engine's own, so a hostile one may leave it longer than the limit).
    if let r = parsed, let line = try? r.encodedLine(maxBytes: EngineResult.terminationMessageLimit),
      EngineResult.parse(String(decoding: line, as: UTF8.self)) == nil
    {
      fatalError("a result cut to \(line.count) bytes does not decode")
    }
  }

  // MARK: - watchframe

  /// A watch response body, in chunks, through `WatchEventDecoder` (newline framing, a line limit, event decoding)
  /// of unstructured objects and of BackupPolicies, each event fed to the watcher's state machine. The first byte
  /// sets the chunk size (1 to 256 bytes).
  static let watchframe: @Sendable ([UInt8]) -> Void = { input in
    guard let first = input.first else { return }
    let body = Array(input.dropFirst())
    let size = Int(first) + 1
    let listed = try? JSONDecoder().decode(
      KubeList<Unstructured>.self, from: Data(#"{"metadata":{"resourceVersion":"1"},"items":[]}"#.utf8))
    var machine = WatcherMachine<Unstructured>()
    if let listed { _ = machine.listSucceeded(listed) }
    machine.watchStarted()
    var objects = WatchEventDecoder<Unstructured>(maxLineBytes: 4096, stripManagedFields: true)
    var policies = WatchEventDecoder<BackupPolicy>(maxLineBytes: 4096)
    var policiesFailed = false
    var start = 0
    while start < body.count {
      let chunk = body[start..<min(start + size, body.count)]
      start += size
      do {
        for e in try objects.feed(chunk) { _ = machine.received(e, now: .seconds(start)) }
      } catch {
        return  // the stream is abandoned at its first bad line, as the client does
      }
      if !policiesFailed {
        do { _ = try policies.feed(chunk) } catch { policiesFailed = true }
      }
    }
    if let events = try? objects.finish() { for e in events { _ = machine.received(e, now: .seconds(start)) } }
    if !policiesFailed { _ = try? policies.finish() }
    _ = machine.nextRequest()
  }

  // MARK: - wsframe

  /// What a server sends a pods/exec WebSocket client, in chunks, through the client's parsers: the upgrade answer's
  /// head (`WebSocketHandshake.parseHead`, `validate` against a fixed key, `dechunk` of a refusal's body), then the
  /// frames (`WebSocketFrameDecoder`, 4 KiB messages) and each binary message through `PodExecCollector` (256-byte
  /// tails). The first byte sets the chunk size (1 to 256 bytes).
  static let wsframe: @Sendable ([UInt8]) -> Void = { input in
    guard let first = input.first else { return }
    let body = Array(input.dropFirst())
    let size = Int(first) + 1
    var received: [UInt8] = []
    var decoder = WebSocketFrameDecoder(maxMessageBytes: 4096)
    var collector = PodExecCollector(outputLimit: 256)
    var upgraded = false
    var start = 0
    while start < body.count {
      let chunk = body[start..<min(start + size, body.count)]
      start += size
      if !upgraded {
        received += chunk
        let parsed: (head: WebSocketHandshake.ResponseHead, length: Int)?
        do { parsed = try WebSocketHandshake.parseHead(received) } catch { return }
        guard let (head, length) = parsed else { continue }
        let rest = Array(received[length...])
        if head.status != 101 {
          _ = WebSocketHandshake.dechunk(rest, limit: 1024)
          return
        }
        _ = try? WebSocketHandshake.validate(head, key: "dGhlIHNhbXBsZSBub25jZQ==", subprotocols: ["v4.channel.k8s.io"])
        upgraded = true
        decoder.append(rest)
      } else {
        decoder.append(chunk)
      }
      do {
        while let frame = try decoder.next() {
          if frame.payload.count > 4096 { fatalError("a message of \(frame.payload.count) bytes passed a 4 KiB limit") }
          if frame.opcode == .binary, try collector.consume(frame.payload) { return }
        }
      } catch {
        return  // the session is abandoned at its first violation, as the client does
      }
    }
    let r = collector.result(exitCode: 0)
    if r.stdout.count > 256 || r.stderr.count > 256 { fatalError("an output tail passed its 256-byte limit") }
  }

  // MARK: - kubeconfig

  /// A kubeconfig through `Kubeconfig.parse` (libyaml, then the fields), and the client configuration of each
  /// context whose credentials are inline (a file path would be read). Also the multi-document YAML parser.
  static let kubeconfig: @Sendable ([UInt8]) -> Void = { input in
    let text = String(decoding: input, as: UTF8.self)
    _ = try? YAML.parseDocuments(text, file: "fuzz.yaml")
    guard let kc = try? Kubeconfig.parse(text, file: "/nonexistent/botrt-fuzz/kubeconfig") else { return }
    for (name, ctx) in kc.contexts {
      let cluster = kc.clusters[ctx.value.cluster]?.value
      let user = kc.users[ctx.value.user]?.value
      guard cluster?.certificateAuthority == nil, user?.clientCertificate == nil, user?.clientKey == nil else {
        continue
      }
      _ = try? kc.clientConfig(context: name)
    }
    _ = try? kc.clientConfig()
  }

  // MARK: - cron

  /// A schedule through `CronSchedule` (fields, macros, @every), then its next fire times from a few instants (the
  /// epoch, now, far in the past and future) and its longest interval, as the RPO check computes it.
  static let cron: @Sendable ([UInt8]) -> Void = { input in
    let text = String(decoding: input, as: UTF8.self)
    _ = CronSchedule.isValid(text)
    guard let s = try? CronSchedule(text) else { return }
    for t in [0, 1_800_000_000, -62_135_596_800, 253_402_300_799, 3.1e15, -3.1e15, .infinity, .nan] as [Double] {
      let from = Date(timeIntervalSince1970: t)
      if let n = s.next(after: from), n <= from, s.fixedInterval == nil {
        fatalError("'\(text)': next fire \(n) is not after \(from)")
      }
    }
    _ = s.maxInterval(from: Date(timeIntervalSince1970: 1_800_000_000))
  }

  // MARK: - duration

  /// A duration through the one grammar (`EngineDuration`, and the CRDs' `DurationText` over it); what parses must
  /// format and parse back to the same seconds.
  static let duration: @Sendable ([UInt8]) -> Void = { input in
    let text = String(decoding: input, as: UTF8.self)
    _ = try? DurationText.parseSeconds(text, field: "fuzz")
    guard let v = try? EngineDuration.parseSeconds(text) else { return }
    guard v >= 0, v <= EngineDuration.maxSeconds else { fatalError("'\(text)' parsed to \(v)") }
    let f = EngineDuration.format(seconds: v)
    guard (try? EngineDuration.parseSeconds(f)) == v else { fatalError("'\(text)' = \(v) s formats to '\(f)'") }
  }
}
