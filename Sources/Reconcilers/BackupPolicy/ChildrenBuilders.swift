import DRAPI
import EngineContract
import Foundation
import KubeCore

/// Settings of the controller that shape every child (found at start-up: flags and discovery).
public struct ControllerSettings: Sendable, Hashable {
  /// Namespace of the backup Jobs (default botrt-backup); a policy's spec.backupNamespace overrides it.
  public var backupNamespace: String
  /// Image with the botrt-engine executable.
  public var engineImage: String
  /// "batch/v1" where served, else "batch/v1beta1".
  public var cronJobAPIVersion: String
  /// Whether crd.projectcalico.org/v1 globalnetworkpolicies is served.
  public var calicoServed: Bool
  /// Path of the engine inside the engine image.
  public var enginePath: String
  /// The non-root user and group the pods run as.
  public var runAsUser: Int64
  /// Egress destinations the administrator declares (`--egress`): what NetworkPolicies cannot name by host.
  public var egress: [EgressDestination]
  /// Default and maximum container resources (`--default-requests`, `--default-limits`, `--max-resources`).
  public var resourceBounds: ResourceBounds
  /// `--restore-only`: a disaster recovery cluster's controller, on which every policy is restore-only (as with
  /// spec.mode RestoreOnly).
  public var restoreOnly: Bool

  public init(
    backupNamespace: String = "botrt-backup", engineImage: String, cronJobAPIVersion: String = "batch/v1",
    calicoServed: Bool = false, enginePath: String = "/usr/local/bin/botrt-engine", runAsUser: Int64 = 65532,
    egress: [EgressDestination] = [], resourceBounds: ResourceBounds = ResourceBounds(), restoreOnly: Bool = false
  ) {
    self.restoreOnly = restoreOnly
    self.egress = egress
    self.resourceBounds = resourceBounds
    self.backupNamespace = backupNamespace
    self.engineImage = engineImage
    self.cronJobAPIVersion = cronJobAPIVersion
    self.calicoServed = calicoServed
    self.enginePath = enginePath
    self.runAsUser = runAsUser
  }
}

/// One object the controller wants to exist, ready for server-side apply.
public struct DesiredChild: Sendable, Hashable {
  /// REST identity.
  public var resource: ResourceDescriptor
  /// Namespace (nil for cluster-scoped objects).
  public var namespace: String?
  /// Object name.
  public var name: String
  /// The full apply body (apiVersion, kind, metadata, spec ...).
  public var body: JSONValue
  /// Shared by all policies (the namespace, its common NetworkPolicies, the Calico policy): never removed per policy.
  public var shared: Bool

  public init(resource: ResourceDescriptor, namespace: String?, name: String, body: JSONValue, shared: Bool = false) {
    self.resource = resource
    self.namespace = namespace
    self.name = name
    self.body = body
    self.shared = shared
  }

  /// A typed object to apply, as its JSON.
  public init<T: KubeObject & KubeStruct>(resource: ResourceDescriptor, object: T, shared: Bool = false) {
    self.init(
      resource: resource, namespace: object.metadata.namespace, name: object.name, body: object.json, shared: shared)
  }

  /// "kind namespace/name" for logs and messages.
  public var displayName: String { "\(resource.kind) \(namespace.map { "\($0)/" } ?? "")\(name)" }
}

/// Labels and names shared by all children.
public enum ChildLabels {
  /// Namespace of the owning policy.
  public static let policyNamespace = "dr.botrt.io/policy-namespace"
  /// Name of the owning policy.
  public static let policyName = "dr.botrt.io/policy-name"
  /// UID of the owning policy.
  public static let policyUID = "dr.botrt.io/policy-uid"
  /// What the child does: backup, prune, on-demand, isolation, credentials.
  public static let component = "dr.botrt.io/component"
  /// The run token an on-demand Job was created for (annotation).
  public static let runToken = "dr.botrt.io/run-token"
  /// app.kubernetes.io/managed-by.
  public static let managedBy = "app.kubernetes.io/managed-by"
  /// The controller's name (field manager and managed-by value).
  public static let controllerName = "botrt-controller"
  /// The label selector of everything one policy owns.
  public static func selector(namespace: String, name: String) -> String {
    "\(policyNamespace)=\(namespace),\(policyName)=\(name)"
  }
  /// The same selector as labels to match (`ManagedCaches.objects`).
  public static func owner(_ namespace: String, _ name: String) -> [String: String] {
    [policyNamespace: namespace, policyName: name]
  }
}

/// Resource descriptors of the kinds the controller creates.
public enum ChildResources {
  public static let serviceAccounts = ResourceDescriptor.serviceAccounts
  public static let roles = ResourceDescriptor(
    group: "rbac.authorization.k8s.io", version: "v1", plural: "roles", kind: "Role", namespaced: true)
  public static let roleBindings = ResourceDescriptor(
    group: "rbac.authorization.k8s.io", version: "v1", plural: "rolebindings", kind: "RoleBinding", namespaced: true)
  public static let networkPolicies = ResourceDescriptor.networkPolicies
  public static let secrets = ResourceDescriptor.secrets
  public static let namespaces = ResourceDescriptor.namespaces
  public static let jobs = ResourceDescriptor.jobs
  public static let pods = ResourceDescriptor.pods
  /// The scratch claim a drill restores into.
  public static let persistentVolumeClaims = ResourceDescriptor.persistentVolumeClaims
  public static let globalNetworkPolicies = ResourceDescriptor(
    group: "crd.projectcalico.org", version: "v1", plural: "globalnetworkpolicies", kind: "GlobalNetworkPolicy",
    namespaced: false)
  /// CronJobs in batch/v1 or batch/v1beta1.
  public static func cronJobs(apiVersion: String) -> ResourceDescriptor {
    ResourceDescriptor(
      group: "batch", version: apiVersion == "batch/v1beta1" ? "v1beta1" : "v1", plural: "cronjobs", kind: "CronJob",
      namespaced: true)
  }
}

/// Short deterministic hash (FNV-1a, 32 bit, 8 hex digits) that tells apart the children of ONE owner (run and rotation
/// tokens, replicas and snapshots), after the owner's `nameHash`. Not collision-resistant: never use it for an owner's
/// identity in a namespace other owners share (a colliding name is found by brute force in seconds).
public func shortHash(_ text: String) -> String {
  var h: UInt32 = 0x811c_9dc5
  for b in text.utf8 {
    h ^= UInt32(b)
    h = h &* 0x0100_0193
  }
  let s = String(h, radix: 16)
  return String(repeating: "0", count: 8 - s.count) + s
}

/// The child names of one policy: "<ns>-<name>" cut to 28 characters plus `nameHash(namespace, name)` (64 bits of
/// SHA-256), at most 45 characters, so that CronJob names stay within 52 characters and Job names within 63.
/// Children of all policies share the backup namespace: the hash keeps one policy's names out of another's reach.
public struct ChildNames: Sendable, Hashable {
  /// The common prefix.
  public var base: String

  public init(namespace: String, name: String) {
    var head = String("\(namespace)-\(name)".prefix(28))
    while head.hasSuffix("-") || head.hasSuffix(".") { head.removeLast() }
    base = "\(head)-\(nameHash(namespace, name))"
  }

  public var serviceAccount: String { base }
  public var role: String { base }
  public var roleBinding: String { base }
  public var backupCronJob: String { "\(base)-backup" }
  public var pruneCronJob: String { "\(base)-prune" }
  public var verifyCronJob: String { "\(base)-verify" }
  public var storageEgress: String { "\(base)-storage-egress" }
  /// The run window's egress of a dump command's pods to the database (the policy's namespace, declared servers).
  public var databaseEgress: String { "\(base)-database-egress" }
  public var isolation: String { "\(base)-isolation" }
  /// The on-demand Job for a run token.
  public func runJob(token: String) -> String { "\(base)-run-\(shortHash(token))" }
  /// The key rotation Job for a rotation token.
  public func rotateJob(token: String) -> String { "\(base)-rotate-\(shortHash(token))" }
  /// The Job deleting the stored backups when the policy is deleted with spec.deleteBackupsOnDelete.
  public var deleteRepositoryJob: String { "\(base)-delete-repo" }
  /// The copy of a Secret of the policy's namespace.
  public func secretCopy(_ source: String) -> String {
    let n = "\(base)-\(source)"
    return n.count <= 253 ? n : "\(base)-\(shortHash(source))"
  }
}

/// Names of the children shared by all policies.
public enum SharedChildNames {
  public static let defaultDeny = "botrt-default-deny"
  public static let allowIngress = "botrt-allow-ingress-disaster-recovery"
  public static let allowEgress = "botrt-allow-egress-vault-dns"
  public static let calicoPolicy = "botrt-backup-isolation"
}

/// Everything the builder needs, read from the cluster beforehand.
public struct ChildInputs: Sendable {
  /// The policy (metadata.namespace, name and uid must be set).
  public var policy: BackupPolicy
  /// Its effective settings.
  public var effective: EffectivePolicy
  /// Controller settings.
  public var settings: ControllerSettings
  /// The referenced Secrets of the policy's namespace, by name (only needed when copies are made).
  public var secrets: [String: Secret]
  /// The on-demand run to create a Job for, if any.
  public var runToken: String?
  /// Where the backup pods of a PVC source must run (RWO placement, `ClaimPlacement`): the backup CronJob's and the
  /// on-demand Job's pods get its node affinity and tolerations.
  public var placement: ClaimPlacement.Decision
  /// The claims a multi-claim source selects now (spec.source.claims), each with its placement: a backup CronJob
  /// (and on-demand Job) per claim. Nil for the other sources, and when not observed (no claim is backed up then).
  public var claims: ClaimSelection?

  public init(
    policy: BackupPolicy, effective: EffectivePolicy, settings: ControllerSettings, secrets: [String: Secret] = [:],
    runToken: String? = nil, placement: ClaimPlacement.Decision = .anywhere, claims: ClaimSelection? = nil
  ) {
    self.claims = claims
    self.placement = placement
    self.policy = policy
    self.effective = effective
    self.settings = settings
    self.secrets = secrets
    self.runToken = runToken
  }
}

/// Pure builders of a BackupPolicy's children. No I/O: the same inputs give the same objects.
///
/// Where things run: a dump-command source runs in the backup namespace, with copies of the Secrets it needs
/// (labelled with the owner, refreshed on every reconcile). A PVC can only be mounted in its own namespace, so a
/// PVC source runs in the policy's namespace, isolated by a per-policy NetworkPolicy there and owned through
/// owner references; the backup namespace's common NetworkPolicies are still applied.
public enum BackupPolicyChildren {
  /// The namespace the policy's Jobs run in.
  public static func workloadNamespace(_ policy: BackupPolicy, settings: ControllerSettings) -> String {
    if policy.spec.source.setChoices.contains(where: \.mountsPolicyClaim) {
      return policy.metadata.namespace ?? "default"
    }
    return backupNamespace(policy, settings: settings)
  }

  /// The backup namespace of a policy.
  public static func backupNamespace(_ policy: BackupPolicy, settings: ControllerSettings) -> String {
    policy.spec.backupNamespace ?? settings.backupNamespace
  }

  /// The run token of a pending on-demand run: spec.trigger or the run-now annotation, when not yet handled.
  public static func pendingRunToken(_ policy: BackupPolicy) -> String? {
    let handled = policy.status?.lastHandledTrigger
    if let t = policy.spec.trigger, !t.isEmpty, "trigger:\(t)" != handled { return "trigger:\(t)" }
    if let a = policy.metadata.annotations?[DRGroup.runNowAnnotation], !a.isEmpty, "annotation:\(a)" != handled {
      return "annotation:\(a)"
    }
    return nil
  }

  /// The labels every child of `policy` carries.
  public static func ownerLabels(_ policy: BackupPolicy) -> [String: String] {
    var l = [
      ChildLabels.policyNamespace: policy.metadata.namespace ?? "",
      ChildLabels.policyName: policy.name,
      ChildLabels.managedBy: ChildLabels.controllerName,
    ]
    if let uid = policy.metadata.uid { l[ChildLabels.policyUID] = uid }
    return l
  }

  static func labels(_ d: [String: String]) -> JSONValue { .object(d.mapValues { .string($0) }) }

  static func meta(
    name: String, namespace: String?, labels: [String: String], owner: OwnerReference?,
    annotations: [String: String] = [:]
  ) -> JSONValue {
    var m: [String: JSONValue] = ["name": .string(name), "labels": Self.labels(labels)]
    if let namespace { m["namespace"] = .string(namespace) }
    if !annotations.isEmpty { m["annotations"] = Self.labels(annotations) }
    if let owner {
      m["ownerReferences"] = [
        [
          "apiVersion": .string(owner.apiVersion), "kind": .string(owner.kind), "name": .string(owner.name),
          "uid": .string(owner.uid), "controller": true, "blockOwnerDeletion": true,
        ]
      ]
    }
    return .object(m)
  }

  /// The metadata of a child: name, namespace, labels, annotations when any, and `owner` as the controlling owner.
  static func objectMeta(
    name: String, namespace: String?, labels: [String: String], owner: OwnerReference?,
    annotations: [String: String] = [:]
  ) -> ObjectMeta {
    var m = ObjectMeta(name: name, namespace: namespace, labels: labels)
    if !annotations.isEmpty { m.annotations = annotations }
    if let owner {
      m.ownerReferences = [
        OwnerReference(
          apiVersion: owner.apiVersion, kind: owner.kind, name: owner.name, uid: owner.uid, controller: true,
          blockOwnerDeletion: true)
      ]
    }
    return m
  }

  /// The pods of one policy.
  static func policyPods(_ policy: BackupPolicy) -> [String: String] {
    [ChildLabels.policyNamespace: policy.metadata.namespace ?? "default", ChildLabels.policyName: policy.name]
  }

  /// The rules of the backup ServiceAccount's Role: `get` of the Secrets its pods use, by name, and nothing else.
  static func roleRules(secretNames: [String]) -> [PolicyRule] {
    if secretNames.isEmpty { return [] }
    return [PolicyRule(apiGroups: [""], resources: ["secrets"], verbs: ["get"], resourceNames: secretNames)]
  }

  /// The backup ServiceAccount's declared RBAC, as `build` and `runAccess` declare it: the workload namespace, the
  /// ServiceAccount, the Role's name and rules, and the RoleBinding's name (the only binding that may name the
  /// ServiceAccount, and only to that Role).
  public static func declaredRBAC(
    _ policy: BackupPolicy, settings: ControllerSettings
  ) throws(SpecError) -> DeclaredRBAC {
    let policyNS = policy.metadata.namespace ?? "default"
    let names = ChildNames(namespace: policyNS, name: policy.name)
    let workNS = workloadNamespace(policy, settings: settings)
    let copies = workNS != policyNS
    let invocation = try EngineInvocation(policy: policy) {
      copies ? names.secretCopy($0) : $0
    }
    var declared = DeclaredRBAC(
      namespace: workNS, serviceAccount: names.serviceAccount, role: names.role, roleBinding: names.roleBinding,
      rules: roleRules(secretNames: invocation.secrets.map { copies ? names.secretCopy($0.sourceName) : $0.sourceName })
        .map(\.json)
    )
    if policy.spec.effectiveObjects != nil { declared.objectsBinding = names.objectsBinding }
    return declared
  }

  /// Whether the policy only restores: spec.mode RestoreOnly, or every policy under the controller's
  /// `--restore-only`.
  public static func isRestoreOnly(_ policy: BackupPolicy, settings: ControllerSettings) -> Bool {
    settings.restoreOnly || policy.spec.isRestoreOnly
  }

  /// Refuses to build a Job that writes to the repository (key rotation, repository deletion, replica copy and
  /// rotation) for a restore-only policy: the reconciler never asks for one, and this keeps it so.
  static func refuseRestoreOnly(_ input: ChildInputs, _ what: String) throws(SpecError) {
    guard isRestoreOnly(input.policy, settings: input.settings) else { return }
    throw SpecError(
      field: "spec.mode",
      message: "the policy is restore-only (\(RestoreOnlyStatus.why(input.policy, settings: input.settings))): no "
        + "\(what) may write to its repository")
  }

  /// The policy's children. A restore-only policy (`isRestoreOnly`) has nothing that writes to the repository or
  /// reads the source: no CronJob (backup, prune, verify), no on-demand Job and no copies of the Secrets (restores
  /// read them in the plan's namespace, drills copy their own; they must still exist, with their keys). The backup
  /// namespace, its isolation, the policy's ServiceAccount and Role stay, so the drills' security posture checks
  /// find what they find on the primary cluster.
  public static func build(_ input: ChildInputs) throws(SpecError) -> [DesiredChild] {
    let policy = input.policy
    let settings = input.settings
    let policyNS = policy.metadata.namespace ?? "default"
    let names = ChildNames(namespace: policyNS, name: policy.name)
    let backupNS = backupNamespace(policy, settings: settings)
    let workNS = workloadNamespace(policy, settings: settings)
    let copies = workNS != policyNS
    let owner: OwnerReference? = copies ? nil : policy.ownerReference()
    let owned = ownerLabels(policy)
    func with(_ component: String) -> [String: String] { owned.merging([ChildLabels.component: component]) { $1 } }
    let restoreOnly = isRestoreOnly(policy, settings: settings)

    let invocation = try EngineInvocation(policy: policy) {
      copies ? names.secretCopy($0) : $0
    }
    try checkClaims(policy, settings: settings)
    _ = try containerResources(policy.spec, settings)
    var out: [DesiredChild] = []

    // The backup namespace and its common isolation.
    out.append(
      DesiredChild(
        resource: ChildResources.namespaces, namespace: nil, name: backupNS,
        body: [
          "apiVersion": "v1", "kind": "Namespace",
          "metadata": [
            "name": .string(backupNS),
            "labels": labels([
              ChildLabels.managedBy: ChildLabels.controllerName, "dr.botrt.io/backup-namespace": "true",
              "app": "backup-storage", "pod-security.kubernetes.io/enforce": "restricted",
            ]),
          ],
        ], shared: true))
    out += sharedNetworkPolicies(namespace: backupNS, settings: settings)

    // Secret copies.
    if copies, !restoreOnly {
      for use in invocation.secrets {
        guard let source = input.secrets[use.sourceName] else {
          throw SpecError(
            field: use.field, message: "Secret '\(use.sourceName)' does not exist in namespace \(policyNS); create it",
            reason: .secretNotFound)
        }
        var data: [String: JSONValue] = [:]
        for (k, v) in source.data ?? [:] { data[k] = .string(v.base64EncodedString()) }
        for (k, v) in source.stringData ?? [:] { data[k] = .string(Data(v.utf8).base64EncodedString()) }
        for key in use.requiredKeys where data[key] == nil {
          throw SpecError(
            field: use.field, message: "Secret '\(use.sourceName)' in namespace \(policyNS) has no key '\(key)'",
            reason: .secretKeyMissing)
        }
        let name = names.secretCopy(use.sourceName)
        out.append(
          DesiredChild(
            resource: ChildResources.secrets, namespace: workNS, name: name,
            body: [
              "apiVersion": "v1", "kind": "Secret",
              "metadata": meta(
                name: name, namespace: workNS, labels: with("credentials"), owner: nil,
                annotations: ["dr.botrt.io/copied-from": "\(policyNS)/\(use.sourceName)"]),
              "type": .string(source.type ?? "Opaque"),
              "data": .object(data),
            ]))
      }
    } else {
      for use in invocation.secrets {
        guard let source = input.secrets[use.sourceName] else {
          throw SpecError(
            field: use.field, message: "Secret '\(use.sourceName)' does not exist in namespace \(policyNS); create it",
            reason: .secretNotFound)
        }
        let keys = Set((source.data ?? [:]).keys).union((source.stringData ?? [:]).keys)
        for key in use.requiredKeys where !keys.contains(key) {
          throw SpecError(
            field: use.field, message: "Secret '\(use.sourceName)' in namespace \(policyNS) has no key '\(key)'",
            reason: .secretKeyMissing)
        }
      }
    }

    // RBAC: a ServiceAccount whose Role can read only the Secrets its pods use.
    let secretNames = invocation.secrets.map { copies ? names.secretCopy($0.sourceName) : $0.sourceName }
    let account = ServiceAccount(
      metadata: objectMeta(name: names.serviceAccount, namespace: workNS, labels: with("backup"), owner: owner),
      automountServiceAccountToken: false)
    out.append(DesiredChild(resource: ChildResources.serviceAccounts, object: account))
    let role = Role(
      metadata: objectMeta(name: names.role, namespace: workNS, labels: with("backup"), owner: owner),
      rules: roleRules(secretNames: secretNames))
    out.append(DesiredChild(resource: ChildResources.roles, object: role))
    // The RoleBinding of this Role to the ServiceAccount, and the storage egress, exist only while a run is
    // active: `runAccess(_:settings:)` builds them (Sources/Reconcilers/BackupPolicy/BackupAccess.swift).

    // Network isolation of this policy's pods.
    if !copies {
      let np = NetworkPolicy(
        metadata: objectMeta(name: names.isolation, namespace: workNS, labels: with("isolation"), owner: owner),
        spec: NetworkPolicySpec(
          podSelector: LabelSelector(matchLabels: policyPods(policy)), policyTypes: ["Ingress", "Egress"],
          ingress: [NetworkIsolation.ingressRule], egress: NetworkIsolation.sharedEgressRules(settings)))
      out.append(DesiredChild(resource: ChildResources.networkPolicies, object: np))
    }

    if settings.calicoServed { out.append(calicoPolicy(settings)) }
    if restoreOnly { return out }

    // CronJobs and the on-demand Job.
    let pod =
      policy.spec.source.claims == nil
      ? try podTemplate(input, invocation: invocation, names: names, labels: with("backup")) : PodTemplateSpec()
    let cronResource = ChildResources.cronJobs(apiVersion: settings.cronJobAPIVersion)
    let spec = policy.spec
    let rpo = input.effective.rpoSeconds.value
    let deadline = Int64(max(60, min(300, rpo)))
    func cronJob(
      _ name: String, component: String, schedule: String, deadline: Int64, successful: Int64, failed: Int64,
      backoffLimit: Int64, pod: PodTemplateSpec, annotations: [String: String] = [:]
    ) -> DesiredChild {
      var jobMeta = ObjectMeta(labels: with(component))
      if !annotations.isEmpty { jobMeta.annotations = annotations }
      let cron = CronJob(
        apiVersion: settings.cronJobAPIVersion,
        metadata: objectMeta(
          name: name, namespace: workNS, labels: with(component), owner: owner, annotations: annotations),
        spec: CronJobSpec(
          schedule: schedule, suspend: spec.suspend ?? false, concurrencyPolicy: "Forbid",
          startingDeadlineSeconds: deadline, successfulJobsHistoryLimit: successful, failedJobsHistoryLimit: failed,
          jobTemplate: JobTemplateSpec(
            metadata: jobMeta,
            spec: JobSpec(backoffLimit: backoffLimit, template: pod))))
      return DesiredChild(resource: cronResource, object: cron)
    }
    // A multi-claim source: a backup CronJob per selected claim, each placed by its claim (RWO placement).
    let claimNames = spec.source.claims == nil ? nil : (input.claims?.names ?? [])
    if let claimNames {
      for claim in claimNames {
        let claimPod = try podTemplate(
          input, invocation: invocation, names: names, labels: with("backup"), claim: claim)
        out.append(
          cronJob(
            MultiClaim.cronJob(namespace: policyNS, name: policy.name, claim: claim), component: "backup",
            schedule: input.effective.schedule.value, deadline: deadline,
            successful: Int64(spec.successfulJobsHistoryLimit ?? 3), failed: Int64(spec.failedJobsHistoryLimit ?? 3),
            backoffLimit: hasHooks(policy) ? 0 : 1, pod: claimPod, annotations: [MultiClaim.claimAnnotation: claim]))
      }
    } else {
      out.append(
        cronJob(
          names.backupCronJob, component: "backup", schedule: input.effective.schedule.value, deadline: deadline,
          successful: Int64(spec.successfulJobsHistoryLimit ?? 3), failed: Int64(spec.failedJobsHistoryLimit ?? 3),
          backoffLimit: hasHooks(policy) ? 0 : 1, pod: pod))
    }

    let prunePod = try prunePodTemplate(input, invocation: invocation, names: names, labels: with("prune"))
    let minute = Int(UInt32(shortHash(names.base), radix: 16).map { $0 % 60 } ?? 0)
    out.append(
      cronJob(
        names.pruneCronJob, component: "prune", schedule: "\(minute) 4 * * *", deadline: 3_600, successful: 1,
        failed: 3, backoffLimit: 1, pod: prunePod))

    if let v = spec.verify {
      let verifyPod = try verifyPodTemplate(
        input, verify: v, invocation: invocation, names: names, labels: with("verify"))
      out.append(
        cronJob(
          names.verifyCronJob, component: "verify", schedule: v.schedule, deadline: 3_600, successful: 1, failed: 3,
          backoffLimit: 0, pod: verifyPod))
    }

    if let token = input.runToken, let claimNames {
      for claim in claimNames {
        let runPod = try podTemplate(
          input, invocation: invocation, names: names, labels: with("on-demand"), claim: claim)
        let job = Job(
          metadata: objectMeta(
            name: MultiClaim.runJob(namespace: policyNS, name: policy.name, claim: claim, token: token),
            namespace: workNS, labels: with("on-demand"), owner: owner,
            annotations: [ChildLabels.runToken: token, MultiClaim.claimAnnotation: claim]),
          spec: JobSpec(backoffLimit: hasHooks(policy) ? 0 : 1, template: runPod))
        out.append(DesiredChild(resource: ChildResources.jobs, object: job))
      }
    } else if let token = input.runToken {
      let name = names.runJob(token: token)
      let runPod = try podTemplate(input, invocation: invocation, names: names, labels: with("on-demand"))
      let job = Job(
        metadata: objectMeta(
          name: name, namespace: workNS, labels: with("on-demand"), owner: owner,
          annotations: [ChildLabels.runToken: token]),
        spec: JobSpec(backoffLimit: hasHooks(policy) ? 0 : 1, template: runPod))
      out.append(DesiredChild(resource: ChildResources.jobs, object: job))
    }
    return out
  }

  // MARK: - Network policies

  /// The NetworkPolicies every backup namespace has: deny all; ingress only from the controller's pods in backup
  /// namespaces; egress to DNS and the declared key services (`NetworkIsolation`).
  public static func sharedNetworkPolicies(namespace: String, settings: ControllerSettings) -> [DesiredChild] {
    let l = [ChildLabels.managedBy: ChildLabels.controllerName, ChildLabels.component: "isolation"]
    func np(_ name: String, _ spec: NetworkPolicySpec) -> DesiredChild {
      DesiredChild(
        resource: ChildResources.networkPolicies,
        object: NetworkPolicy(metadata: ObjectMeta(name: name, namespace: namespace, labels: l), spec: spec),
        shared: true)
    }
    return [
      np(SharedChildNames.defaultDeny, NetworkPolicySpec(policyTypes: ["Ingress", "Egress"])),
      np(
        SharedChildNames.allowIngress,
        NetworkPolicySpec(policyTypes: ["Ingress"], ingress: [NetworkIsolation.ingressRule])),
      np(
        SharedChildNames.allowEgress,
        NetworkPolicySpec(policyTypes: ["Egress"], egress: NetworkIsolation.sharedEgressRules(settings))),
    ]
  }

  /// Whether `host` is an IPv4 or IPv6 literal.
  static func isIPLiteral(_ host: String) -> Bool {
    !host.contains("/") && CIDR(host) != nil
  }

  /// A run window's egress rules to the storage, cloud KMS and Vault endpoints of `spec`
  /// (`NetworkIsolation.windowRules`).
  public static func storageEgressRules(
    _ spec: BackupPolicySpec, settings: ControllerSettings
  ) -> [NetworkPolicyEgressRule] {
    NetworkIsolation.windowRules(spec, settings: settings)
  }

  /// The Calico GlobalNetworkPolicy: the controller's pods in the backup namespaces accept connections only from
  /// such pods, and reach DNS and the declared destinations (`NetworkIsolation.calicoSpec`).
  public static func calicoPolicy(_ settings: ControllerSettings) -> DesiredChild {
    DesiredChild(
      resource: ChildResources.globalNetworkPolicies, namespace: nil, name: SharedChildNames.calicoPolicy,
      body: [
        "apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkPolicy",
        "metadata": [
          "name": .string(SharedChildNames.calicoPolicy),
          "labels": labels([ChildLabels.managedBy: ChildLabels.controllerName]),
        ],
        "spec": NetworkIsolation.calicoSpec(settings),
      ], shared: true)
  }

  /// A claim is mounted only in the policy's own namespace: a policy whose Jobs run in the shared backup namespace
  /// (a dump command source) may not name a claim (a local repository's), since that name would be resolved among
  /// the claims of the backup namespace, which other tenants' policies use.
  static func checkClaims(_ policy: BackupPolicy, settings: ControllerSettings) throws(SpecError) {
    let policyNS = policy.metadata.namespace ?? "default"
    let workNS = workloadNamespace(policy, settings: settings)
    guard workNS != policyNS else { return }
    func refuse(_ field: String, _ claim: String) -> SpecError {
      SpecError(
        field: field,
        message: "claim '\(claim)' cannot be used: this policy's Jobs run in the shared backup namespace \(workNS) "
          + "(a command source), where a claim name could be another tenant's; a policy mounts only claims of its "
          + "own namespace, so use a pvc source or an object store")
    }
    if let c = policy.spec.repository.local?.claimName { throw refuse("spec.repository.local.claimName", c) }
    for (i, r) in (policy.spec.replicas ?? []).enumerated() {
      if let c = r.repository.local?.claimName { throw refuse("spec.replicas[\(i)].repository.local.claimName", c) }
    }
  }

  /// The bounded resources of the policy's containers (`ResourceBounds.effective`).
  static func containerResources(
    _ spec: BackupPolicySpec, _ settings: ControllerSettings
  ) throws(SpecError) -> ContainerResources? {
    resources(try settings.resourceBounds.effective(spec.resources))
  }

  // MARK: - Pods

  /// The named pipe between a backup's dump container and its engine container, on a shared emptyDir.
  enum DumpPipe {
    static let volume = "pipe"
    static let directory = "/botrt/pipe"
    static let pipe = "/botrt/pipe/dump"
    static let status = "/botrt/pipe/dump.status"
  }

  static func containerSecurity(_ settings: ControllerSettings) -> SecurityContext {
    SecurityContext(
      allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, runAsUser: settings.runAsUser,
      capabilities: Capabilities(drop: ["ALL"]), seccompProfile: .runtimeDefault)
  }

  /// The engine container of a claim's backup, as `source.pvc.runAsUser`/`runAsGroup` say: another uid reads that
  /// user's private files; 0 is root with DAC_READ_SEARCH alone (read every file and directory, write nothing the
  /// mode forbids; the claim is mounted read-only anyway). Unset: the engine's user.
  static func claimReaderSecurity(_ pvc: PVCSource, _ settings: ControllerSettings) -> SecurityContext {
    guard let uid = pvc.runAsUser else { return containerSecurity(settings) }
    return SecurityContext(
      allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: uid != 0, runAsUser: uid,
      runAsGroup: pvc.runAsGroup ?? uid,
      capabilities: Capabilities(add: uid == 0 ? ["DAC_READ_SEARCH"] : nil, drop: ["ALL"]),
      seccompProfile: .runtimeDefault)
  }

  /// `runsAsRoot`: a container of the pod runs as uid 0 (a claim read as root), so the pod may not require non-root.
  static func podShell(
    _ input: ChildInputs, names: ChildNames, labels podLabels: [String: String], volumes: [Volume],
    containers: [Container], runsAsRoot: Bool = false
  ) -> PodTemplateSpec {
    let s = input.settings
    var l = podLabels
    l["app"] = "backup-service"
    return PodTemplateSpec(
      metadata: ObjectMeta(labels: l),
      spec: PodSpec(
        serviceAccountName: names.serviceAccount, automountServiceAccountToken: false, restartPolicy: "Never",
        securityContext: PodSecurityContext(
          runAsNonRoot: !runsAsRoot, runAsUser: s.runAsUser, runAsGroup: s.runAsUser, fsGroup: s.runAsUser,
          seccompProfile: .runtimeDefault),
        volumes: [tmpVolume] + volumes, containers: containers))
  }

  static func resources(_ r: ResourceRequirements?) -> ContainerResources? {
    guard let r else { return nil }
    return ContainerResources(
      requests: r.requests?.mapValues(\.text), limits: r.limits?.mapValues(\.text))
  }

  /// The engine's file selection of a claim's backup mounted at `root`: the `include` paths as the exclude chain that
  /// leaves out everything else (`IncludePaths`), then the `exclude` patterns, where a leading `/` is anchored at the
  /// backed-up directory, which the engine sees at `root`, then the patterns of the `excludeFile` files, which the
  /// engine reads below `root`. `field` names the source in an error.
  static func fileSelection(_ pvc: PVCSource, root: String, field: String) throws(SpecError) -> EngineFileSelection {
    let chain: [String]
    do {
      chain = try IncludePaths.excludeChain(pvc.include ?? [], root: root)
    } catch {
      throw SpecError(field: "\(field).include", message: error.description)
    }
    var selection = EngineFileSelection(
      exclude: chain + (pvc.exclude ?? []).map { PathPattern.anchored($0, at: root) },
      excludeFiles: pvc.excludeFile ?? [],
      excludeIfPresent: pvc.excludeIfPresent ?? [], excludeCaches: pvc.excludeCaches ?? false,
      oneFileSystem: pvc.oneFileSystem ?? false)
    // The exclude files are the claim's own: read below the backed-up directory as its data, their anchored
    // patterns anchored there as `exclude`'s are.
    if !selection.excludeFiles.isEmpty { selection.excludeFileRoot = root }
    return selection
  }

  static let baseEnv = [EnvVariable(name: "HOME", value: "/tmp"), EnvVariable(name: "TMPDIR", value: "/tmp")]
  static let tmpMount = VolumeMount(name: "tmp", mountPath: "/tmp")
  static let tmpVolume = Volume(name: "tmp", emptyDir: EmptyDirVolumeSource())

  /// An engine container: the invocation's environment after `baseEnv`, `/tmp` and the invocation's mounts, the
  /// hardened `containerSecurity`, the termination message the controller reads.
  static func engineContainer(
    _ name: String, settings s: ControllerSettings, args: [String], invocation: EngineInvocation,
    resources: ContainerResources?, progress: Bool = false
  ) -> Container {
    Container(
      name: name, image: s.engineImage, command: [s.enginePath], args: args,
      env: baseEnv + (progress ? [progressEnv] : []) + typed(invocation.env),
      volumeMounts: [tmpMount] + typed(invocation.mounts),
      resources: resources, securityContext: containerSecurity(s), terminationMessagePolicy: "File")
  }

  /// The rate of the progress lines of a run the controller follows (`EngineCommonArguments.progress`).
  static let progressEnv = EnvVariable(name: EngineEnv.progressFPS, value: EngineProgress.jobFramesPerSecond)

  /// Typed values of the JSON objects `EngineInvocation` makes (environment, volumes, mounts); every member is kept.
  static func typed<T: KubeStruct>(_ objects: [JSONValue]) -> [T] { objects.compactMap(T.init(json:)) }

  /// The backup pod. A PVC source is mounted read-only under /backup/<claim> in the engine container. A dump
  /// command runs in its own image, in container `dump`, beside the engine in container `backup`: the dump writes into
  /// a named pipe on a shared emptyDir (`/botrt/pipe/dump`, created by the engine), then its exit status into
  /// `/botrt/pipe/dump.status`; the engine reads the pipe (`backup --stdin --stdin-from ... --stdin-status ...`) and
  /// writes no snapshot unless that status is 0. Only the engine container gets the storage and KMS credentials, and
  /// only its termination message is read; the dump image needs `sh` and nothing of BotRT's (stock database images
  /// lack the engine's shared libraries).
  /// `claim`: the claim of a multi-claim source the pod backs up (mounted and tagged like a pvc source's, placed by
  /// its own decision).
  static func podTemplate(
    _ input: ChildInputs, invocation: EngineInvocation, names: ChildNames, labels podLabels: [String: String],
    claim: String? = nil
  ) throws(SpecError) -> PodTemplateSpec {
    let policy = input.policy
    let s = input.settings
    let spec = policy.spec
    let policyNS = policy.metadata.namespace ?? "default"
    let copies = workloadNamespace(policy, settings: s) != policyNS
    let lock = spec.repository.s3?.objectLock.map {
      EngineObjectLock(mode: $0.mode == .compliance ? .compliance : .governance, days: Int64($0.days))
    }
    // The claim read: a pvc source's, or one claim of a multi-claim source (tagged claim=NAME besides the policy).
    var claimSource: PVCSource? = nil
    var placement = input.placement
    var tags = ["policy=\(policyNS)/\(policy.name)"]
    switch try spec.source.kind(at: "spec.source") {
    case .pvc(let pvc): claimSource = pvc
    case .claims(let claims):
      guard let claim else {
        throw SpecError(field: "spec.source.claims", message: "a backup pod of a multi-claim source needs its claim")
      }
      claimSource = claims.pvc(claim)
      placement = input.claims?.placements[claim] ?? .anywhere
      tags.append(MultiClaim.tag(claim))
    case .command, .objects: break
    }
    let sourceField = claim == nil ? "spec.source.pvc" : "spec.source.claims"
    func backup(_ source: EngineBackupArguments.Source) throws(SpecError) -> [String] {
      // A new policy's first run creates its repository (with the policy's Object Lock settings). Compression only
      // when set: policies without it keep the CronJob they had (the engine's default is auto).
      var a = EngineBackupArguments(
        common: invocation.common, dataType: (spec.dataType ?? .files).rawValue,
        tags: tags, initIfMissing: true, objectLock: lock,
        compression: spec.compression?.rawValue, source: source)
      // Progress lines in the log, which the controller reads into status.progress.
      a.common.progress = true
      if let pvc = claimSource, case .paths(let roots) = source, let root = roots.first {
        a.selection = try Self.fileSelection(pvc, root: root, field: sourceField)
      }
      return EngineArguments.backup(a).argv
    }
    var volumes: [Volume] = typed(invocation.volumes)
    let resources = try containerResources(spec, s)

    if let pvc = claimSource {
      let path = "/backup/\(pvc.claimName)"
      volumes.append(
        Volume(name: "source", persistentVolumeClaim: ClaimVolumeSource(claimName: pvc.claimName, readOnly: true)))
      // spec.objects: the namespace's objects, exported by an init container into a memory-backed emptyDir, are
      // backed up beside the claim in the same snapshot (its entry `_kubernetes`).
      let objects = spec.objects
      let paths = objects == nil ? [path] : [path, ObjectsLayout.backupMount]
      if objects != nil { volumes += [KubeObjects.objectsVolume, KubeObjects.tokenVolumeSource] }
      var c = engineContainer(
        "backup", settings: s, args: try backup(.paths(paths)), invocation: invocation, resources: resources,
        progress: true)
      let sub = pvc.subPath.flatMap { $0.isEmpty ? nil : $0 }
      c.volumeMounts?.append(VolumeMount(name: "source", mountPath: path, readOnly: true, subPath: sub))
      if objects != nil {
        c.volumeMounts?.append(
          VolumeMount(name: KubeObjects.volume, mountPath: ObjectsLayout.backupMount, readOnly: true))
      }
      c.securityContext = claimReaderSecurity(pvc, s)
      var template = podShell(
        input, names: names, labels: podLabels, volumes: volumes, containers: [c], runsAsRoot: pvc.runAsUser == 0)
      if let objects, var podSpec = template.spec {
        // Before the hooks gate: the application stays frozen only while its data is read.
        podSpec.initContainers =
          [KubeObjects.exportContainer(objects, namespace: policyNS, settings: s)] + (podSpec.initContainers ?? [])
        template.spec = podSpec
      }
      if let hooks = spec.hooks, !hooks.isEmpty { addHooksGate(&template, hooks: hooks, settings: s) }
      ClaimPlacement.apply(placement, to: &template)
      return template
    }

    let cmd: ContainerSpec
    switch try spec.source.kind(at: "spec.source") {
    case .command(let c): cmd = c
    case .objects:
      // spec.source.objects: only the namespace's objects, exported by the init container as with a claim source;
      // the snapshot holds the `_kubernetes` entry alone. Nothing of the application is mounted: the pod runs in the
      // backup namespace, and reads the policy's namespace through the apiserver only.
      let objects = spec.effectiveObjects ?? ObjectsBackupSpec()
      volumes += [KubeObjects.objectsVolume, KubeObjects.tokenVolumeSource]
      var c = engineContainer(
        "backup", settings: s, args: try backup(.paths([ObjectsLayout.backupMount])), invocation: invocation,
        resources: resources, progress: true)
      c.volumeMounts?.append(
        VolumeMount(name: KubeObjects.volume, mountPath: ObjectsLayout.backupMount, readOnly: true))
      var template = podShell(input, names: names, labels: podLabels, volumes: volumes, containers: [c])
      if var podSpec = template.spec {
        podSpec.initContainers =
          [KubeObjects.exportContainer(objects, namespace: policyNS, settings: s)] + (podSpec.initContainers ?? [])
        template.spec = podSpec
      }
      return template
    case .pvc, .claims:  // returned above
      throw SpecError(field: "spec.source", message: "a claim source has no dump command")
    }
    let words = (cmd.command ?? []) + (cmd.args ?? [])
    guard cmd.command?.isEmpty == false else {
      throw SpecError(
        field: "spec.source.command.command",
        message: "the dump command must be given explicitly (e.g. [pg_dump]); it runs in a shell pipeline, so the "
          + "image's entrypoint is not used")
    }
    let fileName = cmd.fileName ?? "\(policy.name).dump"
    let engineArgs = try backup(.pipe(name: fileName, pipe: DumpPipe.pipe, status: DumpPipe.status))
    let script = [
      "pipe=\(shellQuote(DumpPipe.pipe))",
      "i=0",
      "while [ ! -p \"$pipe\" ]; do",
      "  i=$((i + 1))",
      "  if [ \"$i\" -gt 6000 ]; then echo \"botrt: the engine did not create $pipe within 600 s\" >&2; exit 1; fi",
      "  sleep 0.1",
      "done",
      words.map(shellQuote).joined(separator: " ") + " > \"$pipe\"",
      "rc=$?",
      "echo \"$rc\" > \(shellQuote(DumpPipe.status))",
      "if [ \"$rc\" -ne 0 ]; then echo \"botrt: the dump command exited with status $rc\" >&2; fi",
      "exit \"$rc\"",
    ].joined(separator: "\n")
    var userEnv: [EnvVariable] = []
    for e in cmd.env ?? [] {
      if let ref = e.valueFrom?.secretKeyRef {
        userEnv.append(.secret(e.name, secret: copies ? names.secretCopy(ref.name) : ref.name, key: ref.key))
      } else {
        userEnv.append(EnvVariable(name: e.name, value: e.value ?? ""))
      }
    }
    volumes.append(Volume(name: DumpPipe.volume, emptyDir: EmptyDirVolumeSource()))
    let pipeMount = VolumeMount(name: DumpPipe.volume, mountPath: DumpPipe.directory)
    let dump = Container(
      name: "dump", image: cmd.image, command: ["sh", "-c", script], env: baseEnv + userEnv,
      volumeMounts: [tmpMount, pipeMount], resources: resources, securityContext: containerSecurity(s),
      terminationMessagePolicy: "FallbackToLogsOnError")
    var engine = engineContainer(
      "backup", settings: s, args: engineArgs, invocation: invocation, resources: resources, progress: true)
    engine.volumeMounts?.append(pipeMount)
    return podShell(input, names: names, labels: podLabels, volumes: volumes, containers: [dump, engine])
  }

  /// Whether the policy's backup runs have hooks (spec.hooks with a claim source, `pvc` or `claims`): their pods
  /// start with the gate and their Jobs are not retried (backoffLimit 0: a second Pod would run the pre hooks again;
  /// the next scheduled run is the retry). A multi-claim source runs the hooks around each claim's backup Job.
  public static func hasHooks(_ policy: BackupPolicy) -> Bool {
    guard let h = policy.spec.hooks, !h.isEmpty else { return false }
    return policy.spec.source.setChoices.contains(where: \.mountsPolicyClaim)
  }

  /// The downward API volume of the gate: the Pod's annotations as a file, which the kubelet rewrites when they
  /// change.
  static let gateVolume: Volume =
    Volume(
      json: [
        "name": .string(HookKeys.gateVolume),
        "downwardAPI": ["items": [["path": "annotations", "fieldRef": ["fieldPath": "metadata.annotations"]]]],
      ]) ?? Volume(name: HookKeys.gateVolume)

  /// Adds the hooks gate to a backup pod: an init container from the engine image (`botrt-engine gate`) that waits
  /// until the controller has run the pre hooks and marked the Pod's `dr.botrt.io/pre-hooks` annotation done; the
  /// engine reads a file and nothing of Kubernetes, and the Pod keeps no ServiceAccount token.
  static func addHooksGate(_ template: inout PodTemplateSpec, hooks: BackupHooks, settings s: ControllerSettings) {
    let args = EngineGateArguments(
      file: HookKeys.gateFile, key: HookKeys.pre, messageKey: HookKeys.preMessage,
      timeoutSeconds: HookKeys.gateTimeoutSeconds(hooks))
    let gate = Container(
      name: HookKeys.gateContainer, image: s.engineImage, command: [s.enginePath], args: args.argv,
      volumeMounts: [VolumeMount(name: HookKeys.gateVolume, mountPath: HookKeys.gateDirectory, readOnly: true)],
      resources: ContainerResources(
        requests: ["cpu": "10m", "memory": "16Mi"], limits: ["memory": "64Mi"]),
      securityContext: containerSecurity(s), terminationMessagePolicy: "File")
    guard var spec = template.spec else { return }
    spec.initContainers = (spec.initContainers ?? []) + [gate]
    spec.volumes = (spec.volumes ?? []) + [gateVolume]
    template.spec = spec
  }

  /// A one-off engine Job of the policy (`rotate-keys`, `delete-repository`) with the backup pod's identity,
  /// Secrets and isolation: `botrt-engine COMMAND --repo … --kms … FLAGS --quiet`, container `engine`. Its Secrets
  /// and ServiceAccount are the ones `build` returns, so those must be applied first.
  /// `invocation` replaces the policy's own (a replica's repository); `extraLabels` go on the Job and its Pod.
  /// `arguments` makes the engine's arguments from the invocation's common flags.
  public static func engineJob(
    _ input: ChildInputs, component: String, name: String,
    arguments: (EngineCommonArguments) throws(SpecError) -> EngineArguments,
    annotations: [String: String], backoffLimit: Int64 = 1, invocation given: EngineInvocation? = nil,
    extraLabels: [String: String] = [:]
  ) throws(SpecError) -> DesiredChild {
    let policy = input.policy
    let s = input.settings
    let policyNS = policy.metadata.namespace ?? "default"
    let names = ChildNames(namespace: policyNS, name: policy.name)
    let workNS = workloadNamespace(policy, settings: s)
    let copies = workNS != policyNS
    let invocation: EngineInvocation
    if let given {
      invocation = given
    } else {
      invocation = try EngineInvocation(policy: policy) {
        copies ? names.secretCopy($0) : $0
      }
    }
    let labels = ownerLabels(policy).merging([ChildLabels.component: component]) { $1 }.merging(extraLabels) { $1 }
    let args = try arguments(invocation.common).argv
    let c = engineContainer(
      "engine", settings: s, args: args, invocation: invocation, resources: try containerResources(policy.spec, s))
    let pod = podShell(input, names: names, labels: labels, volumes: typed(invocation.volumes), containers: [c])
    let job = Job(
      metadata: objectMeta(
        name: name, namespace: workNS, labels: labels, owner: copies ? nil : policy.ownerReference(),
        annotations: annotations),
      spec: JobSpec(backoffLimit: backoffLimit, template: pod))
    return DesiredChild(resource: ChildResources.jobs, object: job)
  }

  /// The key rotation Job: `rotate-keys --new-kek` (every key service that makes new keys: a new Vault Transit,
  /// Azure Key Vault or Cloud KMS key version, or a new AWS KMS key) or `--new-kms` with an entry of the rotation
  /// keys Secret (a local key).
  public static func keyRotationJob(_ input: ChildInputs, _ job: KeyRotationJob) throws(SpecError) -> DesiredChild {
    try refuseRestoreOnly(input, "key rotation Job")
    let policy = input.policy
    let names = ChildNames(namespace: policy.metadata.namespace ?? "default", name: policy.name)
    var annotations = [KeyRotationLogic.tokenAnnotation: job.token]
    let target: EngineRotationTarget
    if let key = job.newKey {
      target = .newKMS(EngineInvocation.rotationKeyURL(key))
      annotations[KeyRotationLogic.newKeyAnnotation] = key
    } else {
      target = .newKEK
    }
    return try engineJob(
      input, component: KeyRotationLogic.component, name: names.rotateJob(token: job.token),
      arguments: { (common) throws(SpecError) in try rotateKeys(common, target, field: "spec.encryption") },
      annotations: annotations)
  }

  /// Typed `rotate-keys` arguments; a target the engine would refuse for the key service is a spec error.
  static func rotateKeys(
    _ common: EngineCommonArguments, _ target: EngineRotationTarget, field: String
  ) throws(SpecError) -> EngineArguments {
    do {
      return .rotateKeys(try EngineRotateKeysArguments(common: common, target: target))
    } catch {
      throw SpecError(
        field: field,
        message: "cannot rotate keys: \(error.message); set rotationKeysSecretRef with the new keys")
    }
  }

  /// The Job that deletes the stored backups (`delete-repository --confirm`).
  public static func deleteRepositoryJob(_ input: ChildInputs) throws(SpecError) -> DesiredChild {
    try refuseRestoreOnly(input, "repository deletion Job")
    let policy = input.policy
    let names = ChildNames(namespace: policy.metadata.namespace ?? "default", name: policy.name)
    return try engineJob(
      input, component: BackupDeletion.component, name: names.deleteRepositoryJob,
      arguments: { .deleteRepository($0) }, annotations: [:], backoffLimit: 2)
  }

  /// The periodic verify pod: `botrt-engine verify --all --read-data-subset SUBSET` (spec.verify).
  static func verifyPodTemplate(
    _ input: ChildInputs, verify: PolicyVerifySpec, invocation: EngineInvocation, names: ChildNames,
    labels podLabels: [String: String]
  ) throws(SpecError) -> PodTemplateSpec {
    var a = EngineVerifyArguments(common: invocation.common, which: .all, readData: false, requireSnapshot: nil)
    a.readDataSubset = verify.readDataSubset ?? PolicyVerifySpec.defaultReadDataSubset
    return engineOnlyPod(
      input, container: "verify", args: EngineArguments.verify(a).argv, invocation: invocation, names: names,
      labels: podLabels)
  }

  /// The retention pod: `botrt-engine forget --prune` with the effective retention.
  static func prunePodTemplate(
    _ input: ChildInputs, invocation: EngineInvocation, names: ChildNames, labels podLabels: [String: String]
  ) throws(SpecError) -> PodTemplateSpec {
    let args = EngineArguments.forget(
      EngineForgetArguments(
        common: invocation.common, retention: EngineInvocation.retention(input.effective.retention.value))
    ).argv
    return engineOnlyPod(
      input, container: "prune", args: args, invocation: invocation, names: names, labels: podLabels)
  }

  /// A pod of one engine container (the policy's scheduled maintenance: prune, verify) with the invocation's
  /// environment, Secret mounts and the policy's resources.
  static func engineOnlyPod(
    _ input: ChildInputs, container: String, args: [String], invocation: EngineInvocation, names: ChildNames,
    labels podLabels: [String: String]
  ) -> PodTemplateSpec {
    let s = input.settings
    let c = engineContainer(
      container, settings: s, args: args, invocation: invocation,
      resources: (try? containerResources(input.policy.spec, s)) ?? nil)
    return podShell(input, names: names, labels: podLabels, volumes: typed(invocation.volumes), containers: [c])
  }
}
