import DRAPI
import EngineContract
import Foundation
import KubeCore

/// What the periodic verify runs (Jobs of the verify CronJob, `botrt-engine verify --all --read-data-subset`, from
/// spec.verify) say: `status.lastVerify`, the `RepositoryVerified` condition and the verify metrics.
///
/// The newest finished run wins, by finish time, against the one status already records: the CronJob keeps one
/// successful and three failed Jobs, so the run status names may be gone from the cluster.
public struct VerifyOutcome: Sendable, Hashable {
  /// The verify Jobs' component label and the engine's container in them.
  public static let component = "verify"
  public static let container = "verify"
  /// The runbook section of a failed verify.
  public static let runbook = "docs/runbooks.md#repository-verify-failures"

  /// The newest finished run (nil while none has finished).
  public var lastVerify: VerifyRunStatus?
  public var status: ConditionStatus
  public var reason: String
  public var message: String
  /// The finish time of the newest successful run known (observed, or recorded in status).
  public var lastSuccess: Date?

  /// Whether the newest finished run failed.
  public var failing: Bool { lastVerify.map { !$0.succeeded } ?? false }

  /// The outcome for a policy with spec.verify set, from the verify Jobs' runs and the status's `lastVerify`.
  public static func evaluate(_ runs: [BackupRun], previous: VerifyRunStatus?) -> VerifyOutcome {
    func when(_ r: BackupRun) -> Date { r.finishTime ?? r.startTime ?? .distantPast }
    let finished = runs.filter { $0.state != .running }
    var last = previous
    if let newest = finished.max(by: { when($0) < when($1) }) {
      let observed = record(newest, at: when(newest))
      // A run observed again (same Job) replaces its record; an older Job than the recorded one does not.
      if previous.map({ $0.job == observed.job || ($0.time ?? .distantPast) <= when(newest) }) ?? true {
        last = observed
      }
    }
    var lastSuccess = finished.filter { $0.state == .succeeded }.map(when).max()
    if let p = previous, p.succeeded, let t = p.time, lastSuccess.map({ t > $0 }) ?? true { lastSuccess = t }
    guard let last else {
      return VerifyOutcome(
        lastVerify: nil, status: .unknown, reason: "NoVerifyYet",
        message: "spec.verify is set; no verify Job has finished yet.", lastSuccess: lastSuccess)
    }
    if last.succeeded {
      var what = "Job \(last.job) verified the repository"
      var parts: [String] = []
      if let n = last.snapshots { parts.append("\(n) snapshots") }
      if let b = last.bytesDownloaded { parts.append("\(b) bytes of pack data read") }
      if !parts.isEmpty { what += " (\(parts.joined(separator: ", ")))" }
      if let t = last.time { what += " at \(KubeJSON.formatDate(t))" }
      return VerifyOutcome(
        lastVerify: last, status: .true, reason: "VerifyPassed", message: what + ".", lastSuccess: lastSuccess)
    }
    let count = last.errors.map { $0 == 1 ? "1 problem" : "\($0) problems" }
    let first = last.message ?? "no reason recorded"
    return VerifyOutcome(
      lastVerify: last, status: .false, reason: "VerifyFailed",
      message: "Job \(last.job) failed"
        + (count.map { ": \($0) found, first: \(first)" } ?? ": \(first)")
        + ". The repository may hold damaged or missing data: do not prune it until this is understood; see "
        + "\(runbook).", lastSuccess: lastSuccess)
  }

  /// One finished run as status records it.
  static func record(_ run: BackupRun, at time: Date) -> VerifyRunStatus {
    let r = run.result
    var out = VerifyRunStatus(
      time: time, job: run.jobName, succeeded: run.state == .succeeded, snapshots: r?.snapshotsVerified,
      bytesDownloaded: r?.bytesDownloaded)
    if run.state == .succeeded {
      out.errors = r == nil ? nil : 0
      return out
    }
    let errors = r?.errors ?? []
    out.errors = problemCount(errors)
    out.message =
      errors.first ?? run.failureMessage ?? run.exitCode.map { "exit code \($0)" } ?? "no reason recorded"
    if let m = out.message, m.count > 1024 { out.message = String(m.prefix(1024)) + "…" }
    return out
  }

  /// The problems a failed verify's errors name: the engine lists each problem, then the error it exits with
  /// ("N problems found; first: …"), which is a summary, not another problem. Nil when there are none (a failure
  /// without problems listed, e.g. the repository could not be opened).
  static func problemCount(_ errors: [String]) -> Int? {
    guard let last = errors.last else { return nil }
    if errors.count > 1, let r = last.range(of: " problems found; first: ") {
      let digits = last[..<r.lowerBound].reversed().prefix { $0.isNumber }
      if let n = Int(String(digits.reversed())) { return n }
    }
    return errors.count
  }

  /// Sets `status.lastVerify` and the RepositoryVerified condition; returns the Warning Event to record when the
  /// condition turns False.
  public func apply(to status: inout BackupPolicyStatus, generation: Int64?, now: Date) -> PlannedEvent? {
    var conditions = status.conditions ?? []
    let before = conditions.condition(BackupPolicyCondition.repositoryVerified)
    conditions.setCondition(
      type: BackupPolicyCondition.repositoryVerified, status: self.status, reason: reason, message: message,
      observedGeneration: generation, now: now)
    status.conditions = conditions
    status.lastVerify = lastVerify
    guard failing, before?.status != .false || before?.message != message else { return nil }
    return PlannedEvent(warning: true, reason: "VerifyFailed", message: message)
  }

  /// Without spec.verify (or on a restore-only policy): no condition and no record.
  public static func remove(from status: inout BackupPolicyStatus) {
    status.lastVerify = nil
    guard var conditions = status.conditions, conditions.condition(BackupPolicyCondition.repositoryVerified) != nil
    else { return }
    conditions.removeCondition(BackupPolicyCondition.repositoryVerified)
    status.conditions = conditions
  }
}
