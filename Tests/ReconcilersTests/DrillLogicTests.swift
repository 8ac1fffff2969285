import DRAPI
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

func drillTestDrill(schedule: String? = "weekly", trigger: String? = nil, plan: Bool = false, query: Bool = true)
  throws -> DRDrill
{
  let target = plan ? #"{"recoveryPlanRef": {"name": "shop-recovery"}}"# : #"{"backupPolicyRef": {"name": "db"}}"#
  let verification =
    query
    ? #"{"readData": true, "databaseQuery": {"image": "postgres:16", "command": ["psql", "-tA"], "query": "select 1", "expected": "1"}}"#
    : #"{"readData": true}"#
  return try decodeResource(
    """
    {"apiVersion": "dr.botrt.io/v1alpha1", "kind": "DRDrill",
     "metadata": {"name": "shop-weekly", "namespace": "shop", "uid": "u-drill", "generation": 2,
                  "creationTimestamp": "2026-09-01T00:00:00Z"},
     "spec": {\(schedule.map { "\"schedule\": \"\($0)\"," } ?? "") \(trigger.map { "\"trigger\": \"\($0)\"," } ?? "")
              "target": \(target), "historyLimit": 3,
              "restore": {"command": {"image": "postgres:16", "command": ["psql", "-d", "scratch"]}},
              "verification": \(verification)}}
    """)
}

let allSecure = SecurityChecks(
  networkPoliciesIntact: true, calicoIntact: nil, encryptionVerified: true, signaturesVerified: true,
  rbacWithinDeclared: true)

/// A finished run Job: restore 600 MB in 6 s, verify and query ok, verified `verifySeconds` after `start`.
func drillJob(start: Date, verifySeconds: Double, verifyExit: Int32 = 0, bytes: Int64 = 600_000_000) -> JobObservation {
  JobObservation(
    name: "drill-run", state: verifyExit == 0 ? .succeeded : .failed, startTime: start,
    finishTime: start + verifySeconds,
    containers: [
      "restore": .init(
        exitCode: 0,
        message:
          #"{"command":"restore","ok":true,"snapshotId":"5cbfd2d2151a4b37","bytesRead":\#(bytes),"durationSeconds":6}"#,
        finishedAt: start + 10),
      "verify": .init(
        exitCode: verifyExit,
        message: verifyExit == 0
          ? #"{"command":"verify","ok":true}"#
          : #"{"command":"verify","ok":false,"errors":["data/3f/3fab12: pack damaged: authentication tag mismatch"]}"#,
        finishedAt: start + verifySeconds - 1),
      "query": .init(exitCode: 0, message: #"{"command":"query","ok":true}"#, finishedAt: start + verifySeconds),
    ])
}

@Suite struct DrillLogicTests {
  @Test func presetsAndCronAndTierDefaults() throws {
    let weekly = try DrillLogic.schedule(
      try drillTestDrill(schedule: "weekly"), targetTier: .standard, targetCompliance: [])
    #expect(weekly.value == "0 3 * * 0")
    #expect(weekly.source.description == "preset:weekly")
    let cron = try DrillLogic.schedule(
      try drillTestDrill(schedule: "30 4 * * 1"), targetTier: .standard, targetCompliance: [])
    #expect(cron.value == "30 4 * * 1")
    let tier = try DrillLogic.schedule(try drillTestDrill(schedule: nil), targetTier: .critical, targetCompliance: [])
    #expect(tier.value == DrillPreset.daily.cron)
    #expect(throws: SpecError.self) {
      try DrillLogic.schedule(try drillTestDrill(schedule: "every tuesday"), targetTier: nil, targetCompliance: [])
    }
  }

  @Test func decidesFromScheduleTriggerAndSuspend() throws {
    var d = try drillTestDrill(schedule: "weekly")
    let cron = try CronSchedule(DrillPreset.weekly.cron)
    // Created 2026-09-01 (a Tuesday); the first Sunday 03:00 after it is 2026-09-06.
    let firstRun = try #require(KubeJSON.parseDate("2026-09-06T03:00:00Z"))
    #expect(DrillLogic.decide(d, cron: cron, now: firstRun - 60) == .waitUntil(firstRun))
    #expect(DrillLogic.decide(d, cron: cron, now: firstRun + 1) == .start(token: "schedule:2026-09-06T03:00:00Z"))
    // Many missed fire times give one run.
    #expect(
      DrillLogic.decide(d, cron: cron, now: firstRun + 30 * 86_400) == .start(token: "schedule:2026-09-06T03:00:00Z"))
    d.spec.suspend = true
    #expect(DrillLogic.decide(d, cron: cron, now: firstRun + 1) == .suspended)
    d.spec.trigger = "now-1"
    #expect(DrillLogic.decide(d, cron: cron, now: firstRun + 1) == .start(token: "trigger:now-1"))
    d.status = DRDrillStatus(lastHandledTrigger: "trigger:now-1", phase: .running)
    #expect(DrillLogic.decide(d, cron: cron, now: firstRun + 1) == .running)
    d.status?.phase = .idle
    #expect(DrillLogic.decide(d, cron: cron, now: firstRun + 1) == .suspended)
  }

  @Test func scratchNamespaceIsFencedByDefaultDeny() throws {
    let d = try drillTestDrill()
    let ns = DrillLogic.scratchNamespace(d, token: "trigger:a")
    #expect(ns.hasPrefix("drill-shop-weekly-"))
    #expect(ns.count <= 63)
    #expect(ns != DrillLogic.scratchNamespace(d, token: "trigger:b"))
    let children = DrillLogic.scratchChildren(d, namespace: ns, policy: try recoveryTestPolicy(), settings: settings())
    #expect(children.map(\.resource.kind) == ["Namespace", "NetworkPolicy", "NetworkPolicy"])
    let deny = children[1].body
    #expect(deny[path: "spec", "policyTypes"] == ["Ingress", "Egress"])
    #expect(deny[path: "spec", "podSelector"] == [:])
    #expect(deny[path: "spec", "ingress"] == nil)
    #expect(deny[path: "spec", "egress"] == nil)
    let allow = children[2].body
    let egress = allow[path: "spec", "egress"]?.arrayValue ?? []
    // DNS, S3 at 10.0.0.5:5000, Vault at 10.0.0.6:8200.
    #expect(egress.count == 3)
    #expect(egress[1][path: "to"]?[0]?[path: "ipBlock", "cidr"]?.stringValue == "10.0.0.5/32")
    #expect(egress[2]["ports"]?[0]?["port"]?.intValue == 8200)
    #expect(children[0].body[path: "metadata", "labels", DrillLogic.scratchLabel]?.stringValue == "true")

    // spec.egress opens the database server (IP or CIDR; a host name only as a declared database destination).
    var withDB = d
    withDB.spec.egress = [
      DrillEgress(host: "10.0.0.7", port: 5432), DrillEgress(host: "10.1.0.0/16", port: 3306),
      DrillEgress(host: "db.shop.svc", port: 5433),
    ]
    let more = DrillLogic.scratchChildren(
      withDB, namespace: ns, policy: try recoveryTestPolicy(), settings: settings())[2].body
    let rules = more[path: "spec", "egress"]?.arrayValue ?? []
    #expect(rules.count == 5, "a host name is not opened to every destination")
    #expect(rules[3][path: "to"]?[0]?[path: "ipBlock", "cidr"]?.stringValue == "10.0.0.7/32")
    #expect(rules[3]["ports"]?[0]?["port"]?.intValue == 5432)
    #expect(rules[4][path: "to"]?[0]?[path: "ipBlock", "cidr"]?.stringValue == "10.1.0.0/16")
    #expect(!rules.contains { $0["to"] == nil })
    var declared = settings()
    declared.egress = [try EgressDestination.parse("database=10.2.0.0/16:5433")]
    let named = DrillLogic.scratchChildren(withDB, namespace: ns, policy: try recoveryTestPolicy(), settings: declared)
    let namedRules = named[2].body[path: "spec", "egress"]?.arrayValue ?? []
    #expect(
      namedRules.contains(
        ["to": [["ipBlock": ["cidr": "10.2.0.0/16"]]], "ports": [["protocol": "TCP", "port": 5433]]]))
    #expect(
      !namedRules.contains { $0["to"]?[0]?[path: "ipBlock", "cidr"] == "10.1.0.0/16" },
      "with database destinations declared, a CIDR outside them is not opened")
    #expect(SpecValidation.validate(withDB.spec).isEmpty)
    withDB.spec.egress = [DrillEgress(host: "", port: 0)]
    #expect(
      SpecValidation.validate(withDB.spec).map(\.field) == ["spec.egress[0].port", "spec.egress[0].host"])
  }

  @Test func runJobRestoresThenVerifiesThenQueries() throws {
    let d = try drillTestDrill()
    let spec = try DrillLogic.runSpec(d, plan: nil)
    let job = try DrillLogic.runJob(
      d, spec: spec, namespace: "drill-x", settings: ControllerSettings(engineImage: "e:1"),
      policies: ["db": try recoveryTestPolicy()], timeoutSeconds: 3600)
    let pod = try #require(job[path: "spec", "template", "spec"])
    let inits = (pod["initContainers"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
    #expect(inits == ["restore", "restore-load", "verify"])
    #expect(pod["containers"]?[0]?["name"]?.stringValue == "query")
    #expect(job[path: "metadata", "namespace"]?.stringValue == "drill-x")
    #expect(job[path: "spec", "activeDeadlineSeconds"]?.intValue == 3600)
    #expect(job[path: "metadata", "labels", DrillLogic.drillNameLabel]?.stringValue == "shop-weekly")
  }

  /// A drill of the latest snapshot requires the newest snapshot the policy recorded, in both the restore and the
  /// verify step: a deleted newest snapshot or a rolled-back repository then fails the drill.
  @Test func aDrillOfTheLatestSnapshotRequiresTheNewestRecordedOne() throws {
    let d = try drillTestDrill()
    let spec = try DrillLogic.runSpec(d, plan: nil)
    var policy = try recoveryTestPolicy()
    func args(_ p: BackupPolicy) throws -> [[String]] {
      let job = try DrillLogic.runJob(
        d, spec: spec, namespace: "drill-x", settings: ControllerSettings(engineImage: "e:1"), policies: ["db": p],
        timeoutSeconds: 3600)
      let inits = job[path: "spec", "template", "spec", "initContainers"]?.arrayValue ?? []
      return inits.filter { ["restore", "verify"].contains($0["name"]?.stringValue ?? "") }.map { c in
        ((c["command"]?.arrayValue ?? []) + (c["args"]?.arrayValue ?? [])).compactMap(\.stringValue)
      }
    }
    // No backup recorded yet: nothing to require.
    #expect(try args(policy).allSatisfy { !$0.joined(separator: " ").contains("--require-snapshot") })
    policy.status = BackupPolicyStatus()
    policy.status?.lastSnapshot = "abc123def456"
    let withNewest = try args(policy)
    #expect(withNewest.count == 2)
    for a in withNewest {
      #expect(a.joined(separator: " ").contains("--require-snapshot abc123def456"), "\(a)")
    }
  }

  @Test func planTargetUsesItsRestoreStepWithAnEmptyDirInsteadOfThePVC() throws {
    var plan = try recoveryTestPlan()
    plan.spec.procedures[0].steps[1].restore?.into = RestoreDestination(pvc: RestorePVC(claimName: "data"))
    var d = try drillTestDrill(plan: true, query: false)
    d.spec.restore = nil
    let spec = try DrillLogic.runSpec(d, plan: plan)
    #expect(spec.restore.policyRef.name == "db")
    #expect(spec.restore.into.pvc == nil)
    #expect(spec.query?.expected == "42")  // from the plan's verify step
    #expect(throws: SpecError.self) { try DrillLogic.runSpec(d, plan: nil) }
  }

  @Test func secretCopiesGoToTheScratchNamespace() throws {
    let d = try drillTestDrill()
    let spec = try DrillLogic.runSpec(d, plan: nil)
    let secrets: [String: Secret] = [
      "s3-creds": Secret(metadata: ObjectMeta(name: "s3-creds"), data: ["AWS_ACCESS_KEY_ID": Data("k".utf8)]),
      "vault-token": Secret(metadata: ObjectMeta(name: "vault-token"), data: ["token": Data("t".utf8)]),
    ]
    let copies = try DrillLogic.secretCopies(
      d, namespace: "drill-x", policy: try recoveryTestPolicy(), spec: spec, secrets: secrets)
    #expect(copies.map(\.name).sorted() == ["s3-creds", "vault-token"])
    #expect(copies.allSatisfy { $0.namespace == "drill-x" })
    #expect(copies[0].body[path: "data", "AWS_ACCESS_KEY_ID"]?.stringValue == Data("k".utf8).base64EncodedString())
    let policy = try recoveryTestPolicy()
    do {
      _ = try DrillLogic.secretCopies(d, namespace: "drill-x", policy: policy, spec: spec, secrets: [:])
      Issue.record("missing Secrets must throw")
    } catch {
      #expect(error.message.contains("Secret 's3-creds'"))
    }
  }

  func targets(_ d: DRDrill) throws -> DrillTargets {
    let p = try recoveryTestPolicy()
    return try DrillLogic.targets(
      d, policy: try EffectivePolicy(spec: p.spec, now: drillNow), policyCompliance: [], plan: nil)
  }

  @Test func passingRunRecordsRPOAndRTOAndScore() throws {
    let d = try drillTestDrill()
    let t = try targets(d)
    #expect(t.rpoSeconds == 300)  // critical tier
    #expect(t.rtoSeconds == 900)
    let start = drillNow
    let o = DrillLogic.finish(
      d, job: drillJob(start: start, verifySeconds: 252), runStart: start, token: "trigger:x",
      scratchNamespace: "drill-x", snapshotTime: start - 180, baseline: 110_000_000, security: allSecure, targets: t,
      now: start + 260)
    #expect(o.result.passed == true)
    #expect(o.result.rtoAchievedSeconds == 252)
    #expect(o.result.rpoAchievedSeconds == 180)
    #expect(o.result.dataIntegrity == true)
    #expect(o.result.restoreBytesPerSecond == 100_000_000)
    #expect(o.result.performanceDegradationPercent == 9.1)
    #expect(o.result.complianceScore == 100)
    #expect(o.result.snapshot == "5cbfd2d2151a4b37")
    #expect(o.status.conditions?.isTrue(DRDrillCondition.passed) == true)
    #expect(o.status.conditions?.isTrue(DRDrillCondition.rtoMet) == true)
    #expect(o.status.conditions?.isTrue(DRDrillCondition.rpoMet) == true)
    #expect(
      o.status.conditions?.condition(DRDrillCondition.rtoMet)?.message
        == "The restore was verified 4m12s after the drill started, within the RTO target of 15m.")
    #expect(
      o.status.conditions?.condition(DRDrillCondition.rpoMet)?.message
        == "The restored snapshot was 3m old when the drill started, within the RPO target of 5m.")
    #expect(o.status.phase == .idle)
    #expect(o.status.lastResult == o.result)
    #expect(o.metrics.rtoSeconds == 252)
    #expect(o.metrics.complianceScore == 100)
    let msg = try #require(o.result.message)
    #expect(msg.hasPrefix("The drill passed: every target was met."))
    #expect(msg.contains("The restore was verified 4m12s after the drill started, within the RTO target of 15m."))
    #expect(msg.contains("was 3m old when the drill started, within the RPO target of 5m."))
    #expect(msg.contains("Restore throughput was 9 % below the baseline, within the 20 % allowed."))
    #expect(msg.contains("Every security check passed."))
    #expect(msg.contains("The compliance score is 100 of 100; at least 95 is required."))
    #expect(!msg.contains("What went wrong"))
    #expect(o.status.conditions?.condition(ComplianceEvaluation.conditionType) == nil)
  }

  /// A drill with a profile states each of its targets, with the run's measurements, in ComplianceMet.
  @Test func drillWithAProfileStatesItsTargets() throws {
    var d = try drillTestDrill()
    d.spec.compliance = [.hipaa]
    let start = drillNow
    let o = DrillLogic.finish(
      d, job: drillJob(start: start, verifySeconds: 252), runStart: start, token: "trigger:x",
      scratchNamespace: "drill-x", snapshotTime: start - 180, baseline: 110_000_000, security: allSecure,
      targets: try targets(d), now: start + 260)
    let c = try #require(o.status.conditions?.condition(ComplianceEvaluation.conditionType))
    #expect(c.status == .true)
    #expect(c.reason == "TargetsMet")
    #expect(c.message.contains("HIPAA healthcare data RPO (RPO 5m): met"))
    #expect(c.message.contains("restored a snapshot 3m old"))
    #expect(c.message.contains("HIPAA critical system RTO (RTO 30m): met"))
  }

  /// The drill's restore of `latest` passed over a newer snapshot that did not verify: the result's message and a
  /// Warning Event name it.
  @Test func aSkippedSnapshotIsNamedInTheResultAndAWarning() throws {
    let d = try drillTestDrill()
    let start = drillNow
    var j = drillJob(start: start, verifySeconds: 100)
    j.containers["restore"]?.message =
      #"{"command":"restore","ok":true,"snapshotId":"5cbfd2d2151a4b37","bytesRead":1000,"durationSeconds":6,"#
      + #""skippedSnapshots":[{"id":"9f9f9f9f9f9f9f9f","reason":"manifest does not authenticate"}]}"#
    let o = DrillLogic.finish(
      d, job: j, runStart: start, token: "trigger:x", scratchNamespace: "drill-x", snapshotTime: start - 60,
      baseline: nil, security: allSecure, targets: try targets(d), now: start + 100)
    #expect(o.result.snapshot == "5cbfd2d2151a4b37")
    #expect(o.result.message?.contains("Skipped snapshot 9f9f9f9f9f9f") == true, "\(o.result.message ?? "")")
    let w = try #require(o.events.first { $0.reason == SkippedSnapshotsText.eventReason })
    #expect(w.warning && w.message.contains("9f9f9f9f9f9f") && w.message.contains("does not authenticate"))
  }

  @Test func tamperedPackFailsIntegrityAndNamesTheObject() throws {
    let d = try drillTestDrill()
    let start = drillNow
    let o = DrillLogic.finish(
      d, job: drillJob(start: start, verifySeconds: 100, verifyExit: 5), runStart: start, token: "trigger:x",
      scratchNamespace: "drill-x", snapshotTime: start - 60, baseline: nil, security: allSecure,
      targets: try targets(d), now: start + 100)
    #expect(o.result.passed == false)
    #expect(o.result.dataIntegrity == false)
    #expect(o.result.rtoAchievedSeconds == nil)
    #expect((o.result.complianceScore ?? 100) <= 50)
    #expect(o.status.conditions?.condition(DRDrillCondition.passed)?.reason == "DataIntegrityFailed")
    #expect(o.status.conditions?.condition(DRDrillCondition.rtoMet)?.status == .false)
    let warning = try #require(o.events.first { $0.reason == "DataIntegrityFailed" })
    #expect(warning.warning)
    #expect(warning.message.contains("data/3f/3fab12"))
    let msg = try #require(o.result.message)
    #expect(msg.hasPrefix("The drill failed: the restored data did not verify."))
    #expect(msg.contains("No restore was verified, so the RTO target of 15m was not met."))
    #expect(msg.contains("Data integrity FAILED."))
    #expect(msg.contains("What went wrong: verify failed:"))
    #expect(msg.contains("data/3f/3fab12"))
  }

  @Test func oldSnapshotMissesRPOAndSlowRestoreIsDegraded() throws {
    let d = try drillTestDrill()
    let start = drillNow
    let o = DrillLogic.finish(
      d, job: drillJob(start: start, verifySeconds: 60, bytes: 300_000_000), runStart: start, token: nil,
      scratchNamespace: nil, snapshotTime: start - 3_600, baseline: 100_000_000, security: allSecure,
      targets: try targets(d), now: start + 60)
    #expect(o.result.rpoAchievedSeconds == 3_600)
    #expect(o.status.conditions?.condition(DRDrillCondition.rpoMet)?.status == .false)
    #expect(
      o.status.conditions?.condition(DRDrillCondition.rpoMet)?.message
        == "The restored snapshot was 1h old when the drill started, over the RPO target of 5m.")
    #expect(o.status.conditions?.isTrue(DRDrillCondition.rtoMet) == true)
    #expect(o.result.performanceDegradationPercent == 50)
    #expect(o.result.passed == false)
    #expect((o.result.complianceScore ?? 100) < 95)
  }

  @Test func smallRestoreIsNotComparedWithTheBaseline() throws {
    let d = try drillTestDrill()
    let start = drillNow
    // 5 KB in 6 s would be 99.9 % below a 100 MB/s baseline; a restore that small measures fixed costs only.
    let o = DrillLogic.finish(
      d, job: drillJob(start: start, verifySeconds: 30, bytes: 5_000), runStart: start, token: nil,
      scratchNamespace: nil, snapshotTime: start - 10, baseline: 100_000_000, security: allSecure,
      targets: try targets(d), now: start + 30)
    #expect(o.result.performanceDegradationPercent == nil)
    #expect(o.result.restoreBytesPerSecond == nil)
    #expect(o.result.passed == true)
    #expect(o.result.complianceScore == 100)
    #expect(o.result.message?.contains("The restore read 5000 bytes, too few to measure throughput") == true)
    // One byte under the limit is not measured; at the limit it is.
    let atLimit = DrillLogic.finish(
      d, job: drillJob(start: start, verifySeconds: 30, bytes: DrillLogic.minThroughputBytes), runStart: start,
      token: nil, scratchNamespace: nil, snapshotTime: start - 10, baseline: 100_000_000, security: allSecure,
      targets: try targets(d), now: start + 30)
    #expect(atLimit.result.restoreBytesPerSecond != nil)
    #expect(atLimit.result.performanceDegradationPercent != nil)
  }

  @Test func historyIsBoundedNewestFirst() throws {
    var d = try drillTestDrill()
    for k in 0..<5 {
      let start = drillNow + Double(k) * 1000
      let o = DrillLogic.finish(
        d, job: drillJob(start: start, verifySeconds: 30), runStart: start, token: "trigger:\(k)",
        scratchNamespace: nil, snapshotTime: start - 10, baseline: nil, security: allSecure,
        targets: try targets(d), now: start + 30)
      d.status = o.status
    }
    #expect(d.status?.history?.count == 3)
    #expect(d.status?.history?.first?.trigger == "trigger:4")
    #expect(d.status?.lastRunTime == drillNow + 4000)
  }

  @Test func baselineIsTheMedianOfEarlierPassedRuns() {
    let h = [
      DrillResult(passed: true, restoreBytesPerSecond: 100), DrillResult(passed: false, restoreBytesPerSecond: 1),
      DrillResult(passed: true, restoreBytesPerSecond: 300), DrillResult(passed: true, restoreBytesPerSecond: 200),
    ]
    #expect(DrillLogic.baselineThroughput(history: h, policy: nil) == 200)
    let p = BackupPolicyStatus(lastBackupBytes: 1000, lastBackupDurationSeconds: 4)
    #expect(DrillLogic.baselineThroughput(history: [], policy: p) == 250)
    #expect(DrillLogic.baselineThroughput(history: [], policy: nil) == nil)
  }

  @Test func startRunMarksRunningAndHandlesTheTrigger() throws {
    let d = try drillTestDrill(trigger: "go")
    let st = DrillLogic.startRun(
      d, token: "trigger:go", scratchNamespace: "drill-x", schedule: Sourced("0 3 * * 0", .preset(.weekly)),
      now: drillNow)
    #expect(st.phase == .running)
    #expect(st.lastHandledTrigger == "trigger:go")
    #expect(st.currentRun?.scratchNamespace == "drill-x")
    #expect(st.scheduleSource == "preset:weekly")
    #expect(st.target == "BackupPolicy/db")
  }
}
