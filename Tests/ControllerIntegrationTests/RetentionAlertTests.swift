import Foundation
import Testing

/// The retention alerts of manifests/monitoring/prometheusrule.yaml, evaluated by `promtool test rules` on the
/// series the controller exports (`botrt_retention_failing`, `botrt_retention_last_success_timestamp_seconds`).
@Suite struct RetentionAlertTests {
  @Test func failingRetentionAlertsAfterAnHourAndAStaleSuccessAfterThreeDays() throws {
    let l = #"namespace="shop",policy="payments-db",tier="critical""#
    let fired = ["namespace": "shop", "policy": "payments-db", "tier": "critical"]
    try PromRules.test(
      [
        // Failing from minute 10 on; the last success at t=0 (Unix 0) stays the newest.
        PromRules.Input(series: "botrt_retention_failing{\(l)}", values: "0x9 1x300"),
        PromRules.Input(series: "botrt_retention_last_success_timestamp_seconds{\(l)}", values: "0x5000"),
      ],
      [
        PromRules.Expectation(evalTime: "30m", alert: "RetentionFailing", firing: []),
        PromRules.Expectation(
          evalTime: "80m", alert: "RetentionFailing", firing: [fired.merging(["severity": "high"]) { $1 }]),
        PromRules.Expectation(evalTime: "71h", alert: "RetentionNotApplied", firing: []),
        PromRules.Expectation(
          evalTime: "73h", alert: "RetentionNotApplied", firing: [fired.merging(["severity": "warning"]) { $1 }]),
      ], name: "retention")
  }
}
