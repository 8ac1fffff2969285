import CCrypto
import EngineContract
import Foundation

/// AWS credentials read from the standard environment variables; never printed (descriptions and mirrors show only
/// the access key id).
public struct AWSCredentials: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
  public var accessKeyId: String
  public var secretAccessKey: String
  public var sessionToken: String?

  public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil) {
    self.accessKeyId = accessKeyId
    self.secretAccessKey = secretAccessKey
    self.sessionToken = sessionToken
  }

  public var description: String { "AWSCredentials(accessKeyId: \(accessKeyId), secret: <redacted>)" }
  public var debugDescription: String { description }
  public var customMirror: Mirror { Mirror(self, children: ["accessKeyId": accessKeyId]) }

  /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and (optionally) AWS_SESSION_TOKEN, or nil when either key is missing.
  public static func fromEnvironment(_ env: [String: String]) -> AWSCredentials? {
    guard let id = env[EngineEnv.awsAccessKeyId], !id.isEmpty, let secret = env[EngineEnv.awsSecretAccessKey],
      !secret.isEmpty
    else { return nil }
    let token = env[EngineEnv.awsSessionToken].flatMap { $0.isEmpty ? nil : $0 }
    return AWSCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: token)
  }
}

/// A request in the form SigV4 signs: the encoded path and the raw query items are the single source
/// for both the URL that is sent and the canonical request that is signed.
struct SignableRequest: Sendable {
  var method: String
  /// "http" or "https".
  var scheme: String
  /// Host, with ":port" when the port is not the scheme's default (this is also the Host header).
  var host: String
  /// The path exactly as it goes on the wire, already percent-encoded, starting with "/".
  var encodedPath: String
  /// Query parameters, not encoded; a parameter without a value has an empty value.
  var query: [(name: String, value: String)]
  /// Headers to send and sign (Host and the x-amz-* signing headers are added by the signer).
  var headers: [(name: String, value: String)]
  var body: Data?

  /// The URL to send.
  var url: String {
    var s = "\(scheme)://\(host)\(encodedPath)"
    if !query.isEmpty {
      s += "?" + query.map { SigV4.encode($0.name) + "=" + SigV4.encode($0.value) }.joined(separator: "&")
    }
    return s
  }
}

/// AWS Signature Version 4 (header authorization), per the SigV4 documentation and its test suite.
struct SigV4: Sendable {
  var credentials: AWSCredentials
  var region: String
  var service: String
  /// S3 signs the path as sent; every other service percent-encodes it a second time.
  var doubleEncodePath: Bool { service != "s3" }

  static let emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

  /// RFC 3986 percent-encoding of everything except the unreserved characters A-Z a-z 0-9 - . _ ~.
  static func encode(_ s: String, keepSlash: Bool = false) -> String {
    var out = ""
    out.reserveCapacity(s.utf8.count)
    for b in s.utf8 {
      switch b {
      case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
        UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
        UInt8(ascii: "~"):
        out.unicodeScalars.append(Unicode.Scalar(b))
      case UInt8(ascii: "/") where keepSlash:
        out.append("/")
      default:
        let hex = Array("0123456789ABCDEF".utf8)
        out.append("%")
        out.unicodeScalars.append(Unicode.Scalar(hex[Int(b >> 4)]))
        out.unicodeScalars.append(Unicode.Scalar(hex[Int(b & 15)]))
      }
    }
    return out
  }

  /// "20150830T123600Z" and "20150830" for a date, in UTC.
  static func timestamps(_ date: Date) -> (amzDate: String, day: String) {
    var t = time_t(date.timeIntervalSince1970.rounded(.down))
    var tmv = tm()
    gmtime_r(&t, &tmv)
    let day = String(format: "%04d%02d%02d", Int(tmv.tm_year) + 1900, Int(tmv.tm_mon) + 1, Int(tmv.tm_mday))
    let time = String(format: "%02d%02d%02d", Int(tmv.tm_hour), Int(tmv.tm_min), Int(tmv.tm_sec))
    return ("\(day)T\(time)Z", day)
  }

  static func hex(_ bytes: [UInt8]) -> String { Hex.encode(bytes) }

  /// Lower-case hex SHA-256 of a payload.
  static func payloadHash(_ data: Data?) -> String {
    guard let data, !data.isEmpty else { return emptySHA256 }
    return Hex.encode(Crypto.sha256(data))
  }

  /// The canonical request and the signed-headers list for `headers` (which must already hold host and x-amz-date).
  func canonicalRequest(_ r: SignableRequest, headers: [(name: String, value: String)], payloadHash: String)
    -> (String, String)
  {
    var path = r.encodedPath.isEmpty ? "/" : r.encodedPath
    if doubleEncodePath { path = Self.encode(path, keepSlash: true) }
    var pairs: [(String, String)] = r.query.map { (Self.encode($0.name), Self.encode($0.value)) }
    pairs.sort { (a: (String, String), b: (String, String)) -> Bool in a.0 == b.0 ? a.1 < b.1 : a.0 < b.0 }
    let query = pairs.map { (p: (String, String)) -> String in p.0 + "=" + p.1 }.joined(separator: "&")
    var canon: [String: String] = [:]
    for (name, value) in headers {
      let n = name.lowercased()
      let v = value.trimmingCharacters(in: .whitespaces).split(separator: " ", omittingEmptySubsequences: true)
        .joined(separator: " ")
      canon[n] = canon[n].map { "\($0),\(v)" } ?? v
    }
    let names = canon.keys.sorted()
    let headerBlock = names.map { "\($0):\(canon[$0]!)\n" }.joined()
    let signed = names.joined(separator: ";")
    let text = [r.method.uppercased(), path, query, headerBlock, signed, payloadHash].joined(separator: "\n")
    return (text, signed)
  }

  /// The signing key for a day: HMAC chain over the day, region, service and "aws4_request".
  func signingKey(day: String) -> [UInt8] {
    let kDate = Crypto.hmacSHA256(key: Array("AWS4\(credentials.secretAccessKey)".utf8), Array(day.utf8))
    let kRegion = Crypto.hmacSHA256(key: kDate, Array(region.utf8))
    let kService = Crypto.hmacSHA256(key: kRegion, Array(service.utf8))
    return Crypto.hmacSHA256(key: kService, Array("aws4_request".utf8))
  }

  /// Signs `r` at `date`: returns the headers to send (the request's own plus Host, X-Amz-Date,
  /// X-Amz-Security-Token when there is a session token, and Authorization).
  ///
  /// `payloadHash` is also sent as x-amz-content-sha256 when `sendContentSHA256` is set (S3 requires it).
  func sign(_ r: SignableRequest, date: Date, payloadHash: String, sendContentSHA256: Bool)
    -> [(name: String, value: String)]
  {
    let (amzDate, day) = Self.timestamps(date)
    var headers = r.headers
    if !headers.contains(where: { $0.name.lowercased() == "host" }) { headers.append(("host", r.host)) }
    headers.append(("x-amz-date", amzDate))
    if sendContentSHA256 { headers.append(("x-amz-content-sha256", payloadHash)) }
    if let token = credentials.sessionToken { headers.append(("x-amz-security-token", token)) }
    let (canonical, signed) = canonicalRequest(r, headers: headers, payloadHash: payloadHash)
    let scope = "\(day)/\(region)/\(service)/aws4_request"
    let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, Hex.encode(Crypto.sha256(Array(canonical.utf8)))]
      .joined(separator: "\n")
    let signature = Hex.encode(Crypto.hmacSHA256(key: signingKey(day: day), Array(stringToSign.utf8)))
    headers.append(
      (
        "Authorization",
        "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyId)/\(scope), SignedHeaders=\(signed), Signature=\(signature)"
      ))
    // libcurl sets Host itself from the URL; sending ours too would duplicate it.
    return headers.filter { $0.name.lowercased() != "host" }
  }
}

/// Base64 MD5 of a body, for the Content-MD5 header S3 requires on Object Lock writes.
func contentMD5(_ data: Data) -> String {
  var out = [UInt8](repeating: 0, count: 16)
  var len: UInt32 = 16
  data.withUnsafeBytes { raw in
    _ = EVP_Digest(raw.baseAddress, raw.count, &out, &len, EVP_md5(), nil)
  }
  return Data(out).base64EncodedString()
}

/// ISO 8601 in UTC with milliseconds, as S3 writes and expects dates ("2026-01-02T03:04:05.000Z").
func iso8601UTC(_ date: Date) -> String {
  var t = time_t(date.timeIntervalSince1970.rounded(.down))
  var tmv = tm()
  gmtime_r(&t, &tmv)
  return String(
    format: "%04d-%02d-%02dT%02d:%02d:%02d.000Z", Int(tmv.tm_year) + 1900, Int(tmv.tm_mon) + 1, Int(tmv.tm_mday),
    Int(tmv.tm_hour), Int(tmv.tm_min), Int(tmv.tm_sec))
}

/// Parses ISO 8601 UTC dates ("2026-01-02T03:04:05Z", with any number of fractional digits, or "+00:00").
func parseISO8601(_ s: String) -> Date? {
  var text = s.trimmingCharacters(in: .whitespaces)
  var fraction = 0.0
  if let dot = text.firstIndex(of: ".") {
    var end = text.index(after: dot)
    while end < text.endIndex, text[end].isNumber { end = text.index(after: end) }
    fraction = Double("0" + text[dot..<end]) ?? 0
    text.removeSubrange(dot..<end)
  }
  if text.hasSuffix("+00:00") { text = String(text.dropLast(6)) + "Z" }
  let f = ISO8601DateFormatter()
  f.formatOptions = [.withInternetDateTime]
  return f.date(from: text).map { $0.addingTimeInterval(fraction) }
}

/// Parses an RFC 1123 HTTP date ("Fri, 24 May 2013 00:00:00 GMT").
func parseHTTPDate(_ s: String) -> Date? {
  let f = DateFormatter()
  f.locale = Locale(identifier: "en_US_POSIX")
  f.timeZone = TimeZone(identifier: "GMT")
  f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
  return f.date(from: s)
}

/// An RFC 1123 HTTP date in GMT, e.g. for Azure's x-ms-date.
func httpDate(_ date: Date) -> String {
  var t = time_t(date.timeIntervalSince1970.rounded(.down))
  var tmv = tm()
  gmtime_r(&t, &tmv)
  let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
  let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
  let clock = String(format: "%02d:%02d:%02d", Int(tmv.tm_hour), Int(tmv.tm_min), Int(tmv.tm_sec))
  let day = String(format: "%02d", Int(tmv.tm_mday))
  return "\(days[Int(tmv.tm_wday)]), \(day) \(months[Int(tmv.tm_mon)]) \(Int(tmv.tm_year) + 1900) \(clock) GMT"
}
