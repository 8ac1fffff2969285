import DRAPI
import Foundation
import KubeCore

/// A replica rotation Job the reconciler should create.
public struct ReplicaRotationJob: Sendable, Hashable {
  /// Names the Job.
  public var token: String
  /// Rewrap under the primary's current key-encryption key (a replica sharing the policy's encryption).
  public var followPrimary = false
  /// The key recorded as the replica's currentKey once the Job succeeds (nil: the spec's key). Without
  /// `followPrimary`, an entry of the replica's rotation keys Secret to rotate to (`--new-kms`), or nil for
  /// `--new-kek` (its own Vault Transit or AWS KMS key makes a new key).
  public var newKey: String?
}

/// What the replica key rotation logic decided for one replica.
public struct ReplicaRotationPlan: Sendable {
  /// The replica's status with its rotation fields updated.
  public var status: ReplicaStatus
  public var start: ReplicaRotationJob?
  /// Finished rotation Jobs that are recorded and can go.
  public var obsoleteJobs: [String] = []
  public var events: [PlannedEvent] = []
  public var requeueAt: Date?
  /// The replica's keys are behind the primary's: no copy may start until they are rewrapped (a copy would open the
  /// replica with a key that no longer wraps it).
  public var holdCopies = false
  /// The replica's rotation is due: its own key's period has passed (or a rotation was requested), or its data keys
  /// wait to be rewrapped under the primary's new key.
  public var due = false
  /// Age of the replica's key-encryption key and its limit, in seconds (nil for a replica following the primary).
  public var keyAgeSeconds: Double?
  public var limitSeconds: Double?
}

/// Key rotation of the replicas (spec.replicas), so that rotation leaves every copy readable:
///
/// - A replica with **its own encryption** is rotated on its own schedule (`replicas[].encryption.keyRotationDays`),
///   like the primary (`KeyRotationLogic`): a new Vault Transit version or AWS KMS key, or the next entry of its
///   rotation keys Secret. The `dr.botrt.io/rotate-keys-now` annotation rotates it too.
/// - A replica **sharing the policy's encryption** follows the primary: after each primary rotation its data keys are
///   rewrapped under the primary's new key (`rotate-keys --new-kms`; for Vault Transit the same key, whose newest
///   version then wraps them), before any further copy. Otherwise a retired Vault version or a disabled AWS key
///   would leave the replica unreadable.
public enum ReplicaKeyRotation {
  /// The component label of replica rotation Jobs.
  public static let component = "replica-rotate-keys"

  /// The spec the replica's repository is used with as if it were a policy's own (its repository, its encryption),
  /// with a status of the replica's own: its key, rotations and pins (status.replicas[].repositoryIdentity).
  public static func virtualPolicy(_ policy: BackupPolicy, replica: ReplicaSpec, status rs: ReplicaStatus)
    -> BackupPolicy
  {
    var v = policy
    v.spec = ReplicaInvocation.targetSpec(policy.spec, replica)
    var s = BackupPolicyStatus()
    s.lastSuccessfulBackup = rs.lastCopyTime
    s.lastKeyRotation = rs.lastKeyRotation
    s.currentKey = rs.currentKey
    s.lastHandledKeyRotationRequest = rs.lastHandledKeyRotationRequest
    // The replica's own pins (never the primary's): Jobs that open the replica as their repository pass them.
    s.repositoryIdentity = rs.repositoryIdentity
    v.status = s
    return v
  }

  /// Decides for replica `index`. `runs` are its rotation Jobs; `rotationKeys` the entries of its own
  /// rotationKeysSecretRef (own encryption with a local key only).
  public static func plan(
    policy: BackupPolicy, index: Int, status rs: ReplicaStatus, runs: [BackupRun], rotationKeys: [String]?,
    now: Date
  ) -> ReplicaRotationPlan {
    guard let replica = policy.spec.replicas?[safe: index] else { return ReplicaRotationPlan(status: rs) }
    if replica.encryption != nil {
      return own(policy: policy, replica: replica, status: rs, runs: runs, rotationKeys: rotationKeys, now: now)
    }
    return follow(policy: policy, replica: replica, status: rs, runs: runs, now: now)
  }

  static func own(
    policy: BackupPolicy, replica: ReplicaSpec, status rs: ReplicaStatus, runs: [BackupRun], rotationKeys: [String]?,
    now: Date
  ) -> ReplicaRotationPlan {
    let v = virtualPolicy(policy, replica: replica, status: rs)
    let o = KeyRotationLogic.plan(policy: v, runs: runs, rotationKeys: rotationKeys, now: now)
    var s = rs
    s.lastKeyRotation = o.lastKeyRotation
    s.nextKeyRotation = o.nextKeyRotation
    s.currentKey = o.currentKey
    s.lastHandledKeyRotationRequest = o.lastHandledRequest
    let message = "\(o.reason): \(o.message)"
    s.keyRotation = message
    var out = ReplicaRotationPlan(status: s)
    out.obsoleteJobs = o.obsoleteJobs
    out.requeueAt = o.requeueAt
    out.keyAgeSeconds = o.keyAgeSeconds
    out.limitSeconds = o.limitSeconds
    out.due = o.due == .true
    // The primary's sentences speak of "the repository": name the replica. A due-state Event is emitted once per
    // new sentence (the replica has no condition of its own to compare with).
    for e in o.events where e.reason == "KeyRotated" || message != rs.keyRotation {
      out.events.append(
        PlannedEvent(
          warning: e.warning, reason: "Replica" + e.reason, message: "Replica \(replica.name): \(e.message)"))
    }
    if let start = o.start {
      out.start = ReplicaRotationJob(token: start.token, newKey: start.newKey)
    }
    return out
  }

  static func follow(
    policy: BackupPolicy, replica: ReplicaSpec, status rs: ReplicaStatus, runs: [BackupRun], now: Date
  ) -> ReplicaRotationPlan {
    var s = rs
    s.nextKeyRotation = nil
    var events: [PlannedEvent] = []
    // The newest successful rewrap not yet recorded.
    if let r = KeyRotationLogic.newestUnrecorded(runs, since: s.lastKeyRotation), let t = r.finishTime {
      s.lastKeyRotation = t
      let k = r.annotations[KeyRotationLogic.newKeyAnnotation] ?? ""
      s.currentKey = k.isEmpty ? nil : k
      events.append(
        PlannedEvent(
          warning: false, reason: "ReplicaKeyRotated",
          message: "Replica \(replica.name): Job \(r.jobName) rewrapped its data keys under the primary's current "
            + "key-encryption key" + (s.currentKey.map { " (\($0))" } ?? "") + "."))
    }
    var out = ReplicaRotationPlan(status: s)
    out.obsoleteJobs = KeyRotationLogic.recordedJobs(runs, upTo: rs.lastKeyRotation)
    let primary = policy.status ?? BackupPolicyStatus()
    let exists = s.lastCopyTime != nil
    let keyDiffers = s.currentKey != primary.currentKey
    let older = primary.lastKeyRotation.map { p in (s.lastKeyRotation ?? .distantPast) < p } ?? false
    guard exists, keyDiffers || older else {
      s.keyRotation =
        exists
        ? "InSync: the replica's data keys are wrapped by the primary's current key-encryption key"
          + (s.lastKeyRotation.map { " (rewrapped at \(KubeJSON.formatDate($0)))" } ?? "") + "."
        : "NoRepository: the replica has no copy yet; its first copy creates it with the primary's current key."
      out.status = s
      out.events = events
      return out
    }
    out.holdCopies = true
    out.due = true
    let since = primary.lastKeyRotation ?? now
    let attempt = Int(max(0, now.timeIntervalSince(since)) / KeyRotationLogic.retrySeconds)
    let token = "follow:\(KubeJSON.formatDate(since)):\(primary.currentKey ?? ""):\(attempt)"
    let what =
      "the primary's keys were rotated at \(KubeJSON.formatDate(since)); the replica's data keys are rewrapped under "
      + "its new key-encryption key before the next copy"
    out.obsoleteJobs += runs.filter { $0.state == .failed && $0.annotations[KeyRotationLogic.tokenAnnotation] != token }
      .map(\.jobName)
    var message: String
    if let r = runs.first(where: { $0.state == .running }) {
      message = "RotationRunning: \(what); Job \(r.jobName) is doing it."
    } else if let r = runs.first(where: {
      $0.state == .failed && $0.annotations[KeyRotationLogic.tokenAnnotation] == token
    }) {
      let why = KeyRotationLogic.failureText(r)
      let next = since.addingTimeInterval(Double(attempt + 1) * KeyRotationLogic.retrySeconds)
      message =
        "RotationFailed: \(what), but Job \(r.jobName) failed: \(why). The next attempt is at "
        + "\(KubeJSON.formatDate(next))."
      out.requeueAt = next.addingTimeInterval(1)
      if message != rs.keyRotation {
        events.append(
          PlannedEvent(
            warning: true, reason: "ReplicaKeyRotationFailed", message: "Replica \(replica.name): \(message)"))
      }
    } else {
      out.start = ReplicaRotationJob(token: token, followPrimary: true, newKey: primary.currentKey)
      message = "RotationStarted: \(what)."
      if message != rs.keyRotation {
        events.append(
          PlannedEvent(
            warning: false, reason: "ReplicaKeyRotationStarted", message: "Replica \(replica.name): \(message)"))
      }
    }
    s.keyRotation = message
    out.status = s
    out.events = events
    return out
  }

  /// Sets the ReplicaKeyRotationDue condition from the replicas' plans, or removes it when there are none: True
  /// (reason RotationFailed when an attempt failed, else RotationDue) while any replica is due, naming each with
  /// its state; False (NotDue) with the next due time of the replicas that rotate on their own.
  public static func setCondition(
    _ rotations: [(name: String, plan: ReplicaRotationPlan)], conditions: inout [Condition],
    observedGeneration: Int64?, now: Date
  ) {
    let type = BackupPolicyCondition.replicaKeyRotationDue
    if rotations.isEmpty {
      conditions.removeCondition(type)
      return
    }
    let due = rotations.filter { $0.plan.due }
    if due.isEmpty {
      let next = rotations.compactMap { r in r.plan.status.nextKeyRotation.map { (r.name, $0) } }.min { $0.1 < $1.1 }
      let message =
        "Every replica's data keys are wrapped by a current key-encryption key"
        + (next.map { "; the next replica rotation is due at \(KubeJSON.formatDate($0.1)) (replica \($0.0))" } ?? "")
        + "."
      conditions.setCondition(
        type: type, status: .false, reason: "NotDue", message: message, observedGeneration: observedGeneration,
        now: now)
      return
    }
    let failed = due.contains { $0.plan.status.keyRotation?.hasPrefix("RotationFailed") == true }
    let message = due.map { r in
      "Replica \(r.name): \(r.plan.status.keyRotation ?? "its data keys wait to be rewrapped")"
    }.joined(separator: " ")
    conditions.setCondition(
      type: type, status: .true, reason: failed ? "RotationFailed" : "RotationDue", message: message,
      observedGeneration: observedGeneration, now: now)
  }
}
