import CurlHTTP
import EngineContract
import Foundation

/// The bearer token of a cloud KMS: a fixed token (from a file or an environment variable), or one obtained and
/// cached from an OAuth2 token endpoint (Azure client credentials, a Google service-account key). Neither the token
/// nor any credential ever appears in an error.
final class TokenProvider: @unchecked Sendable {
  enum Source {
    case fixed(Redacted<String>)
    /// Microsoft Entra client credentials: POST {authority}/{tenant}/oauth2/v2.0/token.
    case azureClientCredentials(tenant: String, clientId: String, secret: Redacted<String>, authority: String)
    /// A Google service-account key: a signed JWT assertion exchanged at `tokenURI`.
    case googleServiceAccount(email: String, privateKey: Redacted<String>, tokenURI: String, scope: String)
  }

  let source: Source
  let kms: String
  let client: CurlClient
  let policy: RetryPolicy
  private let cache = Locked<(token: String, expires: Date)?>(nil)

  init(source: Source, kms: String, client: CurlClient, policy: RetryPolicy) {
    self.source = source
    self.kms = kms
    self.client = client
    self.policy = policy
  }

  /// Reads a token file; throws naming the file (never its content).
  static func readFile(_ file: String, what: String) throws -> Redacted<String> {
    guard let d = FileManager.default.contents(atPath: file) else {
      throw KMSError.invalidConfiguration("\(what) token file \(file) is missing or unreadable")
    }
    let t = String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    guard !t.isEmpty else { throw KMSError.invalidConfiguration("\(what) token file \(file) is empty") }
    return Redacted(t)
  }

  /// Azure Key Vault: `KMSOptions.accessTokenFile`, AZURE_ACCESS_TOKEN_FILE, AZURE_ACCESS_TOKEN, else the client
  /// credentials AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET (authority AZURE_AUTHORITY_HOST, default
  /// https://login.microsoftonline.com).
  static func azure(options: KMSOptions, kms: String, client: CurlClient, policy: RetryPolicy) throws -> TokenProvider {
    let env = options.environment
    let source: Source
    if let file = options.accessTokenFile ?? firstEnv(env, EngineEnv.azureAccessTokenFile) {
      source = .fixed(try readFile(file, what: "Azure Key Vault"))
    } else if let t = firstEnv(env, EngineEnv.azureAccessToken) {
      source = .fixed(Redacted(t.trimmingCharacters(in: .whitespacesAndNewlines)))
    } else if let tenant = firstEnv(env, EngineEnv.azureTenantId), let id = firstEnv(env, EngineEnv.azureClientId),
      let secret = firstEnv(env, EngineEnv.azureClientSecret)
    {
      var authority = firstEnv(env, EngineEnv.azureAuthorityHost) ?? "https://login.microsoftonline.com"
      while authority.hasSuffix("/") { authority.removeLast() }
      guard Endpoint(authority) != nil else {
        throw KMSError.invalidConfiguration("AZURE_AUTHORITY_HOST '\(authority)' is not an http(s) URL")
      }
      source = .azureClientCredentials(tenant: tenant, clientId: id, secret: Redacted(secret), authority: authority)
    } else {
      throw KMSError.invalidConfiguration(
        "no Azure Key Vault credentials for \(kms): set AZURE_ACCESS_TOKEN (or give --kms-token-file), or "
          + "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET")
    }
    return TokenProvider(source: source, kms: kms, client: client, policy: policy)
  }

  /// Google Cloud KMS: `KMSOptions.accessTokenFile`, GOOGLE_OAUTH_ACCESS_TOKEN_FILE, GOOGLE_OAUTH_ACCESS_TOKEN, else
  /// the service-account key file BOTRT_GCPKMS_CREDENTIALS_FILE or GOOGLE_APPLICATION_CREDENTIALS.
  static func google(options: KMSOptions, kms: String, client: CurlClient, policy: RetryPolicy) throws -> TokenProvider
  {
    let env = options.environment
    let source: Source
    if let file = options.accessTokenFile ?? firstEnv(env, EngineEnv.googleAccessTokenFile) {
      source = .fixed(try readFile(file, what: "Google Cloud KMS"))
    } else if let t = firstEnv(env, EngineEnv.googleAccessToken) {
      source = .fixed(Redacted(t.trimmingCharacters(in: .whitespacesAndNewlines)))
    } else if let file = firstEnv(env, EngineEnv.gcpKMSCredentialsFile, EngineEnv.googleApplicationCredentials) {
      guard let d = FileManager.default.contents(atPath: file),
        let json = try? JSONSerialization.jsonObject(with: d) as? [String: Any]
      else {
        throw KMSError.invalidConfiguration("Google service-account key file \(file) is missing or not JSON")
      }
      guard json["type"] as? String == "service_account", let email = json["client_email"] as? String,
        let key = json["private_key"] as? String
      else {
        throw KMSError.invalidConfiguration(
          "Google credentials file \(file) is not a service-account key (type service_account, client_email, "
            + "private_key)")
      }
      let uri = (json["token_uri"] as? String) ?? "https://oauth2.googleapis.com/token"
      guard Endpoint(uri) != nil else {
        throw KMSError.invalidConfiguration("token_uri of \(file) is not an http(s) URL")
      }
      source = .googleServiceAccount(
        email: email, privateKey: Redacted(key), tokenURI: uri, scope: "https://www.googleapis.com/auth/cloudkms")
    } else {
      throw KMSError.invalidConfiguration(
        "no Google Cloud KMS credentials for \(kms): set GOOGLE_OAUTH_ACCESS_TOKEN (or give --kms-token-file), or "
          + "a service-account key file in BOTRT_GCPKMS_CREDENTIALS_FILE or GOOGLE_APPLICATION_CREDENTIALS")
    }
    return TokenProvider(source: source, kms: kms, client: client, policy: policy)
  }

  /// POSTs `body` with retries; a transport failure or exhausted retries is KMSError.unreachable with `context`
  /// and the error, scrubbed of credentials. Returns the answer and its body parsed as a JSON object, if it is one.
  func post(
    _ url: String, headers: [(name: String, value: String)], body: Data, context: String
  ) async throws -> (response: HTTPResponse, json: [String: Any]?) {
    let response: HTTPResponse
    do {
      response = try await sendWithRetry(client, policy: policy) {
        HTTPRequest(method: "POST", url: url, headers: headers, body: body)
      }
    } catch let e as RetriesExhausted {
      throw KMSError.unreachable(kms: kms, message: scrub("\(context)\(e.message) after \(e.attempts) attempts"))
    } catch let e as HTTPTransportError {
      throw KMSError.unreachable(kms: kms, message: scrub("\(context)\(e.description)"))
    }
    return (response, jsonObject(response.body))
  }

  /// POSTs a JSON body with the bearer token (see `post`).
  func postJSON(_ url: String, _ object: [String: String]) async throws -> (
    response: HTTPResponse, json: [String: Any]?
  ) {
    let payload = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    return try await post(
      url, headers: [try await header(), ("Content-Type", "application/json")], body: payload, context: "")
  }

  /// The Authorization header, fetching (or refreshing, a minute before it expires) a token when needed.
  func header() async throws -> (name: String, value: String) {
    ("Authorization", "Bearer \(try await token())")
  }

  func token() async throws -> String {
    if case .fixed(let t) = source { return t.value }
    if let c = cache.with({ $0 }), c.expires > Date().addingTimeInterval(60) { return c.token }
    let (url, form) = try requestForm()
    let body = Data(
      form.map { "\($0.0)=\(Self.formEncode($0.1))" }.joined(separator: "&").utf8)
    let (response, json) = try await post(
      url, headers: [("Content-Type", "application/x-www-form-urlencoded")], body: body,
      context: "token endpoint \(url): ")
    guard response.status == 200, let t = json?["access_token"] as? String, !t.isEmpty else {
      let code = (json?["error"] as? String) ?? "HTTP \(response.status)"
      let desc = scrub((json?["error_description"] as? String) ?? "")
      throw KMSError.accessDenied(
        kms: kms, message: "token endpoint \(url) refused the credentials: \(code)\(desc.isEmpty ? "" : ": \(desc)")")
    }
    let lifetime = (json?["expires_in"] as? Double) ?? Double((json?["expires_in"] as? String) ?? "") ?? 3600
    cache.with { $0 = (t, Date().addingTimeInterval(lifetime)) }
    return t
  }

  /// The token endpoint and its form fields.
  func requestForm() throws -> (String, [(String, String)]) {
    switch source {
    case .fixed: return ("", [])
    case .azureClientCredentials(let tenant, let id, let secret, let authority):
      return (
        "\(authority)/\(tenant)/oauth2/v2.0/token",
        [
          ("grant_type", "client_credentials"), ("client_id", id), ("client_secret", secret.value),
          ("scope", "https://vault.azure.net/.default"),
        ]
      )
    case .googleServiceAccount(let email, let key, let uri, let scope):
      let now = Int(Date().timeIntervalSince1970)
      let header = #"{"alg":"RS256","typ":"JWT"}"#
      let claims = try JSONSerialization.data(
        withJSONObject: ["iss": email, "scope": scope, "aud": uri, "iat": now, "exp": now + 3600] as [String: Any],
        options: [.sortedKeys, .withoutEscapingSlashes])
      let signingInput = Base64URL.encode(Data(header.utf8)) + "." + Base64URL.encode(claims)
      let sig: [UInt8]
      do { sig = try RSASigner.signSHA256(pem: key.value, message: Array(signingInput.utf8)) } catch {
        throw KMSError.invalidConfiguration("the service-account private key of \(email) cannot sign: \(error)")
      }
      return (
        uri,
        [
          ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
          ("assertion", signingInput + "." + Base64URL.encode(Data(sig))),
        ]
      )
    }
  }

  static func formEncode(_ s: String) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._~")
    return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
  }

  /// `s` with the token and any credential replaced, for messages built from a server's answer.
  func scrub(_ s: String) -> String {
    var secrets: [String] = []
    switch source {
    case .fixed(let t): secrets.append(t.value)
    case .azureClientCredentials(_, _, let secret, _): secrets.append(secret.value)
    case .googleServiceAccount: break
    }
    if let c = cache.with({ $0 }) { secrets.append(c.token) }
    var out = s
    for x in secrets where !x.isEmpty { out = out.replacingOccurrences(of: x, with: "<redacted>") }
    return out
  }
}

/// Base64url without padding (RFC 4648 section 5), as Azure Key Vault's JSON Web Key operations use.
enum Base64URL {
  static func encode(_ d: Data) -> String {
    d.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
      .replacingOccurrences(of: "=", with: "")
  }

  static func decode(_ s: String) -> Data? {
    var b = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    while b.count % 4 != 0 { b += "=" }
    return Data(base64Encoded: b)
  }
}

/// A `KeyService` on Azure Key Vault keys: `azurekv://VAULT.vault.azure.net/keys/NAME[/VERSION]`.
///
/// - `wrap` calls `POST {vault}/keys/{name}[/{version}]/wrapkey?api-version=7.4` with `{"alg":"RSA-OAEP-256",
///   "value":<base64url>}`; the key version that wrapped (from the answer's `kid`) is recorded, and `unwrap` calls
///   `.../keys/{name}/{that version}/unwrapkey`, so the data stays readable after the vault key is rotated.
/// - RSA-OAEP has no associated data: the wrapped value is the context (2-byte length, UTF-8) followed by the
///   32-byte key, and `unwrap` refuses a key whose embedded context differs (as for Vault Transit).
/// - The bearer token (audience https://vault.azure.net) comes from `KMSOptions.accessTokenFile`, AZURE_ACCESS_TOKEN_FILE,
///   AZURE_ACCESS_TOKEN, else from Microsoft Entra with the client credentials AZURE_TENANT_ID, AZURE_CLIENT_ID and
///   AZURE_CLIENT_SECRET (AZURE_AUTHORITY_HOST), as Azure's SDKs read them.
/// - Endpoint: `KMSOptions.endpoint`, the URL's `?endpoint=`, BOTRT_AZUREKV_ENDPOINT, else `https://VAULT…`.
public struct AzureKeyVaultKeyService: KeyService {
  public static let apiVersion = "7.4"
  public static let algorithm = "RSA-OAEP-256"
  public let descriptor: String
  /// The vault host, e.g. "myvault.vault.azure.net".
  public let vault: String
  public let keyName: String
  /// The key version pinned by the URL; nil = the key's current version for new wraps.
  public let keyVersion: String?
  let base: String
  let token: TokenProvider
  let client: CurlClient
  let policy: RetryPolicy

  public init(url: URLComponents, options: KMSOptions) throws {
    try self.init(url: url, options: options, policy: RetryPolicy(maxAttempts: 4, requestTimeout: .seconds(60)))
  }

  /// As `init(url:options:)`, with an explicit retry policy.
  public init(url: URLComponents, options: KMSOptions, policy: RetryPolicy) throws {
    let usage = "an Azure Key Vault KMS URL looks like azurekv://VAULT.vault.azure.net/keys/NAME[/VERSION]"
    guard url.scheme?.lowercased() == "azurekv", let host = url.host, !host.isEmpty else {
      throw KMSError.invalidConfiguration(usage)
    }
    let parts = url.path.split(separator: "/").map(String.init)
    guard parts.count == 2 || parts.count == 3, parts[0] == "keys", !parts[1].isEmpty else {
      throw KMSError.invalidConfiguration("\(usage) (the path must be /keys/NAME or /keys/NAME/VERSION)")
    }
    vault = host.lowercased()
    keyName = parts[1]
    keyVersion = parts.count == 3 ? parts[2] : nil
    let endpointString =
      options.endpoint ?? queryValue(url, "endpoint") ?? firstEnv(options.environment, EngineEnv.azureKeyVaultEndpoint)
    if let endpointString {
      guard let e = Endpoint(endpointString) else {
        throw KMSError.invalidConfiguration("Azure Key Vault endpoint '\(endpointString)' is not an http(s) URL")
      }
      base = "\(e.scheme)://\(e.authority)\(e.basePath)"
    } else {
      base = "https://\(vault)"
    }
    var d = "azurekv://\(vault)/keys/\(keyName)" + (keyVersion.map { "/\($0)" } ?? "")
    if let e = queryValue(url, "endpoint") { d += "?endpoint=\(e)" }
    descriptor = d
    client = options.httpClient ?? CurlClient()
    self.policy = policy
    token = try TokenProvider.azure(options: options, kms: d, client: client, policy: policy)
  }

  /// The request URL of an operation ("wrapkey", "unwrapkey") on a key version (nil = current).
  func operationURL(_ op: String, version: String?) -> String {
    let v = version.map { "/" + SigV4.encode($0) } ?? ""
    return "\(base)/keys/\(SigV4.encode(keyName))\(v)/\(op)?api-version=\(Self.apiVersion)"
  }

  /// One key operation; returns the answer's `kid` and decoded `value`.
  func call(_ op: String, version: String?, value: Data) async throws -> (kid: String, value: Data) {
    let (response, json) = try await token.postJSON(
      operationURL(op, version: version), ["alg": Self.algorithm, "value": Base64URL.encode(value)])
    let err = json?["error"] as? [String: Any]
    let code = (err?["code"] as? String) ?? "HTTP \(response.status)"
    let message = token.scrub((err?["message"] as? String) ?? "")
    let detail = message.isEmpty ? code : "\(code): \(message)"
    switch response.status {
    case 200:
      guard let kid = json?["kid"] as? String, let v = json?["value"] as? String, let bytes = Base64URL.decode(v)
      else {
        throw KMSError.failed(kms: descriptor, message: "\(op) answered without a kid and a base64url value")
      }
      return (kid, bytes)
    case 401, 403:
      throw KMSError.accessDenied(kms: descriptor, message: "\(op) on key \(keyName): \(detail)")
    case 404:
      throw KMSError.keyNotFound(kms: descriptor, key: keyName + (version.map { "/\($0)" } ?? ""))
    default:
      // A refused ciphertext (4xx) is the wrong key; a server failure (5xx) is the key service being unavailable.
      if op == "unwrapkey", response.status < 500 {
        throw KMSError.unwrapFailed(kms: descriptor, message: "\(op) answered HTTP \(response.status): \(detail)")
      }
      throw KMSError.failed(kms: descriptor, message: "\(op) answered HTTP \(response.status): \(detail)")
    }
  }

  /// Creates a new version of the key (`POST {vault}/keys/{name}/rotate`, Key Vault's documented rotation) and
  /// returns it; wraps of a service without a pinned version use it from then on. Needs the `rotate` key permission.
  public func rotateKEK() async throws -> String {
    let (response, json) = try await token.postJSON(
      "\(base)/keys/\(SigV4.encode(keyName))/rotate?api-version=\(Self.apiVersion)", [:])
    let err = json?["error"] as? [String: Any]
    let detail = token.scrub((err?["message"] as? String) ?? (err?["code"] as? String) ?? "HTTP \(response.status)")
    switch response.status {
    case 200:
      guard let key = json?["key"] as? [String: Any], let kid = key["kid"] as? String,
        let version = Self.version(ofKid: kid)
      else { throw KMSError.failed(kms: descriptor, message: "rotate answered without the new key's kid") }
      return version
    case 401, 403: throw KMSError.accessDenied(kms: descriptor, message: "rotate key \(keyName): \(detail)")
    case 404: throw KMSError.keyNotFound(kms: descriptor, key: keyName)
    default: throw KMSError.failed(kms: descriptor, message: "rotate answered HTTP \(response.status): \(detail)")
    }
  }

  /// "https://v.vault.azure.net/keys/name/0123abcd" → "0123abcd".
  static func version(ofKid kid: String) -> String? {
    guard let c = URLComponents(string: kid) else { return nil }
    let p = c.path.split(separator: "/")
    guard p.count == 3, p[0] == "keys" else { return nil }
    return String(p[2])
  }

  public func wrap(_ key: [UInt8], context: String) async throws -> WrappedKey {
    guard key.count == 32 else {
      throw KMSError.failed(kms: descriptor, message: "data keys are 32 bytes, got \(key.count)")
    }
    let r = try await call(
      "wrapkey", version: keyVersion, value: VaultTransitKeyService.envelope(key, context: context))
    guard let v = Self.version(ofKid: r.kid) ?? keyVersion else {
      throw KMSError.failed(kms: descriptor, message: "wrapkey answered a kid without a key version: \(r.kid)")
    }
    return WrappedKey(kms: descriptor, ciphertext: Base64URL.encode(r.value), keyVersion: v)
  }

  public func unwrap(_ wrapped: WrappedKey, context: String) async throws -> [UInt8] {
    guard let ct = Base64URL.decode(wrapped.ciphertext), !ct.isEmpty else {
      throw KMSError.unwrapFailed(kms: descriptor, message: "the wrapped key is not base64url")
    }
    guard let version = wrapped.keyVersion ?? keyVersion else {
      throw KMSError.unwrapFailed(kms: descriptor, message: "the wrapped key records no Key Vault key version")
    }
    let r = try await call("unwrapkey", version: version, value: ct)
    return try VaultTransitKeyService.open(r.value, context: context, kms: descriptor)
  }
}

/// A `KeyService` on Google Cloud KMS: `gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K`.
///
/// - `wrap` calls `POST {endpoint}/v1/{name}:encrypt` with `{"plaintext":<base64>,"additionalAuthenticatedData":
///   <base64 context>}`; `unwrap` calls `:decrypt` with the ciphertext and the same context, so a wrapped key moved
///   to another purpose fails to decrypt. The answer's `name` gives the key version, recorded for the audit.
/// - The OAuth2 access token comes from `KMSOptions.accessTokenFile`, GOOGLE_OAUTH_ACCESS_TOKEN_FILE,
///   GOOGLE_OAUTH_ACCESS_TOKEN, else from the service-account key in BOTRT_GCPKMS_CREDENTIALS_FILE or
///   GOOGLE_APPLICATION_CREDENTIALS (a JWT assertion signed with RS256, exchanged at its token_uri).
/// - Endpoint: `KMSOptions.endpoint`, the URL's `?endpoint=`, BOTRT_GCPKMS_ENDPOINT, else
///   `https://cloudkms.googleapis.com`.
public struct GCPKMSKeyService: KeyService {
  public let descriptor: String
  /// The CryptoKey's resource name.
  public let name: String
  let base: String
  let token: TokenProvider
  let client: CurlClient
  let policy: RetryPolicy

  public init(url: URLComponents, options: KMSOptions) throws {
    try self.init(url: url, options: options, policy: RetryPolicy(maxAttempts: 4, requestTimeout: .seconds(60)))
  }

  /// As `init(url:options:)`, with an explicit retry policy.
  public init(url: URLComponents, options: KMSOptions, policy: RetryPolicy) throws {
    let usage =
      "a Google Cloud KMS URL looks like gcpkms://projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY"
    guard url.scheme?.lowercased() == "gcpkms" else { throw KMSError.invalidConfiguration(usage) }
    let parts = ([url.host ?? ""] + url.path.split(separator: "/").map(String.init)).filter { !$0.isEmpty }
    guard parts.count == 8, parts[0] == "projects", parts[2] == "locations", parts[4] == "keyRings",
      parts[6] == "cryptoKeys",
      parts.allSatisfy({ p in p.allSatisfy { $0.isLetter || $0.isNumber || "-_.".contains($0) } })
    else {
      throw KMSError.invalidConfiguration("\(usage) (got \(VaultTransitKeyService.redacted(url)))")
    }
    name = parts.joined(separator: "/")
    let endpointString =
      options.endpoint ?? queryValue(url, "endpoint") ?? firstEnv(options.environment, EngineEnv.gcpKMSEndpoint)
    if let endpointString {
      guard let e = Endpoint(endpointString) else {
        throw KMSError.invalidConfiguration("Google Cloud KMS endpoint '\(endpointString)' is not an http(s) URL")
      }
      base = "\(e.scheme)://\(e.authority)\(e.basePath)"
    } else {
      base = "https://cloudkms.googleapis.com"
    }
    var d = "gcpkms://\(name)"
    if let e = queryValue(url, "endpoint") { d += "?endpoint=\(e)" }
    descriptor = d
    client = options.httpClient ?? CurlClient()
    self.policy = policy
    token = try TokenProvider.google(options: options, kms: d, client: client, policy: policy)
  }

  /// One call (`encrypt`, `decrypt`); returns the answer object.
  func call(_ method: String, _ body: [String: String]) async throws -> [String: Any] {
    try await call(method, url: "\(base)/v1/\(name):\(method)", body)
  }

  /// One call to `url`; `method` names it in errors.
  func call(_ method: String, url: String, _ body: [String: String]) async throws -> [String: Any] {
    let (response, json) = try await token.postJSON(url, body)
    if response.status == 200, let json { return json }
    let err = json?["error"] as? [String: Any]
    let status = (err?["status"] as? String) ?? "HTTP \(response.status)"
    let message = token.scrub((err?["message"] as? String) ?? "")
    let detail = message.isEmpty ? status : "\(status): \(message)"
    switch (response.status, status) {
    case (401, _), (403, _), (_, "UNAUTHENTICATED"), (_, "PERMISSION_DENIED"):
      throw KMSError.accessDenied(kms: descriptor, message: "\(method): \(detail)")
    case (404, _), (_, "NOT_FOUND"):
      throw KMSError.keyNotFound(kms: descriptor, key: name)
    default:
      if method == "decrypt" {
        throw KMSError.unwrapFailed(kms: descriptor, message: "decrypt answered HTTP \(response.status): \(detail)")
      }
      throw KMSError.failed(kms: descriptor, message: "\(method) answered HTTP \(response.status): \(detail)")
    }
  }

  /// Creates a new key version (`POST {name}/cryptoKeyVersions`) and makes it the primary
  /// (`:updatePrimaryVersion`), so later wraps use it; older versions still decrypt. Returns the new version's id.
  /// Needs cloudkms.cryptoKeyVersions.create and cloudkms.cryptoKeys.update.
  public func rotateKEK() async throws -> String {
    let created = try await call("create", url: "\(base)/v1/\(name)/cryptoKeyVersions", [:])
    guard let full = created["name"] as? String, let id = full.split(separator: "/").last.map(String.init),
      full.split(separator: "/").count == 10
    else { throw KMSError.failed(kms: descriptor, message: "cryptoKeyVersions.create answered without a name") }
    _ = try await call("updatePrimaryVersion", ["cryptoKeyVersionId": id])
    return id
  }

  public func wrap(_ key: [UInt8], context: String) async throws -> WrappedKey {
    guard key.count == 32 else {
      throw KMSError.failed(kms: descriptor, message: "data keys are 32 bytes, got \(key.count)")
    }
    let out = try await call(
      "encrypt",
      [
        "plaintext": Data(key).base64EncodedString(),
        "additionalAuthenticatedData": Data(context.utf8).base64EncodedString(),
      ])
    guard let ct = out["ciphertext"] as? String, Data(base64Encoded: ct) != nil else {
      throw KMSError.failed(kms: descriptor, message: "encrypt answered without a base64 ciphertext")
    }
    let version = (out["name"] as? String).flatMap { n -> String? in
      let p = n.split(separator: "/")
      return p.count == 10 && p[8] == "cryptoKeyVersions" ? String(p[9]) : nil
    }
    return WrappedKey(kms: descriptor, ciphertext: ct, keyVersion: version)
  }

  public func unwrap(_ wrapped: WrappedKey, context: String) async throws -> [UInt8] {
    guard Data(base64Encoded: wrapped.ciphertext) != nil else {
      throw KMSError.unwrapFailed(kms: descriptor, message: "the wrapped key is not a base64 Cloud KMS ciphertext")
    }
    let out = try await call(
      "decrypt",
      [
        "ciphertext": wrapped.ciphertext, "additionalAuthenticatedData": Data(context.utf8).base64EncodedString(),
      ])
    guard let p = out["plaintext"] as? String, let bytes = Data(base64Encoded: p) else {
      throw KMSError.unwrapFailed(kms: descriptor, message: "decrypt answered without a base64 plaintext")
    }
    guard bytes.count == 32 else {
      throw KMSError.unwrapFailed(kms: descriptor, message: "unwrapped key has \(bytes.count) bytes, expected 32")
    }
    return [UInt8](bytes)
  }
}
