import Foundation
import Logging
import Testing

@testable import BackupEngine

/// A local Blob-service stand-in written in Python: it recomputes every request's Shared Key signature with the
/// known account key (403 AuthenticationFailed on a mismatch), and serves Put/Get (with x-ms-range)/HEAD/Delete
/// Blob, List Blobs (with marker paging) and Create Container from memory. URLs are emulator style:
/// http://127.0.0.1:PORT/<account>/<container>/<blob>.
final class FakeAzureBlobServer {
  let process: Process
  let port: Int
  let dir: String

  static let script = #"""
    import base64, hmac, hashlib, sys, threading, urllib.parse
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from email.utils import formatdate

    ACCOUNT, KEY = sys.argv[1], base64.b64decode(sys.argv[2])
    PAGE = int(sys.argv[3])
    blobs = {}
    lock = threading.Lock()
    log = open(sys.argv[4], "a")

    def string_to_sign(method, path, query, headers, length):
        h = {k.lower(): v for k, v in headers.items()}
        fields = [method, h.get("content-encoding", ""), h.get("content-language", ""),
                  "" if length == 0 else str(length), h.get("content-md5", ""), h.get("content-type", ""),
                  h.get("date", ""), h.get("if-modified-since", ""), h.get("if-match", ""), h.get("if-none-match", ""),
                  h.get("if-unmodified-since", ""), h.get("range", "")]
        xms = sorted((k, " ".join(v.strip().split())) for k, v in h.items() if k.startswith("x-ms-"))
        canon_headers = "".join("%s:%s\n" % kv for kv in xms)
        resource = "/" + ACCOUNT + path
        params = {}
        for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True):
            params.setdefault(k.lower(), []).append(v)
        for k in sorted(params):
            resource += "\n%s:%s" % (k, ",".join(sorted(params[k])))
        return "\n".join(fields) + "\n" + canon_headers + resource

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *a):
            pass

        def reply(self, status, body=b"", headers=None, code=None):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if code:
                self.send_header("x-ms-error-code", code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            sts = string_to_sign(self.command, path, query, self.headers, length)
            want = "SharedKey %s:%s" % (ACCOUNT, base64.b64encode(hmac.new(KEY, sts.encode(), hashlib.sha256).digest()).decode())
            got = self.headers.get("Authorization", "")
            ok = hmac.compare_digest(want, got)
            log.write("%s %s %s\n" % ("ok" if ok else "BADSIG", self.command, path)); log.flush()
            if not ok:
                return self.reply(403, b"<?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code><Message>signature mismatch</Message></Error>", code="AuthenticationFailed")
            parts = path.split("/", 3)  # "", account, container, blob
            if len(parts) < 3 or parts[1] != ACCOUNT:
                return self.reply(400, code="InvalidUri")
            q = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
            container = urllib.parse.unquote(parts[2])
            if len(parts) == 3:
                if self.command == "PUT" and q.get("restype") == "container":
                    return self.reply(201)
                if self.command == "GET" and q.get("comp") == "list":
                    prefix, marker = q.get("prefix", ""), q.get("marker", "")
                    with lock:
                        names = sorted(n for (c, n) in blobs if c == container and n.startswith(prefix) and n > marker)
                    page, rest = names[:PAGE], names[PAGE:]
                    items = "".join(
                        "<Blob><Name>%s</Name><Properties><Last-Modified>%s</Last-Modified><Content-Length>%d</Content-Length></Properties></Blob>"
                        % (n.replace("&", "&amp;").replace("<", "&lt;"), formatdate(usegmt=True), len(blobs[(container, n)])) for n in page)
                    nxt = page[-1] if rest else ""
                    xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults><Blobs>%s</Blobs><NextMarker>%s</NextMarker></EnumerationResults>" % (items, nxt)
                    return self.reply(200, xml.encode(), {"Content-Type": "application/xml"})
                return self.reply(400, code="UnsupportedQueryParameter")
            name = urllib.parse.unquote(parts[3])
            k = (container, name)
            if self.command == "PUT":
                if self.headers.get("x-ms-blob-type") != "BlockBlob":
                    return self.reply(400, code="InvalidHeaderValue")
                with lock:
                    if self.headers.get("If-None-Match") == "*" and k in blobs:
                        return self.reply(409, code="BlobAlreadyExists")
                    blobs[k] = body
                return self.reply(201)
            with lock:
                data = blobs.get(k)
            if data is None:
                return self.reply(404, code="BlobNotFound")
            if self.command == "DELETE":
                with lock:
                    blobs.pop(k, None)
                return self.reply(202)
            hdrs = {"Last-Modified": formatdate(usegmt=True), "Content-Type": "application/octet-stream"}
            rng = self.headers.get("x-ms-range")
            if self.command == "GET" and rng:
                a, b = rng.split("=")[1].split("-")
                return self.reply(206, data[int(a):int(b) + 1], hdrs)
            if self.command == "HEAD":
                self.send_response(200)
                for kk, v in hdrs.items():
                    self.send_header(kk, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                return
            return self.reply(200, data, hdrs)

        do_GET = do_PUT = do_DELETE = do_HEAD = handle_any

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()
    """#

  init(account: String, key: String, pageSize: Int) throws {
    dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-azure-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try Data(Self.script.utf8).write(to: URL(fileURLWithPath: dir + "/server.py"))
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", dir + "/server.py", account, key, String(pageSize), dir + "/requests.log"]
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    process = p
    var bytes: [UInt8] = []
    while true {
      let d = out.fileHandleForReading.readData(ofLength: 1)
      if d.isEmpty || d[d.startIndex] == 10 { break }
      bytes.append(d[d.startIndex])
    }
    guard let port = Int(String(decoding: bytes, as: UTF8.self)) else {
      p.terminate()
      throw StorageError.failed(key: "fake azure", message: "the fake Azure server did not start")
    }
    self.port = port
  }

  /// "ok"/"BADSIG" per request, in order.
  func verdicts() throws -> [String] {
    try String(contentsOfFile: dir + "/requests.log", encoding: .utf8).split(separator: "\n").map {
      String($0.split(separator: " ")[0])
    }
  }

  /// SIGKILL: children spawned from the test runner can inherit a blocked SIGTERM.
  func stop() {
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    do { try FileManager.default.removeItem(atPath: dir) } catch {}
  }
}

@Suite struct AzureBlobStoreTests {
  static let account = "devstoreaccount1"
  static let key = AzureSharedKeyTests.devKey

  func store(_ server: FakeAzureBlobServer, key: String = Self.key) throws -> AzureBlobStore {
    let env = [
      "AZURE_STORAGE_BLOB_ENDPOINT": "http://127.0.0.1:\(server.port)/\(Self.account)", "AZURE_STORAGE_KEY": key,
    ]
    return try AzureBlobStore(
      url: URLComponents(string: "azblob://\(Self.account)/backups/repo")!, options: StoreOptions(environment: env),
      policy: RetryPolicy(maxAttempts: 2, backoff: .init(base: .milliseconds(10))))
  }

  @Test func putGetRangeHeadListDeleteOverHTTP() async throws {
    let server = try FakeAzureBlobServer(account: Self.account, key: Self.key, pageSize: 7)
    defer { server.stop() }
    let s = try store(server)
    #expect(s.location == "azblob://devstoreaccount1/backups/repo")
    try await s.createContainer()
    let body = Data((0..<50_000).map { UInt8(truncatingIfNeeded: $0 * 7) })
    try await s.put("data/ab/abc def", data: body)
    try await s.put("index/one", data: Data("i".utf8))
    #expect(try await s.get("data/ab/abc def") == body)
    #expect(try await s.getRange("data/ab/abc def", offset: 10, length: 100) == body.subdata(in: 10..<110))
    #expect(try await s.head("data/ab/abc def")?.size == 50_000)
    #expect(try await s.head("data/none") == nil)
    for i in 0..<20 { try await s.put("data/k\(i)", data: Data("\(i)".utf8)) }
    let listed = try await s.list(prefix: "data/")
    #expect(listed.count == 21)  // three pages of seven
    #expect(Set(listed.map(\.key)).contains("data/ab/abc def"))
    #expect(Set(try await s.list(prefix: "").map(\.key)).contains("index/one"))
    do {
      try await s.put("index/one", data: Data("again".utf8), options: PutOptions(ifNoneMatch: true))
      Issue.record("If-None-Match: * must refuse an existing blob")
    } catch StorageError.alreadyExists(let k) {
      #expect(k == "index/one")
    }
    try await s.delete("index/one")
    #expect(try await s.head("index/one") == nil)
    try await s.delete("index/one")
    await #expect(throws: StorageError.self) { _ = try await s.get("index/one") }
    // Every request carried a signature the server recomputed and accepted.
    #expect(try server.verdicts().allSatisfy { $0 == "ok" })
    #expect(try server.verdicts().count > 30)
  }

  /// Retention on Azure: backups, forget + prune (deleting a dead pack and repacking a partly used one), then
  /// restore and verify --read-data, all through the Blob REST API with Shared Key signatures.
  @Test func forgetPruneRestoreAndVerifyOnAzure() async throws {
    let server = try FakeAzureBlobServer(account: Self.account, key: Self.key, pageSize: 50)
    defer { server.stop() }
    let s = try store(server)
    try await s.createContainer()
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-az-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir + "/src", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try makeFile(atPath: dir + "/kek", contents: Data(Crypto.randomBytes(32)))
    let keep = Data(Crypto.randomBytes(1 << 20))
    try makeFile(atPath: dir + "/src/keep.bin", contents: keep)
    try makeFile(atPath: dir + "/src/drop.bin", contents: Data(Crypto.randomBytes(1 << 20)))
    let kms = try LocalKeyService(path: dir + "/kek")
    let repo = try await Repository.initialize(store: s, keyService: kms, objectLock: nil, logger: Logger(label: "t"))
    _ = try await repo.backup(BackupOptions(paths: [dir + "/src"], workers: 1))
    try FileManager.default.removeItem(atPath: dir + "/src/drop.bin")
    _ = try await repo.backup(BackupOptions(paths: [dir + "/src"], workers: 1))
    let packsBefore = try await s.list(prefix: "data/")
    var p = RetentionPolicy()
    p.keepLast = 1
    let r = try await repo.forget(policy: p, prune: true)
    #expect(r.removed.count == 1)
    #expect(r.packsRepacked == 1)
    #expect(r.packsDeleted >= 2, "the first snapshot's tree pack and the repacked pack")
    let packsAfter = try await s.list(prefix: "data/")
    let bytes = { (l: [ObjectInfo]) in l.reduce(Int64(0)) { $0 + $1.size } }
    #expect(bytes(packsBefore) - bytes(packsAfter) > 1_000_000, "drop.bin's MiB is reclaimed")
    #expect(try await s.list(prefix: "snapshots/").count == 1)
    #expect(try await s.list(prefix: "index/").count == 1)
    let reopened = try await Repository.open(store: s, keyService: kms, logger: Logger(label: "t"))
    let (snaps, _) = try await reopened.loadSnapshots()
    let (index, _) = try await reopened.loadIndex()
    _ = try await reopened.restore(
      try #require(snaps.last), index: index, options: RestoreOptions(target: dir + "/out"))
    #expect(FileManager.default.contents(atPath: dir + "/out/src/keep.bin") == keep)
    #expect(!FileManager.default.fileExists(atPath: dir + "/out/src/drop.bin"))
    let v = try await reopened.verify(snapshotRef: nil, readData: true)
    #expect(v.errors.isEmpty, "\(v.errors)")
    #expect(try server.verdicts().allSatisfy { $0 == "ok" })
  }

  @Test func wrongKeyIsAccessDeniedWithoutTheKey() async throws {
    let server = try FakeAzureBlobServer(account: Self.account, key: Self.key, pageSize: 100)
    defer { server.stop() }
    let wrong = Data((0..<64).map { UInt8($0) }).base64EncodedString()
    let s = try store(server, key: wrong)
    #expect(!String(reflecting: s).contains(wrong))
    do {
      try await s.put("x", data: Data("x".utf8))
      Issue.record("a wrong account key must be refused")
    } catch let e as StorageError {
      guard case .accessDenied(_, let message) = e else {
        Issue.record("expected accessDenied, got \(e)")
        return
      }
      #expect(message.contains("AuthenticationFailed"))
      #expect(!e.description.contains(wrong))
    }
    #expect(try server.verdicts() == ["BADSIG"])
  }

  @Test func configurationErrors() {
    #expect(throws: StorageError.self) {
      _ = try AzureBlobStore(
        url: URLComponents(string: "azblob://acct")!,
        options: StoreOptions(environment: ["AZURE_STORAGE_KEY": Self.key]))
    }
    #expect(throws: StorageError.self) {
      _ = try AzureBlobStore(url: URLComponents(string: "azblob://acct/c")!, options: StoreOptions(environment: [:]))
    }
  }
}
