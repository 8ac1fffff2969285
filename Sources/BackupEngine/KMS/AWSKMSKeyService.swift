import CurlHTTP
import EngineContract
import Foundation

/// A `KeyService` on AWS KMS (or a compatible server such as moto): `awskms://keyId?region=…&endpoint=…`.
///
/// The key may also be an ARN or alias in the path: `awskms:///arn:aws:kms:…:key/…` or `awskms:///alias/name`.
/// Endpoint: `KMSOptions.endpoint`, the URL's `endpoint`, AWS_ENDPOINT_URL_KMS, BOTRT_AWSKMS_ENDPOINT, AWS_ENDPOINT_URL,
/// else `https://kms.<region>.amazonaws.com`. Region: the URL's `region`, AWS_REGION, AWS_DEFAULT_REGION, the ARN's.
/// Wrapping uses the Encrypt/Decrypt JSON API with `{"botrt": context}` as the EncryptionContext.
public struct AWSKMSKeyService: KeyService {
  public let descriptor: String
  /// The key id, ARN or alias as given.
  public let keyId: String
  public let region: String
  let endpoint: Endpoint
  let signer: SigV4
  let client: CurlClient
  let policy: RetryPolicy

  public init(url: URLComponents, options: KMSOptions) throws {
    try self.init(url: url, options: options, policy: RetryPolicy(maxAttempts: 4, requestTimeout: .seconds(60)))
  }

  /// As `init(url:options:)`, with an explicit retry policy.
  public init(url: URLComponents, options: KMSOptions, policy: RetryPolicy) throws {
    guard url.scheme?.lowercased() == "awskms" else {
      throw KMSError.invalidConfiguration("an AWS KMS URL looks like awskms://keyId?region=us-east-1")
    }
    let fromHost = url.host ?? ""
    let fromPath = String(url.path.drop { $0 == "/" })
    let key = fromHost.isEmpty ? fromPath : (fromPath.isEmpty ? fromHost : "\(fromHost)/\(fromPath)")
    guard !key.isEmpty else {
      throw KMSError.invalidConfiguration(
        "AWS KMS URL has no key: use awskms://<key-id>, awskms:///arn:aws:kms:… or awskms:///alias/<name>")
    }
    keyId = key
    let env = options.environment
    let arnRegion: String? = {
      let p = key.split(separator: ":", omittingEmptySubsequences: false)
      return key.hasPrefix("arn:") && p.count > 3 && !p[3].isEmpty ? String(p[3]) : nil
    }()
    guard
      let region = queryValue(url, "region") ?? firstEnv(env, EngineEnv.awsRegion, EngineEnv.awsDefaultRegion)
        ?? arnRegion
    else {
      throw KMSError.invalidConfiguration(
        "AWS KMS key \(key) has no region: add ?region=… to the KMS URL or set AWS_REGION")
    }
    self.region = region
    let endpointString =
      options.endpoint ?? queryValue(url, "endpoint")
      ?? firstEnv(env, EngineEnv.awsEndpointURLKMS, EngineEnv.awsKMSEndpoint, EngineEnv.awsEndpointURL)
    if let endpointString {
      guard let e = Endpoint(endpointString) else {
        throw KMSError.invalidConfiguration("AWS KMS endpoint '\(endpointString)' is not an http(s) URL")
      }
      endpoint = e
    } else {
      endpoint = Endpoint(scheme: "https", host: "kms.\(region).amazonaws.com")
    }
    var d = "awskms:///\(key)?region=\(region)"
    if let endpointString = queryValue(url, "endpoint") { d += "&endpoint=\(endpointString)" }
    descriptor = d
    guard let creds = AWSCredentials.fromEnvironment(env) else {
      throw KMSError.invalidConfiguration(
        "no AWS credentials for \(descriptor): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    }
    signer = SigV4(credentials: creds, region: region, service: "kms")
    client = options.httpClient ?? CurlClient()
    self.policy = policy
  }

  /// KMS errors that are worth retrying (throttling arrives as HTTP 400).
  static func isRetryable(_ r: HTTPResponse) -> Bool {
    if isRetryableStatus(r.status) { return true }
    guard r.status == 400, let type = jsonObject(r.body)?["__type"] as? String else { return false }
    return ["ThrottlingException", "KMSInternalException", "DependencyTimeoutException"].contains(shortType(type))
  }

  /// "com.amazonaws.kms#NotFoundException" → "NotFoundException".
  static func shortType(_ t: String) -> String { String(t.split(separator: "#").last ?? Substring(t)) }

  /// One KMS JSON API call (`TrentService.<action>`); returns the answer object.
  func call(_ action: String, _ body: [String: Any]) async throws -> [String: Any] {
    let payload = try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
    let hash = SigV4.payloadHash(payload)
    let r = SignableRequest(
      method: "POST", scheme: endpoint.scheme, host: endpoint.authority, encodedPath: endpoint.basePath + "/",
      query: [],
      headers: [("Content-Type", "application/x-amz-json-1.1"), ("X-Amz-Target", "TrentService.\(action)")],
      body: payload)
    let response: HTTPResponse
    do {
      response = try await sendWithRetry(client, policy: policy, retryable: Self.isRetryable) {
        HTTPRequest(
          method: "POST", url: r.url,
          headers: signer.sign(r, date: Date(), payloadHash: hash, sendContentSHA256: false),
          body: payload)
      }
    } catch let e as RetriesExhausted {
      throw KMSError.unreachable(kms: descriptor, message: "\(e.message) after \(e.attempts) attempts")
    } catch let e as HTTPTransportError {
      throw KMSError.unreachable(kms: descriptor, message: e.description)
    }
    let json = jsonObject(response.body)
    if response.status == 200, let json { return json }
    let type = (json?["__type"] as? String).map(Self.shortType) ?? "HTTP \(response.status)"
    let message = (json?["message"] as? String) ?? (json?["Message"] as? String) ?? ""
    let detail = message.isEmpty ? type : "\(type): \(message)"
    switch type {
    case "NotFoundException":
      throw KMSError.keyNotFound(kms: descriptor, key: keyId)
    case "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
      "IncompleteSignature", "ExpiredTokenException":
      throw KMSError.accessDenied(kms: descriptor, message: "\(action): \(detail)")
    case "InvalidCiphertextException", "IncorrectKeyException":
      throw KMSError.unwrapFailed(kms: descriptor, message: detail)
    default:
      if response.status == 401 || response.status == 403 {
        throw KMSError.accessDenied(kms: descriptor, message: "\(action): \(detail)")
      }
      throw KMSError.failed(kms: descriptor, message: "\(action): \(detail)")
    }
  }

  public func wrap(_ key: [UInt8], context: String) async throws -> WrappedKey {
    let out = try await call(
      "Encrypt",
      ["KeyId": keyId, "Plaintext": Data(key).base64EncodedString(), "EncryptionContext": ["botrt": context]])
    guard let blob = out["CiphertextBlob"] as? String else {
      throw KMSError.failed(kms: descriptor, message: "Encrypt answered without a CiphertextBlob")
    }
    return WrappedKey(kms: descriptor, ciphertext: blob, keyVersion: out["KeyId"] as? String)
  }

  public func unwrap(_ wrapped: WrappedKey, context: String) async throws -> [UInt8] {
    let out = try await call(
      "Decrypt", ["KeyId": keyId, "CiphertextBlob": wrapped.ciphertext, "EncryptionContext": ["botrt": context]])
    guard let p = out["Plaintext"] as? String, let bytes = Data(base64Encoded: p) else {
      throw KMSError.unwrapFailed(kms: descriptor, message: "Decrypt answered without a base64 Plaintext")
    }
    guard bytes.count == 32 else {
      throw KMSError.unwrapFailed(kms: descriptor, message: "unwrapped key has \(bytes.count) bytes, expected 32")
    }
    return [UInt8](bytes)
  }

  /// Creates a new symmetric KMS key (for `init` convenience and tests) and returns its KeyId.
  public func createKey(description: String) async throws -> String {
    let out = try await call("CreateKey", ["Description": description, "KeySpec": "SYMMETRIC_DEFAULT"])
    guard let meta = out["KeyMetadata"] as? [String: Any], let id = meta["KeyId"] as? String else {
      throw KMSError.failed(kms: descriptor, message: "CreateKey answered without KeyMetadata.KeyId")
    }
    return id
  }
}
