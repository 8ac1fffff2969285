import Foundation
import Testing

@testable import BackupEngine

@Suite struct CryptoTests {
  @Test func sha256KnownVector() {
    #expect(
      Hex.encode(Crypto.sha256(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
  }

  @Test func hmacRFC4231Case2() {
    let mac = Crypto.hmacSHA256(key: Array("Jefe".utf8), Array("what do ya want for nothing?".utf8))
    #expect(Hex.encode(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
  }

  @Test func aesGCMRoundTripAndUniqueNonces() throws {
    let g = try AESGCM(key: Crypto.randomBytes(32))
    let msg = Array("the quick brown fox".utf8)
    let a = try g.seal(msg, aad: [1, 2, 3])
    let b = try g.seal(msg, aad: [1, 2, 3])
    #expect(a.count == msg.count + AESGCM.overhead)
    #expect(Array(a.prefix(12)) != Array(b.prefix(12)))
    #expect(try g.open(a, aad: [1, 2, 3]) == msg)
    #expect(try g.open(try g.seal([UInt8](), aad: []), aad: []) == [])
  }

  @Test func aesGCMDetectsTamperingWrongKeyAndWrongAAD() throws {
    let key = Crypto.randomBytes(32)
    let g = try AESGCM(key: key)
    let sealed = try g.seal(Array(repeating: 7, count: 1000), aad: [9])
    for pos in [0, 11, 12, 500, sealed.count - 1] {
      var t = sealed
      t[pos] ^= 0x01
      #expect(throws: CryptoError.self) { try g.open(t, aad: [9]) }
    }
    #expect(throws: CryptoError.self) { try g.open(sealed, aad: [8]) }
    #expect(throws: CryptoError.self) { try AESGCM(key: Crypto.randomBytes(32)).open(sealed, aad: [9]) }
    #expect(throws: CryptoError.self) { try g.open(Array(sealed.prefix(20)), aad: [9]) }
    #expect(throws: CryptoError.self) { try AESGCM(key: Array(key.prefix(16))) }
  }

  @Test func precomputedHMACKeyEqualsOneShotHMAC() {
    // RFC 4231 case 2 through the precomputed pads, then keys shorter than, equal to and longer than a block.
    #expect(
      Hex.encode(Crypto.HMACKey(Array("Jefe".utf8)).mac(Array("what do ya want for nothing?".utf8)))
        == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    for keyLength in [0, 1, 32, 63, 64, 65, 131] {
      let key = Crypto.randomBytes(keyLength)
      let k = Crypto.HMACKey(key)
      for dataLength in [0, 1, 55, 56, 64, 1000, 70_000] {
        let data = Crypto.randomBytes(dataLength)
        #expect(k.mac(data) == Crypto.hmacSHA256(key: key, data), "key \(keyLength) B, data \(dataLength) B")
      }
    }
  }

  @Test func aesGCMReusedContextsStayCorrectAcrossManyMessagesAndFailures() throws {
    // One instance keeps its key schedule and draws nonces in batches of 64: across several batches every nonce
    // is distinct, every message opens (with a second instance too), and a failed open does not poison the next.
    let key = Crypto.randomBytes(32)
    let g = try AESGCM(key: key)
    let other = try AESGCM(key: key)
    var nonces = Set<[UInt8]>()
    for i in 0..<300 {
      let msg = Crypto.randomBytes(i * 37 % 5000)
      let aad: [UInt8] = [UInt8(i & 0xff)]
      var packed: [UInt8] = [9, 9]
      let n = try msg.withUnsafeBytes { try g.seal($0, aad: aad, appendingTo: &packed) }
      let sealed = Array(packed[2...])
      #expect(n == sealed.count)
      nonces.insert(Array(sealed.prefix(12)))
      if i % 7 == 0 {
        var bad = sealed
        bad[bad.count - 1] ^= 0x80
        #expect(throws: CryptoError.self) { try g.open(bad, aad: aad) }
      }
      #expect(try g.open(sealed, aad: aad) == msg)
      #expect(try other.open(sealed, aad: aad) == msg)
    }
    #expect(nonces.count == 300)
    #expect(!nonces.contains([UInt8](repeating: 0, count: 12)))
  }

  @Test func ed25519RFC8032Vector1() throws {
    let sk = Hex.decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")!
    let pk = try Ed25519.publicKey(privateKey: sk)
    #expect(Hex.encode(pk) == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    let sig = try Ed25519.sign([], privateKey: sk)
    #expect(
      Hex.encode(sig)
        == "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    #expect(Ed25519.verify([], signature: sig, publicKey: pk))
  }

  @Test func ed25519RejectsForgeries() throws {
    let sk = Ed25519.generatePrivateKey()
    let pk = try Ed25519.publicKey(privateKey: sk)
    let msg = Array("manifest".utf8)
    var sig = try Ed25519.sign(msg, privateKey: sk)
    #expect(Ed25519.verify(msg, signature: sig, publicKey: pk))
    #expect(!Ed25519.verify(Array("manifesT".utf8), signature: sig, publicKey: pk))
    #expect(
      !Ed25519.verify(msg, signature: sig, publicKey: try Ed25519.publicKey(privateKey: Ed25519.generatePrivateKey())))
    sig[3] ^= 0x40
    #expect(!Ed25519.verify(msg, signature: sig, publicKey: pk))
  }

  @Test func zstdRoundTripAndIncompressible() throws {
    let z = ZstdContext()
    let text = Array(String(repeating: "backup ", count: 10000).utf8)
    let c = try #require(text.withUnsafeBytes { z.compress($0) })
    #expect(c.count < text.count / 10)
    #expect(try c.withUnsafeBytes { try z.decompress($0, rawLength: text.count) } == text)
    let random = Crypto.randomBytes(100_000)
    #expect(random.withUnsafeBytes { z.compress($0) } == nil)
    #expect(throws: CryptoError.self) { try c.withUnsafeBytes { try z.decompress($0, rawLength: text.count + 1) } }
  }

  @Test func localKeyServiceWrapsAndRefusesOtherKEK() async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-kek-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let raw = Crypto.randomBytes(32)
    try makeFile(atPath: dir + "/k1", contents: Data(raw))
    try makeFile(atPath: dir + "/k2", contents: Data((Hex.encode(Crypto.randomBytes(32)) + "\n").utf8))
    try makeFile(atPath: dir + "/bad", contents: Data("short".utf8))
    let s1 = try LocalKeyService(path: dir + "/k1")
    let s2 = try LocalKeyService(path: dir + "/k2")
    let dk = Crypto.randomBytes(32)
    let w = try await s1.wrap(dk, context: "botrt:x:files")
    #expect(!w.ciphertext.contains(Hex.encode(dk)))
    #expect(try await s1.unwrap(w, context: "botrt:x:files") == dk)
    await #expect(throws: KMSError.self) { try await s1.unwrap(w, context: "botrt:x:logs") }
    await #expect(throws: KMSError.self) { try await s2.unwrap(w, context: "botrt:x:files") }
    #expect(throws: KMSError.self) { try LocalKeyService(path: dir + "/bad") }
    #expect(throws: KMSError.self) { try LocalKeyService(path: dir + "/missing") }
  }
}

/// Creates a file or throws naming it.
func makeFile(atPath path: String, contents: Data?) throws {
  guard FileManager.default.createFile(atPath: path, contents: contents) else {
    throw CryptoError.library("test setup: cannot create \(path)")
  }
}
