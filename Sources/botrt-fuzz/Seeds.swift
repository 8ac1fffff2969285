// Seed inputs of the targets in Targets.swift, from the real writers where there is one.
import BackupEngine
import CurlHTTP
import EngineContract
import Foundation
import Logging

extension Fuzz {
  /// Seeds of the targets of Targets.swift: a real repository's config and key file (`Repository.initialize` with
  /// the harness KEK, in a temporary directory), manifests sealed by `SnapshotFormat.encodeObject`, results encoded by
  /// `EngineResult`, and texts as the cluster scripts and CRDs write them; plus edge cases.
  static func moreSeeds() async throws -> [String: [[UInt8]]] {
    let u = { (s: String) in Array(s.utf8) }
    let tmp = NSTemporaryDirectory() + "/botrt-fuzz-seeds-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: tmp) }
    guard let service = harnessKeyService else { throw FormatError("no harness key service") }
    let store = try LocalStore(root: tmp)
    _ = try await Repository.initialize(
      store: store, keyService: service, objectLock: nil, logger: Logger(label: "botrt-fuzz"))
    let configRaw = [UInt8](try await store.get("config"))
    let keyName = try await store.list(prefix: "keys/").map(\.key).sorted()[0]
    let keyFile = [UInt8](try await store.get(keyName))

    // config: the real one; the harness's, signed by the target (mode 1), with and without Object Lock.
    guard let harness = harnessConfig(keyFiles: "ed25519-signed-v1") else { throw FormatError("harness config") }
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let harnessBody = [UInt8](try e.encode(harness))
    var locked = harness
    locked.objectLock = ObjectLockConfig(mode: .compliance, days: 30)
    let lockedBody = [UInt8](try e.encode(locked))

    // keyfile: an older repository's unsigned key file for the harness repository, wrapped with the harness KEK.
    var wrapped: [String: WrappedKey] = [:]
    for n in ["meta", "mac", "chunker", "signing", "files", "database", "logs"] {
      let k = n == "signing" ? harnessSigning : [UInt8](repeating: UInt8(n.count), count: 32)
      wrapped[n] = try await service.wrap(k, context: "botrt:\(harnessRepoHex):\(n)")
    }
    struct UnsignedKeyFile: Encodable {
      var version = 1
      var repo: String
      var created = "2026-01-01T00:00:00Z"
      var kms: String
      var publicKey: String
      var keys: [String: WrappedKey]
    }
    let unsigned = [UInt8](
      try e.encode(
        UnsignedKeyFile(
          repo: harnessRepoHex, kms: service.descriptor, publicKey: Hex.encode(harnessPublic), keys: wrapped)))

    // manifest: a manifest as a backup writes it, encoded by the real writer with the harness keys.
    let manifestJSON =
      #"{"dataType":"files","hostname":"pod-1","paths":["/data"],"repo":"\#(harnessRepoHex)","seq":3,"#
      + #""parent":"\#(String(repeating: "ab", count: 32))","#
      + #""summary":{"bytes":1234,"dirs":2,"errors":0,"files":5},"tags":{"policy":"ns/p"},"#
      + #""time":"2026-01-02T03:04:05.678Z","tree":["\#(String(repeating: "cd", count: 32))"],"version":1}"#
    let m = try JSONDecoder().decode(Manifest.self, from: Data(manifestJSON.utf8))
    let meta = try AESGCM(key: harnessKey)
    let z = ZstdContext()
    let body = try SnapshotFormat.canonical(m)
    let object = try SnapshotFormat.encodeObject(
      m, signingKey: harnessSigning, meta: meta, zstd: z, repo: harnessRepo)
    var framed = ByteWriter()
    framed.u32(UInt32(body.count))
    framed.bytes(body)
    framed.bytes(try Ed25519.sign(Array("botrt-manifest-v1".utf8) + body, privateKey: harnessSigning))

    // result: what engine commands write.
    var backup = EngineResult.starting("backup")
    backup.snapshotId = String(repeating: "ef", count: 32)
    backup.snapshotTime = "2026-01-02T03:04:05.678Z"
    backup.files = 5
    backup.bytesRead = 1234
    backup.bytesStored = 900
    backup.repositoryId = String(repeating: "12", count: 16)
    backup.signingKey = Hex.encode(harnessPublic)
    backup.repository = "s3://bucket/prefix"
    backup.engineVersion = EngineVersion.current
    backup.repositoryStoredBytes = 10_000
    backup.addUnwraps(["vault-transit://vault:8200/transit/k": 4])
    var failed = EngineResult.starting("verify")
    failed.ok = false
    failed.exitCode = 3
    failed.addErrors((0..<200).map { "pack \($0) does not authenticate" })
    failed.skippedSnapshots = [.init(id: String(repeating: "01", count: 32), reason: "manifest signature is invalid")]
    var prune = EngineResult.starting("forget")
    prune.bytesStored = -5000
    prune.removed = ["a", "b"]
    prune.addWarnings(["skipped snapshot manifest: x"])

    let kubeconfig = """
      apiVersion: v1
      kind: Config
      clusters:
      - name: botrt-local
        cluster:
          server: https://127.0.0.1:6443
          certificate-authority-data: \(Data("-----BEGIN CERTIFICATE-----\n".utf8).base64EncodedString())
      users:
      - name: admin-token
        user:
          token: admintoken
      - name: exec
        user:
          exec:
            apiVersion: client.authentication.k8s.io/v1
            command: aws
            args: [eks, get-token]
            env: [{name: A, value: b}]
            interactiveMode: Never
      contexts:
      - name: botrt-token
        context:
          cluster: botrt-local
          user: admin-token
          namespace: default
      - name: local
        context: {cluster: botrt-local, user: exec}
      current-context: botrt-token

      """
    let anchors = """
      base: &b {server: "https://h:1", insecure-skip-tls-verify: true}
      clusters:
      - name: c
        cluster:
          <<: *b
      contexts: [{name: x, context: {cluster: c}}]
      current-context: x
      ---
      second: !!str 0x10

      """
    let watch = """
      {"type":"ADDED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"n",\
      "resourceVersion":"5","managedFields":[{"manager":"m"}]},"data":{"k":"v"}}}
      {"type":"MODIFIED","object":{"apiVersion":"dr.botrt.io/v1alpha1","kind":"BackupPolicy","metadata":\
      {"name":"p","namespace":"n","resourceVersion":"6"},"spec":{}}}
      {"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"7"}}}
      {"type":"DELETED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"n",\
      "resourceVersion":"8"}}}
      {"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource \
      version","reason":"Expired","code":410}}

      """
    return [
      "config": [
        [0] + configRaw, [1] + harnessBody, [1] + lockedBody, [0] + u(#"{"version":2}"#) + [10, 10], [1] + u("{}"),
      ],
      "keyfile": [configRaw + [0] + keyFile, keyFile, unsigned, configRaw + [0] + unsigned],
      "manifest": [[0] + object, [1] + framed.data, [2] + body, [2] + u(#"{"version":1}"#)],
      "result": [
        u(String(decoding: try backup.encodedLine(), as: UTF8.self)),
        u(String(decoding: try failed.encodedLine(maxBytes: EngineResult.terminationMessageLimit), as: UTF8.self)),
        u("sh: botrt-engine: not found\n" + String(decoding: try prune.encodedLine(), as: UTF8.self)),
        u(#"{"command":"backup","ok":true,"exitCode":0,"keyUnwraps":4,"storageRequests":"x"}"#),
      ],
      "watchframe": [[63] + u(watch), [0] + u(watch), [255] + u(String(repeating: "x", count: 5000) + "\n")],
      "wsframe": wsframeSeeds(),
      "kubeconfig": [u(kubeconfig), u(anchors), u("{}"), u("- a\n- b\n")],
      "cron": [
        "*/15 * * * *", "0 2 * * *", "@daily", "@every 1h30m", "0 0 30 2 *", "0 0 * * MON-FRI", "5 4 1-7/2 JAN,JUL ?",
        "@every 1.5h10ms", "59 23 31 12 SUN",
      ].map(u),
      "duration": ["7y", "90d", "1h30m", "0s", "1000y", "15m", "4m12s", "2w3d"].map(u),
    ]
  }

  /// A pods/exec session as a 1.20 kubelet answers it (the channels opened with empty messages, output, the exit
  /// status, a close), fragmented and with a ping; and a refusal with a chunked Status body.
  static func wsframeSeeds() -> [[UInt8]] {
    let u = { (s: String) in Array(s.utf8) }
    let head = u(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n")
    let frame = { (fin: Bool, op: WebSocketOpcode, p: [UInt8]) in
      WebSocketFrame(fin: fin, opcode: op, payload: p).encoded(maskKey: nil)
    }
    let status = u(
      #"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code","#
        + #""reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#)
    let session =
      head + frame(true, .binary, [1]) + frame(true, .binary, [2]) + frame(true, .binary, [3])
      + frame(true, .binary, [1] + u("out")) + frame(true, .binary, [2] + u("err"))
      + frame(true, .binary, [3] + status) + frame(true, .close, [0x03, 0xE8])
    let fragmented =
      head + frame(false, .binary, [1] + u("a")) + frame(true, .ping, u("p")) + frame(false, .continuation, u("b"))
      + frame(true, .continuation, [UInt8](repeating: 0x63, count: 300))
      + frame(true, .binary, [3] + u(#"{"status":"Success"}"#))
    let refused = u(
      "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + "1a\r\n{\"kind\":\"Status\",\"code\":403}\r\n0\r\n\r\n")
    return [[255] + session, [0] + session, [7] + fragmented, [255] + refused]
  }
}
