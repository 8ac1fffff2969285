import CurlHTTP
import Foundation

/// Settings for building an `ObjectStore` from a repository URL; flags override the environment.
///
/// Backends (S3Store, GCSStore, AzureBlobStore) receive this in their
/// `init(url: URLComponents, options: StoreOptions) throws` and read what they need from it.
public struct StoreOptions: Sendable {
  /// Endpoint override, e.g. "http://127.0.0.1:5000" for moto or fake-gcs-server; nil = the service default.
  public var endpoint: String?
  /// Region (S3), e.g. "us-east-1"; nil = from the environment (AWS_REGION, AWS_DEFAULT_REGION) or the default.
  public var region: String?
  /// Path-style S3 addressing (http://endpoint/bucket/key) instead of virtual-hosted style.
  public var pathStyle: Bool
  /// The process environment (credentials such as AWS_ACCESS_KEY_ID are read from here, never logged).
  public var environment: [String: String]
  /// The shared HTTP client; nil = the backend makes its own.
  public var httpClient: CurlClient?
  /// How many requests a backend may run at once.
  public var maxConcurrentRequests: Int
  /// S3 server-side encryption on top of the client-side encryption: "aws:kms" or "AES256"; nil = the bucket's
  /// default (else the URL's `?sse=`, then BOTRT_S3_SSE).
  public var serverSideEncryption: String?
  /// The KMS key id or ARN for "aws:kms" (else the URL's `?sse-kms-key-id=`, then BOTRT_S3_SSE_KMS_KEY_ID); nil = the
  /// account's default aws/s3 key.
  public var sseKMSKeyId: String?

  public init(
    endpoint: String? = nil, region: String? = nil, pathStyle: Bool = false,
    environment: [String: String] = ProcessInfo.processInfo.environment, httpClient: CurlClient? = nil,
    maxConcurrentRequests: Int = 8, serverSideEncryption: String? = nil, sseKMSKeyId: String? = nil
  ) {
    self.endpoint = endpoint
    self.region = region
    self.pathStyle = pathStyle
    self.environment = environment
    self.httpClient = httpClient
    self.maxConcurrentRequests = maxConcurrentRequests
    self.serverSideEncryption = serverSideEncryption
    self.sseKMSKeyId = sseKMSKeyId
  }
}

/// Settings for building a `KeyService` from a KMS URL; flags override the environment.
///
/// Backends (VaultTransitKeyService, AWSKMSKeyService) receive this in their
/// `init(url: URLComponents, options: KMSOptions) throws`.
public struct KMSOptions: Sendable {
  /// The process environment (VAULT_TOKEN, AWS_* credentials); never logged.
  public var environment: [String: String]
  /// A file holding the Vault token (overrides VAULT_TOKEN).
  public var tokenFile: String?
  /// A file holding the Azure Key Vault or Google Cloud KMS access token (overrides AZURE_ACCESS_TOKEN_FILE and
  /// AZURE_ACCESS_TOKEN, or GOOGLE_OAUTH_ACCESS_TOKEN_FILE and GOOGLE_OAUTH_ACCESS_TOKEN).
  public var accessTokenFile: String?
  /// A PEM CA bundle for HTTPS to the KMS.
  public var caFile: String?
  /// Endpoint override (AWS KMS in tests: moto's URL).
  public var endpoint: String?
  /// The shared HTTP client; nil = the backend makes its own.
  public var httpClient: CurlClient?

  public init(
    environment: [String: String] = ProcessInfo.processInfo.environment, tokenFile: String? = nil,
    caFile: String? = nil, endpoint: String? = nil, httpClient: CurlClient? = nil, accessTokenFile: String? = nil
  ) {
    self.environment = environment
    self.tokenFile = tokenFile
    self.accessTokenFile = accessTokenFile
    self.caFile = caFile
    self.endpoint = endpoint
    self.httpClient = httpClient
  }
}

/// Parses a URL string into components or throws a typed error naming it.
func parseURL(_ url: String, what: String) throws -> URLComponents {
  guard let c = URLComponents(string: url), let scheme = c.scheme, !scheme.isEmpty else {
    throw EngineError.usage("\(what) '\(url)' is not a URL; expected e.g. file:///path")
  }
  return c
}

/// Builds the object store for a repository URL: file://, s3://, gs://, azblob://.
public func makeObjectStore(url: String, options: StoreOptions) throws -> any ObjectStore {
  let c = try parseURL(url, what: "repository")
  switch c.scheme?.lowercased() {
  case "file":
    guard !c.path.isEmpty else { throw EngineError.usage("repository '\(url)' has no path; use file:///abs/path") }
    return try LocalStore(root: c.path)
  case "s3", "gs", "azblob":
    return try makeRemoteObjectStore(c, options: options)
  default:
    throw EngineError.usage(
      "repository '\(url)' has an unknown scheme; use file:///path, s3://bucket/prefix, gs://bucket/prefix "
        + "or azblob://account/container/prefix")
  }
}

/// Builds the key service for a KMS URL: file://, vault-transit://, awskms://, azurekv://, gcpkms://.
public func makeKeyService(url: String, options: KMSOptions) throws -> any KeyService {
  let c = try parseURL(url, what: "KMS")
  switch c.scheme?.lowercased() {
  case "file":
    guard !c.path.isEmpty else { throw KMSError.invalidConfiguration("KMS '\(url)' has no path; use file:///path/key") }
    return try LocalKeyService(path: c.path)
  case "vault-transit", "awskms", "azurekv", "gcpkms":
    return try makeRemoteKeyService(c, options: options)
  default:
    throw KMSError.invalidConfiguration(
      "KMS '\(KMSURI.redact(url))' has an unknown scheme; use file:///path/key, vault-transit://host:port/mount/key, "
        + "awskms://keyId?region=..., azurekv://VAULT.vault.azure.net/keys/NAME "
        + "or gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K")
  }
}
