import KubeClient
import KubeCore
import KubeRuntime

/// A generated child's name is taken by an object whose owner labels name another owner (or none): the controller
/// leaves that object alone and applies nothing of the owner's children.
public struct ChildNameConflict: Error, Sendable, Hashable, CustomStringConvertible {
  /// "Kind namespace/name" of the object in the way.
  public var child: String
  /// Who the object's labels say owns it, e.g. "BackupPolicy shop-prod/orders", or "no BotRT owner".
  public var owner: String

  public init(child: String, owner: String) {
    self.child = child
    self.owner = owner
  }

  public var description: String {
    "\(child) already exists and belongs to \(owner); the controller does not overwrite another owner's objects. "
      + "Rename this resource, or have a cluster admin delete \(child) if it is stale"
  }
}

/// Who owns a generated object, read from its labels, and whether the controller may apply over it.
///
/// Children of every tenant share namespaces (the backup namespace; namespaces are cluster-wide), and server-side
/// apply with `force` takes over any object of the same name. So before a child is applied, the object of that
/// name, if one exists, must carry the same owner labels as the child: the owner's namespace and name. An object
/// with the same namespace and name but another `policy-uid` belongs to an earlier incarnation of the same
/// resource (whose finalizer was removed by hand): it is the same tenant, so it is adopted rather than left to
/// block the new one forever.
public enum ChildOwnership {
  /// The label pairs (namespace, name) that identify an owner, with the owner's kind.
  static let ownerKeys: [(namespace: String, name: String, kind: String)] = [
    (ChildLabels.policyNamespace, ChildLabels.policyName, "BackupPolicy"),
    (DrillLogic.drillNamespaceLabel, DrillLogic.drillNameLabel, "DRDrill"),
    (RecoveryPlanLabels.planNamespace, RecoveryPlanLabels.planName, "RecoveryPlan"),
  ]

  /// The owner an object's labels name ("BackupPolicy ns/name"), or "no BotRT owner".
  public static func ownerText(_ labels: [String: String]) -> String {
    for k in ownerKeys {
      if let ns = labels[k.namespace], let name = labels[k.name] { return "\(k.kind) \(ns)/\(name)" }
    }
    return "no BotRT owner (its labels name none)"
  }

  /// The labels of a desired child's body.
  static func labels(_ c: DesiredChild) -> [String: String] {
    var out: [String: String] = [:]
    for (k, v) in c.body[path: "metadata", "labels"]?.objectValue ?? [:] {
      if let s = v.stringValue { out[k] = s }
    }
    return out
  }

  /// Nil when `child` may be applied: nothing of its name exists (`existingLabels` nil), it is shared by all owners,
  /// or the existing object's owner labels name the child's owner. Otherwise the conflict to report.
  public static func conflict(_ child: DesiredChild, existingLabels: [String: String]?) -> ChildNameConflict? {
    guard let existing = existingLabels, !child.shared else { return nil }
    let wanted = labels(child)
    let keys = ownerKeys.filter { wanted[$0.namespace] != nil || wanted[$0.name] != nil }
    if keys.isEmpty { return nil }
    for k in keys where existing[k.namespace] != wanted[k.namespace] || existing[k.name] != wanted[k.name] {
      return ChildNameConflict(child: child.displayName, owner: ownerText(existing))
    }
    return nil
  }

  /// The condition reason of a refused apply.
  public static let reason = "ChildNameConflict"

  /// The Ready problem and the Warning Event of refused children.
  public static func refusal(_ conflicts: [ChildNameConflict]) -> (problem: PolicyProblem, event: PlannedEvent) {
    let message =
      conflicts.map(\.description).joined(separator: "; ")
      + ". None of this resource's children were applied."
    return (
      PolicyProblem(reason: reason, message: message), PlannedEvent(warning: true, reason: reason, message: message)
    )
  }

  /// Reads the objects `children` name and returns the conflicts (shared children are not read).
  public static func conflicts(_ children: [DesiredChild], existing: ExistingLabels) async throws
    -> [ChildNameConflict]
  {
    var out: [ChildNameConflict] = []
    for c in children where !c.shared {
      if let x = conflict(c, existingLabels: try await existing.labels(of: c)) { out.append(x) }
    }
    return out
  }
}

/// Where `ChildOwnership` reads the labels of the object a child names: the shared cache of a kind the controller
/// already watches when the object is in it, else the apiserver (metadata only).
///
/// Only a cache hit is trusted: the caches of the controller's own Jobs and NetworkPolicies are label-selected, so an
/// object missing from them may still exist without the controller's labels (another owner's), and is read live. At
/// steady state the children exist and are cached, so the ownership check makes no request for these kinds.
public struct ExistingLabels: Sendable {
  let client: KubeClient
  let caches: [ResourceDescriptor: Store<Unstructured>]

  /// `caches`: the caches to look in first, by the resource they hold.
  public init(client: KubeClient, caches: [ResourceDescriptor: Store<Unstructured>] = [:]) {
    self.client = client
    self.caches = caches
  }

  /// The labels of the object `child` names as it is now, or nil when there is none.
  public func labels(of child: DesiredChild) async throws -> [String: String]? {
    if let cached = caches[child.resource]?.get(ObjectKey(namespace: child.namespace, name: child.name)) {
      return cached.metadata.labels ?? [:]
    }
    do {
      let o = try await client.get(
        child.resource, namespace: child.namespace, name: child.name, as: Unstructured.self, metadataOnly: true)
      return o.metadata.labels ?? [:]
    } catch let e as KubeError where e.isNotFound {
      return nil
    }
  }
}
