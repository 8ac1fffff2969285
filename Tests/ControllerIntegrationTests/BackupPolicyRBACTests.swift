import ControllerApp
import DRAPI
import Foundation
import KubeClient
import KubeCore
import Logging
import Reconcilers
import Testing

extension BackupPolicyControllerTests {
  /// Applies manifests/namespace.yaml and manifests/rbac/ as committed, then returns a client that authenticates as
  /// the botrt-controller ServiceAccount (its legacy token Secret, which the 1.20 token controller creates).
  func clientWithManifestRBAC() async throws -> KubeClient {
    let root = TestCluster.repoRoot + "/manifests"
    var files = ["\(root)/namespace.yaml"]
    files += try FileManager.default.contentsOfDirectory(atPath: "\(root)/rbac").filter { $0.hasSuffix(".yaml") }
      .sorted().map { "\(root)/rbac/\($0)" }
    for file in files {
      let text = try String(contentsOfFile: file, encoding: .utf8)
      for doc in try YAML.parseDocuments(text, file: file) where doc != .null {
        let kind = doc["kind"]?.stringValue ?? ""
        let name = doc[path: "metadata", "name"]?.stringValue ?? ""
        let namespace = doc[path: "metadata", "namespace"]?.stringValue
        let resource: ResourceDescriptor
        switch kind {
        case "Namespace": resource = .namespaces
        case "ServiceAccount": resource = .serviceAccounts
        case "ClusterRole":
          resource = ResourceDescriptor(
            group: "rbac.authorization.k8s.io", version: "v1", plural: "clusterroles", kind: kind, namespaced: false)
        case "ClusterRoleBinding":
          resource = ResourceDescriptor(
            group: "rbac.authorization.k8s.io", version: "v1", plural: "clusterrolebindings", kind: kind,
            namespaced: false)
        case "Role": resource = ChildResources.roles
        case "RoleBinding": resource = ChildResources.roleBindings
        default: throw ControllerTestError(description: "\(file): unexpected kind \(kind) in the RBAC manifests")
        }
        _ = try await client.apply(
          resource, namespace: namespace, name: name, doc, fieldManager: "botrt-tests", force: true)
      }
    }
    var tokenSecret: String? = nil
    try await eventually("the token Secret of ServiceAccount botrt-system/botrt-controller") {
      let sa = try await client.get(
        ResourceDescriptor.serviceAccounts, namespace: "botrt-system", name: "botrt-controller", as: JSONValue.self)
      tokenSecret = sa["secrets"]?.arrayValue?.compactMap { $0["name"]?.stringValue }.first { $0.contains("-token-") }
      return tokenSecret != nil
    }
    let secret = try await client.get(Secret.self, namespace: "botrt-system", name: tokenSecret ?? "")
    guard let data = secret.data?["token"], let token = String(data: data, encoding: .utf8), !token.isEmpty else {
      throw ControllerTestError(description: "Secret botrt-system/\(tokenSecret ?? "") has no token")
    }
    var config = client.config
    config.auth = .token(token)
    config.userDescription = "ServiceAccount botrt-system/botrt-controller (manifests/rbac)"
    return KubeClient(config: config)
  }

  /// Every metric an alert of manifests/monitoring/prometheusrule.yaml reads is one the controller registers (an
  /// alert on a metric nobody exports never fires: RTOViolationRisk once read a target no one exported).
  @Test func everyMetricTheAlertsReadIsExported() async throws {
    let path = TestCluster.repoRoot + "/manifests/monitoring/prometheusrule.yaml"
    let rules = try String(contentsOfFile: path, encoding: .utf8)
    let re = try NSRegularExpression(pattern: "botrt_[a-z_]+")
    let names = Set(
      re.matches(in: rules, range: NSRange(rules.startIndex..., in: rules)).compactMap {
        Range($0.range, in: rules).map { String(rules[$0]) }
      })
    #expect(names.count >= 10)
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
      #expect(exported.contains("# TYPE \(name) "), "\(name) is read by an alert but not registered")
    }
  }

  @Test func controllerNeedsNoMoreThanTheManifestsRBAC() async throws {
    let limited = try await clientWithManifestRBAC()
    try await withNamespace("bp-rbac") { ns in
      try await createSecrets(ns)
      var logger = Logger(label: "botrt-controller-rbac-test") { LineLogHandler(label: $0, format: .text) }
      logger.logLevel = .warning
      let app = try await BotRTController.make(
        client: limited,
        options: ControllerRunOptions(
          backupNamespace: "\(ns)-backup", engineImage: "botrt/botrt-engine:test", metricsAddress: nil,
          leaderElect: true, leaseNamespace: "botrt-system", watchNamespace: ns),
        logger: logger, handleSignals: false)
      let task = Task { try await app.run() }
      do {
        _ = try await client.create(policy(ns))
        try await eventually("Ready=True with the manifests' rights only", timeout: .seconds(60)) {
          try await condition(ns, "orders-db", "Ready")?.status == .true
        }
        var p = try await getPolicy(ns, "orders-db")
        p.spec.trigger = "rbac-run"
        _ = try await client.update(p)
        try await eventually("the on-demand run to be handled") {
          try await getPolicy(ns, "orders-db").status?.lastHandledTrigger == "trigger:rbac-run"
        }
        try await eventually("Events written by the controller") {
          let events = try await client.list(
            Event.self, namespace: ns, options: ListOptions(fieldSelector: "involvedObject.name=orders-db"))
          return events.items.contains { $0.reason == "OnDemandBackup" }
        }
        try await client.delete(BackupPolicy.self, namespace: ns, name: "orders-db")
        try await waitGone(ns, "orders-db")
        let labels = [ns, "orders-db", "standard"]
        #expect((app.registry.value("botrt_backup_policy_reconcile_errors_total", labels: labels) ?? 0) == 0)
        #expect((app.registry.value("botrt_backup_policy_reconciles_total", labels: labels) ?? 0) > 0)
        #expect((app.registry.value("botrt_events_dropped_total") ?? 0) == 0)
        // The deleted policy's gauges are gone (a frozen last-success time would raise BackupRPOViolation).
        #expect(app.registry.value("botrt_rpo_target_seconds", labels: labels) == nil)
        #expect(!app.registry.render().contains("botrt_rpo_target_seconds{namespace=\"\(ns)\""))
      } catch {
        app.stop()
        _ = try await task.value
        throw error
      }
      app.stop()
      let outcome = try await task.value
      #expect(outcome == .stopped(signal: nil))
    }
  }
}
