import Foundation

/// Any Kubernetes object: apiVersion, kind and metadata.
public protocol KubeObject: Codable, Sendable {
  var apiVersion: String { get }
  var kind: String { get }
  var metadata: ObjectMeta { get set }
}

/// A typed object whose REST collection is known statically.
public protocol KubeResource: KubeObject {
  static var resource: ResourceDescriptor { get }
}

/// A typed resource with a status subresource the controller writes.
public protocol StatusResource: KubeResource {
  associatedtype Status: Codable & Equatable & Sendable
  var status: Status? { get }
}

extension KubeObject {
  /// metadata.name, or "" when unset.
  public var name: String { metadata.name ?? "" }
  /// metadata.namespace, if any.
  public var namespace: String? { metadata.namespace }

  /// An owner reference to this object (fails when uid or name is missing).
  public func ownerReference(controller: Bool = true, blockOwnerDeletion: Bool = true) -> OwnerReference? {
    guard let uid = metadata.uid, let name = metadata.name else { return nil }
    return OwnerReference(
      apiVersion: apiVersion, kind: kind, name: name, uid: uid, controller: controller,
      blockOwnerDeletion: blockOwnerDeletion)
  }

  /// A reference to this object for Events.
  public var objectReference: ObjectReference {
    ObjectReference(
      apiVersion: apiVersion, kind: kind, namespace: metadata.namespace, name: metadata.name, uid: metadata.uid,
      resourceVersion: metadata.resourceVersion)
  }
}

/// An object of any kind, held as JSON; metadata is decoded, everything else is reachable through `body`.
public struct Unstructured: KubeObject, Hashable {
  /// The whole object.
  public var body: JSONValue

  public init(_ body: JSONValue) { self.body = body }

  public init(apiVersion: String, kind: String, metadata: ObjectMeta, fields: [String: JSONValue] = [:]) throws {
    var o = fields
    o["apiVersion"] = .string(apiVersion)
    o["kind"] = .string(kind)
    o["metadata"] = try JSONValue(encoding: metadata)
    body = .object(o)
  }

  public var apiVersion: String { body["apiVersion"]?.stringValue ?? "" }
  public var kind: String { body["kind"]?.stringValue ?? "" }

  /// metadata, decoded on access; setting it rewrites the JSON.
  public var metadata: ObjectMeta {
    get {
      guard let m = body["metadata"] else { return ObjectMeta() }
      do {
        return try m.decode(as: ObjectMeta.self)
      } catch {
        return ObjectMeta()
      }
    }
    set {
      do {
        var m = try JSONValue(encoding: newValue)
        // Keep fields ObjectMeta does not model (e.g. selfLink) as they were.
        if case .object(let old) = body["metadata"] ?? .null, case .object(var new) = m {
          for (k, v) in old where new[k] == nil && !ObjectMeta.modeledKeys.contains(k) { new[k] = v }
          m = .object(new)
        }
        body["metadata"] = m
      } catch {
        body["metadata"] = .object([:])
      }
    }
  }

  public subscript(key: String) -> JSONValue? {
    get { body[key] }
    set { body[key] = newValue }
  }

  /// `spec`, if present.
  public var spec: JSONValue? { body["spec"] }
  /// `status`, if present.
  public var status: JSONValue? { body["status"] }

  public init(from decoder: Decoder) throws {
    body = try JSONValue(from: decoder)
    guard case .object = body else {
      throw DecodingError.dataCorrupted(
        .init(codingPath: decoder.codingPath, debugDescription: "a Kubernetes object must be a JSON object"))
    }
    // As ObjectMeta does: a decoder that strips managedFields leaves them out of the kept body too (a cache of
    // thousands of objects keeps no field-ownership trees nobody reads).
    if decoder.userInfo[KubeJSON.stripManagedFieldsKey] as? Bool == true, body["metadata"]?["managedFields"] != nil {
      body["metadata"]?["managedFields"] = nil
    }
  }

  public func encode(to encoder: Encoder) throws { try body.encode(to: encoder) }

  /// Decodes the object into a typed value.
  public func decode<T: Decodable>(as type: T.Type = T.self) throws -> T { try body.decode(as: T.self) }
}

extension ObjectMeta {
  static let modeledKeys: Set<String> = [
    "name", "generateName", "namespace", "uid", "resourceVersion", "generation", "labels", "annotations",
    "ownerReferences", "finalizers", "managedFields", "creationTimestamp", "deletionTimestamp",
    "deletionGracePeriodSeconds",
  ]
}

/// A list response: list metadata and items.
public struct KubeList<Item: Decodable & Sendable>: Decodable, Sendable {
  public var apiVersion: String?
  public var kind: String?
  public var metadata: ListMeta
  public var items: [Item]

  public init(metadata: ListMeta = ListMeta(), items: [Item]) {
    self.metadata = metadata
    self.items = items
  }

  enum CodingKeys: String, CodingKey { case apiVersion, kind, metadata, items }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    apiVersion = try c.decodeIfPresent(String.self, forKey: .apiVersion)
    kind = try c.decodeIfPresent(String.self, forKey: .kind)
    metadata = try c.decodeIfPresent(ListMeta.self, forKey: .metadata) ?? ListMeta()
    // The apiserver sends `"items": null` for an empty list of some kinds.
    items = try c.decodeIfPresent([Item].self, forKey: .items) ?? []
  }
}

/// core/v1 ConfigMap.
public struct ConfigMap: KubeResource, Hashable {
  public static let resource = ResourceDescriptor.configMaps
  public var apiVersion = "v1"
  public var kind = "ConfigMap"
  public var metadata: ObjectMeta
  public var data: [String: String]?
  /// Base64 values, as on the wire.
  public var binaryData: [String: String]?
  public var immutable: Bool?

  public init(metadata: ObjectMeta, data: [String: String]? = nil) {
    self.metadata = metadata
    self.data = data
  }
}

/// core/v1 Namespace.
public struct Namespace: KubeResource, Hashable {
  public static let resource = ResourceDescriptor.namespaces
  public var apiVersion = "v1"
  public var kind = "Namespace"
  public var metadata: ObjectMeta
  public var spec: NamespaceSpec?
  public var status: NamespaceStatus?

  public init(metadata: ObjectMeta) { self.metadata = metadata }
}

/// core/v1 NamespaceSpec.
public struct NamespaceSpec: Codable, Sendable, Hashable {
  public var finalizers: [String]?
}

/// core/v1 NamespaceStatus.
public struct NamespaceStatus: Codable, Sendable, Hashable {
  /// "Active" or "Terminating".
  public var phase: String?
}

/// core/v1 Secret; `data` values are raw bytes (base64 on the wire).
public struct Secret: KubeResource, Hashable {
  public static let resource = ResourceDescriptor.secrets
  public var apiVersion = "v1"
  public var kind = "Secret"
  public var metadata: ObjectMeta
  public var data: [String: Data]?
  /// Write-only convenience field: the apiserver merges it into `data`.
  public var stringData: [String: String]?
  public var type: String?
  public var immutable: Bool?

  public init(metadata: ObjectMeta, data: [String: Data]? = nil, type: String? = nil) {
    self.metadata = metadata
    self.data = data
    self.type = type
  }
}

/// coordination.k8s.io/v1 Lease, used for leader election.
public struct Lease: KubeResource, Hashable {
  public static let resource = ResourceDescriptor.leases
  public var apiVersion = "coordination.k8s.io/v1"
  public var kind = "Lease"
  public var metadata: ObjectMeta
  public var spec: LeaseSpec?

  public init(metadata: ObjectMeta, spec: LeaseSpec? = nil) {
    self.metadata = metadata
    self.spec = spec
  }
}

/// coordination.k8s.io/v1 LeaseSpec; times are MicroTime on the wire (written with microseconds).
public struct LeaseSpec: Codable, Sendable, Hashable {
  public var holderIdentity: String?
  public var leaseDurationSeconds: Int?
  public var acquireTime: Date?
  public var renewTime: Date?
  public var leaseTransitions: Int?

  public init(
    holderIdentity: String? = nil, leaseDurationSeconds: Int? = nil, acquireTime: Date? = nil, renewTime: Date? = nil,
    leaseTransitions: Int? = nil
  ) {
    self.holderIdentity = holderIdentity
    self.leaseDurationSeconds = leaseDurationSeconds
    self.acquireTime = acquireTime
    self.renewTime = renewTime
    self.leaseTransitions = leaseTransitions
  }
}

/// core/v1 Event.
public struct Event: KubeResource, Hashable {
  public static let resource = ResourceDescriptor.events
  public var apiVersion = "v1"
  public var kind = "Event"
  public var metadata: ObjectMeta
  public var involvedObject: ObjectReference
  public var reason: String?
  public var message: String?
  /// "Normal" or "Warning".
  public var type: String?
  public var source: EventSource?
  public var firstTimestamp: Date?
  public var lastTimestamp: Date?
  public var count: Int?
  public var eventTime: Date?
  public var action: String?
  public var reportingComponent: String?
  public var reportingInstance: String?

  public init(
    metadata: ObjectMeta, involvedObject: ObjectReference, reason: String?, message: String?, type: String?,
    source: EventSource? = nil, firstTimestamp: Date? = nil, lastTimestamp: Date? = nil, count: Int? = nil
  ) {
    self.metadata = metadata
    self.involvedObject = involvedObject
    self.reason = reason
    self.message = message
    self.type = type
    self.source = source
    self.firstTimestamp = firstTimestamp
    self.lastTimestamp = lastTimestamp
    self.count = count
  }
}

/// core/v1 EventSource.
public struct EventSource: Codable, Sendable, Hashable {
  public var component: String?
  public var host: String?

  public init(component: String? = nil, host: String? = nil) {
    self.component = component
    self.host = host
  }
}

extension ConfigMap {
  enum CodingKeys: String, CodingKey { case apiVersion, kind, metadata, data, binaryData, immutable }

  // List items from the apiserver omit apiVersion and kind, so they default here.
  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    apiVersion = try c.decodeIfPresent(String.self, forKey: .apiVersion) ?? Self.resource.apiVersion
    kind = try c.decodeIfPresent(String.self, forKey: .kind) ?? Self.resource.kind
    metadata = try c.decodeIfPresent(ObjectMeta.self, forKey: .metadata) ?? ObjectMeta()
    data = try c.decodeIfPresent([String: String].self, forKey: .data)
    binaryData = try c.decodeIfPresent([String: String].self, forKey: .binaryData)
    immutable = try c.decodeIfPresent(Bool.self, forKey: .immutable)
  }
}

extension Namespace {
  enum CodingKeys: String, CodingKey { case apiVersion, kind, metadata, spec, status }

  // List items from the apiserver omit apiVersion and kind, so they default here.
  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    apiVersion = try c.decodeIfPresent(String.self, forKey: .apiVersion) ?? Self.resource.apiVersion
    kind = try c.decodeIfPresent(String.self, forKey: .kind) ?? Self.resource.kind
    metadata = try c.decodeIfPresent(ObjectMeta.self, forKey: .metadata) ?? ObjectMeta()
    spec = try c.decodeIfPresent(NamespaceSpec.self, forKey: .spec)
    status = try c.decodeIfPresent(NamespaceStatus.self, forKey: .status)
  }
}

extension Secret {
  enum CodingKeys: String, CodingKey { case apiVersion, kind, metadata, data, stringData, type, immutable }

  // List items from the apiserver omit apiVersion and kind, so they default here.
  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    apiVersion = try c.decodeIfPresent(String.self, forKey: .apiVersion) ?? Self.resource.apiVersion
    kind = try c.decodeIfPresent(String.self, forKey: .kind) ?? Self.resource.kind
    metadata = try c.decodeIfPresent(ObjectMeta.self, forKey: .metadata) ?? ObjectMeta()
    data = try c.decodeIfPresent([String: Data].self, forKey: .data)
    stringData = try c.decodeIfPresent([String: String].self, forKey: .stringData)
    type = try c.decodeIfPresent(String.self, forKey: .type)
    immutable = try c.decodeIfPresent(Bool.self, forKey: .immutable)
  }
}

extension Lease {
  enum CodingKeys: String, CodingKey { case apiVersion, kind, metadata, spec }

  // List items from the apiserver omit apiVersion and kind, so they default here.
  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    apiVersion = try c.decodeIfPresent(String.self, forKey: .apiVersion) ?? Self.resource.apiVersion
    kind = try c.decodeIfPresent(String.self, forKey: .kind) ?? Self.resource.kind
    metadata = try c.decodeIfPresent(ObjectMeta.self, forKey: .metadata) ?? ObjectMeta()
    spec = try c.decodeIfPresent(LeaseSpec.self, forKey: .spec)
  }
}

extension Event {
  enum CodingKeys: String, CodingKey {
    case apiVersion, kind, metadata, involvedObject, reason, message, type, source, firstTimestamp, lastTimestamp
    case count, eventTime, action, reportingComponent, reportingInstance
  }

  // List items from the apiserver omit apiVersion and kind, so they default here.
  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    apiVersion = try c.decodeIfPresent(String.self, forKey: .apiVersion) ?? Self.resource.apiVersion
    kind = try c.decodeIfPresent(String.self, forKey: .kind) ?? Self.resource.kind
    metadata = try c.decodeIfPresent(ObjectMeta.self, forKey: .metadata) ?? ObjectMeta()
    involvedObject = try c.decodeIfPresent(ObjectReference.self, forKey: .involvedObject) ?? ObjectReference()
    reason = try c.decodeIfPresent(String.self, forKey: .reason)
    message = try c.decodeIfPresent(String.self, forKey: .message)
    type = try c.decodeIfPresent(String.self, forKey: .type)
    source = try c.decodeIfPresent(EventSource.self, forKey: .source)
    firstTimestamp = try c.decodeIfPresent(Date.self, forKey: .firstTimestamp)
    lastTimestamp = try c.decodeIfPresent(Date.self, forKey: .lastTimestamp)
    count = try c.decodeIfPresent(Int.self, forKey: .count)
    eventTime = try c.decodeIfPresent(Date.self, forKey: .eventTime)
    action = try c.decodeIfPresent(String.self, forKey: .action)
    reportingComponent = try c.decodeIfPresent(String.self, forKey: .reportingComponent)
    reportingInstance = try c.decodeIfPresent(String.self, forKey: .reportingInstance)
  }
}
