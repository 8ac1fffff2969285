import DRAPI
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Synchronization

extension BackupPolicyChildren {
  /// The component label of the time-bounded grants.
  public static let runAccessComponent = "run-access"

  /// The objects that exist only while a run of the policy is active (docs/backup-policy-controller.md, "Backup
  /// windows"): the NetworkPolicy `<base>-storage-egress` letting the policy's pods reach the storage and KMS
  /// endpoints (absent when the policy names no endpoint), and the RoleBinding `<base>` binding the Role that
  /// reads the credentials Secrets to the run's ServiceAccount; with spec.objects also the RoleBinding
  /// `<base>-objects` of the policy's namespace (`KubeObjects.backupBinding`) and the NetworkPolicy
  /// `<base>-apiserver-egress`.
  public static func runAccess(_ policy: BackupPolicy, settings: ControllerSettings) -> [DesiredChild] {
    let policyNS = policy.metadata.namespace ?? "default"
    let names = ChildNames(namespace: policyNS, name: policy.name)
    let workNS = workloadNamespace(policy, settings: settings)
    let owner: OwnerReference? = workNS != policyNS ? nil : policy.ownerReference()
    let l = ownerLabels(policy).merging([ChildLabels.component: runAccessComponent]) { $1 }
    var out: [DesiredChild] = []
    let rules = storageEgressRules(policy.spec, settings: settings)
    if !rules.isEmpty {
      let np = NetworkPolicy(
        metadata: objectMeta(name: names.storageEgress, namespace: workNS, labels: l, owner: owner),
        spec: NetworkPolicySpec(
          podSelector: LabelSelector(matchLabels: policyPods(policy)), policyTypes: ["Egress"], egress: rules))
      out.append(DesiredChild(resource: ChildResources.networkPolicies, object: np))
    }
    // A dump command's pods (backup and on-demand runs) reach the database: the policy's own namespace and the
    // declared database servers; the prune and verify pods do not.
    if policy.spec.source.setChoices.contains(where: \.reachesDatabase) {
      let selector = LabelSelector(
        matchLabels: policyPods(policy),
        matchExpressions: [
          LabelSelectorRequirement(key: ChildLabels.component, operator: "In", values: ["backup", "on-demand"])
        ])
      let np = NetworkPolicy(
        metadata: objectMeta(name: names.databaseEgress, namespace: workNS, labels: l, owner: owner),
        spec: NetworkPolicySpec(
          podSelector: selector, policyTypes: ["Egress"],
          egress: NetworkIsolation.databaseRules(policyNamespace: policyNS, settings: settings)))
      out.append(DesiredChild(resource: ChildResources.networkPolicies, object: np))
    }
    let binding = RoleBinding(
      metadata: objectMeta(name: names.roleBinding, namespace: workNS, labels: l, owner: owner),
      roleRef: RoleRef(name: names.role), subjects: [.serviceAccount(names.serviceAccount, namespace: workNS)])
    out.append(DesiredChild(resource: ChildResources.roleBindings, object: binding))
    // spec.objects: the run's ServiceAccount reads the policy's namespace (KubeObjects), and its pods reach the
    // apiserver.
    if policy.spec.effectiveObjects != nil {
      out.append(
        DesiredChild(
          resource: ChildResources.roleBindings,
          object: KubeObjects.backupBinding(policy, names: names, workNamespace: workNS, labels: l)))
      let np = NetworkPolicy(
        metadata: objectMeta(name: names.apiserverEgress, namespace: workNS, labels: l, owner: owner),
        spec: NetworkPolicySpec(
          podSelector: LabelSelector(
            matchLabels: policyPods(policy),
            matchExpressions: [
              LabelSelectorRequirement(key: ChildLabels.component, operator: "In", values: ["backup", "on-demand"])
            ]), policyTypes: ["Egress"], egress: NetworkIsolation.apiserverRules(settings)))
      out.append(DesiredChild(resource: ChildResources.networkPolicies, object: np))
    }
    return out
  }
}

/// Grants a policy's storage egress and credentials binding while one of its runs is active, and revokes them when
/// none is (docs/backup-policy-controller.md, "Backup windows").
///
/// A controller keyed by BackupPolicy: the shared BackupPolicy informer (so that every policy is looked at on start
/// and stale grants of a controller that was down are revoked) and the labelled Jobs mapped to their policy. Each
/// reconcile lists the policy's Jobs (and CronJobs, to tell scheduled runs from hand-made ones) live: a run is
/// active from the Job's creation until it has a Complete or Failed condition or is being deleted. Only runs the
/// controller planned (scheduled or on-demand) are granted access.
public final class BackupAccessReconciler: Sendable {
  let client: KubeClient
  let settings: ControllerSettings
  let intent: IsolationIntent
  let metrics: SecurityMetrics?
  let logger: Logger
  /// Where the ownership check of grants reads existing objects' labels.
  let existing: ExistingLabels
  /// The shared caches of the controller's own objects (runs, CronJobs, grants), read instead of live lists once filled.
  let managed: ManagedCaches
  /// The grants last made per policy (display names); absent until the policy was first reconciled, so a restarted
  /// controller applies and deletes once and revokes what a controller that was down left behind.
  private let granted = Mutex<[ObjectKey: Set<String>]>([:])

  public init(
    client: KubeClient, settings: ControllerSettings, intent: IsolationIntent, metrics: SecurityMetrics?,
    logger: Logger, managed: ManagedCaches = .none
  ) {
    self.client = client
    self.existing = ExistingLabels(client: client, caches: managed.stores)
    self.managed = managed
    self.settings = settings
    self.intent = intent
    self.metrics = metrics
    self.logger = logger
  }

  /// The controller: BackupPolicies, plus the controller's Jobs mapped to their policy (both shared with the other
  /// controllers).
  public func controller(informers: InformerRegistry, namespace: String?, workers: Int) -> Controller<BackupPolicy> {
    let c = Controller<BackupPolicy>(
      name: "backup-access", informer: informers.informer(BackupPolicy.self, namespace: namespace),
      options: ControllerOptions(workers: workers), logger: logger, metrics: nil,
      reconcile: { key, store in try await self.reconcile(key, store) })
    c.watches(
      informers.managed(ChildResources.jobs),
      mapper: Mappers.labels(
        nameLabel: ChildLabels.policyName, namespaceLabel: ChildLabels.policyNamespace, watchNamespace: namespace))
    return c
  }

  /// Grants or revokes the policy's run access: the backup window (`runAccess`) while a planned backup, prune, key
  /// rotation or repository deletion runs, the copy window (`ReplicationChildren.runAccess`) while a replica copy
  /// runs. A policy being deleted keeps only what its repository deletion Job needs, while that Job runs.
  public func reconcile(_ key: ObjectKey, _ store: Store<BackupPolicy>) async throws -> ReconcileResult {
    guard let policy = store.get(key) else { return .awaitChange }
    // A restarted controller decides from filled caches (ManagedCaches.waitUntilReady), not from live lists and
    // deletes of grants that do not exist.
    await managed.waitUntilReady()
    let active = try await activeRuns(policy).filter {
      !policy.metadata.isDeleting || $0.component == BackupDeletion.component
    }
    // Replica copies and replica key rotations use the replicas' Secrets and endpoints: the copy window.
    let replicaWork: Set<String> = [ReplicaLabels.copyComponent, ReplicaKeyRotation.component]
    let backupRuns = active.filter { !replicaWork.contains($0.component) }.map(\.name)
    let copyRuns = active.filter { replicaWork.contains($0.component) }.map(\.name)
    let backupWindow = BackupPolicyChildren.runAccess(policy, settings: settings)
    let copyWindow = ReplicationChildren.runAccess(policy, settings: settings)
    let wanted = (backupRuns.isEmpty ? [] : backupWindow) + (copyRuns.isEmpty ? [] : copyWindow)
    let wantedIDs = Set(wanted.map(\.displayName))
    if granted.withLock({ $0[key] }) == wantedIDs { return .awaitChange }
    // A grant's name taken by another owner's object is never applied over (ChildOwnership): the reconcile fails,
    // is logged and retried, and the policy reconciler reports the conflict in the policy's Ready condition.
    if let conflict = try await ChildOwnership.conflicts(wanted, existing: existing).first { throw conflict }
    for c in wanted {
      intent.record(c)
      do {
        _ = try await client.apply(
          c.resource, namespace: c.namespace, name: c.name, c.body, fieldManager: ChildLabels.controllerName,
          force: true)
      } catch {
        throw ChildError(child: c.displayName, operation: "apply", cause: error)
      }
    }
    for c in backupWindow + copyWindow where !wantedIDs.contains(c.displayName) {
      intent.forget(c.resource, namespace: c.namespace, name: c.name)
      // A grant the caches show absent is not deleted (a first reconcile of each policy would delete 3 that never
      // existed).
      if managed.contains(c.resource, namespace: c.namespace, name: c.name) == false { continue }
      do {
        try await client.delete(c.resource, namespace: c.namespace, name: c.name)
      } catch let e as KubeError where e.isNotFound {
        continue
      } catch {
        throw ChildError(child: c.displayName, operation: "delete", cause: error)
      }
    }
    let before = granted.withLock { g in
      let b = g[key]
      g[key] = wantedIDs
      return b
    }
    metrics?.accessGranted.set(wanted.isEmpty ? 0 : 1, [key.namespace ?? "", key.name])
    if before != wantedIDs {
      if wanted.isEmpty {
        logger.info("run access revoked", metadata: ["policy": "\(key)"])
      } else {
        logger.info(
          "run access granted",
          metadata: ["policy": "\(key)", "runs": "\((backupRuns + copyRuns).sorted().joined(separator: ","))"])
      }
    }
    return .awaitChange
  }

  /// The policy's active planned runs (name and component label).
  func activeRuns(_ policy: BackupPolicy) async throws -> [(name: String, component: String)] {
    let ns = policy.metadata.namespace ?? "default"
    let workNS = BackupPolicyChildren.workloadNamespace(policy, settings: settings)
    let owner = ChildLabels.owner(ns, policy.name)
    // The origin of a Job is read from its managedFields, which the shared Jobs cache keeps (the run auditor reads
    // them too): no request, at rest or during a run. A Job is granted access once its watch event has put it in
    // the cache, and that event is what reconciles the policy (the Jobs informer is mapped to it).
    let jobs = try await managed.read(ChildResources.jobs, namespace: workNS, labels: owner, client: client)
    let candidates = jobs.filter { SecurityAudit.isActive($0) }
    if candidates.isEmpty { return [] }
    let crons = try await managed.read(
      ChildResources.cronJobs(apiVersion: settings.cronJobAPIVersion), namespace: workNS, labels: owner,
      client: client)
    let uids = Set(crons.compactMap { $0[path: "metadata", "uid"]?.stringValue })
    return candidates.filter { SecurityAudit.origin(job: $0, managedCronJobUIDs: uids).expected }.compactMap {
      guard let name = $0[path: "metadata", "name"]?.stringValue else { return nil }
      return (name, $0[path: "metadata", "labels", ChildLabels.component]?.stringValue ?? "")
    }
  }
}
