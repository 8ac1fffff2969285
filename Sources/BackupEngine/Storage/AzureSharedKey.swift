import Foundation

/// Azure Storage "Shared Key" authorization for the Blob service (x-ms-version 2015-02-21 and later), as described
/// in Azure's "Authorize with Shared Key" REST documentation.
struct AzureSharedKey: Sendable {
  let account: String
  /// The decoded account key; never printed.
  let key: Redacted<[UInt8]>

  /// Fails when the account key is not base64.
  init?(account: String, base64Key: String) {
    guard let k = Data(base64Encoded: base64Key.trimmingCharacters(in: .whitespacesAndNewlines)), !k.isEmpty else {
      return nil
    }
    self.account = account
    self.key = Redacted([UInt8](k))
  }

  /// The canonicalized resource: "/account" + the encoded URL path, then one "\nname:value" line per query
  /// parameter (names lower-cased and sorted, values decoded, repeated values sorted and comma-joined).
  func canonicalizedResource(encodedPath: String, query: [(name: String, value: String)]) -> String {
    var s = "/\(account)\(encodedPath.isEmpty ? "/" : encodedPath)"
    var params: [String: [String]] = [:]
    for (n, v) in query { params[n.lowercased(), default: []].append(v) }
    for name in params.keys.sorted() {
      s += "\n\(name):\(params[name]!.sorted().joined(separator: ","))"
    }
    return s
  }

  /// The canonicalized headers: every x-ms-* header, lower-cased, sorted, "name:value\n" each.
  static func canonicalizedHeaders(_ headers: [(name: String, value: String)]) -> String {
    var h: [String: String] = [:]
    for (n, v) in headers where n.lowercased().hasPrefix("x-ms-") {
      let value = v.trimmingCharacters(in: .whitespaces).split(separator: " ", omittingEmptySubsequences: true)
        .joined(separator: " ")
      h[n.lowercased()] = value
    }
    return h.keys.sorted().map { "\($0):\(h[$0]!)\n" }.joined()
  }

  /// The string to sign for a request.
  func stringToSign(
    method: String, encodedPath: String, query: [(name: String, value: String)],
    headers: [(name: String, value: String)],
    contentLength: Int
  ) -> String {
    func header(_ n: String) -> String {
      headers.first { $0.name.caseInsensitiveCompare(n) == .orderedSame }?.value ?? ""
    }
    let fields = [
      method.uppercased(), header("Content-Encoding"), header("Content-Language"),
      contentLength > 0 ? String(contentLength) : "", header("Content-MD5"), header("Content-Type"), header("Date"),
      header("If-Modified-Since"), header("If-Match"), header("If-None-Match"), header("If-Unmodified-Since"),
      header("Range"),
    ]
    return fields.joined(separator: "\n") + "\n" + Self.canonicalizedHeaders(headers)
      + canonicalizedResource(encodedPath: encodedPath, query: query)
  }

  /// Base64 HMAC-SHA256 of the string to sign under the account key.
  func signature(_ stringToSign: String) -> String {
    Data(Crypto.hmacSHA256(key: key.value, Array(stringToSign.utf8))).base64EncodedString()
  }

  /// The Authorization header value: "SharedKey account:signature".
  func authorization(
    method: String, encodedPath: String, query: [(name: String, value: String)],
    headers: [(name: String, value: String)],
    contentLength: Int
  ) -> String {
    let sts = stringToSign(
      method: method, encodedPath: encodedPath, query: query, headers: headers, contentLength: contentLength)
    return "SharedKey \(account):\(signature(sts))"
  }
}
