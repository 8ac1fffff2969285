import Foundation
import Testing

@testable import BackupEngine

/// A failure of the backend integration tests' own setup.
struct BackendTestError: Error, CustomStringConvertible {
  var description: String
  init(_ d: String) { description = d }
}

/// The test environment contract's variables; a missing one is a failure, not a skip.
enum ServiceEnv {
  static var all: [String: String] { ProcessInfo.processInfo.environment }

  static func require(_ name: String) throws -> String {
    guard let v = all[name], !v.isEmpty else {
      throw BackendTestError(
        "\(name) is not set: start the services with hack/services.sh up and export them "
          + "(source <(hack/services.sh env)), or run hack/test.sh")
    }
    return v
  }

  /// The S3 environment (endpoint and credentials) of one S3 server, checked.
  static func s3(_ server: S3Server = .moto) throws -> (endpoint: String, env: [String: String]) {
    let endpoint = try require(server.endpointVariable)
    _ = try require("AWS_ACCESS_KEY_ID")
    _ = try require("AWS_SECRET_ACCESS_KEY")
    return (endpoint, all)
  }

  /// A fresh lower-case bucket name.
  static func bucketName(_ tag: String) -> String {
    "botrt-\(tag)-\(UUID().uuidString.lowercased().prefix(13))"
  }
}

/// The S3 servers of hack/services.sh. The S3 integration tests take them as arguments, so each runs against both:
/// moto (a mock that does not check signatures) and SeaweedFS (a real object store that verifies every SigV4
/// signature with the same credentials). Its endpoint missing is a failure, as for every service.
enum S3Server: String, CaseIterable, Sendable, CustomTestStringConvertible {
  case moto
  case seaweedfs

  var endpointVariable: String {
    switch self {
    case .moto: "BOTRT_S3_ENDPOINT"
    case .seaweedfs: "BOTRT_SEAWEED_ENDPOINT"
    }
  }

  var testDescription: String { rawValue }
}

/// A fault-injecting HTTP proxy (Python, on a free loopback port) in front of a real server.
///
/// Each incoming request takes the next action from the schedule: `pass` forwards it, `500`/`503` answer
/// with that status, `slowdown` answers 503 SlowDown, `reset` closes the connection with a TCP RST, `stall`
/// reads the request and then sends nothing. When the schedule is used up every request passes. Each request's
/// action is appended to `logPath` as "ACTION METHOD PATH".
final class FaultProxy {
  let process: Process
  let port: Int
  let logPath: String
  let dir: String

  static let script = #"""
    import socket, sys, threading, time
    upstream_host, upstream_port = sys.argv[1], int(sys.argv[2])
    schedule = [s for s in sys.argv[3].split(",") if s]
    log_path = sys.argv[4]
    lock = threading.Lock()

    def read_request(conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return head, body

    def respond(conn, status, reason, body=b""):
        conn.sendall(b"HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                     % (status, reason, len(body)) + body)

    def forward(head, body):
        lines = head.split(b"\r\n")
        kept = [l for l in lines[1:] if not l.lower().startswith(b"connection:")]
        raw = b"\r\n".join([lines[0]] + kept + [b"Connection: close"]) + b"\r\n\r\n" + body
        up = socket.create_connection((upstream_host, upstream_port))
        up.sendall(raw)
        out = b""
        while True:
            chunk = up.recv(65536)
            if not chunk:
                break
            out += chunk
        up.close()
        return out

    def handle(conn):
        try:
            req = read_request(conn)
            if req is None:
                return
            head, body = req
            with lock:
                action = schedule.pop(0) if schedule else "pass"
            first = head.split(b"\r\n")[0].decode("latin-1").split(" ")
            with open(log_path, "a") as f:
                f.write("%s %s %s\n" % (action, first[0], first[1] if len(first) > 1 else "?"))
            if action == "pass":
                conn.sendall(forward(head, body))
            elif action in ("500", "503"):
                respond(conn, int(action), b"Injected", b"<Error><Code>InternalError</Code><Message>injected</Message></Error>")
            elif action == "slowdown":
                respond(conn, 503, b"Slow Down", b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>")
            elif action == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            elif action == "stall":
                time.sleep(60)
        except OSError:
            pass
        finally:
            conn.close()

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    print(srv.getsockname()[1], flush=True)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()
    """#

  /// Starts the proxy in front of `upstream` ("http://host:port") with a schedule such as ["500", "reset"].
  init(upstream: String, schedule: [String]) throws {
    guard let u = URLComponents(string: upstream), let host = u.host, let uport = u.port else {
      throw BackendTestError("upstream \(upstream) must be http://host:port")
    }
    dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-proxy-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let scriptPath = dir + "/proxy.py"
    logPath = dir + "/proxy.log"
    try Data(Self.script.utf8).write(to: URL(fileURLWithPath: scriptPath))
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", scriptPath, host, String(uport), schedule.joined(separator: ","), logPath]
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    process = p
    let line = out.fileHandleForReading.readLine()
    guard let port = Int(line) else {
      p.terminate()
      throw BackendTestError("the fault proxy did not print its port (got '\(line)')")
    }
    self.port = port
  }

  var url: String { "http://127.0.0.1:\(port)" }

  /// The actions taken so far, in order.
  func actions() throws -> [String] {
    guard FileManager.default.fileExists(atPath: logPath) else { return [] }
    return try String(contentsOfFile: logPath, encoding: .utf8).split(separator: "\n").map {
      String($0.split(separator: " ").first ?? "")
    }
  }

  /// SIGKILL: children spawned from the test runner can inherit a blocked SIGTERM.
  func stop() {
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    do { try FileManager.default.removeItem(atPath: dir) } catch {}
  }
}

extension FileHandle {
  /// Reads one line (without its newline); blocks until it arrives or the pipe closes.
  func readLine() -> String {
    var bytes: [UInt8] = []
    while true {
      let d = readData(ofLength: 1)
      if d.isEmpty || d[d.startIndex] == 10 { break }
      bytes.append(d[d.startIndex])
    }
    return String(decoding: bytes, as: UTF8.self)
  }
}

/// Random bytes for payloads.
func randomData(_ n: Int) -> Data {
  var g = SystemRandomNumberGenerator()
  var d = Data(count: n)
  d.withUnsafeMutableBytes { raw in
    var i = 0
    while i + 8 <= n {
      raw.storeBytes(of: g.next() as UInt64, toByteOffset: i, as: UInt64.self)
      i += 8
    }
    while i < n {
      raw[i] = UInt8.random(in: 0...255, using: &g)
      i += 1
    }
  }
  return d
}
