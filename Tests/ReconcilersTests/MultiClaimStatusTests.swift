import DRAPI
import EngineContract
import Foundation
import KubeCore
import KubeRuntime
import Testing

@testable import Reconcilers

/// A multi-claim source's selection, names, status.claims and RPO (issue 15 §1), without I/O.
@Suite struct MultiClaimStatusTests {
  func claim(_ name: String, labels: [String: String] = [:]) -> PersistentVolumeClaim {
    var c = PersistentVolumeClaim()
    c.metadata = ObjectMeta(name: name, namespace: "shop", labels: labels)
    var spec = PersistentVolumeClaimSpec()
    spec.accessModes = ["ReadWriteOnce"]
    spec.resources = ContainerResources(requests: ["storage": "1Gi"])
    c.spec = spec
    return c
  }

  func policy() -> BackupPolicy {
    var meta = ObjectMeta(name: "files", namespace: "shop")
    meta.creationTimestamp = testNow.addingTimeInterval(-86_400)
    return BackupPolicy(
      metadata: meta,
      spec: BackupPolicySpec(
        tier: .standard, rpo: "1h",
        source: BackupSource(claims: ClaimsSource(selector: ClaimSelector(matchLabels: ["backup": "yes"]))),
        repository: RepositorySpec(local: LocalRepository(path: "/r", claimName: "repo")),
        encryption: EncryptionSpec(kms: KMSSpec(localKeySecretRef: SecretReference(name: "k")))))
  }

  func run(_ claim: String, _ state: BackupRun.State, finished: Date, snapshot: String?, errors: [String]? = nil)
    -> BackupRun
  {
    var r = BackupRun(
      jobName: "job-\(claim)-\(Int(finished.timeIntervalSince1970))", state: state,
      startTime: finished.addingTimeInterval(-10), finishTime: finished,
      result: snapshot.map { EngineResult(ok: state == .succeeded, snapshotId: $0) })
    r.result?.errors = errors
    r.annotations[MultiClaim.claimAnnotation] = claim
    return r
  }

  @Test func selectionIsSortedBoundedAndSkipsDeletingClaims() {
    var deleting = claim("e", labels: ["backup": "yes"])
    deleting.metadata.deletionTimestamp = testNow
    let claims = [claim("c", labels: ["backup": "yes"]), claim("a", labels: ["backup": "yes"]), claim("b"), deleting]
    let sel = MultiClaim.selection(
      ClaimsSource(selector: ClaimSelector(matchLabels: ["backup": "yes"])), claims: claims)
    #expect(sel.names == ["a", "c"] && sel.leftOut == 0 && sel.read["a"] != nil)
    // A list names its claims, a missing one included (waited for).
    let list = MultiClaim.selection(ClaimsSource(claimNames: ["b", "zz"]), claims: claims)
    #expect(list.names == ["b", "zz"] && list.read["zz"] == nil)
    // More than 64 matched: the first 64 by name.
    let many = (0..<70).map { claim(String(format: "c%03d", $0)) }
    let all = MultiClaim.selection(ClaimsSource(selector: ClaimSelector()), claims: many)
    #expect(all.names.count == 64 && all.names.last == "c063" && all.leftOut == 6 && all.matched == 70)
    #expect(MultiClaimSummary.text(all, workNS: "shop", children: 70).contains("70 claims match"))
  }

  @Test func childNamesAreBoundedAndDistinct() {
    let long = String(repeating: "x", count: 253)
    for (ns, name, c) in [("shop", "files", "a"), (String(repeating: "n", count: 63), long, long), ("a", "b", "c.d")] {
      #expect(MultiClaim.cronJob(namespace: ns, name: name, claim: c).count <= 52)
      #expect(MultiClaim.runJob(namespace: ns, name: name, claim: c, token: "trigger:x").count <= 63)
    }
    #expect(
      MultiClaim.cronJob(namespace: "shop", name: "files", claim: "a")
        != MultiClaim.cronJob(namespace: "shop", name: "files", claim: "b"))
  }

  @Test func eachClaimHasItsOwnResultAndTheRPOCountsTheOldest() throws {
    var p = policy()
    let sel = ClaimSelection(names: ["a", "b"], read: ["a": claim("a"), "b": claim("b")], matched: 2)
    let t1 = testNow.addingTimeInterval(-3_000)
    let t2 = testNow.addingTimeInterval(-600)
    let runs = [
      run("a", .succeeded, finished: t1, snapshot: "aaa1"),
      run("a", .succeeded, finished: t2, snapshot: "aaa2"),
      run("b", .failed, finished: t2, snapshot: nil),
    ]
    let st = MultiClaim.status(p, selection: sel, runs: runs, existing: ["a", "b"], now: testNow)
    #expect(st.map(\.name) == ["a", "b"])
    #expect(st[0].result == "Succeeded" && st[0].lastSnapshotId == "aaa2" && st[0].lastSuccessfulBackup == t2)
    #expect(st[0].claim?.storage == "1Gi" && st[0].claim?.namespace == "shop")
    #expect(st[1].result == "Failed" && st[1].lastSuccessfulBackup == nil)
    // b never backed up: the RPO is not met, naming it.
    let rpo = MultiClaim.rpo(st)
    #expect(rpo.neverBackedUp == ["b"] && rpo.oldest == t2.addingTimeInterval(-10))
    let eff = try EffectivePolicy(spec: p.spec, now: testNow)
    let o = BackupPolicyStatusLogic.compute(
      policy: p, effective: eff, problem: nil, runs: runs, backupNamespace: "botrt-backup", handledTrigger: nil,
      childSummary: "ok", now: testNow, claimsRPO: rpo)
    let met = o.status.conditions?.condition(BackupPolicyCondition.rpoMet)
    #expect(met?.status == .false && met?.reason == "ClaimNotBackedUp" && met?.message.contains("(b)") == true)

    // b's failure is not hidden by a's newer success: LastBackupSucceeded False naming b, and an Event for b.
    var failed = o
    MultiClaim.applyFailures(st, previous: [], to: &failed, generation: 1, now: testNow)
    let last = failed.status.conditions?.condition(BackupPolicyCondition.lastBackupSucceeded)
    #expect(last?.status == .false && last?.reason == "ClaimBackupFailed" && last?.message.contains("(b)") == true)
    #expect(
      failed.events.filter { $0.reason == "ClaimBackupFailed" }.map(\.message).first?.hasPrefix("Claim b:") == true)
    var again = o
    MultiClaim.applyFailures(st, previous: st, to: &again, generation: 1, now: testNow)
    #expect(!again.events.contains { $0.reason == "ClaimBackupFailed" }, "once per failure")

    // b backs up (partially first, then whole): the RPO counts the older of the two claims' newest snapshots.
    p.status = BackupPolicyStatus()
    p.status?.claims = st
    let partial = run("b", .failed, finished: t2.addingTimeInterval(60), snapshot: "bbb0", errors: ["x: EACCES"])
    let st2 = MultiClaim.status(p, selection: sel, runs: runs + [partial], existing: ["a", "b"], now: testNow)
    #expect(st2[1].result == "Partial" && st2[1].message?.contains("bbb0") == true)
    #expect(st2[1].lastSuccessfulBackup == nil)
    let tb = testNow.addingTimeInterval(-3_500)
    p.status?.claims = [st[0], ClaimBackupStatus(name: "b", lastSuccessfulBackup: tb, lastSnapshotTime: tb)]
    let st3 = MultiClaim.status(p, selection: sel, runs: [], existing: ["a", "b"], now: testNow)
    let rpo3 = MultiClaim.rpo(st3)
    #expect(rpo3.oldest == tb && rpo3.oldestClaim == "b" && rpo3.neverBackedUp.isEmpty)
    let o3 = BackupPolicyStatusLogic.compute(
      policy: p, effective: eff, problem: nil, runs: [], backupNamespace: "botrt-backup", handledTrigger: nil,
      childSummary: "ok", now: testNow, claimsRPO: rpo3)
    #expect(o3.status.rpoAgeSeconds == 3_500)
    let met3 = o3.status.conditions?.condition(BackupPolicyCondition.rpoMet)
    #expect(met3?.status == .true && met3?.message.contains("claim b") == true, "\(String(describing: met3))")
    // 30 minutes on, b's snapshot is older than the 1h target while a's is not: not met.
    let o4 = BackupPolicyStatusLogic.compute(
      policy: p, effective: eff, problem: nil, runs: [], backupNamespace: "botrt-backup", handledTrigger: nil,
      childSummary: "ok", now: testNow.addingTimeInterval(1_800), claimsRPO: rpo3)
    #expect(o4.status.conditions?.condition(BackupPolicyCondition.rpoMet)?.status == .false)

    // a deleted: its record stays, marked gone, and no longer counts for the RPO; a claim deselected but still
    // there goes from status.
    p.status?.claims = st3
    let onlyB = ClaimSelection(names: ["b"], read: ["b": claim("b")], matched: 1)
    let gone = MultiClaim.status(p, selection: onlyB, runs: [], existing: ["b"], now: testNow)
    #expect(gone.map(\.name) == ["b", "a"] && gone[1].gone == true && gone[1].claim?.storage == "1Gi")
    #expect(MultiClaim.rpo(gone).oldestClaim == "b")
    let deselected = MultiClaim.status(p, selection: onlyB, runs: [], existing: ["a", "b"], now: testNow)
    #expect(deselected.map(\.name) == ["b"])
  }

  /// The gauge BackupRPOViolation reads (time() minus it, against the RPO target) is the time the RPO counts: the
  /// oldest claim's newest snapshot, not the newest success of any claim, so one claim falling behind alerts.
  @Test func theLastSuccessGaugeIsTheOldestClaimsNewestBackup() {
    let registry = MetricsRegistry()
    let metrics = BackupPolicyMetrics(registry)
    let p = policy()
    var s = BackupPolicyStatus()
    s.lastSuccessfulBackup = testNow.addingTimeInterval(-60)
    s.claims = [
      ClaimBackupStatus(name: "a", lastSuccessfulBackup: testNow.addingTimeInterval(-60)),
      ClaimBackupStatus(name: "b", lastSnapshotTime: testNow.addingTimeInterval(-7_200)),
      ClaimBackupStatus(name: "old", lastSnapshotTime: testNow.addingTimeInterval(-99_999), gone: true),
    ]
    metrics.record(p, s)
    let labels = ["shop", "files", "standard"]
    #expect(
      registry.value("botrt_backup_last_success_timestamp_seconds", labels: labels)
        == testNow.addingTimeInterval(-7_200).timeIntervalSince1970)
    // A single-source policy: its last successful backup.
    var single = p
    single.spec.source = BackupSource(pvc: PVCSource(claimName: "data"))
    metrics.record(single, s)
    #expect(
      registry.value("botrt_backup_last_success_timestamp_seconds", labels: labels)
        == testNow.addingTimeInterval(-60).timeIntervalSince1970)
  }
}
