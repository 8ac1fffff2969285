import ControllerApp
import DRAPI
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Reconcilers
import Synchronization
import Testing

/// The environment of the controller integration tests is missing or unusable.
struct ControllerTestError: Error, CustomStringConvertible {
  var description: String
}

enum TestCluster {
  /// A client from `KUBECONFIG`, required: these tests fail (never skip) without the control plane.
  static func client() throws -> KubeClient {
    guard let kc = ProcessInfo.processInfo.environment["KUBECONFIG"], !kc.isEmpty else {
      throw ControllerTestError(
        description: "KUBECONFIG is not set: the controller integration tests need the local control plane. Start it "
          + "with `hack/cluster.sh up` and `source <(hack/cluster.sh env)`, or run hack/test.sh")
    }
    return KubeClient(config: try Kubeconfig.load(paths: Kubeconfig.paths(fromEnvironmentValue: kc)).clientConfig())
  }

  static var repoRoot: String {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
  }

  /// Applies every CRD in crds/ and waits until each is Established and served.
  static func installCRDs(_ client: KubeClient) async throws {
    let dir = repoRoot + "/crds"
    let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") }.sorted()
    guard !files.isEmpty else { throw ControllerTestError(description: "no CRDs in \(dir)") }
    for f in files {
      let text = try String(contentsOfFile: "\(dir)/\(f)", encoding: .utf8)
      for doc in try YAML.parseDocuments(text, file: f) where doc["kind"] == "CustomResourceDefinition" {
        try await applyCRD(client, doc)
      }
    }
    try await eventually("backuppolicies.dr.botrt.io to be served") {
      client.invalidateDiscovery()
      return try await client.isServed(group: DRGroup.group, version: DRGroup.version, resource: "backuppolicies")
    }
  }

  static func applyCRD(_ client: KubeClient, _ doc: JSONValue) async throws {
    let name = doc[path: "metadata", "name"]?.stringValue ?? ""
    _ = try await client.apply(
      .customResourceDefinitions, namespace: nil, name: name, doc, fieldManager: "botrt-tests", force: true)
    try await eventually("CRD \(name) to be Established") {
      let got = try await client.get(.customResourceDefinitions, namespace: nil, name: name, as: JSONValue.self)
      return (got[path: "status", "conditions"]?.arrayValue ?? []).contains {
        $0["type"] == "Established" && $0["status"] == "True"
      }
    }
  }
}

/// Polls `check` every 200 ms until it returns true or `timeout` passes.
func eventually(_ what: String, timeout: Duration = .seconds(45), _ check: () async throws -> Bool) async throws {
  let deadline = ContinuousClock.now + timeout
  var last: Error? = nil
  while ContinuousClock.now < deadline {
    do {
      if try await check() { return }
    } catch {
      last = error
    }
    try await Task.sleep(for: .milliseconds(200))
  }
  throw ControllerTestError(
    description: "timed out after \(timeout) waiting for \(what)" + (last.map { " (last error: \($0))" } ?? ""))
}

/// Whether every field of `desired` is present with the same value in `actual` (the server adds defaults).
func isSubset(_ desired: JSONValue, of actual: JSONValue, at path: String = "") -> String? {
  switch (desired, actual) {
  case (.object(let d), .object(let a)):
    for (k, v) in d {
      guard let av = a[k] else { return "\(path).\(k) is missing" }
      if let diff = isSubset(v, of: av, at: "\(path).\(k)") { return diff }
    }
    return nil
  case (.array(let d), .array(let a)):
    guard d.count == a.count else { return "\(path) has \(a.count) items, want \(d.count)" }
    for (i, (dv, av)) in zip(d, a).enumerated() {
      if let diff = isSubset(dv, of: av, at: "\(path)[\(i)]") { return diff }
    }
    return nil
  case (.int(let d), .double(let a)) where Double(d) == a: return nil
  default:
    return desired == actual ? nil : "\(path) is \(actual), want \(desired)"
  }
}

/// A controller running in this process until `stop()`.
final class RunningController: Sendable {
  let app: BotRTController
  let task: Task<Void, Never>

  /// Runs a controller watching BackupPolicies of `namespace` only, so that other suites' policies are left alone.
  init(
    _ client: KubeClient, namespace: String, backupNamespace: String, now: @escaping @Sendable () -> Date = { Date() },
    metricsAddress: String? = nil, podExecutor: (any PodExecutor)? = nil
  ) async throws {
    var logger = Logger(label: "botrt-controller-test") { LineLogHandler(label: $0, format: .text) }
    logger.logLevel = .warning
    var options = ControllerRunOptions(
      backupNamespace: backupNamespace, engineImage: "botrt/botrt-engine:test", workers: 2,
      metricsAddress: metricsAddress,
      now: now, watchNamespace: namespace)
    options.podExecutor = podExecutor
    app = try await BotRTController.make(client: client, options: options, logger: logger, handleSignals: false)
    let app = self.app
    task = Task {
      do {
        _ = try await app.run()
      } catch {
        Issue.record("controller stopped with \(error)")
      }
    }
  }

  func stop() async {
    app.stop()
    await task.value
  }
}

@Suite(.serialized) struct BackupPolicyControllerTests {
  let client: KubeClient

  init() async throws {
    client = try TestCluster.client()
    try await TestCluster.installCRDs(client)
  }

  func makeNamespace(_ prefix: String) async throws -> String {
    let name = "\(prefix)-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
    _ = try await client.create(Namespace(metadata: ObjectMeta(name: name, labels: ["botrt.io/test": "controller"])))
    return name
  }

  /// Runs `body` in a fresh namespace; afterwards releases leftover policies' finalizers (a failed test may stop its
  /// controller before they are removed) and deletes the namespace and its backup namespace.
  func withNamespace(_ prefix: String, _ body: (String) async throws -> Void) async throws {
    let ns = try await makeNamespace(prefix)
    var failure: Error? = nil
    do {
      try await body(ns)
    } catch {
      failure = error
    }
    for p in try await client.listAll(BackupPolicy.self, namespace: ns).items {
      _ = try await client.patch(
        BackupPolicy.self, namespace: ns, name: p.name, .merge(["metadata": ["finalizers": nil]]))
      do {
        try await client.delete(BackupPolicy.self, namespace: ns, name: p.name)
      } catch let e as KubeError where e.isNotFound {}
    }
    for name in [ns, "\(ns)-backup"] {
      do {
        try await client.delete(Namespace.self, name: name)
      } catch let e as KubeError where e.isNotFound {}
    }
    if let failure { throw failure }
  }

  func waitGone(_ ns: String, _ name: String) async throws {
    try await eventually("BackupPolicy \(ns)/\(name) to be gone") {
      do {
        _ = try await getPolicy(ns, name)
        return false
      } catch let e as KubeError where e.isNotFound {
        return true
      }
    }
  }

  /// Creates a Pod in `ns` once the apiserver admits it: a new namespace's default ServiceAccount and its token come
  /// a moment after the namespace, and until then the apiserver answers 500 (no token yet) or 403 (no
  /// ServiceAccount yet).
  @discardableResult
  func createPod(_ ns: String, _ pod: JSONValue, options: WriteOptions = WriteOptions()) async throws -> JSONValue {
    var created: JSONValue? = nil
    try await eventually("a Pod admitted in \(ns)") {
      do {
        created = try await client.create(ChildResources.pods, namespace: ns, pod, options: options)
        return true
      } catch let e as KubeError where e.code == 500 || e.isForbidden {
        return false
      }
    }
    return created ?? pod
  }

  func createSecrets(_ ns: String, skip: Set<String> = []) async throws {
    let secrets: [String: [String: String]] = [
      "s3-creds": ["AWS_ACCESS_KEY_ID": "test-id", "AWS_SECRET_ACCESS_KEY": "test-secret"],
      "vault-token": ["token": "test-token"], "db-creds": ["password": "test-password"],
    ]
    for (name, data) in secrets where !skip.contains(name) {
      _ = try await client.create(
        Secret(metadata: ObjectMeta(name: name, namespace: ns), data: data.mapValues { Data($0.utf8) }))
    }
  }

  func policy(_ ns: String, name: String = "orders-db", schedule: String = "17 3 * * *") -> BackupPolicy {
    BackupPolicy(
      metadata: ObjectMeta(name: name, namespace: ns),
      spec: BackupPolicySpec(
        tier: .standard, schedule: schedule, dataType: .database,
        source: BackupSource(
          command: ContainerSpec(
            image: "postgres:16", command: ["pg_dump"], args: ["orders"],
            env: [
              EnvVar(
                name: "PGPASSWORD",
                valueFrom: EnvVarSource(secretKeyRef: SecretKeySelector(name: "db-creds", key: "password")))
            ])),
        repository: RepositorySpec(
          s3: S3Repository(
            bucket: "orders", prefix: "db", region: "us-east-1", endpoint: "http://10.1.2.3:9000",
            credentialsSecretRef: SecretNameReference(name: "s3-creds"))),
        encryption: EncryptionSpec(
          kms: KMSSpec(
            vaultTransit: VaultTransitKMS(
              address: "https://vault.vault.svc:8200", key: "backup-database-key",
              authSecretRef: SecretReference(name: "vault-token"))))))
  }

  func getPolicy(_ ns: String, _ name: String) async throws -> BackupPolicy {
    try await client.get(BackupPolicy.self, namespace: ns, name: name)
  }

  func condition(_ ns: String, _ name: String, _ type: String) async throws -> Condition? {
    try await getPolicy(ns, name).status?.conditions?.condition(type)
  }

  /// The children the builder wants for the policy as stored, with the Secrets as stored.
  func expectedChildren(_ p: BackupPolicy, settings: ControllerSettings) async throws -> [DesiredChild] {
    var secrets: [String: Secret] = [:]
    for name in ["s3-creds", "vault-token", "db-creds"] {
      secrets[name] = try await client.get(Secret.self, namespace: p.metadata.namespace, name: name)
    }
    let eff = try EffectivePolicy(spec: p.spec, now: Date())
    return try BackupPolicyChildren.build(ChildInputs(policy: p, effective: eff, settings: settings, secrets: secrets))
  }

  func exists(_ c: DesiredChild) async throws -> JSONValue? {
    do {
      return try await client.get(c.resource, namespace: c.namespace, name: c.name, as: JSONValue.self)
    } catch let e as KubeError where e.isNotFound {
      return nil
    }
  }

  @Test func childrenAreCreatedUpdatedAndRemoved() async throws {
    try await withNamespace("bp-life") { ns in
      let backupNS = "\(ns)-backup"
      try await createSecrets(ns)
      let controller = try await RunningController(client, namespace: ns, backupNamespace: backupNS)
      var restarted: RunningController? = nil
      do {
        _ = try await client.create(policy(ns))
        try await eventually("Ready=True") { try await condition(ns, "orders-db", "Ready")?.status == .true }
        let stored = try await getPolicy(ns, "orders-db")
        #expect(stored.metadata.finalizers == [BackupPolicyReconciler.finalizer])
        #expect(stored.status?.observedGeneration == stored.metadata.generation)
        #expect(stored.status?.effectiveSchedule == "17 3 * * *")
        #expect(stored.status?.rpoTargetSeconds == 14_400)
        #expect(stored.status?.rpoSource == "tier:standard")
        #expect(stored.status?.nextScheduledRun != nil)
        #expect(stored.status?.backupNamespace == backupNS)
        #expect(stored.status?.conditions?.condition("ScheduleActive")?.status == .true)
        #expect(stored.status?.conditions?.condition("RPOMet")?.reason == "AwaitingFirstBackup")

        // Exactly the expected children, read back.
        let settings = controller.app.settings
        let expected = try await expectedChildren(stored, settings: settings)
        // (The storage egress and the RoleBinding exist only during a run: SecurityMonitoringTests.)
        #expect(expected.count == (settings.calicoServed ? 12 : 11))
        for c in expected {
          let got = try #require(try await exists(c), "\(c.displayName) is missing")
          if let diff = isSubset(c.body, of: got) { Issue.record("\(c.displayName): \(diff)") }
          let managers = (got[path: "metadata", "managedFields"]?.arrayValue ?? []).compactMap {
            $0["manager"]?.stringValue
          }
          #expect(managers.contains(BackupPolicyReconciler.fieldManager), "\(c.displayName) managers: \(managers)")
        }
        let selector = ChildLabels.selector(namespace: ns, name: "orders-db")
        let cronResource = ChildResources.cronJobs(apiVersion: settings.cronJobAPIVersion)
        let cronJobs = try await client.list(
          cronResource, namespace: backupNS, options: ListOptions(labelSelector: selector), as: JSONValue.self)
        #expect(cronJobs.items.count == 2)
        let copies = try await client.list(
          ChildResources.secrets, namespace: backupNS, options: ListOptions(labelSelector: selector), as: JSONValue.self
        )
        #expect(copies.items.count == 3)

        // A change of the policy updates the CronJob; status follows the new generation.
        var changed = try await getPolicy(ns, "orders-db")
        changed.spec.schedule = "42 4 * * *"
        _ = try await client.update(changed)
        let names = ChildNames(namespace: ns, name: "orders-db")
        try await eventually("the CronJob's schedule to follow the policy") {
          let cj = try await client.get(
            cronResource, namespace: backupNS, name: names.backupCronJob, as: JSONValue.self)
          return cj[path: "spec", "schedule"] == "42 4 * * *"
        }
        try await eventually("status to observe the new generation") {
          let p = try await getPolicy(ns, "orders-db")
          return p.status?.observedGeneration == p.metadata.generation && p.status?.effectiveSchedule == "42 4 * * *"
        }

        // An on-demand run: one Job per trigger value, recorded in status so that it runs once.
        var triggered = try await getPolicy(ns, "orders-db")
        triggered.spec.trigger = "run-1"
        _ = try await client.update(triggered)
        try await eventually("the on-demand Job and status.lastHandledTrigger") {
          try await getPolicy(ns, "orders-db").status?.lastHandledTrigger == "trigger:run-1"
        }
        let runJob = try await client.get(
          ChildResources.jobs, namespace: backupNS, name: names.runJob(token: "trigger:run-1"), as: JSONValue.self)
        #expect(runJob[path: "metadata", "annotations", ChildLabels.runToken] == "trigger:run-1")

        // Drift: a deleted NetworkPolicy comes back (the run's storage egress: the on-demand Job is still active).
        // The grant follows the Job through its own controller (BackupAccess), so it may come after the status write.
        func storageEgressExists() async throws -> Bool {
          do {
            _ = try await client.get(
              ChildResources.networkPolicies, namespace: backupNS, name: names.storageEgress, as: JSONValue.self)
            return true
          } catch let e as KubeError where e.isNotFound {
            return false
          }
        }
        try await eventually("the run's storage egress") { try await storageEgressExists() }
        try await client.delete(ChildResources.networkPolicies, namespace: backupNS, name: names.storageEgress)
        try await eventually("the deleted NetworkPolicy to be restored") { try await storageEgressExists() }

        // A new controller instance (a restart) creates no duplicates and no second on-demand Job.
        await controller.stop()
        restarted = try await RunningController(client, namespace: ns, backupNamespace: backupNS)
        try await Task.sleep(for: .seconds(3))
        let afterRestart = try await client.list(
          cronResource, namespace: backupNS, options: ListOptions(labelSelector: selector), as: JSONValue.self)
        #expect(afterRestart.items.count == 2)
        let jobs = try await client.list(
          ChildResources.jobs, namespace: backupNS, options: ListOptions(labelSelector: selector), as: JSONValue.self)
        #expect(jobs.items.count == 1)

        // Delete: children removed, the finalizer released.
        try await client.delete(BackupPolicy.self, namespace: ns, name: "orders-db")
        try await waitGone(ns, "orders-db")
        for c in expected where !c.shared {
          #expect(try await exists(c) == nil, "\(c.displayName) is still there")
        }
        let leftJobs = try await client.list(
          ChildResources.jobs, namespace: backupNS, options: ListOptions(labelSelector: selector), as: JSONValue.self)
        #expect(leftJobs.items.isEmpty)
      } catch {
        await controller.stop()
        await restarted?.stop()
        throw error
      }
      await controller.stop()
      await restarted?.stop()
    }
  }

  @Test func missingSecretMakesReadyFalse() async throws {
    try await withNamespace("bp-nosecret") { ns in
      try await createSecrets(ns, skip: ["vault-token"])
      let controller = try await RunningController(client, namespace: ns, backupNamespace: "\(ns)-backup")
      do {
        _ = try await client.create(policy(ns))
        try await eventually("Ready=False") { try await condition(ns, "orders-db", "Ready")?.status == .false }
        let ready = try #require(try await condition(ns, "orders-db", "Ready"))
        #expect(ready.reason == "SecretNotFound")
        #expect(ready.message.contains("spec.encryption.kms.vaultTransit.authSecretRef"))
        #expect(ready.message.contains("vault-token"))
        #expect(try await condition(ns, "orders-db", "ScheduleActive")?.status == .false)
        // Creating the Secret fixes it at once: referenced Secrets are watched (metadata only); the retry without a
        // change is minutes away.
        #expect(BackupPolicyReconciler.problemRetrySeconds >= 60)
        _ = try await client.create(
          Secret(metadata: ObjectMeta(name: "vault-token", namespace: ns), data: ["token": Data("t".utf8)]))
        try await eventually("Ready=True after the Secret appears", timeout: .seconds(10)) {
          try await condition(ns, "orders-db", "Ready")?.status == .true
        }
        try await client.delete(BackupPolicy.self, namespace: ns, name: "orders-db")
        try await waitGone(ns, "orders-db")
      } catch {
        await controller.stop()
        throw error
      }
      await controller.stop()
    }
  }

  /// A policy switched to RestoreOnly (a DR cluster's copy) loses its CronJobs and Secret copies, says so in status,
  /// starts no on-demand run, and on delete runs no repository deletion despite deleteBackupsOnDelete.
  @Test func aRestoreOnlyPolicyWritesNothing() async throws {
    try await withNamespace("bp-ro") { ns in
      let backupNS = "\(ns)-backup"
      try await createSecrets(ns)
      let controller = try await RunningController(client, namespace: ns, backupNamespace: backupNS)
      do {
        var p = policy(ns)
        p.spec.deleteBackupsOnDelete = true
        _ = try await client.create(p)
        let settings = controller.app.settings
        let selector = ChildLabels.selector(namespace: ns, name: "orders-db")
        let cronResource = ChildResources.cronJobs(apiVersion: settings.cronJobAPIVersion)
        func count(_ r: ResourceDescriptor) async throws -> Int {
          try await client.list(
            r, namespace: backupNS, options: ListOptions(labelSelector: selector), as: JSONValue.self
          )
          .items.count
        }
        try await eventually("the CronJobs of Backup mode") { try await count(cronResource) == 2 }
        var ro = try await getPolicy(ns, "orders-db")
        ro.spec.mode = .restoreOnly
        ro.spec.trigger = "dr-1"
        _ = try await client.update(ro)
        try await eventually("Ready=True RestoreOnly") {
          try await condition(ns, "orders-db", "Ready")?.reason == "RestoreOnly"
        }
        try await eventually("no CronJob, Job or Secret copy") {
          let crons = try await count(cronResource)
          let jobs = try await count(ChildResources.jobs)
          let copies = try await count(ChildResources.secrets)
          return crons + jobs + copies == 0
        }
        #expect(try await condition(ns, "orders-db", "ScheduleActive")?.reason == "RestoreOnly")
        let rpo = try #require(try await condition(ns, "orders-db", "RPOMet"))
        #expect(rpo.status == .unknown && rpo.reason == "RestoreOnly")
        #expect(try await condition(ns, "orders-db", "KeyRotationDue")?.reason == "RestoreOnly")
        let stored = try await getPolicy(ns, "orders-db")
        #expect(stored.status?.nextScheduledRun == nil && stored.status?.lastHandledTrigger == nil)
        try await client.delete(BackupPolicy.self, namespace: ns, name: "orders-db")
        try await waitGone(ns, "orders-db")
        #expect(try await count(ChildResources.jobs) == 0, "no repository deletion Job")
        let events = try await client.list(
          Event.self, namespace: ns, options: ListOptions(fieldSelector: "involvedObject.name=orders-db"))
        #expect(events.items.contains { $0.reason == "BackupsKept" })
        #expect(!events.items.contains { $0.reason == "DeletingBackups" })
      } catch {
        await controller.stop()
        throw error
      }
      await controller.stop()
    }
  }

  @Test func rpoMetTurnsFalseUnderAnInjectedClock() async throws {
    try await withNamespace("bp-rpo") { ns in
      try await createSecrets(ns)
      let offset = Mutex<TimeInterval>(0)
      let controller = try await RunningController(client, namespace: ns, backupNamespace: "\(ns)-backup") {
        Date().addingTimeInterval(offset.withLock { $0 })
      }
      do {
        _ = try await client.create(policy(ns))
        try await eventually("RPOMet=Unknown while the first backup is awaited") {
          try await condition(ns, "orders-db", "RPOMet")?.reason == "AwaitingFirstBackup"
        }
        // Five hours later (the standard tier's RPO is 4 h), without any backup; a change brings a reconcile.
        offset.withLock { $0 = 5 * 3600 }
        var p = try await getPolicy(ns, "orders-db")
        p.metadata.annotations = ["test/poke": "1"]
        _ = try await client.update(p)
        try await eventually("RPOMet=False") { try await condition(ns, "orders-db", "RPOMet")?.status == .false }
        let c = try #require(try await condition(ns, "orders-db", "RPOMet"))
        #expect(c.reason == "NoSuccessfulBackup")
        #expect(c.message.contains("4h"))
        try await eventually("an RPOViolated Event") {
          let events = try await client.list(
            Event.self, namespace: ns, options: ListOptions(fieldSelector: "involvedObject.name=orders-db"))
          return events.items.contains { $0.reason == "RPOViolated" && $0.type == "Warning" }
        }
        try await client.delete(BackupPolicy.self, namespace: ns, name: "orders-db")
        try await waitGone(ns, "orders-db")
      } catch {
        await controller.stop()
        throw error
      }
      await controller.stop()
    }
  }

  @Test func calicoPolicyOnlyWhenItsCRDIsInstalled() async throws {
    let gnp = ChildResources.globalNetworkPolicies
    let crdName = "globalnetworkpolicies.crd.projectcalico.org"
    func calicoServed() async throws -> Bool {
      client.invalidateDiscovery()
      return try await client.isServed(group: gnp.group, version: gnp.version, resource: gnp.plural)
    }
    func removeFixture() async throws {
      if try await calicoServed() {
        try await client.delete(.customResourceDefinitions, namespace: nil, name: crdName)
        try await eventually("globalnetworkpolicies to be gone") { try await !calicoServed() }
      }
    }
    // Start from a cluster without Calico (an earlier run may have left the fixture).
    try await removeFixture()
    do {
      try await withNamespace("bp-calico") { ns in
        try await createSecrets(ns)
        // Without the CRD: discovery says no, no Calico object is attempted, and the policy is still Ready.
        let controller = try await RunningController(client, namespace: ns, backupNamespace: "\(ns)-backup")
        #expect(controller.app.settings.calicoServed == false)
        do {
          _ = try await client.create(policy(ns, name: "a"))
          try await eventually("Ready=True") { try await condition(ns, "a", "Ready")?.status == .true }
        } catch {
          await controller.stop()
          throw error
        }
        // A minimal GlobalNetworkPolicy CRD installed later: the running controller sees it (it watches that CRD)
        // and creates the Calico policy without a restart.
        let crd = try YAML.parse(
          """
          apiVersion: apiextensions.k8s.io/v1
          kind: CustomResourceDefinition
          metadata: {name: \(crdName)}
          spec:
            group: crd.projectcalico.org
            scope: Cluster
            names: {plural: globalnetworkpolicies, singular: globalnetworkpolicy, kind: GlobalNetworkPolicy, listKind: GlobalNetworkPolicyList}
            versions:
            - name: v1
              served: true
              storage: true
              schema:
                openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
          """, file: "calico-gnp-crd.yaml")
        try await TestCluster.applyCRD(client, crd)
        try await eventually("globalnetworkpolicies to be served") { try await calicoServed() }
        do {
          try await eventually("the running controller to discover Calico") { controller.app.settings.calicoServed }
          try await eventually("the Calico policy") {
            do {
              let got = try await client.get(
                gnp, namespace: nil, name: SharedChildNames.calicoPolicy, as: JSONValue.self)
              return isSubset(BackupPolicyChildren.calicoPolicy(controller.app.settings).body, of: got) == nil
            } catch let e as KubeError where e.isNotFound {
              return false
            }
          }
          // Another client opens the Calico policy to everyone: the isolation guard restores it and counts it.
          let opened: JSONValue = [
            "apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkPolicy",
            "metadata": ["name": .string(SharedChildNames.calicoPolicy)],
            "spec": ["order": 1, "selector": "all()", "types": ["Ingress"], "ingress": [["action": "Allow"]]],
          ]
          _ = try await client.apply(
            gnp, namespace: nil, name: SharedChildNames.calicoPolicy, opened, fieldManager: "calicoctl", force: true)
          try await eventually("the Calico policy to be restored") {
            let got = try await client.get(gnp, namespace: nil, name: SharedChildNames.calicoPolicy, as: JSONValue.self)
            return got["spec"] == BackupPolicyChildren.calicoPolicy(controller.app.settings).body["spec"]
          }
          // The guard counts a drift once its restore is written, so the restored object can be read a moment
          // before the counter moves.
          try await eventually("the drift to be counted") {
            (controller.app.registry.value(
              "botrt_isolation_drift_total",
              labels: ["", "GlobalNetworkPolicy", SharedChildNames.calicoPolicy, "modified"]) ?? 0) >= 1
          }
          // Deleting the last policy this controller sees removes it. (The controllers of tests running alongside
          // apply it too while Calico is served: one of them may create it again, under a new uid.)
          let before = try await client.get(
            gnp, namespace: nil, name: SharedChildNames.calicoPolicy, as: JSONValue.self)[path: "metadata", "uid"]
          try await client.delete(BackupPolicy.self, namespace: ns, name: "a")
          try await waitGone(ns, "a")
          try await eventually("the Calico policy to be removed with the last BackupPolicy") {
            do {
              let now = try await client.get(
                gnp, namespace: nil, name: SharedChildNames.calicoPolicy, as: JSONValue.self)
              return now[path: "metadata", "uid"] != before
            } catch let e as KubeError where e.isNotFound {
              return true
            }
          }
        } catch {
          await controller.stop()
          throw error
        }
        await controller.stop()
      }
    } catch {
      try await removeFixture()
      throw error
    }
    try await removeFixture()
  }
}
