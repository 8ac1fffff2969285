import Foundation
import Synchronization
import Testing

@testable import CurlHTTP

/// `CurlClient.webSocket` end to end against a loopback server in Python that plays a WebSocket server, well or
/// badly: frames split across writes, a ping the client must answer (masked), refusals with their bodies, a wrong
/// Accept, a hostile length, silence until the timeout, a connection that ends without a close frame.
@Suite struct WebSocketSessionTests {
  let client = CurlClient()

  func run(_ server: WSFixtureServer, _ mode: String, timeout: Duration = .seconds(10)) async throws -> (
    WebSocketOutcome, [(WebSocketOpcode, [UInt8])]
  ) {
    let messages = Mutex<[(WebSocketOpcode, [UInt8])]>([])
    let outcome = try await client.webSocket(
      WebSocketRequest(
        url: server.url("/\(mode)"), headers: [("Authorization", "Bearer secret-token")],
        subprotocols: ["v4.channel.k8s.io"], maxMessageBytes: 1 << 20),
      timeout: timeout
    ) { op, payload in
      messages.withLock { $0.append((op, payload)) }
      return .continue
    }
    return (outcome, messages.withLock { $0 })
  }

  @Test func aSessionReassemblesFragmentsAnswersPingsAndEndsOnClose() async throws {
    let server = try await WSFixtureServer.start()
    defer { server.stop() }
    let (outcome, messages) = try await run(server, "session")
    #expect(messages.map(\.0) == [.binary, .binary, .text])
    #expect(messages.count == 3)
    guard messages.count == 3 else { return }
    #expect(messages[0].1 == [1] + Array("hello".utf8))
    #expect(messages[1].1 == [2] + [UInt8](repeating: 0x78, count: 70_000))
    // The server says whether our pong was masked and carried the ping's payload, and whether it saw the token.
    #expect(String(decoding: messages[2].1, as: UTF8.self) == "pong ok, auth ok")
    guard case .closed(let proto, let code, let reason, let byClient) = outcome else {
      Issue.record("\(outcome)")
      return
    }
    #expect(proto == "v4.channel.k8s.io" && code == 1000 && reason == "bye" && !byClient)
  }

  @Test func aHandlerCanEndTheSession() async throws {
    let server = try await WSFixtureServer.start()
    defer { server.stop() }
    let outcome = try await client.webSocket(
      WebSocketRequest(url: server.url("/session"), subprotocols: ["v4.channel.k8s.io"]), timeout: .seconds(10)
    ) { _, _ in .close }
    guard case .closed(_, _, _, let byClient) = outcome else {
      Issue.record("\(outcome)")
      return
    }
    #expect(byClient)
  }

  @Test(arguments: [("refuse-length", 403), ("refuse-chunked", 404)])
  func aRefusalReturnsItsStatusAndBodyWithoutWaitingForTheConnectionToEnd(mode: String, status: Int) async throws {
    let server = try await WSFixtureServer.start()
    defer { server.stop() }
    let t0 = ContinuousClock.now
    let (outcome, _) = try await run(server, mode)
    guard case .refused(let response) = outcome else {
      Issue.record("\(outcome)")
      return
    }
    #expect(response.status == status)
    #expect(String(decoding: response.body, as: UTF8.self) == #"{"kind":"Status","code":\#(status)}"#)
    #expect(ContinuousClock.now - t0 < .seconds(5))
  }

  @Test(arguments: ["bad-accept", "huge-frame", "masked-frame"])
  func aBrokenServerIsAProtocolError(mode: String) async throws {
    let server = try await WSFixtureServer.start()
    defer { server.stop() }
    await #expect(throws: WebSocketProtocolError.self, "\(mode)") { _ = try await run(server, mode) }
  }

  @Test func aSilentServerTimesOutAndTheConnectionIsClosed() async throws {
    let server = try await WSFixtureServer.start()
    defer { server.stop() }
    let t0 = ContinuousClock.now
    do {
      let r = try await run(server, "silent", timeout: .seconds(1))
      Issue.record("a silent server gave \(r.0)")
    } catch let e as HTTPTransportError {
      #expect(e.kind == .timeout, "\(e)")
      #expect(!e.description.contains("secret-token"))
    }
    #expect(ContinuousClock.now - t0 < .seconds(4))
    // The server saw the connection end.
    var closed = false
    for _ in 0..<50 where !closed {
      closed = try server.log().contains("silent: client closed")
      if !closed { try await Task.sleep(for: .milliseconds(100)) }
    }
    #expect(closed, "\((try? server.log()) ?? "")")
  }

  @Test func extremeTimeoutsNeitherTrapNorHang() async throws {
    let server = try await WSFixtureServer.start()
    defer { server.stop() }
    // A huge timeout is capped (the session still ends with the server's close); a negative one is already over.
    let (outcome, _) = try await run(server, "eof", timeout: .seconds(Int64.max))
    guard case .closed = outcome else {
      Issue.record("\(outcome)")
      return
    }
    await #expect(throws: HTTPTransportError.self) { _ = try await run(server, "eof", timeout: .seconds(-5)) }
  }

  @Test func aConnectionThatEndsWithoutACloseFrameSaysSo() async throws {
    let server = try await WSFixtureServer.start()
    defer { server.stop() }
    let (outcome, messages) = try await run(server, "eof")
    #expect(messages.count == 1)
    guard case .closed(_, let code, _, let byClient) = outcome else {
      Issue.record("\(outcome)")
      return
    }
    #expect(code == nil && !byClient)
  }

  @Test func cancellingTheTaskEndsTheSession() async throws {
    let server = try await WSFixtureServer.start()
    defer { server.stop() }
    let task = Task { try await run(server, "silent", timeout: .seconds(60)) }
    try await Task.sleep(for: .milliseconds(500))
    let t0 = ContinuousClock.now
    task.cancel()
    do {
      _ = try await task.value
      Issue.record("a cancelled session returned")
    } catch let e as HTTPTransportError {
      #expect(e.kind == .cancelled, "\(e)")
    }
    #expect(ContinuousClock.now - t0 < .seconds(2))
  }
}

/// A loopback WebSocket server in Python; the request path picks its behaviour (see the script).
final class WSFixtureServer: Sendable {
  let port: Int
  private let process: Process
  private let directory: URL

  private init(port: Int, process: Process, directory: URL) {
    self.port = port
    self.process = process
    self.directory = directory
  }

  func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }

  func log() throws -> String {
    String(decoding: try Data(contentsOf: directory.appendingPathComponent("log")), as: UTF8.self)
  }

  static func start() async throws -> WSFixtureServer {
    let fm = FileManager.default
    let dir = fm.temporaryDirectory.appendingPathComponent("botrt-ws-\(UUID().uuidString)")
    try fm.createDirectory(at: dir, withIntermediateDirectories: true)
    let script = dir.appendingPathComponent("server.py")
    try Data(wsServerScript.utf8).write(to: script)
    let portFile = dir.appendingPathComponent("port")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", script.path, portFile.path, dir.appendingPathComponent("log").path]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    let deadline = ContinuousClock.now + .seconds(15)
    while ContinuousClock.now < deadline {
      if let text = try? String(contentsOf: portFile, encoding: .utf8),
        let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
      {
        return WSFixtureServer(port: port, process: process, directory: dir)
      }
      if !process.isRunning { break }
      try await Task.sleep(for: .milliseconds(50))
    }
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    throw FixtureError("the python3 WebSocket fixture server did not report its port within 15 s")
  }

  func stop() {
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    try? FileManager.default.removeItem(at: directory)
  }
}

private let wsServerScript = #"""
  import base64, hashlib, os, socket, struct, sys, threading, time

  GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
  logf = open(sys.argv[2], "a", buffering=1)

  def log(s):
      logf.write(s + "\n")

  def frame(op, payload, fin=True, masked=False):
      b0 = (0x80 if fin else 0) | op
      n = len(payload)
      mb = 0x80 if masked else 0
      if n < 126:
          h = struct.pack("!BB", b0, mb | n)
      elif n <= 0xFFFF:
          h = struct.pack("!BBH", b0, mb | 126, n)
      else:
          h = struct.pack("!BBQ", b0, mb | 127, n)
      if masked:
          return h + b"\x01\x02\x03\x04" + bytes(c ^ b"\x01\x02\x03\x04"[i % 4] for i, c in enumerate(payload))
      return h + payload

  def read_frame(conn):
      def need(n):
          b = b""
          while len(b) < n:
              c = conn.recv(n - len(b))
              if not c:
                  raise EOFError()
              b += c
          return b
      b0, b1 = need(2)
      n = b1 & 0x7F
      if n == 126:
          n = struct.unpack("!H", need(2))[0]
      elif n == 127:
          n = struct.unpack("!Q", need(8))[0]
      key = need(4) if b1 & 0x80 else None
      data = need(n)
      if key:
          data = bytes(c ^ key[i % 4] for i, c in enumerate(data))
      return b0 & 0x0F, bool(key), data

  def handle(conn):
      req = b""
      while b"\r\n\r\n" not in req:
          c = conn.recv(4096)
          if not c:
              return
          req += c
      lines = req.split(b"\r\n\r\n")[0].decode().split("\r\n")
      mode = lines[0].split(" ")[1].lstrip("/")
      headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
      key = headers.get("sec-websocket-key", "")
      accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
      if mode == "bad-accept":
          accept = base64.b64encode(hashlib.sha1(b"wrong").digest()).decode()
      if mode == "refuse-length":
          body = b'{"kind":"Status","code":403}'
          conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
          time.sleep(30)
          return
      if mode == "refuse-chunked":
          body = b'{"kind":"Status","code":404}'
          conn.sendall(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n")
          time.sleep(0.2)
          conn.sendall(b"%x\r\n" % 10 + body[:10] + b"\r\n" + b"%x\r\n" % (len(body) - 10) + body[10:] + b"\r\n0\r\n\r\n")
          time.sleep(30)
          return
      conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n" % accept).encode())
      if mode == "session":
          wire = frame(2, b"\x01hel", fin=False) + frame(9, b"pingdata") + frame(0, b"lo")
          for b in wire:  # one byte per write
              conn.sendall(bytes([b]))
              time.sleep(0.001)
          conn.sendall(frame(2, b"\x02" + b"x" * 70000))
          op, masked, data = read_frame(conn)
          pong = "pong ok" if (op == 0xA and masked and data == b"pingdata") else "pong bad %d %s %r" % (op, masked, data)
          auth = "auth ok" if headers.get("authorization") == "Bearer secret-token" else "auth missing"
          conn.sendall(frame(1, ("%s, %s" % (pong, auth)).encode()))
          conn.sendall(frame(8, struct.pack("!H", 1000) + b"bye"))
          try:
              op, masked, data = read_frame(conn)
              log("session: client answered op %d masked %s" % (op, masked))
          except EOFError:
              log("session: no close answer")
      elif mode == "huge-frame":
          conn.sendall(b"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00")
          time.sleep(5)
      elif mode == "masked-frame":
          conn.sendall(frame(2, b"\x01x", masked=True))
          time.sleep(5)
      elif mode == "silent":
          conn.settimeout(60)
          try:
              while conn.recv(4096):
                  pass
          except Exception:
              pass
          log("silent: client closed")
      elif mode == "eof":
          conn.sendall(frame(2, b"\x01last"))
          conn.shutdown(socket.SHUT_RDWR)
      elif mode == "bad-accept":
          time.sleep(5)

  def serve(conn):
      try:
          handle(conn)
      except Exception as e:
          log("error: %r" % e)
      finally:
          conn.close()

  s = socket.socket()
  s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  s.bind(("127.0.0.1", 0))
  s.listen(16)
  tmp = sys.argv[1] + ".tmp"
  with open(tmp, "w") as f:
      f.write(str(s.getsockname()[1]))
  os.rename(tmp, sys.argv[1])
  while True:
      c, _ = s.accept()
      threading.Thread(target=serve, args=(c,), daemon=True).start()
  """#
