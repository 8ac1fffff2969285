import DRAPI
import Foundation
import Testing

@testable import Reconcilers

@Suite struct ComplianceScoreTests {
  let targets = DrillTargets(rpoSeconds: 300, rtoSeconds: 900)

  func measure(
    rpo: Int64? = 60, rto: Int64? = 300, integrity: Bool = true, throughput: Double? = 100, baseline: Double? = 100,
    security: SecurityChecks = allSecure
  ) -> DrillMeasurements {
    DrillMeasurements(
      rpoAchievedSeconds: rpo, rtoAchievedSeconds: rto, dataIntegrity: integrity, restoreBytesPerSecond: throughput,
      baselineBytesPerSecond: baseline, security: security)
  }

  @Test func perfectRunScores100() {
    let s = ComplianceScore.compute(measure(), targets: targets)
    #expect(s.score == 100)
    #expect(s.deductions.isEmpty)
    #expect(s.parts.values.reduce(0, +) == 100)
  }

  @Test func timesOverTargetLoseProportionally() {
    // RTO twice the target: 10 of 20 points.
    let s = ComplianceScore.compute(measure(rto: 1_800), targets: targets)
    #expect(s.parts["rto"] == 10)
    #expect(s.score == 90)
    // RPO unknown: 0 of 20 points.
    let u = ComplianceScore.compute(measure(rpo: nil), targets: targets)
    #expect(u.parts["rpo"] == 0)
    #expect(u.score == 80)
  }

  @Test func degradationWithinTheLimitCostsNothingBeyondItScalesDown() {
    #expect(ComplianceScore.compute(measure(throughput: 80, baseline: 100), targets: targets).score == 100)
    // 60 % slower with 20 % allowed: 10 * (1 - 40/80) = 5 points.
    let s = ComplianceScore.compute(measure(throughput: 40, baseline: 100), targets: targets)
    #expect(s.parts["performance"] == 5)
    #expect(s.score == 95)
    // No baseline: nothing to compare, nothing deducted.
    #expect(ComplianceScore.compute(measure(baseline: nil), targets: targets).parts["performance"] == 10)
  }

  @Test func securityChecksShareTwentyPointsAndUncheckedCountsAsFailed() {
    var sec = allSecure
    sec.signaturesVerified = false
    let s = ComplianceScore.compute(measure(security: sec), targets: targets)
    #expect(s.parts["security"] == 15)  // 3 of 4 applicable checks
    #expect(s.deductions.contains("Security check failed: signatures verified."))
    var calico = allSecure
    calico.calicoIntact = true
    #expect(calico.applicable.count == 5)
    let unchecked = SecurityChecks()
    #expect(ComplianceScore.compute(measure(security: unchecked), targets: targets).parts["security"] == 0)
  }

  @Test func integrityFailureCapsAtFifty() {
    let s = ComplianceScore.compute(measure(integrity: false), targets: targets)
    #expect(s.score == 50)
    #expect(s.deductions.contains("A run without data integrity scores at most 50."))
  }

  @Test func profilesJudgeTheirOwnTargetsAndCapTheScore() {
    // PCI-DSS wants a 1 min RPO and 15 min RTO; 2 min RPO misses it even if the drill's target is 5 min.
    let t = DrillTargets(rpoSeconds: 300, rtoSeconds: 900, profiles: [.pciDSS, .gdpr, .pciDSS])
    #expect(t.profiles == [.gdpr, .pciDSS])
    let s = ComplianceScore.compute(measure(rpo: 120), targets: t)
    let pci = s.profiles.first { $0.profile == .pciDSS }
    #expect(pci?.met == false)
    #expect(pci?.gaps == ["RPO 2m over 1m"])
    #expect(s.profiles.first { $0.profile == .gdpr }?.met == true)
    #expect(s.score == 90)
    // A profile's required check failing is a gap for that profile only.
    var sec = allSecure
    sec.networkPoliciesIntact = false
    let h = ComplianceScore.compute(
      measure(rpo: 60, security: sec),
      targets: DrillTargets(
        rpoSeconds: 300, rtoSeconds: 900, profiles: [.hipaa, .gdpr]))
    #expect(h.profiles.first { $0.profile == .hipaa }?.gaps == ["NetworkPolicies present and unchanged failed"])
    #expect(h.profiles.first { $0.profile == .gdpr }?.met == true)
  }
}
