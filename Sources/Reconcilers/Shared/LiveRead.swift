import KubeClient
import KubeCore
import KubeRuntime

extension KubeClient {
  /// The object as the apiserver has it now, or nil when it is gone or being deleted.
  ///
  /// Reconcilers that start runs from an object's status read it this way instead of from the watch cache: the
  /// cache may not yet hold the controller's own last status write, and deciding on it would start a run twice.
  func liveObject<T: KubeResource>(_ type: T.Type, _ key: ObjectKey) async throws -> T? {
    let object: T
    do {
      object = try await get(type, namespace: key.namespace, name: key.name)
    } catch let e as KubeError where e.isNotFound {
      return nil
    }
    return object.metadata.isDeleting ? nil : object
  }
}

/// The longest requeue delay: a later moment is computed again by the reconcile that runs then.
public let maxRequeueSeconds: Double = 30 * 86_400

/// The requeue delay for a moment `seconds` from now: at least 1 s, at most `maxRequeueSeconds`, so no date in a
/// spec or status (however far, or not finite) traps the conversion to whole milliseconds.
public func requeueDelay(seconds: Double) -> Duration {
  let s = seconds.isNaN ? maxRequeueSeconds : min(max(seconds, 1), maxRequeueSeconds)
  return .milliseconds(Int64(s * 1000))
}
