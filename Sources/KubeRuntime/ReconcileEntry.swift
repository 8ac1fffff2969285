import Foundation
import KubeClient
import KubeCore
import Logging
import Synchronization

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
///   (deciding on it would start a run twice). A 404 is gone. With `ownWrites`, the cached object is used instead
///   when the cache is safe to trust (`OwnWrites.readsCache(_:lastOwnWrite:mustReadLive:)`): after a restart, a reconcile of
///   an unchanged object then makes no request.
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
  /// This process's writes to the objects; nil: every reconcile reads its object live.
  let ownWrites: OwnWrites?
  /// Whether `object` (as cached) must be read live whatever `ownWrites` says, e.g. a pending trigger.
  let mustReadLive: @Sendable (Object) -> Bool

  /// `ownWrites`: read the object from the cache when that is safe (`OwnWrites.readsCache`), with `mustReadLive` naming the
  /// objects that are always read live.
  public init(
    client: KubeClient, finalizer: String? = nil, fieldManager: String, logger: Logger, ownWrites: OwnWrites? = nil,
    mustReadLive: @escaping @Sendable (Object) -> Bool = { _ in false }
  ) {
    self.client = client
    self.finalizer = finalizer
    self.fieldManager = fieldManager
    self.logger = logger
    self.ownWrites = ownWrites
    self.mustReadLive = mustReadLive
  }

  /// Runs one reconcile of `key`; `gone` is called when the object no longer exists.
  public func reconcile(
    _ key: ObjectKey, _ store: Store<Object>, gone: () -> Void = {},
    apply: (Object) async throws -> ReconcileResult,
    cleanup: (Object) async throws -> CleanupOutcome = { _ in .done(.awaitChange) }
  ) async throws -> ReconcileResult {
    // Without a finalizer there is nothing to do for an object being deleted, so it is not even read.
    guard let cached = store.get(key) else {
      ownWrites?.forget(key)
      gone()
      return .awaitChange
    }
    if finalizer == nil && cached.metadata.isDeleting { return .awaitChange }
    do {
      let object: Object
      if let ownWrites,
        OwnWrites.readsCache(cached.metadata, lastOwnWrite: ownWrites.last(key), mustReadLive: mustReadLive(cached))
      {
        object = cached
      } else {
        do {
          object = try await client.get(Object.self, namespace: key.namespace, name: key.name)
        } catch let e as KubeError where e.isNotFound {
          gone()
          return .awaitChange
        }
      }
      guard let finalizer else { return object.metadata.isDeleting ? .awaitChange : try await apply(object) }
      let ownWrites = self.ownWrites
      let patcher = KubeJSONPatcher(client: client, resource: Object.resource) { key, version in
        ownWrites?.record(key, resourceVersion: version)
      }
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
    // A write that fails may still have been made (a timeout): until one returns, the version is unknown.
    ownWrites?.record(ObjectKey(object), resourceVersion: nil)
    let written = try await client.patch(
      Object.resource, namespace: object.metadata.namespace, name: object.name, subresource: "status",
      .merge(["status": patch]), options: WriteOptions(fieldManager: fieldManager), as: JSONValue.self)
    ownWrites?.record(ObjectKey(object), resourceVersion: written[path: "metadata", "resourceVersion"]?.stringValue)
  }
}

/// The resourceVersion of this process's last write to each object of one kind, and when a reconcile may therefore
/// start from the cached object (`readsCache`).
public final class OwnWrites: Sendable {
  private let versions = Mutex<[ObjectKey: String]>([:])

  public init() {}

  /// Whether a reconcile may start from the cached object instead of reading it live: the object is not being
  /// deleted (cleanup decides from the live object), nothing demands a live read (`mustReadLive`, e.g. a pending
  /// trigger: a run must never start twice), and the cache shows everything this process wrote to the object since
  /// it started: it wrote nothing (`lastOwnWrite` nil; what the cache was listed with is the apiserver's state after
  /// the previous process stopped writing), or the cached resourceVersion is the one its last write produced
  /// (`lastOwnWrite` empty: a write whose resulting version is unknown, so the object is read live).
  public static func readsCache(_ cached: ObjectMeta, lastOwnWrite: String?, mustReadLive: Bool) -> Bool {
    if cached.isDeleting || mustReadLive { return false }
    guard let last = lastOwnWrite else { return true }
    return !last.isEmpty && last == cached.resourceVersion
  }

  /// Records a write to `key` that produced `resourceVersion` (nil: not known, the object is then read live).
  public func record(_ key: ObjectKey, resourceVersion: String?) {
    versions.withLock { $0[key] = resourceVersion ?? "" }
  }

  /// The version of the last write to `key` since this process started ("" when unknown), or nil when it wrote none.
  public func last(_ key: ObjectKey) -> String? { versions.withLock { $0[key] } }

  /// Forgets a deleted object.
  public func forget(_ key: ObjectKey) { versions.withLock { $0[key] = nil } }
}
