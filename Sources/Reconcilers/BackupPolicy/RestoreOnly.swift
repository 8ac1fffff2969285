import DRAPI
import Foundation
import KubeCore

/// The status of a restore-only policy (spec.mode RestoreOnly, or the controller's `--restore-only`): a disaster
/// recovery cluster that applies the primary's policies from git and restores from their repositories, never writing
/// to them.
///
/// - Ready is True with reason RestoreOnly (unless the spec or its Secrets have a problem: then False as always).
/// - ScheduleActive is False with reason RestoreOnly; status.nextScheduledRun is unset.
/// - RPOMet is Unknown with reason RestoreOnly: not evaluated, since this cluster takes no backups (the cluster that
///   backs up holds the RPO); status.rpoAgeSeconds is unset and no RPOViolated Event is recorded.
/// - KeyRotationDue is False with reason RestoreOnly; status.nextKeyRotation is unset.
/// - RetentionApplied, RepositoryVerified, ReplicasInSync and ReplicaKeyRotationDue are removed (nothing here
///   prunes, verifies or copies);
///   status.replicas stays as it was, since restores from a replica read the copies' ids from it.
public enum RestoreOnlyStatus {
  /// The condition reason of everything a restore-only policy does not do.
  public static let reason = "RestoreOnly"

  /// Why the policy is restore-only, for messages.
  public static func why(_ policy: BackupPolicy, settings: ControllerSettings) -> String {
    policy.spec.isRestoreOnly ? "spec.mode is RestoreOnly" : "the controller runs with --restore-only"
  }

  /// Ready's message for a restore-only policy whose children are in place.
  public static func summary(_ policy: BackupPolicy, settings: ControllerSettings, repository: String) -> String {
    var s =
      "Restore-only (\(why(policy, settings: settings))): RecoveryPlans and DRDrills restore from \(repository); no "
      + "backup, prune, verify, key rotation, replica copy or repository deletion runs from this cluster."
    var ignored: [String] = []
    if policy.spec.trigger != nil { ignored.append("spec.trigger") }
    if policy.spec.deleteBackupsOnDelete == true { ignored.append("spec.deleteBackupsOnDelete") }
    if !ignored.isEmpty { s += " Ignored here: \(ignored.joined(separator: ", "))." }
    return s
  }

  /// Rewrites `outcome` (as `BackupPolicyStatusLogic.compute` left it) for a restore-only policy.
  public static func apply(_ outcome: inout StatusOutcome, policy: BackupPolicy, now: Date) {
    var s = outcome.status
    var conditions = s.conditions ?? []
    let generation = policy.metadata.generation
    func set(_ type: String, _ status: ConditionStatus, _ message: String) {
      conditions.setCondition(
        type: type, status: status, reason: reason, message: message, observedGeneration: generation, now: now)
    }
    let ready = conditions.condition(BackupPolicyCondition.ready)
    if ready?.status == .true {
      set(BackupPolicyCondition.ready, .true, ready?.message ?? "Restore-only.")
    }
    set(
      BackupPolicyCondition.scheduleActive, .false,
      "No backups are scheduled: the policy is restore-only; RecoveryPlans and DRDrills restore from its repository.")
    set(
      BackupPolicyCondition.rpoMet, .unknown,
      "Not evaluated: the policy is restore-only, so this cluster takes no backups; the cluster that backs up to the "
        + "repository holds the RPO.")
    set(
      BackupPolicyCondition.keyRotationDue, .false,
      "Keys are not rotated from a restore-only policy; the cluster that backs up rotates them.")
    for type in [
      BackupPolicyCondition.retentionApplied, BackupPolicyCondition.repositoryVerified,
      BackupPolicyCondition.replicasInSync, BackupPolicyCondition.replicaKeyRotationDue,
    ] {
      conditions.removeCondition(type)
    }
    s.conditions = conditions
    s.nextScheduledRun = nil
    s.nextKeyRotation = nil
    s.rpoAgeSeconds = nil
    outcome.status = s
    outcome.events.removeAll { $0.reason == "RPOViolated" }
  }
}
