import CurlHTTP
import Foundation
import KubeCore
import Logging
import Synchronization

/// Retry and timeout settings of a client.
public struct RetryPolicy: Sendable {
  /// Total attempts per call, including the first.
  public var maxAttempts: Int
  public var backoff: ExponentialBackoff
  /// Deadline of one non-watch request.
  public var requestTimeout: Duration
  /// Added to a watch's server-side timeoutSeconds for the client-side deadline.
  public var watchTimeoutMargin: Duration
  /// Server-side timeout of a watch when the caller gives none.
  public var defaultWatchTimeoutSeconds: Int

  public init(
    maxAttempts: Int = 5, backoff: ExponentialBackoff = ExponentialBackoff(base: .milliseconds(200), max: .seconds(10)),
    requestTimeout: Duration = .seconds(30), watchTimeoutMargin: Duration = .seconds(30),
    defaultWatchTimeoutSeconds: Int = 290
  ) {
    self.maxAttempts = max(1, maxAttempts)
    self.backoff = backoff
    self.requestTimeout = requestTimeout
    self.watchTimeoutMargin = watchTimeoutMargin
    self.defaultWatchTimeoutSeconds = defaultWatchTimeoutSeconds
  }
}

/// A Kubernetes API client over libcurl: typed and unstructured calls, watches, discovery, retries.
public final class KubeClient: Sendable {
  public let config: ClientConfig
  let transport: any HTTPTransport
  let retry: RetryPolicy
  let logger: Logger
  let tokens: TokenSource
  let sleep: @Sendable (Duration) async throws -> Void
  let discoveryCache = Mutex<[String: [APIResourceInfo]]>([:])
  /// Typed objects are decoded without `metadata.managedFields` (faster; caches rarely need them).
  public let stripManagedFields: Bool

  /// - Parameters:
  ///   - stripManagedFields: leave `metadata.managedFields` out of decoded typed objects.
  ///   - sleep: how the client waits between retries (injected by tests).
  public init(
    config: ClientConfig, transport: any HTTPTransport = CurlClient(), retry: RetryPolicy = RetryPolicy(),
    logger: Logger = Logger(label: "botrt.kube"), stripManagedFields: Bool = false,
    sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
  ) {
    self.stripManagedFields = stripManagedFields
    self.config = config
    self.transport = transport
    self.retry = retry
    self.logger = logger
    self.tokens = TokenSource(auth: config.auth)
    self.sleep = sleep
  }

  /// A client from `$KUBECONFIG`, ~/.kube/config or the in-cluster service account.
  public static func fromEnvironment(context: String? = nil, logger: Logger = Logger(label: "botrt.kube")) throws
    -> KubeClient
  {
    do {
      return KubeClient(config: try ClientConfig.fromEnvironment(context: context), logger: logger)
    } catch let e as ConfigError {
      throw KubeError.config(e)
    }
  }

  /// The default namespace of the configuration.
  public var defaultNamespace: String { config.namespace }

  // MARK: - Raw requests

  /// Sends a request with retries; returns the response of a 2xx answer and throws `KubeError` otherwise.
  public func send(_ request: KubeRequest, timeout: Duration? = nil) async throws -> HTTPResponse {
    try await withRetries(request) { http in
      var h = http
      h.timeout = timeout ?? self.retry.requestTimeout
      let r = try await self.transport.send(h)
      return (r.status, r.headers, { r.body }, r)
    }
  }

  /// Sends a request and decodes a 2xx answer as `T`.
  /// `stripManagedFields`: leave `metadata.managedFields` out of the decoded objects (nil: the client's setting).
  public func send<T: Decodable>(
    _ request: KubeRequest, decoding type: T.Type, timeout: Duration? = nil, stripManagedFields: Bool? = nil
  ) async throws -> T {
    let response = try await send(request, timeout: timeout)
    return try decode(T.self, from: response.body, request: request, stripManagedFields: stripManagedFields)
  }

  func decode<T: Decodable>(
    _ type: T.Type, from body: Data, request: KubeRequest, stripManagedFields: Bool? = nil
  ) throws -> T {
    do {
      return try KubeJSON.decoder(stripManagedFields: stripManagedFields ?? self.stripManagedFields).decode(
        T.self, from: body)
    } catch let e as DecodingError {
      throw KubeError.decode(
        DecodeFailure(
          typeName: String(describing: T.self), method: request.method, url: url(request), detail: describe(e)))
    } catch {
      throw KubeError.decode(
        DecodeFailure(
          typeName: String(describing: T.self), method: request.method, url: url(request), detail: "\(error)"))
    }
  }

  func url(_ request: KubeRequest) -> String { config.server + request.path }

  func httpRequest(_ request: KubeRequest) throws -> HTTPRequest {
    var headers: [(name: String, value: String)] = [
      ("Accept", request.accept ?? "application/json"), ("User-Agent", "botrt/0.1"),
    ]
    if let ct = request.contentType { headers.append(("Content-Type", ct)) }
    if let t = try tokens.token() { headers.append(("Authorization", "Bearer \(t)")) }
    return HTTPRequest(
      method: request.method, url: config.server + request.pathAndQuery, headers: headers, body: request.body,
      timeout: retry.requestTimeout, tls: config.tls)
  }

  /// The retry loop shared by plain and streaming requests.
  func withRetries<R>(
    _ request: KubeRequest,
    _ perform: @Sendable (HTTPRequest) async throws -> (Int, [String: String], () async throws -> Data, R)
  ) async throws -> R {
    var attempt = 0
    var refreshedToken = false
    while true {
      let http: HTTPRequest
      do {
        http = try httpRequest(request)
      } catch let e as KubeError {
        throw e
      }
      let status: Int
      let headers: [String: String]
      let body: () async throws -> Data
      let result: R
      do {
        (status, headers, body, result) = try await perform(http)
      } catch let e as HTTPTransportError {
        if e.kind == .cancelled { throw CancellationError() }
        if e.isRetryable && request.isIdempotent && attempt + 1 < retry.maxAttempts {
          let d = retry.backoff.delay(attempt: attempt)
          logger.debug("retrying after transport error", metadata: ["url": "\(e.url)", "delay": "\(d)"])
          attempt += 1
          try await sleep(d)
          continue
        }
        throw KubeError.transport(e, hint: hint(for: e))
      }
      if (200..<300).contains(status) { return result }
      let error = apiError(status: status, headers: headers, body: try await body(), request: request)
      if status == 401 && tokens.canRefresh && !refreshedToken {
        refreshedToken = true
        tokens.invalidate()
        continue
      }
      let retryable = status == 429 || (request.isIdempotent && [500, 502, 503, 504].contains(status))
      if retryable && attempt + 1 < retry.maxAttempts {
        var d = retry.backoff.delay(attempt: attempt)
        if let ra = error.retryAfter, ra > d { d = ra }
        logger.debug("retrying after \(status)", metadata: ["url": "\(error.url)", "delay": "\(d)"])
        attempt += 1
        try await sleep(d)
        continue
      }
      throw KubeError.api(error)
    }
  }

  func apiError(status: Int, headers: [String: String], body: Data, request: KubeRequest) -> APIError {
    var st: Status
    do {
      st = try KubeJSON.decoder().decode(Status.self, from: body)
      if st.kind != "Status" && st.message == nil { throw RequestBuildError("not a Status") }
    } catch {
      let text = String(decoding: body.prefix(500), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
      st = Status(message: text.isEmpty ? "HTTP \(status) without a body" : text, code: status)
    }
    if st.code == nil { st.code = status }
    var retryAfter = parseRetryAfter(headers["retry-after"])
    if retryAfter == nil, let s = st.details?.retryAfterSeconds { retryAfter = .seconds(min(max(0, s), 300)) }
    return APIError(
      status: st, code: status, method: request.method, url: url(request), retryAfter: retryAfter,
      userDescription: config.userDescription)
  }

  func hint(for e: HTTPTransportError) -> String? {
    switch e.kind {
    case .tls:
      if e.curlCode == 60 {
        return "The server certificate could not be verified against the CA from \(config.caDescription)"
      }
      if e.curlCode == 58 || e.curlCode == 59 {
        return "The client certificate or key of \(config.userDescription) could not be used"
      }
      return "Check the CA (\(config.caDescription)) and the client certificate"
    case .connection:
      return "Is the apiserver at \(config.server) running and reachable?"
    case .timeout:
      return "The apiserver at \(config.server) did not answer in time"
    default:
      return nil
    }
  }

  func builder(_ resource: ResourceDescriptor) -> RequestBuilder { RequestBuilder(resource) }

  func build(_ body: () throws -> KubeRequest) throws -> KubeRequest {
    do {
      return try body()
    } catch let e as RequestBuildError {
      throw KubeError.request(e)
    } catch let e as EncodingError {
      throw KubeError.request(RequestBuildError("cannot encode the request body: \(e)"))
    }
  }

  func encode<T: Encodable>(_ value: T) throws -> Data {
    do {
      return try KubeJSON.encoder().encode(value)
    } catch {
      throw KubeError.request(RequestBuildError("cannot encode \(T.self): \(error)"))
    }
  }

  // MARK: - Generic calls (any resource, any Decodable type)

  /// GET one object (or its subresource); `metadataOnly` asks for its PartialObjectMetadata (no spec, no Secret data).
  public func get<T: Decodable & Sendable>(
    _ resource: ResourceDescriptor, namespace: String?, name: String, subresource: String? = nil, as type: T.Type,
    metadataOnly: Bool = false
  ) async throws -> T {
    var req = try build { try builder(resource).get(namespace: namespace, name: name, subresource: subresource) }
    if metadataOnly { req.accept = KubeRequest.acceptMetadata }
    return try await send(req, decoding: T.self)
  }

  /// The tail of a container's log (`pods/NAME/log`): at most `tailLines` lines and `limitBytes` bytes, as text
  /// (empty for a Pod not scheduled yet).
  public func podLog(
    namespace: String, name: String, container: String, tailLines: Int, limitBytes: Int
  ) async throws -> String {
    var req = try build { try builder(.pods).get(namespace: namespace, name: name, subresource: "log") }
    req.query = [
      QueryItem("container", container), QueryItem("tailLines", String(tailLines)),
      QueryItem("limitBytes", String(limitBytes)),
    ]
    req.accept = Self.podLogAccept
    return String(decoding: try await send(req).body, as: UTF8.self)
  }

  /// What a log read accepts: kubectl's header. The log is text, but the apiserver negotiates the subresource like
  /// any other and refuses `text/plain` alone (1.20: 406 NotAcceptable, "only the following media types are
  /// accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf"); `*/*` takes the text.
  static let podLogAccept = "application/json, */*"

  /// One page of a list. `stripManagedFields`: leave `metadata.managedFields` out of the items (nil: the client's
  /// setting).
  public func list<T: Decodable & Sendable>(
    _ resource: ResourceDescriptor, namespace: String?, options: ListOptions = ListOptions(), as type: T.Type,
    metadataOnly: Bool = false, stripManagedFields: Bool? = nil
  ) async throws -> KubeList<T> {
    var req = try build { try builder(resource).list(namespace: namespace, options: options) }
    if metadataOnly { req.accept = KubeRequest.acceptMetadataList }
    return try await send(req, decoding: KubeList<T>.self, stripManagedFields: stripManagedFields)
  }

  /// Every page of a list, following continue tokens; the metadata is the last page's.
  public func listAll<T: Decodable & Sendable>(
    _ resource: ResourceDescriptor, namespace: String?, options: ListOptions = ListOptions(), as type: T.Type
  ) async throws -> KubeList<T> {
    var all: [T] = []
    var meta = ListMeta()
    for try await page in pages(resource, namespace: namespace, options: options, as: T.self) {
      all += page.items
      meta = page.metadata
      if all.count == page.items.count, page.metadata.continueToken != nil {
        all.reserveCapacity(page.items.count + Int(page.metadata.remainingItemCount ?? 0))
      }
    }
    meta.continueToken = nil
    meta.remainingItemCount = nil
    return KubeList(metadata: meta, items: all)
  }

  /// The pages of a list as an async sequence (use `options.limit` for the page size).
  public func pages<T: Decodable & Sendable>(
    _ resource: ResourceDescriptor, namespace: String?, options: ListOptions = ListOptions(), as type: T.Type
  ) -> ListPages<T> {
    ListPages(client: self, resource: resource, namespace: namespace, options: options)
  }

  /// POST a new object; returns what the server stored.
  public func create<T: Codable & Sendable>(
    _ resource: ResourceDescriptor, namespace: String?, _ object: T, options: WriteOptions = WriteOptions()
  ) async throws -> T {
    let body = try encode(object)
    let req = try build { try builder(resource).create(namespace: namespace, body: body, options: options) }
    return try await send(req, decoding: T.self)
  }

  /// PUT an object (or its subresource such as `status`); optimistic concurrency through metadata.resourceVersion.
  public func replace<T: Codable & Sendable>(
    _ resource: ResourceDescriptor, namespace: String?, name: String, subresource: String? = nil, _ object: T,
    options: WriteOptions = WriteOptions()
  ) async throws -> T {
    let body = try encode(object)
    let req = try build {
      try builder(resource).replace(
        namespace: namespace, name: name, subresource: subresource, body: body, options: options)
    }
    return try await send(req, decoding: T.self)
  }

  /// PATCH an object (or its subresource) with a merge, JSON, strategic or apply patch.
  public func patch<T: Decodable & Sendable>(
    _ resource: ResourceDescriptor, namespace: String?, name: String, subresource: String? = nil, _ patch: Patch,
    options: WriteOptions = WriteOptions(), as type: T.Type
  ) async throws -> T {
    let req = try build {
      try builder(resource).patch(
        namespace: namespace, name: name, subresource: subresource, patch: patch, options: options)
    }
    return try await send(req, decoding: T.self)
  }

  /// Server-side apply: `fieldManager` owns the fields of `object`; `force` takes over conflicting fields.
  public func apply<T: Codable & Sendable>(
    _ resource: ResourceDescriptor, namespace: String?, name: String, subresource: String? = nil, _ object: T,
    fieldManager: String, force: Bool = false, dryRun: Bool = false
  ) async throws -> T {
    var value: JSONValue
    do {
      value = try JSONValue(encoding: object)
      // The apiserver rejects an apply body carrying managedFields (e.g. an object read back and re-applied).
      if value[path: "metadata", "managedFields"] != nil { value["metadata"]?["managedFields"] = nil }
    } catch {
      throw KubeError.request(RequestBuildError("cannot encode \(T.self) for apply: \(error)"))
    }
    return try await patch(
      resource, namespace: namespace, name: name, subresource: subresource, .apply(value),
      options: WriteOptions(fieldManager: fieldManager, force: force, dryRun: dryRun), as: T.self)
  }

  /// DELETE an object; returns the Status or the object as it is now (with a deletionTimestamp when finalizers
  /// hold it).
  @discardableResult
  public func delete(
    _ resource: ResourceDescriptor, namespace: String?, name: String, options: DeleteOptions = DeleteOptions()
  ) async throws -> JSONValue {
    let req = try build { try builder(resource).delete(namespace: namespace, name: name, options: options) }
    return try await send(req, decoding: JSONValue.self)
  }

  /// DELETE every object of a collection matching the selectors.
  public func deleteCollection(
    _ resource: ResourceDescriptor, namespace: String?, listOptions: ListOptions = ListOptions(),
    options: DeleteOptions = DeleteOptions()
  ) async throws {
    let req = try build {
      try builder(resource).deleteCollection(namespace: namespace, listOptions: listOptions, options: options)
    }
    _ = try await send(req)
  }

  /// Watches a collection. The stream yields events until the server's timeout, an ERROR event (e.g. 410 when
  /// the resourceVersion is too old) or a transport failure; a non-2xx answer throws before it returns.
  public func watch<T: Decodable & Sendable>(
    _ resource: ResourceDescriptor, namespace: String?, options: ListOptions = ListOptions(), as type: T.Type,
    maxLineBytes: Int = 16 << 20, metadataOnly: Bool = false, stripManagedFields: Bool? = nil
  ) async throws -> AsyncThrowingStream<WatchEvent<T>, Error> {
    var opts = options
    if opts.timeoutSeconds == nil { opts.timeoutSeconds = retry.defaultWatchTimeoutSeconds }
    let timeout = Duration.seconds(opts.timeoutSeconds ?? 0) + retry.watchTimeoutMargin
    var req = try build { try builder(resource).watch(namespace: namespace, options: opts) }
    if metadataOnly { req.accept = KubeRequest.acceptMetadata }
    let response: StreamingResponse = try await withRetries(req) { http in
      var h = http
      h.timeout = timeout
      let r = try await self.transport.openStream(h)
      return (r.status, r.headers, { try await r.collect(limit: 1 << 20) }, r)
    }
    let state = WatchState<T>(
      response: response, maxLineBytes: maxLineBytes,
      stripManagedFields: stripManagedFields ?? self.stripManagedFields, url: url(req))
    return AsyncThrowingStream(unfolding: { try await state.next() })
  }

  // MARK: - Typed calls (the resource comes from the type)

  public func get<T: KubeResource>(_ type: T.Type, namespace: String? = nil, name: String) async throws -> T {
    try await get(T.resource, namespace: namespace, name: name, as: T.self)
  }

  public func list<T: KubeResource>(_ type: T.Type, namespace: String? = nil, options: ListOptions = ListOptions())
    async throws -> KubeList<T>
  {
    try await list(T.resource, namespace: namespace, options: options, as: T.self)
  }

  public func listAll<T: KubeResource>(
    _ type: T.Type, namespace: String? = nil, options: ListOptions = ListOptions()
  ) async throws -> KubeList<T> {
    try await listAll(T.resource, namespace: namespace, options: options, as: T.self)
  }

  public func watch<T: KubeResource>(
    _ type: T.Type, namespace: String? = nil, options: ListOptions = ListOptions()
  ) async throws -> AsyncThrowingStream<WatchEvent<T>, Error> {
    try await watch(T.resource, namespace: namespace, options: options, as: T.self)
  }

  /// Creates the object in `metadata.namespace`.
  public func create<T: KubeResource>(_ object: T, options: WriteOptions = WriteOptions()) async throws -> T {
    try await create(T.resource, namespace: object.metadata.namespace, object, options: options)
  }

  /// Replaces the object (PUT); fails with Conflict when `metadata.resourceVersion` is stale.
  public func update<T: KubeResource>(_ object: T, options: WriteOptions = WriteOptions()) async throws -> T {
    try await replace(T.resource, namespace: object.metadata.namespace, name: object.name, object, options: options)
  }

  /// Replaces the status subresource (PUT .../status).
  public func updateStatus<T: KubeResource>(_ object: T, options: WriteOptions = WriteOptions()) async throws -> T {
    try await replace(
      T.resource, namespace: object.metadata.namespace, name: object.name, subresource: "status", object,
      options: options)
  }

  public func patch<T: KubeResource>(
    _ type: T.Type, namespace: String? = nil, name: String, subresource: String? = nil, _ patch: Patch,
    options: WriteOptions = WriteOptions()
  ) async throws -> T {
    try await self.patch(
      T.resource, namespace: namespace, name: name, subresource: subresource, patch, options: options, as: T.self)
  }

  /// Server-side apply of a typed object (its namespace and name from metadata).
  public func apply<T: KubeResource>(_ object: T, fieldManager: String, force: Bool = false, dryRun: Bool = false)
    async throws -> T
  {
    try await apply(
      T.resource, namespace: object.metadata.namespace, name: object.name, object, fieldManager: fieldManager,
      force: force, dryRun: dryRun)
  }

  /// Server-side apply of the status subresource.
  public func applyStatus<T: KubeResource>(_ object: T, fieldManager: String, force: Bool = false) async throws -> T {
    try await apply(
      T.resource, namespace: object.metadata.namespace, name: object.name, subresource: "status", object,
      fieldManager: fieldManager, force: force)
  }

  @discardableResult
  public func delete<T: KubeResource>(
    _ type: T.Type, namespace: String? = nil, name: String, options: DeleteOptions = DeleteOptions()
  ) async throws -> JSONValue {
    try await delete(T.resource, namespace: namespace, name: name, options: options)
  }
}

/// The pages of a list call; each step fetches the next page with the previous continue token.
public struct ListPages<T: Decodable & Sendable>: AsyncSequence, Sendable {
  public typealias Element = KubeList<T>
  let client: KubeClient
  let resource: ResourceDescriptor
  let namespace: String?
  let options: ListOptions

  /// Fetches one page per step.
  public struct AsyncIterator: AsyncIteratorProtocol {
    let pages: ListPages
    var continueToken: String?
    var done = false

    public mutating func next() async throws -> KubeList<T>? {
      if done { return nil }
      var o = pages.options
      o.continueToken = continueToken
      let page = try await pages.client.list(pages.resource, namespace: pages.namespace, options: o, as: T.self)
      continueToken = page.metadata.continueToken
      if (continueToken ?? "").isEmpty { done = true }
      return page
    }
  }

  public func makeAsyncIterator() -> AsyncIterator {
    AsyncIterator(pages: self, continueToken: options.continueToken)
  }
}

/// Pulls chunks from a watch response and decodes them into events; one consumer at a time.
final class WatchState<T: Decodable & Sendable>: @unchecked Sendable {
  private let response: StreamingResponse
  private var decoder: WatchEventDecoder<T>
  private var pending: [WatchEvent<T>] = []
  private var index = 0
  private var finished = false
  private let url: String

  init(response: StreamingResponse, maxLineBytes: Int, stripManagedFields: Bool, url: String) {
    self.response = response
    self.decoder = WatchEventDecoder(maxLineBytes: maxLineBytes, stripManagedFields: stripManagedFields)
    self.url = url
  }

  deinit { response.cancel() }

  func next() async throws -> WatchEvent<T>? {
    while true {
      if index < pending.count {
        let e = pending[index]
        index += 1
        return e
      }
      if finished { return nil }
      pending = []
      index = 0
      let chunk: Data?
      do {
        chunk = try await response.next()
      } catch let e as HTTPTransportError {
        finished = true
        response.cancel()
        if e.kind == .cancelled || Task.isCancelled { return nil }
        // The server's timeout ends a watch normally; a curl timeout is our margin expiring.
        throw KubeError.transport(e, hint: "the watch of \(url) was interrupted; list again and re-watch")
      }
      do {
        if let chunk {
          pending = try decoder.feed(chunk)
        } else {
          finished = true
          pending = try decoder.finish()
        }
      } catch let e as WatchLineTooLong {
        finished = true
        response.cancel()
        throw KubeError.watchStream("\(url): \(e)")
      } catch let e as WatchDecodeError {
        finished = true
        response.cancel()
        throw KubeError.watchStream("\(url): \(e)")
      }
    }
  }
}
