import DRAPI
import Foundation

/// The security checks of one drill run; nil means "not checked" (counted as failed, see docs/compliance-score.md).
public struct SecurityChecks: Sendable, Hashable {
  /// The backup namespace's NetworkPolicies are present and their specs unchanged.
  public var networkPoliciesIntact: Bool?
  /// The Calico GlobalNetworkPolicy is present and unchanged; nil when Calico is not served (not applicable).
  public var calicoIntact: Bool?
  /// The restore decrypted data (read more than 0 bytes, no error) and verify passed (`DrillLogic.runEvidence`).
  public var encryptionVerified: Bool?
  /// The snapshot's and index's signed manifests verified: the restore succeeded (`DrillLogic.runEvidence`).
  public var signaturesVerified: Bool?
  /// The backup ServiceAccount's observed Role and RoleBindings grant no more than the builders declare
  /// (`DeclaredRBAC.widerThanDeclared`).
  public var rbacWithinDeclared: Bool?

  public init(
    networkPoliciesIntact: Bool? = nil, calicoIntact: Bool? = nil, encryptionVerified: Bool? = nil,
    signaturesVerified: Bool? = nil, rbacWithinDeclared: Bool? = nil
  ) {
    self.networkPoliciesIntact = networkPoliciesIntact
    self.calicoIntact = calicoIntact
    self.encryptionVerified = encryptionVerified
    self.signaturesVerified = signaturesVerified
    self.rbacWithinDeclared = rbacWithinDeclared
  }

  /// The applicable checks by name, in a fixed order (Calico only when served).
  public var applicable: [(name: String, passed: Bool)] {
    var out: [(String, Bool)] = [
      ("NetworkPolicies present and unchanged", networkPoliciesIntact ?? false),
      ("encryption verified", encryptionVerified ?? false),
      ("signatures verified", signaturesVerified ?? false),
      ("RBAC no wider than declared", rbacWithinDeclared ?? false),
    ]
    if let calico = calicoIntact { out.insert(("Calico policy present and unchanged", calico), at: 1) }
    return out
  }

  /// Whether every applicable check passed.
  public var allPassed: Bool { applicable.allSatisfy(\.passed) }
}

/// What one drill run measured: the inputs of the compliance score.
public struct DrillMeasurements: Sendable, Hashable {
  /// Age of the restored snapshot when the drill started, in seconds (nil: unknown).
  public var rpoAchievedSeconds: Int64?
  /// Drill start to verified restore, in seconds (nil: the restore was never verified).
  public var rtoAchievedSeconds: Int64?
  /// Whether the restored data verified completely (the restore's per-blob authentication and content hashes, engine verify, database query).
  public var dataIntegrity: Bool
  /// Restore throughput in bytes per second (nil: unknown).
  public var restoreBytesPerSecond: Double?
  /// The baseline throughput in bytes per second (nil: no baseline yet).
  public var baselineBytesPerSecond: Double?
  /// The security checks.
  public var security: SecurityChecks

  public init(
    rpoAchievedSeconds: Int64?, rtoAchievedSeconds: Int64?, dataIntegrity: Bool, restoreBytesPerSecond: Double?,
    baselineBytesPerSecond: Double?, security: SecurityChecks
  ) {
    self.rpoAchievedSeconds = rpoAchievedSeconds
    self.rtoAchievedSeconds = rtoAchievedSeconds
    self.dataIntegrity = dataIntegrity
    self.restoreBytesPerSecond = restoreBytesPerSecond
    self.baselineBytesPerSecond = baselineBytesPerSecond
    self.security = security
  }

  /// How much slower than the baseline the restore was, in percent (0 when faster; nil without both numbers).
  public var performanceDegradationPercent: Double? {
    guard let r = restoreBytesPerSecond, let b = baselineBytesPerSecond, b > 0 else { return nil }
    return max(0, (b - r) / b * 100)
  }
}

/// The targets a drill run is held to.
public struct DrillTargets: Sendable, Hashable {
  /// RPO target in seconds.
  public var rpoSeconds: Int64
  /// RTO target in seconds.
  public var rtoSeconds: Int64
  /// Largest allowed performance degradation in percent (default 20).
  public var maxDegradationPercent: Double
  /// Lowest passing score (default 95).
  public var minScore: Int32
  /// The compliance profiles of the drill and its target.
  public var profiles: [ComplianceProfile]

  public init(
    rpoSeconds: Int64, rtoSeconds: Int64, maxDegradationPercent: Double = 20, minScore: Int32 = 95,
    profiles: [ComplianceProfile] = []
  ) {
    self.rpoSeconds = rpoSeconds
    self.rtoSeconds = rtoSeconds
    self.maxDegradationPercent = maxDegradationPercent
    self.minScore = minScore
    self.profiles = Array(Set(profiles)).sorted()
  }
}

/// One profile's verdict on a drill run.
public struct ProfileVerdict: Sendable, Hashable {
  public var profile: ComplianceProfile
  /// RPO target of the profile (nil: none).
  public var rpoTargetSeconds: Int64?
  /// RTO target of the profile (nil: none).
  public var rtoTargetSeconds: Int64?
  /// Whether the run met every target and requirement of the profile.
  public var met: Bool
  /// Plain sentences naming what the profile did not get.
  public var gaps: [String]
}

/// The compliance score of a drill run and its parts; the method is docs/compliance-score.md.
public struct ComplianceScore: Sendable, Hashable {
  /// Points per part (integrity 30, RPO 20, RTO 20, performance 10, security 20), before caps.
  public var parts: [String: Double]
  /// The score, 0 to 100, after caps.
  public var score: Int32
  /// Verdicts per compliance profile.
  public var profiles: [ProfileVerdict]
  /// Plain sentences for every lost point or cap.
  public var deductions: [String]

  /// Weights of the parts.
  public static let weights: [(String, Double)] = [
    ("dataIntegrity", 30), ("rpo", 20), ("rto", 20), ("performance", 10), ("security", 20),
  ]

  /// Requirements beyond RPO and RTO that each profile adds, as security check names that must pass.
  public static func requiredChecks(_ profile: ComplianceProfile) -> [String] {
    switch profile {
    case .sox: ["encryption verified", "signatures verified", "RBAC no wider than declared"]
    case .gdpr: ["encryption verified"]
    case .pciDSS:
      [
        "NetworkPolicies present and unchanged", "encryption verified", "signatures verified",
        "RBAC no wider than declared",
      ]
    case .hipaa: ["NetworkPolicies present and unchanged", "encryption verified", "RBAC no wider than declared"]
    }
  }

  /// Points for a time measured against a target: full at or under the target, then `weight * target / achieved`.
  static func timePoints(achieved: Int64?, target: Int64, weight: Double) -> Double {
    guard let a = achieved else { return 0 }
    if a <= target { return weight }
    return weight * Double(max(target, 0)) / Double(a)
  }

  /// Computes the score.
  public static func compute(_ m: DrillMeasurements, targets t: DrillTargets) -> ComplianceScore {
    var parts: [String: Double] = [:]
    var deductions: [String] = []
    let fmt = DurationText.format(seconds:)

    parts["dataIntegrity"] = m.dataIntegrity ? 30 : 0
    if !m.dataIntegrity { deductions.append("Data integrity failed: -30.") }

    parts["rpo"] = timePoints(achieved: m.rpoAchievedSeconds, target: t.rpoSeconds, weight: 20)
    if let a = m.rpoAchievedSeconds {
      if a > t.rpoSeconds { deductions.append("RPO \(fmt(a)) is over the target of \(fmt(t.rpoSeconds)).") }
    } else {
      deductions.append("The RPO could not be measured (snapshot time unknown): -20.")
    }
    parts["rto"] = timePoints(achieved: m.rtoAchievedSeconds, target: t.rtoSeconds, weight: 20)
    if let a = m.rtoAchievedSeconds {
      if a > t.rtoSeconds { deductions.append("RTO \(fmt(a)) is over the target of \(fmt(t.rtoSeconds)).") }
    } else {
      deductions.append("No verified restore, so no RTO: -20.")
    }

    if let d = m.performanceDegradationPercent {
      if d <= t.maxDegradationPercent {
        parts["performance"] = 10
      } else {
        // Linear from full points at the allowed degradation to 0 at 100 %.
        let span = max(100 - t.maxDegradationPercent, 1)
        parts["performance"] = max(0, 10 * (1 - (d - t.maxDegradationPercent) / span))
        deductions.append(
          "Restore throughput is \(Int(d.rounded())) % below the baseline (at most \(Int(t.maxDegradationPercent)) % "
            + "allowed).")
      }
    } else {
      // No baseline yet (first run) or no throughput: nothing to compare, so nothing is deducted.
      parts["performance"] = 10
    }

    let checks = m.security.applicable
    let passedChecks = checks.filter(\.passed).count
    parts["security"] = checks.isEmpty ? 20 : 20 * Double(passedChecks) / Double(checks.count)
    for c in checks where !c.passed { deductions.append("Security check failed: \(c.name).") }

    var total = parts.values.reduce(0, +)
    if !m.dataIntegrity && total > 50 {
      total = 50
      deductions.append("A run without data integrity scores at most 50.")
    }

    var verdicts: [ProfileVerdict] = []
    for p in t.profiles {
      let pt = ComplianceTargets.of(p)
      var gaps: [String] = []
      if let target = pt.rpoSeconds {
        if let a = m.rpoAchievedSeconds {
          if a > target { gaps.append("RPO \(fmt(a)) over \(fmt(target))") }
        } else {
          gaps.append("RPO not measured")
        }
      }
      if let target = pt.rtoSeconds {
        if let a = m.rtoAchievedSeconds {
          if a > target { gaps.append("RTO \(fmt(a)) over \(fmt(target))") }
        } else {
          gaps.append("RTO not measured")
        }
      }
      if !m.dataIntegrity { gaps.append("data integrity failed") }
      let failed = Set(checks.filter { !$0.passed }.map(\.name))
      for name in requiredChecks(p) where failed.contains(name) { gaps.append(name + " failed") }
      verdicts.append(
        ProfileVerdict(
          profile: p, rpoTargetSeconds: pt.rpoSeconds, rtoTargetSeconds: pt.rtoSeconds, met: gaps.isEmpty, gaps: gaps))
    }
    let missed = verdicts.filter { !$0.met }
    if !missed.isEmpty && total > 90 {
      total = 90
      deductions.append(
        "Profiles not met (" + missed.map { $0.profile.rawValue }.joined(separator: ", ")
          + "): the score is capped at 90.")
    }
    let score = Int32(max(0, min(100, total.rounded(.down))))
    return ComplianceScore(parts: parts, score: score, profiles: verdicts, deductions: deductions)
  }
}
