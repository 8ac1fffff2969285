import CurlHTTP
import EngineContract
import Foundation

/// An `ObjectStore` on Azure Blob Storage's REST API with Shared Key auth: `azblob://account/container/prefix`.
///
/// Endpoint: the URL's `?endpoint=`, AZURE_STORAGE_BLOB_ENDPOINT (e.g. http://127.0.0.1:10000/devstoreaccount1 for an
/// emulator), `StoreOptions.endpoint`, else https://<account>.blob.core.windows.net. The account key (base64) comes
/// from AZURE_STORAGE_KEY (or AZURE_STORAGE_ACCOUNT_KEY) and never appears in errors. Blobs are written as block
/// blobs with a single Put Blob (up to 5000 MiB).
///
/// Retention: Azure's version-level immutability policies are not implemented yet, so `supportsRetention` is false
/// and `extendRetention` does nothing; use a container-level time-based retention policy for immutability.
public struct AzureBlobStore: ObjectStore {
  public let account: String
  public let container: String
  public let prefix: String
  public let location: String
  public var supportsRetention: Bool { false }
  static let apiVersion = "2021-08-06"
  let endpoint: Endpoint
  let signer: AzureSharedKey
  let client: CurlClient
  let policy: RetryPolicy

  public init(url: URLComponents, options: StoreOptions) throws {
    try self.init(url: url, options: options, policy: .standard)
  }

  /// As `init(url:options:)`, with an explicit retry policy.
  public init(url: URLComponents, options: StoreOptions, policy: RetryPolicy) throws {
    let parts = url.path.split(separator: "/").map(String.init)
    guard url.scheme?.lowercased() == "azblob", let account = url.host, !account.isEmpty, let container = parts.first
    else {
      throw StorageError.failed(
        key: url.string ?? "azblob URL", message: "an Azure repository URL looks like azblob://account/container/prefix"
      )
    }
    self.account = account
    self.container = container
    prefix = parts.dropFirst().joined(separator: "/")
    location = "azblob://\(account)/\(container)" + (prefix.isEmpty ? "" : "/\(prefix)")
    let env = options.environment
    let ep =
      queryValue(url, "endpoint") ?? firstEnv(env, EngineEnv.azureBlobEndpoint) ?? options.endpoint
      ?? "https://\(account).blob.core.windows.net"
    guard let e = Endpoint(ep) else {
      throw StorageError.failed(key: location, message: "Azure Blob endpoint '\(ep)' is not an http(s) URL")
    }
    endpoint = e
    guard let key = firstEnv(env, EngineEnv.azureStorageKey, EngineEnv.azureStorageAccountKey) else {
      throw StorageError.accessDenied(key: location, message: "no Azure account key: set AZURE_STORAGE_KEY")
    }
    guard let s = AzureSharedKey(account: account, base64Key: key) else {
      throw StorageError.accessDenied(key: location, message: "AZURE_STORAGE_KEY is not valid base64")
    }
    signer = s
    client = options.httpClient ?? CurlClient()
    self.policy = policy
  }

  func blobName(_ key: String) -> String { prefix.isEmpty ? key : "\(prefix)/\(key)" }

  /// Builds a signed request; `blob` nil addresses the container.
  func request(
    _ method: String, blob: String?, query: [(name: String, value: String)] = [],
    headers: [(name: String, value: String)] = [],
    body: Data? = nil
  ) -> HTTPRequest {
    var path = "\(endpoint.basePath)/\(SigV4.encode(container))"
    if let blob { path += "/\(SigV4.encode(blob, keepSlash: true))" }
    var h = headers
    h.append(("x-ms-date", httpDate(Date())))
    h.append(("x-ms-version", Self.apiVersion))
    let auth = signer.authorization(
      method: method, encodedPath: path, query: query, headers: h, contentLength: body?.count ?? 0)
    h.append(("Authorization", auth))
    var url = "\(endpoint.scheme)://\(endpoint.authority)\(path)"
    if !query.isEmpty {
      url += "?" + query.map { "\(SigV4.encode($0.name))=\(SigV4.encode($0.value))" }.joined(separator: "&")
    }
    return HTTPRequest(method: method, url: url, headers: h, body: body)
  }

  func send(_ what: String, build: () -> HTTPRequest) async throws -> HTTPResponse {
    do {
      return try await sendWithRetry(client, policy: policy, countAsStorage: true) { build() }
    } catch let e as RetriesExhausted {
      throw StorageError.unavailable(location: "\(location) (\(what))", message: e.message, attempts: e.attempts)
    } catch let e as HTTPTransportError {
      throw StorageError.unavailable(location: "\(location) (\(what))", message: e.description, attempts: 1)
    }
  }

  func failure(_ r: HTTPResponse, key: String, operation: String) -> StorageError {
    let root = XMLElementNode.parse(r.body)
    let code = r.header("x-ms-error-code") ?? root?.text("Code") ?? ""
    let message = root?.text("Message")?.split(separator: "\n").first.map(String.init) ?? ""
    let detail = [code, message].filter { !$0.isEmpty }.joined(separator: ": ")
    switch r.status {
    case 404:
      if code == "ContainerNotFound" {
        return .failed(key: key, message: "container \(container) does not exist in account \(account); create it")
      }
      return .notFound(key: key)
    case 401, 403:
      return .accessDenied(key: key, message: "\(operation): \(detail.isEmpty ? "HTTP \(r.status)" : detail)")
    default: return .failed(key: key, message: "\(operation) answered HTTP \(r.status) \(detail)")
    }
  }

  public func put(_ key: String, data: Data, options: PutOptions) async throws {
    var headers: [(name: String, value: String)] = [
      ("x-ms-blob-type", "BlockBlob"), ("Content-Type", "application/octet-stream"),
    ]
    if options.ifNoneMatch { headers.append(("If-None-Match", "*")) }
    let name = blobName(key)
    let h = headers
    let r = try await send("PUT \(key)") { request("PUT", blob: name, headers: h, body: data) }
    if r.status == 201 || r.status == 200 { return }
    if (r.status == 409 || r.status == 412) && options.ifNoneMatch { throw StorageError.alreadyExists(key: key) }
    throw failure(r, key: key, operation: "Put Blob")
  }

  public func get(_ key: String) async throws -> Data {
    let name = blobName(key)
    let r = try await send("GET \(key)") { request("GET", blob: name) }
    guard r.status == 200 else { throw failure(r, key: key, operation: "Get Blob") }
    return r.body
  }

  public func getRange(_ key: String, offset: Int64, length: Int64) async throws -> Data {
    guard length > 0 else { return Data() }
    let name = blobName(key)
    let range = "bytes=\(offset)-\(offset + length - 1)"
    let r = try await send("GET \(key) \(range)") { request("GET", blob: name, headers: [("x-ms-range", range)]) }
    if let body = try rangedBody(r, key: key, offset: offset, length: length, range: range, noun: "blob") {
      return body
    }
    throw failure(r, key: key, operation: "Get Blob range")
  }

  public func head(_ key: String) async throws -> ObjectInfo? {
    let name = blobName(key)
    let r = try await send("HEAD \(key)") { request("HEAD", blob: name) }
    if r.status == 404 { return nil }
    guard r.status == 200 else { throw failure(r, key: key, operation: "Get Blob Properties") }
    return ObjectInfo(
      key: key, size: r.header("content-length").flatMap(Int64.init) ?? 0,
      lastModified: r.header("last-modified").flatMap(parseHTTPDate))
  }

  public func list(prefix listPrefix: String) async throws -> [ObjectInfo] {
    let full = blobName(listPrefix)
    let strip = prefix.isEmpty ? 0 : prefix.count + 1
    var out: [ObjectInfo] = []
    var marker: String? = nil
    repeat {
      var query: [(name: String, value: String)] = [
        ("restype", "container"), ("comp", "list"), ("prefix", full), ("maxresults", "5000"),
      ]
      if let marker { query.append(("marker", marker)) }
      let q = query
      let r = try await send("LIST \(listPrefix)") { request("GET", blob: nil, query: q) }
      guard r.status == 200 else {
        throw failure(r, key: listPrefix.isEmpty ? "/" : listPrefix, operation: "List Blobs")
      }
      guard let root = XMLElementNode.parse(r.body), root.name == "EnumerationResults" else {
        throw StorageError.failed(key: listPrefix, message: "List Blobs returned a body that is not EnumerationResults")
      }
      for b in root.child("Blobs")?.all("Blob") ?? [] {
        guard let name = b.text("Name"), name.count >= strip else { continue }
        let props = b.child("Properties")
        out.append(
          ObjectInfo(
            key: String(name.dropFirst(strip)), size: Int64(props?.text("Content-Length") ?? "0") ?? 0,
            lastModified: props?.text("Last-Modified").flatMap(parseHTTPDate)))
      }
      marker = root.text("NextMarker").flatMap { $0.isEmpty ? nil : $0 }
    } while marker != nil
    return out
  }

  public func delete(_ key: String) async throws {
    let name = blobName(key)
    let r = try await send("DELETE \(key)") { request("DELETE", blob: name) }
    guard r.status == 202 || r.status == 200 || r.status == 404 else {
      throw failure(r, key: key, operation: "Delete Blob")
    }
  }

  /// Not implemented for Azure (see the type's documentation): does nothing.
  public func extendRetention(_ key: String, to retention: ObjectRetention) async throws {}

  /// Creates the container; an existing one is not an error.
  public func createContainer() async throws {
    let r = try await send("CREATE CONTAINER") {
      request("PUT", blob: nil, query: [("restype", "container")], body: Data())
    }
    if r.status == 201 || r.status == 409 { return }
    throw failure(r, key: container, operation: "Create Container")
  }
}
