import KubeClient
import KubeCore
import KubeRuntime
import Synchronization

/// The Secrets the policies reference, read from the apiserver once per resourceVersion.
///
/// The controller watches the Secrets of the watched namespaces as metadata only (names, labels and resourceVersions,
/// never their data). A reconcile that needs a Secret's content (to copy it, or to check its keys) asks that cache
/// for the Secret's resourceVersion and reads the Secret live only when this process does not hold that version yet:
/// policies sharing a Secret read it once, and a restarted controller reads each Secret once instead of once per
/// policy (hack/bench-controller.sh: 2,000 of the 3,032 requests of a restart with 1,000 policies).
///
/// Only referenced Secrets are held, at most `limit` of them (past it the holding starts over), never a copy the
/// controller made: holding the copies with their data cost about 100 MB at 1,000 policies. A Secret absent from the
/// metadata cache (not listed yet, or just created) is read live.
public final class SourceSecrets: Sendable {
  let client: KubeClient
  /// The metadata cache of the watched namespaces' Secrets; nil: every read is live and nothing is held.
  let versions: Store<Unstructured>?
  let limit: Int
  private let held = Mutex<[ObjectKey: Secret]>([:])

  public init(client: KubeClient, versions: Store<Unstructured>?, limit: Int = 2048) {
    self.client = client
    self.versions = versions
    self.limit = limit
  }

  /// Whether `held` may stand for the Secret the metadata cache shows as `current` (its resourceVersion).
  public static func isCurrent(_ held: Secret?, current: String?) -> Bool {
    guard let held, let current, !current.isEmpty else { return false }
    return held.metadata.resourceVersion == current
  }

  /// The Secret `name` of `namespace`, or nil when it does not exist.
  public func get(namespace: String, name: String) async throws -> Secret? {
    let key = ObjectKey(namespace: namespace, name: name)
    if let versions, versions.isReady {
      let current = versions.get(key)?.body[path: "metadata", "resourceVersion"]?.stringValue
      if let held = held.withLock({ $0[key] }), Self.isCurrent(held, current: current) { return held }
    }
    do {
      let secret = try await client.get(Secret.self, namespace: namespace, name: name)
      if versions != nil {
        held.withLock {
          if $0.count >= limit { $0.removeAll() }
          $0[key] = secret
        }
      }
      return secret
    } catch let e as KubeError where e.isNotFound {
      _ = held.withLock { $0.removeValue(forKey: key) }
      return nil
    }
  }
}
