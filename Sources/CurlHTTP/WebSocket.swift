import Foundation

// The pure parts of a WebSocket client (RFC 6455): the opening handshake's request and response, the frame encoder and
// an incremental frame decoder. No I/O here; `CurlClient.webSocket` drives them over a libcurl connection.

/// A WebSocket frame's opcode.
public enum WebSocketOpcode: UInt8, Sendable, Hashable {
  case continuation = 0x0
  case text = 0x1
  case binary = 0x2
  case close = 0x8
  case ping = 0x9
  case pong = 0xA

  public var isControl: Bool { rawValue & 0x8 != 0 }
}

/// A peer broke the WebSocket protocol, or the opening handshake failed. The message names what was wrong, never the
/// request's headers.
public struct WebSocketProtocolError: Error, Sendable, Hashable, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { "WebSocket protocol error: \(message)" }
}

/// One frame on the wire.
public struct WebSocketFrame: Sendable, Hashable {
  public var fin: Bool
  public var opcode: WebSocketOpcode
  public var payload: [UInt8]

  public init(fin: Bool = true, opcode: WebSocketOpcode, payload: [UInt8] = []) {
    self.fin = fin
    self.opcode = opcode
    self.payload = payload
  }

  /// The frame's bytes; masked with `maskKey` (a client's frames must be), unmasked when it is nil (a server's).
  public func encoded(maskKey: [UInt8]?) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(payload.count + 14)
    out.append((fin ? 0x80 : 0) | opcode.rawValue)
    let maskBit: UInt8 = maskKey == nil ? 0 : 0x80
    let n = payload.count
    if n < 126 {
      out.append(maskBit | UInt8(n))
    } else if n <= 0xFFFF {
      out.append(maskBit | 126)
      out.append(UInt8(n >> 8))
      out.append(UInt8(n & 0xFF))
    } else {
      out.append(maskBit | 127)
      for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((UInt64(n) >> UInt64(shift)) & 0xFF)) }
    }
    if let key = maskKey {
      precondition(key.count == 4, "a WebSocket mask key has 4 bytes")
      out.append(contentsOf: key)
      for (i, b) in payload.enumerated() { out.append(b ^ key[i & 3]) }
    } else {
      out.append(contentsOf: payload)
    }
    return out
  }

  /// A client's frame, masked with a fresh random key.
  public func encodedByClient() -> [UInt8] {
    var g = SystemRandomNumberGenerator()
    return encoded(maskKey: (0..<4).map { _ in UInt8.random(in: 0...255, using: &g) })
  }

  /// A close frame's payload: the status code and a reason (cut to fit a control frame's 125 bytes).
  public static func closePayload(code: UInt16, reason: String = "") -> [UInt8] {
    [UInt8(code >> 8), UInt8(code & 0xFF)] + Array(reason.utf8.prefix(123))
  }
}

/// Splits a byte stream into frames. Bounded: a frame (or a fragmented message) longer than `maxMessageBytes` is an
/// error before any of it is buffered beyond what arrived, so a hostile length (2^63) costs nothing.
public struct WebSocketFrameDecoder: Sendable {
  public let maxMessageBytes: Int
  /// Whether frames must be masked (a server reads a client's) or must not be (a client reads a server's).
  public let expectMasked: Bool
  private var buffer: [UInt8] = []
  private var start = 0
  /// The opcode and payload of a fragmented message in progress.
  private var partialOpcode: WebSocketOpcode?
  private var partial: [UInt8] = []

  public init(maxMessageBytes: Int, expectMasked: Bool = false) {
    self.maxMessageBytes = max(0, maxMessageBytes)
    self.expectMasked = expectMasked
  }

  /// Bytes received and not yet decoded.
  public var bufferedCount: Int { buffer.count - start }

  /// Adds received bytes.
  public mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
    if start > 0 && start >= buffer.count / 2 {
      buffer.removeFirst(start)
      start = 0
    }
    buffer.append(contentsOf: bytes)
  }

  /// The next complete message (text or binary, reassembled from its fragments) or control frame, or nil when more
  /// bytes are needed. Throws on a protocol violation; the decoder is then unusable.
  public mutating func next() throws -> WebSocketFrame? {
    while true {
      guard let frame = try nextFrame() else { return nil }
      if frame.opcode.isControl { return frame }
      switch frame.opcode {
      case .continuation:
        guard let op = partialOpcode else {
          throw WebSocketProtocolError("a continuation frame without a message to continue")
        }
        partial.append(contentsOf: frame.payload)
        if frame.fin {
          let message = WebSocketFrame(fin: true, opcode: op, payload: partial)
          partialOpcode = nil
          partial = []
          return message
        }
      default:
        if partialOpcode != nil {
          throw WebSocketProtocolError("a new \(frame.opcode) message began before the fragmented one ended")
        }
        if frame.fin { return frame }
        partialOpcode = frame.opcode
        partial = frame.payload
      }
    }
  }

  /// The next raw frame, or nil when incomplete.
  private mutating func nextFrame() throws -> WebSocketFrame? {
    let avail = buffer.count - start
    guard avail >= 2 else { return nil }
    let b0 = buffer[start]
    let b1 = buffer[start + 1]
    let fin = b0 & 0x80 != 0
    if b0 & 0x70 != 0 { throw WebSocketProtocolError("reserved bits set (no extension was negotiated)") }
    guard let opcode = WebSocketOpcode(rawValue: b0 & 0x0F) else {
      throw WebSocketProtocolError("unknown opcode \(b0 & 0x0F)")
    }
    let masked = b1 & 0x80 != 0
    if masked != expectMasked {
      throw WebSocketProtocolError(masked ? "the server sent a masked frame" : "the client sent an unmasked frame")
    }
    var headerLength = 2
    var length = UInt64(b1 & 0x7F)
    if length == 126 {
      guard avail >= 4 else { return nil }
      length = UInt64(buffer[start + 2]) << 8 | UInt64(buffer[start + 3])
      headerLength = 4
    } else if length == 127 {
      guard avail >= 10 else { return nil }
      length = 0
      for i in 0..<8 { length = length << 8 | UInt64(buffer[start + 2 + i]) }
      headerLength = 10
      if length >> 63 != 0 { throw WebSocketProtocolError("a 64-bit length with the most significant bit set") }
    }
    if opcode.isControl {
      if !fin { throw WebSocketProtocolError("a fragmented control frame") }
      if length > 125 { throw WebSocketProtocolError("a control frame of \(length) bytes (at most 125)") }
    }
    let already = opcode == .continuation ? partial.count : 0
    if length > UInt64(maxMessageBytes - already) {
      throw WebSocketProtocolError("a message longer than \(maxMessageBytes) bytes (a frame of \(length) bytes)")
    }
    if masked { headerLength += 4 }
    let n = Int(length)
    guard avail >= headerLength + n else { return nil }
    var payload = Array(buffer[(start + headerLength)..<(start + headerLength + n)])
    if masked {
      let k = start + headerLength - 4
      let key = [buffer[k], buffer[k + 1], buffer[k + 2], buffer[k + 3]]
      for i in payload.indices { payload[i] ^= key[i & 3] }
    }
    start += headerLength + n
    return WebSocketFrame(fin: fin, opcode: opcode, payload: payload)
  }
}

/// The opening handshake: the upgrade request and the checks on the server's answer.
public enum WebSocketHandshake {
  public static let acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
  /// The longest response head accepted (status line and header fields).
  public static let maxHeadBytes = 64 * 1024

  /// A fresh Sec-WebSocket-Key: 16 random bytes in base64.
  public static func randomKey() -> String {
    var g = SystemRandomNumberGenerator()
    return Data((0..<16).map { _ in UInt8.random(in: 0...255, using: &g) }).base64EncodedString()
  }

  /// The Sec-WebSocket-Accept a server must answer `key` with: base64(SHA-1(key + GUID)).
  public static func accept(forKey key: String) -> String {
    Data(SHA1.digest(Array((key + acceptGUID).utf8))).base64EncodedString()
  }

  /// The HTTP/1.1 upgrade request for `target` (path and query) on `host` (host[:port]), with `headers` added.
  public static func request(
    target: String, host: String, key: String, subprotocols: [String], headers: [(name: String, value: String)]
  ) -> [UInt8] {
    var s = "GET \(target) HTTP/1.1\r\nHost: \(host)\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    s += "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: \(key)\r\n"
    if !subprotocols.isEmpty { s += "Sec-WebSocket-Protocol: \(subprotocols.joined(separator: ", "))\r\n" }
    for (name, value) in headers { s += "\(name): \(value)\r\n" }
    s += "\r\n"
    return Array(s.utf8)
  }

  /// A response's status line and header fields.
  public struct ResponseHead: Sendable, Hashable {
    public var status: Int
    public var reason: String
    /// Header fields with lower-cased names; a repeated field's values are joined with ", ".
    public var headers: [String: String]
  }

  /// Parses the response head at the start of `bytes`: the head and how many bytes it took, or nil when the blank line
  /// that ends it has not arrived yet. Throws when it is malformed or longer than `maxHeadBytes`.
  public static func parseHead(_ bytes: [UInt8]) throws -> (head: ResponseHead, length: Int)? {
    let limit = min(bytes.count, maxHeadBytes)
    var end: Int?
    var i = 0
    while i + 3 < limit {
      if bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
        end = i
        break
      }
      i += 1
    }
    guard let end else {
      if bytes.count >= maxHeadBytes {
        throw WebSocketProtocolError("the response head is longer than \(maxHeadBytes) bytes")
      }
      return nil
    }
    let text = String(decoding: bytes[0..<end], as: UTF8.self)
    var lines = text.components(separatedBy: "\r\n")
    let statusLine = lines.removeFirst()
    let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
    guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1].count == 3, let status = Int(parts[1]) else {
      throw WebSocketProtocolError("not an HTTP/1.1 status line: \(statusLine.prefix(80))")
    }
    var headers: [String: String] = [:]
    for line in lines {
      guard let colon = line.firstIndex(of: ":") else {
        throw WebSocketProtocolError("a header line without a colon: \(line.prefix(80))")
      }
      let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
      let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
      headers[name] = headers[name].map { "\($0), \(value)" } ?? value
    }
    return (ResponseHead(status: status, reason: parts.count > 2 ? String(parts[2]) : "", headers: headers), end + 4)
  }

  /// Checks a 101 answer to a request made with `key` and `subprotocols`; returns the chosen subprotocol (nil when the
  /// server chose none and none was asked for).
  public static func validate(_ head: ResponseHead, key: String, subprotocols: [String]) throws -> String? {
    guard head.status == 101 else { throw WebSocketProtocolError("the server answered \(head.status), not 101") }
    guard head.headers["upgrade"]?.lowercased() == "websocket" else {
      throw WebSocketProtocolError("the 101 answer has no Upgrade: websocket")
    }
    let connection = head.headers["connection"]?.lowercased().split(separator: ",").map {
      $0.trimmingCharacters(in: .whitespaces)
    }
    guard connection?.contains("upgrade") == true else {
      throw WebSocketProtocolError("the 101 answer has no Connection: Upgrade")
    }
    guard head.headers["sec-websocket-accept"] == accept(forKey: key) else {
      throw WebSocketProtocolError("the 101 answer's Sec-WebSocket-Accept does not match the key sent")
    }
    if head.headers["sec-websocket-extensions"] != nil {
      throw WebSocketProtocolError("the server chose an extension none was asked for")
    }
    let chosen = head.headers["sec-websocket-protocol"]
    if let chosen {
      guard subprotocols.contains(chosen) else {
        throw WebSocketProtocolError("the server chose the subprotocol \(chosen.prefix(64)), which was not offered")
      }
    } else if !subprotocols.isEmpty {
      throw WebSocketProtocolError("the server chose none of the subprotocols \(subprotocols.joined(separator: ", "))")
    }
    return chosen
  }

  /// Decodes a complete `Transfer-Encoding: chunked` body; nil when it is incomplete or malformed. At most `limit`
  /// bytes of payload are kept.
  public static func dechunk(_ bytes: [UInt8], limit: Int) -> [UInt8]? {
    var out: [UInt8] = []
    var i = 0
    while true {
      var j = i
      while j + 1 < bytes.count && !(bytes[j] == 13 && bytes[j + 1] == 10) { j += 1 }
      guard j + 1 < bytes.count, j - i <= 64 else { return nil }
      let sizeText = String(decoding: bytes[i..<j], as: UTF8.self).split(separator: ";").first ?? ""
      guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size >= 0 else { return nil }
      i = j + 2
      if size == 0 { return out }
      guard size <= bytes.count - i else { return nil }
      out.append(contentsOf: bytes[i..<(i + min(size, max(0, limit - out.count)))])
      i += size
      guard i + 1 < bytes.count, bytes[i] == 13, bytes[i + 1] == 10 else { return nil }
      i += 2
    }
  }
}

/// SHA-1, for the handshake's accept value only (not for anything that needs a secure hash).
enum SHA1 {
  static func digest(_ message: [UInt8]) -> [UInt8] {
    var h: [UInt32] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0]
    var m = message
    let bitLength = UInt64(message.count) * 8
    m.append(0x80)
    while m.count % 64 != 56 { m.append(0) }
    for shift in stride(from: 56, through: 0, by: -8) { m.append(UInt8((bitLength >> UInt64(shift)) & 0xFF)) }
    var w = [UInt32](repeating: 0, count: 80)
    for chunk in stride(from: 0, to: m.count, by: 64) {
      for t in 0..<16 {
        let o = chunk + t * 4
        w[t] = UInt32(m[o]) << 24 | UInt32(m[o + 1]) << 16 | UInt32(m[o + 2]) << 8 | UInt32(m[o + 3])
      }
      for t in 16..<80 {
        let x = w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]
        w[t] = x << 1 | x >> 31
      }
      var (a, b, c, d, e) = (h[0], h[1], h[2], h[3], h[4])
      for t in 0..<80 {
        let f: UInt32
        let k: UInt32
        switch t {
        case 0..<20:
          f = (b & c) | (~b & d)
          k = 0x5A82_7999
        case 20..<40:
          f = b ^ c ^ d
          k = 0x6ED9_EBA1
        case 40..<60:
          f = (b & c) | (b & d) | (c & d)
          k = 0x8F1B_BCDC
        default:
          f = b ^ c ^ d
          k = 0xCA62_C1D6
        }
        let temp = (a << 5 | a >> 27) &+ f &+ e &+ k &+ w[t]
        e = d
        d = c
        c = b << 30 | b >> 2
        b = a
        a = temp
      }
      h[0] = h[0] &+ a
      h[1] = h[1] &+ b
      h[2] = h[2] &+ c
      h[3] = h[3] &+ d
      h[4] = h[4] &+ e
    }
    return h.flatMap { v in [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
  }
}
