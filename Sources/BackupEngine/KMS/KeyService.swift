import Foundation

/// A data-encryption key wrapped by a key-encryption key (KEK) held by a KMS.
public struct WrappedKey: Sendable, Hashable, Codable {
  /// Which KMS wrapped it, without secrets, e.g. "vault-transit://127.0.0.1:8200/transit/backup".
  public var kms: String
  /// The KMS's own ciphertext (Vault's "vault:v1:...", AWS KMS's CiphertextBlob), base64 where binary.
  public var ciphertext: String
  /// The KEK version or id that wrapped it, when the KMS reports one.
  public var keyVersion: String?
  public init(kms: String, ciphertext: String, keyVersion: String? = nil) {
    self.kms = kms
    self.ciphertext = ciphertext
    self.keyVersion = keyVersion
  }
}

/// Typed KMS failures. Messages name the KMS and the key, never a token or key bytes.
public enum KMSError: Error, Sendable, CustomStringConvertible {
  /// The KMS URL or its settings are malformed.
  case invalidConfiguration(String)
  /// The KMS could not be reached.
  case unreachable(kms: String, message: String)
  /// The KMS refused the credentials.
  case accessDenied(kms: String, message: String)
  /// The KEK does not exist.
  case keyNotFound(kms: String, key: String)
  /// Unwrapping failed: the wrapped key was made with another KEK, or it is damaged.
  case unwrapFailed(kms: String, message: String)
  case failed(kms: String, message: String)

  public var description: String {
    switch self {
    case .invalidConfiguration(let m): return "invalid KMS configuration: \(m)"
    case .unreachable(let k, let m): return "KMS \(k) unreachable: \(m)"
    case .accessDenied(let k, let m): return "KMS \(k) denied access: \(m); check the token or credentials"
    case .keyNotFound(let k, let key): return "KMS \(k) has no key \(key)"
    case .unwrapFailed(let k, let m): return "KMS \(k) could not unwrap the data key (wrong KEK?): \(m)"
    case .failed(let k, let m): return "KMS \(k) failed: \(m)"
    }
  }
}

/// A key-encryption service: wraps and unwraps 32-byte data keys. Plaintext keys never leave memory.
public protocol KeyService: Sendable {
  /// The KMS URL without secrets; recorded in the repository config.
  var descriptor: String { get }
  /// Wraps a plaintext data key. `context` binds the wrap to its purpose (e.g. "botrt:data:files").
  func wrap(_ key: [UInt8], context: String) async throws -> WrappedKey
  /// Unwraps a data key wrapped by this service (or an older version of its KEK).
  func unwrap(_ wrapped: WrappedKey, context: String) async throws -> [UInt8]
}

/// KMS URIs as they may be shown: in results, audit lines and errors.
public enum KMSURI {
  /// Query parameters whose values are secrets and are dropped.
  static let secretNames = ["token", "secret", "password", "passwd", "credential", "signature", "sig", "key-material"]

  /// The URI without user info (user:password@) and without query parameters that look like secrets
  /// (token, secret, password, credential, signature), e.g. for the `keyUnwraps` field of the result.
  public static func redact(_ uri: String) -> String {
    guard var c = URLComponents(string: uri) else {
      // Not parseable: keep only what precedes a query, and drop anything that looks like user info.
      let noQuery = String(uri.split(separator: "?", maxSplits: 1).first ?? "")
      if let at = noQuery.range(of: "@"), let scheme = noQuery.range(of: "://"), scheme.upperBound < at.lowerBound {
        return String(noQuery[..<scheme.upperBound]) + String(noQuery[at.upperBound...])
      }
      return noQuery
    }
    c.user = nil
    c.password = nil
    if let items = c.queryItems {
      let kept = items.filter { item in
        let n = item.name.lowercased()
        return !secretNames.contains { n.contains($0) }
      }
      c.queryItems = kept.isEmpty ? nil : kept
    }
    return c.string ?? uri
  }
}
