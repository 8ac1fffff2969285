import CCrypto
import Foundation

/// Cryptographic failures (bad key length, authentication failure, library errors).
public enum CryptoError: Error, Sendable, CustomStringConvertible {
  /// GCM authentication failed: wrong key, or damaged or forged ciphertext.
  case authenticationFailed
  /// An input had the wrong size.
  case invalidLength(what: String, expected: Int, actual: Int)
  /// OpenSSL reported an error.
  case library(String)

  public var description: String {
    switch self {
    case .authenticationFailed: return "authentication failed (wrong key or damaged data)"
    case .invalidLength(let w, let e, let a): return "\(w) must be \(e) bytes, got \(a)"
    case .library(let m): return "libcrypto: \(m)"
    }
  }
}

/// Thin wrappers over OpenSSL's libcrypto.
public enum Crypto {
  /// Cryptographically secure random bytes.
  public static func randomBytes(_ n: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: n)
    let rc = out.withUnsafeMutableBytes { RAND_bytes($0.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(n)) }
    precondition(rc == 1, "RAND_bytes failed: the system's random source is unavailable")
    return out
  }

  /// SHA-256 of a buffer.
  public static func sha256(_ data: UnsafeRawBufferPointer) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 32)
    out.withUnsafeMutableBytes { o in
      _ = SHA256(
        data.baseAddress?.assumingMemoryBound(to: UInt8.self), data.count,
        o.baseAddress!.assumingMemoryBound(to: UInt8.self))
    }
    return out
  }

  /// SHA-256 of bytes.
  public static func sha256<D: ContiguousBytes>(_ data: D) -> [UInt8] { data.withUnsafeBytes { sha256($0) } }

  /// HMAC-SHA256 of a buffer.
  public static func hmacSHA256(key: [UInt8], _ data: UnsafeRawBufferPointer) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 32)
    var len: UInt32 = 32
    key.withUnsafeBytes { k in
      out.withUnsafeMutableBytes { o in
        _ = HMAC(
          EVP_sha256(), k.baseAddress, Int32(k.count), data.baseAddress?.assumingMemoryBound(to: UInt8.self),
          data.count, o.baseAddress!.assumingMemoryBound(to: UInt8.self), &len)
      }
    }
    return out
  }

  /// HMAC-SHA256 of bytes.
  public static func hmacSHA256<D: ContiguousBytes>(key: [UInt8], _ data: D) -> [UInt8] {
    data.withUnsafeBytes { hmacSHA256(key: key, $0) }
  }

  /// HMAC-SHA256 with the key's pad states computed once, for hashing many messages under one key (chunk ids).
  /// Equal to `hmacSHA256(key:_:)`; a value type, so each worker holds its own copy.
  public struct HMACKey: @unchecked Sendable {
    // Only read after init (copied per call); the C struct holds no pointers.
    private var state = botrt_hmac_sha256_key()

    public init(_ key: [UInt8]) {
      key.withUnsafeBufferPointer { k in botrt_hmac_sha256_init(&state, k.baseAddress, k.count) }
    }

    /// The 32-byte MAC of `data`.
    public func mac(_ data: UnsafeRawBufferPointer) -> [UInt8] {
      [UInt8](unsafeUninitializedCapacity: 32) { o, n in
        withUnsafePointer(to: state) { botrt_hmac_sha256($0, data.baseAddress, data.count, o.baseAddress) }
        n = 32
      }
    }

    /// The 32-byte MAC of bytes.
    public func mac<D: ContiguousBytes>(_ data: D) -> [UInt8] { data.withUnsafeBytes { mac($0) } }
  }

  /// Constant-time comparison.
  public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var d: UInt8 = 0
    for i in 0..<a.count { d |= a[i] ^ b[i] }
    return d == 0
  }

  static func lastError() -> String {
    let code = ERR_get_error()
    if code == 0 { return "unknown error" }
    var buf = [CChar](repeating: 0, count: 256)
    ERR_error_string_n(code, &buf, buf.count)
    return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }
}

/// AES-256-GCM with a 96-bit nonce and a 128-bit tag. Output layout: nonce(12) || ciphertext || tag(16).
/// One instance holds an OpenSSL context and is reused by one worker; it is not Sendable.
public final class AESGCM {
  /// Bytes added to every sealed message (nonce + tag).
  public static let overhead = 28
  private let key: [UInt8]
  /// Contexts keyed once (the AES key schedule and GHASH tables); each message then sets only its nonce.
  /// Re-keying per message cost more CPU than encrypting a typical compressed chunk.
  private var encCtx: OpaquePointer?
  private var decCtx: OpaquePointer?
  /// Random nonces drawn 64 at a time (one RAND_bytes call, not one per message).
  private var nonces = [UInt8](repeating: 0, count: 12 * 64)
  private var nextNonce = 12 * 64

  /// Creates a cipher for a 32-byte key.
  public init(key: [UInt8]) throws {
    guard key.count == 32 else { throw CryptoError.invalidLength(what: "AES-256 key", expected: 32, actual: key.count) }
    self.key = key
  }

  deinit {
    if let c = encCtx { EVP_CIPHER_CTX_free(c) }
    if let c = decCtx { EVP_CIPHER_CTX_free(c) }
    nonces.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) }
  }

  private func keyedContext(encrypt: Bool) throws -> OpaquePointer {
    if let c = encrypt ? encCtx : decCtx { return c }
    guard let c = EVP_CIPHER_CTX_new() else { throw CryptoError.library("EVP_CIPHER_CTX_new failed") }
    let ok = key.withUnsafeBufferPointer { k in
      encrypt
        ? EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), nil, k.baseAddress, nil)
        : EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), nil, k.baseAddress, nil)
    }
    guard ok == 1, botrt_gcm_set_ivlen(c, 12) == 1 else {
      EVP_CIPHER_CTX_free(c)
      throw CryptoError.library("GCM init: \(Crypto.lastError())")
    }
    if encrypt { encCtx = c } else { decCtx = c }
    return c
  }

  private func drawNonce(into p: UnsafeMutablePointer<UInt8>) {
    if nextNonce == nonces.count {
      let rc = nonces.withUnsafeMutableBytes {
        RAND_bytes($0.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32($0.count))
      }
      precondition(rc == 1, "RAND_bytes failed: the system's random source is unavailable")
      nextNonce = 0
    }
    nonces.withUnsafeMutableBytes { n in
      p.update(from: n.baseAddress!.assumingMemoryBound(to: UInt8.self) + nextNonce, count: 12)
      // A nonce is used once: wipe it from the batch.
      memset(n.baseAddress! + nextNonce, 0, 12)
    }
    nextNonce += 12
  }

  /// Seals `plaintext` with a fresh random nonce, binding `aad`.
  public func seal(_ plaintext: UnsafeRawBufferPointer, aad: [UInt8]) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 12 + plaintext.count + 16)
    try out.withUnsafeMutableBytes { o in
      try sealInto(o.baseAddress!.assumingMemoryBound(to: UInt8.self), plaintext, aad: aad)
    }
    return out
  }

  /// Seals `plaintext` and appends the sealed message to `out` (no intermediate buffer); returns its length.
  @discardableResult
  public func seal(_ plaintext: UnsafeRawBufferPointer, aad: [UInt8], appendingTo out: inout [UInt8]) throws -> Int {
    let start = out.count
    let n = 12 + plaintext.count + 16
    // Copy the plaintext into place (a memcpy) and encrypt it there: appending n zero bytes element by element
    // and then writing over them costs about as much CPU as AES-GCM itself.
    out.append(contentsOf: repeatElement(0, count: 12))
    out.append(contentsOf: plaintext)
    out.append(contentsOf: repeatElement(0, count: 16))
    try out.withUnsafeMutableBytes { o in
      let ob = o.baseAddress!.assumingMemoryBound(to: UInt8.self) + start
      try sealInto(ob, UnsafeRawBufferPointer(start: ob + 12, count: plaintext.count), aad: aad)
    }
    return n
  }

  /// Writes nonce || ciphertext || tag (plaintext.count + 28 bytes) at `ob`.
  private func sealInto(_ ob: UnsafeMutablePointer<UInt8>, _ plaintext: UnsafeRawBufferPointer, aad: [UInt8]) throws {
    drawNonce(into: ob)
    let ctx = try keyedContext(encrypt: true)
    guard EVP_EncryptInit_ex(ctx, nil, nil, nil, ob) == 1 else {
      throw CryptoError.library("GCM nonce: \(Crypto.lastError())")
    }
    var len: Int32 = 0
    if !aad.isEmpty {
      let r = aad.withUnsafeBufferPointer { a in EVP_EncryptUpdate(ctx, nil, &len, a.baseAddress, Int32(a.count)) }
      guard r == 1 else { throw CryptoError.library("GCM aad: \(Crypto.lastError())") }
    }
    var written = 0
    if plaintext.count > 0 {
      guard
        EVP_EncryptUpdate(
          ctx, ob + 12, &len, plaintext.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(plaintext.count)) == 1
      else { throw CryptoError.library("GCM encrypt: \(Crypto.lastError())") }
      written = Int(len)
    }
    guard EVP_EncryptFinal_ex(ctx, ob + 12 + written, &len) == 1 else {
      throw CryptoError.library("GCM final: \(Crypto.lastError())")
    }
    guard botrt_gcm_get_tag(ctx, 16, ob + 12 + plaintext.count) == 1 else {
      throw CryptoError.library("GCM tag: \(Crypto.lastError())")
    }
  }

  /// Seals bytes.
  public func seal<D: ContiguousBytes>(_ plaintext: D, aad: [UInt8]) throws -> [UInt8] {
    try plaintext.withUnsafeBytes { try seal($0, aad: aad) }
  }

  /// Opens a sealed message; throws `CryptoError.authenticationFailed` on any tampering or a wrong key.
  public func open(_ sealed: UnsafeRawBufferPointer, aad: [UInt8]) throws -> [UInt8] {
    guard sealed.count > Self.overhead else {
      var none: UInt8 = 0
      _ = try open(sealed, aad: aad, into: &none)
      return []
    }
    // Uninitialized output: every byte is written by the decryption or the array is discarded by the throw.
    return try [UInt8](unsafeUninitializedCapacity: sealed.count - Self.overhead) { o, initialized in
      initialized = 0
      initialized = try open(sealed, aad: aad, into: o.baseAddress!)
    }
  }

  /// Opens a sealed message into `out`, which must hold `sealed.count - overhead` bytes; returns that length.
  /// On a throw the bytes at `out` are unspecified and must not be used.
  public func open(_ sealed: UnsafeRawBufferPointer, aad: [UInt8], into ob: UnsafeMutablePointer<UInt8>) throws -> Int {
    guard sealed.count >= Self.overhead else { throw CryptoError.authenticationFailed }
    let n = sealed.count - Self.overhead
    let sb = sealed.baseAddress!.assumingMemoryBound(to: UInt8.self)
    let ctx = try keyedContext(encrypt: false)
    guard EVP_DecryptInit_ex(ctx, nil, nil, nil, sb) == 1 else {
      throw CryptoError.library("GCM nonce: \(Crypto.lastError())")
    }
    var len: Int32 = 0
    if !aad.isEmpty {
      let r = aad.withUnsafeBufferPointer { a in EVP_DecryptUpdate(ctx, nil, &len, a.baseAddress, Int32(a.count)) }
      guard r == 1 else { throw CryptoError.library("GCM aad: \(Crypto.lastError())") }
    }
    if n > 0 {
      guard EVP_DecryptUpdate(ctx, ob, &len, sb + 12, Int32(n)) == 1 else { throw CryptoError.authenticationFailed }
    }
    // OpenSSL copies the tag; GCM's final step writes no bytes (the output pointer is only checked).
    guard botrt_gcm_set_tag(ctx, 16, UnsafeMutableRawPointer(mutating: sb + 12 + n)) == 1 else {
      throw CryptoError.library("GCM set tag: \(Crypto.lastError())")
    }
    var fl: Int32 = 0
    let fin = EVP_DecryptFinal_ex(ctx, ob + n, &fl)
    guard fin == 1 else {
      ERR_clear_error()
      throw CryptoError.authenticationFailed
    }
    return n
  }

  /// Opens bytes.
  public func open<D: ContiguousBytes>(_ sealed: D, aad: [UInt8]) throws -> [UInt8] {
    try sealed.withUnsafeBytes { try open($0, aad: aad) }
  }
}

/// Ed25519 signing and verification over raw 32-byte keys.
public enum Ed25519 {
  /// A new random 32-byte private key (seed).
  public static func generatePrivateKey() -> [UInt8] { Crypto.randomBytes(32) }

  private static func pkey(privateKey: [UInt8]) throws -> OpaquePointer {
    guard privateKey.count == 32 else {
      throw CryptoError.invalidLength(what: "Ed25519 private key", expected: 32, actual: privateKey.count)
    }
    guard
      let p = privateKey.withUnsafeBufferPointer({
        EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, $0.baseAddress, 32)
      })
    else { throw CryptoError.library("Ed25519 key: \(Crypto.lastError())") }
    return p
  }

  /// The public key for a private key.
  public static func publicKey(privateKey: [UInt8]) throws -> [UInt8] {
    let p = try pkey(privateKey: privateKey)
    defer { EVP_PKEY_free(p) }
    var out = [UInt8](repeating: 0, count: 32)
    var len = 32
    guard EVP_PKEY_get_raw_public_key(p, &out, &len) == 1 else {
      throw CryptoError.library("Ed25519 public key: \(Crypto.lastError())")
    }
    return out
  }

  /// Signs a message; returns a 64-byte signature.
  public static func sign(_ message: [UInt8], privateKey: [UInt8]) throws -> [UInt8] {
    let p = try pkey(privateKey: privateKey)
    defer { EVP_PKEY_free(p) }
    guard let md = EVP_MD_CTX_new() else { throw CryptoError.library("EVP_MD_CTX_new failed") }
    defer { EVP_MD_CTX_free(md) }
    guard EVP_DigestSignInit(md, nil, nil, nil, p) == 1 else {
      throw CryptoError.library("sign init: \(Crypto.lastError())")
    }
    var sig = [UInt8](repeating: 0, count: 64)
    var len = 64
    let rc = message.withUnsafeBufferPointer { m in EVP_DigestSign(md, &sig, &len, m.baseAddress, m.count) }
    guard rc == 1 else { throw CryptoError.library("sign: \(Crypto.lastError())") }
    return sig
  }

  /// Verifies a signature; false on any mismatch.
  public static func verify(_ message: [UInt8], signature: [UInt8], publicKey: [UInt8]) -> Bool {
    guard publicKey.count == 32, signature.count == 64 else { return false }
    guard
      let p = publicKey.withUnsafeBufferPointer({
        EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, $0.baseAddress, 32)
      })
    else { return false }
    defer { EVP_PKEY_free(p) }
    guard let md = EVP_MD_CTX_new() else { return false }
    defer { EVP_MD_CTX_free(md) }
    guard EVP_DigestVerifyInit(md, nil, nil, nil, p) == 1 else { return false }
    let rc = message.withUnsafeBufferPointer { m in
      signature.withUnsafeBufferPointer { s in EVP_DigestVerify(md, s.baseAddress, 64, m.baseAddress, m.count) }
    }
    ERR_clear_error()
    return rc == 1
  }
}

/// Hex encoding helpers.
public enum Hex {
  /// Lowercase hex of bytes.
  public static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    let digits: [UInt8] = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    for b in bytes {
      out.append(digits[Int(b >> 4)])
      out.append(digits[Int(b & 15)])
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// Bytes from hex, or nil when malformed.
  public static func decode(_ s: String) -> [UInt8]? {
    let u = Array(s.utf8)
    guard u.count % 2 == 0 else { return nil }
    func v(_ c: UInt8) -> UInt8? {
      switch c {
      case 48...57: return c - 48
      case 97...102: return c - 87
      case 65...70: return c - 55
      default: return nil
      }
    }
    var out = [UInt8]()
    out.reserveCapacity(u.count / 2)
    var i = 0
    while i < u.count {
      guard let h = v(u[i]), let l = v(u[i + 1]) else { return nil }
      out.append(h << 4 | l)
      i += 2
    }
    return out
  }
}

/// RSA signatures for OAuth2 JWT assertions (RS256: RSASSA-PKCS1-v1_5 with SHA-256).
public enum RSASigner {
  /// Signs `message` with the PEM private key (PKCS#8 "PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY").
  /// Errors never include the key.
  public static func signSHA256(pem: String, message: [UInt8]) throws -> [UInt8] {
    let body = pem.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
      .filter { !$0.isEmpty && !$0.hasPrefix("-----") }.joined()
    guard let der = Data(base64Encoded: body), !der.isEmpty else {
      throw CryptoError.library("the private key is not a PEM block")
    }
    let bytes = [UInt8](der)
    let key: OpaquePointer? = bytes.withUnsafeBufferPointer { b in
      var p: UnsafePointer<UInt8>? = b.baseAddress
      return d2i_AutoPrivateKey(nil, &p, b.count)
    }
    guard let key else { throw CryptoError.library("the private key cannot be parsed: \(Crypto.lastError())") }
    defer { EVP_PKEY_free(key) }
    guard let md = EVP_MD_CTX_new() else { throw CryptoError.library("EVP_MD_CTX_new failed") }
    defer { EVP_MD_CTX_free(md) }
    guard EVP_DigestSignInit(md, nil, EVP_sha256(), nil, key) == 1 else {
      throw CryptoError.library("RSA sign init: \(Crypto.lastError())")
    }
    var len = 0
    guard message.withUnsafeBufferPointer({ m in EVP_DigestSign(md, nil, &len, m.baseAddress, m.count) }) == 1 else {
      throw CryptoError.library("RSA sign: \(Crypto.lastError())")
    }
    var sig = [UInt8](repeating: 0, count: len)
    guard message.withUnsafeBufferPointer({ m in EVP_DigestSign(md, &sig, &len, m.baseAddress, m.count) }) == 1 else {
      throw CryptoError.library("RSA sign: \(Crypto.lastError())")
    }
    return Array(sig.prefix(len))
  }
}
