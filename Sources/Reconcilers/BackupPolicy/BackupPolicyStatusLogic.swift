import DRAPI
import EngineContract
import Foundation
import KubeCore

/// One backup run (a Job of the backup CronJob or an on-demand Job) as observed from its Job and Pod.
public struct BackupRun: Sendable, Hashable {
  /// How the run ended so far.
  public enum State: String, Sendable, Hashable {
    case running, succeeded, failed
  }

  public var jobName: String
  public var state: State
  public var startTime: Date?
  public var finishTime: Date?
  /// The engine's result from the pod's termination message.
  public var result: EngineResult?
  /// The container's exit code, when terminated.
  public var exitCode: Int32?
  /// A failure text when the engine wrote no result (pod reason or the Job's failure condition).
  public var failureMessage: String?
  /// The Job's annotations.
  public var annotations: [String: String] = [:]
  /// A Pod of the Job in phase Running (whose log holds the engine's progress lines), while the run runs.
  public var runningPod: String?
  /// The export of the namespace's Kubernetes objects (spec.objects: the `objects` init container's result).
  public var objects: ObjectsResult?

  public init(
    jobName: String, state: State, startTime: Date? = nil, finishTime: Date? = nil, result: EngineResult? = nil,
    exitCode: Int32? = nil, failureMessage: String? = nil
  ) {
    self.jobName = jobName
    self.state = state
    self.startTime = startTime
    self.finishTime = finishTime
    self.result = result
    self.exitCode = exitCode
    self.failureMessage = failureMessage
  }

  /// Observes a run from a Job and its Pods (unstructured, as read from the API).
  public static func observe(job: JSONValue, pods: [JSONValue], container: String = "backup") -> BackupRun {
    let seen = RunObservation(job: job, pods: pods, container: container)
    var run = BackupRun(
      jobName: job[path: "metadata", "name"]?.stringValue ?? "", state: seen.state, startTime: seen.startTime,
      finishTime: seen.finishTime, failureMessage: seen.failureMessage)
    for (k, v) in job[path: "metadata", "annotations"]?.objectValue ?? [:] {
      if let v = v.stringValue { run.annotations[k] = v }
    }
    if run.state == .running {
      run.runningPod = pods.first { PodStatus.of($0).phase == "Running" }?[path: "metadata", "name"]?.stringValue
    }
    if let t = seen.terminated {
      run.result = EngineResult.parse(t.message)
      run.exitCode = seen.exitCode
      if run.state == .failed, run.result == nil, let reason = t.reason {
        run.failureMessage = "container exited with code \(run.exitCode ?? -1) (\(reason))"
      }
    }
    // spec.objects: the export's result; a failed export stopped the pod before the engine ran, and says why.
    for pod in pods {
      for cs in pod[path: "status", "initContainerStatuses"]?.arrayValue ?? []
      where cs["name"]?.stringValue == KubeObjects.container {
        guard let t = cs[path: "state", "terminated"] else { continue }
        run.objects = ObjectsResult.parse(t["message"]?.stringValue)
        if run.state == .failed, run.result == nil, let code = t["exitCode"]?.intValue, code != 0 {
          run.failureMessage =
            "the backup did not start: the export of the namespace's Kubernetes objects exited with \(code) ("
            + (run.objects.map(\.summary) ?? t["message"]?.stringValue.map { String($0.prefix(1024)) } ?? "no message")
            + ")"
        }
      }
    }
    // A hooked run whose gate failed never started its engine: the gate's message says why (spec.hooks).
    if run.state == .failed, run.result == nil {
      for pod in pods {
        for cs in pod[path: "status", "initContainerStatuses"]?.arrayValue ?? []
        where cs["name"]?.stringValue == HookKeys.gateContainer {
          guard let t = cs[path: "state", "terminated"], let code = t["exitCode"]?.intValue, code != 0 else { continue }
          let message = t["message"]?.stringValue.map { String($0.prefix(1024)) } ?? "no message"
          run.failureMessage = "the backup did not start: its hooks gate exited with \(code) (\(message))"
        }
      }
    }
    return run
  }
}

/// What a Job and its Pods say about one backup or copy run: its state and times from the Job's status and conditions,
/// and the newest terminated container of the given name among the Pods (whose message is the engine's result).
struct RunObservation {
  var state: BackupRun.State = .running
  var startTime: Date?
  var finishTime: Date?
  /// The Job's Failed condition, "reason: message".
  var failureMessage: String?
  /// `state.terminated` of the newest terminated container named `container`.
  var terminated: ContainerStateTerminated?

  var exitCode: Int32? { terminated?.exitCode32 }

  init(job: JSONValue, pods: [JSONValue], container: String) {
    let status = JobStatus.of(job)
    startTime = status.startDate
    let complete = status.complete
    if complete != nil || (status.succeeded ?? 0) > 0 {
      state = .succeeded
      finishTime = status.completionDate ?? complete?.lastTransitionDate
    } else if let c = status.failedCondition {
      state = .failed
      finishTime = c.lastTransitionDate
      failureMessage = c.summary
    }
    var best: (Date, ContainerStateTerminated)? = nil
    for pod in pods {
      for cs in PodStatus.of(pod).containerStatuses ?? [] where cs.name == container {
        guard let t = cs.terminated else { continue }
        let at = t.finishedDate ?? .distantPast
        if best == nil || at > best!.0 { best = (at, t) }
      }
    }
    terminated = best?.1
  }
}

/// An Event the reconciler should emit.
public struct PlannedEvent: Sendable, Hashable {
  public var warning: Bool
  public var reason: String
  public var message: String

  public init(warning: Bool, reason: String, message: String) {
    self.warning = warning
    self.reason = reason
    self.message = message
  }
}

/// What the status computation returns.
public struct StatusOutcome: Sendable {
  /// The new status.
  public var status: BackupPolicyStatus
  /// When to reconcile again even without a change (RPOMet flip or next run), nil = await change.
  public var requeueAt: Date?
  /// Events for what changed since the previous status.
  public var events: [PlannedEvent]
}

/// The problem that keeps a policy from being Ready, with a CamelCase reason.
public struct PolicyProblem: Sendable, Hashable {
  public var reason: String
  public var message: String

  public init(reason: String, message: String) {
    self.reason = reason
    self.message = message
  }

  /// A problem from a spec error, with the error's reason.
  public static func from(_ e: SpecError) -> PolicyProblem {
    PolicyProblem(reason: e.reason.rawValue, message: "\(e.field): \(e.message)")
  }
}

/// Pure status logic of a BackupPolicy: conditions, RPO, last backup, next run and the requeue moment.
public enum BackupPolicyStatusLogic {
  /// The repository identity to keep in status: `previous` while it belongs to `repositoryURL`; otherwise (none yet,
  /// or the spec moved the repository) the id and signing key of the oldest successful run whose result names
  /// `repositoryURL`, or nil. `conflict` names successful runs that reported another identity for the same
  /// repository (it was replaced between them): the oldest one is kept, and the later ones are the suspects.
  /// A nil `repositoryURL` (a spec the controller cannot run) keeps `previous`.
  /// `stated` is spec.repository.expectedIdentity (see `RepositoryPinReport.identity`).
  public static func repositoryIdentity(
    previous: RepositoryIdentity?, runs: [BackupRun], repositoryURL: String?,
    stated: ExpectedRepositoryIdentity? = nil
  ) -> (identity: RepositoryIdentity?, conflict: String?) {
    let reports = runs.filter { $0.state == .succeeded }.map {
      RepositoryPinReport(
        jobName: $0.jobName, finishTime: $0.finishTime, repository: $0.result?.repository,
        id: $0.result?.repositoryId, signingKey: $0.result?.signingKey)
    }
    return RepositoryPinReport.identity(
      previous: previous, reports: reports, repositoryURL: repositoryURL, stated: stated)
  }

  /// Computes the status. `effective` is nil when the spec is invalid (`problem` says why); `problem` is also set
  /// when the children could not be built or applied. `runs` are the policy's backup runs still in the cluster.
  public static func compute(
    policy: BackupPolicy, effective: EffectivePolicy?, problem: PolicyProblem?, runs: [BackupRun],
    backupNamespace: String, handledTrigger: String?, childSummary: String, now: Date, repositoryURL: String? = nil,
    claimsRPO: ClaimsRPO? = nil
  ) -> StatusOutcome {
    let previous = policy.status ?? BackupPolicyStatus()
    let generation = policy.metadata.generation
    var s = previous
    s.observedGeneration = generation
    s.backupNamespace = backupNamespace
    s.lastHandledTrigger = handledTrigger ?? previous.lastHandledTrigger
    var conditions = previous.conditions ?? []
    var events: [PlannedEvent] = []
    var requeue: [Date] = []
    func set(_ type: String, _ status: ConditionStatus, _ reason: String, _ message: String) {
      conditions.setCondition(
        type: type, status: status, reason: reason, message: message, observedGeneration: generation, now: now)
    }

    // Effective settings and schedule.
    var neverFires: PolicyProblem? = nil
    if let e = effective {
      s.rpoTargetSeconds = e.rpoSeconds.value
      s.rpoSource = e.rpoSeconds.source.description
      s.effectiveSchedule = e.schedule.value
      s.scheduleSource = e.schedule.source.description
      let next: Date?
      do {
        next = try CronSchedule(e.schedule.value).next(after: now)
      } catch {
        next = nil
      }
      if next == nil {
        neverFires = PolicyProblem(
          reason: "ScheduleNeverFires",
          message: "spec.schedule: '\(e.schedule.value)' parses but never fires (no such date); fix the day and month")
      }
      s.nextScheduledRun = policy.spec.suspend == true ? nil : next
      if let n = s.nextScheduledRun { requeue.append(n.addingTimeInterval(1)) }
    } else {
      s.nextScheduledRun = nil
    }

    // Ready.
    if let p = problem ?? neverFires {
      set(BackupPolicyCondition.ready, .false, p.reason, p.message)
    } else if let e = effective, !e.warnings.isEmpty {
      set(
        BackupPolicyCondition.ready, .true, "ReadyWithWarnings", "\(childSummary) " + e.warnings.joined(separator: " "))
    } else {
      set(BackupPolicyCondition.ready, .true, "ChildrenReady", childSummary)
    }

    // ScheduleActive.
    if policy.spec.suspend == true {
      set(BackupPolicyCondition.scheduleActive, .false, "Suspended", "Backups are suspended by spec.suspend.")
    } else if let p = problem ?? neverFires {
      set(BackupPolicyCondition.scheduleActive, .false, p.reason, "No backups are scheduled: \(p.message)")
    } else if let e = effective, let next = s.nextScheduledRun {
      set(
        BackupPolicyCondition.scheduleActive, .true, "Scheduled",
        "Backups run on '\(e.schedule.value)' (\(e.schedule.source)); the next run is at "
          + "\(KubeJSON.formatDate(next)).")
    }

    // Runs: the newest started, the newest finished, the newest succeeded.
    let started = runs.filter { $0.startTime != nil }.max { $0.startTime! < $1.startTime! }
    if let r = started, let t = r.startTime, previous.lastBackupAttempt.map({ t > $0 }) ?? true {
      s.lastBackupAttempt = t
      if r.state == .running {
        events.append(
          PlannedEvent(warning: false, reason: "BackupStarted", message: "Backup Job \(r.jobName) started."))
      }
    }
    let finished = runs.filter { $0.state != .running && $0.finishTime != nil }.max {
      $0.finishTime! < $1.finishTime!
    }
    let success = runs.filter { $0.state == .succeeded && $0.finishTime != nil }.max {
      $0.finishTime! < $1.finishTime!
    }
    if let r = success, let t = r.finishTime, previous.lastSuccessfulBackup.map({ t > $0 }) ?? true {
      s.lastSuccessfulBackup = t
      // The data's point in time: the engine's snapshot time (when the backup started reading), else the Job's start.
      s.lastSnapshotTime = r.result?.snapshotDate ?? r.startTime ?? t
      s.lastSnapshot = r.result?.snapshotId ?? previous.lastSnapshot
      s.lastBackupBytes = r.result?.bytesRead
      s.lastBackupStoredBytes = r.result?.bytesStored
      // An older engine does not report the total: the last known one stays.
      if let total = r.result?.repositoryStoredBytes { s.repositoryStoredBytes = total }
      s.lastBackupDurationSeconds = r.result?.durationSeconds
      let bytes = r.result?.bytesRead.map { " (\($0) bytes read, \(r.result?.bytesStored ?? 0) stored)" } ?? ""
      let objects = r.objects.map { " with \($0.summary)" } ?? ""
      events.append(
        PlannedEvent(
          warning: false, reason: "BackupSucceeded",
          message: "Backup Job \(r.jobName) stored snapshot \(r.result?.snapshotId ?? "unknown")\(bytes)\(objects)."))
    }
    // The repository's identity: pinned from the first successful run that reports it for the repository the spec
    // names now.
    let stated = policy.spec.repository.expectedIdentity
    let pins = repositoryIdentity(
      previous: previous.repositoryIdentity, runs: runs, repositoryURL: repositoryURL, stated: stated)
    if pins.identity != previous.repositoryIdentity {
      s.repositoryIdentity = pins.identity
      if let id = pins.identity {
        events.append(
          PlannedEvent(
            warning: false, reason: "RepositoryPinned",
            message:
              "Repository \(id.repository) has id \(id.id) and signing key \(id.signingKey.prefix(16))... (from Job "
              + "\(id.recordedFrom ?? "unknown")); every later Job requires them."))
      }
    }
    if let w = pins.conflict {
      events.append(PlannedEvent(warning: true, reason: "RepositoryIdentityConflict", message: w))
    }
    // The spec states another identity than status recorded: the stated one is used, and the admin is told.
    if let w = RepositoryPinReport.mismatchWarning(
      recorded: pins.identity, stated: stated, repositoryURL: repositoryURL,
      field: "spec.repository.expectedIdentity", statusField: "status.repositoryIdentity")
    {
      events.append(PlannedEvent(warning: true, reason: "RepositoryIdentityMismatch", message: w))
    }

    if let r = finished {
      if r.state == .succeeded {
        let snap = r.result?.snapshotId ?? s.lastSnapshot ?? "unknown"
        set(
          BackupPolicyCondition.lastBackupSucceeded, .true, "BackupSucceeded",
          "Job \(r.jobName) stored snapshot \(snap) at \(KubeJSON.formatDate(r.finishTime!)).")
        s.lastFailure = nil
      } else {
        var why = r.result?.errors?.joined(separator: "; ") ?? r.failureMessage ?? "no result was written"
        if why.isEmpty { why = r.failureMessage ?? "no result was written" }
        let code = r.result?.exitCode ?? r.exitCode
        let message =
          "Job \(r.jobName) failed" + (code.map { " with exit code \($0)" } ?? "") + " at "
          + "\(KubeJSON.formatDate(r.finishTime!)): \(why)."
        let before = previous.conditions?.condition(BackupPolicyCondition.lastBackupSucceeded)
        if before?.status != .false || before?.message != message {
          events.append(PlannedEvent(warning: true, reason: "BackupFailed", message: message))
        }
        set(BackupPolicyCondition.lastBackupSucceeded, .false, "BackupFailed", message)
        s.lastFailure = message
      }
    } else if conditions.condition(BackupPolicyCondition.lastBackupSucceeded) == nil {
      set(BackupPolicyCondition.lastBackupSucceeded, .unknown, "NoBackupYet", "No backup has finished yet.")
    }

    // RPO: driven by time.
    if let target = s.rpoTargetSeconds {
      let targetText = "\(DurationText.format(seconds: target)) (\(s.rpoSource ?? "tier"))"
      // Messages name moments, not ages, so that they do not change with every reconcile (a status write per
      // second would follow); the age is in status.rpoAgeSeconds and the metric.
      // The age counts from the newest snapshot's point in time (its data), not from when its backup finished.
      // A multi-claim policy counts the oldest of its claims' newest snapshots, and none while a claim has none.
      var point = s.lastSnapshotTime ?? s.lastSuccessfulBackup
      var subject = "The newest snapshot"
      if let c = claimsRPO {
        point = c.neverBackedUp.isEmpty ? c.oldest : nil
        subject = "The newest snapshot of claim \(c.oldestClaim ?? ""), the oldest among the claims' newest,"
      }
      if let last = point {
        let age = Int64(max(0, now.timeIntervalSince(last)).rounded(.down))
        s.rpoAgeSeconds = age
        let deadline = KubeJSON.formatDate(last.addingTimeInterval(TimeInterval(target)))
        if age <= target {
          set(
            BackupPolicyCondition.rpoMet, .true, "WithinRPO",
            "\(subject) holds data as of \(KubeJSON.formatDate(last)), within the RPO target of "
              + "\(targetText) until \(deadline).")
          requeue.append(last.addingTimeInterval(TimeInterval(target + 1)))
        } else {
          set(
            BackupPolicyCondition.rpoMet, .false, "RPOViolated",
            "\(subject) holds data as of \(KubeJSON.formatDate(last)), older than the RPO target of "
              + "\(targetText) since \(deadline).")
        }
      } else if let c = claimsRPO, c.oldest != nil, !c.neverBackedUp.isEmpty {
        s.rpoAgeSeconds = nil
        let shown = c.neverBackedUp.prefix(5).joined(separator: ", ") + (c.neverBackedUp.count > 5 ? ", ..." : "")
        set(
          BackupPolicyCondition.rpoMet, .false, "ClaimNotBackedUp",
          "\(c.neverBackedUp.count) selected claims have no successful backup yet (\(shown)); the RPO counts the "
            + "oldest claim's newest snapshot.")
      } else {
        s.rpoAgeSeconds = nil
        let created = policy.metadata.creationTimestamp ?? now
        let waited = Int64(max(0, now.timeIntervalSince(created)).rounded(.down))
        let deadline = KubeJSON.formatDate(created.addingTimeInterval(TimeInterval(target)))
        if waited <= target {
          set(
            BackupPolicyCondition.rpoMet, .unknown, "AwaitingFirstBackup",
            "No backup has succeeded yet; the RPO target of \(targetText) applies from \(deadline).")
          requeue.append(created.addingTimeInterval(TimeInterval(target + 1)))
        } else {
          set(
            BackupPolicyCondition.rpoMet, .false, "NoSuccessfulBackup",
            "No backup has succeeded since the policy was created at \(KubeJSON.formatDate(created)); the RPO "
              + "target of \(targetText) passed at \(deadline).")
        }
      }
      let before = previous.conditions?.condition(BackupPolicyCondition.rpoMet)
      if let now = conditions.condition(BackupPolicyCondition.rpoMet), now.status == .false, before?.status != .false {
        events.append(PlannedEvent(warning: true, reason: "RPOViolated", message: now.message))
      }
    }

    // The targets of the declared compliance profiles, with their evidence (ComplianceTargets.swift).
    if let profiles = policy.spec.compliance, !profiles.isEmpty {
      var evaluated = policy
      evaluated.status = s
      let results = ComplianceEvaluation.policy(evaluated, drills: nil, now: now)
      let (status, reason, message) = ComplianceEvaluation.summary(results)
      set(ComplianceEvaluation.conditionType, status, reason, message)
      requeue += ComplianceEvaluation.flips(results).filter { $0 > now }
    } else {
      conditions.removeAll { $0.type == ComplianceEvaluation.conditionType }
    }

    s.conditions = conditions
    return StatusOutcome(status: s, requeueAt: requeue.min(), events: events)
  }
}

/// What the retention runs (Jobs of the prune CronJob) say: the `RetentionApplied` condition and the metrics.
public struct RetentionOutcome: Sendable, Hashable {
  public var status: ConditionStatus
  public var reason: String
  public var message: String
  /// The finish time of the newest successful run still in the cluster.
  public var lastSuccess: Date?
  /// Whether the newest finished run failed.
  public var failing: Bool
  /// The repository's stored bytes the newest successful run reported (with its finish time); nil when it reported
  /// none (an older engine).
  public var repositoryStoredBytes: Int64? = nil
  public var repositoryStoredBytesAt: Date? = nil

  /// Sets `status.repositoryStoredBytes` to the total this outcome's newest successful run reported when that run
  /// finished after the newest successful backup (whose own total the status already holds): a prune shrinks the
  /// repository, the next backup's figure supersedes it.
  public func applyStoredBytes(to status: inout BackupPolicyStatus) {
    guard let total = repositoryStoredBytes, let at = repositoryStoredBytesAt else { return }
    if status.lastSuccessfulBackup.map({ at > $0 }) ?? true { status.repositoryStoredBytes = total }
  }

  /// The outcome of the newest finished run among `runs`; nil while none has finished (the condition is then left
  /// as it was: the CronJob keeps one successful and three failed Jobs, so an older outcome may be gone).
  public static func evaluate(_ runs: [BackupRun]) -> RetentionOutcome? {
    let finished = runs.filter { $0.state != .running }
    func when(_ r: BackupRun) -> Date { r.finishTime ?? r.startTime ?? .distantPast }
    guard let newest = finished.max(by: { when($0) < when($1) }) else { return nil }
    let lastSuccess = finished.filter { $0.state == .succeeded }.map(when).max()
    let newestSuccess = finished.filter { $0.state == .succeeded }.max(by: { when($0) < when($1) })
    let total = newestSuccess?.result?.repositoryStoredBytes
    let totalAt = total == nil ? nil : newestSuccess.map(when)
    if newest.state == .succeeded {
      var what = "Job \(newest.jobName) applied the retention"
      if let r = newest.result {
        let freed = -(r.bytesStored ?? 0)
        what += freed > 0 ? " and freed \(freed) bytes" : ""
        if let w = r.warnings, !w.isEmpty { what += "; \(w.count) warnings, first: \(w[0])" }
      }
      return RetentionOutcome(
        status: .true, reason: "Applied", message: what + ".", lastSuccess: lastSuccess, failing: false,
        repositoryStoredBytes: total, repositoryStoredBytesAt: totalAt)
    }
    let why =
      newest.result?.errors?.first ?? newest.failureMessage
      ?? newest.exitCode.map { "exit code \($0)" } ?? "no reason recorded"
    return RetentionOutcome(
      status: .false, reason: "RetentionFailed",
      message: "Job \(newest.jobName) failed: \(why). Expired snapshots stay and their data is not freed; see "
        + "docs/runbooks.md#retention-failures.", lastSuccess: lastSuccess, failing: true,
      repositoryStoredBytes: total, repositoryStoredBytesAt: totalAt)
  }
}
