import DRAPI
import Foundation
import KubeCore

/// What a compliance requirement is judged on.
public enum ComplianceSubject: String, Codable, Sendable, Hashable {
  case backupPolicy = "BackupPolicy"
  case recoveryPlan = "RecoveryPlan"
  case drDrill = "DRDrill"
}

/// What a requirement measures.
public enum ComplianceMeasure: String, Codable, Sendable, Hashable {
  /// Age of the newest successful backup (policy), or of the restored snapshot (drill).
  case rpo
  /// Time to a verified recovery (plan run, drill).
  case rto
  /// Time since the last drill.
  case drillInterval = "drill-interval"
  /// How soon deleted data leaves the backups (the daily prune).
  case erasure
  /// How soon a breach of the backup isolation is detected.
  case detection
  /// Whether every access to the backups' keys and namespace is logged.
  case accessLogging = "access-logging"
  /// Something BotRT does not do (named, so that the report does not pretend).
  case outsideBotRT = "outside-botrt"
}

/// Which of a profile's policies a requirement applies to (the data they hold).
public enum ComplianceData: String, Codable, Sendable, Hashable {
  /// Every policy of the profile.
  case any
  /// Policies backing up logs (`spec.dataType: logs`): audit logs, security monitoring.
  case logs
  /// Policies backing up anything but logs.
  case notLogs = "not-logs"
  /// Policies annotated `dr.botrt.io/data-category: consent`.
  case consent
  /// Every policy of the profile except consent records (which have their own target).
  case notConsent = "not-consent"
}

/// One target of a compliance profile, as the original design states it (issue 8).
public struct ComplianceRequirement: Codable, Sendable, Hashable {
  public var profile: ComplianceProfile
  /// Stable id, e.g. `sox.financial-data-rpo`.
  public var id: String
  /// Plain words, e.g. "financial data RPO".
  public var title: String
  public var measure: ComplianceMeasure
  /// The target in seconds (0: no loss, streamed); nil where the requirement has no number.
  public var seconds: Int64?
  public var subjects: [ComplianceSubject]
  public var data: ComplianceData

  public init(
    _ profile: ComplianceProfile, _ id: String, _ title: String, _ measure: ComplianceMeasure, _ seconds: Int64?,
    _ subjects: [ComplianceSubject], data: ComplianceData = .any
  ) {
    self.profile = profile
    self.id = "\(profile.rawValue).\(id)"
    self.title = title
    self.measure = measure
    self.seconds = seconds
    self.subjects = subjects
    self.data = data
  }

  /// "RPO 1m", "RPO 0 (streamed)", "every 90d", ...
  public var targetText: String {
    guard let s = seconds else { return "required" }
    switch measure {
    case .rpo, .rto:
      return s == 0
        ? "\(measure.rawValue.uppercased()) 0 (no loss, streamed)"
        : "\(measure.rawValue.uppercased()) "
          + DurationText.format(seconds: s)
    case .drillInterval: return "a drill every \(DurationText.format(seconds: s))"
    case .erasure: return "erased from backups within \(DurationText.format(seconds: s))"
    case .detection: return "detected within \(DurationText.format(seconds: s))"
    case .accessLogging, .outsideBotRT: return "within \(DurationText.format(seconds: s))"
    }
  }
}

/// The compliance targets of the original design (issue 8), one row per number.
public enum ComplianceCatalog {
  /// The annotation naming the kind of data a policy holds where a profile distinguishes it (GDPR consent records).
  public static let dataCategoryAnnotation = "dr.botrt.io/data-category"

  public static let requirements: [ComplianceRequirement] = [
    // SOX
    .init(.sox, "financial-data-rpo", "financial data RPO", .rpo, 60, [.backupPolicy, .drDrill], data: .notLogs),
    .init(.sox, "audit-log-rpo", "audit log RPO", .rpo, 0, [.backupPolicy], data: .logs),
    .init(.sox, "financial-system-rto", "financial system RTO", .rto, 1_800, [.recoveryPlan, .drDrill]),
    .init(.sox, "testing-quarterly", "DR testing quarterly", .drillInterval, 7_776_000, [.backupPolicy, .drDrill]),
    // GDPR
    .init(.gdpr, "personal-data-rpo", "personal data RPO", .rpo, 300, [.backupPolicy, .drDrill], data: .notConsent),
    .init(.gdpr, "breach-detection", "breach detection", .detection, 3_600, [.backupPolicy]),
    .init(.gdpr, "data-portability-rto", "data portability RTO", .rto, 259_200, [.recoveryPlan, .drDrill]),
    .init(.gdpr, "consent-management-rpo", "consent management RPO", .rpo, 60, [.backupPolicy], data: .consent),
    .init(.gdpr, "erasure", "erasure", .erasure, 86_400, [.backupPolicy]),
    // PCI-DSS
    .init(.pciDSS, "payment-data-rpo", "payment data RPO", .rpo, 60, [.backupPolicy, .drDrill], data: .notLogs),
    .init(.pciDSS, "cardholder-data-rto", "cardholder data RTO", .rto, 900, [.recoveryPlan, .drDrill]),
    .init(.pciDSS, "security-monitoring-rpo", "security monitoring RPO", .rpo, 0, [.backupPolicy], data: .logs),
    .init(.pciDSS, "vulnerability-scan-rto", "vulnerability scan RTO", .outsideBotRT, 300, [.recoveryPlan]),
    // HIPAA
    .init(.hipaa, "healthcare-data-rpo", "healthcare data RPO", .rpo, 300, [.backupPolicy, .drDrill]),
    .init(.hipaa, "critical-system-rto", "critical system RTO", .rto, 1_800, [.recoveryPlan, .drDrill]),
    .init(.hipaa, "access-logging", "complete access logging", .accessLogging, nil, [.backupPolicy]),
  ]

  /// The requirements of `profiles` that apply to `subject`, in catalog order.
  public static func requirements(_ profiles: [ComplianceProfile], subject: ComplianceSubject)
    -> [ComplianceRequirement]
  {
    let set = Set(profiles)
    return requirements.filter { set.contains($0.profile) && $0.subjects.contains(subject) }
  }
}

/// How one target came out.
public enum ComplianceOutcome: String, Codable, Sendable, Hashable {
  /// Measured and within the target.
  case met
  /// Measured and outside the target, or impossible for this kind of backup.
  case notMet = "not-met"
  /// Nothing measured yet (no backup, no run, no drill).
  case notMeasured = "not-measured"
  /// Claimed by how the controller works, but nothing is measured: named in the evidence, never counted as met.
  case byDesign = "by-design"
  /// Not something BotRT does.
  case notCovered = "not-covered"

  /// The outcome as reports and conditions write it ("by design, not measured" for `byDesign`).
  public var text: String { self == .byDesign ? "by design, not measured" : rawValue }
}

/// One target's result for one object, with its evidence.
public struct ComplianceTargetResult: Codable, Sendable, Hashable {
  public var id: String
  public var profile: String
  public var title: String
  public var target: String
  public var targetSeconds: Int64?
  public var outcome: ComplianceOutcome
  /// The measured value in seconds (an age is taken at `now` of the evaluation).
  public var measuredSeconds: Int64?
  /// When the measurement was made (the backup, the run, the drill).
  public var measuredAt: Date?
  /// Sentences naming the measurement and its moment (no ages, so a status message stays stable).
  public var evidence: String

  /// "SOX financial data RPO 1m: met (evidence)".
  public var sentence: String {
    "\(profile.uppercased()) \(title) (\(target)): \(outcome.text) - \(evidence)"
  }
}

/// Evaluates objects against the catalog. No I/O: the objects as read, and `now`.
public enum ComplianceEvaluation {
  static func date(_ d: Date) -> String { KubeJSON.formatDate(d) }
  static func dur(_ s: Int64) -> String { DurationText.format(seconds: s) }

  static func applies(_ r: ComplianceRequirement, to policy: BackupPolicy) -> Bool {
    let logs = policy.spec.dataType == .logs
    let consent = policy.metadata.annotations?[ComplianceCatalog.dataCategoryAnnotation] == "consent"
    switch r.data {
    case .any: return true
    case .logs: return logs
    case .notLogs: return !logs
    case .consent: return consent
    case .notConsent: return !consent
    }
  }

  static func result(
    _ r: ComplianceRequirement, _ outcome: ComplianceOutcome, measured: Int64? = nil, at: Date? = nil,
    _ evidence: String
  ) -> ComplianceTargetResult {
    ComplianceTargetResult(
      id: r.id, profile: r.profile.rawValue, title: r.title, target: r.targetText, targetSeconds: r.seconds,
      outcome: outcome, measuredSeconds: measured, measuredAt: at, evidence: evidence)
  }

  /// A drill's age against an interval.
  static func drillInterval(_ r: ComplianceRequirement, lastRun: Date?, passed: Bool?, what: String, now: Date)
    -> ComplianceTargetResult
  {
    guard let last = lastRun, let limit = r.seconds else {
      return result(r, .notMeasured, "No drill of \(what) has run yet.")
    }
    let age = Int64(max(0, now.timeIntervalSince(last)).rounded(.down))
    let due = date(last.addingTimeInterval(TimeInterval(limit)))
    let verdict = passed == true ? "passed" : "did not pass"
    if age <= limit {
      return result(
        r, .met, measured: age, at: last,
        "The last drill of \(what) ran at \(date(last)) and \(verdict); the next is due by \(due).")
    }
    return result(
      r, .notMet, measured: age, at: last, "The last drill of \(what) ran at \(date(last)); one was due by \(due).")
  }

  /// The targets of a BackupPolicy's profiles. `drills` are the drills that rehearse it (the compliance report
  /// passes them; the controller's status does not know them and says so).
  public static func policy(_ p: BackupPolicy, drills: [DRDrill]?, now: Date) -> [ComplianceTargetResult] {
    let s = p.status
    return ComplianceCatalog.requirements(p.spec.compliance ?? [], subject: .backupPolicy).filter {
      applies($0, to: p)
    }.map { r in
      switch r.measure {
      case .rpo:
        let target = r.seconds ?? 0
        // Counted from the newest snapshot's point in time, as RPOMet is.
        guard let last = s?.lastSnapshotTime ?? s?.lastSuccessfulBackup else {
          return result(r, .notMeasured, "No backup has succeeded yet.")
        }
        let age = Int64(max(0, now.timeIntervalSince(last)).rounded(.down))
        if target == 0 {
          return result(
            r, .notMet, measured: age, at: last,
            "Scheduled snapshots cannot reach RPO 0: the last one was at \(date(last)), and data written since is "
              + "not yet backed up. RPO 0 needs continuous log shipping, which BotRT does not do.")
        }
        let until = date(last.addingTimeInterval(TimeInterval(target)))
        if age <= target {
          return result(
            r, .met, measured: age, at: last,
            "The newest snapshot holds data as of \(date(last)), within \(dur(target)) until \(until).")
        }
        return result(
          r, .notMet, measured: age, at: last,
          "The last successful backup was at \(date(last)), older than \(dur(target)) since \(until).")
      case .drillInterval:
        guard let drills else {
          return result(
            r, .notCovered,
            "Drills are judged by `botrt-controller report`, which reads the DRDrills that rehearse this policy.")
        }
        let last = drills.compactMap { $0.status?.lastResult }.filter { $0.startTime != nil }.max {
          $0.startTime! < $1.startTime!
        }
        return drillInterval(r, lastRun: last?.startTime, passed: last?.passed, what: "this policy", now: now)
      case .erasure:
        let keep = TierDefaults.of(p.spec.tier).keepSeconds
        return result(
          r, .byDesign,
          "Not measured, and in conflict with the retention: the daily prune CronJob (04:MM) deletes only the data "
            + "of expired snapshots, so data erased at the source stays in every snapshot the retention keeps "
            + "(the \(p.spec.tier.rawValue) tier keeps data \(dur(keep))), not 24 hours. Erasure within 24 hours "
            + "needs a retention of at most a day, or erasure requests handled outside BotRT.")
      case .detection:
        return result(
          r, .byDesign,
          "Not measured: changes to the backup isolation and Jobs the controller did not create are reported on the API's watch "
            + "events, within seconds (Events IsolationDrift, UnexpectedBackupJob; alerts NetworkIsolationBreach, "
            + "UnauthorizedBackupAccess).")
      case .accessLogging:
        return result(
          r, .byDesign,
          "Not measured: the backup runs' data-key unwraps are counted by key and origin (botrt_key_unwrap_total), "
            + "refused runs and foreign Jobs and Pods raise Warning Events, and requests to the API are in the "
            + "apiserver's audit log; but the key use of restores by RecoveryPlans and DRDrills is not counted, so "
            + "access logging is not complete.")
      case .rto, .outsideBotRT:
        return result(r, .notCovered, "Not measured on a BackupPolicy.")
      }
    }
  }

  /// The targets of a RecoveryPlan's profiles, from its last completed run.
  public static func plan(_ p: RecoveryPlan, now: Date) -> [ComplianceTargetResult] {
    let s = p.status
    return ComplianceCatalog.requirements(p.spec.compliance ?? [], subject: .recoveryPlan).map { r in
      switch r.measure {
      case .rto:
        guard let achieved = s?.rtoAchievedSeconds, let target = r.seconds else {
          return result(r, .notMeasured, "The plan has not completed a recovery yet.")
        }
        let at = s?.completionTime
        let when = at.map { " at \(date($0))" } ?? ""
        return result(
          r, achieved <= target ? .met : .notMet, measured: achieved, at: at,
          "The last recovery completed\(when) in \(dur(achieved)) (target \(dur(target))).")
      case .outsideBotRT:
        return result(
          r, .notCovered,
          "Vulnerability scanning is not part of BotRT; restoring the scanner is a RecoveryPlan step like any other.")
      default:
        return result(r, .notCovered, "Not measured on a RecoveryPlan.")
      }
    }
  }

  /// The targets of a DRDrill's profiles, from its last result.
  public static func drill(_ d: DRDrill, now: Date) -> [ComplianceTargetResult] {
    let last = d.status?.lastResult
    return ComplianceCatalog.requirements(d.spec.compliance ?? [], subject: .drDrill).map { r in
      let at = last?.completionTime ?? last?.startTime
      switch r.measure {
      case .rpo, .rto:
        let achieved = r.measure == .rpo ? last?.rpoAchievedSeconds : last?.rtoAchievedSeconds
        guard let target = r.seconds else { return result(r, .notCovered, "No number.") }
        guard let achieved else {
          return result(
            r, .notMeasured,
            last == nil ? "The drill has not run yet." : "The last drill did not measure its \(r.measure.rawValue).")
        }
        let what =
          r.measure == .rpo ? "restored a snapshot \(dur(achieved)) old" : "verified the restore after \(dur(achieved))"
        return result(
          r, achieved <= target ? .met : .notMet, measured: achieved, at: at,
          "The drill of \(last?.startTime.map(date) ?? "an unknown time") \(what) (target \(dur(target))).")
      case .drillInterval:
        return drillInterval(r, lastRun: last?.startTime, passed: last?.passed, what: "this drill", now: now)
      default:
        return result(r, .notCovered, "Not measured on a DRDrill.")
      }
    }
  }

  /// The condition type on BackupPolicies.
  public static let conditionType = "ComplianceMet"

  /// The condition summarizing results: only measured evidence counts. True when every measured target is met and
  /// none is pending; by-design targets (claimed, not measured) and targets judged elsewhere or outside BotRT are
  /// named but never counted as met. False when a measured target is missed; Unknown when one is not measured yet or
  /// no target is measured at all.
  public static func summary(_ results: [ComplianceTargetResult]) -> (ConditionStatus, String, String) {
    let missed = results.filter { $0.outcome == .notMet }
    let pending = results.filter { $0.outcome == .notMeasured }
    let met = results.filter { $0.outcome == .met }
    let byDesign = results.filter { $0.outcome == .byDesign }
    let text = results.map(\.sentence).joined(separator: " ")
    let unmeasured =
      byDesign.isEmpty
      ? "" : " \(byDesign.count) by design, not measured, and not counted as met."
    if !missed.isEmpty {
      return (.false, "TargetsMissed", "\(missed.count) of \(results.count) targets not met.\(unmeasured) \(text)")
    }
    if !pending.isEmpty {
      return (
        .unknown, "NotMeasured",
        "\(pending.count) of \(results.count) targets not measured yet.\(unmeasured) \(text)"
      )
    }
    if met.isEmpty {
      return (.unknown, "NothingMeasured", "None of the \(results.count) targets is measured.\(unmeasured) \(text)")
    }
    return (
      .true, "TargetsMet", "All \(met.count) measured targets met (of \(results.count)).\(unmeasured) \(text)"
    )
  }

  /// Sets (or, without results, removes) the `ComplianceMet` condition.
  public static func apply(
    _ results: [ComplianceTargetResult], to conditions: inout [Condition], generation: Int64?, now: Date
  ) {
    if results.isEmpty {
      conditions.removeAll { $0.type == conditionType }
      return
    }
    let (status, reason, message) = summary(results)
    conditions.setCondition(
      type: conditionType, status: status, reason: reason, message: message, observedGeneration: generation, now: now)
  }

  /// The moments at which a policy's RPO results flip from met to not met (for the reconcile's requeue).
  public static func flips(_ results: [ComplianceTargetResult]) -> [Date] {
    results.compactMap { r in
      guard r.outcome == .met, let at = r.measuredAt, let s = r.targetSeconds, r.id.hasSuffix("-rpo") else {
        return nil
      }
      return at.addingTimeInterval(TimeInterval(s + 1))
    }
  }
}
