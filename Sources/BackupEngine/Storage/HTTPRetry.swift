import CurlHTTP
import Foundation

/// How storage and KMS clients retry: bounded attempts, jittered exponential backoff, stall detection.
public struct RetryPolicy: Sendable, Hashable {
  /// Total attempts per request, including the first.
  public var maxAttempts: Int
  public var backoff: ExponentialBackoff
  /// Deadline for one whole exchange (a large upload needs minutes).
  public var requestTimeout: Duration
  /// Abort an attempt when less than 1 byte/s flows for this long (a stalled server or network).
  public var lowSpeedTime: Duration?
  public var connectTimeout: Duration

  public init(
    maxAttempts: Int = 6, backoff: ExponentialBackoff = ExponentialBackoff(base: .milliseconds(250), max: .seconds(15)),
    requestTimeout: Duration = .seconds(600), lowSpeedTime: Duration? = .seconds(30),
    connectTimeout: Duration = .seconds(10)
  ) {
    self.maxAttempts = max(1, maxAttempts)
    self.backoff = backoff
    self.requestTimeout = requestTimeout
    self.lowSpeedTime = lowSpeedTime
    self.connectTimeout = connectTimeout
  }

  /// The default for object stores and KMS calls.
  public static let standard = RetryPolicy()
}

/// Every attempt of a request failed with a retryable error (5xx, 429, reset, stall, timeout).
struct RetriesExhausted: Error, Sendable, CustomStringConvertible {
  /// The last failure, without credentials (URLs are stripped of their query).
  var message: String
  var attempts: Int
  /// Whether the last failure was below HTTP (no response at all).
  var transport: Bool
  var description: String { "\(message) (after \(attempts) attempts)" }
}

/// Whether an HTTP status is worth retrying: throttling and server-side failures.
func isRetryableStatus(_ status: Int) -> Bool {
  status == 408 || status == 429 || status == 500 || status == 502 || status == 503 || status == 504
}

/// Sends a request built afresh for every attempt (signatures carry a timestamp) and retries transport
/// failures and retryable responses with jittered backoff.
///
/// Returns the first response that is not retryable. `retryable` can mark more responses as transient
/// (AWS's throttling errors arrive as 400). Non-retryable transport errors (TLS, a bad URL) are thrown
/// as they are; exhausted retries throw `RetriesExhausted`.
func sendWithRetry(
  _ client: CurlClient, policy: RetryPolicy, retryable: (HTTPResponse) -> Bool = { isRetryableStatus($0.status) },
  countAsStorage: Bool = false, build: () throws -> HTTPRequest
) async throws -> HTTPResponse {
  var attempt = 0
  while true {
    try Task.checkCancellation()
    var request = try build()
    if countAsStorage { StorageRequestLedger.add() }
    request.timeout = policy.requestTimeout
    request.connectTimeout = policy.connectTimeout
    request.lowSpeedTime = policy.lowSpeedTime
    let failure: String
    let transport: Bool
    var retryAfter: Duration? = nil
    do {
      let response = try await client.send(request)
      if !retryable(response) {
        if countAsStorage, request.method == "GET", response.status / 100 == 2 {
          StorageRequestLedger.addRead(response.body.count)
        }
        return response
      }
      failure =
        "\(request.method) \(HTTPTransportError.redact(request.url)) answered HTTP \(response.status)"
        + errorSnippet(response.body)
      transport = false
      retryAfter = parseRetryAfter(response.header("retry-after"))
    } catch let e as HTTPTransportError where e.isRetryable {
      failure = "\(request.method) \(e.description)"
      transport = true
    }
    attempt += 1
    if attempt >= policy.maxAttempts {
      throw RetriesExhausted(message: failure, attempts: attempt, transport: transport)
    }
    var delay = policy.backoff.delay(attempt: attempt - 1)
    if let ra = retryAfter, ra > delay { delay = min(ra, policy.backoff.max) }
    try await Task.sleep(for: delay)
  }
}

/// A short, printable excerpt of an error body for messages (service error bodies carry no secrets).
func errorSnippet(_ body: Data) -> String {
  guard !body.isEmpty else { return "" }
  let text = String(decoding: body.prefix(300), as: UTF8.self)
    .replacingOccurrences(of: "\n", with: " ").trimmingCharacters(in: .whitespaces)
  return text.isEmpty ? "" : ": \(text)"
}

/// The scheme, host and port of an endpoint URL such as "http://127.0.0.1:5000".
struct Endpoint: Sendable, Hashable {
  var scheme: String
  var host: String
  var port: Int?
  /// A base path the endpoint carries (Azurite-style "http://127.0.0.1:10000/devstoreaccount1"), without a trailing "/".
  var basePath: String

  /// "host" or "host:port" when the port is not the scheme's default.
  var authority: String {
    guard let port else { return host }
    if (scheme == "http" && port == 80) || (scheme == "https" && port == 443) { return host }
    return "\(host):\(port)"
  }

  /// Whether the host is an IP address or localhost (virtual-hosted addressing cannot work there).
  var isLocal: Bool {
    host == "localhost" || host.allSatisfy { $0.isNumber || $0 == "." } || host.contains(":")
  }

  /// Parses "scheme://host[:port][/path]"; nil when it is not such a URL.
  init?(_ string: String) {
    guard let c = URLComponents(string: string), let scheme = c.scheme?.lowercased(),
      scheme == "http" || scheme == "https",
      let host = c.host, !host.isEmpty
    else { return nil }
    self.scheme = scheme
    self.host = host
    self.port = c.port
    var p = c.percentEncodedPath
    while p.hasSuffix("/") { p.removeLast() }
    self.basePath = p
  }

  init(scheme: String, host: String, port: Int? = nil, basePath: String = "") {
    self.scheme = scheme
    self.host = host
    self.port = port
    self.basePath = basePath
  }
}

/// The value of a query item of a URL, or nil.
func queryValue(_ c: URLComponents, _ names: String...) -> String? {
  for n in names {
    if let v = c.queryItems?.first(where: { $0.name.lowercased() == n.lowercased() })?.value, !v.isEmpty { return v }
  }
  return nil
}

/// Parses a boolean setting ("1", "true", "yes", "on" / "0", "false", "no", "off").
func parseBool(_ s: String?) -> Bool? {
  guard let s = s?.lowercased() else { return nil }
  if ["1", "true", "yes", "on"].contains(s) { return true }
  if ["0", "false", "no", "off"].contains(s) { return false }
  return nil
}

/// The first non-empty value among environment variables.
func firstEnv(_ env: [String: String], _ names: String...) -> String? {
  for n in names { if let v = env[n], !v.isEmpty { return v } }
  return nil
}

/// A JSON object from a response body, or nil when the body is empty or not a JSON object (the caller then
/// reports the HTTP status instead).
func jsonObject(_ data: Data) -> [String: Any]? {
  guard !data.isEmpty else { return nil }
  do {
    return try JSONSerialization.jsonObject(with: data) as? [String: Any]
  } catch {
    return nil
  }
}

/// A secret (token, key) that prints as "<redacted>" in descriptions, debug output and mirrors.
struct Redacted<Value: Sendable>: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
  let value: Value
  init(_ value: Value) { self.value = value }
  var description: String { "<redacted>" }
  var debugDescription: String { "<redacted>" }
  var customMirror: Mirror { Mirror(self, children: []) }
}

/// The bytes `offset..<offset+length` of a ranged GET's response: a 206 must carry exactly `length` bytes, and a 200
/// (the server ignored the Range header) is cut down to the range. `nil` for any other status, which the caller
/// turns into its own error. `noun` names the object in messages ("object", "blob").
func rangedBody(
  _ r: HTTPResponse, key: String, offset: Int64, length: Int64, range: String, noun: String = "object"
) throws -> Data? {
  switch r.status {
  case 206:
    guard r.body.count == Int(length) else {
      throw StorageError.failed(
        key: key, message: "range \(range) returned \(r.body.count) bytes; the \(noun) is shorter than expected")
    }
    return r.body
  case 200:
    guard r.body.count >= Int(offset + length) else {
      throw StorageError.failed(key: key, message: "\(noun) has \(r.body.count) bytes, range \(range) is past its end")
    }
    return r.body.subdata(in: Int(offset)..<Int(offset + length))
  default:
    return nil
  }
}

/// Every request this process sent to a repository's storage (each HTTP attempt, retries included; for a local
/// directory each object operation). The command's result reports the total as `storageRequests`, which the
/// controller exports as `botrt_storage_requests_total` (docs/security-monitoring.md).
public enum StorageRequestLedger {
  private static let count = Locked<Int64>(0)
  private static let read = Locked<Int64>(0)
  static func add() { count.with { $0 += 1 } }
  /// Counts bytes fetched from the storage (a GET's body, a local object's bytes read).
  static func addRead(_ bytes: Int) { read.with { $0 += Int64(bytes) } }
  /// The count so far.
  public static var total: Int64 { count.with { $0 } }
  /// The bytes fetched so far.
  public static var bytesRead: Int64 { read.with { $0 } }
}
