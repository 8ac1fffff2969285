import ControllerApp
import DRAPI
import Foundation
import KubeClient
import KubeCore
import Logging
import Reconcilers
import Testing

/// manifests/monitoring as files: the ServiceMonitor and PodMonitor select the controller's Service and Pods, every
/// alert links to a runbook section that exists, and every dashboard query parses (promtool).
@Suite struct MonitoringManifestTests {
  static func yaml(_ relative: String) throws -> JSONValue {
    let path = TestCluster.repoRoot + "/" + relative
    return try YAML.parse(try String(contentsOfFile: path, encoding: .utf8), file: path)
  }

  static func strings(_ v: JSONValue?) -> [String: String] {
    (v?.objectValue ?? [:]).compactMapValues(\.stringValue)
  }

  /// Whether every `matchLabels` entry is among `labels` (the monitors use matchLabels only).
  static func selects(_ selector: JSONValue?, _ labels: [String: String]) -> Bool {
    let want = strings(selector?["matchLabels"])
    return !want.isEmpty && want.allSatisfy { labels[$0.key] == $0.value } && selector?["matchExpressions"] == nil
  }

  @Test func serviceMonitorAndPodMonitorSelectTheController() throws {
    let service = try Self.yaml("manifests/service.yaml")
    let deployment = try Self.yaml("manifests/deployment.yaml")
    let sm = try Self.yaml("manifests/monitoring/servicemonitor.yaml")
    let pm = try Self.yaml("manifests/monitoring/podmonitor.yaml")
    let namespace = try #require(service[path: "metadata", "namespace"]?.stringValue)

    #expect(sm["kind"]?.stringValue == "ServiceMonitor")
    #expect(Self.selects(sm[path: "spec", "selector"], Self.strings(service[path: "metadata", "labels"])))
    #expect(sm[path: "spec", "namespaceSelector", "matchNames"]?.arrayValue?.map(\.stringValue) == [namespace])
    let servicePorts = (service[path: "spec", "ports"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
    let smEndpoints = sm[path: "spec", "endpoints"]?.arrayValue ?? []
    #expect(!smEndpoints.isEmpty)
    for e in smEndpoints {
      #expect(servicePorts.contains(e["port"]?.stringValue ?? ""), "ServiceMonitor port \(e) not on the Service")
      #expect(e["path"]?.stringValue == "/metrics")
    }

    #expect(pm["kind"]?.stringValue == "PodMonitor")
    let podLabels = Self.strings(deployment[path: "spec", "template", "metadata", "labels"])
    #expect(Self.selects(pm[path: "spec", "selector"], podLabels))
    #expect(pm[path: "spec", "namespaceSelector", "matchNames"]?.arrayValue?.map(\.stringValue) == [namespace])
    #expect(deployment[path: "metadata", "namespace"]?.stringValue == namespace)
    let containerPorts = (deployment[path: "spec", "template", "spec", "containers"]?.arrayValue ?? []).flatMap {
      ($0["ports"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
    }
    let pmEndpoints = pm[path: "spec", "podMetricsEndpoints"]?.arrayValue ?? []
    #expect(!pmEndpoints.isEmpty)
    for e in pmEndpoints {
      #expect(containerPorts.contains(e["port"]?.stringValue ?? ""), "PodMonitor port \(e) not on the Pods")
      #expect(e["path"]?.stringValue == "/metrics")
    }
    // Both set the job label the alerts read (ControllerAbsent: up{job="botrt-controller"}).
    for endpoint in smEndpoints + pmEndpoints {
      let job = (endpoint["relabelings"]?.arrayValue ?? []).first { $0["targetLabel"]?.stringValue == "job" }
      #expect(job?["replacement"]?.stringValue == "botrt-controller")
    }
    let rules = try String(
      contentsOfFile: TestCluster.repoRoot + "/manifests/monitoring/prometheusrule.yaml", encoding: .utf8)
    #expect(rules.contains(#"up{job="botrt-controller"}"#))
  }

  /// GitHub's anchors of a Markdown file's headings: lower case, punctuation but `-` and `_` removed, spaces as `-`,
  /// a repeated one suffixed `-1`, `-2`, ...
  static func anchors(_ markdown: String) -> Set<String> {
    var seen: [String: Int] = [:]
    var out: Set<String> = []
    var fenced = false
    for line in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
      if line.hasPrefix("```") { fenced.toggle() }
      guard !fenced, line.hasPrefix("#") else { continue }
      let text = line.drop { $0 == "#" }.trimmingCharacters(in: .whitespaces).lowercased()
      var slug = ""
      for ch in text {
        if ch.isLetter || ch.isNumber || ch == "-" || ch == "_" {
          slug.append(ch)
        } else if ch == " " {
          slug.append("-")
        }
      }
      let n = seen[slug, default: 0]
      seen[slug] = n + 1
      out.insert(n == 0 ? slug : "\(slug)-\(n)")
    }
    return out
  }

  @Test func everyAlertLinksToARunbookSectionThatExists() throws {
    let runbooks = try String(contentsOfFile: TestCluster.repoRoot + "/docs/runbooks.md", encoding: .utf8)
    let anchors = Self.anchors(runbooks)
    #expect(anchors.contains("backup-failures"))
    let doc = try Self.yaml("manifests/monitoring/prometheusrule.yaml")
    var alerts = 0
    for group in doc[path: "spec", "groups"]?.arrayValue ?? [] {
      for rule in group["rules"]?.arrayValue ?? [] {
        guard let alert = rule["alert"]?.stringValue else { continue }
        alerts += 1
        let url = rule[path: "annotations", "runbook_url"]?.stringValue ?? ""
        let parts = url.split(separator: "#", maxSplits: 1).map(String.init)
        #expect(parts.count == 2 && parts[0].hasSuffix("/docs/runbooks.md"), "\(alert): runbook_url '\(url)'")
        if parts.count == 2 {
          #expect(anchors.contains(parts[1]), "\(alert): docs/runbooks.md has no section #\(parts[1])")
        }
      }
    }
    #expect(alerts >= 16)
  }

  /// The dashboard's queries, with Grafana's variables replaced by values Prometheus accepts.
  static func dashboardQueries() throws -> [(panel: String, expr: String)] {
    let path = TestCluster.repoRoot + "/manifests/monitoring/botrt-dashboard.json"
    let dash = try JSONDecoder().decode(JSONValue.self, from: try Data(contentsOf: URL(fileURLWithPath: path)))
    var out: [(String, String)] = []
    for panel in dash["panels"]?.arrayValue ?? [] {
      for t in panel["targets"]?.arrayValue ?? [] {
        guard let e = t["expr"]?.stringValue else { continue }
        let expr = e.replacingOccurrences(of: "$namespace", with: ".*").replacingOccurrences(
          of: "$__range", with: "1h")
        out.append((panel["title"]?.stringValue ?? "?", expr))
      }
    }
    return out
  }

  @Test func everyDashboardQueryParses() throws {
    let queries = try Self.dashboardQueries()
    #expect(queries.count >= 10)
    // Each query as a recording rule: `promtool check rules` parses them offline.
    let rules: JSONValue = [
      "groups": [
        [
          "name": "dashboard",
          "rules": .array(
            queries.enumerated().map { i, q in
              ["record": .string("botrt_dashboard:query_\(i)"), "expr": .string(q.expr)]
            }
          ),
        ]
      ]
    ]
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-dash-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    try KubeJSON.encoder().encode(rules).write(to: dir.appendingPathComponent("dashboard.json"))
    let (rc, out) = try PromRules.run(["promtool", "check", "rules", "dashboard.json"], cwd: dir.path)
    #expect(rc == 0, "promtool check rules on the dashboard's queries (Debian package prometheus): \(out)")
    #expect(out.contains("SUCCESS: \(queries.count) rules found"), "\(out)")
  }
}

extension BackupPolicyControllerTests {
  /// Every `botrt_` metric a dashboard panel reads is one the controller registers (the others it reads are
  /// Prometheus's own: `up`, `ALERTS`).
  @Test func everyMetricTheDashboardReadsIsExported() async throws {
    let queries = try MonitoringManifestTests.dashboardQueries().map(\.expr).joined(separator: "\n")
    let re = try NSRegularExpression(pattern: "botrt_[a-z_]+")
    let names = Set(
      re.matches(in: queries, range: NSRange(queries.startIndex..., in: queries)).compactMap {
        Range($0.range, in: queries).map { String(queries[$0]) }
      })
    #expect(names.count >= 15)
    var logger = Logger(label: "botrt-controller-metrics-test") { LineLogHandler(label: $0, format: .text) }
    logger.logLevel = .warning
    let app = try await BotRTController.make(
      client: client,
      options: ControllerRunOptions(
        backupNamespace: "botrt-metrics-test", engineImage: "botrt/botrt-engine:test", metricsAddress: nil,
        calicoOverride: false, watchNamespace: "botrt-metrics-test"),
      logger: logger, handleSignals: false)
    let exported = app.registry.render()
    for name in names.sorted() {
      #expect(exported.contains("# TYPE \(name) "), "\(name) is read by the dashboard but not registered")
    }
  }
}

/// DrillFailed, DrillOverdue, ReplicaLagAboveRPO, ControllerAbsent and NoLeader, evaluated with promtool on what a
/// controller running against the local control plane exports: it leads (Lease in the test's namespace), a drill's
/// run fails (its Job disappears), and its /metrics is scraped. `up` is Prometheus's own series, and the replica lag
/// needs a replica copying, so those two are synthetic, with the labels the controller uses.
extension DrillControllerTests {
  @Test func drillLeaderAndReplicaAlertsOnScrapedMetrics() async throws {
    let ns = "mon-alerts-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
    _ = try await client.create(Namespace(metadata: ObjectMeta(name: ns, labels: ["botrt.io/test": "controller"])))
    var failure: Error? = nil
    var logger = Logger(label: "botrt-controller-test") { LineLogHandler(label: $0, format: .text) }
    logger.logLevel = .warning
    let app = try await BotRTController.make(
      client: client,
      options: ControllerRunOptions(
        backupNamespace: "\(ns)-backup", engineImage: "botrt/botrt-engine:test", workers: 2,
        metricsAddress: "127.0.0.1:0", leaderElect: true, leaseNamespace: ns, watchNamespace: ns),
      logger: logger, handleSignals: false)
    let task = Task { _ = try? await app.run() }
    do {
      // Port 0: the kernel picks a free port, which the health server reports once it listens.
      var address = ""
      try await eventually("the controller to lead (botrt_leader 1)") {
        guard let port = app.healthServer?.port, port != 0 else { return false }
        address = "127.0.0.1:\(port)"
        let s = (try? PromRules.scrape(address)) ?? ""
        return PromRules.series(s, "botrt_leader").first?.1 == 1
      }
      for (name, data) in [
        "s3-creds": ["AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"], "vault-token": ["token": "t"],
      ] {
        _ = try await client.create(
          Secret(metadata: ObjectMeta(name: name, namespace: ns), data: data.mapValues { Data($0.utf8) }))
      }
      _ = try await client.create(policy(ns))
      _ = try await client.create(
        DRDrill(
          metadata: ObjectMeta(name: "orders-drill", namespace: ns),
          spec: DRDrillSpec(
            schedule: "weekly", target: DrillTarget(backupPolicyRef: LocalObjectReference(name: "orders-db")),
            trigger: "t1")))
      var scratch = ""
      try await eventually("the drill to run in a scratch namespace") {
        let d = try await client.get(DRDrill.self, namespace: ns, name: "orders-drill")
        scratch = d.status?.currentRun?.scratchNamespace ?? ""
        return d.status?.phase == .running && !scratch.isEmpty
      }
      // No node runs the Job here: its status says it failed, as the Job controller writes it after the backoff
      // limit. (Deleting it would end the run only once the run is a minute old: the controller gives a Job it does
      // not see yet that long.) The control plane's own Job controller still syncs the Job (it creates a Pod no node
      // runs), and Kubernetes 1.20's replaces the whole status it read fresh with what it computed from its cache: a
      // sync computed before this patch overwrites it ({"active":1}, seen under load). So the patch comes after its
      // first sync, and is made again while the drill waits, whenever the Job does not show it.
      try await eventually("the Job controller to sync the run Job") {
        let job = try await client.get(
          ChildResources.jobs, namespace: scratch, name: DrillLogic.runJobName, as: JSONValue.self)
        return job[path: "status", "startTime"] != nil
      }
      let now = KubeJSON.formatDate(Date())
      let failed: JSONValue = [
        "status": [
          "failed": 1, "startTime": .string(now),
          "conditions": [
            [
              "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
              "message": "Job has reached the specified backoff limit", "lastProbeTime": .string(now),
              "lastTransitionTime": .string(now),
            ]
          ],
        ]
      ]
      var patchedUID = ""
      try await eventually("the run Job to be marked failed") {
        let patched = try? await client.patch(
          ChildResources.jobs, namespace: scratch, name: DrillLogic.runJobName, subresource: "status",
          .merge(failed), as: JSONValue.self)
        patchedUID = patched?[path: "metadata", "uid"]?.stringValue ?? ""
        return patched != nil
      }
      do {
        try await eventually("the drill's run to fail", timeout: .seconds(120)) {
          let d = try await client.get(DRDrill.self, namespace: ns, name: "orders-drill")
          if d.status?.phase != .running && d.status?.lastResult?.passed == false { return true }
          let job = try? await client.get(
            ChildResources.jobs, namespace: scratch, name: DrillLogic.runJobName, as: JSONValue.self)
          let marked = job?[path: "status", "conditions"]?.arrayValue?.contains { $0["type"] == "Failed" } ?? false
          if let job, !marked {
            if !patchedUID.contains("again") { patchedUID += " (again, over \(job[path: "status"] ?? .null))" }
            _ = try? await client.patch(
              ChildResources.jobs, namespace: scratch, name: DrillLogic.runJobName, subresource: "status",
              .merge(failed), as: JSONValue.self)
          }
          return false
        }
      } catch {
        // One line (CI's summary shows the failing lines only): what the drill and its run Job look like.
        let d = try? await client.get(DRDrill.self, namespace: ns, name: "orders-drill")
        let job = try? await client.get(
          ChildResources.jobs, namespace: scratch, name: DrillLogic.runJobName, as: JSONValue.self)
        let nsObj = try? await client.get(ChildResources.namespaces, namespace: nil, name: scratch, as: JSONValue.self)
        let status = (try? d?.status.map { String(decoding: try KubeJSON.encoder().encode($0), as: UTF8.self) }) ?? nil
        let jobStatus = job.map { "\($0[path: "metadata", "uid"] ?? .null) \($0["status"] ?? .null)" } ?? "none"
        let nsState =
          nsObj.map { "\($0[path: "metadata", "uid"] ?? .null) \($0[path: "status", "phase"] ?? .null)" } ?? "none"
        throw ControllerTestError(
          description:
            "\(error); drill status \(status ?? "none"); run Job marked failed \(patchedUID), now \(jobStatus); "
            + "scratch \(nsState)")
      }
      // The policy's gauges come from the BackupPolicy controller, which need not have reconciled the policy yet when
      // the drill's run has failed (seen under load: the run failed 3 s after the start): scrape until both
      // controllers' series are there.
      var scrapedAt = 0.0
      let drill = ["namespace": ns, "drill": "orders-drill"]
      var passed: [(String, Double)] = []
      var next: [(String, Double)] = []
      var target: [(String, Double)] = []
      var leader: [(String, Double)] = []
      try await eventually("the drill's, the policy's and the leader's series on /metrics") {
        scrapedAt = Date().timeIntervalSince1970
        let scraped = try PromRules.scrape(address)
        passed = PromRules.series(scraped, "botrt_drill_last_passed", matching: drill)
        next = PromRules.series(scraped, "botrt_drill_next_run_timestamp_seconds", matching: drill)
        target = PromRules.series(scraped, "botrt_rpo_target_seconds", matching: ["namespace": ns])
        leader = PromRules.series(scraped, "botrt_leader")
        return !passed.isEmpty && !next.isEmpty && !target.isEmpty && !leader.isEmpty
      }
      #expect(passed.map(\.1) == [0], "\(passed)")
      try #require(next.count == 1 && target.count == 1 && leader.count == 1, "\(next) \(target) \(leader)")
      // The next run of a weekly drill is at most a week after the failed run.
      let due = next[0].1 - scrapedAt
      #expect(due > 0 && due <= 7 * 86400 + 60, "next run in \(due) s")
      let rpo = target[0].1
      #expect(rpo > 0)

      let f = PromRules.format
      // DrillFailed, ReplicaLagAboveRPO, ControllerAbsent, NoLeader on a 1-minute timeline: the scraped series from
      // minute 5 (none before), the leader losing the Lease at minute 11 (its gauge goes to 0, as Manager sets it),
      // and the replica scraped no more from minute 11 (a staleness marker).
      let lag = "botrt_replica_lag_seconds{namespace=\"\(ns)\",policy=\"orders-db\",replica=\"dr\",tier=\"standard\"}"
      let drillLabels = drill.merging(["severity": "high"]) { $1 }
      try PromRules.test(
        [
          PromRules.Input(series: passed[0].0, values: "_x4 \(f(passed[0].1))x40"),
          PromRules.Input(series: target[0].0, values: "\(f(rpo))x45"),
          PromRules.Input(series: lag, values: "0x10 \(f(rpo + 60))x35"),
          PromRules.Input(series: #"botrt_leader{instance="10.0.0.1:8080"}"#, values: "\(f(leader[0].1))x10 0x35"),
          PromRules.Input(series: #"botrt_leader{instance="10.0.0.2:8080"}"#, values: "0x45"),
          PromRules.Input(series: #"up{job="botrt-controller",instance="10.0.0.1:8080"}"#, values: "1x10 stale"),
        ],
        [
          PromRules.Expectation(evalTime: "3m", alert: "DrillFailed", firing: []),
          PromRules.Expectation(evalTime: "6m", alert: "DrillFailed", firing: [drillLabels]),
          PromRules.Expectation(evalTime: "20m", alert: "ReplicaLagAboveRPO", firing: []),
          PromRules.Expectation(
            evalTime: "30m", alert: "ReplicaLagAboveRPO",
            firing: [
              ["namespace": ns, "policy": "orders-db", "tier": "standard", "replica": "dr", "severity": "warning"]
            ]),
          PromRules.Expectation(evalTime: "10m", alert: "NoLeader", firing: []),
          PromRules.Expectation(evalTime: "14m", alert: "NoLeader", firing: []),
          PromRules.Expectation(evalTime: "17m", alert: "NoLeader", firing: [["severity": "critical"]]),
          PromRules.Expectation(evalTime: "10m", alert: "ControllerAbsent", firing: []),
          PromRules.Expectation(evalTime: "14m", alert: "ControllerAbsent", firing: []),
          PromRules.Expectation(
            evalTime: "17m", alert: "ControllerAbsent", firing: [["job": "botrt-controller", "severity": "critical"]]),
        ], name: "operations")
      // DrillOverdue: the scraped next run, on promtool's clock with the scrape at 0 (one sample a minute, up to
      // 100 minutes past the due time). Silent before the due time plus an hour, firing after.
      let minutes = Int(due / 60)
      try PromRules.test(
        [PromRules.Input(series: next[0].0, values: "\(f(next[0].1 - scrapedAt))x\(minutes + 100)")],
        [
          PromRules.Expectation(evalTime: "\(minutes + 50)m", alert: "DrillOverdue", firing: []),
          PromRules.Expectation(
            evalTime: "\(minutes + 70)m", alert: "DrillOverdue",
            firing: [drill.merging(["severity": "warning", "compliance": "sox,pci"]) { $1 }]),
        ], name: "overdue")
    } catch {
      failure = error
    }
    app.stop()
    await task.value
    try await cleanUp(ns)
    if let failure { throw failure }
  }
}
