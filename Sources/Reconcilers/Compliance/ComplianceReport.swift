import DRAPI
import Foundation
import KubeCore

/// The cluster's compliance report: each policy's RPO, each plan's RTO and each drill's last result, set against the
/// targets of the SOX, GDPR, PCI-DSS and HIPAA profiles. Built from objects read from the cluster, without I/O.
public struct ComplianceReport: Codable, Sendable, Hashable {
  /// One BackupPolicy.
  public struct PolicyRow: Codable, Sendable, Hashable {
    public var namespace: String
    public var name: String
    public var tier: String
    public var profiles: [String]
    public var rpoTargetSeconds: Int64?
    /// Age of the last successful backup when the controller last looked (nil: no backup yet).
    public var rpoAchievedSeconds: Int64?
    public var rpoMet: Bool?
    public var lastBackup: Date?
  }

  /// One RecoveryPlan.
  public struct PlanRow: Codable, Sendable, Hashable {
    public var namespace: String
    public var name: String
    public var tier: String
    public var profiles: [String]
    public var rtoTargetSeconds: Int64?
    /// RTO of the last successful run (nil: never recovered).
    public var rtoAchievedSeconds: Int64?
    public var rtoMet: Bool?
    public var phase: String?
    public var lastRun: Date?
  }

  /// One DRDrill.
  public struct DrillRow: Codable, Sendable, Hashable {
    public var namespace: String
    public var name: String
    public var target: String?
    public var profiles: [String]
    public var lastRun: Date?
    public var passed: Bool?
    public var complianceScore: Int32?
    public var rtoAchievedSeconds: Int64?
    public var rpoAchievedSeconds: Int64?
    public var dataIntegrity: Bool?
  }

  /// One profile: its targets and whether every object that declares it meets them.
  public struct ProfileRow: Codable, Sendable, Hashable {
    public var profile: String
    public var rpoTargetSeconds: Int64?
    public var rtoTargetSeconds: Int64?
    /// Objects declaring the profile ("BackupPolicy ns/name", ...).
    public var objects: [String]
    /// Plain sentences naming each object that does not meet the profile.
    public var gaps: [String]
    /// True when at least one object declares the profile and none has a gap.
    public var met: Bool
  }

  /// One object's targets of its declared profiles, with the evidence (ComplianceTargets.swift).
  public struct ObjectTargets: Codable, Sendable, Hashable {
    /// "BackupPolicy ns/name", "RecoveryPlan ns/name", "DRDrill ns/name".
    public var object: String
    public var results: [ComplianceTargetResult]
  }

  public var generatedAt: Date
  public var scope: String
  public var policies: [PolicyRow]
  public var plans: [PlanRow]
  public var drills: [DrillRow]
  public var profiles: [ProfileRow]
  /// Every declared profile's targets per object.
  public var targets: [ObjectTargets]

  /// Builds the report; `scope` is "all namespaces" or "namespace NAME".
  public static func build(
    policies: [BackupPolicy], plans: [RecoveryPlan], drills: [DRDrill], scope: String, now: Date
  ) -> ComplianceReport {
    func key(_ m: ObjectMeta) -> String { "\(m.namespace ?? "")/\(m.name ?? "")" }
    func met(_ conditions: [Condition]?, _ type: String) -> Bool? {
      guard let c = conditions?.condition(type) else { return nil }
      return c.status == .true ? true : (c.status == .false ? false : nil)
    }
    let p = policies.sorted { key($0.metadata) < key($1.metadata) }.map { x in
      PolicyRow(
        namespace: x.metadata.namespace ?? "", name: x.name, tier: x.spec.tier.rawValue,
        profiles: (x.spec.compliance ?? []).map(\.rawValue), rpoTargetSeconds: x.status?.rpoTargetSeconds,
        rpoAchievedSeconds: x.status?.rpoAgeSeconds, rpoMet: met(x.status?.conditions, BackupPolicyCondition.rpoMet),
        lastBackup: x.status?.lastSuccessfulBackup)
    }
    let r = plans.sorted { key($0.metadata) < key($1.metadata) }.map { x in
      PlanRow(
        namespace: x.metadata.namespace ?? "", name: x.name, tier: x.spec.tier.rawValue,
        profiles: (x.spec.compliance ?? []).map(\.rawValue), rtoTargetSeconds: x.status?.rtoTargetSeconds,
        rtoAchievedSeconds: x.status?.rtoAchievedSeconds,
        rtoMet: met(x.status?.conditions, RecoveryPlanCondition.rtoMet), phase: x.status?.phase?.rawValue,
        lastRun: x.status?.startTime)
    }
    let d = drills.sorted { key($0.metadata) < key($1.metadata) }.map { x in
      let last = x.status?.lastResult
      return DrillRow(
        namespace: x.metadata.namespace ?? "", name: x.name, target: x.spec.target.displayName,
        profiles: (x.spec.compliance ?? []).map(\.rawValue), lastRun: last?.startTime, passed: last?.passed,
        complianceScore: last?.complianceScore, rtoAchievedSeconds: last?.rtoAchievedSeconds,
        rpoAchievedSeconds: last?.rpoAchievedSeconds, dataIntegrity: last?.dataIntegrity)
    }

    let fmt = DurationText.format(seconds:)
    var rows: [ProfileRow] = []
    for profile in ComplianceProfile.allCases {
      let t = ComplianceTargets.of(profile)
      var objects: [String] = []
      var gaps: [String] = []
      for x in p where x.profiles.contains(profile.rawValue) {
        let name = "BackupPolicy \(x.namespace)/\(x.name)"
        objects.append(name)
        if let target = t.rpoSeconds {
          if let a = x.rpoAchievedSeconds {
            if a > target { gaps.append("\(name): RPO \(fmt(a)) over \(fmt(target))") }
          } else {
            gaps.append("\(name): no successful backup yet")
          }
        }
      }
      for x in r where x.profiles.contains(profile.rawValue) {
        let name = "RecoveryPlan \(x.namespace)/\(x.name)"
        objects.append(name)
        if let target = t.rtoSeconds {
          if let a = x.rtoAchievedSeconds {
            if a > target { gaps.append("\(name): RTO \(fmt(a)) over \(fmt(target))") }
          } else {
            gaps.append("\(name): never recovered, so its RTO is not shown")
          }
        }
      }
      for x in d where x.profiles.contains(profile.rawValue) {
        let name = "DRDrill \(x.namespace)/\(x.name)"
        objects.append(name)
        switch x.passed {
        case true?: break
        case false?: gaps.append("\(name): the last drill failed (score \(x.complianceScore.map(String.init) ?? "?"))")
        case nil: gaps.append("\(name): has not run yet")
        }
      }
      rows.append(
        ProfileRow(
          profile: profile.rawValue, rpoTargetSeconds: t.rpoSeconds, rtoTargetSeconds: t.rtoSeconds, objects: objects,
          gaps: gaps, met: !objects.isEmpty && gaps.isEmpty))
    }
    var targets: [ObjectTargets] = []
    for x in policies.sorted(by: { key($0.metadata) < key($1.metadata) }) where !(x.spec.compliance ?? []).isEmpty {
      // The drills that rehearse this policy by naming it (a drill of a plan is not followed to its policies).
      let rehearsing = drills.filter {
        $0.metadata.namespace == x.metadata.namespace && $0.spec.target.backupPolicyRef?.name == x.name
      }
      targets.append(
        ObjectTargets(
          object: "BackupPolicy \(key(x.metadata))",
          results: ComplianceEvaluation.policy(x, drills: rehearsing, now: now)))
    }
    for x in plans.sorted(by: { key($0.metadata) < key($1.metadata) }) where !(x.spec.compliance ?? []).isEmpty {
      targets.append(
        ObjectTargets(object: "RecoveryPlan \(key(x.metadata))", results: ComplianceEvaluation.plan(x, now: now)))
    }
    for x in drills.sorted(by: { key($0.metadata) < key($1.metadata) }) where !(x.spec.compliance ?? []).isEmpty {
      targets.append(
        ObjectTargets(object: "DRDrill \(key(x.metadata))", results: ComplianceEvaluation.drill(x, now: now)))
    }
    return ComplianceReport(
      generatedAt: now, scope: scope, policies: p, plans: r, drills: d, profiles: rows, targets: targets)
  }

  static func dur(_ s: Int64?) -> String { s.map { DurationText.format(seconds: $0) } ?? "-" }
  static func yes(_ b: Bool?) -> String { b.map { $0 ? "yes" : "NO" } ?? "-" }

  /// Rows of cells for the three object tables, with their headers.
  var tables: [(title: String, header: [String], rows: [[String]])] {
    [
      (
        "Backup policies (RPO)", ["NAMESPACE", "NAME", "TIER", "PROFILES", "RPO TARGET", "RPO NOW", "MET"],
        policies.map {
          [
            $0.namespace, $0.name, $0.tier, $0.profiles.joined(separator: ",").nonEmpty, Self.dur($0.rpoTargetSeconds),
            Self.dur($0.rpoAchievedSeconds), Self.yes($0.rpoMet),
          ]
        }
      ),
      (
        "Recovery plans (RTO)", ["NAMESPACE", "NAME", "TIER", "PROFILES", "RTO TARGET", "LAST RTO", "MET", "PHASE"],
        plans.map {
          [
            $0.namespace, $0.name, $0.tier, $0.profiles.joined(separator: ",").nonEmpty, Self.dur($0.rtoTargetSeconds),
            Self.dur($0.rtoAchievedSeconds), Self.yes($0.rtoMet), $0.phase ?? "-",
          ]
        }
      ),
      (
        "DR drills (last run)", ["NAMESPACE", "NAME", "TARGET", "PASSED", "SCORE", "RTO", "RPO", "INTEGRITY"],
        drills.map {
          [
            $0.namespace, $0.name, $0.target ?? "-", Self.yes($0.passed), $0.complianceScore.map(String.init) ?? "-",
            Self.dur($0.rtoAchievedSeconds), Self.dur($0.rpoAchievedSeconds), Self.yes($0.dataIntegrity),
          ]
        }
      ),
    ]
  }

  func profileLines() -> [String] {
    profiles.map { p in
      let targets = "RPO \(Self.dur(p.rpoTargetSeconds)), RTO \(Self.dur(p.rtoTargetSeconds))"
      if p.objects.isEmpty { return "\(p.profile.uppercased()) (\(targets)): no object declares it." }
      if p.met { return "\(p.profile.uppercased()) (\(targets)): met by all \(p.objects.count) objects." }
      return "\(p.profile.uppercased()) (\(targets)): NOT met. " + p.gaps.joined(separator: "; ") + "."
    }
  }

  /// One target as a line: "SOX financial data RPO (RPO 1m): met, measured 45s at T. Evidence."
  static func targetLine(_ r: ComplianceTargetResult) -> String {
    var line = "\(r.profile.uppercased()) \(r.title) (\(r.target)): \(r.outcome.text)"
    if let m = r.measuredSeconds { line += ", measured \(dur(m))" }
    if let at = r.measuredAt { line += " at \(rfc3339Seconds(at))" }
    return line + ". \(r.evidence)"
  }

  /// Plain text with aligned columns.
  public func text() -> String {
    var out = "BotRT compliance report, \(scope), \(rfc3339Seconds(generatedAt))\n"
    for t in tables {
      out += "\n\(t.title)\n"
      if t.rows.isEmpty {
        out += "  (none)\n"
        continue
      }
      let all = [t.header] + t.rows
      let widths = t.header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
      for row in all {
        out +=
          row.enumerated().map { i, c in c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
          .joined(separator: "  ").trimmingCharacters(in: .whitespaces) + "\n"
      }
    }
    out += "\nCompliance profiles\n" + profileLines().map { "  \($0)\n" }.joined()
    out += "\nCompliance targets (measured value, when, evidence)\n"
    if targets.isEmpty { out += "  (no object declares a profile)\n" }
    for t in targets {
      out += "  \(t.object)\n"
      for r in t.results { out += "    \(Self.targetLine(r))\n" }
    }
    return out
  }

  /// Markdown tables.
  public func markdown() -> String {
    var out = "# BotRT compliance report\n\n\(scope), \(rfc3339Seconds(generatedAt))\n"
    for t in tables {
      out += "\n## \(t.title)\n\n"
      if t.rows.isEmpty {
        out += "None.\n"
        continue
      }
      out += "| " + t.header.joined(separator: " | ") + " |\n"
      out += "|" + String(repeating: "---|", count: t.header.count) + "\n"
      for row in t.rows {
        out += "| " + row.map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |\n"
      }
    }
    out += "\n## Compliance profiles\n\n" + profileLines().map { "- \($0)\n" }.joined()
    out += "\n## Compliance targets\n\n"
    if targets.isEmpty { out += "No object declares a profile.\n" }
    for t in targets {
      out +=
        "\n### \(t.object)\n\n| profile | target | outcome | measured | when | evidence |\n|---|---|---|---|---|---|\n"
      for r in t.results {
        let cells = [
          r.profile.uppercased(), "\(r.title): \(r.target)", r.outcome.text, Self.dur(r.measuredSeconds),
          r.measuredAt.map(rfc3339Seconds) ?? "-", r.evidence,
        ]
        out += "| " + cells.map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |\n"
      }
    }
    return out
  }

  /// JSON (the report's fields; times in RFC 3339).
  public func json() throws -> String {
    let enc = KubeJSON.encoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
    return String(decoding: try enc.encode(self), as: UTF8.self)
  }
}

extension String {
  /// "-" for an empty string.
  fileprivate var nonEmpty: String { isEmpty ? "-" : self }
}
