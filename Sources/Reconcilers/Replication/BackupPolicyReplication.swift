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
  /// The policy's copy Jobs and their Pods in `namespace`.
  func observeCopies(_ policy: BackupPolicy, namespace: String) async throws -> [CopyRun] {
    try await jobsWithPods(policy, namespace: namespace, components: ReplicaLabels.copyComponent).map {
      CopyRun.observe(job: $0.job, pods: $0.pods)
    }
  }
}
