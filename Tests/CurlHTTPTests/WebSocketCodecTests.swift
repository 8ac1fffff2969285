import Foundation
import Testing

@testable import CurlHTTP

/// The pure WebSocket parts: SHA-1 and the accept value, the frame encoder and decoder, the handshake's head parser
/// and checks, including hostile input (which must be an error, never a trap or an unbounded allocation).
@Suite struct WebSocketCodecTests {
  @Test func sha1AndTheAcceptValueMatchTheStandardVectors() {
    let hex = { (b: [UInt8]) in b.map { String(format: "%02x", $0) }.joined() }
    #expect(hex(SHA1.digest(Array("abc".utf8))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
    #expect(hex(SHA1.digest([])) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
    #expect(
      hex(SHA1.digest(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
        == "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
    #expect(hex(SHA1.digest([UInt8](repeating: 0x61, count: 1_000_000))) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
    // RFC 6455 section 1.3.
    #expect(WebSocketHandshake.accept(forKey: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
  }

  @Test(arguments: [0, 1, 125, 126, 127, 65535, 65536, 200_000])
  func framesRoundTripAtEveryLengthEncoding(length: Int) throws {
    let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31) }
    // A server's frame (unmasked) read by the client.
    let wire = WebSocketFrame(opcode: .binary, payload: payload).encoded(maskKey: nil)
    #expect(wire.count == payload.count + (length < 126 ? 2 : length <= 0xFFFF ? 4 : 10))
    var d = WebSocketFrameDecoder(maxMessageBytes: 1 << 20)
    d.append(wire)
    #expect(try d.next() == WebSocketFrame(opcode: .binary, payload: payload))
    #expect(try d.next() == nil)
    // A client's frame (masked) read as a server reads it.
    let masked = WebSocketFrame(opcode: .binary, payload: payload).encodedByClient()
    #expect(masked[1] & 0x80 != 0)
    var s = WebSocketFrameDecoder(maxMessageBytes: 1 << 20, expectMasked: true)
    s.append(masked)
    #expect(try s.next()?.payload == payload)
  }

  @Test func aFrameFedOneByteAtATimeDecodesOnceComplete() throws {
    let wire = WebSocketFrame(opcode: .text, payload: Array("hello, world".utf8)).encoded(maskKey: nil)
    var d = WebSocketFrameDecoder(maxMessageBytes: 100)
    for (i, b) in wire.enumerated() {
      d.append([b])
      let f = try d.next()
      if i < wire.count - 1 { #expect(f == nil) } else { #expect(f?.payload == Array("hello, world".utf8)) }
    }
  }

  @Test func fragmentsAreReassembledAndControlFramesPassBetweenThem() throws {
    var d = WebSocketFrameDecoder(maxMessageBytes: 100)
    d.append(WebSocketFrame(fin: false, opcode: .binary, payload: [1, 2]).encoded(maskKey: nil))
    d.append(WebSocketFrame(opcode: .ping, payload: [9]).encoded(maskKey: nil))
    d.append(WebSocketFrame(fin: false, opcode: .continuation, payload: [3]).encoded(maskKey: nil))
    d.append(WebSocketFrame(fin: true, opcode: .continuation, payload: [4, 5]).encoded(maskKey: nil))
    d.append(WebSocketFrame(opcode: .close, payload: WebSocketFrame.closePayload(code: 1000)).encoded(maskKey: nil))
    #expect(try d.next() == WebSocketFrame(opcode: .ping, payload: [9]))
    #expect(try d.next() == WebSocketFrame(opcode: .binary, payload: [1, 2, 3, 4, 5]))
    #expect(try d.next() == WebSocketFrame(opcode: .close, payload: [0x03, 0xE8]))
    #expect(try d.next() == nil)
  }

  /// Each input is a protocol violation the decoder must refuse (not crash on, not allocate for).
  @Test(
    arguments: [
      // A 64-bit length of 2^63.
      ("length 2^63", [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
      // A 64-bit length of 2^62, over the limit: refused before any payload arrives.
      ("length 2^62", [0x82, 0x7F, 0x40, 0, 0, 0, 0, 0, 0, 0]),
      // 2^64 - 1.
      ("length 2^64-1", [0x82, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
      // 65,536 bytes, over a 1,000-byte limit.
      ("length over the limit", [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]),
      ("reserved bit", [0xC2, 0x00]),
      ("unknown opcode", [0x83, 0x00]),
      ("masked server frame", [0x82, 0x81, 1, 2, 3, 4, 5]),
      ("control frame of 126 bytes", [0x89, 0x7E, 0x00, 0x7E]),
      ("fragmented control frame", [0x09, 0x00]),
      ("lone continuation", [0x80, 0x01, 0x00]),
      ("new message inside a fragmented one", [0x02, 0x01, 0x01, 0x82, 0x01, 0x02]),
      // Fragments that together pass the limit (600 + 600 bytes).
      (
        "fragments over the limit",
        [0x02, 0x7E, 0x02, 0x58] + [UInt8](repeating: 0, count: 600) + [0x80, 0x7E, 0x02, 0x58]
      ),
    ] as [(String, [UInt8])])
  func hostileFramesAreErrors(name: String, bytes: [UInt8]) {
    var d = WebSocketFrameDecoder(maxMessageBytes: 1000)
    d.append(bytes)
    #expect(throws: WebSocketProtocolError.self, "\(name)") {
      while try d.next() != nil {}
    }
  }

  @Test func aTruncatedFrameWaitsForMoreAndNeverReadsPastTheEnd() throws {
    let wire = WebSocketFrame(opcode: .binary, payload: [UInt8](repeating: 7, count: 300)).encoded(maskKey: nil)
    for cut in [1, 2, 3, 4, 100, wire.count - 1] {
      var d = WebSocketFrameDecoder(maxMessageBytes: 1000)
      d.append(wire.prefix(cut))
      #expect(try d.next() == nil, "cut at \(cut)")
      #expect(d.bufferedCount == cut)
    }
  }

  @Test func theUpgradeRequestCarriesTheHandshakeFields() {
    let text = String(
      decoding: WebSocketHandshake.request(
        target: "/api/v1/namespaces/a/pods/b/exec?command=ls", host: "127.0.0.1:6443", key: "k==",
        subprotocols: ["v4.channel.k8s.io"], headers: [("Authorization", "Bearer t")]), as: UTF8.self)
    #expect(text.hasPrefix("GET /api/v1/namespaces/a/pods/b/exec?command=ls HTTP/1.1\r\nHost: 127.0.0.1:6443\r\n"))
    for line in [
      "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: k==",
      "Sec-WebSocket-Protocol: v4.channel.k8s.io", "Authorization: Bearer t",
    ] {
      #expect(text.contains("\r\n\(line)\r\n"), "\(line)")
    }
    #expect(text.hasSuffix("\r\n\r\n"))
    #expect(Data(base64Encoded: WebSocketHandshake.randomKey())?.count == 16)
  }

  @Test func theSwitchingAnswerIsParsedAndChecked() throws {
    let key = "dGhlIHNhbXBsZSBub25jZQ=="
    let answer =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
    let bytes = Array(answer.utf8) + [0x82, 0x01, 0x01]
    #expect(try WebSocketHandshake.parseHead(Array(bytes.prefix(40))) == nil)
    let (head, length) = try #require(try WebSocketHandshake.parseHead(bytes))
    #expect(head.status == 101)
    #expect(length == answer.utf8.count)
    #expect(try WebSocketHandshake.validate(head, key: key, subprotocols: ["v4.channel.k8s.io"]) == "v4.channel.k8s.io")

    // A 101 whose Accept is not the one for the key sent.
    #expect(throws: WebSocketProtocolError.self) {
      try WebSocketHandshake.validate(head, key: "AAAAAAAAAAAAAAAAAAAAAA==", subprotocols: ["v4.channel.k8s.io"])
    }
    var noAccept = head
    noAccept.headers["sec-websocket-accept"] = nil
    #expect(throws: WebSocketProtocolError.self) {
      try WebSocketHandshake.validate(noAccept, key: key, subprotocols: ["v4.channel.k8s.io"])
    }
    // A subprotocol not offered, or none when one was asked for.
    #expect(throws: WebSocketProtocolError.self) {
      try WebSocketHandshake.validate(head, key: key, subprotocols: ["v5.channel.k8s.io"])
    }
    var noProtocol = head
    noProtocol.headers["sec-websocket-protocol"] = nil
    #expect(throws: WebSocketProtocolError.self) {
      try WebSocketHandshake.validate(noProtocol, key: key, subprotocols: ["v4.channel.k8s.io"])
    }
    var notUpgrade = head
    notUpgrade.headers["upgrade"] = "h2c"
    #expect(throws: WebSocketProtocolError.self) {
      try WebSocketHandshake.validate(notUpgrade, key: key, subprotocols: ["v4.channel.k8s.io"])
    }
  }

  @Test func malformedOrEndlessHeadsAreErrors() throws {
    #expect(throws: WebSocketProtocolError.self) { try WebSocketHandshake.parseHead(Array("SSH-2.0-x\r\n\r\n".utf8)) }
    #expect(throws: WebSocketProtocolError.self) {
      try WebSocketHandshake.parseHead(Array("HTTP/1.1 101 OK\r\nno colon here\r\n\r\n".utf8))
    }
    // No blank line within 64 KiB.
    let endless = Array("HTTP/1.1 101 OK\r\n".utf8) + [UInt8](repeating: 0x41, count: 70_000)
    #expect(throws: WebSocketProtocolError.self) { try WebSocketHandshake.parseHead(endless) }
    // A refusal with its Status body.
    let refused = Array(
      "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".utf8)
    let (head, length) = try #require(try WebSocketHandshake.parseHead(refused))
    #expect(head.status == 403 && head.headers["content-length"] == "2" && refused.count - length == 2)
  }

  @Test func chunkedBodiesDecodeOnlyWhenComplete() {
    let body = Array("4\r\nWiki\r\n6;ext=1\r\npedia \r\n0\r\n\r\n".utf8)
    #expect(WebSocketHandshake.dechunk(body, limit: 100) == Array("Wikipedia ".utf8))
    #expect(WebSocketHandshake.dechunk(body, limit: 5) == Array("Wikip".utf8))
    #expect(WebSocketHandshake.dechunk(Array(body.prefix(12)), limit: 100) == nil)
    #expect(WebSocketHandshake.dechunk(Array("zz\r\n".utf8), limit: 100) == nil)
    #expect(WebSocketHandshake.dechunk(Array("7FFFFFFFFFFFFFFF\r\nab".utf8), limit: 100) == nil)
  }

  @Test func urlsSplitIntoTargetAndAuthority() {
    #expect(CurlClient.splitURL("https://127.0.0.1:6443/api/v1/x?a=b") == ("/api/v1/x?a=b", "127.0.0.1:6443"))
    #expect(CurlClient.splitURL("https://user:pw@[::1]:6443/p") == ("/p", "[::1]:6443"))
    #expect(CurlClient.splitURL("http://example.test") == ("/", "example.test"))
    #expect(CurlClient.splitURL("http://example.test?q=1#frag") == ("/?q=1", "example.test"))
  }
}
