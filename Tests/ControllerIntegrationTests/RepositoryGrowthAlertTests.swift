import DRAPI
import Foundation
import KubeCore
import KubeRuntime
import Testing

@testable import Reconcilers

/// RepositoryGrowthUnusual of manifests/monitoring/prometheusrule.yaml, evaluated by `promtool test rules` on the
/// series the controller exports (`botrt_backup_added_bytes`, `botrt_repository_stored_bytes`): their names and
/// labels are taken from the controller's metrics registry as /metrics renders it, for policies whose status holds
/// the engine's figures; the values over eight days are synthetic (one sample a minute). The figures themselves,
/// from a real engine run through the controller's reader, are checked by RepositorySizeTests.
@Suite struct RepositoryGrowthAlertTests {
  static let gib: Double = 1_073_741_824
  static let mib: Double = 1_048_576

  /// The rendered exposition of the controller's BackupPolicy metrics for policies `names` (tier standard).
  static func scraped(_ names: [String]) -> String {
    let registry = MetricsRegistry()
    let metrics = BackupPolicyMetrics(registry)
    for name in names {
      let spec = BackupPolicySpec(
        tier: .standard, source: BackupSource(pvc: PVCSource(claimName: "data")),
        repository: RepositorySpec(local: LocalRepository(path: "/backups", claimName: "backups")),
        encryption: EncryptionSpec(kms: KMSSpec(localKeySecretRef: SecretReference(name: "kek", key: "key"))))
      var status = BackupPolicyStatus(lastBackupStoredBytes: 1)
      status.repositoryStoredBytes = 2
      metrics.record(BackupPolicy(metadata: ObjectMeta(name: name, namespace: "shop"), spec: spec), status)
    }
    return registry.render()
  }

  @Test func firesOnASnapshotFarAboveTheWeeksAverageOrADayDoublingNotOnSmallOrSteadyGrowth() throws {
    let text = Self.scraped(["spike", "small", "jump", "steady"])
    func series(_ metric: String, _ policy: String) throws -> String {
      let s = PromRules.series(text, metric, matching: ["namespace": "shop", "policy": policy])
      try #require(s.count == 1, "\(metric) of \(policy) in:\n\(text)")
      return s[0].0
    }
    let f = PromRules.format
    // Eight days of hourly-looking figures; at minute 11520 (day 8) one backup's figure stands for an hour.
    let day8 = 8 * 1440
    func spikeValues(_ base: Double, _ spike: Double) -> String {
      "\(f(base))x\(day8 - 1) \(f(spike))x59 \(f(base))x200"
    }
    func jumpValues(_ before: Double, _ after: Double) -> String {
      "\(f(before))x\(day8 - 1) \(f(after))x1500"
    }
    let fired = { (policy: String) in
      ["namespace": "shop", "policy": policy, "tier": "standard", "severity": "warning"]
    }
    try PromRules.test(
      [
        // 100 MiB per backup, then 2 GiB: 20 times the average and above the 1 GiB floor.
        PromRules.Input(
          series: try series("botrt_backup_added_bytes", "spike"), values: spikeValues(100 * Self.mib, 2 * Self.gib)),
        // 1 MiB, then 100 MiB: 100 times the average but under the floor.
        PromRules.Input(
          series: try series("botrt_backup_added_bytes", "small"), values: spikeValues(Self.mib, 100 * Self.mib)),
        // 10 GiB stored, then 16 GiB: 60 % and 6 GiB in a day.
        PromRules.Input(
          series: try series("botrt_repository_stored_bytes", "jump"),
          values: jumpValues(10 * Self.gib, 16 * Self.gib)),
        // 10 GiB, then 12 GiB: 20 % in a day.
        PromRules.Input(
          series: try series("botrt_repository_stored_bytes", "steady"),
          values: jumpValues(10 * Self.gib, 12 * Self.gib)),
      ],
      [
        PromRules.Expectation(evalTime: "\(day8 - 1)m", alert: "RepositoryGrowthUnusual", firing: []),
        PromRules.Expectation(
          evalTime: "\(day8 + 5)m", alert: "RepositoryGrowthUnusual", firing: [fired("spike"), fired("jump")]),
        // Over an hour after the spike (the next backups added the usual again): quiet; the jump still fires.
        PromRules.Expectation(evalTime: "\(day8 + 130)m", alert: "RepositoryGrowthUnusual", firing: [fired("jump")]),
        // A day after the jump: its growth is the new normal.
        PromRules.Expectation(evalTime: "\(day8 + 1440 + 5)m", alert: "RepositoryGrowthUnusual", firing: []),
      ], name: "repository-growth")
  }
}
