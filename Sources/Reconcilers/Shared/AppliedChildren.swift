import Foundation
import KubeCore
import Synchronization

/// Which children are already applied as desired, so that a reconcile does not apply them again: a second reconcile
/// of a policy, or a restarted controller, writes nothing to an object that is already what the controller wants.
///
/// Every applied child carries the SHA-256 of the body the controller applied (`annotation`). A child is applied
/// again when its desired body's hash differs from the annotation of the cached object, when it is not cached (new,
/// deleted, or the cache is not filled yet), or when someone else changed it since this process applied or first
/// saw it: its `metadata.generation` (kinds with a spec) or `resourceVersion` (the others) moved. A restarted
/// controller trusts the annotation once: what changed while it was down is restored at the next change of the
/// desired body (the isolation guard restores NetworkPolicies at once, whatever the reason).
///
/// The hash of a Secret copy covers its data; it is on that copy only, which nobody can read without being able to
/// read the data itself.
public final class AppliedChildren: Sendable {
  /// The annotation holding the hash of the applied body.
  public static let annotation = "dr.botrt.io/applied-hash"

  /// child key -> (hash applied, generation or resourceVersion seen after it).
  private let seen = Mutex<[String: (hash: String, marker: String)]>([:])

  public init() {}

  /// The hex SHA-256 of `body` with sorted keys (the annotation's value).
  public static func hash(_ body: JSONValue) -> String {
    let data = (try? body.jsonData(sortedKeys: true)) ?? Data()
    return hexEncode(SHA256Digest.hash(data))
  }

  /// `body` with the annotation set to `hash`.
  public static func annotated(_ body: JSONValue, hash: String) -> JSONValue {
    var b = body
    var meta = b["metadata"]?.objectValue ?? [:]
    var annotations = meta["annotations"]?.objectValue ?? [:]
    annotations[annotation] = .string(hash)
    meta["annotations"] = .object(annotations)
    b["metadata"] = .object(meta)
    return b
  }

  /// Whether `child` needs no apply: `cached` (the object as the shared cache holds it) carries `hash` and was not
  /// changed by anyone else since this process applied or first saw it.
  public func isCurrent(_ child: DesiredChild, hash: String, cached: Unstructured?) -> Bool {
    guard let cached, cached.body[path: "metadata", "annotations", Self.annotation]?.stringValue == hash else {
      return false
    }
    let marker = Self.marker(cached, child.resource)
    return seen.withLock { s in
      if let last = s[Self.key(child)] { return last.hash == hash && last.marker == marker }
      s[Self.key(child)] = (hash, marker)
      return true
    }
  }

  /// Records what the apply of `child` with `hash` returned.
  public func record(_ child: DesiredChild, hash: String, applied: Unstructured) {
    seen.withLock { $0[Self.key(child)] = (hash, Self.marker(applied, child.resource)) }
  }

  /// Forgets a deleted child.
  public func forget(_ resource: ResourceDescriptor, namespace: String?, name: String) {
    seen.withLock { $0[Self.key(resource, namespace, name)] = nil }
  }

  static func key(_ c: DesiredChild) -> String { key(c.resource, c.namespace, c.name) }

  static func key(_ resource: ResourceDescriptor, _ namespace: String?, _ name: String) -> String {
    "\(resource.plural)/\(namespace ?? "")/\(name)"
  }

  /// What moves when anyone changes the object's desired state: the generation where the kind keeps one (status
  /// writes leave it alone), else the resourceVersion.
  ///
  /// A ServiceAccount has neither a generation nor a spec, and Kubernetes' token controller (before 1.24) adds its
  /// token Secret to `secrets` right after it is created, which moves the resourceVersion: compared by resourceVersion,
  /// every new ServiceAccount was applied a second time, and all of them again after a relist. Its marker is the
  /// metadata someone else could change (labels, annotations, owners); the one field of its body the controller
  /// sets, `automountServiceAccountToken: false`, every Pod it creates sets again itself.
  static func marker(_ o: Unstructured, _ resource: ResourceDescriptor) -> String {
    if let g = o.body[path: "metadata", "generation"]?.intValue { return "g\(g)" }
    if resource == .serviceAccounts {
      let meta = o.body["metadata"]
      let owned: JSONValue = [
        "labels": meta?["labels"] ?? .null, "annotations": meta?["annotations"] ?? .null,
        "ownerReferences": meta?["ownerReferences"] ?? .null,
      ]
      return "m" + hash(owned)
    }
    return "rv\(o.body[path: "metadata", "resourceVersion"]?.stringValue ?? "")"
  }
}
