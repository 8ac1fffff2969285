import Foundation
import KubeClient
import KubeCore
import Synchronization

extension KubeError: GoneClassifiable {
  public var isGoneError: Bool { isGone }
}

/// A `WatchSource` over KubeClient for one collection (a resource in one namespace, or all namespaces).
public struct KubeWatchSource<Object: KubeObject>: WatchSource {
  public let client: KubeClient
  public let resource: ResourceDescriptor
  /// nil: all namespaces (or a cluster-scoped resource).
  public let namespace: String?
  /// List and watch PartialObjectMetadata only (no spec, data or status): e.g. Secrets without their data.
  public let metadataOnly: Bool
  /// Leave `metadata.managedFields` out of the objects (nil: the client's setting).
  public let stripManagedFields: Bool?

  public init(
    client: KubeClient, resource: ResourceDescriptor, namespace: String?, as type: Object.Type = Object.self,
    metadataOnly: Bool = false, stripManagedFields: Bool? = nil
  ) {
    self.client = client
    self.resource = resource
    self.namespace = namespace
    self.metadataOnly = metadataOnly
    self.stripManagedFields = stripManagedFields
  }

  public var resourceName: String { resource.description }

  public func list(_ options: ListOptions) async throws -> KubeList<Object> {
    try await client.list(
      resource, namespace: namespace, options: options, as: Object.self, metadataOnly: metadataOnly,
      stripManagedFields: stripManagedFields)
  }

  public func watch(_ options: ListOptions) async throws -> WatchEventStream<Object> {
    let stream = try await client.watch(
      resource, namespace: namespace, options: options, as: Object.self, metadataOnly: metadataOnly,
      stripManagedFields: stripManagedFields)
    let box = IteratorBox(stream.makeAsyncIterator())
    return WatchEventStream(next: { try await box.next() }, cancel: { box.drop() })
  }
}

extension KubeWatchSource where Object: KubeResource {
  /// A source for a typed resource.
  public init(client: KubeClient, namespace: String?, as type: Object.Type = Object.self) {
    self.init(client: client, resource: Object.resource, namespace: namespace)
  }
}

/// Holds a stream iterator so a `@Sendable` closure can pull from it; one consumer at a time (the watcher).
final class IteratorBox<Element: Sendable>: @unchecked Sendable {
  private var iterator: AsyncThrowingStream<Element, any Error>.AsyncIterator?

  init(_ iterator: AsyncThrowingStream<Element, any Error>.AsyncIterator) { self.iterator = iterator }

  func next() async throws -> Element? {
    guard var it = iterator else { return nil }
    let e = try await it.next()
    iterator = it
    return e
  }

  /// Releases the iterator (and with it the HTTP transfer).
  func drop() { iterator = nil }
}

/// `LeaseAPI` over KubeClient.
public struct KubeLeaseAPI: LeaseAPI {
  public let client: KubeClient
  public init(client: KubeClient) { self.client = client }

  public func get(namespace: String, name: String) async throws -> Lease? {
    do {
      return try await client.get(Lease.self, namespace: namespace, name: name)
    } catch let e as KubeError where e.isNotFound {
      return nil
    }
  }

  public func create(_ lease: Lease) async throws -> Lease {
    do {
      return try await client.create(lease)
    } catch let e as KubeError where e.isAlreadyExists || e.isConflict {
      throw LeaseConflict(lease: "\(lease.metadata.namespace ?? "")/\(lease.name)")
    }
  }

  public func update(_ lease: Lease) async throws -> Lease {
    do {
      return try await client.update(lease)
    } catch let e as KubeError where e.isConflict {
      throw LeaseConflict(lease: "\(lease.metadata.namespace ?? "")/\(lease.name)")
    }
  }
}

/// `EventSink` over KubeClient (core/v1 events).
public struct KubeEventSink: EventSink {
  public let client: KubeClient
  public init(client: KubeClient) { self.client = client }

  public func create(_ event: Event) async throws -> Event { try await client.create(event) }

  public func updateCount(namespace: String, name: String, count: Int, lastTimestamp: Date, message: String)
    async throws
  {
    let patch: JSONValue = [
      "count": .int(Int64(count)), "lastTimestamp": .string(KubeJSON.formatDate(lastTimestamp).prefix(19) + "Z"),
      "message": .string(message),
    ]
    _ = try await client.patch(Event.self, namespace: namespace, name: name, .merge(patch))
  }
}

/// `JSONPatcher` over KubeClient for one resource (used by `Finalizer`).
public struct KubeJSONPatcher: JSONPatcher {
  public let client: KubeClient
  public let resource: ResourceDescriptor
  /// Told of each patch before it is sent (nil) and the resourceVersion it produced (`OwnWrites`).
  let written: (@Sendable (ObjectKey, String?) -> Void)?

  public init(
    client: KubeClient, resource: ResourceDescriptor, written: (@Sendable (ObjectKey, String?) -> Void)? = nil
  ) {
    self.client = client
    self.resource = resource
    self.written = written
  }

  public func jsonPatch(namespace: String?, name: String, _ operations: [JSONPatchOperation]) async throws {
    let key = ObjectKey(namespace: namespace, name: name)
    // Unknown until the patch returns: a failed patch may still have been made.
    written?(key, nil)
    let o = try await client.patch(resource, namespace: namespace, name: name, .json(operations), as: JSONValue.self)
    written?(key, o[path: "metadata", "resourceVersion"]?.stringValue)
  }
}
