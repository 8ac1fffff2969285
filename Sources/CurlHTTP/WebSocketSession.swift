import CCurl
import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// A WebSocket connection to open: an `https://` (or `http://`) URL, extra header fields, the subprotocols to offer.
public struct WebSocketRequest: Sendable {
  public var url: String
  /// Extra header fields (e.g. Authorization); never logged nor put in an error.
  public var headers: [(name: String, value: String)]
  public var subprotocols: [String]
  public var tls: TLSOptions
  public var connectTimeout: Duration
  /// The longest message (all its fragments) accepted; a longer one is a protocol error.
  public var maxMessageBytes: Int
  /// How much of a refused upgrade's body is kept.
  public var maxRefusalBodyBytes: Int

  public init(
    url: String, headers: [(name: String, value: String)] = [], subprotocols: [String] = [],
    tls: TLSOptions = TLSOptions(), connectTimeout: Duration = .seconds(10), maxMessageBytes: Int = 1 << 20,
    maxRefusalBodyBytes: Int = 64 * 1024
  ) {
    self.url = url
    self.headers = headers
    self.subprotocols = subprotocols
    self.tls = tls
    self.connectTimeout = connectTimeout
    self.maxMessageBytes = maxMessageBytes
    self.maxRefusalBodyBytes = maxRefusalBodyBytes
  }
}

/// What a message handler wants next.
public enum WebSocketAction: Sendable {
  case `continue`
  /// Send a close frame (1000) and end the session.
  case close
}

/// How a WebSocket session ended.
public enum WebSocketOutcome: Sendable {
  /// The server did not switch protocols: its status, headers and (bounded) body.
  case refused(HTTPResponse)
  /// The session ran and ended: by the server's close frame (`code`, `reason`), by the handler asking to close
  /// (`byClient`), or by the connection ending without a close frame (`code` nil, not `byClient`).
  case closed(subprotocol: String?, code: UInt16?, reason: String, byClient: Bool)
}

extension CurlClient {
  /// Opens a WebSocket over an HTTP/1.1 connection (libcurl connects, TLS included, with `CURLOPT_CONNECT_ONLY`; the
  /// handshake and the frames are this module's), hands every text or binary message to `onMessage` (on the
  /// session's own thread, in order), answers pings, and returns when the session ends.
  ///
  /// Throws `HTTPTransportError` (connection, TLS; `.timeout` when `timeout` passes before the end, after which the
  /// connection is closed; `.cancelled`), `WebSocketProtocolError`, or what `onMessage` throws (the connection is then
  /// closed). The blocking work runs on a dispatch queue of its own, never on Swift's cooperative pool.
  public func webSocket(
    _ request: WebSocketRequest, timeout: Duration,
    onMessage: @escaping @Sendable (WebSocketOpcode, [UInt8]) throws -> WebSocketAction
  ) async throws -> WebSocketOutcome {
    let flag = CancelFlag()
    // At most a year: a larger (or hostile) value must not overflow the deadline's arithmetic.
    let timeout = min(max(timeout, .zero), .seconds(365 * 86_400))
    let deadline = ContinuousClock.now.advanced(by: timeout)
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (cont: CheckedContinuation<WebSocketOutcome, Error>) in
        DispatchQueue(label: "botrt.curl.websocket", qos: .userInitiated).async { [self] in
          cont.resume(
            with: Result {
              try self.runWebSocket(
                request, timeout: timeout, deadline: deadline, cancelled: flag, onMessage: onMessage)
            })
        }
      }
    } onCancel: {
      flag.cancel()
    }
  }

  private func runWebSocket(
    _ request: WebSocketRequest, timeout: Duration, deadline: ContinuousClock.Instant, cancelled: CancelFlag,
    onMessage: (WebSocketOpcode, [UInt8]) throws -> WebSocketAction
  ) throws -> WebSocketOutcome {
    let handle = EasyHandle()  // never pooled: its connection becomes the WebSocket's
    let h = handle.raw
    let errbuf = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
    errbuf.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
    defer { errbuf.deallocate() }
    let (target, authority) = Self.splitURL(request.url)
    let url = HTTPTransportError.redact(request.url)

    func timedOut(_ phase: String) -> HTTPTransportError {
      HTTPTransportError(
        kind: .timeout, url: url, message: "no end within \(timeout) (\(phase)); the connection was closed")
    }
    func remaining() -> Duration { deadline - .now }

    _ = botrt_curl_setopt_string(h, CURLOPT_URL, request.url)
    _ = botrt_curl_setopt_long(h, CURLOPT_NOSIGNAL, 1)
    _ = botrt_curl_setopt_long(h, CURLOPT_CONNECT_ONLY, 1)
    // HTTP/1.1 only: ALPN must not choose h2, where an Upgrade cannot happen.
    _ = botrt_curl_setopt_long(h, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1))
    _ = botrt_curl_setopt_long(h, CURLOPT_TCP_KEEPALIVE, 1)
    _ = botrt_curl_setopt_pointer(h, CURLOPT_ERRORBUFFER, errbuf)
    if verbose { _ = botrt_curl_setopt_long(h, CURLOPT_VERBOSE, 1) }
    let connectBudget = min(request.connectTimeout, max(remaining(), .milliseconds(1)))
    _ = botrt_curl_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, curlMilliseconds(connectBudget))
    _ = botrt_curl_setopt_long(h, CURLOPT_TIMEOUT_MS, curlMilliseconds(connectBudget))
    let blobs = applyTLS(h, request.tls)
    defer { blobs.forEach { $0.deallocate() } }

    let code = curl_easy_perform(h)
    if code != CURLE_OK {
      let detail = cString(errbuf).trimmingCharacters(in: .whitespacesAndNewlines)
      var kind = Self.kind(of: code)
      if kind == .timeout && remaining() <= .zero { throw timedOut("connecting") }
      if cancelled.isCancelled { kind = .cancelled }
      throw HTTPTransportError(
        kind: kind, url: url, message: detail.isEmpty ? cString(curl_easy_strerror(code)) : detail,
        curlCode: Int32(code.rawValue))
    }
    var sock: curl_socket_t = -1
    guard botrt_curl_getinfo_socket(h, CURLINFO_ACTIVESOCKET, &sock) == CURLE_OK, sock >= 0 else {
      throw HTTPTransportError(kind: .other, url: url, message: "libcurl gave no socket for the connection")
    }

    /// Waits until the socket is readable (or writable); false when the deadline passed. Throws when cancelled.
    func wait(writable: Bool) throws -> Bool {
      while true {
        if cancelled.isCancelled {
          throw HTTPTransportError(kind: .cancelled, url: url, message: "the WebSocket session was cancelled")
        }
        let left = remaining()
        if left <= .zero { return false }
        var pfd = pollfd(fd: sock, events: Int16(writable ? POLLOUT : POLLIN), revents: 0)
        let ms = Int32(min(curlMilliseconds(left), 200))
        let r = poll(&pfd, 1, ms)
        if r > 0 { return true }
        if r < 0 && errno != EINTR {
          throw HTTPTransportError(kind: .connection, url: url, message: "poll failed: errno \(errno)")
        }
      }
    }

    func sendAll(_ bytes: [UInt8], phase: String) throws {
      var offset = 0
      while offset < bytes.count {
        var n = 0
        let rc = bytes.withUnsafeBytes { raw in
          curl_easy_send(h, raw.baseAddress! + offset, raw.count - offset, &n)
        }
        if rc == CURLE_AGAIN {
          guard try wait(writable: true) else { throw timedOut(phase) }
          continue
        }
        guard rc == CURLE_OK else {
          throw HTTPTransportError(
            kind: .connection, url: url, message: "sending failed: \(cString(curl_easy_strerror(rc)))",
            curlCode: Int32(rc.rawValue))
        }
        offset += n
      }
    }

    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    /// Some received bytes; empty at the end of the connection; nil when the deadline passed.
    func receive(phase: String) throws -> ArraySlice<UInt8>? {
      while true {
        var n = 0
        let rc = chunk.withUnsafeMutableBytes { raw in curl_easy_recv(h, raw.baseAddress, raw.count, &n) }
        if rc == CURLE_OK { return chunk[0..<n] }
        if rc == CURLE_AGAIN {
          guard try wait(writable: false) else { return nil }
          continue
        }
        throw HTTPTransportError(
          kind: .connection, url: url, message: "receiving failed: \(cString(curl_easy_strerror(rc)))",
          curlCode: Int32(rc.rawValue))
      }
    }

    // The opening handshake.
    let key = WebSocketHandshake.randomKey()
    try sendAll(
      WebSocketHandshake.request(
        target: target, host: authority, key: key, subprotocols: request.subprotocols, headers: request.headers),
      phase: "sending the upgrade request")
    var received: [UInt8] = []
    var parsed: (head: WebSocketHandshake.ResponseHead, length: Int)?
    while parsed == nil {
      guard let bytes = try receive(phase: "waiting for the upgrade answer") else {
        throw timedOut("waiting for the upgrade answer")
      }
      if bytes.isEmpty { throw WebSocketProtocolError("the connection ended before the upgrade answer") }
      received.append(contentsOf: bytes)
      parsed = try WebSocketHandshake.parseHead(received)
    }
    let (head, headLength) = parsed!
    var rest = Array(received[headLength...])

    if head.status != 101 {
      // The refusal's body, bounded: by Content-Length, chunked, or up to the end of the connection.
      let limit = request.maxRefusalBodyBytes
      let length = head.headers["content-length"].flatMap { Int($0) }
      let chunked = head.headers["transfer-encoding"]?.lowercased().contains("chunked") == true
      var body: [UInt8]?
      while true {
        if let length, rest.count >= min(length, limit) {
          body = Array(rest.prefix(min(length, limit)))
          break
        }
        if chunked, let b = WebSocketHandshake.dechunk(rest, limit: limit) {
          body = b
          break
        }
        if rest.count >= limit + 1024 { break }
        guard let bytes = try receive(phase: "reading the refusal"), !bytes.isEmpty else { break }
        rest.append(contentsOf: bytes)
      }
      let text = body ?? Array(rest.prefix(limit))
      return .refused(HTTPResponse(status: head.status, headers: head.headers, body: Data(text)))
    }
    let subprotocol = try WebSocketHandshake.validate(head, key: key, subprotocols: request.subprotocols)

    // Frames.
    var decoder = WebSocketFrameDecoder(maxMessageBytes: request.maxMessageBytes)
    decoder.append(rest)
    rest = []
    while true {
      while let frame = try decoder.next() {
        switch frame.opcode {
        case .text, .binary:
          if try onMessage(frame.opcode, frame.payload) == .close {
            try? sendAll(
              WebSocketFrame(opcode: .close, payload: WebSocketFrame.closePayload(code: 1000)).encodedByClient(),
              phase: "closing")
            return .closed(subprotocol: subprotocol, code: nil, reason: "", byClient: true)
          }
        case .ping:
          try sendAll(
            WebSocketFrame(opcode: .pong, payload: frame.payload).encodedByClient(), phase: "answering a ping")
        case .pong:
          break
        case .close:
          var closeCode: UInt16?
          var reason = ""
          if frame.payload.count >= 2 {
            closeCode = UInt16(frame.payload[0]) << 8 | UInt16(frame.payload[1])
            reason = String(decoding: frame.payload[2...], as: UTF8.self)
          }
          // Echo the close (best effort: the server may already have gone).
          try? sendAll(
            WebSocketFrame(opcode: .close, payload: Array(frame.payload.prefix(2))).encodedByClient(),
            phase: "answering the close")
          return .closed(subprotocol: subprotocol, code: closeCode, reason: reason, byClient: false)
        case .continuation:
          throw WebSocketProtocolError("a lone continuation frame")  // the decoder reassembles messages
        }
      }
      guard let bytes = try receive(phase: "running") else { throw timedOut("waiting for the end") }
      if bytes.isEmpty {
        return .closed(
          subprotocol: subprotocol, code: nil, reason: "the connection ended without a close frame", byClient: false)
      }
      decoder.append(bytes)
    }
  }

  /// The request target (path and query) and the authority (host[:port], without user info) of a URL.
  static func splitURL(_ url: String) -> (target: String, authority: String) {
    var rest = Substring(url)
    if let scheme = rest.range(of: "://") { rest = rest[scheme.upperBound...] }
    let end = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
    var authority = rest[..<end]
    if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
    var target = String(rest[end...])
    if let hash = target.firstIndex(of: "#") { target = String(target[..<hash]) }
    if target.isEmpty || target.first == "?" { target = "/" + target }
    return (target, String(authority))
  }
}

/// Set when the awaiting task is cancelled; read by the session's thread.
final class CancelFlag: Sendable {
  private let flag = Atomic<Bool>(false)
  func cancel() { flag.store(true, ordering: .relaxed) }
  var isCancelled: Bool { flag.load(ordering: .relaxed) }
}
