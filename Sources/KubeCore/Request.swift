import Foundation

/// Options of list and watch calls.
public struct ListOptions: Sendable, Hashable {
  public var labelSelector: String?
  public var fieldSelector: String?
  /// Page size; the server returns a continue token when more remain.
  public var limit: Int?
  /// The continue token of the previous page.
  public var continueToken: String?
  public var resourceVersion: String?
  /// "Exact" or "NotOlderThan" (with resourceVersion on a list).
  public var resourceVersionMatch: String?
  /// Server-side timeout of a watch (or of a list).
  public var timeoutSeconds: Int?
  /// Ask for BOOKMARK events on watches.
  public var allowWatchBookmarks: Bool?

  public init(
    labelSelector: String? = nil, fieldSelector: String? = nil, limit: Int? = nil, continueToken: String? = nil,
    resourceVersion: String? = nil, resourceVersionMatch: String? = nil, timeoutSeconds: Int? = nil,
    allowWatchBookmarks: Bool? = nil
  ) {
    self.labelSelector = labelSelector
    self.fieldSelector = fieldSelector
    self.limit = limit
    self.continueToken = continueToken
    self.resourceVersion = resourceVersion
    self.resourceVersionMatch = resourceVersionMatch
    self.timeoutSeconds = timeoutSeconds
    self.allowWatchBookmarks = allowWatchBookmarks
  }
}

/// Options of create, update and patch calls.
public struct WriteOptions: Sendable, Hashable {
  /// Names the actor making the change; required by server-side apply.
  public var fieldManager: String?
  /// Server-side apply only: take ownership of conflicting fields.
  public var force: Bool?
  /// Validate and admit, but do not persist.
  public var dryRun: Bool

  public init(fieldManager: String? = nil, force: Bool? = nil, dryRun: Bool = false) {
    self.fieldManager = fieldManager
    self.force = force
    self.dryRun = dryRun
  }
}

/// How dependents are deleted.
public enum PropagationPolicy: String, Codable, Sendable, Hashable {
  case orphan = "Orphan"
  case background = "Background"
  case foreground = "Foreground"
}

/// Conditions the object must meet for a delete to proceed.
public struct Preconditions: Codable, Sendable, Hashable {
  public var uid: String?
  public var resourceVersion: String?

  public init(uid: String? = nil, resourceVersion: String? = nil) {
    self.uid = uid
    self.resourceVersion = resourceVersion
  }
}

/// Options of delete calls; sent as a DeleteOptions body.
public struct DeleteOptions: Sendable, Hashable {
  public var propagationPolicy: PropagationPolicy?
  public var preconditions: Preconditions?
  public var gracePeriodSeconds: Int?
  public var dryRun: Bool

  public init(
    propagationPolicy: PropagationPolicy? = nil, preconditions: Preconditions? = nil, gracePeriodSeconds: Int? = nil,
    dryRun: Bool = false
  ) {
    self.propagationPolicy = propagationPolicy
    self.preconditions = preconditions
    self.gracePeriodSeconds = gracePeriodSeconds
    self.dryRun = dryRun
  }

  /// The meta/v1 DeleteOptions body.
  public var body: JSONValue {
    var o: [String: JSONValue] = ["apiVersion": "v1", "kind": "DeleteOptions"]
    if let p = propagationPolicy { o["propagationPolicy"] = .string(p.rawValue) }
    if let pre = preconditions {
      var po: [String: JSONValue] = [:]
      if let u = pre.uid { po["uid"] = .string(u) }
      if let r = pre.resourceVersion { po["resourceVersion"] = .string(r) }
      o["preconditions"] = .object(po)
    }
    if let g = gracePeriodSeconds { o["gracePeriodSeconds"] = .int(Int64(g)) }
    if dryRun { o["dryRun"] = ["All"] }
    return .object(o)
  }
}

/// One RFC 6902 JSON patch operation.
public enum JSONPatchOperation: Sendable, Hashable, Codable {
  case add(path: String, value: JSONValue)
  case remove(path: String)
  case replace(path: String, value: JSONValue)
  case move(from: String, path: String)
  case copy(from: String, path: String)
  /// Fails the whole patch unless the value at `path` equals `value`.
  case test(path: String, value: JSONValue)

  enum CodingKeys: String, CodingKey { case op, path, from, value }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    switch self {
    case .add(let p, let v):
      try c.encode("add", forKey: .op)
      try c.encode(p, forKey: .path)
      try c.encode(v, forKey: .value)
    case .remove(let p):
      try c.encode("remove", forKey: .op)
      try c.encode(p, forKey: .path)
    case .replace(let p, let v):
      try c.encode("replace", forKey: .op)
      try c.encode(p, forKey: .path)
      try c.encode(v, forKey: .value)
    case .move(let f, let p):
      try c.encode("move", forKey: .op)
      try c.encode(f, forKey: .from)
      try c.encode(p, forKey: .path)
    case .copy(let f, let p):
      try c.encode("copy", forKey: .op)
      try c.encode(f, forKey: .from)
      try c.encode(p, forKey: .path)
    case .test(let p, let v):
      try c.encode("test", forKey: .op)
      try c.encode(p, forKey: .path)
      try c.encode(v, forKey: .value)
    }
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let op = try c.decode(String.self, forKey: .op)
    let path = try c.decode(String.self, forKey: .path)
    switch op {
    case "add": self = .add(path: path, value: try c.decode(JSONValue.self, forKey: .value))
    case "remove": self = .remove(path: path)
    case "replace": self = .replace(path: path, value: try c.decode(JSONValue.self, forKey: .value))
    case "move": self = .move(from: try c.decode(String.self, forKey: .from), path: path)
    case "copy": self = .copy(from: try c.decode(String.self, forKey: .from), path: path)
    case "test": self = .test(path: path, value: try c.decode(JSONValue.self, forKey: .value))
    default:
      throw DecodingError.dataCorruptedError(forKey: .op, in: c, debugDescription: "unknown JSON patch op \(op)")
    }
  }

  /// Escapes one path segment as RFC 6901 requires (`~` → `~0`, `/` → `~1`).
  public static func escape(_ segment: String) -> String {
    segment.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1")
  }
}

/// A patch body with its content type.
public enum Patch: Sendable, Hashable {
  /// RFC 7386 JSON merge patch.
  case merge(JSONValue)
  /// RFC 6902 JSON patch.
  case json([JSONPatchOperation])
  /// Strategic merge patch (built-in kinds only).
  case strategic(JSONValue)
  /// Server-side apply: the full intent of one field manager (JSON is valid YAML).
  case apply(JSONValue)

  public var contentType: String {
    switch self {
    case .merge: return "application/merge-patch+json"
    case .json: return "application/json-patch+json"
    case .strategic: return "application/strategic-merge-patch+json"
    case .apply: return "application/apply-patch+yaml"
    }
  }

  public func body() throws -> Data {
    switch self {
    case .merge(let v), .strategic(let v), .apply(let v): return try v.jsonData()
    case .json(let ops):
      let e = KubeJSON.encoder()
      e.outputFormatting.insert(.sortedKeys)
      return try e.encode(ops)
    }
  }
}

/// A request of the Kubernetes API as plain values: what to send, with no I/O.
public struct KubeRequest: Sendable, Hashable {
  public var method: String
  /// The path, percent-encoded, without the query.
  public var path: String
  /// Query parameters in order, not yet encoded.
  public var query: [QueryItem]
  public var contentType: String?
  public var body: Data?
  /// A watch: the response is a stream of events.
  public var isWatch: Bool
  /// The Accept header; nil = application/json. A metadata-only list or watch asks for PartialObjectMetadata.
  public var accept: String? = nil

  public init(
    method: String, path: String, query: [QueryItem] = [], contentType: String? = nil, body: Data? = nil,
    isWatch: Bool = false
  ) {
    self.method = method
    self.path = path
    self.query = query
    self.contentType = contentType
    self.body = body
    self.isWatch = isWatch
  }

  /// The Accept header of a metadata-only list (`PartialObjectMetadataList`, JSON).
  public static let acceptMetadataList =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
  /// The Accept header of a metadata-only watch (events carry `PartialObjectMetadata`, JSON).
  public static let acceptMetadata = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"

  /// The path with its percent-encoded query string.
  public var pathAndQuery: String {
    if query.isEmpty { return path }
    return path + "?"
      + query.map { "\(KubeRequest.encode($0.name))=\(KubeRequest.encode($0.value))" }
      .joined(separator: "&")
  }

  /// Whether sending it twice has the same effect as once (POST creates are not).
  public var isIdempotent: Bool { method != "POST" }

  /// The value of query parameter `name`.
  public func queryValue(_ name: String) -> String? { query.first { $0.name == name }?.value }

  static let unreserved: Set<UInt8> = Set(
    Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8))

  /// Percent-encodes everything but RFC 3986 unreserved characters.
  public static func encode(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.utf8.count)
    for b in s.utf8 {
      if unreserved.contains(b) {
        out.unicodeScalars.append(Unicode.Scalar(b))
      } else {
        out += String(format: "%%%02X", b)
      }
    }
    return out
  }
}

/// One query parameter.
public struct QueryItem: Sendable, Hashable {
  public var name: String
  public var value: String

  public init(_ name: String, _ value: String) {
    self.name = name
    self.value = value
  }
}

/// A request that cannot be built: names the argument at fault.
public struct RequestBuildError: Error, Sendable, Hashable, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// Builds Kubernetes API requests for one resource, offline.
public struct RequestBuilder: Sendable, Hashable {
  public var resource: ResourceDescriptor

  public init(_ resource: ResourceDescriptor) { self.resource = resource }

  /// The collection path, e.g. `/api/v1/namespaces/ns/configmaps` (all namespaces when `namespace` is nil).
  public func collectionPath(namespace: String?) throws -> String {
    var p = resource.groupVersionPath
    if resource.namespaced {
      if let ns = namespace {
        p += "/namespaces/" + (try segment(ns, "namespace"))
      }
    } else if let ns = namespace, !ns.isEmpty {
      throw RequestBuildError("\(resource) is cluster-scoped, but namespace \"\(ns)\" was given")
    }
    return p + "/" + resource.plural
  }

  /// The object path, with an optional subresource such as `status`.
  public func objectPath(namespace: String?, name: String, subresource: String? = nil) throws -> String {
    if resource.namespaced && (namespace ?? "").isEmpty {
      throw RequestBuildError("\(resource) is namespaced: a namespace is required to address \"\(name)\"")
    }
    var p = try collectionPath(namespace: namespace) + "/" + (try segment(name, "name"))
    if let s = subresource { p += "/" + (try segment(s, "subresource")) }
    return p
  }

  public func get(namespace: String?, name: String, subresource: String? = nil) throws -> KubeRequest {
    KubeRequest(method: "GET", path: try objectPath(namespace: namespace, name: name, subresource: subresource))
  }

  public func list(namespace: String?, options: ListOptions = ListOptions()) throws -> KubeRequest {
    KubeRequest(
      method: "GET", path: try collectionPath(namespace: namespace), query: listQuery(options, watch: false))
  }

  public func watch(namespace: String?, options: ListOptions = ListOptions()) throws -> KubeRequest {
    KubeRequest(
      method: "GET", path: try collectionPath(namespace: namespace), query: listQuery(options, watch: true),
      isWatch: true)
  }

  public func create(namespace: String?, body: Data, options: WriteOptions = WriteOptions()) throws -> KubeRequest {
    if resource.namespaced && (namespace ?? "").isEmpty {
      throw RequestBuildError("\(resource) is namespaced: a namespace is required to create one")
    }
    return KubeRequest(
      method: "POST", path: try collectionPath(namespace: namespace), query: writeQuery(options),
      contentType: "application/json", body: body)
  }

  /// PUT: replaces the object (or its subresource); the body should carry metadata.resourceVersion.
  public func replace(
    namespace: String?, name: String, subresource: String? = nil, body: Data, options: WriteOptions = WriteOptions()
  ) throws -> KubeRequest {
    KubeRequest(
      method: "PUT", path: try objectPath(namespace: namespace, name: name, subresource: subresource),
      query: writeQuery(options), contentType: "application/json", body: body)
  }

  public func patch(
    namespace: String?, name: String, subresource: String? = nil, patch: Patch, options: WriteOptions = WriteOptions()
  ) throws -> KubeRequest {
    var isApply = false
    if case .apply = patch { isApply = true }
    if isApply, (options.fieldManager ?? "").isEmpty {
      throw RequestBuildError("server-side apply of \(resource) \"\(name)\" needs a fieldManager")
    }
    if !isApply, options.force != nil {
      throw RequestBuildError("force is only valid with server-side apply (patching \(resource) \"\(name)\")")
    }
    return KubeRequest(
      method: "PATCH", path: try objectPath(namespace: namespace, name: name, subresource: subresource),
      query: writeQuery(options), contentType: patch.contentType, body: try patch.body())
  }

  public func delete(namespace: String?, name: String, options: DeleteOptions = DeleteOptions()) throws -> KubeRequest {
    KubeRequest(
      method: "DELETE", path: try objectPath(namespace: namespace, name: name), contentType: "application/json",
      body: try options.body.jsonData())
  }

  public func deleteCollection(
    namespace: String?, listOptions: ListOptions = ListOptions(), options: DeleteOptions = DeleteOptions()
  ) throws -> KubeRequest {
    KubeRequest(
      method: "DELETE", path: try collectionPath(namespace: namespace), query: listQuery(listOptions, watch: false),
      contentType: "application/json", body: try options.body.jsonData())
  }

  // MARK: - Helpers

  private func segment(_ s: String, _ what: String) throws -> String {
    if s.isEmpty { throw RequestBuildError("\(resource): the \(what) must not be empty") }
    if s == "." || s == ".." || s.contains("/") || s.contains("%") {
      throw RequestBuildError("\(resource): the \(what) \"\(s)\" must not contain '/' or '%' or be '.' or '..'")
    }
    return KubeRequest.encode(s)
  }

  private func listQuery(_ o: ListOptions, watch: Bool) -> [QueryItem] {
    var q: [QueryItem] = []
    if watch { q.append(QueryItem("watch", "true")) }
    if let v = o.labelSelector, !v.isEmpty { q.append(QueryItem("labelSelector", v)) }
    if let v = o.fieldSelector, !v.isEmpty { q.append(QueryItem("fieldSelector", v)) }
    if !watch, let v = o.limit { q.append(QueryItem("limit", String(v))) }
    if !watch, let v = o.continueToken, !v.isEmpty { q.append(QueryItem("continue", v)) }
    if let v = o.resourceVersion { q.append(QueryItem("resourceVersion", v)) }
    if !watch, let v = o.resourceVersionMatch { q.append(QueryItem("resourceVersionMatch", v)) }
    if watch, o.allowWatchBookmarks == true { q.append(QueryItem("allowWatchBookmarks", "true")) }
    if let v = o.timeoutSeconds { q.append(QueryItem("timeoutSeconds", String(v))) }
    return q
  }

  private func writeQuery(_ o: WriteOptions) -> [QueryItem] {
    var q: [QueryItem] = []
    if let m = o.fieldManager, !m.isEmpty { q.append(QueryItem("fieldManager", m)) }
    if let f = o.force { q.append(QueryItem("force", f ? "true" : "false")) }
    if o.dryRun { q.append(QueryItem("dryRun", "All")) }
    return q
  }
}
