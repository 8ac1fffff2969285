import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// The pure decision for a BackupPolicy being deleted (`BackupPolicyDeletion.decide`), from worlds built by hand: no
/// apiserver, no clock.
@Suite struct BackupPolicyDeletionTests {
  let names = ChildNames(namespace: "shop", name: "payments-db")
  let cronJobs = ChildResources.cronJobs(apiVersion: "batch/v1")

  func deleting(_ p: BackupPolicy = dumpPolicy(), deleteBackups: Bool? = nil) -> BackupPolicy {
    var p = p
    p.spec.deleteBackupsOnDelete = deleteBackups
    p.metadata.deletionTimestamp = testNow
    return p
  }

  func world(
    _ p: BackupPolicy, settings s: ControllerSettings = settings(), children: [ObservedChild] = [],
    run: BackupRun? = nil, secrets: Result<[String: Secret], DeletionReadError>? = .success(allSecrets),
    othersRemain: Bool = false
  ) -> BackupPolicyDeletionWorld {
    var w = BackupPolicyDeletionWorld(policy: p, now: testNow, settings: s)
    w.children = children
    w.deletionRun = run
    w.secrets = secrets
    w.othersRemain = othersRemain
    return w
  }

  /// The children a policy of the test has in the backup namespace and, left from before, in its own.
  var observed: [ObservedChild] {
    let backupNS = settings().backupNamespace
    return [
      ObservedChild(resource: cronJobs, namespace: backupNS, name: names.backupCronJob, component: "backup"),
      ObservedChild(resource: ChildResources.jobs, namespace: backupNS, name: "run-1", component: "backup"),
      ObservedChild(resource: ChildResources.jobs, namespace: backupNS, name: "run-2", component: "on-demand"),
      ObservedChild(resource: ChildResources.serviceAccounts, namespace: backupNS, name: "sa", component: nil),
      ObservedChild(resource: ChildResources.networkPolicies, namespace: "shop", name: "np", component: "isolation"),
      // A kind the policy does not own (never deleted by the cleanup) and a namespace it does not write to.
      ObservedChild(resource: ChildResources.pods, namespace: backupNS, name: "pod", component: "backup"),
      ObservedChild(resource: ChildResources.jobs, namespace: "elsewhere", name: "run-3", component: "backup"),
    ]
  }

  func cleanup(_ step: BackupPolicyDeletionStep) -> (
    recorded: PlannedEvent?, delete: [ObservedChild], calico: Bool, events: [PlannedEvent]
  )? {
    guard case .cleanup(let recorded, let delete, let calico, let events) = step else { return nil }
    return (recorded, delete, calico, events)
  }

  @Test func withoutDeleteBackupsTheChildrenGoAndTheBackupsAreKept() throws {
    let c = try #require(cleanup(BackupPolicyDeletion.decide(world(deleting(), children: observed))))
    #expect(c.recorded == nil)
    #expect(Set(c.delete.map(\.name)) == [names.backupCronJob, "run-1", "run-2", "sa", "np"])
    #expect(!c.calico)
    #expect(c.events.map(\.reason) == ["BackupsKept"])
    #expect(c.events.first?.message.contains("spec.deleteBackupsOnDelete is not set") == true)
  }

  @Test func theSharedCalicoPolicyGoesWithTheLastPolicyOnly() throws {
    let last = try #require(cleanup(BackupPolicyDeletion.decide(world(deleting(), settings: settings(calico: true)))))
    #expect(last.calico)
    let notLast = try #require(
      cleanup(BackupPolicyDeletion.decide(world(deleting(), settings: settings(calico: true), othersRemain: true))))
    #expect(!notLast.calico)
    let noCalico = try #require(cleanup(BackupPolicyDeletion.decide(world(deleting()))))
    #expect(!noCalico.calico)
  }

  @Test func aRestoreOnlyPolicyNeverDeletesTheRepository() throws {
    var p = deleting(deleteBackups: true)
    p.spec.mode = .restoreOnly
    #expect(!BackupPolicyDeletion.deletionPending(p, settings: settings()))
    let c = try #require(cleanup(BackupPolicyDeletion.decide(world(p, children: observed))))
    #expect(c.recorded == nil)
    #expect(c.events.map(\.reason) == ["BackupsKept"])
    #expect(c.events.first?.message.contains("restore-only") == true)
  }

  @Test func deleteBackupsStopsTheRunsAndStartsTheDeletionJob() throws {
    let deletion = ObservedChild(
      resource: ChildResources.jobs, namespace: settings().backupNamespace, name: names.deleteRepositoryJob,
      component: BackupDeletion.component)
    let step = BackupPolicyDeletion.decide(world(deleting(deleteBackups: true), children: observed + [deletion]))
    guard case .startDeletion(let stop, let apply, let event) = step else {
      Issue.record("expected the deletion to start, got \(step)")
      return
    }
    // Every CronJob and Job where the runs live, but a deletion Job; nothing else, nothing elsewhere.
    #expect(Set(stop.map(\.name)) == [names.backupCronJob, "run-1", "run-2"])
    // The Job's identity, Secrets and isolation first, the Job last; no CronJob, no other Job, no Calico policy.
    #expect(apply.last?.name == names.deleteRepositoryJob)
    #expect(apply.dropLast().allSatisfy { ![cronJobs, ChildResources.jobs].contains($0.resource) })
    #expect(apply.contains { $0.resource == ChildResources.serviceAccounts })
    #expect(event.reason == "DeletingBackups" && !event.warning)
    #expect(event.message.contains(names.deleteRepositoryJob))
  }

  @Test func aRunningDeletionIsWaitedFor() {
    let run = BackupRun(jobName: names.deleteRepositoryJob, state: .running)
    guard case .waitForDeletion = BackupPolicyDeletion.decide(world(deleting(deleteBackups: true), run: run)) else {
      Issue.record("a running deletion Job must be waited for")
      return
    }
  }

  @Test func aFinishedDeletionIsRecordedThenTheChildrenGo() throws {
    let ok = BackupRun(
      jobName: names.deleteRepositoryJob, state: .succeeded,
      result: EngineResult(command: "delete-repository", ok: true, objectsDeleted: 7))
    let c = try #require(
      cleanup(BackupPolicyDeletion.decide(world(deleting(deleteBackups: true), children: observed, run: ok))))
    #expect(c.recorded?.reason == "BackupsDeleted" && c.recorded?.warning == false)
    #expect(c.recorded?.message.contains("7 objects") == true)
    #expect(c.delete.count == 5)
    #expect(c.events.isEmpty)
    let failed = BackupRun(jobName: names.deleteRepositoryJob, state: .failed, failureMessage: "DeadlineExceeded")
    let f = try #require(cleanup(BackupPolicyDeletion.decide(world(deleting(deleteBackups: true), run: failed))))
    #expect(f.recorded?.reason == "BackupsNotDeleted" && f.recorded?.warning == true)
    #expect(f.recorded?.message.contains("DeadlineExceeded") == true)
  }

  @Test func aRecordedDeletionIsNotRunAgain() throws {
    var p = deleting(deleteBackups: true)
    var conditions: [Condition] = []
    conditions.setCondition(
      type: BackupPolicyDeletion.condition, status: .true, reason: "BackupsDeleted", message: "done",
      observedGeneration: 3, now: testNow)
    p.status = BackupPolicyStatus(conditions: conditions)
    #expect(!BackupPolicyDeletion.deletionPending(p, settings: settings()))
    let c = try #require(cleanup(BackupPolicyDeletion.decide(world(p, children: observed))))
    #expect(c.recorded == nil && c.events.isEmpty && c.delete.count == 5)
  }

  @Test func aDeletionJobThatCannotBeBuiltKeepsTheBackupsAndSaysWhy() throws {
    let unreadable = try #require(
      cleanup(
        BackupPolicyDeletion.decide(
          world(
            deleting(deleteBackups: true), children: observed,
            secrets: .failure(DeletionReadError(KubeTestError("secrets are forbidden")))))))
    #expect(unreadable.recorded?.reason == "BackupsNotDeleted" && unreadable.recorded?.warning == true)
    #expect(unreadable.recorded?.message.contains("secrets are forbidden") == true)
    #expect(unreadable.recorded?.message.contains("were kept") == true)
    #expect(unreadable.delete.count == 5)
  }
}

struct KubeTestError: Error, CustomStringConvertible {
  var description: String
  init(_ d: String) { description = d }
}
