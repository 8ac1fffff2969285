import DRAPI
import EngineContract
import Foundation
import KubeCore

/// Where a Job (or Pod) of a backup namespace came from, as far as the API can tell.
public enum RunOrigin: String, Sendable, Hashable, CaseIterable {
  /// Created by the 1.20 CronJob controller from one of this controller's backup or prune CronJobs.
  case scheduled
  /// An on-demand Job this controller applied for a trigger.
  case onDemand = "on-demand"
  /// A key rotation, repository deletion or replica copy Job this controller applied for the policy.
  case maintenance
  /// Started by hand from one of this controller's CronJobs (`kubectl create job --from=cronjob/...`).
  case manual
  /// Anything else: not created by the controller nor by the CronJob controller from its CronJobs.
  case foreign

  /// Whether a run of this origin is one the controller planned (a schedule or a trigger it handled).
  public var expected: Bool { self == .scheduled || self == .onDemand || self == .maintenance }
}

/// Pure helpers of the security signals: who changed an object (managedFields), where a Job came from, whether a
/// failed run was refused by the repository. No I/O.
public enum SecurityAudit {
  /// The field manager of the Kubernetes controllers (the CronJob and job controllers write under it).
  public static let kubeControllerManager = "kube-controller-manager"
  /// The annotation `kubectl create job --from=cronjob/...` sets on the Job it creates.
  public static let manualInstantiation = "cronjob.kubernetes.io/instantiate"
  /// The component labels of the controller's maintenance Jobs (key rotation, repository deletion, replica copy).
  public static let maintenanceComponents: Set<String> = [
    KeyRotationLogic.component, BackupDeletion.component, ReplicaLabels.copyComponent, ReplicaKeyRotation.component,
  ]
  /// The annotation recording what the run auditor has counted of a Job: `started`, then `finished`.
  public static let auditAnnotation = "dr.botrt.io/audited"

  /// The managed-fields entries of an object: manager, operation, time and the top-level field sets it owns.
  public struct FieldOwner: Sendable, Hashable {
    public var manager: String
    public var operation: String
    public var time: String?
    /// Owns anything under `spec` (or, for Calico and RBAC objects, the top-level content fields).
    public var ownsContent: Bool
    /// Owns anything under `metadata.labels`.
    public var ownsLabels: Bool
  }

  /// Top-level fields that carry an object's content besides `spec` (RoleBindings have `subjects` and `roleRef`).
  static let contentFields = ["f:spec", "f:subjects", "f:roleRef", "f:rules"]

  /// The owners recorded in `metadata.managedFields`.
  public static func fieldOwners(_ object: JSONValue) -> [FieldOwner] {
    (object[path: "metadata", "managedFields"]?.arrayValue ?? []).map { e in
      let fields = e["fieldsV1"]
      return FieldOwner(
        manager: e["manager"]?.stringValue ?? "", operation: e["operation"]?.stringValue ?? "",
        time: e["time"]?.stringValue,
        ownsContent: contentFields.contains { fields?[$0] != nil },
        ownsLabels: fields?[path: "f:metadata", "f:labels"] != nil)
    }
  }

  /// Managers other than `controller` owning content or labels of the object, sorted, without duplicates.
  public static func foreignManagers(_ object: JSONValue, controller: String = ChildLabels.controllerName) -> [String] {
    Array(
      Set(fieldOwners(object).filter { $0.manager != controller && ($0.ownsContent || $0.ownsLabels) }.map(\.manager))
    ).sorted()
  }

  /// Managers owning content of the object, sorted, without duplicates.
  public static func contentOwners(_ object: JSONValue) -> Set<String> {
    Set(fieldOwners(object).filter(\.ownsContent).map(\.manager))
  }

  /// Where a Job came from. `managedCronJobUIDs` are the UIDs of this controller's CronJobs in the Job's namespace.
  ///
  /// A scheduled Job is controlled by one of those CronJobs, carries no manual-instantiation annotation and nobody
  /// but the Kubernetes controllers wrote its spec; an on-demand Job carries the run-token annotation and only this
  /// controller wrote its spec; a maintenance Job (key rotation, repository deletion, replica copy) carries one of
  /// their component labels and only this controller wrote its spec. Everything else is manual (`kubectl create job --from=cronjob/...`) or foreign.
  public static func origin(job: JSONValue, managedCronJobUIDs: Set<String>) -> RunOrigin {
    let owners = contentOwners(job)
    let annotations = job[path: "metadata", "annotations"]
    let controllerRef = (job[path: "metadata", "ownerReferences"]?.arrayValue ?? []).first {
      $0["controller"]?.boolValue == true
    }
    if let ref = controllerRef, ref["kind"]?.stringValue == "CronJob",
      let uid = ref["uid"]?.stringValue, managedCronJobUIDs.contains(uid)
    {
      if annotations?[manualInstantiation]?.stringValue == "manual" { return .manual }
      return owners.isSubset(of: [kubeControllerManager]) ? .scheduled : .foreign
    }
    let byController = owners.isSubset(of: [ChildLabels.controllerName]) && owners.contains(ChildLabels.controllerName)
    // The controller's own Jobs have no controlling owner, except where they run in the policy's namespace (a PVC
    // source: the claim can be mounted there only), where the BackupPolicy owns them.
    let plannedOwner =
      controllerRef == nil
      || (controllerRef?["kind"]?.stringValue == "BackupPolicy"
        && controllerRef?["apiVersion"]?.stringValue?.hasPrefix("\(DRGroup.group)/") == true)
    if plannedOwner, byController, annotations?[ChildLabels.runToken] != nil {
      return .onDemand
    }
    if plannedOwner, byController,
      let component = job[path: "metadata", "labels", ChildLabels.component]?.stringValue,
      maintenanceComponents.contains(component)
    {
      return .maintenance
    }
    return .foreign
  }

  /// The Job controlling a Pod (name and uid), if any.
  public static func controllingJob(pod: JSONValue) -> (name: String, uid: String)? {
    guard
      let ref = (pod[path: "metadata", "ownerReferences"]?.arrayValue ?? []).first(where: {
        $0["controller"]?.boolValue == true && $0["kind"]?.stringValue == "Job"
      }), let name = ref["name"]?.stringValue, let uid = ref["uid"]?.stringValue
    else { return nil }
    return (name, uid)
  }

  /// Whether a Job has finished (a Complete or Failed condition that is True).
  public static func isFinished(_ job: JSONValue) -> Bool {
    JobStatus.of(job).isFinished
  }

  /// Whether a Job counts as an active run: not finished and not being deleted.
  public static func isActive(_ job: JSONValue) -> Bool {
    !isFinished(job) && job[path: "metadata", "deletionTimestamp"] == nil
  }

  /// The reason a failed run was refused by the repository or its keys, nil when it failed for another reason
  /// (or did not fail). Exit codes are the engine's (`EngineExitCode`, docs/repository-format.md §15): 12 wrong key
  /// and 13 KMS error, 5 integrity failure (a forged, replayed or wrongly keyed object); 4 is a storage error, a refusal only when the store
  /// answered AccessDenied/Forbidden (a full disk or an unreachable endpoint is not).
  public static func refusal(exitCode: Int32?, errors: [String]) -> String? {
    switch exitCode {
    case EngineExitCode.kms?, EngineExitCode.wrongKey?: return "key"
    case EngineExitCode.integrity?: return "integrity"
    case EngineExitCode.storage?:
      let text = errors.joined(separator: " ").lowercased()
      let markers = [
        "accessdenied", "access denied", "forbidden", " 403", "(403", "403 ", "invalidaccesskeyid",
        "signaturedoesnotmatch", "unauthorized", " 401",
      ]
      return markers.contains { text.contains($0) } ? "access-denied" : nil
    default: return nil
    }
  }

  /// The newest engine result among the terminated containers of a Job's Pods (any container, since a foreign Job
  /// need not name its container `backup`), with that container's exit code.
  public static func newestResult(pods: [JSONValue]) -> (result: EngineResult?, exitCode: Int32?)? {
    var withResult: (at: Date, result: EngineResult, code: Int32?)? = nil
    var newest: (at: Date, code: Int32?)? = nil
    for pod in pods {
      for cs in PodStatus.of(pod).allContainerStatuses {
        guard let t = cs.terminated else { continue }
        let at = t.finishedDate ?? .distantPast
        let code = t.exitCode32
        if newest.map({ at >= $0.at }) ?? true { newest = (at, code) }
        if let r = EngineResult.parse(t.message), withResult.map({ at >= $0.at }) ?? true {
          withResult = (at, r, code)
        }
      }
    }
    if let w = withResult { return (w.result, w.code) }
    if let n = newest { return (nil, n.code) }
    return nil
  }
}
