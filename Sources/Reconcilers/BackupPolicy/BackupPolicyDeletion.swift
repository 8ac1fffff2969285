import DRAPI
import Foundation
import KubeCore

/// One existing child of a policy, as observed: enough to delete it.
public struct ObservedChild: Sendable, Hashable {
  public var resource: ResourceDescriptor
  public var namespace: String
  public var name: String
  /// Its `dr.botrt.io/component` label.
  public var component: String?

  public init(resource: ResourceDescriptor, namespace: String, name: String, component: String? = nil) {
    self.resource = resource
    self.namespace = namespace
    self.name = name
    self.component = component
  }
}

/// What deleting a policy needs, read before anything is written (`BackupPolicyReconciler.observeDeletion`).
public struct BackupPolicyDeletionWorld: Sendable {
  public var policy: BackupPolicy
  public var now: Date
  public var settings: ControllerSettings
  /// The policy's labelled children (Jobs included) in its namespace, its backup and work namespaces and the
  /// controller's backup namespace.
  public var children: [ObservedChild] = []
  /// The deletion Job's run, when it exists (observed only when the deletion is asked and not recorded yet).
  public var deletionRun: BackupRun?
  /// The Secrets the spec names, read only when the deletion Job is to start; the error text when they could not be.
  public var secrets: Result<[String: Secret], DeletionReadError>?
  /// Whether another policy that is not being deleted remains (the shared Calico policy stays while one does).
  public var othersRemain = false

  public init(policy: BackupPolicy, now: Date, settings: ControllerSettings) {
    self.policy = policy
    self.now = now
    self.settings = settings
  }
}

/// Why what the deletion Job needs could not be read (its text goes into the BackupsNotDeleted Event).
public struct DeletionReadError: Error, Sendable, Hashable, CustomStringConvertible {
  public var description: String
  public init(_ error: any Error) { description = "\(error)" }
}

/// What to do with a policy that is being deleted (`BackupPolicyDeletion.decide`).
public enum BackupPolicyDeletionStep: Sendable {
  /// The deletion Job runs: look again in `BackupPolicyReconciler.deletionPollSeconds`.
  case waitForDeletion
  /// Stop every run (`stop`, deleted), apply the deletion Job's identity, Secrets and isolation, then the Job
  /// (`apply`, in order), record `event`, and look again.
  case startDeletion(stop: [ObservedChild], apply: [DesiredChild], event: PlannedEvent)
  /// Record the deletion's outcome (`recorded`: Event and the BackupsDeleted condition) when there is one, delete the
  /// children (`delete`), then record `events`; the finalizer can go.
  case cleanup(recorded: PlannedEvent?, delete: [ObservedChild], deleteCalico: Bool, events: [PlannedEvent])
}

/// Deleting a policy: its children always, its stored backups with spec.deleteBackupsOnDelete (a deletion Job that
/// is started, waited for and reported before the children go). Pure: observed world in, step out.
public enum BackupPolicyDeletion {
  /// The condition recording the outcome of the deletion Job while the policy is being deleted.
  public static let condition = "BackupsDeleted"

  /// The kinds pruned and cleaned up per policy (namespaced, found by the owner labels).
  public static func ownedKinds(_ settings: ControllerSettings) -> [ResourceDescriptor] {
    [
      ChildResources.cronJobs(apiVersion: settings.cronJobAPIVersion), ChildResources.networkPolicies,
      ChildResources.roleBindings, ChildResources.roles, ChildResources.serviceAccounts, ChildResources.secrets,
    ]
  }

  /// The namespaces of the owned kinds: the policy's, its backup namespace and the controller's.
  public static func childNamespaces(_ policy: BackupPolicy, settings: ControllerSettings) -> [String] {
    let ns = policy.metadata.namespace ?? "default"
    return Set([ns, BackupPolicyChildren.backupNamespace(policy, settings: settings), settings.backupNamespace])
      .sorted()
  }

  /// The namespaces whose Jobs of the policy the cleanup deletes: the policy's and its backup namespace.
  public static func jobNamespaces(_ policy: BackupPolicy, settings: ControllerSettings) -> [String] {
    let ns = policy.metadata.namespace ?? "default"
    return Set([ns, BackupPolicyChildren.backupNamespace(policy, settings: settings)]).sorted()
  }

  /// The namespaces the runs (CronJobs and Jobs) that the deletion stops live in: the policy's and the one its Jobs
  /// run in.
  public static func runNamespaces(_ policy: BackupPolicy, settings: ControllerSettings) -> [String] {
    let ns = policy.metadata.namespace ?? "default"
    return Set([ns, BackupPolicyChildren.workloadNamespace(policy, settings: settings)]).sorted()
  }

  /// Whether the stored backups are to be deleted and that is not recorded yet: spec.deleteBackupsOnDelete, not a
  /// restore-only policy (it never deletes the repository it restores from), no BackupsDeleted condition.
  public static func deletionPending(_ policy: BackupPolicy, settings: ControllerSettings) -> Bool {
    policy.spec.deleteBackupsOnDelete == true && !BackupPolicyChildren.isRestoreOnly(policy, settings: settings)
      && policy.status?.conditions?.condition(condition) == nil
  }

  /// The next step for a policy being deleted.
  public static func decide(_ w: BackupPolicyDeletionWorld) -> BackupPolicyDeletionStep {
    let policy = w.policy
    let repo = BackupPolicyLogic.repositoryText(policy)
    guard deletionPending(policy, settings: w.settings) else { return cleanup(w, recorded: nil) }
    if let run = w.deletionRun {
      if run.state == .running { return .waitForDeletion }
      return cleanup(w, recorded: BackupDeletion.event(run: run, repository: repo))
    }
    // No backup may start from now on (a new run would create the repository again): every CronJob and Job of the
    // policy where its runs live, but a deletion Job.
    let cronJobs = ChildResources.cronJobs(apiVersion: w.settings.cronJobAPIVersion)
    let runNS = Set(runNamespaces(policy, settings: w.settings))
    let stop = w.children.filter {
      runNS.contains($0.namespace)
        && ($0.resource == cronJobs
          || ($0.resource == ChildResources.jobs && $0.component != BackupDeletion.component))
    }
    // The Job's identity, Secrets and isolation, then the Job.
    do {
      let secrets = try (w.secrets ?? .success([:])).get()
      let eff = try EffectivePolicy(spec: policy.spec, now: w.now)
      let inputs = ChildInputs(policy: policy, effective: eff, settings: w.settings, secrets: secrets)
      let children = try BackupPolicyChildren.build(inputs).filter {
        ![cronJobs, ChildResources.jobs, ChildResources.globalNetworkPolicies].contains($0.resource)
      }
      let job = try BackupPolicyChildren.deleteRepositoryJob(inputs)
      let names = ChildNames(namespace: policy.metadata.namespace ?? "default", name: policy.name)
      return .startDeletion(
        stop: stop, apply: children + [job],
        event: PlannedEvent(
          warning: false, reason: "DeletingBackups",
          message: "spec.deleteBackupsOnDelete is set: Job \(names.deleteRepositoryJob) deletes the repository "
            + "\(repo)."))
    } catch {
      return cleanup(
        w,
        recorded: PlannedEvent(
          warning: true, reason: "BackupsNotDeleted",
          message: "spec.deleteBackupsOnDelete is set, but the deletion Job cannot run: \(error). The stored "
            + "backups in \(repo) were kept."))
    }
  }

  /// Removes the policy's children in every namespace (Jobs included), and the shared Calico policy when no other
  /// policy remains. Stored backups are never touched here; why they were kept is said in an Event.
  static func cleanup(_ w: BackupPolicyDeletionWorld, recorded: PlannedEvent?) -> BackupPolicyDeletionStep {
    let policy = w.policy
    let kinds = Set(ownedKinds(w.settings))
    let kindNS = Set(childNamespaces(policy, settings: w.settings))
    let jobNS = Set(jobNamespaces(policy, settings: w.settings))
    let owned = w.children.filter { kinds.contains($0.resource) && kindNS.contains($0.namespace) }
    let jobs = w.children.filter { $0.resource == ChildResources.jobs && jobNS.contains($0.namespace) }
    var events: [PlannedEvent] = []
    let repo = BackupPolicyLogic.repositoryText(policy)
    if policy.spec.deleteBackupsOnDelete != true {
      events.append(
        PlannedEvent(
          warning: false, reason: "BackupsKept",
          message: "The stored backups in \(repo) were kept (spec.deleteBackupsOnDelete is not set)."))
    } else if BackupPolicyChildren.isRestoreOnly(policy, settings: w.settings) {
      events.append(
        PlannedEvent(
          warning: false, reason: "BackupsKept",
          message: "The stored backups in \(repo) were kept: the policy is restore-only, so "
            + "spec.deleteBackupsOnDelete does not apply (the cluster that backs up deletes them)."))
    }
    return .cleanup(
      recorded: recorded, delete: owned + jobs, deleteCalico: w.settings.calicoServed && !w.othersRemain,
      events: events)
  }
}

/// Deleting the stored backups when a policy with spec.deleteBackupsOnDelete is deleted.
public enum BackupDeletion {
  /// The component label of the deletion Job.
  public static let component = "delete-repository"

  /// The Event reporting a finished deletion Job: what was deleted, and what Object Lock kept.
  public static func event(run: BackupRun, repository: String) -> PlannedEvent {
    let deleted = run.result?.objectsDeleted ?? 0
    let retained = run.result?.objectsRetained ?? 0
    if run.state == .succeeded && retained == 0 {
      return PlannedEvent(
        warning: false, reason: "BackupsDeleted",
        message: "spec.deleteBackupsOnDelete is set: Job \(run.jobName) deleted the repository \(repository) "
          + "(\(deleted) objects).")
    }
    if run.state == .succeeded {
      let first = run.result?.warnings?.first.map { " First: \($0)." } ?? ""
      return PlannedEvent(
        warning: true, reason: "BackupsRetained",
        message: "spec.deleteBackupsOnDelete is set: Job \(run.jobName) deleted \(deleted) objects of \(repository); "
          + "\(retained) objects are retained by Object Lock and were not deleted, and the repository's config and "
          + "key files were kept so that they stay readable until their retention ends.\(first)")
    }
    var why = run.result?.errors?.joined(separator: "; ") ?? run.failureMessage ?? "no result was written"
    if why.isEmpty { why = "no result was written" }
    return PlannedEvent(
      warning: true, reason: "BackupsNotDeleted",
      message: "spec.deleteBackupsOnDelete is set, but Job \(run.jobName) could not delete the repository "
        + "\(repository): \(why). The stored backups were kept"
        + (deleted > 0 ? " (\(deleted) objects had been deleted before the failure)." : "."))
  }
}
