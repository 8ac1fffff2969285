import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// Restore-only policies (spec.mode RestoreOnly, or the controller's --restore-only): a disaster recovery cluster
/// applies the primary's policies from git and must never write to their repositories.
@Suite struct RestoreOnlyTests {
  /// The replicated dump policy with everything that writes: a verify CronJob, a pending trigger, key rotation by
  /// the Vault key, replicas and deleteBackupsOnDelete.
  func policy(mode: PolicyMode?) -> BackupPolicy {
    var p = replicatedPolicy()
    p.spec.verify = PolicyVerifySpec(schedule: "0 3 * * 0")
    p.spec.trigger = "now"
    p.spec.deleteBackupsOnDelete = true
    p.spec.mode = mode
    return p
  }

  func inputs(_ p: BackupPolicy, _ s: ControllerSettings) throws -> ChildInputs {
    ChildInputs(
      policy: p, effective: try EffectivePolicy(spec: p.spec, now: testNow), settings: s, secrets: replicaSecrets,
      runToken: BackupPolicyChildren.pendingRunToken(p))
  }

  /// The engine subcommands of every container of the children's Jobs and CronJobs.
  func engineCommands(_ children: [DesiredChild]) -> [String] {
    var out: [String] = []
    for c in children {
      let pod =
        c.body[path: "spec", "jobTemplate", "spec", "template", "spec"] ?? c.body[path: "spec", "template", "spec"]
      let cs = (pod?["initContainers"]?.arrayValue ?? []) + (pod?["containers"]?.arrayValue ?? [])
      for container in cs {
        if let first = container["args"]?[0]?.stringValue { out.append(first) }
      }
    }
    return out
  }

  @Test func theChildrenOfARestoreOnlyPolicyWriteNothing() throws {
    let writers: Set<String> = ["backup", "forget", "prune", "verify", "rotate-keys", "copy", "delete-repository"]
    // The same policy in Backup mode has them all (the check below would otherwise prove nothing).
    let s = settings()
    let backup = try BackupPolicyChildren.build(try inputs(policy(mode: .backup), s))
    let full = backup + (try ReplicationChildren.build(try inputs(policy(mode: .backup), s), existing: backup))
    #expect(full.contains { $0.resource.kind == "CronJob" } && full.contains { $0.resource.kind == "Job" })
    #expect(Set(engineCommands(full)).isSuperset(of: ["backup", "forget", "verify"]), "\(engineCommands(full))")

    var flagged = s
    flagged.restoreOnly = true
    for (p, st) in [(policy(mode: .restoreOnly), s), (policy(mode: nil), flagged)] {
      let children = try BackupPolicyChildren.build(try inputs(p, st))
      #expect(!children.contains { ["CronJob", "Job"].contains($0.resource.kind) }, "\(children.map(\.displayName))")
      #expect(engineCommands(children).filter { writers.contains($0) }.isEmpty)
      // No Secret copies in the backup namespace; its namespace, isolation, ServiceAccount and Role stay.
      #expect(!children.contains { $0.resource.kind == "Secret" })
      let kinds = Set(children.map(\.resource.kind))
      #expect(kinds.isSuperset(of: ["Namespace", "NetworkPolicy", "ServiceAccount", "Role"]), "\(kinds)")
      // Missing Secrets are still reported: restores need them.
      var missing = try inputs(p, st)
      missing.secrets = [:]
      #expect(throws: SpecError.self) { try BackupPolicyChildren.build(missing) }
      // Every builder of a Job that writes refuses.
      let input = try inputs(p, st)
      var refused: [String] = []
      func refuses(_ what: String, _ body: () throws(SpecError) -> DesiredChild) {
        do {
          _ = try body()
        } catch {
          #expect(error.field == "spec.mode" && error.message.contains("restore-only"), "\(what): \(error)")
          refused.append(what)
        }
      }
      refuses("rotate-keys") { () throws(SpecError) in
        try BackupPolicyChildren.keyRotationJob(input, KeyRotationJob(token: "rotate:1", newKey: nil))
      }
      refuses("delete-repository") { () throws(SpecError) in try BackupPolicyChildren.deleteRepositoryJob(input) }
      refuses("copy") { () throws(SpecError) in
        try ReplicationChildren.copyJob(input, index: 0, snapshot: "abc", backupTime: testNow)
      }
      refuses("replica rotate-keys") { () throws(SpecError) in
        try ReplicationChildren.rotationJob(input, index: 0, ReplicaRotationJob(token: "follow", followPrimary: true))
      }
      #expect(refused == ["rotate-keys", "delete-repository", "copy", "replica rotate-keys"])
    }
    #expect(BackupPolicyChildren.isRestoreOnly(policy(mode: nil), settings: flagged))
    #expect(!BackupPolicyChildren.isRestoreOnly(policy(mode: .backup), settings: s))
  }

  @Test func statusSaysRestoreOnlyAndDoesNotEvaluateTheRPO() throws {
    var p = policy(mode: .restoreOnly)
    // A policy switched from Backup: an old backup far outside the RPO, retention and replica conditions.
    var st = BackupPolicyStatus()
    st.lastSuccessfulBackup = testNow.addingTimeInterval(-86_400)
    st.lastSnapshotTime = st.lastSuccessfulBackup
    st.replicas = [ReplicaStatus(name: "dr-gcs", lastCopiedSnapshot: "a1", replicaSnapshot: "b2")]
    var conds: [Condition] = []
    for t in [BackupPolicyCondition.retentionApplied, BackupPolicyCondition.replicasInSync] {
      conds.setCondition(type: t, status: .true, reason: "X", message: "x", observedGeneration: 1, now: testNow)
    }
    st.conditions = conds
    p.status = st
    let eff = try EffectivePolicy(spec: p.spec, now: testNow)
    let summary = RestoreOnlyStatus.summary(p, settings: settings(), repository: "s3://backups/payments")
    var outcome = BackupPolicyStatusLogic.compute(
      policy: p, effective: eff, problem: nil, runs: [], backupNamespace: "botrt-backup", handledTrigger: nil,
      childSummary: summary, now: testNow)
    #expect(outcome.events.contains { $0.reason == "RPOViolated" })
    RestoreOnlyStatus.apply(&outcome, policy: p, now: testNow)
    let c = { (t: String) in outcome.status.conditions?.condition(t) }
    #expect(c(BackupPolicyCondition.ready)?.status == .true && c(BackupPolicyCondition.ready)?.reason == "RestoreOnly")
    let ready = c(BackupPolicyCondition.ready)?.message ?? ""
    #expect(ready.contains("spec.mode is RestoreOnly") && ready.contains("s3://backups/payments"), "\(ready)")
    #expect(ready.contains("Ignored here: spec.trigger, spec.deleteBackupsOnDelete"), "\(ready)")
    #expect(c(BackupPolicyCondition.scheduleActive)?.status == .false)
    #expect(c(BackupPolicyCondition.scheduleActive)?.reason == "RestoreOnly")
    #expect(
      c(BackupPolicyCondition.rpoMet)?.status == .unknown && c(BackupPolicyCondition.rpoMet)?.reason == "RestoreOnly")
    #expect(c(BackupPolicyCondition.rpoMet)?.message.contains("Not evaluated") == true)
    #expect(c(BackupPolicyCondition.keyRotationDue)?.status == .false)
    #expect(c(BackupPolicyCondition.retentionApplied) == nil && c(BackupPolicyCondition.replicasInSync) == nil)
    #expect(outcome.status.nextScheduledRun == nil && outcome.status.rpoAgeSeconds == nil)
    #expect(!outcome.events.contains { $0.reason == "RPOViolated" })
    // The replicas' record stays: restores from a replica map snapshot ids with it.
    #expect(outcome.status.replicas?.first?.replicaSnapshot == "b2")
    // A problem stays a problem.
    var bad = BackupPolicyStatusLogic.compute(
      policy: p, effective: eff, problem: PolicyProblem(reason: "SecretNotFound", message: "no"), runs: [],
      backupNamespace: "botrt-backup", handledTrigger: nil, childSummary: summary, now: testNow)
    RestoreOnlyStatus.apply(&bad, policy: p, now: testNow)
    #expect(bad.status.conditions?.condition(BackupPolicyCondition.ready)?.reason == "SecretNotFound")
    // The controller flag names itself.
    var flagged = settings()
    flagged.restoreOnly = true
    #expect(RestoreOnlyStatus.summary(policy(mode: nil), settings: flagged, repository: "r").contains("--restore-only"))
  }

  @Test func plansAndDrillsStillRestoreFromARestoreOnlyPolicy() throws {
    var p = try recoveryTestPolicy()
    p.spec.mode = .restoreOnly
    let plan = try recoveryTestPlan()
    let ctx = RecoveryJobContext(
      settings: ControllerSettings(engineImage: "e:1", restoreOnly: true), policies: ["db": p], namespace: "shop",
      labels: [:], owner: nil)
    let steps = try RecoveryPlanLogic.steps(plan.spec)
    let restore = try RecoveryJobs.stepJob(steps[1], jobName: "rp", ctx: ctx)
    let args = argv(restore[path: "spec", "template", "spec", "initContainers"]?[0])
    #expect(args.dropFirst().first == "restore" && args.joined(separator: " ").contains("--repo s3://backups/shop"))
    let verify = try RecoveryJobs.stepJob(steps[2], jobName: "v", ctx: ctx)
    #expect(argv(verify[path: "spec", "template", "spec", "initContainers"]?[0]).dropFirst().first == "verify")
    let d = try drillTestDrill()
    let job = try DrillLogic.runJob(
      d, spec: try DrillLogic.runSpec(d, plan: nil), namespace: "drill-x",
      settings: ControllerSettings(engineImage: "e:1", restoreOnly: true), policies: ["db": p], timeoutSeconds: 60)
    #expect(job[path: "spec", "template", "spec", "initContainers"]?[0]?["name"]?.stringValue == "restore")
  }
}
