import Foundation
import KubeClient
import KubeCore
import Logging

/// How a finalizer's cleanup step ended.
public enum CleanupOutcome: Sendable, Hashable {
  /// Everything the object owned outside Kubernetes' garbage collection is gone: the finalizer is removed.
  case done(ReconcileResult)
  /// Still under way (e.g. a deletion Job runs): the finalizer stays, and the object is looked at again as the
  /// result says.
  case waiting(ReconcileResult)
}

/// The one reconcile entry of a primary kind, shared by its reconcilers: fetch, finalizer, failure, status.
///
/// - Fetch: a key missing from the cache is gone. Otherwise the object is read from the apiserver, not from the
///   cache: runs start from its status, and the cache may not hold the controller's own last status write yet
///   (deciding on it would start a run twice). A 404 is gone.
/// - Finalizer: with one, `Finalizer.reconcile` adds it, hands a live object to `apply`, and a deleting one to
///   `cleanup`, removing the finalizer once cleanup is done. Without one, an object being deleted is left alone.
/// - Failure: a 404 while the object turns out to be gone (its finalizer was released meanwhile) is the end, not a
///   failure; any other error is logged and rethrown, so the controller retries with backoff (or, for a
///   `TerminalReconcileError`, waits for a change).
/// - Status: `writeStatus` writes what changed, as a merge patch through the status subresource.
public struct ReconcileEntry<Object: StatusResource>: Sendable {
  public let client: KubeClient
  /// The finalizer guarding the cleanup; nil when the kind needs none.
  public let finalizer: String?
  /// The field manager of status writes.
  public let fieldManager: String
  let logger: Logger

  public init(client: KubeClient, finalizer: String? = nil, fieldManager: String, logger: Logger) {
    self.client = client
    self.finalizer = finalizer
    self.fieldManager = fieldManager
    self.logger = logger
  }

  /// Runs one reconcile of `key`; `gone` is called when the object no longer exists.
  public func reconcile(
    _ key: ObjectKey, _ store: Store<Object>, gone: () -> Void = {},
    apply: (Object) async throws -> ReconcileResult,
    cleanup: (Object) async throws -> CleanupOutcome = { _ in .done(.awaitChange) }
  ) async throws -> ReconcileResult {
    // Without a finalizer there is nothing to do for an object being deleted, so it is not even read.
    guard let cached = store.get(key) else {
      gone()
      return .awaitChange
    }
    if finalizer == nil && cached.metadata.isDeleting { return .awaitChange }
    do {
      let object: Object
      do {
        object = try await client.get(Object.self, namespace: key.namespace, name: key.name)
      } catch let e as KubeError where e.isNotFound {
        gone()
        return .awaitChange
      }
      guard let finalizer else { return object.metadata.isDeleting ? .awaitChange : try await apply(object) }
      let patcher = KubeJSONPatcher(client: client, resource: Object.resource)
      if object.metadata.isDeleting, object.metadata.hasFinalizer(finalizer) {
        switch try await cleanup(object) {
        case .waiting(let result): return result
        case .done(let result):
          return try await Finalizer.reconcile(object, finalizer: finalizer, patcher: patcher) { _ in result }
        }
      }
      return try await Finalizer.reconcile(object, finalizer: finalizer, patcher: patcher) { event in
        switch event {
        case .apply(let o): return try await apply(o)
        case .cleanup: return .awaitChange
        }
      }
    } catch {
      if let e = error as? KubeError, e.isNotFound, await isGone(key) {
        gone()
        return .awaitChange
      }
      logger.warning(
        "reconcile failed", metadata: ["object": "\(Object.resource.kind) \(key)", "error": "\(error)"])
      throw error
    }
  }

  /// Whether the object no longer exists on the apiserver.
  func isGone(_ key: ObjectKey) async -> Bool {
    do {
      _ = try await client.get(Object.self, namespace: key.namespace, name: key.name)
      return false
    } catch let e as KubeError where e.isNotFound {
      return true
    } catch {
      return false
    }
  }

  /// Writes `status` through the status subresource as a merge patch of what changed since the status `object` was
  /// read with; nothing when nothing changed.
  public func writeStatus(_ object: Object, _ status: Object.Status) async throws {
    if status == object.status { return }
    let before = try object.status.map { try JSONValue(encoding: $0) }
    let patch = mergePatch(from: before, to: try JSONValue(encoding: status))
    _ = try await client.patch(
      Object.resource, namespace: object.metadata.namespace, name: object.name, subresource: "status",
      .merge(["status": patch]), options: WriteOptions(fieldManager: fieldManager), as: JSONValue.self)
  }
}
