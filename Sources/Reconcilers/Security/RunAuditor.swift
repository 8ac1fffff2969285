import DRAPI
import EngineContract
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Synchronization

/// Audits engine runs and the workloads of the backup namespace (docs/security-monitoring.md):
///
/// - every Job is classified by origin (`RunOrigin`) when first seen and counted in `botrt_backup_runs_total`;
///   a Job the controller did not plan (manual or foreign) gets a Warning Event `UnexpectedBackupJob` and
///   `botrt_unexpected_workloads_total`;
/// - when it finishes, its engine result is read from its Pods: key unwraps (`botrt_key_unwrap_total` by key and
///   origin), storage requests (`botrt_storage_requests_total`) and refusals by the repository
///   (`botrt_backup_refused_total`, with a Warning Event `BackupAccessRefused`);
/// - a Pod of the backup namespace that no Job controls (or whose Job is gone) gets a Warning Event
///   `UnexpectedBackupPod` and is counted likewise, and its result is audited when it ends.
///
/// What was counted is recorded on the Job in the annotation `dr.botrt.io/audited` (`started`, then `finished`), so
/// a restarted controller does not count a run twice. Pods are remembered in memory only (patching Pods would need
/// a verb that also changes images), so a restart reports a stray Pod once more.
public final class RunAuditor: Sendable {
  let client: KubeClient
  let settings: ControllerSettings
  let recorder: EventRecorder?
  let metrics: SecurityMetrics?
  let logger: Logger
  /// The namespace whose policies the controller serves (nil: all): another namespace's labelled runs are another
  /// controller's to audit (a controller scoped by `--namespace` shares the cluster with others).
  let watchNamespace: String?
  private let seenPods = Mutex<[String: String]>([:])
  /// What was counted of each Job (by uid), ahead of the annotation reaching the cache.
  private let counted = Mutex<[String: String]>([:])

  public init(
    client: KubeClient, settings: ControllerSettings, recorder: EventRecorder?, metrics: SecurityMetrics?,
    logger: Logger, watchNamespace: String? = nil
  ) {
    self.client = client
    self.settings = settings
    self.watchNamespace = watchNamespace
    self.recorder = recorder
    self.metrics = metrics
    self.logger = logger
  }

  /// The controllers: the controller's labelled Jobs everywhere (a PVC source runs in its policy's namespace), the
  /// unlabelled Jobs of the backup namespace, and the Pods of the backup namespace. The backup namespaces that
  /// policies name in spec.backupNamespace get `namespaceControllers(_:)` as they come and go
  /// (`BackupPolicyReconciler.backupNamespacesInUse()`).
  public func controllers(informers: InformerRegistry, workers: Int = 1) -> [any Runnable] {
    let labelled = Controller<Unstructured>(
      name: "run-audit-managed", informer: informers.managed(ChildResources.jobs),
      options: ControllerOptions(workers: workers), logger: logger, metrics: nil,
      reconcile: { key, store in try await self.auditJob(key, store) })
    return [labelled] + namespaceControllers(settings.backupNamespace, informers: informers, workers: workers)
  }

  /// The unlabelled Jobs and the Pods of one backup namespace.
  public func namespaceControllers(_ namespace: String, informers: InformerRegistry, workers: Int = 1)
    -> [any Runnable]
  {
    let suffix = namespace == settings.backupNamespace ? "" : "/\(namespace)"
    let unlabelled = Controller<Unstructured>(
      name: "run-audit-unmanaged\(suffix)",
      informer: informers.whole(
        ChildResources.jobs, namespace: namespace, named: "unlabelled",
        where: { $0.body[path: "metadata", "labels", ChildLabels.managedBy] == nil }),
      options: ControllerOptions(workers: workers), logger: logger, metrics: nil,
      reconcile: { key, store in try await self.auditJob(key, store) })
    let pods = Controller<Unstructured>(
      name: "run-audit-pods\(suffix)",
      informer: informers.whole(ChildResources.pods, namespace: namespace, named: "every pod"),
      options: ControllerOptions(workers: workers), logger: logger, metrics: nil,
      reconcile: { key, store in try await self.auditPod(key, store) })
    return [unlabelled, pods]
  }

  // MARK: - Jobs

  func auditJob(_ key: ObjectKey, _ store: Store<Unstructured>) async throws -> ReconcileResult {
    guard let cached = store.get(key) else { return .awaitChange }
    let job = cached.body
    let uid = cached.metadata.uid ?? "\(key)"
    let labels = cached.metadata.labels ?? [:]
    // Drill and recovery-plan Jobs carry the managed-by label too; only backup-namespace work and the policies'
    // own runs are audited here.
    let component = labels[ChildLabels.component]
    let isPolicyRun =
      ["backup", "on-demand", "prune", "verify"].contains(component ?? "")
      || SecurityAudit.maintenanceComponents.contains(component ?? "")
    if labels[ChildLabels.managedBy] != nil, !isPolicyRun, key.namespace != settings.backupNamespace {
      return .awaitChange
    }
    // A run of a policy outside the namespace this controller serves is the run of the controller that serves it:
    // auditing it here too would count it twice and race that controller's audit mark.
    if let watched = watchNamespace, labels[ChildLabels.managedBy] != nil,
      let policyNamespace = labels[ChildLabels.policyNamespace], policyNamespace != watched
    {
      return .awaitChange
    }
    let annotated = cached.metadata.annotations?[SecurityAudit.auditAnnotation]
    let remembered = counted.withLock { $0[uid] }
    let state = annotated == "finished" || remembered == "finished" ? "finished" : (annotated ?? remembered)
    if cached.metadata.isDeleting {
      _ = counted.withLock { $0.removeValue(forKey: uid) }
      return .awaitChange
    }
    if state == "finished" { return .awaitChange }
    let finished = SecurityAudit.isFinished(job)
    let ns = key.namespace ?? ""
    let policyNS = labels[ChildLabels.policyNamespace] ?? ""
    let policyName = labels[ChildLabels.policyName] ?? ""
    // Runs of a policy are labelled with the policy's namespace and name, as the backup metrics are; others with
    // the namespace they ran in and an empty policy.
    let metricNS = policyName.isEmpty ? ns : policyNS
    let origin = try await origin(of: job, namespace: ns)
    if state == nil {
      metrics?.runs.inc([metricNS, policyName, origin.rawValue])
      if !origin.expected {
        metrics?.unexpectedWorkloads.inc([ns, "Job", origin.rawValue])
        let by = SecurityAudit.contentOwners(job).sorted().joined(separator: ", ")
        let what =
          origin == .manual
          ? "was started by hand from a CronJob of the controller (cronjob.kubernetes.io/instantiate=manual)"
          : "was not created by the controller nor by the CronJob controller from its CronJobs"
        let message = "Job \(ns)/\(key.name) \(what); written by \(by.isEmpty ? "an unknown client" : by)."
        recorder?.record(cached, type: .warning, reason: "UnexpectedBackupJob", message: message)
        logger.warning("unexpected backup job", metadata: ["object": "Job \(ns)/\(key.name)", "origin": "\(origin)"])
      }
    }
    if finished {
      let pods = try await client.listAll(
        ChildResources.pods, namespace: ns,
        options: ListOptions(labelSelector: "job-name=\(key.name)"), as: JSONValue.self)
      account(
        pods: pods.items, object: cached.objectReference, display: "Job \(ns)/\(key.name)", namespace: metricNS,
        policy: policyName, origin: origin)
    }
    let next = finished ? "finished" : "started"
    counted.withLock { c in
      c[uid] = next
      // Jobs deleted without a deletionTimestamp (background propagation) leave entries behind; keep the map to the
      // Jobs still cached.
      if c.count > 2 * store.count + 100 {
        let live = Set(store.list().compactMap(\.metadata.uid))
        c = c.filter { live.contains($0.key) }
      }
    }
    if next != annotated {
      do {
        _ = try await client.patch(
          ChildResources.jobs, namespace: ns, name: key.name,
          .merge(["metadata": ["annotations": [SecurityAudit.auditAnnotation: .string(next)]]]), as: JSONValue.self)
      } catch let e as KubeError where e.isNotFound {
        return .awaitChange
      }
    }
    return .awaitChange
  }

  /// The origin of a Job; reads the CronJobs of its namespace only when a CronJob controls it.
  func origin(of job: JSONValue, namespace: String) async throws -> RunOrigin {
    let ref = (job[path: "metadata", "ownerReferences"]?.arrayValue ?? []).first {
      $0["controller"]?.boolValue == true && $0["kind"]?.stringValue == "CronJob"
    }
    var uids: Set<String> = []
    if let ref, let name = ref["name"]?.stringValue {
      do {
        let cron = try await client.get(
          ChildResources.cronJobs(apiVersion: settings.cronJobAPIVersion), namespace: namespace, name: name,
          as: JSONValue.self)
        if cron[path: "metadata", "labels", ChildLabels.managedBy]?.stringValue == ChildLabels.controllerName,
          let uid = cron[path: "metadata", "uid"]?.stringValue
        {
          uids.insert(uid)
        }
      } catch let e as KubeError where e.isNotFound {
        // A Job of a CronJob that is gone: nothing vouches for it.
      }
    }
    return SecurityAudit.origin(job: job, managedCronJobUIDs: uids)
  }

  /// Counts what a finished run reported: key unwraps, storage requests, and a refusal.
  func account(
    pods: [JSONValue], object: ObjectReference, display: String, namespace: String, policy: String, origin: RunOrigin
  ) {
    guard let (result, code) = SecurityAudit.newestResult(pods: pods) else { return }
    for u in result?.keyUnwraps ?? [] where u.count > 0 {
      metrics?.keyUnwraps.inc([namespace, policy, u.key, origin.rawValue], by: Double(u.count))
    }
    if let n = result?.storageRequests, n > 0 { metrics?.storageRequests.inc([namespace, policy], by: Double(n)) }
    let exit = result?.exitCode ?? code
    if let reason = SecurityAudit.refusal(exitCode: exit, errors: result?.errors ?? []) {
      metrics?.refused.inc([namespace, policy, reason])
      let why: String
      switch reason {
      case "key":
        // 12: the key cannot unwrap the repository's keys; 13: the key service refused or failed.
        why = "its key service refused or could not unwrap the data key (exit code \(exit.map(String.init) ?? "?"))"
      case "integrity": why = "the repository's objects failed authentication (exit code \(EngineExitCode.integrity))"
      default: why = "the storage denied access (exit code \(EngineExitCode.storage))"
      }
      recorder?.record(
        object, type: .warning, reason: "BackupAccessRefused",
        message: "\(display) was refused: \(why). The engine said: "
          + "\((result?.errors ?? []).joined(separator: "; ").prefix(400))")
    }
  }

  // MARK: - Pods

  func auditPod(_ key: ObjectKey, _ store: Store<Unstructured>) async throws -> ReconcileResult {
    guard let cached = store.get(key) else {
      _ = seenPods.withLock { $0.removeValue(forKey: "\(key)") }
      return .awaitChange
    }
    let pod = cached.body
    let uid = cached.metadata.uid ?? ""
    let done = PodStatus.of(pod).isFinished
    let state = seenPods.withLock { $0["\(key)"] }
    if state == "finished" { return .awaitChange }
    let ns = key.namespace ?? ""
    if let owner = SecurityAudit.controllingJob(pod: pod) {
      do {
        let job = try await client.get(ChildResources.jobs, namespace: ns, name: owner.name, as: JSONValue.self)
        if job[path: "metadata", "uid"]?.stringValue == owner.uid {
          // The Job is audited itself.
          seenPods.withLock { $0["\(key)"] = "finished" }
          return .awaitChange
        }
      } catch let e as KubeError where e.isNotFound {
        // Its Job is gone: the Pod is on its own.
      }
    }
    if state == nil {
      metrics?.unexpectedWorkloads.inc([ns, "Pod", RunOrigin.foreign.rawValue])
      metrics?.runs.inc([ns, "", RunOrigin.foreign.rawValue])
      let by = SecurityAudit.contentOwners(pod).sorted().joined(separator: ", ")
      recorder?.record(
        cached, type: .warning, reason: "UnexpectedBackupPod",
        message: "Pod \(ns)/\(key.name) (uid \(uid)) is not part of a Job of the backup namespace; written by "
          + "\(by.isEmpty ? "an unknown client" : by).")
      logger.warning("unexpected backup pod", metadata: ["object": "Pod \(ns)/\(key.name)"])
    }
    if done {
      account(
        pods: [pod], object: cached.objectReference, display: "Pod \(ns)/\(key.name)", namespace: ns, policy: "",
        origin: .foreign)
    }
    seenPods.withLock { $0["\(key)"] = done ? "finished" : "started" }
    return .awaitChange
  }
}
