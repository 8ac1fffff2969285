import CurlHTTP
import EngineContract
import Foundation

/// An `ObjectStore` on Google Cloud Storage's JSON API: `gs://bucket/prefix`.
///
/// Endpoint, first match wins: the URL's `?endpoint=`, BOTRT_GCS_ENDPOINT, STORAGE_EMULATOR_HOST (a bare host:port
/// means http), `StoreOptions.endpoint`, else https://storage.googleapis.com. The GCS-specific settings win over the
/// generic option because the engine's CLI fills that option from S3 settings too.
/// Auth: a bearer token from GOOGLE_OAUTH_ACCESS_TOKEN, or from the file named by BOTRT_GCS_TOKEN_FILE (re-read on
/// every request, so a sidecar can refresh it); against an emulator no token is needed.
///
/// Retention: GCS offers bucket retention policies and object holds, not per-object retain-until dates on every
/// write, so this store reports `supportsRetention == false` and `extendRetention` does nothing. Use a bucket
/// retention policy (locked) for immutability on GCS.
///
/// Versions: on a bucket with Object Versioning, an overwrite or a plain DELETE keeps the earlier generation as a
/// noncurrent one. `versions(of:)`, `get(_:version:)`, `listHidden` and `keysWithSeveralVersions` read them (a
/// `versions=true` listing), so the engine reads past an attacker's overwrite or delete as it does on S3; only
/// `deleteAllVersions` (delete-repository) deletes generations.
public struct GCSStore: ObjectStore {
  /// GCS has no delete markers: deleting the live generation of a versioned object leaves it noncurrent.
  public var deletedButKept: String { "deleted, its generation kept as noncurrent" }
  public let bucket: String
  public let prefix: String
  public let location: String
  public var supportsRetention: Bool { false }
  let endpoint: String
  let staticToken: Redacted<String>?
  let tokenFile: String?
  let client: CurlClient
  let policy: RetryPolicy

  public init(url: URLComponents, options: StoreOptions) throws {
    try self.init(url: url, options: options, policy: .standard)
  }

  /// As `init(url:options:)`, with an explicit retry policy.
  public init(url: URLComponents, options: StoreOptions, policy: RetryPolicy) throws {
    guard url.scheme?.lowercased() == "gs", let bucket = url.host, !bucket.isEmpty else {
      throw StorageError.failed(
        key: url.string ?? "gs URL", message: "a GCS repository URL looks like gs://bucket/prefix")
    }
    self.bucket = bucket
    prefix = url.path.split(separator: "/").joined(separator: "/")
    location = "gs://\(bucket)" + (prefix.isEmpty ? "" : "/\(prefix)")
    let env = options.environment
    var emulator = false
    var ep: String
    if let e = queryValue(url, "endpoint") ?? firstEnv(env, EngineEnv.gcsEndpoint) {
      ep = e
      emulator = true
    } else if let host = firstEnv(env, EngineEnv.storageEmulatorHost) {
      ep = host.contains("://") ? host : "http://\(host)"
      emulator = true
    } else if let e = options.endpoint {
      ep = e
      emulator = true
    } else {
      ep = "https://storage.googleapis.com"
    }
    while ep.hasSuffix("/") { ep.removeLast() }
    guard Endpoint(ep) != nil else {
      throw StorageError.failed(key: location, message: "GCS endpoint '\(ep)' is not an http(s) URL")
    }
    endpoint = ep
    staticToken = firstEnv(env, EngineEnv.googleAccessToken).map { Redacted($0) }
    tokenFile = firstEnv(env, EngineEnv.gcsTokenFile)
    if !emulator && staticToken == nil && tokenFile == nil {
      throw StorageError.accessDenied(
        key: location, message: "no GCS credentials: set GOOGLE_OAUTH_ACCESS_TOKEN or BOTRT_GCS_TOKEN_FILE")
    }
    client = options.httpClient ?? CurlClient()
    self.policy = policy
  }

  func objectName(_ key: String) -> String { prefix.isEmpty ? key : "\(prefix)/\(key)" }

  func token() throws -> String? {
    if let tokenFile {
      guard let d = FileManager.default.contents(atPath: tokenFile) else {
        throw StorageError.accessDenied(key: location, message: "GCS token file \(tokenFile) is missing or unreadable")
      }
      return String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
    return staticToken?.value
  }

  func send(
    _ what: String, method: String, url: String, headers: [(name: String, value: String)] = [], body: Data? = nil
  ) async throws -> HTTPResponse {
    var h = headers
    if let t = try token() { h.append(("Authorization", "Bearer \(t)")) }
    let hh = h
    do {
      return try await sendWithRetry(client, policy: policy, countAsStorage: true) {
        HTTPRequest(method: method, url: url, headers: hh, body: body)
      }
    } catch let e as RetriesExhausted {
      throw StorageError.unavailable(location: "\(location) (\(what))", message: e.message, attempts: e.attempts)
    } catch let e as HTTPTransportError {
      throw StorageError.unavailable(location: "\(location) (\(what))", message: e.description, attempts: 1)
    }
  }

  func failure(_ r: HTTPResponse, key: String, operation: String) -> StorageError {
    let message =
      ((jsonObject(r.body)?["error"] as? [String: Any])?["message"] as? String)
      ?? "HTTP \(r.status)\(errorSnippet(r.body))"
    switch r.status {
    case 404: return .notFound(key: key)
    case 401, 403: return .accessDenied(key: key, message: "\(operation): \(message)")
    default: return .failed(key: key, message: "\(operation) answered HTTP \(r.status): \(message)")
    }
  }

  func objectURL(_ key: String) -> String {
    "\(endpoint)/storage/v1/b/\(SigV4.encode(bucket))/o/\(SigV4.encode(objectName(key)))"
  }

  /// Uploads with `uploadType=media`; conditional writes (`ifGenerationMatch=0`) use `uploadType=multipart`,
  /// which GCS and fake-gcs-server both check the precondition on.
  public func put(_ key: String, data: Data, options: PutOptions) async throws {
    let base = "\(endpoint)/upload/storage/v1/b/\(SigV4.encode(bucket))/o"
    let r: HTTPResponse
    if options.ifNoneMatch {
      let boundary = "botrt-\(Hex.encode(Crypto.randomBytes(12)))"
      let meta = try JSONSerialization.data(withJSONObject: ["name": objectName(key)])
      var body = Data("--\(boundary)\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".utf8)
      body.append(meta)
      body.append(Data("\r\n--\(boundary)\r\nContent-Type: application/octet-stream\r\n\r\n".utf8))
      body.append(data)
      body.append(Data("\r\n--\(boundary)--\r\n".utf8))
      r = try await send(
        "PUT \(key)", method: "POST", url: "\(base)?uploadType=multipart&ifGenerationMatch=0",
        headers: [("Content-Type", "multipart/related; boundary=\(boundary)")], body: body)
    } else {
      r = try await send(
        "PUT \(key)", method: "POST", url: "\(base)?uploadType=media&name=\(SigV4.encode(objectName(key)))",
        headers: [("Content-Type", "application/octet-stream")], body: data)
    }
    if r.status == 200 || r.status == 201 { return }
    if r.status == 412 && options.ifNoneMatch { throw StorageError.alreadyExists(key: key) }
    throw failure(r, key: key, operation: "upload")
  }

  public func get(_ key: String) async throws -> Data {
    let r = try await send("GET \(key)", method: "GET", url: objectURL(key) + "?alt=media")
    guard r.status == 200 else { throw failure(r, key: key, operation: "download") }
    return r.body
  }

  public func getRange(_ key: String, offset: Int64, length: Int64) async throws -> Data {
    guard length > 0 else { return Data() }
    let range = "bytes=\(offset)-\(offset + length - 1)"
    let r = try await send(
      "GET \(key) \(range)", method: "GET", url: objectURL(key) + "?alt=media", headers: [("Range", range)])
    if let body = try rangedBody(r, key: key, offset: offset, length: length, range: range) { return body }
    throw failure(r, key: key, operation: "ranged download")
  }

  public func head(_ key: String) async throws -> ObjectInfo? {
    let r = try await send("HEAD \(key)", method: "GET", url: objectURL(key))
    if r.status == 404 { return nil }
    guard r.status == 200, let o = jsonObject(r.body) else { throw failure(r, key: key, operation: "metadata") }
    return ObjectInfo(
      key: key, size: Self.size(o["size"]), lastModified: (o["updated"] as? String).flatMap(parseISO8601))
  }

  /// GCS sends sizes as decimal strings.
  static func size(_ v: Any?) -> Int64 {
    if let s = v as? String { return Int64(s) ?? 0 }
    if let n = v as? NSNumber { return n.int64Value }
    return 0
  }

  public func list(prefix listPrefix: String) async throws -> [ObjectInfo] {
    try await listItems(listPrefix, versions: false).map { key, item in
      ObjectInfo(
        key: key, size: Self.size(item["size"]), lastModified: (item["updated"] as? String).flatMap(parseISO8601))
    }
  }

  /// The objects under `listPrefix`, page by page (keys relative to the repository, with each listing item); with
  /// `versions`, every generation (`versions=true`).
  func listItems(_ listPrefix: String, versions: Bool) async throws -> [(key: String, item: [String: Any])] {
    let full = objectName(listPrefix)
    let strip = prefix.isEmpty ? 0 : prefix.count + 1
    let what = versions ? "list versions" : "list"
    var out: [(key: String, item: [String: Any])] = []
    var pageToken: String? = nil
    repeat {
      var url = "\(endpoint)/storage/v1/b/\(SigV4.encode(bucket))/o?prefix=\(SigV4.encode(full))"
      url += versions ? "&versions=true&maxResults=1000" : "&maxResults=1000"
      if let pageToken { url += "&pageToken=\(SigV4.encode(pageToken))" }
      let r = try await send("\(what.uppercased()) \(listPrefix)", method: "GET", url: url)
      guard r.status == 200, let o = jsonObject(r.body) else {
        throw failure(r, key: listPrefix.isEmpty ? "/" : listPrefix, operation: what)
      }
      for item in (o["items"] as? [[String: Any]]) ?? [] {
        guard let name = item["name"] as? String, name.count >= strip else { continue }
        out.append((String(name.dropFirst(strip)), item))
      }
      pageToken = (o["nextPageToken"] as? String).flatMap { $0.isEmpty ? nil : $0 }
    } while pageToken != nil
    return out
  }

  public func delete(_ key: String) async throws {
    let r = try await send("DELETE \(key)", method: "DELETE", url: objectURL(key))
    guard r.status == 204 || r.status == 200 || r.status == 404 else { throw failure(r, key: key, operation: "delete") }
  }

  /// One entry of a `versions=true` listing: GCS keeps an overwritten or deleted object as a noncurrent generation
  /// (with `timeDeleted`) when the bucket has Object Versioning; the live generation has none.
  struct Generation {
    var key: String
    var generation: String
    var size: Int64
    var live: Bool
  }

  /// Every generation under `listPrefix` (keys relative to the repository), newest generation first per key.
  func listGenerations(_ listPrefix: String) async throws -> [Generation] {
    try await listItems(listPrefix, versions: true).compactMap { key, item in
      Self.generation(item["generation"]).map {
        Generation(key: key, generation: $0, size: Self.size(item["size"]), live: item["timeDeleted"] == nil)
      }
    }.sorted { a, b in
      a.key != b.key ? a.key < b.key : (Int64(a.generation) ?? 0) > (Int64(b.generation) ?? 0)
    }
  }

  /// A generation is an int64 sent as a decimal string; anything else is not a generation.
  static func generation(_ v: Any?) -> String? {
    if let s = v as? String, Int64(s) != nil { return s }
    if let n = v as? NSNumber { return n.stringValue }
    return nil
  }

  /// The stored generations of `key`, newest first: the live one and those an overwrite or a delete left behind as
  /// noncurrent generations on a bucket with Object Versioning.
  public func versions(of key: String) async throws -> [String] {
    try await listGenerations(key).filter { $0.key == key }.map(\.generation)
  }

  /// Reads one generation of an object (`alt=media&generation=`).
  public func get(_ key: String, version: String) async throws -> Data {
    guard Int64(version) != nil else { throw StorageError.notFound(key: "\(key) (generation \(version))") }
    let r = try await send(
      "GET \(key) generation \(version)", method: "GET", url: objectURL(key) + "?alt=media&generation=\(version)")
    guard r.status == 200 else { throw failure(r, key: key, operation: "download generation \(version)") }
    return r.body
  }

  public func keysWithSeveralVersions(prefix listPrefix: String) async throws -> [String: Int] {
    var counts: [String: Int] = [:]
    for g in try await listGenerations(listPrefix) { counts[g.key, default: 0] += 1 }
    return counts.filter { $0.value > 1 }
  }

  /// Keys with noncurrent generations and no live one (a plain DELETE on a versioned bucket), each with its newest
  /// generation's size.
  public func listHidden(prefix listPrefix: String) async throws -> [ObjectInfo] {
    var live = Set<String>()
    var newest: [String: Int64] = [:]
    for g in try await listGenerations(listPrefix) {
      if g.live { live.insert(g.key) }
      if newest[g.key] == nil { newest[g.key] = g.size }
    }
    return newest.keys.filter { !live.contains($0) }.sorted().map { ObjectInfo(key: $0, size: newest[$0] ?? 0) }
  }

  public func listAllVersionedKeys(prefix listPrefix: String) async throws -> [String] {
    Array(Set(try await listGenerations(listPrefix).map(\.key)))
  }

  /// Deletes every generation of `key` (`DELETE ?generation=`). A generation a bucket retention policy or a hold
  /// still protects is refused by GCS (403): that is `StorageError.locked`.
  public func deleteAllVersions(_ key: String) async throws {
    for g in try await versions(of: key) {
      let r = try await send(
        "DELETE \(key) generation \(g)", method: "DELETE", url: objectURL(key) + "?generation=\(g)")
      if r.status == 204 || r.status == 200 || r.status == 404 { continue }
      let e = failure(r, key: key, operation: "delete generation \(g)")
      if r.status == 403, case .accessDenied(_, let m) = e, m.lowercased().contains("retention") || m.contains("hold") {
        throw StorageError.locked(key: key, message: m)
      }
      throw e
    }
    // A server that ignores `generation` on DELETE (fake-gcs-server makes the live generation noncurrent instead)
    // would leave data behind while the caller counts the object as deleted: look again.
    let left = try await versions(of: key)
    if !left.isEmpty {
      throw StorageError.failed(
        key: key, message: "\(left.count) generations are still stored after deleting each of them by generation")
    }
  }

  /// Not supported on GCS (see the type's documentation): does nothing.
  public func extendRetention(_ key: String, to retention: ObjectRetention) async throws {}

  /// Creates the bucket in `project` (for `init` convenience and tests); an existing bucket is not an error.
  public func createBucket(project: String = "botrt", versioning: Bool = false) async throws {
    var spec: [String: Any] = ["name": bucket]
    if versioning { spec["versioning"] = ["enabled": true] }
    let body = try JSONSerialization.data(withJSONObject: spec)
    let r = try await send(
      "CREATE BUCKET", method: "POST", url: "\(endpoint)/storage/v1/b?project=\(SigV4.encode(project))",
      headers: [("Content-Type", "application/json")], body: body)
    if r.status == 200 || r.status == 201 || r.status == 409 { return }
    throw failure(r, key: bucket, operation: "create bucket")
  }
}
