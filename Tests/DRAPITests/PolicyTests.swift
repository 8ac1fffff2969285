import Foundation
import Testing

@testable import DRAPI

/// A minimal valid BackupPolicy spec for tests.
func policySpec(
  tier: Tier, schedule: String? = nil, rpo: String? = nil, compliance: [ComplianceProfile]? = nil,
  retention: RetentionSpec? = nil, keyRotationDays: Int? = nil
) -> BackupPolicySpec {
  BackupPolicySpec(
    tier: tier, schedule: schedule, rpo: rpo, compliance: compliance,
    source: BackupSource(pvc: PVCSource(claimName: "data")),
    repository: RepositorySpec(local: LocalRepository(path: "/repo", claimName: "repo")),
    encryption: EncryptionSpec(
      kms: KMSSpec(localKeySecretRef: SecretReference(name: "key")), keyRotationDays: keyRotationDays),
    retention: retention)
}

let now = date("2024-01-01T00:00:00Z")

@Suite struct PolicyTests {
  @Test func tierTableFromTheOriginalDesign() {
    let c = TierDefaults.of(.critical)
    #expect(c.schedule == "*/5 * * * *" && c.rpoSeconds == 300 && c.rtoSeconds == 900 && c.drill == .daily)
    let i = TierDefaults.of(.important)
    #expect(i.schedule == "0 * * * *" && i.rpoSeconds == 1_800 && i.rtoSeconds == 5_400 && i.drill == .weekly)
    let s = TierDefaults.of(.standard)
    #expect(s.schedule == "0 2 * * *" && s.rpoSeconds == 14_400 && s.rtoSeconds == 10_800 && s.drill == .monthly)
    let a = TierDefaults.of(.archive)
    #expect(a.schedule == "0 3 * * 0" && a.rpoSeconds == 86_400 && a.drill == .quarterly)
  }

  @Test func tierRetentionCoversTheKeepColumn() throws {
    for tier in Tier.allCases {
      let d = TierDefaults.of(tier)
      #expect(try d.retention.keptSpanSeconds() >= d.keepSeconds, "\(tier)")
    }
  }

  @Test func tierScheduleIntervals() throws {
    for tier in Tier.allCases {
      let d = TierDefaults.of(tier)
      #expect(try CronSchedule(d.schedule).maxInterval(from: now) == d.scheduleInterval, "\(tier)")
    }
  }

  /// Headroom: the default schedule runs at least every half RPO (the least frequent ladder step within RPO/2), so a
  /// backup may take as long as the interval before RPOMet turns False. The original table's frequencies (every
  /// 5 min, hourly, daily, weekly) are all slower than that, so each tier's default is tightened, and says so.
  @Test func effectiveTierSchedulesLeaveHalfTheRPOAsHeadroom() throws {
    let expected: [Tier: Sourced<String>] = [
      .critical: Sourced("*/2 * * * *", .rpo), .important: Sourced("*/15 * * * *", .rpo),
      .standard: Sourced("0 */2 * * *", .rpo), .archive: Sourced("0 */12 * * *", .rpo),
    ]
    for tier in Tier.allCases {
      let e = try EffectivePolicy(spec: policySpec(tier: tier), now: now)
      #expect(e.schedule == expected[tier], "\(tier)")
      let gap = try #require(try CronSchedule(e.schedule.value).maxInterval(from: now))
      #expect(gap * 2 <= e.rpoSeconds.value, "\(tier): gap \(gap) > half the RPO \(e.rpoSeconds.value)")
      #expect(e.warnings.isEmpty)
    }
    #expect(scheduleHeadroomInterval(rpoSeconds: 60) == 60)
    #expect(scheduleHeadroomInterval(rpoSeconds: 1_800) == 900)
  }

  @Test func complianceNumbers() {
    #expect(ComplianceTargets.of(.sox).rpoSeconds == 60)
    #expect(ComplianceTargets.of(.sox).drill == .quarterly)
    #expect(ComplianceTargets.of(.gdpr).rpoSeconds == 300)
    #expect(ComplianceTargets.of(.pciDSS).rpoSeconds == 60)
    #expect(ComplianceTargets.of(.pciDSS).rtoSeconds == 900)
    #expect(ComplianceTargets.of(.hipaa).rpoSeconds == 300)
    #expect(ComplianceTargets.of(.hipaa).rtoSeconds == 1_800)
  }

  @Test func tierDefaultsAlone() throws {
    let e = try EffectivePolicy(spec: policySpec(tier: .standard), now: now)
    #expect(e.schedule == Sourced("0 */2 * * *", .rpo))
    #expect(e.rpoSeconds == Sourced(14_400, .tier(.standard)))
    #expect(e.retention.source == .tier(.standard))
    #expect(e.retention.value.maxAge == "90d")
    #expect(e.keyRotationDays == Sourced(90, .builtInDefault))
    #expect(e.drill == Sourced(.monthly, .tier(.standard)))
    #expect(e.rtoSeconds == Sourced(10_800, .tier(.standard)))
    #expect(e.warnings.isEmpty)
  }

  @Test func stricterComplianceWinsAndIsReported() throws {
    let e = try EffectivePolicy(spec: policySpec(tier: .important, compliance: [.gdpr]), now: now)
    #expect(e.rpoSeconds == Sourced(300, .compliance([.gdpr])))
    #expect(e.rpoSeconds.source.description == "compliance:gdpr")
    // The hourly default cannot meet 5 minutes with headroom, so the schedule is tightened to every 2 minutes.
    #expect(e.schedule == Sourced("*/2 * * * *", .rpo))
    #expect(e.rtoSeconds == Sourced(5_400, .tier(.important)))
  }

  @Test func equalProfilesAreAllNamed() throws {
    let e = try EffectivePolicy(spec: policySpec(tier: .critical, compliance: [.pciDSS, .sox, .gdpr]), now: now)
    #expect(e.rpoSeconds.value == 60)
    #expect(e.rpoSeconds.source.description == "compliance:sox,pci-dss")
    #expect(e.schedule == Sourced("* * * * *", .rpo))
    #expect(e.rtoSeconds == Sourced(900, .tier(.critical)))
    // A 1-minute RPO gets no headroom below cron's minute: status warns that RPOMet may flap.
    #expect(e.warnings.count == 1 && e.warnings[0].contains("leaves no headroom"), "\(e.warnings)")
  }

  @Test func laxerComplianceKeepsTheTier() throws {
    let e = try EffectivePolicy(spec: policySpec(tier: .critical, compliance: [.hipaa]), now: now)
    #expect(e.rpoSeconds == Sourced(300, .tier(.critical)))
    #expect(e.schedule == Sourced("*/2 * * * *", .rpo))
  }

  @Test func rpoOverride() throws {
    let e = try EffectivePolicy(spec: policySpec(tier: .standard, rpo: "45m"), now: now)
    #expect(e.rpoSeconds == Sourced(2_700, .override))
    #expect(e.schedule == Sourced("*/15 * * * *", .rpo))
    let tightened = try EffectivePolicy(spec: policySpec(tier: .standard, rpo: "45m", compliance: [.sox]), now: now)
    #expect(tightened.rpoSeconds == Sourced(60, .compliance([.sox])))
    let looser = try EffectivePolicy(spec: policySpec(tier: .critical, rpo: "2h"), now: now)
    #expect(looser.rpoSeconds == Sourced(7_200, .override))
    #expect(looser.schedule == Sourced("*/5 * * * *", .tier(.critical)))  // 5 min is within half of 2h
  }

  @Test func explicitScheduleIsKeptWithAWarningWhenTooSlow() throws {
    let ok = try EffectivePolicy(spec: policySpec(tier: .standard, schedule: "30 1 * * *"), now: now)
    #expect(ok.schedule == Sourced("30 1 * * *", .override))
    #expect(ok.warnings.isEmpty == false)  // daily is slower than the 4h RPO
    #expect(ok.warnings[0].contains("RPOMet will turn False"))
    let fine = try EffectivePolicy(spec: policySpec(tier: .standard, schedule: "0 */2 * * *"), now: now)
    #expect(fine.warnings.isEmpty)
  }

  @Test func badOverridesNameTheField() {
    do {
      _ = try EffectivePolicy(spec: policySpec(tier: .standard, schedule: "0 25 * * *"), now: now)
      Issue.record("accepted")
    } catch {
      #expect(error.field == "spec.schedule")
      #expect(error.message.contains("hour"))
    }
    do {
      _ = try EffectivePolicy(spec: policySpec(tier: .standard, rpo: "5 minutes"), now: now)
      Issue.record("accepted")
    } catch {
      #expect(error.field == "spec.rpo")
    }
    #expect(throws: SpecError.self) { try EffectivePolicy(spec: policySpec(tier: .standard, rpo: "0s"), now: now) }
  }

  @Test func retentionOverrideAndComplianceExtension() throws {
    let mine = RetentionSpec(keepDaily: 30)
    let e = try EffectivePolicy(spec: policySpec(tier: .critical, retention: mine), now: now)
    #expect(e.retention == Sourced(mine, .override))
    let sox = try EffectivePolicy(spec: policySpec(tier: .standard, compliance: [.sox, .pciDSS]), now: now)
    #expect(sox.retention.source == .compliance([.sox]))
    #expect(sox.retention.value.keepMonthly == 86)  // 7 * 365 days in 30-day months, rounded up
    #expect(try sox.retention.value.keptSpanSeconds() >= 7 * 365 * 86_400)
    // Critical already keeps 7 years: SOX changes nothing.
    let critical = try EffectivePolicy(spec: policySpec(tier: .critical, compliance: [.sox]), now: now)
    #expect(critical.retention.source == .tier(.critical))
  }

  @Test func drillFrequency() throws {
    let archive = try EffectivePolicy(spec: policySpec(tier: .archive, compliance: [.sox]), now: now)
    #expect(archive.drill == Sourced(.quarterly, .tier(.archive)))
    let standardSox = try EffectivePolicy(spec: policySpec(tier: .standard, compliance: [.sox]), now: now)
    #expect(standardSox.drill == Sourced(.monthly, .tier(.standard)))
    #expect(
      try effectiveDrillSchedule(schedule: nil, targetTier: .important, compliance: [])
        == Sourced("0 3 * * 0", .tier(.important)))
    #expect(
      try effectiveDrillSchedule(schedule: "biweekly", targetTier: .critical, compliance: [])
        == Sourced("0 3 1,15 * *", .preset(.biweekly)))
    #expect(
      try effectiveDrillSchedule(schedule: "30 4 * * MON-FRI", targetTier: nil, compliance: [.sox])
        == Sourced("30 4 * * MON-FRI", .override))
    #expect(throws: SpecError.self) {
      try effectiveDrillSchedule(schedule: "fortnightly", targetTier: nil, compliance: [])
    }
  }

  @Test func drillPresetsAreValidCronWithinTheirInterval() throws {
    for p in DrillPreset.allCases {
      let gap = try #require(try CronSchedule(p.cron).maxInterval(from: now))
      #expect(gap <= p.maxIntervalSeconds, "\(p)")
    }
    #expect(DrillPreset.daily < DrillPreset.quarterly)
  }

  @Test func keyRotationOverride() throws {
    let e = try EffectivePolicy(spec: policySpec(tier: .critical, keyRotationDays: 30), now: now)
    #expect(e.keyRotationDays == Sourced(30, .override))
  }

  @Test func rto() throws {
    #expect(try effectiveRTO(tier: .critical, override: nil, compliance: nil) == Sourced(900, .tier(.critical)))
    #expect(
      try effectiveRTO(tier: .standard, override: nil, compliance: [.hipaa]) == Sourced(1_800, .compliance([.hipaa])))
    #expect(try effectiveRTO(tier: .important, override: "45m", compliance: [.gdpr]) == Sourced(2_700, .override))
    #expect(try effectiveRTO(tier: .archive, override: nil, compliance: nil).value == 86_400)
    #expect(throws: SpecError.self) { try effectiveRTO(tier: .archive, override: "soon", compliance: nil) }
  }

  @Test func sourceDescriptions() {
    #expect(PolicySource.tier(.critical).description == "tier:critical")
    #expect(PolicySource.override.description == "override")
    #expect(PolicySource.compliance([.pciDSS, .sox]).description == "compliance:sox,pci-dss")
    #expect(PolicySource.preset(.weekly).description == "preset:weekly")
    #expect(DataType.database.keyName == "backup-database-key")
  }
}
