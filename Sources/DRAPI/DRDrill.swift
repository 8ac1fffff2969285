import Foundation
import KubeCore

/// DRDrill: a scheduled rehearsal that restores into a scratch namespace, verifies, and scores the result.
public struct DRDrill: StatusResource, Hashable {
  /// The REST identity of drdrills.dr.botrt.io.
  public static let resource = ResourceDescriptor(
    group: DRGroup.group, version: DRGroup.version, plural: "drdrills", kind: "DRDrill", namespaced: true)

  public var apiVersion: String = DRGroup.apiVersion
  public var kind: String = "DRDrill"
  public var metadata: ObjectMeta
  public var spec: DRDrillSpec
  public var status: DRDrillStatus?

  public init(metadata: ObjectMeta, spec: DRDrillSpec, status: DRDrillStatus? = nil) {
    self.metadata = metadata
    self.spec = spec
    self.status = status
  }
}

/// The desired state of a DRDrill.
public struct DRDrillSpec: Codable, Sendable, Hashable {
  /// A preset (daily, weekly, biweekly, monthly, quarterly) or a cron expression.
  public var schedule: String?
  public var target: DrillTarget
  /// "latest" or a snapshot id.
  public var snapshot: String?
  /// The claim to rehearse, of a BackupPolicy that backs up several (spec.source.claims): `latest` is that claim's
  /// newest snapshot.
  public var claim: String?
  public var restore: RestoreDestination?
  public var verification: DrillVerification?
  public var compliance: [ComplianceProfile]?
  public var historyLimit: Int32?
  /// Time limit of one run (duration text, default 1h).
  public var timeout: String?
  public var suspend: Bool?
  public var trigger: String?
  /// Destinations the run's pods may reach besides DNS and the policy's storage and KMS endpoints (e.g. the database
  /// server the restore command and the query connect to).
  public var egress: [DrillEgress]?

  public init(
    schedule: String? = nil, target: DrillTarget, snapshot: String? = nil, restore: RestoreDestination? = nil,
    verification: DrillVerification? = nil, compliance: [ComplianceProfile]? = nil, historyLimit: Int32? = nil,
    timeout: String? = nil, suspend: Bool? = nil, trigger: String? = nil, egress: [DrillEgress]? = nil
  ) {
    self.schedule = schedule
    self.target = target
    self.snapshot = snapshot
    self.restore = restore
    self.verification = verification
    self.compliance = compliance
    self.historyLimit = historyLimit
    self.timeout = timeout
    self.suspend = suspend
    self.trigger = trigger
    self.egress = egress
  }
}

/// A destination the scratch namespace's fence lets the run's pods reach over TCP.
public struct DrillEgress: Codable, Sendable, Hashable {
  /// An IP address or CIDR (only it is allowed), or a host name (NetworkPolicies cannot name hosts, so the port is
  /// allowed to any destination); nil: any destination.
  public var host: String?
  public var port: Int32

  public init(host: String? = nil, port: Int32) {
    self.host = host
    self.port = port
  }
}

/// What a drill rehearses: exactly one of a BackupPolicy or a RecoveryPlan.
public struct DrillTarget: Codable, Sendable, Hashable {
  public var backupPolicyRef: LocalObjectReference?
  public var recoveryPlanRef: LocalObjectReference?
  /// One of the policy's spec.replicas to restore from instead of its primary repository (for a RecoveryPlan target:
  /// instead of the repository its restore step names).
  public var replica: String?

  public init(
    backupPolicyRef: LocalObjectReference? = nil, recoveryPlanRef: LocalObjectReference? = nil, replica: String? = nil
  ) {
    self.backupPolicyRef = backupPolicyRef
    self.recoveryPlanRef = recoveryPlanRef
    self.replica = replica
  }

  /// "BackupPolicy/NAME" or "RecoveryPlan/NAME", as status.target shows it, followed by " (replica R)" when the
  /// drill restores from a replica; nil unless exactly one is set.
  public var displayName: String? {
    let from = replica.map { " (replica \($0))" } ?? ""
    switch kind {
    case .backupPolicy(let p)?: return "BackupPolicy/\(p.name)\(from)"
    case .recoveryPlan(let r)?: return "RecoveryPlan/\(r.name)\(from)"
    case nil: return nil
    }
  }
}

/// How a drill verifies the restore.
public struct DrillVerification: Codable, Sendable, Hashable {
  public var readData: Bool?
  public var databaseQuery: DatabaseQuery?
  public var maxPerformanceDegradationPercent: Int32?
  public var minComplianceScore: Int32?

  public init(
    readData: Bool? = nil, databaseQuery: DatabaseQuery? = nil,
    maxPerformanceDegradationPercent: Int32? = nil, minComplianceScore: Int32? = nil
  ) {
    self.readData = readData
    self.databaseQuery = databaseQuery
    self.maxPerformanceDegradationPercent = maxPerformanceDegradationPercent
    self.minComplianceScore = minComplianceScore
  }
}

/// The result of one finished drill run.
public struct DrillResult: Codable, Sendable, Hashable {
  public var startTime: Date?
  public var completionTime: Date?
  public var trigger: String?
  public var snapshot: String?
  public var scratchNamespace: String?
  public var passed: Bool?
  public var rpoAchievedSeconds: Int64?
  public var rpoTargetSeconds: Int64?
  public var rtoAchievedSeconds: Int64?
  public var rtoTargetSeconds: Int64?
  public var dataIntegrity: Bool?
  public var performanceDegradationPercent: Double?
  public var restoreBytesPerSecond: Double?
  /// Bytes the run read from the repository: the restore's bytes read plus verify's bytes read from the storage.
  public var bytesRead: Int64?
  public var securityPosture: Bool?
  public var complianceScore: Int32?
  public var message: String?
  public var failures: [String]?

  public init(
    startTime: Date? = nil, completionTime: Date? = nil, trigger: String? = nil, snapshot: String? = nil,
    scratchNamespace: String? = nil, passed: Bool? = nil, rpoAchievedSeconds: Int64? = nil,
    rpoTargetSeconds: Int64? = nil, rtoAchievedSeconds: Int64? = nil, rtoTargetSeconds: Int64? = nil,
    dataIntegrity: Bool? = nil, performanceDegradationPercent: Double? = nil, restoreBytesPerSecond: Double? = nil,
    securityPosture: Bool? = nil, complianceScore: Int32? = nil, message: String? = nil, failures: [String]? = nil
  ) {
    self.startTime = startTime
    self.completionTime = completionTime
    self.trigger = trigger
    self.snapshot = snapshot
    self.scratchNamespace = scratchNamespace
    self.passed = passed
    self.rpoAchievedSeconds = rpoAchievedSeconds
    self.rpoTargetSeconds = rpoTargetSeconds
    self.rtoAchievedSeconds = rtoAchievedSeconds
    self.rtoTargetSeconds = rtoTargetSeconds
    self.dataIntegrity = dataIntegrity
    self.performanceDegradationPercent = performanceDegradationPercent
    self.restoreBytesPerSecond = restoreBytesPerSecond
    self.securityPosture = securityPosture
    self.complianceScore = complianceScore
    self.message = message
    self.failures = failures
  }
}

/// Phase of a DRDrill.
public enum DrillPhase: String, Codable, Sendable, Hashable {
  case idle = "Idle"
  case running = "Running"
}

/// The run in progress.
public struct DrillCurrentRun: Codable, Sendable, Hashable {
  public var startTime: Date?
  public var scratchNamespace: String?
  public var step: String?
  /// The run's restore progress while its restore container runs, from the engine's progress lines in that
  /// container's log (at most every 10 s); unset before the restore reports and once it ended (verify and the
  /// database query report none).
  public var progress: RunProgress?

  public init(
    startTime: Date? = nil, scratchNamespace: String? = nil, step: String? = nil, progress: RunProgress? = nil
  ) {
    self.startTime = startTime
    self.scratchNamespace = scratchNamespace
    self.step = step
    self.progress = progress
  }
}

/// The observed state of a DRDrill.
public struct DRDrillStatus: Codable, Sendable, Hashable {
  public var observedGeneration: Int64?
  public var conditions: [Condition]?
  public var target: String?
  public var effectiveSchedule: String?
  public var scheduleSource: String?
  public var nextScheduledRun: Date?
  public var lastHandledTrigger: String?
  public var phase: DrillPhase?
  public var currentRun: DrillCurrentRun?
  public var lastRunTime: Date?
  public var lastResult: DrillResult?
  /// Newest first, at most spec.historyLimit entries.
  public var history: [DrillResult]?

  public init(
    observedGeneration: Int64? = nil, conditions: [Condition]? = nil, target: String? = nil,
    effectiveSchedule: String? = nil, scheduleSource: String? = nil, nextScheduledRun: Date? = nil,
    lastHandledTrigger: String? = nil, phase: DrillPhase? = nil, currentRun: DrillCurrentRun? = nil,
    lastRunTime: Date? = nil, lastResult: DrillResult? = nil, history: [DrillResult]? = nil
  ) {
    self.observedGeneration = observedGeneration
    self.conditions = conditions
    self.target = target
    self.effectiveSchedule = effectiveSchedule
    self.scheduleSource = scheduleSource
    self.nextScheduledRun = nextScheduledRun
    self.lastHandledTrigger = lastHandledTrigger
    self.phase = phase
    self.currentRun = currentRun
    self.lastRunTime = lastRunTime
    self.lastResult = lastResult
    self.history = history
  }

  /// Records a finished run: newest first, trimmed to `limit` entries, and sets lastResult and lastRunTime.
  public mutating func record(_ result: DrillResult, limit: Int) {
    var h = history ?? []
    h.insert(result, at: 0)
    if h.count > max(limit, 1) { h.removeLast(h.count - max(limit, 1)) }
    history = h
    lastResult = result
    lastRunTime = result.startTime
  }
}

/// Condition types of a DRDrill.
public enum DRDrillCondition {
  public static let ready = "Ready"
  public static let passed = "Passed"
  public static let rtoMet = "RTOMet"
  public static let rpoMet = "RPOMet"
}
