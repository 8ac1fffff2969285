import CurlHTTP
import EngineContract
import Foundation

/// A `KeyService` on Vault's (or OpenBao's) Transit engine: `vault-transit://host:port/mount/keyName`.
///
/// - HTTPS is used when the URL says `?tls=true` (or `?tls=1`) or a CA file is given (`KMSOptions.caFile`, or the
///   URL's `?ca=/path`); `?tls=false` forces plain HTTP. With TLS and no CA file, the system trust store is used.
///   VAULT_CACERT is read only when TLS is on.
/// - The token comes from `KMSOptions.tokenFile`, else VAULT_TOKEN; VAULT_NAMESPACE is sent when set.
/// - A URL without a host (`vault-transit:///mount/keyName`) takes the server from VAULT_ADDR, as the vault CLI:
///   its scheme decides TLS (unless the URL says `?tls=`); a host in the URL wins over VAULT_ADDR.
/// - `wrap` encrypts our data key with `<mount>/encrypt/<key>`; the plaintext Vault encrypts is the context
///   (length-prefixed) followed by the 32 key bytes, and `unwrap` (via `decrypt`) refuses a key whose embedded
///   context differs. Transit's own `associated_data` is not used because `rewrap` does not accept it.
/// - `rewrap` moves a wrapped key to the newest version of the Transit key without exposing it (key rotation).
public struct VaultTransitKeyService: KeyService {
  public let descriptor: String
  /// The mount path of the Transit engine, e.g. "transit".
  public let mount: String
  public let keyName: String
  let base: String
  let token: Redacted<String>
  let namespace: String?
  let tls: TLSOptions
  let client: CurlClient
  let policy: RetryPolicy

  public init(url: URLComponents, options: KMSOptions) throws {
    try self.init(url: url, options: options, policy: RetryPolicy(maxAttempts: 4, requestTimeout: .seconds(60)))
  }

  /// As `init(url:options:)`, with an explicit retry policy.
  public init(url: URLComponents, options: KMSOptions, policy: RetryPolicy) throws {
    let env = options.environment
    var host = url.host ?? ""
    var urlPort = url.port
    var addrTLS: Bool? = nil
    if host.isEmpty, let addr = env[EngineEnv.vaultAddr], !addr.isEmpty {
      guard let a = URLComponents(string: addr), let h = a.host, !h.isEmpty,
        ["http", "https"].contains(a.scheme?.lowercased() ?? "")
      else {
        throw KMSError.invalidConfiguration("VAULT_ADDR \(addr) is not an http:// or https:// address")
      }
      host = h
      urlPort = a.port
      addrTLS = a.scheme?.lowercased() == "https"
    }
    guard url.scheme?.lowercased() == "vault-transit", !host.isEmpty else {
      throw KMSError.invalidConfiguration(
        "a Vault Transit KMS URL looks like vault-transit://host:port/mount/keyName, or vault-transit:///mount/keyName "
          + "with VAULT_ADDR (got \(Self.redacted(url)))")
    }
    let parts = url.path.split(separator: "/").map(String.init)
    guard parts.count >= 2 else {
      throw KMSError.invalidConfiguration(
        "Vault Transit KMS URL \(Self.redacted(url)) needs a mount and a key name: vault-transit://host:port/transit/myKey"
      )
    }
    mount = parts.dropLast().joined(separator: "/")
    keyName = parts[parts.count - 1]
    // An empty value (VAULT_CACERT= in a Pod spec) is no CA file.
    func nonEmpty(_ s: String?) -> String? { s.flatMap { $0.isEmpty ? nil : $0 } }
    let caFile = nonEmpty(options.caFile) ?? nonEmpty(queryValue(url, "ca", "cacert"))
    let tlsOn = parseBool(queryValue(url, "tls")) ?? addrTLS ?? (caFile != nil)
    let scheme = tlsOn ? "https" : "http"
    let port = urlPort.map { ":\($0)" } ?? ""
    base = "\(scheme)://\(host)\(port)/v1"
    descriptor = "vault-transit://\(host)\(port)/\(mount)/\(keyName)" + (tlsOn ? "?tls=true" : "")
    tls = TLSOptions(caFile: tlsOn ? (caFile ?? nonEmpty(env[EngineEnv.vaultCACert])) : nil)
    if let file = options.tokenFile {
      guard let d = FileManager.default.contents(atPath: file) else {
        throw KMSError.invalidConfiguration("Vault token file \(file) is missing or unreadable")
      }
      let t = String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
      token = Redacted(t)
      guard !t.isEmpty else { throw KMSError.invalidConfiguration("Vault token file \(file) is empty") }
    } else if let t = env[EngineEnv.vaultToken], !t.isEmpty {
      token = Redacted(t)
    } else {
      throw KMSError.invalidConfiguration(
        "no Vault token for \(descriptor): set VAULT_TOKEN or give a token file")
    }
    namespace = firstEnv(env, EngineEnv.vaultNamespace)
    client = options.httpClient ?? CurlClient()
    self.policy = policy
  }

  static func redacted(_ url: URLComponents) -> String {
    var c = url
    c.user = nil
    c.password = nil
    c.query = nil
    return c.string ?? "?"
  }

  /// One Transit API call; returns the `data` object of the answer.
  func call(_ action: String, _ body: [String: String]) async throws -> [String: Any] {
    try await call(action, url: "\(base)/\(mount)/\(action)/\(keyName)", body)
  }

  /// Creates a new version of the Transit key (`POST <mount>/keys/<key>/rotate`); later wraps use it, and older
  /// versions still unwrap until Vault's min_decryption_version is raised. Returns the new latest version.
  @discardableResult
  public func rotateKEK() async throws -> Int? {
    let data = try await call("rotate", url: "\(base)/\(mount)/keys/\(keyName)/rotate", [:])
    return data["latest_version"] as? Int
  }

  func call(_ action: String, url: String, _ body: [String: String]) async throws -> [String: Any] {
    let payload = try JSONSerialization.data(withJSONObject: body)
    var headers: [(name: String, value: String)] = [
      ("X-Vault-Token", token.value), ("Content-Type", "application/json"),
    ]
    if let namespace { headers.append(("X-Vault-Namespace", namespace)) }
    let h = headers
    let response: HTTPResponse
    do {
      response = try await sendWithRetry(client, policy: policy) {
        HTTPRequest(method: "POST", url: url, headers: h, body: payload, tls: tls)
      }
    } catch let e as RetriesExhausted {
      throw KMSError.unreachable(kms: descriptor, message: "\(e.message) after \(e.attempts) attempts")
    } catch let e as HTTPTransportError {
      if e.kind == .tls {
        throw KMSError.unreachable(
          kms: descriptor, message: "\(e.description); check the CA file (\(tls.caFile ?? "system trust store"))")
      }
      throw KMSError.unreachable(kms: descriptor, message: e.description)
    }
    let json = jsonObject(response.body)
    let errors = (json?["errors"] as? [String])?.joined(separator: "; ") ?? ""
    switch response.status {
    case 200:
      guard let data = json?["data"] as? [String: Any] else {
        throw KMSError.failed(kms: descriptor, message: "\(action) answered without a data object")
      }
      return data
    case 204:
      return [:]
    case 401, 403:
      throw KMSError.accessDenied(
        kms: descriptor, message: "\(action) on key \(keyName): \(errors.isEmpty ? "permission denied" : errors)")
    default:
      if errors.contains("encryption key not found") || errors.contains("key not found") {
        throw KMSError.keyNotFound(kms: descriptor, key: keyName)
      }
      // A refused ciphertext (4xx) is the wrong key; a server failure (5xx) is the KMS being unavailable.
      if action == "decrypt" || action == "rewrap", response.status < 500 {
        throw KMSError.unwrapFailed(kms: descriptor, message: "\(action) answered HTTP \(response.status): \(errors)")
      }
      throw KMSError.failed(kms: descriptor, message: "\(action) answered HTTP \(response.status): \(errors)")
    }
  }

  /// "vault:v3:…" → "3".
  static func keyVersion(of ciphertext: String) -> String? {
    let parts = ciphertext.split(separator: ":", maxSplits: 2)
    guard parts.count == 3, parts[0] == "vault", parts[1].hasPrefix("v") else { return nil }
    let v = parts[1].dropFirst()
    return v.isEmpty || !v.allSatisfy(\.isNumber) ? nil : String(v)
  }

  /// The plaintext given to Vault: a 2-byte big-endian context length, the context (UTF-8), the key.
  static func envelope(_ key: [UInt8], context: String) -> Data {
    let c = Array(context.utf8.prefix(0xFFFF))
    var out = Data([UInt8(c.count >> 8), UInt8(c.count & 0xFF)])
    out.append(contentsOf: c)
    out.append(contentsOf: key)
    return out
  }

  /// Checks the embedded context and returns the 32-byte key.
  static func open(_ plain: Data, context: String, kms: String) throws -> [UInt8] {
    let b = [UInt8](plain)
    guard b.count >= 2 else { throw KMSError.unwrapFailed(kms: kms, message: "the unwrapped value is too short") }
    let n = Int(b[0]) << 8 | Int(b[1])
    guard b.count == 2 + n + 32 else {
      throw KMSError.unwrapFailed(
        kms: kms, message: "the unwrapped value has \(b.count) bytes; expected a context and a 32-byte key")
    }
    let embedded = String(decoding: b[2..<(2 + n)], as: UTF8.self)
    guard embedded == context else {
      throw KMSError.unwrapFailed(
        kms: kms, message: "the data key was wrapped for '\(embedded)', not for '\(context)'")
    }
    return Array(b[(2 + n)...])
  }

  public func wrap(_ key: [UInt8], context: String) async throws -> WrappedKey {
    guard key.count == 32 else {
      throw KMSError.failed(kms: descriptor, message: "data keys are 32 bytes, got \(key.count)")
    }
    let data = try await call("encrypt", ["plaintext": Self.envelope(key, context: context).base64EncodedString()])
    guard let ct = data["ciphertext"] as? String else {
      throw KMSError.failed(kms: descriptor, message: "encrypt answered without a ciphertext")
    }
    return WrappedKey(kms: descriptor, ciphertext: ct, keyVersion: Self.keyVersion(of: ct))
  }

  public func unwrap(_ wrapped: WrappedKey, context: String) async throws -> [UInt8] {
    guard wrapped.ciphertext.hasPrefix("vault:v") else {
      throw KMSError.unwrapFailed(kms: descriptor, message: "the wrapped key is not a Vault ciphertext (vault:vN:…)")
    }
    let data = try await call("decrypt", ["ciphertext": wrapped.ciphertext])
    guard let p = data["plaintext"] as? String, let bytes = Data(base64Encoded: p) else {
      throw KMSError.unwrapFailed(kms: descriptor, message: "decrypt answered without a base64 plaintext")
    }
    return try Self.open(bytes, context: context, kms: descriptor)
  }

  /// Re-encrypts a wrapped key under the newest version of the Transit key (after `rotate`); the plaintext
  /// never leaves Vault, and the embedded context is kept.
  public func rewrap(_ wrapped: WrappedKey) async throws -> WrappedKey {
    let data = try await call("rewrap", ["ciphertext": wrapped.ciphertext])
    guard let ct = data["ciphertext"] as? String else {
      throw KMSError.failed(kms: descriptor, message: "rewrap answered without a ciphertext")
    }
    return WrappedKey(kms: descriptor, ciphertext: ct, keyVersion: Self.keyVersion(of: ct))
  }
}
