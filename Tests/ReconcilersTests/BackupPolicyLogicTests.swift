import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// The pure decision of a BackupPolicy reconcile (`BackupPolicyLogic.decide`), from worlds built by hand: no
/// apiserver, no clock.
@Suite struct BackupPolicyLogicTests {
  func world(_ p: BackupPolicy, secrets: [String: Secret] = allSecrets, now: Date = testNow) -> BackupPolicyWorld {
    var w = BackupPolicyWorld(policy: p, now: now, settings: settings())
    w.secrets = secrets
    return w
  }

  func condition(_ d: BackupPolicyDecision, _ type: String) -> Condition? { d.status.conditions?.condition(type) }

  func backup(_ name: String, finished: TimeInterval, ok: Bool = true) -> BackupRun {
    BackupRun(
      jobName: name, state: ok ? .succeeded : .failed, startTime: testNow.addingTimeInterval(finished - 5),
      finishTime: testNow.addingTimeInterval(finished),
      result: ok ? EngineResult(ok: true, snapshotId: "s-\(name)", bytesRead: 10, bytesStored: 4) : nil,
      exitCode: ok ? 0 : 3, failureMessage: ok ? nil : "BackoffLimitExceeded")
  }

  func maintenance(_ name: String, finished: TimeInterval, ok: Bool, command: String) -> BackupRun {
    BackupRun(
      jobName: name, state: ok ? .succeeded : .failed, startTime: testNow.addingTimeInterval(finished - 60),
      finishTime: testNow.addingTimeInterval(finished),
      result: EngineResult(command: command, ok: ok, exitCode: ok ? 0 : 4, errors: ok ? [] : ["\(command) failed"]),
      exitCode: ok ? 0 : 4, failureMessage: ok ? nil : "BackoffLimitExceeded")
  }

  @Test func aRunningBackupsProgressIsInStatusAndComesBackWithinTenSeconds() {
    var w = world(dumpPolicy())
    var p = RunProgress(job: "payments-db-backup-1", startTime: testNow, updateTime: testNow.addingTimeInterval(-4))
    p.bytesDone = 1234
    w.progress = p
    let d = BackupPolicyLogic.decide(w)
    #expect(d.status.progress == p)
    // The next read of the log is due 10 s after the last one, before the next run (20 s away).
    #expect(d.requeueAt == testNow.addingTimeInterval(6))
    // No run: no progress (a finished run's figures are in lastBackupBytes).
    var previous = dumpPolicy()
    previous.status = BackupPolicyStatus()
    previous.status?.progress = p
    #expect(BackupPolicyLogic.decide(world(previous)).status.progress == nil)
  }

  @Test func anAcceptedPolicyIsReadyWithItsChildrenAndRequeuesAtTheNextRun() throws {
    let d = BackupPolicyLogic.decide(world(dumpPolicy()))
    #expect(d.problem == nil)
    #expect(condition(d, BackupPolicyCondition.ready)?.status == .true)
    let cronJob = ChildNames(namespace: "shop", name: "payments-db").backupCronJob
    #expect(d.children.contains { $0.name == cronJob })
    #expect(condition(d, BackupPolicyCondition.ready)?.message.contains(cronJob) == true)
    // The children are what the builders make of the same inputs.
    let built = try BackupPolicyLogic.children(
      dumpPolicy(), effective: EffectivePolicy(spec: dumpPolicy().spec, now: testNow), settings: settings(),
      secrets: allSecrets, runToken: nil)
    #expect(d.children.map(\.name) == built.map(\.name))
    // No prune unless due; when due, everything desired and the run-access grants are kept.
    #expect(d.pruneKeeping == nil)
    var w = world(dumpPolicy())
    w.pruneDue = true
    let pruning = BackupPolicyLogic.decide(w)
    let kept = Set((pruning.pruneKeeping ?? []).map(\.name))
    #expect(!kept.isEmpty && Set(built.map(\.name)).isSubset(of: kept))
    // The next run is 20 s away, the RPO deadline 31 s: the earlier one.
    #expect(d.requeueAt == testNow.addingTimeInterval(21))
    #expect(d.status.observedGeneration == 3)
    #expect(d.namespaceInUse == nil)
  }

  @Test func anInvalidSpecIsNotReadyAppliesNothingAndRetriesAsASafetyNet() {
    var p = dumpPolicy()
    p.spec.source.command?.image = ""
    let d = BackupPolicyLogic.decide(world(p))
    #expect(d.problem?.reason == "InvalidSpec")
    #expect(condition(d, BackupPolicyCondition.ready)?.status == .false)
    #expect(condition(d, BackupPolicyCondition.ready)?.reason == "InvalidSpec")
    #expect(d.children.isEmpty && d.pruneKeeping == nil && d.actions.isEmpty)
    #expect(d.requeueAt == testNow.addingTimeInterval(BackupPolicyReconciler.problemRetrySeconds))
  }

  @Test func aMissingSecretIsReportedFromTheWorld() {
    var secrets = allSecrets
    secrets["s3-creds"] = nil
    let d = BackupPolicyLogic.decide(world(dumpPolicy(), secrets: secrets))
    #expect(d.problem?.reason == "SecretNotFound")
    #expect(d.children.isEmpty)
    #expect(condition(d, BackupPolicyCondition.ready)?.reason == "SecretNotFound")
  }

  @Test func aBackupNamespaceProblemKeepsThePolicyFromRunning() {
    var w = world(dumpPolicy())
    w.namespaceProblem = PolicyProblem(reason: "BackupNamespaceNotAllowed", message: "no")
    let d = BackupPolicyLogic.decide(w)
    #expect(d.problem?.reason == "BackupNamespaceNotAllowed")
    #expect(d.children.isEmpty && d.namespaceInUse == nil)
  }

  @Test func aChildNameConflictAppliesNothingAndSaysWhoOwnsTheObject() {
    var w = world(dumpPolicy(trigger: "now"))
    w.pruneDue = true
    w.conflicts = [ChildNameConflict(child: "CronJob botrt-backup/x", owner: "BackupPolicy other/orders")]
    let d = BackupPolicyLogic.decide(w)
    #expect(d.children.isEmpty && d.pruneKeeping == nil && d.childEvents.isEmpty)
    #expect(d.problem?.reason == ChildOwnership.reason)
    #expect(condition(d, BackupPolicyCondition.ready)?.reason == "ChildNameConflict")
    #expect(
      d.events.contains {
        $0.warning && $0.reason == "ChildNameConflict" && $0.message.contains("BackupPolicy other/orders")
      })
    // The trigger is not handled: it runs once the conflict is gone.
    #expect(d.status.lastHandledTrigger == nil)
    // The next run (20 s away) comes before the safety net of a problem (300 s).
    #expect(d.requeueAt == testNow.addingTimeInterval(21))
    var p = dumpPolicy()
    p.spec.schedule = "0 3 * * *"
    p.spec.compliance = nil
    p.spec.rpo = "48h"
    w.policy = p
    #expect(
      BackupPolicyLogic.decide(w).requeueAt == testNow.addingTimeInterval(BackupPolicyReconciler.problemRetrySeconds))
  }

  @Test func anOnDemandTriggerIsHandledOnce() {
    let token = "trigger:now"
    let runJob = ChildNames(namespace: "shop", name: "payments-db").runJob(token: token)
    let first = BackupPolicyLogic.decide(world(dumpPolicy(trigger: "now")))
    #expect(first.children.contains { $0.name == runJob })
    #expect(first.childEvents.map(\.reason) == ["OnDemandBackup"])
    #expect(first.status.lastHandledTrigger == token)
    // The next reconcile sees it handled: no Job, no Event.
    let again = BackupPolicyLogic.decide(world(dumpPolicy(trigger: "now", handled: token)))
    #expect(!again.children.contains { $0.name == runJob })
    #expect(again.childEvents.isEmpty)
    #expect(again.status.lastHandledTrigger == token)
    // When the children cannot be applied, the trigger stays pending.
    let failed = BackupPolicyLogic.decide(
      world(dumpPolicy(trigger: "now")), applyFailure: ChildError(child: "Job x", operation: "apply", cause: Oops()))
    #expect(failed.children.isEmpty && failed.childEvents.isEmpty)
    #expect(failed.status.lastHandledTrigger == nil)
    #expect(failed.problem?.reason == "ApplyFailed")
    #expect(condition(failed, BackupPolicyCondition.ready)?.message.contains("cannot apply Job x") == true)
  }

  struct Oops: Error, CustomStringConvertible {
    var description: String { "oops" }
  }

  @Test func theRPOIsMetOrMissedFromTheRuns() {
    var p = dumpPolicy()
    p.metadata.creationTimestamp = testNow.addingTimeInterval(-3600)
    // A backup 10 s ago holds the 60 s RPO.
    let met = BackupPolicyLogic.decide(
      {
        var w = world(p)
        w.runs = [backup("j1", finished: -10)]
        return w
      }())
    #expect(condition(met, BackupPolicyCondition.rpoMet)?.status == .true)
    #expect(met.status.lastSuccessfulBackup == testNow.addingTimeInterval(-10))
    #expect(met.events.contains { $0.reason == "BackupSucceeded" })
    // The newest success 10 minutes ago, a failure since: missed, with a warning each.
    let missed = BackupPolicyLogic.decide(
      {
        var w = world(p)
        w.runs = [backup("j1", finished: -600), backup("j2", finished: -30, ok: false)]
        return w
      }())
    #expect(condition(missed, BackupPolicyCondition.rpoMet)?.status == .false)
    #expect(missed.events.contains { $0.reason == "BackupFailed" && $0.warning })
    #expect(missed.events.contains { $0.reason == "RPOViolated" && $0.warning })
  }

  @Test func aRestoreOnlyPolicyRunsNothingAndDropsItsGauges() {
    var p = dumpPolicy(trigger: "now")
    p.spec.mode = .restoreOnly
    var w = world(p)
    // Runs left by an earlier Backup mode are not judged.
    w.maintenance = ["prune": [maintenance("p1", finished: -5, ok: false, command: "prune")]]
    let d = BackupPolicyLogic.decide(w)
    #expect(condition(d, BackupPolicyCondition.ready)?.reason == "RestoreOnly")
    #expect(d.childEvents.isEmpty && d.status.lastHandledTrigger == nil)
    #expect(!d.children.contains { $0.name == ChildNames(namespace: "shop", name: "payments-db").backupCronJob })
    #expect(d.actions.isEmpty)
    #expect(d.metrics.removeGauges && d.metrics.retention == nil && d.metrics.keyAge == nil)
    #expect(condition(d, BackupPolicyCondition.retentionApplied) == nil)
  }

  @Test func aFailingRetentionIsReportedOnceAndSetsItsGauge() {
    var w = world(dumpPolicy())
    w.maintenance = ["prune": [maintenance("p1", finished: -5, ok: false, command: "prune")]]
    let d = BackupPolicyLogic.decide(w)
    #expect(condition(d, BackupPolicyCondition.retentionApplied)?.status == .false)
    #expect(condition(d, BackupPolicyCondition.retentionApplied)?.reason == "RetentionFailed")
    #expect(d.events.filter { $0.reason == "RetentionFailed" }.count == 1)
    #expect(d.metrics.retention?.failing == true)
    // Already False: no second Event.
    var again = w
    again.policy.status = d.status
    let d2 = BackupPolicyLogic.decide(again)
    #expect(!d2.events.contains { $0.reason == "RetentionFailed" })
    #expect(d2.metrics.retention?.failing == true)
    // A success afterwards: True, not failing.
    var healed = again
    healed.maintenance["prune"]?.append(maintenance("p2", finished: -1, ok: true, command: "prune"))
    let d3 = BackupPolicyLogic.decide(healed)
    #expect(condition(d3, BackupPolicyCondition.retentionApplied)?.status == .true)
    #expect(d3.metrics.retention?.failing == false)
  }

  @Test func theVerifyOutcomeComesFromTheVerifyRuns() {
    var p = dumpPolicy()
    p.spec.verify = PolicyVerifySpec(schedule: "0 4 * * 0")
    var w = world(p)
    var passed = EngineResult(command: "verify", ok: true, exitCode: 0, errors: [])
    passed.snapshotsVerified = 2
    w.maintenance = [
      VerifyOutcome.component: [
        BackupRun(
          jobName: "v1", state: .succeeded, startTime: testNow.addingTimeInterval(-60),
          finishTime: testNow.addingTimeInterval(-10), result: passed, exitCode: 0)
      ]
    ]
    let d = BackupPolicyLogic.decide(w)
    #expect(condition(d, BackupPolicyCondition.repositoryVerified)?.status == .true)
    #expect(d.metrics.verify?.failing == false)
    #expect(d.metrics.verify?.lastSuccess == testNow.addingTimeInterval(-10))
    #expect(d.status.lastVerify != nil)
    // Without spec.verify: no condition, no record, the gauges go.
    let none = BackupPolicyLogic.decide(world(dumpPolicy()))
    #expect(condition(none, BackupPolicyCondition.repositoryVerified) == nil)
    #expect(none.metrics.verify == nil && none.status.lastVerify == nil)
  }

  @Test func theKeyAgeIsReportedForAnAcceptedPolicyOnly() {
    var p = dumpPolicy()
    p.metadata.creationTimestamp = testNow.addingTimeInterval(-3600)
    let d = BackupPolicyLogic.decide(world(p))
    #expect(d.metrics.keyAge?.age == 3600)
    #expect(abs((d.metrics.keyAge?.limit ?? 0) - 90 * 86_400) < 1)
    #expect(condition(d, BackupPolicyCondition.keyRotationDue)?.status == .false)
    var w = world(p)
    w.conflicts = [ChildNameConflict(child: "CronJob botrt-backup/x", owner: "no BotRT owner")]
    #expect(BackupPolicyLogic.decide(w).metrics.keyAge == nil)
  }

  @Test func aNewRepositoryIdentityRequeuesInASecond() {
    var p = dumpPolicy()
    p.metadata.creationTimestamp = testNow.addingTimeInterval(-3600)
    var w = world(p)
    var r = EngineResult(ok: true, snapshotId: "s1", bytesRead: 10, bytesStored: 4)
    let id = String(repeating: "0f", count: 16)
    r.repositoryId = id
    r.signingKey = String(repeating: "ab", count: 32)
    r.repository = BackupPolicyLogic.repositoryText(p)
    w.runs = [
      BackupRun(
        jobName: "j1", state: .succeeded, startTime: testNow.addingTimeInterval(-20),
        finishTime: testNow.addingTimeInterval(-10), result: r, exitCode: 0)
    ]
    let d = BackupPolicyLogic.decide(w)
    #expect(d.status.repositoryIdentity?.id == id)
    #expect(d.events.contains { $0.reason == "RepositoryPinned" })
    #expect(d.requeueAt == testNow.addingTimeInterval(1))
    // Once recorded, the next run (20 s after the 60 s RPO's schedule) sets the requeue again.
    var later = w
    later.policy.status = d.status
    #expect(BackupPolicyLogic.decide(later).requeueAt != testNow.addingTimeInterval(1))
  }

  @Test func aNewSnapshotStartsACopyAsAnActionAndAFailedApplyStartsNone() {
    let p = replicatedPolicy()
    var w = world(p, secrets: replicaSecrets)
    var result = EngineResult(ok: true, snapshotId: "s1")
    result.snapshotTime = ISO8601DateFormatter().string(from: testNow.addingTimeInterval(-20))
    w.runs = [
      BackupRun(
        jobName: "b1", state: .succeeded, startTime: testNow.addingTimeInterval(-25),
        finishTime: testNow.addingTimeInterval(-20), result: result)
    ]
    let d = BackupPolicyLogic.decide(w)
    let copies = d.actions.compactMap { a -> (DesiredChild, PlannedEvent?)? in
      if case .apply(let c, let e) = a { return (c, e) }
      return nil
    }
    #expect(copies.count == 1)
    #expect(copies.first?.1?.reason == "ReplicaCopyStarted")
    #expect(copies.first?.1?.message.contains("snapshot s1 to replica dr-gcs") == true)
    #expect(d.status.replicas?.map(\.state) == ["Copying"])
    #expect(d.metrics.replicas?.keys.map(\.replica) == ["dr-gcs"])
    // Children not applied: not Ready, so no copy starts (old copy Jobs would still go).
    let failed = BackupPolicyLogic.decide(w, applyFailure: Oops())
    #expect(
      !failed.actions.contains {
        if case .apply = $0 { return true }
        return false
      })
    // A replica removed from the spec: its series go.
    var gone = w
    gone.policy.status = d.status
    gone.policy.spec.replicas = []
    #expect(BackupPolicyLogic.decide(gone).metrics.replicas?.gone == ["dr-gcs"])
  }

  @Test func thePlacementIsRecordedForAnAcceptedPolicyOnly() {
    var w = world(dumpPolicy())
    w.placement = ClaimPlacement.Decision(status: BackupPlacementStatus(node: "node-a", pod: "db-0"))
    #expect(BackupPolicyLogic.decide(w).status.placement?.node == "node-a")
    w.conflicts = [ChildNameConflict(child: "CronJob botrt-backup/x", owner: "no BotRT owner")]
    #expect(BackupPolicyLogic.decide(w).status.placement == nil)
  }
}
