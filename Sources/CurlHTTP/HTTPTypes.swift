import Foundation

/// TLS settings for one request: trust anchors, an optional client identity, and verification.
public struct TLSOptions: Sendable, Hashable {
  /// PEM file with the CA bundle to trust instead of the system store.
  public var caFile: String?
  /// PEM bytes of the CA bundle to trust instead of the system store.
  public var caPEM: Data?
  /// PEM file holding the client certificate.
  public var clientCertFile: String?
  /// PEM bytes of the client certificate.
  public var clientCertPEM: Data?
  /// PEM file holding the client private key.
  public var clientKeyFile: String?
  /// PEM bytes of the client private key.
  public var clientKeyPEM: Data?
  /// Skip server certificate verification (kubeconfig's insecure-skip-tls-verify).
  public var insecureSkipVerify: Bool

  public init(
    caFile: String? = nil, caPEM: Data? = nil, clientCertFile: String? = nil, clientCertPEM: Data? = nil,
    clientKeyFile: String? = nil, clientKeyPEM: Data? = nil, insecureSkipVerify: Bool = false
  ) {
    self.caFile = caFile
    self.caPEM = caPEM
    self.clientCertFile = clientCertFile
    self.clientCertPEM = clientCertPEM
    self.clientKeyFile = clientKeyFile
    self.clientKeyPEM = clientKeyPEM
    self.insecureSkipVerify = insecureSkipVerify
  }
}

/// One HTTP request. Values only: building a request does no I/O.
public struct HTTPRequest: Sendable {
  public var method: String
  public var url: String
  /// Header fields in order; names are sent as given.
  public var headers: [(name: String, value: String)]
  public var body: Data?
  /// Deadline for the whole exchange. `nil` means no overall limit (watch streams).
  public var timeout: Duration?
  /// Deadline for establishing the connection.
  public var connectTimeout: Duration
  /// Abort when fewer than `lowSpeedLimit` bytes/s flow for `lowSpeedTime` (stall detection).
  public var lowSpeedTime: Duration?
  public var lowSpeedLimit: Int
  public var tls: TLSOptions

  public init(
    method: String = "GET", url: String, headers: [(name: String, value: String)] = [], body: Data? = nil,
    timeout: Duration? = .seconds(60), connectTimeout: Duration = .seconds(10), lowSpeedTime: Duration? = nil,
    lowSpeedLimit: Int = 1, tls: TLSOptions = TLSOptions()
  ) {
    self.method = method
    self.url = url
    self.headers = headers
    self.body = body
    self.timeout = timeout
    self.connectTimeout = connectTimeout
    self.lowSpeedTime = lowSpeedTime
    self.lowSpeedLimit = lowSpeedLimit
    self.tls = tls
  }

  /// The first value of a header, compared case-insensitively.
  public func header(_ name: String) -> String? {
    headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
  }
}

/// A complete HTTP response.
public struct HTTPResponse: Sendable {
  public var status: Int
  /// Header fields with lower-cased names; a repeated field keeps its last value.
  public var headers: [String: String]
  public var body: Data

  public init(status: Int, headers: [String: String] = [:], body: Data = Data()) {
    self.status = status
    self.headers = headers
    self.body = body
  }

  public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// Failures below HTTP: the exchange did not produce a response.
public struct HTTPTransportError: Error, Sendable, CustomStringConvertible {
  public enum Kind: Sendable, Equatable {
    /// DNS, refused or reset connection, or a dropped stream.
    case connection
    /// The overall or connect deadline passed, or the transfer stalled.
    case timeout
    /// The server's certificate was not trusted, or the client identity was rejected.
    case tls
    /// A local problem: a bad URL, an unreadable certificate file.
    case invalidRequest
    /// The caller cancelled the request.
    case cancelled
    case other
  }
  public var kind: Kind
  /// The request's URL without its query string (queries can carry signatures).
  public var url: String
  /// libcurl's error text.
  public var message: String
  public var curlCode: Int32

  public init(kind: Kind, url: String, message: String, curlCode: Int32 = 0) {
    self.kind = kind
    self.url = HTTPTransportError.redact(url)
    self.message = message
    self.curlCode = curlCode
  }

  /// Whether repeating the same request may succeed.
  public var isRetryable: Bool { kind == .connection || kind == .timeout }

  public var description: String {
    let what: String
    switch kind {
    case .connection: what = "cannot reach"
    case .timeout: what = "timed out talking to"
    case .tls: what = "TLS failure with"
    case .invalidRequest: what = "invalid request for"
    case .cancelled: what = "cancelled request to"
    case .other: what = "transfer failed for"
    }
    return "\(what) \(url): \(message)"
  }

  /// Drops the query string and any user info from a URL for messages.
  public static func redact(_ url: String) -> String {
    var s = url
    if let q = s.firstIndex(of: "?") { s = String(s[..<q]) }
    if let scheme = s.range(of: "://"), let at = s[scheme.upperBound...].firstIndex(of: "@"),
      !s[scheme.upperBound..<at].contains("/")
    {
      s = String(s[..<scheme.upperBound]) + String(s[s.index(after: at)...])
    }
    return s
  }
}
