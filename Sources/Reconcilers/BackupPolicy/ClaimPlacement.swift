import DRAPI
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Synchronization

// RWO placement (issue 15, k8up#319, k8up#978): a ReadWriteOnce claim mounted by a running pod can only be mounted on
// that pod's node, so a backup pod scheduled elsewhere hangs in ContainerCreating (Multi-Attach). The backup
// CronJob's and on-demand Job's pods follow the pod that mounts the claim: a required node affinity for its node and
// its tolerations. Observe (the shared cache of `ClaimUserPod`s) → decide
// (`ClaimPlacement.decide`, pure) → the builders set it on the pod template (`ChildInputs.placement`).

/// A Pod as the placement logic needs it, and nothing more: name, namespace, resourceVersion, node, tolerations, the
/// claims it mounts, phase, whether it is terminating and whether the controller made it. Decoding a Pod into this
/// drops everything else (containers, env, status conditions, managedFields), so the cache of every Pod of the
/// watched namespaces stays small (docs/benchmarks.md: 1,000 policies in 50 MB); a Pod that mounts no claim keeps
/// only its name.
public struct ClaimUserPod: KubeObject, Hashable {
  public var apiVersion: String { "v1" }
  public var kind: String { "Pod" }
  /// Name, namespace and resourceVersion only.
  public var metadata: ObjectMeta
  /// spec.nodeName: unset until the pod is scheduled.
  public var nodeName: String?
  /// spec.tolerations (kept only for a pod that mounts a claim).
  public var tolerations: [Toleration]
  /// The claims of spec.volumes: persistentVolumeClaim.claimName, and the claim of a generic ephemeral volume
  /// (named `<pod>-<volume>`).
  public var claimNames: [String]
  /// status.phase.
  public var phase: String?
  /// metadata.deletionTimestamp is set.
  public var terminating: Bool
  /// Labelled managed-by=botrt-controller: a backup, restore or drill pod, never what placement follows.
  public var managed: Bool

  public init(
    name: String, namespace: String, resourceVersion: String? = nil, nodeName: String? = nil,
    tolerations: [Toleration] = [], claimNames: [String] = [], phase: String? = "Running", terminating: Bool = false,
    managed: Bool = false
  ) {
    self.metadata = ObjectMeta(name: name, namespace: namespace, resourceVersion: resourceVersion)
    self.nodeName = nodeName
    self.tolerations = tolerations
    self.claimNames = claimNames
    self.phase = phase
    self.terminating = terminating
    self.managed = managed
  }

  /// Whether the pod holds its claims now: scheduled to a node and not finished.
  public var holdsClaims: Bool {
    guard let n = nodeName, !n.isEmpty else { return false }
    return phase != "Succeeded" && phase != "Failed"
  }

  /// Whether a change from `old` can change a placement (every field but the resourceVersion).
  public static func placementChanged(_ new: ClaimUserPod, old: ClaimUserPod?) -> Bool {
    guard var old else { return true }
    old.metadata.resourceVersion = new.metadata.resourceVersion
    return old != new
  }

  private enum Keys: String, CodingKey {
    case apiVersion, kind, metadata, spec, status
    case name, namespace, resourceVersion, deletionTimestamp, labels
    case nodeName, tolerations, volumes, phase
    case persistentVolumeClaim, ephemeral, claimName
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: Keys.self)
    metadata = ObjectMeta()
    terminating = false
    managed = false
    if let m = try? c.nestedContainer(keyedBy: Keys.self, forKey: .metadata) {
      metadata.name = try m.decodeIfPresent(String.self, forKey: .name)
      metadata.namespace = try m.decodeIfPresent(String.self, forKey: .namespace)
      metadata.resourceVersion = try m.decodeIfPresent(String.self, forKey: .resourceVersion)
      terminating = try m.contains(.deletionTimestamp) && !m.decodeNil(forKey: .deletionTimestamp)
      let labels = try m.decodeIfPresent([String: String].self, forKey: .labels)
      managed = labels?[ChildLabels.managedBy] == ChildLabels.controllerName
    }
    claimNames = []
    tolerations = []
    nodeName = nil
    if let s = try? c.nestedContainer(keyedBy: Keys.self, forKey: .spec) {
      if var volumes = try? s.nestedUnkeyedContainer(forKey: .volumes) {
        while !volumes.isAtEnd {
          let v = try volumes.nestedContainer(keyedBy: Keys.self)
          if let pvc = try? v.nestedContainer(keyedBy: Keys.self, forKey: .persistentVolumeClaim),
            let name = try pvc.decodeIfPresent(String.self, forKey: .claimName)
          {
            claimNames.append(name)
          } else if v.contains(.ephemeral), let volume = try v.decodeIfPresent(String.self, forKey: .name),
            let pod = metadata.name
          {
            claimNames.append("\(pod)-\(volume)")
          }
        }
      }
      if !claimNames.isEmpty {
        nodeName = try s.decodeIfPresent(String.self, forKey: .nodeName)
        tolerations = try s.decodeIfPresent([Toleration].self, forKey: .tolerations) ?? []
      }
    }
    phase = nil
    if let st = try? c.nestedContainer(keyedBy: Keys.self, forKey: .status) {
      phase = try st.decodeIfPresent(String.self, forKey: .phase)
    }
  }

  /// Encodes the kept fields in the shape of a Pod (decoding it again gives the same value).
  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: Keys.self)
    try c.encode(apiVersion, forKey: .apiVersion)
    try c.encode(kind, forKey: .kind)
    var m = c.nestedContainer(keyedBy: Keys.self, forKey: .metadata)
    try m.encodeIfPresent(metadata.name, forKey: .name)
    try m.encodeIfPresent(metadata.namespace, forKey: .namespace)
    try m.encodeIfPresent(metadata.resourceVersion, forKey: .resourceVersion)
    if terminating { try m.encode("1970-01-01T00:00:00Z", forKey: .deletionTimestamp) }
    if managed { try m.encode([ChildLabels.managedBy: ChildLabels.controllerName], forKey: .labels) }
    var s = c.nestedContainer(keyedBy: Keys.self, forKey: .spec)
    try s.encodeIfPresent(nodeName, forKey: .nodeName)
    if !tolerations.isEmpty { try s.encode(tolerations, forKey: .tolerations) }
    var volumes = s.nestedUnkeyedContainer(forKey: .volumes)
    for name in claimNames {
      var v = volumes.nestedContainer(keyedBy: Keys.self)
      try v.encode(name, forKey: .name)
      var pvc = v.nestedContainer(keyedBy: Keys.self, forKey: .persistentVolumeClaim)
      try pvc.encode(name, forKey: .claimName)
    }
    var st = c.nestedContainer(keyedBy: Keys.self, forKey: .status)
    try st.encodeIfPresent(phase, forKey: .phase)
  }
}

/// Where a PVC-source policy's backup pods must run: the pure decision of RWO placement.
public enum ClaimPlacement {
  /// The node field the affinity matches: the Node's name (`matchFields` on `metadata.name`, as the DaemonSet
  /// controller pins its pods), which is the pod's `spec.nodeName`; no Node has to be read.
  public static let nodeNameField = "metadata.name"

  /// What the backup pod template gets: a required node affinity and tolerations, and the status that says so.
  public struct Decision: Sendable, Hashable {
    public var affinity: Affinity?
    public var tolerations: [Toleration]?
    public var status: BackupPlacementStatus?

    public init(affinity: Affinity? = nil, tolerations: [Toleration]? = nil, status: BackupPlacementStatus? = nil) {
      self.affinity = affinity
      self.tolerations = tolerations
      self.status = status
    }

    /// Anywhere the claim can attach.
    public static let anywhere = Decision()
  }

  /// Whether a claim with these access modes can be mounted on one node only. Unknown modes (the claim could not
  /// be read and none was recorded) count as single-node: following the pod is always safe.
  public static func singleNode(_ accessModes: [String]?) -> Bool {
    guard let modes = accessModes, !modes.isEmpty else { return true }
    if modes.contains("ReadWriteMany") { return false }
    return modes.contains("ReadWriteOnce") || modes.contains("ReadWriteOncePod")
  }

  /// The pods among `pods` that hold `claim` in `namespace` now (scheduled, not finished, not the controller's own).
  public static func users(of claim: String, namespace: String, in pods: [ClaimUserPod]) -> [ClaimUserPod] {
    pods.filter {
      $0.metadata.namespace == namespace && !$0.managed && $0.holdsClaims && $0.claimNames.contains(claim)
    }
  }

  /// The pod the backup follows, or nil when it may run anywhere: among the claim's users of a single-node claim,
  /// a Running pod before a Pending one, a pod that is not terminating before one that is, then by name (while an
  /// application pod moves, the old and the new one can both be listed for a moment).
  public static func followed(
    claim: String, namespace: String, accessModes: [String]?, pods: [ClaimUserPod]
  ) -> ClaimUserPod? {
    guard singleNode(accessModes) else { return nil }
    return users(of: claim, namespace: namespace, in: pods).min { a, b in
      func rank(_ p: ClaimUserPod) -> (Int, Int, String) {
        (p.phase == "Running" ? 0 : 1, p.terminating ? 1 : 0, p.name)
      }
      return rank(a) < rank(b)
    }
  }

  /// The placement of the backup pods of `claim` (in `namespace`, with `accessModes` as the claim has them) given the
  /// pods of the namespace: the followed pod's node, by name. A claim mounted by no running pod, or a ReadWriteMany
  /// or ReadOnlyMany claim, is placed anywhere.
  public static func decide(
    claim: String, namespace: String, accessModes: [String]?, pods: [ClaimUserPod]
  ) -> Decision {
    guard let pod = followed(claim: claim, namespace: namespace, accessModes: accessModes, pods: pods),
      let node = pod.nodeName
    else { return .anywhere }
    let affinity = Affinity(
      nodeAffinity: NodeAffinity(
        required: NodeSelector(nodeSelectorTerms: [
          NodeSelectorTerm(matchFields: [
            NodeSelectorRequirement(key: nodeNameField, operator: "In", values: [node])
          ])
        ])))
    let mode = accessModes?.contains("ReadWriteOncePod") == true ? "ReadWriteOncePod" : "ReadWriteOnce"
    var message = "The backup runs on node \(node), where pod \(pod.name) mounts the \(mode) claim \(claim)."
    if mode == "ReadWriteOncePod" {
      message +=
        " A ReadWriteOncePod claim can be mounted by one pod only: the backup pod waits until \(pod.name) "
        + "releases it."
    }
    return Decision(
      affinity: affinity, tolerations: pod.tolerations.isEmpty ? nil : pod.tolerations,
      status: BackupPlacementStatus(node: node, pod: pod.name, message: message))
  }

  /// Sets the decision on a backup pod template (replacing any affinity and tolerations it had).
  public static func apply(_ d: Decision, to template: inout PodTemplateSpec) {
    template.spec?.affinity = d.affinity
    template.spec?.tolerations = d.tolerations
  }

  /// The policies in `policies` whose source claim `pod` mounts (what a Pod change wakes).
  public static func policies(mountedBy pod: ClaimUserPod, among policies: [BackupPolicy]) -> [ObjectKey] {
    if pod.claimNames.isEmpty || pod.managed { return [] }
    return policies.filter { p in
      guard p.metadata.namespace == pod.metadata.namespace else { return false }
      if let claims = p.spec.source.claims {
        // A multi-claim source: a claim it names or has selected (a newly selected claim wakes it by the claim watch).
        let known = Set((claims.claimNames ?? []) + (p.status?.claims ?? []).map(\.name))
        return pod.claimNames.contains(where: known.contains)
      }
      return SourceClaimRecord.claimName(p).map(pod.claimNames.contains) == true
    }.map(ObjectKey.init)
  }

  /// The policies in `policies` with a multi-claim source in `claim`'s namespace (what a claim change wakes: its
  /// labels may have come into or gone out of a selector's reach).
  public static func policies(selecting claim: PersistentVolumeClaim, among policies: [BackupPolicy]) -> [ObjectKey] {
    policies.filter { $0.metadata.namespace == claim.metadata.namespace && $0.spec.source.claims != nil }
      .map(ObjectKey.init)
  }

  /// Whether a claim change can change a multi-claim selection or its record: created or deleted, or its labels,
  /// deletion or spec changed (not its status).
  public static func claimChanged(_ new: PersistentVolumeClaim, old: PersistentVolumeClaim?) -> Bool {
    guard let old else { return true }
    return old.metadata.labels != new.metadata.labels || old.metadata.isDeleting != new.metadata.isDeleting
      || old.spec != new.spec
  }
}

extension InformerRegistry {
  /// The one informer of every Pod in `namespace` (nil: all namespaces), each kept as a `ClaimUserPod` (the fields
  /// RWO placement reads, nothing else), shared by every controller that places pods next to a claim.
  /// A view of the one Pod watch (`all(.pods)`), which keeps of the Pods of `namespace` (nil: all) the fields
  /// RWO placement reads (`ClaimUserPod.part(of:)`).
  public func claimUsers(namespace: String?) -> SharedInformer<ClaimUserPod> {
    let parent = all(.pods)
    if keepRule(.pods).keepParts(namespace: namespace) { parent.relist() }
    return shared("pods: claim users in \(namespace ?? "all namespaces")") {
      parent.view(name: "pods in \(namespace ?? "all namespaces") as ClaimUserPod") { o in
        guard namespace == nil || o.body[path: "metadata", "namespace"]?.stringValue == namespace else { return nil }
        return try? o.decode(as: ClaimUserPod.self)
      }
    }
  }
}

extension ClaimUserPod {
  /// What the one Pod watch keeps of a Pod that is neither the controller's nor in a namespace kept whole: the
  /// fields RWO placement reads, in the shape of a Pod (nil: not a Pod).
  @Sendable static func part(of pod: Unstructured) -> Unstructured? {
    guard let user = try? pod.decode(as: ClaimUserPod.self), let body = try? JSONValue(encoding: user) else {
      return nil
    }
    return Unstructured(body)
  }
}

/// The cache of `ClaimUserPod`s the BackupPolicy reconciler places backups from.
public final class ClaimUserCache: Sendable {
  let store: Store<ClaimUserPod>?
  private let waitedOut = Mutex(false)

  public init(_ store: Store<ClaimUserPod>?) { self.store = store }

  /// No cache: no placement (every backup runs wherever its claim can attach).
  public static var none: ClaimUserCache { ClaimUserCache(nil) }

  /// The cached pods of `namespace` once the first list arrived (waiting for it up to `timeout` once: a watch that
  /// cannot start leaves placement out rather than holding every reconcile); nil when there is no filled cache.
  func pods(namespace: String, timeout: Duration = .seconds(30)) async -> [ClaimUserPod]? {
    guard let store else { return nil }
    if !store.isReady && !waitedOut.withLock({ $0 }) {
      await withTaskGroup(of: Void.self) { group in
        group.addTask { await store.waitUntilReady() }
        group.addTask { try? await Task.sleep(for: timeout) }
        await group.next()
        group.cancelAll()
      }
      if !store.isReady { waitedOut.withLock { $0 = true } }
    }
    return store.isReady ? store.list(namespace: namespace) : nil
  }
}

extension BackupPolicyReconciler {
  /// Observes where the policy's backup pods must run (RWO placement): the pods that mount its source claim (from
  /// the shared cache) and the claim's access modes, as recorded in status.sourceClaim, else from `claim` (the
  /// source claim observe read once for both). `.anywhere` for a command source, a claim nobody mounts, or a
  /// multi-node claim.
  func observePlacement(_ policy: BackupPolicy, claim live: PersistentVolumeClaim?) async -> ClaimPlacement.Decision {
    guard let claim = SourceClaimRecord.claimName(policy) else { return .anywhere }
    let ns = policy.metadata.namespace ?? "default"
    var recorded: [String]? = nil
    if let r = policy.status?.sourceClaim, r.name == claim, r.namespace == ns { recorded = r.accessModes }
    return await observePlacement(policy, claimName: claim, live: live, recordedModes: recorded)
  }

  /// The placement of the backup pods of claim `claim` of the policy's namespace (a pvc source's, or one of a
  /// multi-claim source's): the recorded access modes win over the live claim's.
  func observePlacement(
    _ policy: BackupPolicy, claimName claim: String, live: PersistentVolumeClaim?, recordedModes: [String]?
  ) async -> ClaimPlacement.Decision {
    let ns = policy.metadata.namespace ?? "default"
    guard let pods = await claimUsers.pods(namespace: ns),
      !ClaimPlacement.users(of: claim, namespace: ns, in: pods).isEmpty
    else { return .anywhere }
    var modes = live?.spec?.accessModes
    if let m = recordedModes { modes = m }
    return ClaimPlacement.decide(claim: claim, namespace: ns, accessModes: modes, pods: pods)
  }
}
