import CurlHTTP
import EngineContract
import Foundation

/// An `ObjectStore` on Amazon S3 or an S3-compatible server (`s3://bucket/prefix`), signed with SigV4.
///
/// Settings, first match wins: `StoreOptions`, then the repository URL's query (`?endpoint=…&region=…&path-style=true`),
/// then the environment (AWS_ENDPOINT_URL_S3, BOTRT_S3_ENDPOINT, AWS_ENDPOINT_URL; AWS_REGION, AWS_DEFAULT_REGION;
/// BOTRT_S3_PATH_STYLE). Credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN and never
/// appear in errors. Path-style addressing is used when asked for and whenever the endpoint is an IP address or localhost.
///
/// Writes send the body's SHA-256 (never UNSIGNED-PAYLOAD); Object Lock writes add Content-MD5 as S3 requires.
/// Objects larger than `multipartThreshold` go up as a multipart upload with parallel parts.
public struct S3Store: ObjectStore {
  public let bucket: String
  /// The key prefix inside the bucket, without leading or trailing "/"; may be empty.
  public let prefix: String
  public let location: String
  /// Object Lock retention is honoured (the bucket must have Object Lock enabled; see `createBucket`).
  public var supportsRetention: Bool { true }
  public let region: String
  let endpoint: Endpoint
  let pathStyle: Bool
  let signer: SigV4
  let client: CurlClient
  let policy: RetryPolicy
  /// Objects above this size use multipart upload.
  public var multipartThreshold: Int = 16 << 20
  /// Size of each part of a multipart upload (S3 needs at least 5 MiB for all parts but the last).
  public var partSize: Int = 8 << 20
  let maxConcurrentParts: Int
  /// Server-side encryption headers sent with every PUT and CreateMultipartUpload (signed like all headers).
  public let sseHeaders: [(String, String)]

  /// Builds the store for `s3://bucket/prefix`; throws when the URL is malformed or credentials are missing.
  public init(url: URLComponents, options: StoreOptions) throws {
    try self.init(url: url, options: options, policy: .standard)
  }

  /// As `init(url:options:)`, with an explicit retry policy (tests shorten the backoff and stall detection).
  public init(url: URLComponents, options: StoreOptions, policy: RetryPolicy) throws {
    guard url.scheme?.lowercased() == "s3", let bucket = url.host, !bucket.isEmpty else {
      throw StorageError.failed(
        key: url.string ?? "s3 URL", message: "an S3 repository URL looks like s3://bucket/prefix")
    }
    self.bucket = bucket
    self.prefix = url.path.split(separator: "/").joined(separator: "/")
    self.location = "s3://\(bucket)" + (prefix.isEmpty ? "" : "/\(prefix)")
    let env = options.environment
    region =
      options.region ?? queryValue(url, "region") ?? firstEnv(env, EngineEnv.awsRegion, EngineEnv.awsDefaultRegion)
      ?? "us-east-1"
    let endpointString =
      options.endpoint ?? queryValue(url, "endpoint")
      ?? firstEnv(env, EngineEnv.awsEndpointURLS3, EngineEnv.s3Endpoint, EngineEnv.awsEndpointURL)
    if let endpointString {
      guard let e = Endpoint(endpointString) else {
        throw StorageError.failed(
          key: location, message: "S3 endpoint '\(endpointString)' is not an http(s) URL such as http://127.0.0.1:5000")
      }
      endpoint = e
    } else {
      endpoint = Endpoint(scheme: "https", host: "s3.\(region).amazonaws.com")
    }
    pathStyle =
      options.pathStyle || parseBool(queryValue(url, "path-style", "pathStyle")) == true
      || parseBool(env[EngineEnv.s3PathStyle]) == true || endpoint.isLocal || bucket.contains(".")
    guard let creds = AWSCredentials.fromEnvironment(env) else {
      throw StorageError.accessDenied(
        key: location, message: "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    }
    signer = SigV4(credentials: creds, region: region, service: "s3")
    client = options.httpClient ?? CurlClient()
    self.policy = policy
    maxConcurrentParts = max(1, min(options.maxConcurrentRequests, 8))
    sseHeaders = try Self.sseHeaders(url: url, options: options, location: location)
  }

  /// The `x-amz-server-side-encryption` headers for the configured SSE, validated.
  static func sseHeaders(url: URLComponents, options: StoreOptions, location: String) throws -> [(String, String)] {
    let env = options.environment
    let mode = options.serverSideEncryption ?? queryValue(url, "sse") ?? firstEnv(env, EngineEnv.s3SSE)
    let keyId = options.sseKMSKeyId ?? queryValue(url, "sse-kms-key-id") ?? firstEnv(env, EngineEnv.s3SSEKMSKeyId)
    guard let mode, !mode.isEmpty, mode.lowercased() != "none" else {
      if keyId != nil {
        throw StorageError.failed(
          key: location, message: "an S3 SSE KMS key id was given without --s3-sse aws:kms (BOTRT_S3_SSE)")
      }
      return []
    }
    switch mode {
    case "aws:kms":
      var h = [("x-amz-server-side-encryption", "aws:kms")]
      if let keyId, !keyId.isEmpty { h.append(("x-amz-server-side-encryption-aws-kms-key-id", keyId)) }
      return h
    case "AES256":
      if keyId != nil {
        throw StorageError.failed(key: location, message: "an S3 SSE KMS key id needs --s3-sse aws:kms, not AES256")
      }
      return [("x-amz-server-side-encryption", "AES256")]
    default:
      throw StorageError.failed(
        key: location, message: "S3 server-side encryption '\(mode)' is unknown; use aws:kms (with a key id) or AES256")
    }
  }

  // MARK: - Requests

  /// The full object key for a repository key.
  func objectKey(_ key: String) -> String { prefix.isEmpty ? key : "\(prefix)/\(key)" }

  /// Builds a signed request for an object key ("" addresses the bucket).
  func request(
    _ method: String, key: String, query: [(String, String)] = [], headers: [(String, String)] = [], body: Data? = nil,
    payloadHash: String? = nil
  ) -> HTTPRequest {
    let encodedKey = key.isEmpty ? "" : SigV4.encode(key, keepSlash: true)
    let host: String
    var path: String
    if pathStyle {
      host = endpoint.authority
      path = "\(endpoint.basePath)/\(SigV4.encode(bucket))"
      if !encodedKey.isEmpty { path += "/\(encodedKey)" }
    } else {
      host = "\(bucket).\(endpoint.authority)"
      path = "\(endpoint.basePath)/\(encodedKey)"
    }
    let r = SignableRequest(
      method: method, scheme: endpoint.scheme, host: host, encodedPath: path,
      query: query.map { (name: $0.0, value: $0.1) }, headers: headers.map { (name: $0.0, value: $0.1) }, body: body)
    let signed = signer.sign(
      r, date: Date(), payloadHash: payloadHash ?? SigV4.payloadHash(body), sendContentSHA256: true)
    return HTTPRequest(method: method, url: r.url, headers: signed, body: body)
  }

  /// Sends with retries; maps exhausted retries and hard transport failures to `StorageError`.
  func send(_ what: String, build: () -> HTTPRequest) async throws -> HTTPResponse {
    do {
      return try await sendWithRetry(client, policy: policy, retryable: Self.isRetryable, countAsStorage: true) {
        build()
      }
    } catch let e as RetriesExhausted {
      throw StorageError.unavailable(location: "\(location) (\(what))", message: e.message, attempts: e.attempts)
    } catch let e as HTTPTransportError {
      throw StorageError.unavailable(location: "\(location) (\(what))", message: e.description, attempts: 1)
    }
  }

  /// 5xx and 429 are transient, and so are S3's throttling and "request timeout" codes that some servers send as 400.
  static func isRetryable(_ r: HTTPResponse) -> Bool {
    if isRetryableStatus(r.status) { return true }
    if r.status == 400, let e = S3ErrorBody.parse(r.body) {
      return ["RequestTimeout", "SlowDown", "Throttling", "ThrottlingException", "RequestTimeTooSkewed"].contains(
        e.code)
    }
    return false
  }

  /// Maps an unexpected response to a typed error naming `key`.
  func failure(_ r: HTTPResponse, key: String, operation: String) -> StorageError {
    let err = S3ErrorBody.parse(r.body)
    let detail = err.map { "\($0.code): \($0.message)" } ?? "HTTP \(r.status)"
    switch r.status {
    case 404:
      if err?.code == "NoSuchBucket" {
        return .failed(
          key: key,
          message: "bucket \(bucket) does not exist at \(endpoint.scheme)://\(endpoint.authority); create it "
            + "(with Object Lock if the repository uses retention) or fix the repository URL")
      }
      return .notFound(key: key)
    case 401, 403:
      return .accessDenied(key: key, message: "\(operation): \(detail)")
    case 409 where err?.code == "OperationAborted" || err?.code == "ConditionalRequestConflict":
      return .failed(key: key, message: "\(operation) conflicted with a concurrent request (\(detail)); retry")
    default:
      return .failed(key: key, message: "\(operation) answered HTTP \(r.status): \(detail)")
    }
  }

  // MARK: - ObjectStore

  public func put(_ key: String, data: Data, options: PutOptions) async throws {
    if data.count > multipartThreshold {
      try await putMultipart(key, data: data, options: options)
      return
    }
    var headers = retentionHeaders(options.retention) + sseHeaders
    if options.retention != nil { headers.append(("Content-MD5", contentMD5(data))) }
    if options.ifNoneMatch { headers.append(("If-None-Match", "*")) }
    headers.append(("Content-Type", "application/octet-stream"))
    let full = objectKey(key)
    let hash = SigV4.payloadHash(data)
    let r = try await send("PUT \(key)") {
      request("PUT", key: full, headers: headers, body: data, payloadHash: hash)
    }
    if r.status == 200 { return }
    if r.status == 412 && options.ifNoneMatch { throw StorageError.alreadyExists(key: key) }
    throw failure(r, key: key, operation: "PUT")
  }

  func retentionHeaders(_ retention: ObjectRetention?) -> [(String, String)] {
    guard let retention else { return [] }
    return [
      ("x-amz-object-lock-mode", retention.mode.rawValue),
      ("x-amz-object-lock-retain-until-date", iso8601UTC(retention.retainUntil)),
    ]
  }

  public func get(_ key: String) async throws -> Data {
    let full = objectKey(key)
    let r = try await send("GET \(key)") { request("GET", key: full) }
    guard r.status == 200 else { throw failure(r, key: key, operation: "GET") }
    if let len = r.header("content-length").flatMap(Int.init), len != r.body.count {
      throw StorageError.failed(key: key, message: "GET returned \(r.body.count) bytes, Content-Length says \(len)")
    }
    return r.body
  }

  public func getRange(_ key: String, offset: Int64, length: Int64) async throws -> Data {
    guard length > 0 else { return Data() }
    let full = objectKey(key)
    let range = "bytes=\(offset)-\(offset + length - 1)"
    let r = try await send("GET \(key) \(range)") { request("GET", key: full, headers: [("Range", range)]) }
    if let body = try rangedBody(r, key: key, offset: offset, length: length, range: range) { return body }
    switch r.status {
    case 416:
      throw StorageError.failed(key: key, message: "range \(range) is past the end of the object")
    default:
      throw failure(r, key: key, operation: "GET range")
    }
  }

  public func head(_ key: String) async throws -> ObjectInfo? {
    let full = objectKey(key)
    let r = try await send("HEAD \(key)") { request("HEAD", key: full) }
    if r.status == 404 { return nil }
    guard r.status == 200 else { throw failure(r, key: key, operation: "HEAD") }
    let size = r.header("content-length").flatMap(Int64.init) ?? 0
    return ObjectInfo(key: key, size: size, lastModified: r.header("last-modified").flatMap(parseHTTPDate))
  }

  public func list(prefix listPrefix: String) async throws -> [ObjectInfo] {
    let fullPrefix = objectKey(listPrefix)
    let strip = prefix.isEmpty ? 0 : prefix.count + 1
    var out: [ObjectInfo] = []
    var token: String? = nil
    repeat {
      var query: [(String, String)] = [("list-type", "2"), ("prefix", fullPrefix), ("max-keys", "1000")]
      if let token { query.append(("continuation-token", token)) }
      let q = query
      let r = try await send("LIST \(listPrefix)") { request("GET", key: "", query: q) }
      guard r.status == 200 else { throw failure(r, key: listPrefix.isEmpty ? "/" : listPrefix, operation: "LIST") }
      guard let page = S3ListPage.parse(r.body) else {
        throw StorageError.failed(key: listPrefix, message: "LIST returned a body that is not a ListBucketResult")
      }
      for item in page.items where item.key.count >= strip {
        out.append(ObjectInfo(key: String(item.key.dropFirst(strip)), size: item.size, lastModified: item.lastModified))
      }
      if page.isTruncated && page.nextContinuationToken == nil {
        throw StorageError.failed(key: listPrefix, message: "LIST is truncated but has no continuation token")
      }
      token = page.isTruncated ? page.nextContinuationToken : nil
    } while token != nil
    return out
  }

  /// A plain DELETE (no versionId): on a versioned (Object Lock) bucket it adds a delete marker and every version
  /// stays, a retained one until its retention ends. Needs s3:DeleteObject only, never s3:DeleteObjectVersion.
  public func delete(_ key: String) async throws {
    let full = objectKey(key)
    let r = try await send("DELETE \(key)") { request("DELETE", key: full) }
    guard r.status == 204 || r.status == 200 || r.status == 404 else { throw failure(r, key: key, operation: "DELETE") }
  }

  /// The retain-until date of the current version.
  public func retention(of key: String) async throws -> Date? { try await retainUntil(objectKey(key)) }

  /// Deletes every version of the object (and its delete markers), so nothing is left behind on a versioned
  /// (Object Lock) bucket. A version that Object Lock still protects makes this throw `StorageError.locked`.
  /// Needs s3:DeleteObjectVersion; only `delete-repository` calls it.
  public func deleteAllVersions(_ key: String) async throws {
    let full = objectKey(key)
    let versions = try await listVersions(fullPrefix: full, name: key, onlyKey: full)
    if versions.isEmpty {
      // A server without versioning support in its listing: a plain delete.
      let r = try await send("DELETE \(key)") { request("DELETE", key: full) }
      guard r.status == 204 || r.status == 200 || r.status == 404 else {
        throw failure(r, key: key, operation: "DELETE")
      }
      return
    }
    // Real versions first, delete markers last: a failure never leaves the object hidden but present.
    for v in versions.sorted(by: { !$0.isDeleteMarker && $1.isDeleteMarker }) {
      let r = try await send("DELETE \(key)") { request("DELETE", key: full, query: [("versionId", v.versionId)]) }
      if r.status == 204 || r.status == 200 || r.status == 404 { continue }
      if r.status == 403, let until = try await retainUntil(full, versionId: v.versionId), until > Date() {
        throw StorageError.locked(
          key: key, message: "retained until \(iso8601UTC(until)); it can be deleted after that date")
      }
      throw failure(r, key: key, operation: "DELETE")
    }
  }

  /// Every version and delete marker under `fullPrefix` (ListObjectVersions, paginated); with `onlyKey`, those of
  /// that key only (the listing stops after it).
  func listVersions(fullPrefix: String, name: String, onlyKey: String? = nil) async throws -> [S3VersionsPage.Version] {
    var versions: [S3VersionsPage.Version] = []
    var keyMarker: String? = nil
    var versionMarker: String? = nil
    repeat {
      var query: [(String, String)] = [("versions", ""), ("prefix", fullPrefix)]
      if let keyMarker { query.append(("key-marker", keyMarker)) }
      if let versionMarker { query.append(("version-id-marker", versionMarker)) }
      let q = query
      let r = try await send("LIST VERSIONS \(name)") { request("GET", key: "", query: q) }
      guard r.status == 200 else { throw failure(r, key: name.isEmpty ? "/" : name, operation: "LIST VERSIONS") }
      guard let page = S3VersionsPage.parse(r.body) else {
        throw StorageError.failed(key: name, message: "LIST VERSIONS returned a body that is not a ListVersionsResult")
      }
      versions += page.versions.filter { v in onlyKey.map { v.key == $0 } ?? true }
      if page.isTruncated, let k = page.nextKeyMarker, onlyKey.map({ k == $0 }) ?? true {
        keyMarker = k
        versionMarker = page.nextVersionIdMarker
      } else {
        keyMarker = nil
      }
    } while keyMarker != nil
    return versions
  }

  /// The versions of `key` (ListObjectVersions lists a key's versions newest first), delete markers excluded.
  public func versions(of key: String) async throws -> [String] {
    let full = objectKey(key)
    return try await listVersions(fullPrefix: full, name: key, onlyKey: full).filter { !$0.isDeleteMarker }.map(
      \.versionId)
  }

  /// GET ?versionId=: one version of an object, also one that a newer version or a delete marker hides.
  public func get(_ key: String, version: String) async throws -> Data {
    let full = objectKey(key)
    let r = try await send("GET \(key) version") { request("GET", key: full, query: [("versionId", version)]) }
    guard r.status == 200 else { throw failure(r, key: key, operation: "GET version") }
    if let len = r.header("content-length").flatMap(Int.init), len != r.body.count {
      throw StorageError.failed(key: key, message: "GET returned \(r.body.count) bytes, Content-Length says \(len)")
    }
    return r.body
  }

  /// Keys under `prefix` with more than one stored version, from one ListObjectVersions walk.
  public func keysWithSeveralVersions(prefix listPrefix: String) async throws -> [String: Int] {
    let strip = prefix.isEmpty ? 0 : prefix.count + 1
    var counts: [String: Int] = [:]
    for v in try await listVersions(fullPrefix: objectKey(listPrefix), name: listPrefix)
    where !v.isDeleteMarker && v.key.count >= strip {
      counts[String(v.key.dropFirst(strip)), default: 0] += 1
    }
    return counts.filter { $0.value > 1 }
  }

  /// Keys under `prefix` whose current entry is a delete marker over at least one stored version, from one
  /// ListObjectVersions walk (which lists each key's entries newest first), with the newest stored version's size.
  public func listHidden(prefix listPrefix: String) async throws -> [ObjectInfo] {
    let strip = prefix.isEmpty ? 0 : prefix.count + 1
    var hiddenKeys = Set<String>()
    var newest: [String: S3VersionsPage.Version] = [:]
    for v in try await listVersions(fullPrefix: objectKey(listPrefix), name: listPrefix) where v.key.count >= strip {
      if v.isDeleteMarker {
        if v.isLatest { hiddenKeys.insert(v.key) }
      } else if newest[v.key] == nil {
        newest[v.key] = v
      }
    }
    return hiddenKeys.sorted().compactMap { k in
      newest[k].map { ObjectInfo(key: String(k.dropFirst(strip)), size: $0.size) }
    }
  }

  /// Every key under `prefix` with a version or delete marker, also those a delete marker hides.
  public func listAllVersionedKeys(prefix listPrefix: String) async throws -> [String] {
    let strip = prefix.isEmpty ? 0 : prefix.count + 1
    let versions = try await listVersions(fullPrefix: objectKey(listPrefix), name: listPrefix)
    return Array(Set(versions.map(\.key).filter { $0.count >= strip }.map { String($0.dropFirst(strip)) }))
  }

  /// The retain-until date of the object (or one version of it), or nil when it has no retention or does not exist.
  /// Read from HEAD's x-amz-object-lock-retain-until-date, which S3 and compatible servers return.
  func retainUntil(_ fullKey: String, versionId: String? = nil) async throws -> Date? {
    let q: [(String, String)] = versionId.map { [("versionId", $0)] } ?? []
    let r = try await send("HEAD retention \(fullKey)") { request("HEAD", key: fullKey, query: q) }
    if r.status == 404 { return nil }
    guard r.status == 200 else { throw failure(r, key: fullKey, operation: "HEAD") }
    return r.header("x-amz-object-lock-retain-until-date").flatMap(parseISO8601)
  }

  /// Sets a later retain-until date on the current version; never shortens an existing retention.
  public func extendRetention(_ key: String, to retention: ObjectRetention) async throws {
    let full = objectKey(key)
    if let current = try await retainUntil(full), current >= retention.retainUntil { return }
    try await putRetention(key, retention)
  }

  /// PUT ?retention on the current version.
  func putRetention(_ key: String, _ retention: ObjectRetention) async throws {
    let full = objectKey(key)
    let xml = """
      <?xml version="1.0" encoding="UTF-8"?>
      <Retention xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Mode>\(retention.mode.rawValue)</Mode>\
      <RetainUntilDate>\(iso8601UTC(retention.retainUntil))</RetainUntilDate></Retention>
      """
    let body = Data(xml.utf8)
    let md5 = contentMD5(body)
    let r = try await send("PUT retention \(key)") {
      request(
        "PUT", key: full, query: [("retention", "")],
        headers: [("Content-MD5", md5), ("Content-Type", "application/xml")], body: body)
    }
    guard r.status == 200 || r.status == 204 else { throw failure(r, key: key, operation: "PUT retention") }
  }

  // MARK: - Multipart

  func putMultipart(_ key: String, data: Data, options: PutOptions) async throws {
    let full = objectKey(key)
    if options.ifNoneMatch, try await head(key) != nil {
      // S3 honours If-None-Match on CompleteMultipartUpload; checking first avoids uploading parts for nothing.
      throw StorageError.alreadyExists(key: key)
    }
    var createHeaders = retentionHeaders(options.retention) + sseHeaders
    createHeaders.append(("Content-Type", "application/octet-stream"))
    let ch = createHeaders
    let created = try await send("CREATE MULTIPART \(key)") {
      request("POST", key: full, query: [("uploads", "")], headers: ch)
    }
    guard created.status == 200 else { throw failure(created, key: key, operation: "CreateMultipartUpload") }
    guard let uploadId = XMLElementNode.parse(created.body)?.text("UploadId"), !uploadId.isEmpty else {
      throw StorageError.failed(key: key, message: "CreateMultipartUpload answered without an UploadId")
    }
    do {
      let etags = try await uploadParts(
        key: key, full: full, uploadId: uploadId, data: data, md5: options.retention != nil)
      var xml = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
      for (i, etag) in etags.enumerated() {
        xml += "<Part><PartNumber>\(i + 1)</PartNumber><ETag>\(xmlEscape(etag))</ETag></Part>"
      }
      xml += "</CompleteMultipartUpload>"
      let body = Data(xml.utf8)
      var headers: [(String, String)] = [("Content-Type", "application/xml")]
      if options.ifNoneMatch { headers.append(("If-None-Match", "*")) }
      let hh = headers
      let done = try await send("COMPLETE MULTIPART \(key)") {
        request("POST", key: full, query: [("uploadId", uploadId)], headers: hh, body: body)
      }
      if done.status == 412 && options.ifNoneMatch { throw StorageError.alreadyExists(key: key) }
      // CompleteMultipartUpload can answer 200 with an error document.
      if done.status != 200 || S3ErrorBody.parse(done.body) != nil {
        throw failure(done, key: key, operation: "CompleteMultipartUpload")
      }
      // Some S3-compatible servers drop the lock headers of CreateMultipartUpload: make sure the retention holds.
      if let retention = options.retention {
        let current = try await retainUntil(full)
        if current == nil || current! < retention.retainUntil { try await putRetention(key, retention) }
      }
    } catch {
      // Best effort: a failed abort leaves parts a bucket lifecycle rule can clean; the original error is the one
      // the caller needs, so it is rethrown either way.
      do {
        _ = try await send("ABORT MULTIPART \(key)") { request("DELETE", key: full, query: [("uploadId", uploadId)]) }
      } catch {}
      throw error
    }
  }

  /// Uploads the parts with at most `maxConcurrentParts` in flight; returns their ETags in order.
  func uploadParts(key: String, full: String, uploadId: String, data: Data, md5: Bool) async throws -> [String] {
    let partCount = (data.count + partSize - 1) / partSize
    let size = partSize
    return try await withThrowingTaskGroup(of: (Int, String).self) { group in
      var etags = [String](repeating: "", count: partCount)
      var next = 0
      func launch(_ i: Int) {
        let lo = i * size
        let part = data.subdata(in: lo..<min(data.count, lo + size))
        group.addTask {
          let hash = SigV4.payloadHash(part)
          let headers: [(String, String)] = md5 ? [("Content-MD5", contentMD5(part))] : []
          let r = try await send("UPLOAD PART \(i + 1) of \(key)") {
            request(
              "PUT", key: full, query: [("partNumber", String(i + 1)), ("uploadId", uploadId)], headers: headers,
              body: part, payloadHash: hash)
          }
          guard r.status == 200, let etag = r.header("etag") else {
            throw failure(r, key: key, operation: "UploadPart \(i + 1)")
          }
          return (i, etag)
        }
      }
      while next < min(partCount, maxConcurrentParts) {
        launch(next)
        next += 1
      }
      while let (i, etag) = try await group.next() {
        etags[i] = etag
        if next < partCount {
          launch(next)
          next += 1
        }
      }
      return etags
    }
  }

  // MARK: - Bucket administration

  /// Creates the bucket, with Object Lock enabled when asked (which also turns on versioning).
  /// An existing bucket owned by the same account is not an error.
  public func createBucket(objectLock: Bool) async throws {
    var headers: [(String, String)] = []
    if objectLock { headers.append(("x-amz-bucket-object-lock-enabled", "true")) }
    var body: Data? = nil
    if region != "us-east-1" {
      body = Data(
        ("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>"
          + "\(xmlEscape(region))</LocationConstraint></CreateBucketConfiguration>").utf8)
    }
    let hh = headers
    let b = body
    let r = try await send("CREATE BUCKET") { request("PUT", key: "", headers: hh, body: b) }
    if r.status == 200 { return }
    if r.status == 409, S3ErrorBody.parse(r.body)?.code == "BucketAlreadyOwnedByYou" { return }
    throw failure(r, key: bucket, operation: "CreateBucket")
  }
}
