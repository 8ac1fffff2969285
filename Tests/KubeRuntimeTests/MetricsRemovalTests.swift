import Testing

@testable import KubeRuntime

@Suite struct MetricsRemovalTests {
  @Test func seriesOfAGoneObjectAreRemovedAndOthersStay() {
    let r = MetricsRegistry()
    let g = r.gauge("t_rpo_target_seconds", help: "h", labels: ["namespace", "policy", "tier"])
    let c = r.counter("t_runs_total", help: "h", labels: ["namespace", "policy"])
    g.set(300, ["shop", "db", "critical"])
    g.set(600, ["shop", "db", "standard"])
    g.set(300, ["shop", "other", "critical"])
    c.inc(["shop", "db"])
    // A tier change: only the current tier's series stays.
    #expect(g.keepOnly(["shop", "db", "critical"], among: ["namespace": "shop", "policy": "db"]) == 1)
    #expect(r.value("t_rpo_target_seconds", labels: ["shop", "db", "standard"]) == nil)
    #expect(r.value("t_rpo_target_seconds", labels: ["shop", "db", "critical"]) == 300)
    // The policy is deleted: its gauge series go, the other policy's and the counter stay.
    #expect(g.remove(matching: ["namespace": "shop", "policy": "db"]) == 1)
    #expect(r.value("t_rpo_target_seconds", labels: ["shop", "db", "critical"]) == nil)
    #expect(r.value("t_rpo_target_seconds", labels: ["shop", "other", "critical"]) == 300)
    #expect(r.value("t_runs_total", labels: ["shop", "db"]) == 1)
    #expect(!r.render().contains(#"policy="db",tier"#))
    // A label the family does not have matches nothing there.
    #expect(r.removeSeries(matching: ["replica": "x"]) == 0)
    #expect(r.removeSeries(matching: ["namespace": "shop"]) == 2)
  }
}
