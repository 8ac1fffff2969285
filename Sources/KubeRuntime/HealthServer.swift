import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A failure to start the metrics/health server; names the address.
public struct HealthServerError: Error, Sendable, CustomStringConvertible {
  public var address: String
  public var message: String
  public var description: String { "metrics/health server on \(address): \(message)" }
}

/// A small HTTP/1.1 server on a raw POSIX socket serving `/metrics` (Prometheus text), `/healthz` and `/readyz`.
///
/// `/readyz` answers 200 when `setReady(true)` was called and the readiness check (if any) passes: with leader
/// election the manager makes it "healthy and able to take over" (the apiserver answers this candidate's lease
/// calls), so a standby replica is Ready too; leadership shows in the `botrt_leader` gauge instead.
///
/// It runs on its own thread (blocking accept, one short request per connection, 5 s read timeout) so it never
/// touches Swift's cooperative pool; `stop()` shuts the listening socket down and joins the thread.
public final class HealthServer: Sendable {
  public let host: String
  private let requestedPort: UInt16
  /// The metrics `/metrics` renders.
  public let registry: MetricsRegistry
  private let logger: Logger
  private let ready = Mutex(false)
  private let readyCheck = Mutex<(@Sendable () -> Bool)?>(nil)
  private let live = Mutex(true)

  private struct Runtime {
    var fd: Int32 = -1
    var port: UInt16 = 0
    var stopping = false
    var started = false
  }

  private let runtime = Mutex(Runtime())
  private let finished = DispatchSemaphore(value: 0)

  /// - Parameters:
  ///   - host: an IPv4 address to bind, e.g. "127.0.0.1" or "0.0.0.0".
  ///   - port: the port; 0 picks a free one (see `port` after `start()`).
  public init(host: String = "127.0.0.1", port: UInt16, registry: MetricsRegistry, logger: Logger) {
    self.host = host
    self.requestedPort = port
    self.registry = registry
    self.logger = logger
  }

  /// The bound port (after `start()`).
  public var port: UInt16 { runtime.withLock { $0.port } }

  /// Sets what `/readyz` answers (503 until set to true).
  public func setReady(_ value: Bool) { ready.withLock { $0 = value } }
  /// Sets a check `/readyz` also needs to pass (nil: none), asked on every request.
  public func setReadyCheck(_ check: (@Sendable () -> Bool)?) { readyCheck.withLock { $0 = check } }
  /// Whether `/readyz` answers 200 now.
  public var isReady: Bool {
    guard ready.withLock({ $0 }) else { return false }
    return readyCheck.withLock { $0 }?() ?? true
  }
  /// Sets what `/healthz` answers (200 unless set to false).
  public func setLive(_ value: Bool) { live.withLock { $0 = value } }

  /// Binds, listens and starts the serving thread.
  public func start() throws {
    let address = "\(host):\(requestedPort)"
    func fail(_ what: String) -> HealthServerError {
      HealthServerError(address: address, message: "\(what) failed: \(String(cString: strerror(errno)))")
    }
    #if canImport(Glibc)
      let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #else
      let fd = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    guard fd >= 0 else { throw fail("socket") }
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = requestedPort.bigEndian
    guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
      close(fd)
      throw HealthServerError(address: address, message: "\(host) is not an IPv4 address; use e.g. 0.0.0.0")
    }
    let bound = withUnsafePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else {
      let e = fail("bind (is the port in use?)")
      close(fd)
      throw e
    }
    guard listen(fd, 64) == 0 else {
      let e = fail("listen")
      close(fd)
      throw e
    }
    var actual = sockaddr_in()
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &actual) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    let port = UInt16(bigEndian: actual.sin_port)
    let thread = Thread { [self] in
      self.serve(fd)
      self.finished.signal()
    }
    thread.name = "botrt-health-server"
    runtime.withLock {
      $0.fd = fd
      $0.port = port
      $0.started = true
    }
    thread.start()
    logger.info("serving /metrics, /healthz and /readyz", metadata: ["address": "\(host):\(port)"])
  }

  /// Stops accepting, closes the socket and waits for the serving thread to end.
  public func stop() {
    let (fd, started): (Int32, Bool) = runtime.withLock { r in
      if r.stopping { return (-1, false) }
      r.stopping = true
      return (r.fd, r.started)
    }
    guard fd >= 0 else { return }
    _ = shutdown(fd, Int32(SHUT_RDWR))
    if started { finished.wait() }
    close(fd)
    logger.info("metrics/health server stopped")
  }

  /// Starts, serves until the task is cancelled, then stops; for a task group.
  public func run() async throws {
    try start()
    let never = AsyncEvent()
    await never.wait()
    stop()
  }

  private func serve(_ listenFD: Int32) {
    while true {
      let client = accept(listenFD, nil, nil)
      if client < 0 {
        if errno == EINTR { continue }
        if runtime.withLock({ $0.stopping }) { return }
        if errno == EMFILE || errno == ENFILE {
          usleep(100_000)
          continue
        }
        return
      }
      handle(client)
      close(client)
    }
  }

  private func handle(_ fd: Int32) {
    var tv = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var request = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 4096)
    // Read the request head (up to 16 KiB); bodies are not expected.
    while request.count < 16 * 1024 {
      let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
      if n <= 0 { break }
      request.append(contentsOf: buf[0..<n])
      if request.count >= 4, containsHeadEnd(request) { break }
    }
    guard let lineEnd = request.firstIndex(of: 10) else { return }
    let line = String(decoding: request[0..<lineEnd], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    let parts = line.split(separator: " ")
    guard parts.count >= 2 else {
      respond(fd, 400, "Bad Request", "text/plain", "malformed request line\n", head: false)
      return
    }
    let method = String(parts[0])
    let path = String(parts[1].split(separator: "?", maxSplits: 1).first ?? "")
    guard method == "GET" || method == "HEAD" else {
      respond(fd, 405, "Method Not Allowed", "text/plain", "only GET and HEAD\n", head: false)
      return
    }
    let head = method == "HEAD"
    switch path {
    case "/metrics":
      respond(fd, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", registry.render(), head: head)
    case "/healthz", "/livez":
      if live.withLock({ $0 }) {
        respond(fd, 200, "OK", "text/plain", "ok\n", head: head)
      } else {
        respond(fd, 503, "Service Unavailable", "text/plain", "not live\n", head: head)
      }
    case "/readyz":
      if isReady {
        respond(fd, 200, "OK", "text/plain", "ok\n", head: head)
      } else {
        respond(fd, 503, "Service Unavailable", "text/plain", "not ready\n", head: head)
      }
    default:
      respond(fd, 404, "Not Found", "text/plain", "not found: \(path)\n", head: head)
    }
  }

  private func containsHeadEnd(_ b: [UInt8]) -> Bool {
    if b.count >= 4 {
      for i in 0...(b.count - 4) where b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { return true }
    }
    if b.count >= 2 {
      for i in 0...(b.count - 2) where b[i] == 10 && b[i + 1] == 10 { return true }
    }
    return false
  }

  private func respond(_ fd: Int32, _ code: Int, _ text: String, _ type: String, _ body: String, head: Bool) {
    let bytes = Array(body.utf8)
    var out = Array(
      "HTTP/1.1 \(code) \(text)\r\nContent-Type: \(type)\r\nContent-Length: \(bytes.count)\r\nConnection: close\r\n\r\n"
        .utf8)
    if !head { out += bytes }
    var sent = 0
    while sent < out.count {
      let n = out[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      if n <= 0 { return }
      sent += n
    }
  }
}
