import ControllerApp
import DRAPI
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Reconcilers
import Testing

extension BackupPolicyControllerTests {
  /// A controller with its own request counter (`botrt_kube_requests_total`, as the shipped one counts them).
  func countingController(_ ns: String) async throws -> (
    app: BotRTController, registry: MetricsRegistry, task: Task<Void, Never>
  ) {
    let registry = MetricsRegistry()
    let requests = registry.counter(
      "botrt_kube_requests_total", help: "Requests to the Kubernetes API by verb, resource and HTTP status.",
      labels: ["verb", "resource", "code"])
    let counting = KubeClient(
      config: client.config, transport: ObservingTransport { requests.inc([$0.verb, $0.resource, String($0.status)]) })
    var logger = Logger(label: "botrt-controller-test") { LineLogHandler(label: $0, format: .text) }
    logger.logLevel = .warning
    let app = try await BotRTController.make(
      client: counting,
      options: ControllerRunOptions(
        backupNamespace: "\(ns)-backup", engineImage: "botrt/botrt-engine:test", workers: 2, metricsAddress: nil,
        watchNamespace: ns, registry: registry),
      logger: logger, handleSignals: false)
    return (app, registry, Task { _ = try? await app.run() })
  }

  /// Runs `body` with a counting controller (`countingController`) of `ns`, stopped afterwards, also when `body` throws.
  func withCountingController(
    _ ns: String, _ body: (BotRTController, MetricsRegistry) async throws -> Void
  ) async throws {
    let (app, registry, task) = try await countingController(ns)
    do {
      try await body(app, registry)
    } catch {
      app.stop()
      await task.value
      throw error
    }
    app.stop()
    await task.value
  }

  /// The requests counted, as "verb resource" → count (successful or not).
  func counted(_ registry: MetricsRegistry) -> [String: Int] {
    var out: [String: Int] = [:]
    for verb in ["get", "list", "patch", "create", "update", "delete"] {
      for resource in [
        "backuppolicies", "backuppolicies/status", "cronjobs", "jobs", "pods", "networkpolicies", "secrets",
        "serviceaccounts", "roles", "rolebindings", "namespaces",
      ] {
        var n = 0
        for code in ["200", "201", "404", "409"] {
          n += Int(registry.value("botrt_kube_requests_total", labels: [verb, resource, code]) ?? 0)
        }
        if n > 0 { out["\(verb) \(resource)"] = n }
      }
    }
    return out
  }

  /// Issue 18: a restarted controller reads the policy's children from its caches and writes nothing to those that
  /// are already as it wants them (the applied-hash annotation, AppliedChildren); the reconcile lists nothing live.
  @Test func aRestartedControllerWritesNothingToUnchangedChildren() async throws {
    try await withNamespace("bp-restart") { ns in
      try await createSecrets(ns)
      let first = try await countingController(ns)
      do {
        _ = try await client.create(policy(ns))
        try await eventually("Ready=True") { try await condition(ns, "orders-db", "Ready")?.status == .true }
        // Every child carries the hash of the body applied.
        let stored = try await getPolicy(ns, "orders-db")
        let expected = try await expectedChildren(stored, settings: first.app.settings)
        for c in expected where c.resource != ChildResources.globalNetworkPolicies {
          let got = try await client.get(c.resource, namespace: c.namespace, name: c.name, as: JSONValue.self)
          #expect(
            got[path: "metadata", "annotations", AppliedChildren.annotation]?.stringValue
              == AppliedChildren.hash(c.body), "\(c.displayName)")
        }
      } catch {
        first.app.stop()
        await first.task.value
        throw error
      }
      first.app.stop()
      await first.task.value

      let second = try await countingController(ns)
      do {
        let reconciled = { second.registry.value("botrt_reconcile_total", labels: ["backuppolicy", "success"]) ?? 0 }
        try await eventually("the restarted controller to reconcile the policy") {
          reconciled() + (second.registry.value("botrt_reconcile_total", labels: ["backuppolicy", "requeue"]) ?? 0)
            >= 1
        }
        // Long enough for a second reconcile (a requeue or a cache echo) to happen.
        try await Task.sleep(for: .seconds(3))
        let requests = counted(second.registry)
        let writes = requests.filter {
          ["patch", "create", "update", "delete"].contains($0.key.split(separator: " ")[0])
        }
        #expect(writes.isEmpty, "writes after a restart: \(writes)")
        // Reads: the policy itself (the reconcile reads it live) and its referenced Secrets' data; lists only the
        // informers' first lists (one per collection).
        let informers = Dictionary(grouping: second.app.informers.keys, by: { $0.resource.plural }).mapValues(\.count)
        for (key, n) in requests where key.hasPrefix("list ") {
          let resource = String(key.dropFirst("list ".count))
          #expect(
            n <= informers[resource, default: 0], "\(key): \(n) lists, \(informers[resource, default: 0]) informers")
        }
        let gets = requests.filter {
          $0.key.hasPrefix("get ") && $0.key != "get backuppolicies" && $0.key != "get secrets"
        }
        #expect(gets.isEmpty, "reads of children: \(gets)")
      } catch {
        second.app.stop()
        await second.task.value
        throw error
      }
      second.app.stop()
      await second.task.value
    }
  }
}

extension BackupPolicyControllerTests {
  /// Issue 18: Kubernetes 1.20's token controller adds a token Secret to every new ServiceAccount, which moves its
  /// resourceVersion; the controller applied each policy's ServiceAccount a second time at its next reconcile (and
  /// all of them after a watch relist). Now the ServiceAccount is applied once.
  @Test func aNewServiceAccountIsAppliedOnceThoughTheTokenControllerAddsItsSecret() async throws {
    try await withNamespace("bp-sa-once") { ns in
      try await createSecrets(ns)
      try await withCountingController(ns) { _, registry in
        _ = try await client.create(policy(ns))
        try await eventually("Ready=True") { try await condition(ns, "orders-db", "Ready")?.status == .true }
        let account = ChildNames(namespace: ns, name: "orders-db").serviceAccount
        try await eventually("the token controller to add the ServiceAccount's token Secret") {
          let sa = try await client.get(
            ChildResources.serviceAccounts, namespace: "\(ns)-backup", name: account, as: JSONValue.self)
          return !(sa["secrets"]?.arrayValue ?? []).isEmpty
        }
        let reconciled = {
          (registry.value("botrt_reconcile_total", labels: ["backuppolicy", "success"]) ?? 0)
            + (registry.value("botrt_reconcile_total", labels: ["backuppolicy", "requeue"]) ?? 0)
        }
        let before = reconciled()
        // Another reconcile after the token controller's write: a label on the policy.
        _ = try await client.patch(
          BackupPolicy.self, namespace: ns, name: "orders-db", .merge(["metadata": ["labels": ["poke": "1"]]]))
        try await eventually("another reconcile") { reconciled() > before }
        let requests = counted(registry)
        #expect(requests["patch serviceaccounts"] == 1, "\(requests)")
      }
    }
  }
}

extension BackupPolicyControllerTests {
  /// Issue 18: a restarted controller starts each reconcile from the cached policy (it wrote nothing to it since it
  /// started, OwnWrites.readsCache), and reads the Secrets the policies share once per resourceVersion its
  /// metadata cache shows (SourceSecrets), not once per policy.
  @Test func aRestartedControllerReadsNoPolicyAndSharedSecretsOnce() async throws {
    try await withNamespace("bp-restart-reads") { ns in
      try await createSecrets(ns)
      let names = (1...5).map { "orders-\($0)" }
      try await withCountingController(ns) { _, _ in
        for name in names { _ = try await client.create(policy(ns, name: name)) }
        for name in names {
          try await eventually("\(name) Ready=True") { try await condition(ns, name, "Ready")?.status == .true }
        }
      }
      try await withCountingController(ns) { _, registry in
        let reconciled = {
          (registry.value("botrt_reconcile_total", labels: ["backuppolicy", "success"]) ?? 0)
            + (registry.value("botrt_reconcile_total", labels: ["backuppolicy", "requeue"]) ?? 0)
        }
        try await eventually("the restarted controller to reconcile every policy") { reconciled() >= 5 }
        try await Task.sleep(for: .seconds(2))
        let requests = counted(registry)
        // Before: one GET of each policy and one of each of its 3 Secrets per policy (5 + 15).
        #expect(requests["get backuppolicies"] == nil, "\(requests)")
        // The 3 Secrets, each read at most once per worker that met it before any read returned.
        #expect(requests["get secrets", default: 0] <= 6, "\(requests)")
        let writes = requests.filter {
          ["patch", "create", "update", "delete"].contains($0.key.split(separator: " ")[0])
        }
        #expect(writes.isEmpty, "writes after a restart: \(writes)")
      }
    }
  }
}
