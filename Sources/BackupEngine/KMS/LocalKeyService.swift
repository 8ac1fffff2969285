import Foundation

/// A local key-encryption key for air-gapped sites: a file holding 32 raw bytes or 64 hex characters.
/// Wrapping is AES-256-GCM of the data key under the KEK, with the context as associated data.
public struct LocalKeyService: KeyService {
  /// "file:///path/key" (no key material).
  public let descriptor: String
  private let kek: [UInt8]
  /// A short fingerprint of the KEK (first 8 bytes of SHA-256 of it, hex), recorded as the key version.
  public let fingerprint: String

  /// Loads the KEK from `path`; throws a typed KMS error when missing or malformed.
  public init(path: String) throws {
    descriptor = "file://\(path)"
    guard let d = FileManager.default.contents(atPath: path) else {
      throw KMSError.keyNotFound(kms: "file://\(path)", key: "\(path) (missing or unreadable)")
    }
    var bytes = [UInt8](d)
    if bytes.count != 32 {
      let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
      guard text.utf8.count == 64, let h = Hex.decode(text) else {
        throw KMSError.invalidConfiguration(
          "local key file \(path) must hold 32 raw bytes or 64 hex characters (it has \(bytes.count) bytes)")
      }
      bytes = h
    }
    kek = bytes
    fingerprint = Hex.encode(Crypto.sha256(bytes).prefix(8))
  }

  public func wrap(_ key: [UInt8], context: String) async throws -> WrappedKey {
    let sealed = try AESGCM(key: kek).seal(key, aad: Array(context.utf8))
    return WrappedKey(kms: descriptor, ciphertext: Data(sealed).base64EncodedString(), keyVersion: fingerprint)
  }

  public func unwrap(_ wrapped: WrappedKey, context: String) async throws -> [UInt8] {
    guard let d = Data(base64Encoded: wrapped.ciphertext) else {
      throw KMSError.unwrapFailed(kms: descriptor, message: "wrapped key is not base64")
    }
    do {
      return try AESGCM(key: kek).open(d, aad: Array(context.utf8))
    } catch {
      throw KMSError.unwrapFailed(
        kms: descriptor,
        message:
          "the key file does not match the key that wrapped this data key (wrapped by KEK \(wrapped.keyVersion ?? "?"), "
          + "this KEK is \(fingerprint))")
    }
  }
}
