import Foundation

/// A loopback HTTP/1.1 server in Python for the libcurl tests, one process per test.
///
/// It writes its port to a file (written then renamed, so never half-read) and serves fixed paths:
/// `/hello`, `/status/N`, `/slow?delay=S`, `/stream?name=&chunks=&size=&headdelay=` (chunked; chunk
/// `i` is `size` bytes of value `i % 256`), `/sent?name=` (chunks written so far), `/state?name=`
/// (`running`, `done`, or `aborted` once the client went away) and `PUT`/`POST`
/// of any path (echoes the body).
final class FixtureServer {
  let port: Int
  private let process: Process
  private let directory: URL

  private init(port: Int, process: Process, directory: URL) {
    self.port = port
    self.process = process
    self.directory = directory
  }

  func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }

  static func start() async throws -> FixtureServer {
    let fm = FileManager.default
    let dir = fm.temporaryDirectory.appendingPathComponent("botrt-curlhttp-\(UUID().uuidString)")
    try fm.createDirectory(at: dir, withIntermediateDirectories: true)
    let script = dir.appendingPathComponent("server.py")
    try Data(serverScript.utf8).write(to: script)
    let portFile = dir.appendingPathComponent("port")
    let stderrFile = dir.appendingPathComponent("stderr.log")
    guard fm.createFile(atPath: stderrFile.path, contents: nil) else {
      throw FixtureError("cannot create \(stderrFile.path) for the fixture server's stderr")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", script.path, portFile.path]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = try FileHandle(forWritingTo: stderrFile)
    try process.run()
    let deadline = ContinuousClock.now + .seconds(15)
    while ContinuousClock.now < deadline {
      if fm.fileExists(atPath: portFile.path) {
        let text = try String(contentsOf: portFile, encoding: .utf8)
        guard let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
          kill(process.processIdentifier, SIGKILL)
          throw FixtureError("fixture server wrote an invalid port \"\(text)\" to \(portFile.path)")
        }
        return FixtureServer(port: port, process: process, directory: dir)
      }
      if !process.isRunning { break }
      try await Task.sleep(for: .milliseconds(50))
    }
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    let stderr = String(decoding: fm.contents(atPath: stderrFile.path) ?? Data(), as: UTF8.self)
    throw FixtureError(
      "python3 fixture server (\(script.path)) did not report its port within 15 s; is python3 on PATH? stderr: \(stderr)"
    )
  }

  func stop() {
    // SIGKILL: the test process may block SIGTERM in the child (see the script), and KILL cannot be blocked.
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    do {
      try FileManager.default.removeItem(at: directory)
    } catch {
      // Only a temp directory is left behind; say so instead of hiding it.
      print("note: could not remove fixture directory \(directory.path): \(error)")
    }
  }
}

/// A fixture could not be set up.
struct FixtureError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}

private let serverScript = #"""
  import os, signal, sys, threading, time
  from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
  from urllib.parse import urlparse, parse_qs

  sent = {}
  state = {}
  lock = threading.Lock()

  class H(BaseHTTPRequestHandler):
      protocol_version = "HTTP/1.1"

      def log_message(self, *args):
          pass

      def reply(self, status, body=b"", headers=()):
          self.send_response(status)
          for k, v in headers:
              self.send_header(k, v)
          self.send_header("Content-Length", str(len(body)))
          self.end_headers()
          if self.command != "HEAD":
              self.wfile.write(body)

      def do_HEAD(self):
          self.do_GET()

      def do_GET(self):
          u = urlparse(self.path)
          q = {k: v[0] for k, v in parse_qs(u.query).items()}
          if u.path == "/hello":
              self.reply(200, b"hello", [("X-Test", "yes"), ("X-Echo-Custom", self.headers.get("X-Custom", ""))])
          elif u.path.startswith("/status/"):
              code = int(u.path.rsplit("/", 1)[1])
              self.reply(code, ("status %d" % code).encode(), [("Retry-After", "7")])
          elif u.path == "/slow":
              time.sleep(float(q.get("delay", "5")))
              self.reply(200, b"late")
          elif u.path == "/stream":
              name, n, size = q.get("name", "s"), int(q["chunks"]), int(q["size"])
              self.send_response(200)
              self.send_header("Transfer-Encoding", "chunked")
              self.send_header("Content-Type", "application/octet-stream")
              self.end_headers()
              self.wfile.flush()
              delay = float(q.get("headdelay", "0"))
              if delay:
                  time.sleep(delay)
              try:
                  for i in range(n):
                      data = bytes([i % 256]) * size
                      self.wfile.write(b"%x\r\n" % size + data + b"\r\n")
                      self.wfile.flush()
                      with lock:
                          sent[name] = i + 1
                  self.wfile.write(b"0\r\n\r\n")
                  self.wfile.flush()
                  with lock:
                      state[name] = "done"
              except (BrokenPipeError, ConnectionResetError):
                  with lock:
                      state[name] = "aborted"
                  self.close_connection = True
          elif u.path == "/sent":
              with lock:
                  n = sent.get(q.get("name", "s"), 0)
              self.reply(200, str(n).encode())
          elif u.path == "/state":
              with lock:
                  st = state.get(q.get("name", "s"), "running")
              self.reply(200, st.encode())
          else:
              self.reply(404, b"no such path")

      def do_PUT(self):
          length = int(self.headers.get("Content-Length", "0"))
          body = self.rfile.read(length)
          self.reply(201, body, [("X-Received-Length", str(len(body))),
                                 ("X-Received-Method", self.command),
                                 ("X-Received-Type", self.headers.get("Content-Type", ""))])

      do_POST = do_PUT

  # The test process may block SIGTERM and SIGINT in its threads, and a child inherits that mask.
  signal.pthread_sigmask(signal.SIG_SETMASK, [])
  signal.signal(signal.SIGTERM, signal.SIG_DFL)

  # Exit with the test process, even when it crashes or never calls stop().
  def watch_parent(parent=os.getppid()):
      while os.getppid() == parent:
          time.sleep(0.5)
      os._exit(0)

  threading.Thread(target=watch_parent, daemon=True).start()

  srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
  srv.daemon_threads = True
  tmp = sys.argv[1] + ".tmp"
  with open(tmp, "w") as f:
      f.write(str(srv.server_address[1]))
  os.rename(tmp, sys.argv[1])
  srv.serve_forever()
  """#
