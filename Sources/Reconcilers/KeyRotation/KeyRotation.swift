import DRAPI
import Foundation
import KubeCore

/// A rotation Job the reconciler should create.
public struct KeyRotationJob: Sendable, Hashable {
  /// Names the Job (one per due moment and hourly attempt).
  public var token: String
  /// For a local key: the entry of the rotation keys Secret to rotate to.
  public var newKey: String?
}

/// What the key rotation logic decided.
public struct KeyRotationOutcome: Sendable {
  public var lastKeyRotation: Date?
  public var nextKeyRotation: Date
  public var currentKey: String?
  /// The rotation request (annotation) handled last.
  public var lastHandledRequest: String?
  /// The KeyRotationDue condition.
  public var due: ConditionStatus
  public var reason: String
  public var message: String
  /// The Job to create, if a rotation should start now.
  public var start: KeyRotationJob?
  /// Finished rotation Jobs that are recorded and can go.
  public var obsoleteJobs: [String]
  public var events: [PlannedEvent]
  public var requeueAt: Date?
  /// Age of the key-encryption key now, and its limit, in seconds.
  public var keyAgeSeconds: Double
  public var limitSeconds: Double
}

/// Pure logic of automatic key rotation: when a policy's keyRotationDays have passed since the last rotation (or
/// since the policy was created), a `botrt-engine rotate-keys` Job runs; its success moves lastKeyRotation on.
/// A failed rotation is tried again every hour while the rotation stays due.
public enum KeyRotationLogic {
  /// The component label of rotation Jobs.
  public static let component = "rotate-keys"
  /// The annotation of a rotation Job naming its token.
  public static let tokenAnnotation = "dr.botrt.io/rotation-token"
  /// The annotation of a rotation Job naming the key it moves to (a local key's entry; for replica rotations and copy
  /// Jobs also an AWS key id, empty for the spec's key).
  public static let newKeyAnnotation = "dr.botrt.io/new-key"
  /// The annotation that asks for a rotation now (e.g. after a suspected key compromise); each new value rotates
  /// once.
  public static let requestAnnotation = "dr.botrt.io/rotate-keys-now"
  /// How long a failed rotation waits before the next attempt.
  public static let retrySeconds: TimeInterval = 3_600

  /// The rotation period of a policy in seconds.
  public static func periodSeconds(_ spec: BackupPolicySpec) -> TimeInterval {
    TimeInterval(spec.encryption.keyRotationDays ?? 90) * 86_400
  }

  /// The entry of the rotation keys Secret the next local rotation uses: the first, by name, after `current`.
  public static func nextLocalKey(entries: [String], current: String?) -> String? {
    entries.sorted().first { current == nil || $0 > current! }
  }

  /// The key id in a rotation result's KMS URL (`awskms://ID?region=…` or `awskms:///arn:…`).
  public static func awsKeyId(fromKMS url: String?) -> String? {
    guard let url, let c = URLComponents(string: url), c.scheme == "awskms" else { return nil }
    if let h = c.host, !h.isEmpty { return h }
    let p = c.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
    return p.isEmpty ? nil : p
  }

  /// Why a rotation Job failed: the engine's errors, else the Job's failure, else that no result was written.
  static func failureText(_ r: BackupRun) -> String {
    let why = r.result?.errors?.joined(separator: "; ") ?? r.failureMessage ?? "no result was written"
    return why.isEmpty ? "no result was written" : why
  }

  /// The newest successful rotation Job that finished after `since` (the last recorded rotation), if any.
  static func newestUnrecorded(_ runs: [BackupRun], since: Date?) -> BackupRun? {
    runs.filter { r in
      r.state == .succeeded && r.finishTime != nil && (since.map { r.finishTime! > $0 } ?? true)
    }.max { $0.finishTime! < $1.finishTime! }
  }

  /// Finished rotation Jobs already recorded before this reconcile (finished at or before `recorded`): they can go.
  static func recordedJobs(_ runs: [BackupRun], upTo recorded: Date?) -> [String] {
    runs.filter { r in
      r.state != .running && r.finishTime != nil && (recorded.map { r.finishTime! <= $0 } ?? false)
    }.map(\.jobName)
  }

  /// Decides. `runs` are the policy's rotation Jobs (component rotate-keys) with their annotations;
  /// `rotationKeys` the entries of spec.encryption.rotationKeysSecretRef (nil when unset or not a local key).
  public static func plan(policy: BackupPolicy, runs: [BackupRun], rotationKeys: [String]?, now: Date)
    -> KeyRotationOutcome
  {
    let previous = policy.status ?? BackupPolicyStatus()
    let period = periodSeconds(policy.spec)
    let days = policy.spec.encryption.keyRotationDays ?? 90
    let created = policy.metadata.creationTimestamp ?? now
    var last = previous.lastKeyRotation
    var current = previous.currentKey
    var handled = previous.lastHandledKeyRotationRequest
    var events: [PlannedEvent] = []
    let kms = policy.spec.encryption.kms.kind

    if let r = newestUnrecorded(runs, since: last), let t = r.finishTime {
      last = t
      if let token = r.annotations[tokenAnnotation], token.hasPrefix("request:") { handled = token }
      switch kms?.rotationKeySource {
      case .rotationKeysSecret?: if let k = r.annotations[newKeyAnnotation] { current = k }
      case .newServiceKey?: if let id = awsKeyId(fromKMS: r.result?.kms) { current = id }
      case .newKeyVersion?, nil: break
      }
      let now = r.result?.keyVersion.map { " (key version \($0))" } ?? ""
      events.append(
        PlannedEvent(
          warning: false, reason: "KeyRotated",
          message: "Job \(r.jobName) rewrapped the repository's data keys under a new key-encryption key\(now)"
            + (current.map { ", key \($0)" } ?? "") + "."))
    }
    let since = last ?? created
    let next = since.addingTimeInterval(period)
    let sinceText =
      last.map { "The keys were last rotated at \(KubeJSON.formatDate($0))" }
      ?? "The keys have not been rotated since the policy was created at \(KubeJSON.formatDate(created))"
    var out = KeyRotationOutcome(
      lastKeyRotation: last, nextKeyRotation: next, currentKey: current, lastHandledRequest: handled, due: .false,
      reason: "NotDue",
      message: "\(sinceText); the next rotation is due at \(KubeJSON.formatDate(next)) (every \(days) days).",
      start: nil, obsoleteJobs: [], events: events, requeueAt: next.addingTimeInterval(1),
      keyAgeSeconds: max(0, now.timeIntervalSince(since)), limitSeconds: period)
    out.obsoleteJobs = recordedJobs(runs, upTo: previous.lastKeyRotation)
    var request: String? = nil
    if let v = policy.metadata.annotations?[requestAnnotation], !v.isEmpty, "request:\(v)" != handled {
      request = "request:\(v)"
    }
    guard now >= next || request != nil else { return out }

    // Due: one Job per due moment and hour of trying, or per request.
    out.due = .true
    let attempt = Int(max(0, now.timeIntervalSince(next)) / retrySeconds)
    let token = request ?? "rotate:\(KubeJSON.formatDate(next)):\(attempt)"
    out.requeueAt =
      request != nil ? nil : next.addingTimeInterval(Double(attempt + 1) * retrySeconds + 1)
    let dueText =
      request.map { _ in "\(sinceText); a rotation was requested with the \(requestAnnotation) annotation" }
      ?? "\(sinceText); a rotation was due at \(KubeJSON.formatDate(next)) (every \(days) days)"
    // No backup has created the repository yet: there is no key to rotate (a request waits as well).
    if previous.lastSuccessfulBackup == nil, last == nil, !runs.contains(where: { $0.state == .running }) {
      out.reason = "AwaitingFirstBackup"
      out.message = "\(dueText), but no backup has created the repository yet; the rotation runs after the first one."
      out.requeueAt = nil
      return out
    }
    // Failed attempts of earlier tokens have been reported.
    out.obsoleteJobs += runs.filter { $0.state == .failed && $0.annotations[tokenAnnotation] != token }.map(\.jobName)
    if let r = runs.first(where: { $0.state == .running }) {
      out.reason = "RotationRunning"
      out.message = "\(dueText). Job \(r.jobName) is rotating the keys."
      out.requeueAt = nil
      return out
    }
    if let r = runs.first(where: { $0.state == .failed && $0.annotations[tokenAnnotation] == token }) {
      let why = failureText(r)
      out.reason = "RotationFailed"
      out.message =
        "\(dueText). Job \(r.jobName) failed: \(why). "
        + (out.requeueAt.map { "The next attempt is at \(KubeJSON.formatDate($0.addingTimeInterval(-1)))." }
          ?? "Set the annotation to a new value to try again.")
    } else if kms?.rotationKeySource == .rotationKeysSecret {
      guard let ref = policy.spec.encryption.rotationKeysSecretRef else {
        out.reason = "NoNewKey"
        out.message =
          "\(dueText), but a local key can only be rotated to a key from spec.encryption.rotationKeysSecretRef, "
          + "which is not set."
        out.requeueAt = nil
        return withDueEvent(out, previous: previous)
      }
      guard let key = nextLocalKey(entries: rotationKeys ?? [], current: current) else {
        out.reason = "NoNewKey"
        out.message =
          "\(dueText), but Secret \(ref.name) has no entry after \(current.map { "'\($0)'" } ?? "the key in use"); "
          + "add one (e.g. key-\(String(KubeJSON.formatDate(now).prefix(7)))) holding a new 32-byte key."
        out.requeueAt = nil
        return withDueEvent(out, previous: previous)
      }
      out.start = KeyRotationJob(token: token, newKey: key)
      out.reason = "RotationStarted"
      out.message = "\(dueText). Rotating to entry '\(key)' of Secret \(ref.name)."
    } else {
      out.start = KeyRotationJob(token: token, newKey: nil)
      out.reason = "RotationStarted"
      out.message = "\(dueText). Rotating the key-encryption key."
    }
    return withDueEvent(out, previous: previous)
  }

  /// Adds a Warning Event when the due condition's reason changed to a failure.
  static func withDueEvent(_ o: KeyRotationOutcome, previous: BackupPolicyStatus) -> KeyRotationOutcome {
    var out = o
    let before = previous.conditions?.condition(BackupPolicyCondition.keyRotationDue)
    if ["RotationFailed", "NoNewKey"].contains(out.reason),
      before?.reason != out.reason || before?.message != out.message
    {
      let reason = out.reason == "RotationFailed" ? "KeyRotationFailed" : "KeyRotationNoNewKey"
      out.events.append(PlannedEvent(warning: true, reason: reason, message: out.message))
    } else if out.reason == "RotationStarted", before?.reason != "RotationStarted" {
      out.events.append(PlannedEvent(warning: false, reason: "KeyRotationStarted", message: out.message))
    }
    return out
  }
}
