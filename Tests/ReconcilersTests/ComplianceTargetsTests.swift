import DRAPI
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

@Suite struct ComplianceTargetsTests {
  let now = Date(timeIntervalSince1970: 1_800_000_000)

  @Test func catalogHoldsTheNumbersOfTheOriginalDesign() {
    func seconds(_ id: String) -> Int64? { ComplianceCatalog.requirements.first { $0.id == id }?.seconds }
    #expect(seconds("sox.financial-data-rpo") == 60)
    #expect(seconds("sox.audit-log-rpo") == 0)
    #expect(seconds("sox.financial-system-rto") == 1_800)
    #expect(seconds("sox.testing-quarterly") == 7_776_000)
    #expect(seconds("gdpr.personal-data-rpo") == 300)
    #expect(seconds("gdpr.breach-detection") == 3_600)
    #expect(seconds("gdpr.data-portability-rto") == 259_200)
    #expect(seconds("gdpr.consent-management-rpo") == 60)
    #expect(seconds("gdpr.erasure") == 86_400)
    #expect(seconds("pci-dss.payment-data-rpo") == 60)
    #expect(seconds("pci-dss.cardholder-data-rto") == 900)
    #expect(seconds("pci-dss.security-monitoring-rpo") == 0)
    #expect(seconds("pci-dss.vulnerability-scan-rto") == 300)
    #expect(seconds("hipaa.healthcare-data-rpo") == 300)
    #expect(seconds("hipaa.critical-system-rto") == 1_800)
    #expect(ComplianceCatalog.requirements.contains { $0.id == "hipaa.access-logging" })
    #expect(ComplianceCatalog.requirements.count == 16)
    #expect(Set(ComplianceCatalog.requirements.map(\.id)).count == 16)
    // The primary data RPOs and system RTOs agree with the profile targets that tighten effective settings.
    for p in ComplianceProfile.allCases {
      let t = ComplianceTargets.of(p)
      let rpo = ComplianceCatalog.requirements(
        [p], subject: .backupPolicy
      ).first { $0.measure == .rpo && ($0.data == .notLogs || $0.data == .notConsent || $0.data == .any) }
      #expect(rpo?.seconds == t.rpoSeconds, "\(p)")
      let rto = ComplianceCatalog.requirements([p], subject: .recoveryPlan).first { $0.measure == .rto }
      #expect(rto?.seconds == t.rtoSeconds, "\(p)")
    }
  }

  func policy(
    _ profiles: [ComplianceProfile], dataType: DataType = .database, lastBackup: Date?,
    annotations: [String: String]? = nil
  ) throws -> BackupPolicy {
    var p = try recoveryTestPolicy()
    p.metadata.name = "p"
    p.metadata.namespace = "shop"
    p.metadata.annotations = annotations
    p.spec.compliance = profiles
    p.spec.dataType = dataType
    p.status = BackupPolicyStatus(lastSuccessfulBackup: lastBackup)
    return p
  }

  @Test func policyRPOTargetsNameTheBackupAndItsDeadline() throws {
    let last = now.addingTimeInterval(-120)
    let results = ComplianceEvaluation.policy(try policy([.sox, .gdpr], lastBackup: last), drills: nil, now: now)
    let sox = try #require(results.first { $0.id == "sox.financial-data-rpo" })
    #expect(sox.outcome == .notMet)
    #expect(sox.measuredSeconds == 120)
    #expect(sox.measuredAt == last)
    #expect(sox.evidence.contains(KubeJSON.formatDate(last)))
    let gdpr = try #require(results.first { $0.id == "gdpr.personal-data-rpo" })
    #expect(gdpr.outcome == .met)
    #expect(gdpr.evidence.contains("until \(KubeJSON.formatDate(last.addingTimeInterval(300)))"))
    // Not for a database policy: the log and consent targets.
    #expect(!results.contains { $0.id == "sox.audit-log-rpo" || $0.id == "gdpr.consent-management-rpo" })
    // Drills are judged by the report, not on the policy's own status.
    #expect(results.first { $0.id == "sox.testing-quarterly" }?.outcome == .notCovered)
    #expect(results.first { $0.id == "gdpr.breach-detection" }?.outcome == .byDesign)
    let (status, reason, message) = ComplianceEvaluation.summary(results)
    #expect(status == .false)
    #expect(reason == "TargetsMissed")
    #expect(message.contains("SOX financial data RPO (RPO 1m): not-met"))
    // The met GDPR target flips at its deadline; the requeue asks for that moment.
    #expect(ComplianceEvaluation.flips(results) == [last.addingTimeInterval(301)])
  }

  @Test func logsNeedRPOZeroWhichSnapshotsCannotGiveAndConsentHasItsOwnTarget() throws {
    let logs = ComplianceEvaluation.policy(
      try policy([.sox, .pciDSS], dataType: .logs, lastBackup: now.addingTimeInterval(-5)), drills: nil, now: now)
    #expect(logs.first { $0.id == "sox.audit-log-rpo" }?.outcome == .notMet)
    #expect(logs.first { $0.id == "pci-dss.security-monitoring-rpo" }?.outcome == .notMet)
    #expect(!logs.contains { $0.id == "sox.financial-data-rpo" })
    let consent = ComplianceEvaluation.policy(
      try policy(
        [.gdpr], lastBackup: now.addingTimeInterval(-90),
        annotations: [ComplianceCatalog.dataCategoryAnnotation: "consent"]), drills: nil, now: now)
    #expect(consent.first { $0.id == "gdpr.consent-management-rpo" }?.outcome == .notMet)
    #expect(!consent.contains { $0.id == "gdpr.personal-data-rpo" })
    let fresh = ComplianceEvaluation.policy(try policy([.hipaa], lastBackup: nil), drills: nil, now: now)
    #expect(fresh.first { $0.id == "hipaa.healthcare-data-rpo" }?.outcome == .notMeasured)
    #expect(ComplianceEvaluation.summary(fresh).0 == .unknown)
  }

  @Test func plansAndDrillsAreJudgedOnTheirLastRun() throws {
    var plan = try recoveryTestPlan(trigger: nil)
    plan.spec.compliance = [.pciDSS, .gdpr]
    plan.status = nil
    #expect(
      ComplianceEvaluation.plan(plan, now: now).allSatisfy { $0.outcome == .notMeasured || $0.outcome == .notCovered })
    let ps = RecoveryPlanStatus(
      phase: .succeeded, startTime: now.addingTimeInterval(-4_800), completionTime: now.addingTimeInterval(-3_600),
      rtoAchievedSeconds: 1_200)
    plan.status = ps
    let pr = ComplianceEvaluation.plan(plan, now: now)
    #expect(pr.first { $0.id == "pci-dss.cardholder-data-rto" }?.outcome == .notMet)
    #expect(pr.first { $0.id == "gdpr.data-portability-rto" }?.outcome == .met)
    #expect(pr.first { $0.id == "gdpr.data-portability-rto" }?.measuredAt == ps.completionTime)
    #expect(pr.first { $0.id == "pci-dss.vulnerability-scan-rto" }?.outcome == .notCovered)

    var drill = try drillTestDrill()
    drill.metadata.name = "d"
    drill.spec.target = DrillTarget(backupPolicyRef: LocalObjectReference(name: "p"))
    drill.spec.compliance = [.sox]
    let started = now.addingTimeInterval(-100 * 86_400)
    drill.status = DRDrillStatus(
      lastResult: DrillResult(
        startTime: started, completionTime: started.addingTimeInterval(600), passed: true, rpoAchievedSeconds: 30,
        rtoAchievedSeconds: 600))
    let dr = ComplianceEvaluation.drill(drill, now: now)
    #expect(dr.first { $0.id == "sox.financial-system-rto" }?.outcome == .met)
    #expect(dr.first { $0.id == "sox.financial-data-rpo" }?.outcome == .met)
    // 100 days since the last drill: the quarterly test is overdue.
    let quarterly = try #require(dr.first { $0.id == "sox.testing-quarterly" })
    #expect(quarterly.outcome == .notMet)
    #expect(quarterly.measuredSeconds == 8_640_000)

    // The report follows drills to the policy they rehearse.
    let report = ComplianceReport.build(
      policies: [try policy([.sox], lastBackup: now.addingTimeInterval(-30))], plans: [plan], drills: [drill],
      scope: "all namespaces", now: now)
    let policyTargets = try #require(report.targets.first { $0.object == "BackupPolicy shop/p" })
    #expect(policyTargets.results.first { $0.id == "sox.testing-quarterly" }?.outcome == .notMet)
    #expect(policyTargets.results.first { $0.id == "sox.financial-data-rpo" }?.outcome == .met)
    let text = report.text()
    #expect(text.contains("Compliance targets"))
    #expect(text.contains("SOX financial data RPO (RPO 1m): met, measured 30s at"))
    #expect(report.markdown().contains("### RecoveryPlan \(plan.metadata.namespace ?? "")/\(plan.name)"))
    #expect(try report.json().contains("\"targets\""))
  }
}
