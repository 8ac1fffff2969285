import DRAPI
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Synchronization

/// The security metrics (docs/security-monitoring.md): the signals of the four alerts of
/// manifests/monitoring/prometheusrule.yaml.
public struct SecurityMetrics: Sendable {
  /// NetworkIsolationBreach: isolation objects changed or deleted by someone else and restored.
  public let isolationDrift: Counter
  /// EncryptionKeyAccess: data-key unwraps by run origin.
  public let keyUnwraps: Counter
  /// BackupConnectionSpike: runs seen, by origin.
  public let runs: Counter
  /// BackupConnectionSpike: storage requests the runs reported.
  public let storageRequests: Counter
  /// UnauthorizedBackupAccess: runs the repository or its keys refused.
  public let refused: Counter
  /// UnauthorizedBackupAccess: Jobs and Pods of the backup namespace the controller did not create.
  public let unexpectedWorkloads: Counter
  /// Time-bounded access: 1 while a policy's storage egress and credentials binding are granted.
  public let accessGranted: Gauge

  public init(_ r: MetricsRegistry) {
    isolationDrift = r.counter(
      "botrt_isolation_drift_total",
      help: "NetworkPolicies and Calico policies of the backup isolation changed or deleted by another client, "
        + "then restored.", labels: ["namespace", "kind", "name", "action"])
    keyUnwraps = r.counter(
      "botrt_key_unwrap_total", help: "Data-key unwraps reported by finished engine runs.",
      labels: ["namespace", "policy", "key", "origin"])
    runs = r.counter(
      "botrt_backup_runs_total", help: "Engine runs (Jobs) seen starting in backup namespaces.",
      labels: ["namespace", "policy", "origin"])
    storageRequests = r.counter(
      "botrt_storage_requests_total", help: "Storage requests reported by finished engine runs.",
      labels: ["namespace", "policy"])
    refused = r.counter(
      "botrt_backup_refused_total",
      help: "Engine runs refused by the repository: key or KMS errors, integrity failures, storage AccessDenied.",
      labels: ["namespace", "policy", "reason"])
    unexpectedWorkloads = r.counter(
      "botrt_unexpected_workloads_total",
      help: "Jobs and Pods in the backup namespace that the controller did not create.",
      labels: ["namespace", "kind", "origin"])
    accessGranted = r.gauge(
      "botrt_backup_access_granted",
      help: "1 while a policy's storage egress and credentials RoleBinding exist (a run is active).",
      labels: ["namespace", "policy"])
  }
}

/// The isolation objects the controller wants, by resource, namespace and name, as last applied. The BackupPolicy
/// reconciler and the run-access grants record what they apply and forget what they delete; the isolation guard
/// restores what is recorded here.
public final class IsolationIntent: Sendable {
  private let desired = Mutex<[String: DesiredChild]>([:])

  public init() {}

  static func key(_ resource: ResourceDescriptor, _ namespace: String?, _ name: String) -> String {
    "\(resource.group)/\(resource.plural)/\(namespace ?? "")/\(name)"
  }

  /// Whether the guard keeps objects of this kind.
  public static func guards(_ resource: ResourceDescriptor) -> Bool {
    resource == ChildResources.networkPolicies || resource == ChildResources.globalNetworkPolicies
  }

  /// Records an object about to be applied (only NetworkPolicies and Calico policies are kept).
  public func record(_ child: DesiredChild) {
    guard Self.guards(child.resource) else { return }
    desired.withLock { $0[Self.key(child.resource, child.namespace, child.name)] = child }
  }

  /// Forgets an object about to be deleted by the controller.
  public func forget(_ resource: ResourceDescriptor, namespace: String?, name: String) {
    _ = desired.withLock { $0.removeValue(forKey: Self.key(resource, namespace, name)) }
  }

  /// Forgets everything in a namespace (it is being deleted).
  public func forget(namespace: String) {
    desired.withLock { d in d = d.filter { $0.value.namespace != namespace } }
  }

  /// The object as the controller wants it, nil when it does not want it.
  public func wanted(_ resource: ResourceDescriptor, namespace: String?, name: String) -> DesiredChild? {
    desired.withLock { $0[Self.key(resource, namespace, name)] }
  }
}

/// Watches the isolation objects (NetworkPolicies labelled by the controller, the Calico GlobalNetworkPolicy) and
/// restores any that another client changed or deleted, with a Warning Event `IsolationDrift` naming the object and
/// the field managers that changed it, counted in `botrt_isolation_drift_total`.
///
/// A change is drift when the live object's content (`spec`) or labels differ from what the controller applied
/// and a field manager other than the controller owns content or labels (managedFields). Content another manager
/// added is removed as well (a replace, not an apply, which would leave fields it does not own). A deletion of an
/// object the controller still wants is drift; the API does not record who deletes, so the Event says so.
public final class IsolationGuard: Sendable {
  let client: KubeClient
  let intent: IsolationIntent
  let recorder: EventRecorder?
  let metrics: SecurityMetrics?
  let logger: Logger

  public init(
    client: KubeClient, intent: IsolationIntent, recorder: EventRecorder?, metrics: SecurityMetrics?, logger: Logger
  ) {
    self.client = client
    self.intent = intent
    self.recorder = recorder
    self.metrics = metrics
    self.logger = logger
  }

  /// A controller over one guarded kind (NetworkPolicies labelled `managed-by=botrt-controller`, or the Calico
  /// policies).
  public func controller(resource: ResourceDescriptor, informers: InformerRegistry, workers: Int = 1)
    -> Controller<Unstructured>
  {
    // A NetworkPolicy whose label is removed leaves a label-selected watch; the guard reads it live.
    let informer =
      resource == ChildResources.networkPolicies
      ? informers.managed(resource) : informers.informer(resource, namespace: nil)
    return Controller<Unstructured>(
      name: "isolation-\(resource.plural)", informer: informer, options: ControllerOptions(workers: workers),
      logger: logger, metrics: nil,
      reconcile: { key, store in try await self.reconcile(resource, key, store) })
  }

  /// Compares the live object with the wanted one and restores it when someone else changed or deleted it.
  public func reconcile(_ resource: ResourceDescriptor, _ key: ObjectKey, _ store: Store<Unstructured>) async throws
    -> ReconcileResult
  {
    guard let want = intent.wanted(resource, namespace: key.namespace, name: key.name) else { return .awaitChange }
    let live: JSONValue?
    do {
      live = try await client.get(resource, namespace: key.namespace, name: key.name, as: JSONValue.self)
    } catch let e as KubeError where e.isNotFound {
      live = nil
    }
    let display = want.displayName
    if let live {
      if live[path: "metadata", "deletionTimestamp"] != nil { return .awaitChange }
      let managers = SecurityAudit.foreignManagers(live)
      guard !managers.isEmpty, !Self.matches(live, want.body) else { return .awaitChange }
      var body = live
      body["spec"] = want.body["spec"]
      var labels = live[path: "metadata", "labels"]?.objectValue ?? [:]
      for (k, v) in want.body[path: "metadata", "labels"]?.objectValue ?? [:] { labels[k] = v }
      body["metadata"]?["labels"] = .object(labels)
      body["metadata"]?["managedFields"] = nil
      _ = try await client.replace(
        resource, namespace: key.namespace, name: key.name, body,
        options: WriteOptions(fieldManager: ChildLabels.controllerName))
      report(
        want, action: "modified",
        message: "\(display) was changed by \(managers.joined(separator: ", ")) (field managers); the controller "
          + "restored it.")
    } else {
      if let ns = key.namespace, try await namespaceGone(ns) {
        intent.forget(namespace: ns)
        return .awaitChange
      }
      _ = try await client.apply(
        resource, namespace: key.namespace, name: key.name, want.body, fieldManager: ChildLabels.controllerName,
        force: true)
      report(
        want, action: "deleted",
        message: "\(display) was deleted by another client (the API keeps no record of who deletes; see the "
          + "apiserver's audit log); the controller recreated it.")
    }
    return .awaitChange
  }

  /// Whether the live object has the wanted content and labels.
  static func matches(_ live: JSONValue, _ want: JSONValue) -> Bool {
    if live["spec"] != want["spec"] { return false }
    let labels = live[path: "metadata", "labels"]?.objectValue ?? [:]
    for (k, v) in want[path: "metadata", "labels"]?.objectValue ?? [:] where labels[k] != v { return false }
    return true
  }

  func namespaceGone(_ name: String) async throws -> Bool {
    do {
      let ns = try await client.get(ChildResources.namespaces, namespace: nil, name: name, as: JSONValue.self)
      return ns[path: "metadata", "deletionTimestamp"] != nil || ns[path: "status", "phase"] == "Terminating"
    } catch let e as KubeError where e.isNotFound {
      return true
    }
  }

  func report(_ want: DesiredChild, action: String, message: String) {
    metrics?.isolationDrift.inc([want.namespace ?? "", want.resource.kind, want.name, action])
    logger.warning(
      "isolation drift", metadata: ["object": "\(want.displayName)", "action": "\(action)", "message": "\(message)"])
    let ref = ObjectReference(
      apiVersion: want.body["apiVersion"]?.stringValue, kind: want.resource.kind, namespace: want.namespace,
      name: want.name)
    recorder?.record(ref, type: .warning, reason: "IsolationDrift", message: message)
  }
}
