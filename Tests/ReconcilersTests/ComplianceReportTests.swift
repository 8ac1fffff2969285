import DRAPI
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

@Suite struct ComplianceReportTests {
  func objects() throws -> ([BackupPolicy], [RecoveryPlan], [DRDrill]) {
    var policy = try recoveryTestPolicy()
    policy.spec.compliance = [.pciDSS]
    policy.status = BackupPolicyStatus(
      conditions: [
        Condition(
          type: BackupPolicyCondition.rpoMet, status: .false, reason: "OverTarget", lastTransitionTime: drillNow)
      ], lastSuccessfulBackup: drillNow - 120, rpoAgeSeconds: 120, rpoTargetSeconds: 60)
    var plan = try recoveryTestPlan(trigger: nil)
    plan.spec.compliance = [.hipaa]
    plan.status = RecoveryPlanStatus(
      conditions: [
        Condition(
          type: RecoveryPlanCondition.rtoMet, status: .true, reason: "WithinTarget", lastTransitionTime: drillNow)
      ], phase: .succeeded, startTime: drillNow - 600, rtoTargetSeconds: 900, rtoAchievedSeconds: 250)
    var drill = try drillTestDrill()
    drill.spec.compliance = [.hipaa]
    drill.status = DRDrillStatus(
      lastResult: DrillResult(
        startTime: drillNow - 3600, passed: true, rpoAchievedSeconds: 200, rtoAchievedSeconds: 252, dataIntegrity: true,
        complianceScore: 100))
    return ([policy], [plan], [drill])
  }

  @Test func profilesAreJudgedOnTheirOwnTargets() throws {
    let (p, r, d) = try objects()
    let report = ComplianceReport.build(policies: p, plans: r, drills: d, scope: "all namespaces", now: drillNow)
    let pci = try #require(report.profiles.first { $0.profile == "pci-dss" })
    #expect(pci.met == false)
    #expect(pci.gaps == ["BackupPolicy shop/db: RPO 2m over 1m"])
    let hipaa = try #require(report.profiles.first { $0.profile == "hipaa" })
    #expect(hipaa.met == true)
    #expect(hipaa.objects == ["RecoveryPlan shop/shop-recovery", "DRDrill shop/shop-weekly"])
    #expect(report.profiles.first { $0.profile == "sox" }?.objects.isEmpty == true)
    #expect(report.policies.first?.rpoMet == false)
    #expect(report.plans.first?.rtoAchievedSeconds == 250)
    #expect(report.drills.first?.complianceScore == 100)
  }

  @Test func textMarkdownAndJSON() throws {
    let (p, r, d) = try objects()
    let report = ComplianceReport.build(policies: p, plans: r, drills: d, scope: "namespace shop", now: drillNow)
    let text = report.text()
    #expect(text.contains("BotRT compliance report, namespace shop"))
    #expect(text.contains("shop       db"))
    #expect(text.contains("PCI-DSS (RPO 1m, RTO 15m): NOT met. BackupPolicy shop/db: RPO 2m over 1m."))
    #expect(text.contains("HIPAA (RPO 5m, RTO 30m): met by all 2 objects."))
    let md = report.markdown()
    #expect(md.contains("| NAMESPACE | NAME | TIER | PROFILES | RPO TARGET | RPO NOW | MET |"))
    #expect(md.contains("| shop | db | critical | pci-dss | 1m | 2m | NO |"))
    let json = try report.json()
    let back = try KubeJSON.decoder().decode(ComplianceReport.self, from: Data(json.utf8))
    #expect(back == report)
    let empty = ComplianceReport.build(policies: [], plans: [], drills: [], scope: "all namespaces", now: drillNow)
    #expect(empty.text().contains("(none)"))
    #expect(empty.profiles.allSatisfy { !$0.met })
  }
}
