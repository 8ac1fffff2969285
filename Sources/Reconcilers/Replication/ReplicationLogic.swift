import DRAPI
import Foundation
import KubeCore

/// A copy Job the reconciler should create.
public struct PlannedCopy: Sendable, Hashable {
  /// Index in spec.replicas.
  public var index: Int
  /// The replica's name.
  public var replica: String
  /// The primary's snapshot to copy (the copy takes every snapshot the replica lacks).
  public var snapshot: String
  /// Completion time of the backup that made it.
  public var backupTime: Date
}

/// What the replication logic decided.
public struct ReplicationOutcome: Sendable {
  /// Copy Jobs to create.
  public var create: [PlannedCopy] = []
  /// Finished (or orphaned) copy Jobs to delete.
  public var delete: [String] = []
  /// Events for what changed.
  public var events: [PlannedEvent] = []
}

/// Pure status logic of replication: per-replica state and lag, the ReplicasInSync condition, the counted replicas'
/// part in RPOMet and status.rpoAgeSeconds, the copy Jobs to start and the old ones to delete.
public enum ReplicationLogic {
  /// Updates `outcome` (computed by BackupPolicyStatusLogic for the primary) with the replicas. `copies` are the
  /// policy's copy Jobs still in the cluster; `canCopy` is false when the policy is not Ready (no Job is created).
  /// `held` names replicas whose copies wait for a key rotation (ReplicaKeyRotation).
  public static func apply(
    policy: BackupPolicy, copies: [CopyRun], canCopy: Bool, held: Set<String> = [], now: Date,
    outcome: inout StatusOutcome
  ) -> ReplicationOutcome {
    var r = ReplicationOutcome()
    let replicas = policy.spec.replicas ?? []
    let previous = policy.status?.replicas ?? []
    var s = outcome.status
    let generation = policy.metadata.generation
    var conditions = s.conditions ?? []
    let wanted = Set(replicas.map(\.name))

    // Copy Jobs of replicas no longer in the spec go; finished Jobs beyond the history limits go.
    for c in copies where !wanted.contains(c.replica) { r.delete.append(c.jobName) }
    // Never negative: dropFirst traps on a negative count (the schema's minimum is 0; validation says so too).
    let keepOK = max(0, Int(policy.spec.successfulJobsHistoryLimit ?? 3))
    let keepFailed = max(0, Int(policy.spec.failedJobsHistoryLimit ?? 3))

    if replicas.isEmpty {
      s.replicas = nil
      conditions.removeAll { $0.type == BackupPolicyCondition.replicasInSync }
      s.conditions = conditions
      outcome.status = s
      return r
    }

    let primary = s.lastSnapshot
    // The primary's newest data point in time (RPO ages count from it), as the copies record it.
    let primaryTime = s.lastSnapshotTime ?? s.lastSuccessfulBackup
    var out: [ReplicaStatus] = []
    var requeue: [Date] = []
    for (index, spec) in replicas.enumerated() {
      var st = previous.first { $0.name == spec.name } ?? ReplicaStatus(name: spec.name)
      let mine = copies.filter { $0.replica == spec.name }
      // Newest first. Kubernetes times have whole seconds, and a fast copy started right after the previous one can
      // finish within the same second: ties go to the copy of the newer backup.
      let byFinish = mine.filter { $0.state != .running && $0.finishTime != nil }.sorted {
        if $0.finishTime! != $1.finishTime! { return $0.finishTime! > $1.finishTime! }
        return ($0.sourceBackupTime ?? .distantPast) > ($1.sourceBackupTime ?? .distantPast)
      }
      // A finished copy the status has not seen: it finished later than the recorded one, or in the same second
      // with a newer backup (comparing finish times alone lost such a copy for good, and the replica stayed
      // "Copying" behind a copy that had succeeded).
      func unseen(_ c: CopyRun, by st: ReplicaStatus) -> Bool {
        guard let t = c.finishTime, let last = st.lastCopyTime else { return true }
        return t > last
          || (t == last && (c.sourceBackupTime ?? .distantPast) > (st.lastCopiedBackupTime ?? .distantPast))
      }
      r.delete += byFinish.filter { $0.state == .succeeded }.dropFirst(keepOK).map(\.jobName)
      r.delete += byFinish.filter { $0.state == .failed }.dropFirst(keepFailed).map(\.jobName)

      // The newest successful copy not yet in status.
      if let ok = byFinish.first(where: { $0.state == .succeeded }), let t = ok.finishTime, unseen(ok, by: st) {
        let newer = (ok.sourceBackupTime ?? .distantPast) >= (st.lastCopiedBackupTime ?? .distantPast)
        if newer {
          let target = ok.result?.copied?.first { $0.source.hasPrefix(ok.sourceSnapshot) }?.target
          st.replicaSnapshot = target ?? (st.lastCopiedSnapshot == ok.sourceSnapshot ? st.replicaSnapshot : nil)
          st.lastCopiedSnapshot = ok.sourceSnapshot
          st.lastCopiedBackupTime = ok.sourceBackupTime
        }
        st.lastCopyTime = t
        // The key the copy used wraps the replica from now on (a new replica sharing the policy's encryption is
        // created under the primary's current key).
        if let k = ok.targetKey { st.currentKey = k.isEmpty ? nil : k }
        let n = ok.result?.copied?.count ?? 0
        let skipped = ok.result?.skipped?.count ?? 0
        st.message =
          "Copy Job \(ok.jobName) brought snapshot \(ok.sourceSnapshot) to the replica at \(KubeJSON.formatDate(t)) "
          + "(\(n) snapshot\(n == 1 ? "" : "s") copied, \(skipped) already there"
          + (ok.result?.bytesStored.map { ", \($0) bytes stored" } ?? "") + ")."
        r.events.append(
          PlannedEvent(warning: false, reason: "ReplicaCopied", message: "Replica \(spec.name): \(st.message!)"))
      }

      // The replica's pins: the target identity of the first successful copy whose result names the replica's
      // repository as the spec names it now; dropped when the spec moves it (as the primary's, RepositoryPinReport).
      let replicaURL = ReplicaInvocation.repositoryURL(policy.spec, spec)
      let pins = RepositoryPinReport.identity(
        previous: st.repositoryIdentity,
        reports: mine.filter { $0.state == .succeeded }.map {
          RepositoryPinReport(
            jobName: $0.jobName, finishTime: $0.finishTime, repository: $0.result?.targetRepository,
            id: $0.result?.targetRepositoryId, signingKey: $0.result?.targetSigningKey)
        }, repositoryURL: replicaURL, stated: spec.repository.expectedIdentity)
      if pins.identity != st.repositoryIdentity {
        st.repositoryIdentity = pins.identity
        if let id = pins.identity {
          r.events.append(
            PlannedEvent(
              warning: false, reason: "RepositoryPinned",
              message:
                "Replica \(spec.name): repository \(id.repository) has id \(id.id) and signing key "
                + "\(id.signingKey.prefix(16))... (from copy Job \(id.recordedFrom ?? "unknown")); every later Job that "
                + "opens the replica requires them."))
        }
      }
      if let w = pins.conflict {
        r.events.append(
          PlannedEvent(warning: true, reason: "RepositoryIdentityConflict", message: "Replica \(spec.name): \(w)"))
      }
      if let w = RepositoryPinReport.mismatchWarning(
        recorded: pins.identity, stated: spec.repository.expectedIdentity, repositoryURL: replicaURL,
        field: "spec.replicas[\(index)].repository.expectedIdentity",
        statusField: "status.replicas[\(index)].repositoryIdentity")
      {
        r.events.append(
          PlannedEvent(warning: true, reason: "RepositoryIdentityMismatch", message: "Replica \(spec.name): \(w)"))
      }

      let running = mine.first { $0.state == .running }
      let newestFinished = byFinish.first
      var failed: CopyRun? = nil
      if let f = newestFinished, f.state == .failed, unseen(f, by: st) {
        failed = f
      }
      let inSync = primary != nil && st.lastCopiedSnapshot == primary

      if let running {
        st.state = "Copying"
        st.copyJob = running.jobName
      } else if inSync {
        st.state = "InSync"
        st.copyJob = newestFinished?.jobName ?? st.copyJob
      } else if let primary, held.contains(spec.name), !mine.contains(where: { $0.sourceSnapshot == primary }) {
        st.message =
          "Snapshot \(primary) is copied once the replica's data keys are rewrapped under the primary's new key "
          + "(see keyRotation)."
      } else if let primary, let primaryTime, canCopy,
        !mine.contains(where: { $0.sourceSnapshot == primary })
      {
        // A new snapshot the replica lacks, and no copy of this replica runs: start one.
        r.create.append(PlannedCopy(index: index, replica: spec.name, snapshot: primary, backupTime: primaryTime))
        st.state = "Copying"
        st.copyJob = ChildNames(namespace: policy.metadata.namespace ?? "default", name: policy.name).copyJob(
          replica: spec.name, snapshot: primary)
      } else if let f = failed {
        st.state = "Failed"
        st.copyJob = f.jobName
        let message =
          "Copy Job \(f.jobName) of snapshot \(f.sourceSnapshot) failed at \(KubeJSON.formatDate(f.finishTime!)): "
          + "\(f.failureMessage ?? "no result was written"). The next successful backup starts a new copy."
        if st.message != message {
          r.events.append(
            PlannedEvent(warning: true, reason: "ReplicaCopyFailed", message: "Replica \(spec.name): \(message)"))
        }
        st.message = message
      } else if st.lastCopiedSnapshot == nil {
        st.state = "Pending"
        if st.message == nil || primary == nil { st.message = "No backup has been copied to this replica yet." }
      }

      if let c = st.lastCopiedBackupTime, let p = primaryTime {
        st.lagSeconds = Int64(max(0, p.timeIntervalSince(c)).rounded(.down))
      } else {
        st.lagSeconds = nil
      }
      out.append(st)
    }
    s.replicas = out

    // ReplicasInSync.
    func set(_ type: String, _ status: ConditionStatus, _ reason: String, _ message: String) {
      conditions.setCondition(
        type: type, status: status, reason: reason, message: message, observedGeneration: generation, now: now)
    }
    let failedNames = out.filter { $0.state == "Failed" }.map(\.name)
    let behind = out.filter { $0.state != "InSync" }.map(\.name)
    if !failedNames.isEmpty {
      set(
        BackupPolicyCondition.replicasInSync, .false, "ReplicaCopyFailed",
        "The last copy to \(list(failedNames)) failed; see status.replicas.")
    } else if let p = primary, behind.isEmpty {
      set(
        BackupPolicyCondition.replicasInSync, .true, "InSync",
        "Every replica (\(list(out.map(\.name)))) holds snapshot \(p), the newest backup.")
    } else if primary == nil {
      set(BackupPolicyCondition.replicasInSync, .unknown, "NoBackupYet", "No backup has succeeded yet to copy.")
    } else {
      set(
        BackupPolicyCondition.replicasInSync, .false, "Copying",
        "\(list(behind)) \(behind.count == 1 ? "does" : "do") not hold snapshot \(primary!) yet; copying.")
    }

    // RPOMet and the RPO age with the replicas that count.
    let counted = replicas.filter { $0.countsForRPO == true }.compactMap { spec in out.first { $0.name == spec.name } }
    if let target = s.rpoTargetSeconds, !counted.isEmpty, let primaryTime {
      let targetText = "\(DurationText.format(seconds: target)) (\(s.rpoSource ?? "tier"))"
      var age = s.rpoAgeSeconds ?? 0
      var late: [(String, Date?)] = []
      var deadlines: [Date] = []
      for c in counted {
        guard let t = c.lastCopiedBackupTime else {
          late.append((c.name, nil))
          continue
        }
        age = max(age, Int64(max(0, now.timeIntervalSince(t)).rounded(.down)))
        let deadline = t.addingTimeInterval(TimeInterval(target))
        if now > deadline { late.append((c.name, t)) } else { deadlines.append(deadline) }
      }
      s.rpoAgeSeconds = age
      let before = policy.status?.conditions?.condition(BackupPolicyCondition.rpoMet)
      let primaryMet = conditions.condition(BackupPolicyCondition.rpoMet)
      if primaryMet?.status == .true {
        if late.isEmpty {
          let until = deadlines.min()!
          set(
            BackupPolicyCondition.rpoMet, .true, "WithinRPO",
            "\(primaryMet!.message) The replicas that count (\(list(counted.map(\.name)))) hold backups within it "
              + "until \(KubeJSON.formatDate(until)).")
          requeue.append(until.addingTimeInterval(1))
        } else {
          // A replica that has never been copied to is given the RPO target from the primary's first success.
          let never = late.filter { $0.1 == nil }.map(\.0)
          let old = late.filter { $0.1 != nil }
          let grace = primaryTime.addingTimeInterval(TimeInterval(target))
          if old.isEmpty && now <= grace {
            set(
              BackupPolicyCondition.rpoMet, .unknown, "AwaitingReplicaCopy",
              "\(primaryMet!.message) \(list(never)) \(never.count == 1 ? "holds" : "hold") no copy yet; the RPO "
                + "target of \(targetText) applies to \(never.count == 1 ? "it" : "them") from "
                + "\(KubeJSON.formatDate(grace)).")
            requeue.append(grace.addingTimeInterval(1))
          } else {
            var parts = old.map {
              "replica \($0.0)'s newest backup, of \(KubeJSON.formatDate($0.1!)), is older than the RPO target of "
                + "\(targetText) since \(KubeJSON.formatDate($0.1!.addingTimeInterval(TimeInterval(target))))"
            }
            if !never.isEmpty { parts.append("\(list(never)) \(never.count == 1 ? "holds" : "hold") no copy") }
            set(
              BackupPolicyCondition.rpoMet, .false, "ReplicaRPOViolated",
              "The primary is within its RPO, but " + parts.joined(separator: "; ") + ".")
          }
        }
      }
      if let now = conditions.condition(BackupPolicyCondition.rpoMet), now.status == .false, before?.status != .false,
        !outcome.events.contains(where: { $0.reason == "RPOViolated" })
      {
        r.events.append(PlannedEvent(warning: true, reason: "RPOViolated", message: now.message))
      }
    }

    s.conditions = conditions
    outcome.status = s
    if let m = requeue.min() { outcome.requeueAt = min(outcome.requeueAt ?? m, m) }
    return r
  }

  static func list(_ names: [String]) -> String {
    switch names.count {
    case 0: return ""
    case 1: return names[0]
    default: return names.dropLast().joined(separator: ", ") + " and " + names.last!
    }
  }
}
