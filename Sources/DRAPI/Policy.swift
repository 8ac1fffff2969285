import Foundation

/// Protection tier of a BackupPolicy or RecoveryPlan; sets the default schedule, RPO, retention, RTO and drills.
public enum Tier: String, Codable, Sendable, Hashable, CaseIterable {
  case critical, important, standard, archive
}

/// A regulatory compliance profile that tightens the targets of a tier.
public enum ComplianceProfile: String, Codable, Sendable, Hashable, CaseIterable, Comparable {
  case sox
  case gdpr
  case pciDSS = "pci-dss"
  case hipaa

  public static func < (a: Self, b: Self) -> Bool {
    allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
  }
}

/// Drill frequency presets of a DRDrill, from most to least frequent.
public enum DrillPreset: String, Codable, Sendable, Hashable, CaseIterable, Comparable {
  case daily, weekly, biweekly, monthly, quarterly

  /// The cron expression the preset stands for (UTC, 03:00).
  ///
  /// `biweekly` runs on the 1st and 15th of each month, since cron cannot count weeks.
  public var cron: String {
    switch self {
    case .daily: "0 3 * * *"
    case .weekly: "0 3 * * 0"
    case .biweekly: "0 3 1,15 * *"
    case .monthly: "0 3 1 * *"
    case .quarterly: "0 3 1 1,4,7,10 *"
    }
  }

  /// The longest gap between runs, in seconds.
  public var maxIntervalSeconds: Int64 {
    switch self {
    case .daily: 86_400
    case .weekly: 7 * 86_400
    case .biweekly: 17 * 86_400
    case .monthly: 31 * 86_400
    case .quarterly: 92 * 86_400
    }
  }

  public static func < (a: Self, b: Self) -> Bool {
    allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
  }
}

/// What set an effective value, as status reports it ("tier:critical", "override", "compliance:sox", ...).
public enum PolicySource: Sendable, Hashable, CustomStringConvertible {
  /// The tier's default.
  case tier(Tier)
  /// An explicit spec field.
  case override
  /// One or more compliance profiles, stricter than the tier or the override.
  case compliance([ComplianceProfile])
  /// The schedule was tightened so that it can meet the RPO target.
  case rpo
  /// A DRDrill schedule preset.
  case preset(DrillPreset)
  /// The CRD's built-in default (e.g. keyRotationDays 90).
  case builtInDefault

  public var description: String {
    switch self {
    case .tier(let t): "tier:\(t.rawValue)"
    case .override: "override"
    case .compliance(let ps): "compliance:" + ps.sorted().map(\.rawValue).joined(separator: ",")
    case .rpo: "rpo"
    case .preset(let p): "preset:\(p.rawValue)"
    case .builtInDefault: "default"
    }
  }
}

/// The targets a tier implies when nothing overrides them.
public struct TierDefaults: Sendable, Hashable {
  /// Default backup schedule (cron, UTC).
  public var schedule: String
  /// The longest gap between two runs of `schedule`, in seconds.
  public var scheduleInterval: Int64
  /// Default RPO in seconds.
  public var rpoSeconds: Int64
  /// How long data is kept, in seconds (the "keep" column of the tier table).
  public var keepSeconds: Int64
  /// Default retention rules.
  public var retention: RetentionSpec
  /// Default RTO target of a RecoveryPlan, in seconds.
  public var rtoSeconds: Int64
  /// Default drill frequency.
  public var drill: DrillPreset

  /// The table from the original design; archive's RTO (24 h) is this project's choice. Retention keeps a snapshot
  /// at least the keep column old (`RetentionSpec.keptSpanSeconds`): critical and important keep 86 and 26 months
  /// (7 and 2 years plus the current month and the one the oldest kept snapshot is in), standard and archive keep
  /// everything within 90 days and 7 years of the newest snapshot. The table's frequencies
  /// are slower than half its RPOs (the headroom rule, `scheduleHeadroomInterval`); `EffectivePolicy` tightens the
  /// schedule then.
  public static func of(_ tier: Tier) -> TierDefaults {
    let year: Int64 = 365 * 86_400
    switch tier {
    case .critical:
      return TierDefaults(
        schedule: "*/5 * * * *", scheduleInterval: 300, rpoSeconds: 300, keepSeconds: 7 * year,
        retention: RetentionSpec(
          keepLast: 288, keepHourly: 168, keepDaily: 90, keepWeekly: 104, keepMonthly: 86, keepYearly: 7),
        rtoSeconds: 900, drill: .daily)
    case .important:
      return TierDefaults(
        schedule: "0 * * * *", scheduleInterval: 3_600, rpoSeconds: 1_800, keepSeconds: 2 * year,
        retention: RetentionSpec(keepLast: 48, keepDaily: 90, keepWeekly: 104, keepMonthly: 26, keepYearly: 2),
        rtoSeconds: 5_400, drill: .weekly)
    case .standard:
      return TierDefaults(
        schedule: "0 2 * * *", scheduleInterval: 86_400, rpoSeconds: 4 * 3_600, keepSeconds: 90 * 86_400,
        retention: RetentionSpec(keepLast: 7, maxAge: "90d"), rtoSeconds: 3 * 3_600, drill: .monthly)
    case .archive:
      return TierDefaults(
        schedule: "0 3 * * 0", scheduleInterval: 7 * 86_400, rpoSeconds: 86_400, keepSeconds: 7 * year,
        retention: RetentionSpec(keepLast: 7, maxAge: "7y"), rtoSeconds: 86_400, drill: .quarterly)
    }
  }
}

/// The targets a compliance profile imposes (nil = the profile sets none).
public struct ComplianceTargets: Sendable, Hashable {
  /// Maximum RPO in seconds.
  public var rpoSeconds: Int64?
  /// Maximum RTO in seconds.
  public var rtoSeconds: Int64?
  /// Minimum time backups must be kept, in seconds.
  public var minRetentionSeconds: Int64?
  /// Least frequent allowed drill schedule.
  public var drill: DrillPreset?

  /// The original design's numbers: SOX 1 min RPO, 30 min RTO, quarterly drills; GDPR 5 min RPO, 72 h RTO
  /// (data portability); PCI-DSS 1 min RPO, 15 min RTO (cardholder data); HIPAA 5 min RPO, 30 min RTO.
  /// Retention minimums are this project's reading of the regulations: SOX 7 y, PCI-DSS 1 y, HIPAA 6 y.
  public static func of(_ profile: ComplianceProfile) -> ComplianceTargets {
    let year: Int64 = 365 * 86_400
    switch profile {
    case .sox:
      return ComplianceTargets(rpoSeconds: 60, rtoSeconds: 1_800, minRetentionSeconds: 7 * year, drill: .quarterly)
    case .gdpr: return ComplianceTargets(rpoSeconds: 300, rtoSeconds: 72 * 3_600, minRetentionSeconds: nil, drill: nil)
    case .pciDSS: return ComplianceTargets(rpoSeconds: 60, rtoSeconds: 900, minRetentionSeconds: year, drill: nil)
    case .hipaa: return ComplianceTargets(rpoSeconds: 300, rtoSeconds: 1_800, minRetentionSeconds: 6 * year, drill: nil)
    }
  }
}

/// A value with the source that set it.
public struct Sourced<Value: Sendable & Hashable>: Sendable, Hashable {
  /// The effective value.
  public var value: Value
  /// What set it.
  public var source: PolicySource

  public init(_ value: Value, _ source: PolicySource) {
    self.value = value
    self.source = source
  }
}

/// An invalid value in a spec that the schema could not catch, naming the field.
public struct SpecError: Error, Sendable, Hashable, CustomStringConvertible {
  /// What kind of problem it is: the reason of the condition that reports it (CamelCase).
  public enum Reason: String, Sendable, Hashable {
    /// A referenced Secret does not exist.
    case secretNotFound = "SecretNotFound"
    /// A referenced Secret lacks a key the engine needs.
    case secretKeyMissing = "SecretKeyMissing"
    /// The key service (spec.encryption.kms) is set wrongly.
    case invalidKMS = "InvalidKMS"
    /// The schedule is not a valid cron expression.
    case invalidSchedule = "InvalidSchedule"
    /// Any other invalid value.
    case invalidSpec = "InvalidSpec"

    /// The reason of a problem of `field` that has no reason of its own.
    public init(field: String) {
      if field.hasPrefix("spec.encryption.kms") {
        self = .invalidKMS
      } else if field == "spec.schedule" {
        self = .invalidSchedule
      } else {
        self = .invalidSpec
      }
    }
  }

  /// JSON path of the field, e.g. "spec.schedule".
  public var field: String
  /// What is wrong and what to do.
  public var message: String
  public var reason: Reason

  /// `reason`: nil takes the field's (`Reason(field:)`).
  public init(field: String, message: String, reason: Reason? = nil) {
    self.field = field
    self.message = message
    self.reason = reason ?? Reason(field: field)
  }

  public var description: String { "\(field): \(message)" }
}

/// Picks the strictest (smallest) target among a base value and the profiles; ties keep the base's source.
func strictest(
  base: Sourced<Int64>, profiles: [ComplianceProfile], _ target: (ComplianceTargets) -> Int64?
) -> Sourced<Int64> {
  let values = profiles.compactMap { p in target(.of(p)).map { (p, $0) } }
  guard let smallest = values.map(\.1).min(), smallest < base.value else { return base }
  let winners = Array(Set(values.filter { $0.1 == smallest }.map(\.0))).sorted()
  return Sourced(smallest, .compliance(winners))
}

/// The schedules tried, from most to least frequent, when a tier's default must be tightened to meet an RPO.
let scheduleLadder: [(cron: String, interval: Int64)] = [
  ("* * * * *", 60), ("*/2 * * * *", 120), ("*/5 * * * *", 300), ("*/10 * * * *", 600), ("*/15 * * * *", 900),
  ("*/30 * * * *", 1_800), ("0 * * * *", 3_600), ("0 */2 * * *", 7_200), ("0 */4 * * *", 14_400),
  ("0 */6 * * *", 21_600), ("0 */12 * * *", 43_200), ("0 2 * * *", 86_400), ("0 3 * * 0", 7 * 86_400),
]

/// The longest default interval between backups for an RPO: half of it, so that a backup may take as long as the
/// interval and a late or failed run still leaves time for the next before RPOMet turns False (the RPO age counts
/// from the snapshot's point in time, i.e. when its backup started). Never below a minute (cron's resolution).
public func scheduleHeadroomInterval(rpoSeconds: Int64) -> Int64 { max(60, rpoSeconds / 2) }

/// The effective settings of a BackupPolicy after tier defaults, overrides and compliance profiles, each with its
/// source, as the controller writes them to status.
public struct EffectivePolicy: Sendable, Hashable {
  /// Cron schedule of the backup CronJob.
  public var schedule: Sourced<String>
  /// RPO target in seconds.
  public var rpoSeconds: Sourced<Int64>
  /// Retention rules for `forget --prune`, all tier defaults filled in.
  public var retention: Sourced<RetentionSpec>
  /// Days between key rotations.
  public var keyRotationDays: Sourced<Int>
  /// How often drills of this policy should run at least.
  public var drill: Sourced<DrillPreset>
  /// RTO target in seconds for restores of this policy's data.
  public var rtoSeconds: Sourced<Int64>
  /// Plain sentences about settings that cannot meet their targets (e.g. a schedule slower than the RPO).
  public var warnings: [String]

  /// Computes the effective policy; throws when an override cannot be parsed. `now` anchors schedule sampling.
  public init(spec: BackupPolicySpec, now: Date) throws(SpecError) {
    let tier = TierDefaults.of(spec.tier)
    let profiles = Array(Set(spec.compliance ?? [])).sorted()
    var warnings: [String] = []

    // RPO: override or tier, then compliance.
    var rpoBase = Sourced(tier.rpoSeconds, .tier(spec.tier))
    if let text = spec.rpo {
      do {
        rpoBase = Sourced(try DurationText.parseSeconds(text, field: "spec.rpo"), .override)
      } catch {
        throw SpecError(field: "spec.rpo", message: error.description)
      }
      guard rpoBase.value > 0 else { throw SpecError(field: "spec.rpo", message: "the RPO must be longer than 0s") }
    }
    let rpo = strictest(base: rpoBase, profiles: profiles, \.rpoSeconds)
    rpoSeconds = rpo

    // Schedule: an explicit one is kept (with a warning if too slow); the default runs at least every half RPO.
    if let explicit = spec.schedule {
      let parsed: CronSchedule
      do {
        parsed = try CronSchedule(explicit)
      } catch {
        throw SpecError(field: "spec.schedule", message: error.description)
      }
      schedule = Sourced(explicit, .override)
      if let gap = parsed.maxInterval(from: now), gap > rpo.value {
        warnings.append(
          "The schedule '\(explicit)' leaves up to \(DurationText.format(seconds: gap)) between backups, longer than "
            + "the RPO target of \(DurationText.format(seconds: rpo.value)) (\(rpo.source)); RPOMet will turn False.")
      }
    } else {
      let headroom = scheduleHeadroomInterval(rpoSeconds: rpo.value)
      if tier.scheduleInterval <= headroom {
        schedule = Sourced(tier.schedule, .tier(spec.tier))
      } else {
        let fitting = scheduleLadder.last { $0.interval <= headroom } ?? scheduleLadder[0]
        schedule = Sourced(fitting.cron, .rpo)
      }
      if rpo.value < 2 * scheduleLadder[0].interval {
        warnings.append(
          "The RPO target of \(DurationText.format(seconds: rpo.value)) (\(rpo.source)) leaves no headroom: the most "
            + "frequent schedule is every minute, so RPOMet turns False whenever a backup and the wait for the next "
            + "one take longer than the RPO.")
      }
    }

    // Retention: explicit rules replace the tier's; compliance extends the kept span if it is too short.
    var retentionValue = tier.retention
    var retentionSource = PolicySource.tier(spec.tier)
    if let r = spec.retention, !r.isEmpty {
      retentionValue = r
      retentionSource = .override
    }
    let span: Int64
    do {
      span = try retentionValue.keptSpanSeconds()
    } catch {
      throw SpecError(field: "spec.retention.maxAge", message: error.description)
    }
    let requirements = profiles.compactMap { p in ComplianceTargets.of(p).minRetentionSeconds.map { (p, $0) } }
    if let longest = requirements.map(\.1).max(), longest > span {
      let months = RetentionSpec.keepMonthly(covering: longest)
      retentionValue.keepMonthly = max(retentionValue.keepMonthly ?? 0, months)
      retentionSource = .compliance(requirements.filter { $0.1 == longest }.map(\.0))
    }
    retention = Sourced(retentionValue, retentionSource)

    if let days = spec.encryption.keyRotationDays {
      keyRotationDays = Sourced(days, .override)
    } else {
      keyRotationDays = Sourced(90, .builtInDefault)
    }

    // Drills: the more frequent of the tier's and the profiles'.
    var drillValue = Sourced(tier.drill, .tier(spec.tier))
    let drillProfiles = profiles.compactMap { p in ComplianceTargets.of(p).drill.map { (p, $0) } }
    if let strict = drillProfiles.map(\.1).min(), strict < drillValue.value {
      drillValue = Sourced(strict, .compliance(drillProfiles.filter { $0.1 == strict }.map(\.0)))
    }
    drill = drillValue

    rtoSeconds = strictest(base: Sourced(tier.rtoSeconds, .tier(spec.tier)), profiles: profiles, \.rtoSeconds)
    self.warnings = warnings
  }
}

/// The effective RTO target of a RecoveryPlan: override or tier, tightened by compliance profiles.
public func effectiveRTO(
  tier: Tier, override: String?, compliance: [ComplianceProfile]?, field: String = "spec.rtoTarget"
) throws(SpecError) -> Sourced<Int64> {
  var base = Sourced(TierDefaults.of(tier).rtoSeconds, .tier(tier))
  if let text = override {
    do {
      base = Sourced(try DurationText.parseSeconds(text, field: field), .override)
    } catch {
      throw SpecError(field: field, message: error.description)
    }
    guard base.value > 0 else { throw SpecError(field: field, message: "the RTO target must be longer than 0s") }
  }
  return strictest(base: base, profiles: Array(Set(compliance ?? [])).sorted(), \.rtoSeconds)
}

/// The effective schedule of a DRDrill: spec.schedule (a preset or cron), else the target tier's drill frequency,
/// tightened by the compliance profiles of the drill and its target.
public func effectiveDrillSchedule(
  schedule: String?, targetTier: Tier?, compliance: [ComplianceProfile]
) throws(SpecError) -> Sourced<String> {
  if let s = schedule {
    if let preset = DrillPreset(rawValue: s) { return Sourced(preset.cron, .preset(preset)) }
    do {
      _ = try CronSchedule(s)
    } catch {
      throw SpecError(field: "spec.schedule", message: error.description)
    }
    return Sourced(s, .override)
  }
  var value = Sourced(TierDefaults.of(targetTier ?? .standard).drill, .tier(targetTier ?? .standard))
  let profiles = Array(Set(compliance)).sorted().compactMap { p in ComplianceTargets.of(p).drill.map { (p, $0) } }
  if let strict = profiles.map(\.1).min(), strict < value.value {
    value = Sourced(strict, .compliance(profiles.filter { $0.1 == strict }.map(\.0)))
  }
  return Sourced(value.value.cron, value.source)
}
