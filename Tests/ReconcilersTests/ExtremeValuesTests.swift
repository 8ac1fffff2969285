import DRAPI
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// No spec value can crash the controller: extreme and malformed values of every numeric, duration, cron and time
/// field go through validation and the pure decide and status logic. A trap would kill the test process, so the
/// test passing proves there is none; out-of-range values must also be rejected naming their field.
@Suite struct ExtremeValuesTests {
  static let crons = [
    "@every 99999999999999999h", "@every 9223372036854775807s", "@every 1e400h", "@every 3650d",
    "@every 87600h1s", "@every 87600h", "@every 0.5s", "@every .h", "@every 1h30m", "0 0 1/9223372036854775807 * *",
    "*/9223372036854775807 * * * *", "0 0 31 2 *", "59 23 31 12 6", "99999999999999999999 * * * *", "* * * * */0",
    "", "@reboot", "* * *",
  ]
  static let durations = [
    "99999999999999999999y", "9223372036854775807s", "1000y", "1001y", "292471208678y", "0s", "1h30m", "", "7",
    "-1h", "1.5h",
  ]
  static let dates: [Date?] = [
    nil, Date(timeIntervalSince1970: 0), Date(timeIntervalSince1970: -62_135_596_800),
    Date(timeIntervalSince1970: 253_402_300_799), Date.distantFuture, Date.distantPast, testNow,
  ]
  static let int32s: [Int32?] = [nil, 0, 1, -1, Int32.max, Int32.min]

  @Test func everyDurationIsParsedOrRejectedNamingTheField() {
    for d in Self.durations {
      var spec = dumpPolicy().spec
      spec.rpo = d
      spec.retention = RetentionSpec(maxAge: d)
      for e in SpecValidation.validate(spec) where e.field.hasPrefix("spec.r") {
        #expect(e.field == "spec.rpo" || e.field == "spec.retention.maxAge", "\(e)")
      }
      _ = try? EffectivePolicy(spec: spec, now: testNow)
    }
  }

  @Test func everyCronIsParsedOrRejectedNamingTheField() {
    #expect(throws: CronError.self) { try CronSchedule("@every 99999999999999999h") }
    var spec = dumpPolicy().spec
    spec.schedule = "@every 99999999999999999h"
    let errors = SpecValidation.validate(spec)
    #expect(errors.contains { $0.field == "spec.schedule" && $0.message.contains("too large (max 10 years)") })
    for c in Self.crons {
      if let cron = try? CronSchedule(c) {
        for d in Self.dates { _ = d.map { cron.next(after: $0) } }
        _ = cron.maxInterval(from: testNow)
      }
      var s = dumpPolicy().spec
      s.schedule = c
      _ = SpecValidation.validate(s)
      _ = try? EffectivePolicy(spec: s, now: testNow)
      let drill = DRDrill(
        metadata: ObjectMeta(name: "d", namespace: "shop"),
        spec: DRDrillSpec(schedule: c, target: DrillTarget(backupPolicyRef: LocalObjectReference(name: "p"))))
      _ = SpecValidation.validate(drill.spec)
      _ = try? DrillLogic.schedule(drill, targetTier: .critical, targetCompliance: [.sox])
    }
  }

  @Test func numericFieldsAndDatesThroughTheStatusAndDecisionLogic() throws {
    for n in Self.int32s {
      for date in Self.dates {
        var p = dumpPolicy()
        p.metadata.creationTimestamp = date
        p.spec.retention = RetentionSpec(
          keepLast: n, keepHourly: n, keepDaily: n, keepWeekly: n, keepMonthly: n, keepYearly: n)
        p.spec.successfulJobsHistoryLimit = n
        p.spec.failedJobsHistoryLimit = n
        p.spec.encryption.keyRotationDays = n.map(Int.init)
        var st = BackupPolicyStatus()
        st.lastSuccessfulBackup = date
        st.lastKeyRotation = date
        p.status = st
        let errors = SpecValidation.validate(p.spec)
        if let n, n < 0 {
          #expect(errors.contains { $0.field == "spec.retention.keepLast" })
          #expect(errors.contains { $0.field == "spec.successfulJobsHistoryLimit" })
        }
        let eff = try? EffectivePolicy(spec: p.spec, now: testNow)
        _ = BackupPolicyStatusLogic.compute(
          policy: p, effective: eff, problem: nil, runs: [], backupNamespace: "botrt-backup", handledTrigger: nil,
          childSummary: "", now: testNow)
        _ = KeyRotationLogic.plan(policy: p, runs: [], rotationKeys: nil, now: testNow)
        _ = EngineInvocation.retentionFlags(p.spec.retention ?? RetentionSpec())
        if let eff {
          _ = ReplicationLogic.self
          _ = eff.retention
        }

        var plan = RecoveryPlanSpec(
          tier: .critical, rtoTarget: "99999999999999999999y",
          procedures: [
            RecoveryProcedure(
              name: "p",
              steps: [
                RecoveryStep(
                  name: "s", action: .verify, verify: VerifyStepSpec(policyRef: LocalObjectReference(name: "p")),
                  timeout: "1000y", retries: n)
              ])
          ])
        _ = SpecValidation.validate(plan)
        if let n, !(0...10).contains(n) {
          #expect(throws: SpecError.self) { try RecoveryPlanLogic.steps(plan) }
        }
        plan.rtoTarget = "1h"
        let rp = RecoveryPlan(metadata: ObjectMeta(name: "rp", namespace: "shop"), spec: plan)
        _ = RecoveryPlanLogic.advance(plan: rp, world: PlanWorld(), now: testNow)

        var drill = DRDrill(
          metadata: ObjectMeta(name: "d", namespace: "shop"),
          spec: DRDrillSpec(
            schedule: "@every 87600h", target: DrillTarget(backupPolicyRef: LocalObjectReference(name: "p"))))
        drill.metadata.creationTimestamp = date
        drill.spec.historyLimit = n
        var ds = DRDrillStatus()
        ds.lastRunTime = date
        drill.status = ds
        _ = SpecValidation.validate(drill.spec)
        if let cron = try? CronSchedule("@every 87600h") {
          _ = DrillLogic.decide(drill, cron: cron, now: testNow)
        }
      }
    }
  }

  @Test func requeueDelaysAreBounded() {
    for s in [-Double.infinity, -1e300, -1, 0, 0.5, 1, 1e12, 1e300, .infinity, .nan] {
      let d = requeueDelay(seconds: s)
      #expect(d >= .seconds(1) && d <= .seconds(Int64(maxRequeueSeconds)), "\(s)")
    }
  }
}
