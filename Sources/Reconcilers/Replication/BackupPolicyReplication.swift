import DRAPI
import Foundation
import KubeClient
import KubeCore
import KubeRuntime

/// The metrics of replicas, labelled namespace, policy, tier and replica.
public struct ReplicaMetrics: Sendable {
  public let lag: Gauge
  public let lastCopy: Gauge
  public let copyFailures: Counter
  /// Age of a replica's own key-encryption key, and its rotation limit (replicas with their own encryption).
  public let keyAge: Gauge
  public let keyRotationLimit: Gauge

  /// Every gauge of a replica (they go with the replica; counters stay).
  var gauges: [Gauge] { [lag, lastCopy, keyAge, keyRotationLimit] }

  public init(_ r: MetricsRegistry) {
    let l = ["namespace", "policy", "tier", "replica"]
    lag = r.gauge(
      "botrt_replica_lag_seconds",
      help: "Seconds between the primary's newest successful backup and the newest backup the replica holds.",
      labels: l)
    lastCopy = r.gauge(
      "botrt_replica_last_copy_timestamp_seconds", help: "Unix time of the replica's newest successful copy.",
      labels: l)
    copyFailures = r.counter("botrt_replica_copy_failures_total", help: "Copy Jobs that failed.", labels: l)
    keyAge = r.gauge(
      "botrt_replica_key_age_seconds",
      help: "Seconds since the replica's own key-encryption key was last rotated (or the policy was created).",
      labels: l)
    keyRotationLimit = r.gauge(
      "botrt_replica_key_rotation_limit_seconds",
      help: "The replica's keyRotationDays in seconds: the most its key-encryption key may age.", labels: l)
  }
}

extension Secret {
  /// The names of the Secret's entries (data and stringData), e.g. the keys a rotation keys Secret offers.
  var entryNames: [String] { Array(Set((data ?? [:]).keys).union((stringData ?? [:]).keys)) }
}

extension BackupPolicyReconciler {
  /// Plans the key rotation of every replica (ReplicaKeyRotation) from its rotation Jobs and its previous status.
  func planReplicaRotations(
    _ policy: BackupPolicy, namespace: String, secrets: [String: Secret], now: Date
  ) async throws -> [(index: Int, name: String, plan: ReplicaRotationPlan)] {
    let replicas = policy.spec.replicas ?? []
    if replicas.isEmpty { return [] }
    let runs = try await observeRuns(
      policy, namespace: namespace, components: ReplicaKeyRotation.component, container: "engine")
    var out: [(index: Int, name: String, plan: ReplicaRotationPlan)] = []
    for (i, replica) in replicas.enumerated() {
      let rs = policy.status?.replicas?.first { $0.name == replica.name } ?? ReplicaStatus(name: replica.name)
      var entries: [String]? = nil
      if let ref = replica.encryption?.rotationKeysSecretRef, let secret = secrets[ref.name] {
        entries = secret.entryNames
      }
      let mine = runs.filter { $0.annotations[ReplicaLabels.replica] == replica.name }
      out.append(
        (
          i, replica.name,
          ReplicaKeyRotation.plan(
            policy: policy, index: i, status: rs, runs: mine, rotationKeys: entries, now: now)
        ))
    }
    return out
  }

  /// The policy's copy Jobs and their Pods in `namespace`.
  func observeCopies(_ policy: BackupPolicy, namespace: String) async throws -> [CopyRun] {
    try await jobsWithPods(policy, namespace: namespace, components: ReplicaLabels.copyComponent).map {
      CopyRun.observe(job: $0.job, pods: $0.pods)
    }
  }

  /// Replication after the primary's status is computed: observes the copy Jobs, starts a copy per replica that
  /// lacks the newest snapshot (never two of one replica at once), deletes old copy Jobs, and folds the replicas
  /// into `outcome` (status.replicas, ReplicasInSync, RPOMet, events, requeue).
  func reconcileReplicas(
    _ policy: BackupPolicy, effective: EffectivePolicy?, ready: Bool, secrets: [String: Secret], now: Date,
    outcome: inout StatusOutcome
  ) async throws {
    let hasReplicas = !(policy.spec.replicas ?? []).isEmpty
    if !hasReplicas && policy.status?.replicas == nil { return }
    // The primary's key as this reconcile leaves it (a rotation recorded just now counts).
    var policy = policy
    if policy.status != nil {
      policy.status?.lastKeyRotation = outcome.status.lastKeyRotation
      policy.status?.currentKey = outcome.status.currentKey
    }
    let workNS = BackupPolicyChildren.workloadNamespace(policy, settings: settings)
    let copies = try await observeCopies(policy, namespace: workNS)
    let rotations = try await planReplicaRotations(policy, namespace: workNS, secrets: secrets, now: now)
    let held = Set(rotations.filter { $0.plan.holdCopies }.map(\.name))
    let plan = ReplicationLogic.apply(
      policy: policy, copies: copies, canCopy: ready && effective != nil, held: held, now: now, outcome: &outcome)
    // Replica pins recorded (or dropped) just now apply to the copy and rotation Jobs created below.
    if let before = policy.status?.replicas {
      policy.status?.replicas = before.map { st in
        var st = st
        st.repositoryIdentity = outcome.status.replicas?.first { $0.name == st.name }?.repositoryIdentity
        return st
      }
    }
    // Fold the rotation fields into the replicas' status (a key recorded by a rotation wins over the copy's).
    let previous = policy.status?.replicas ?? []
    outcome.status.replicas = outcome.status.replicas?.map { st in
      guard let r = rotations.first(where: { $0.name == st.name })?.plan.status else { return st }
      var st = st
      let before = previous.first { $0.name == st.name }
      if r.currentKey != before?.currentKey || r.lastKeyRotation != before?.lastKeyRotation {
        st.currentKey = r.currentKey
      }
      st.lastKeyRotation = r.lastKeyRotation
      st.nextKeyRotation = r.nextKeyRotation
      st.lastHandledKeyRotationRequest = r.lastHandledKeyRotationRequest
      st.keyRotation = r.keyRotation
      return st
    }
    var conditions = outcome.status.conditions ?? []
    ReplicaKeyRotation.setCondition(
      rotations.map { ($0.name, $0.plan) }, conditions: &conditions, observedGeneration: policy.metadata.generation,
      now: now)
    outcome.status.conditions = conditions
    for r in rotations {
      outcome.events += r.plan.events
      if let at = r.plan.requeueAt { outcome.requeueAt = min(outcome.requeueAt ?? at, at) }
      for name in r.plan.obsoleteJobs { try await deleteChild(ChildResources.jobs, namespace: workNS, name: name) }
    }
    if let effective, ready {
      let input = ChildInputs(policy: policy, effective: effective, settings: settings, secrets: secrets)
      for r in rotations {
        guard let start = r.plan.start else { continue }
        do {
          try await applyChild(try ReplicationChildren.rotationJob(input, index: r.index, start))
        } catch let e as SpecError {
          logger.warning("cannot build replica rotation Job", metadata: ["replica": "\(r.name)", "error": "\(e)"])
        }
      }
    }
    if let effective {
      let input = ChildInputs(policy: policy, effective: effective, settings: settings, secrets: secrets)
      for p in plan.create {
        do {
          let job = try ReplicationChildren.copyJob(
            input, index: p.index, snapshot: p.snapshot, backupTime: p.backupTime)
          try await applyChild(job)
          recorder?.record(
            policy, type: .normal, reason: "ReplicaCopyStarted",
            message: "Created copy Job \(job.name) of snapshot \(p.snapshot) to replica \(p.replica).")
        } catch let e as SpecError {
          logger.warning("cannot build copy Job", metadata: ["replica": "\(p.replica)", "error": "\(e)"])
        }
      }
    }
    for name in plan.delete {
      try await deleteChild(ChildResources.jobs, namespace: workNS, name: name)
    }
    outcome.events += plan.events
    let tier = policy.spec.tier.rawValue
    let ns = policy.metadata.namespace ?? ""
    if let m = replicaMetrics {
      for r in outcome.status.replicas ?? [] {
        let l = [ns, policy.name, tier, r.name]
        if let lag = r.lagSeconds { m.lag.set(Double(lag), l) }
        if let t = r.lastCopyTime { m.lastCopy.set(t.timeIntervalSince1970, l) }
      }
      for r in rotations {
        let l = [ns, policy.name, tier, r.name]
        if let age = r.plan.keyAgeSeconds, let limit = r.plan.limitSeconds {
          m.keyAge.set(age, l)
          m.keyRotationLimit.set(limit, l)
        } else {
          // A replica following the primary has no key of its own.
          m.keyAge.remove(matching: ["namespace": ns, "policy": policy.name, "replica": r.name])
          m.keyRotationLimit.remove(matching: ["namespace": ns, "policy": policy.name, "replica": r.name])
        }
      }
      // Replicas removed from the spec: their series go.
      let wanted = Set((policy.spec.replicas ?? []).map(\.name))
      for gone in Set((policy.status?.replicas ?? []).map(\.name)).subtracting(wanted) {
        for g in m.gauges { g.remove(matching: ["namespace": ns, "policy": policy.name, "replica": gone]) }
      }
      for e in plan.events where e.reason == "ReplicaCopyFailed" {
        let name = (policy.spec.replicas ?? []).first { e.message.hasPrefix("Replica \($0.name):") }?.name ?? ""
        m.copyFailures.inc([ns, policy.name, tier, name])
      }
    }
  }
}
