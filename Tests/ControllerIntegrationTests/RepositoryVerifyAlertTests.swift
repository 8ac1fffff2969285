import DRAPI
import Foundation
import KubeCore
import KubeRuntime
import Testing

@testable import Reconcilers

/// RepositoryVerifyFailed of manifests/monitoring/prometheusrule.yaml, evaluated by `promtool test rules` on the
/// series the controller exports (`botrt_verify_failing`, `botrt_verify_last_success_timestamp_seconds`): their names
/// and labels are taken from the controller's metrics registry as /metrics renders it, for a policy whose verify
/// failed; the values are synthetic (one sample a minute). The outcome itself, from a real engine's verify of a
/// damaged repository through the controller's reader, is checked by VerifyStatusTests.
@Suite struct RepositoryVerifyAlertTests {
  /// The rendered exposition of the controller's BackupPolicy metrics after a failed verify of each of `names`.
  static func scraped(_ names: [String]) -> String {
    let registry = MetricsRegistry()
    let metrics = BackupPolicyMetrics(registry)
    let now = Date(timeIntervalSince1970: 1_780_000_000)
    for name in names {
      let runs = [
        BackupRun(jobName: "\(name)-verify-1", state: .succeeded, finishTime: now.addingTimeInterval(-86_400)),
        BackupRun(jobName: "\(name)-verify-2", state: .failed, finishTime: now, failureMessage: "damaged pack"),
      ]
      metrics.recordVerify(
        VerifyOutcome.evaluate(runs, previous: nil), ["shop", name, "critical"],
        policy: ["namespace": "shop", "policy": name])
    }
    return registry.render()
  }

  @Test func aFailedVerifyAlertsAfterFiveMinutesAndClearsWhenOnePasses() throws {
    let text = Self.scraped(["payments-db", "orders-db"])
    func series(_ metric: String, _ policy: String) throws -> String {
      let s = PromRules.series(text, metric, matching: ["namespace": "shop", "policy": policy])
      try #require(s.count == 1, "\(metric) of \(policy) in:\n\(text)")
      return s[0].0
    }
    let fired = ["namespace": "shop", "policy": "payments-db", "tier": "critical", "severity": "critical"]
    try PromRules.test(
      [
        // Failing from minute 10 to minute 60, then a verify passes.
        PromRules.Input(series: try series("botrt_verify_failing", "payments-db"), values: "0x9 1x50 0x60"),
        PromRules.Input(
          series: try series("botrt_verify_last_success_timestamp_seconds", "payments-db"),
          values: "0x60 3600x60"),
        // Passing throughout.
        PromRules.Input(series: try series("botrt_verify_failing", "orders-db"), values: "0x120"),
      ],
      [
        PromRules.Expectation(evalTime: "12m", alert: "RepositoryVerifyFailed", firing: []),
        PromRules.Expectation(evalTime: "20m", alert: "RepositoryVerifyFailed", firing: [fired]),
        PromRules.Expectation(evalTime: "70m", alert: "RepositoryVerifyFailed", firing: []),
      ], name: "repository-verify")
  }
}
