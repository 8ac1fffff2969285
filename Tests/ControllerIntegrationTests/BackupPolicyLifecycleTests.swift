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

extension BackupPolicyControllerTests {
  /// The Jobs of `component` of policy `ns/policy`, in its backup namespace `ns-backup`.
  func jobs(_ ns: String, policy: String, component: String) async throws -> [JSONValue] {
    let selector = ChildLabels.selector(namespace: ns, name: policy) + ",\(ChildLabels.component)=\(component)"
    return try await client.list(
      ChildResources.jobs, namespace: "\(ns)-backup", options: ListOptions(labelSelector: selector),
      as: JSONValue.self
    ).items
  }

  @Test func deletingAPolicyDeletesStoredBackupsOnlyWhenItSaysSo() async throws {
    try await withNamespace("bp-delete") { ns in
      let backupNS = "\(ns)-backup"
      try await createSecrets(ns)
      let controller = try await RunningController(client, namespace: ns, backupNamespace: backupNS)
      do {
        _ = try await client.create(policy(ns, name: "keep"))
        var wipe = policy(ns, name: "wipe")
        wipe.spec.deleteBackupsOnDelete = true
        _ = try await client.create(wipe)
        for n in ["keep", "wipe"] {
          try await eventually("\(n) Ready=True") { try await condition(ns, n, "Ready")?.status == .true }
        }

        // Without the flag: nothing stored is touched, no deletion Job, the policy goes at once.
        try await client.delete(BackupPolicy.self, namespace: ns, name: "keep")
        try await waitGone(ns, "keep")
        #expect(try await jobs(ns, policy: "keep", component: "delete-repository").isEmpty)
        try await eventually("a BackupsKept Event") {
          try await events(ns, "keep").contains { $0.reason == "BackupsKept" && $0.type == "Normal" }
        }

        // With the flag: the CronJobs go first, a deletion Job runs, and the finalizer waits for it.
        try await client.delete(BackupPolicy.self, namespace: ns, name: "wipe")
        let names = ChildNames(namespace: ns, name: "wipe")
        try await eventually("the deletion Job") {
          do {
            _ = try await client.get(
              ChildResources.jobs, namespace: backupNS, name: names.deleteRepositoryJob, as: JSONValue.self)
            return true
          } catch let e as KubeError where e.isNotFound {
            return false
          }
        }
        let job = try await client.get(
          ChildResources.jobs, namespace: backupNS, name: names.deleteRepositoryJob, as: JSONValue.self)
        let c = try #require(job[path: "spec", "template", "spec", "containers"]?.arrayValue?.first)
        let args = (c["args"]?.arrayValue ?? []).compactMap(\.stringValue)
        #expect(args.first == "delete-repository")
        #expect(args.contains("--confirm"))
        #expect(args.contains("s3://orders/db"))
        let cron = ChildResources.cronJobs(apiVersion: controller.app.settings.cronJobAPIVersion)
        let crons = try await client.list(
          cron, namespace: backupNS,
          options: ListOptions(labelSelector: ChildLabels.selector(namespace: ns, name: "wipe")),
          as: JSONValue.self)
        #expect(crons.items.isEmpty, "no backup may start while the repository is deleted")
        try await Task.sleep(for: .seconds(2))
        #expect(try await getPolicy(ns, "wipe").metadata.isDeleting, "the finalizer waits for the Job")

        // The engine reports that Object Lock kept some objects: said so, never called deleted.
        try await eventually("a Pod of the deletion Job") {
          try await !client.list(
            ChildResources.pods, namespace: backupNS,
            options: ListOptions(labelSelector: "job-name=\(names.deleteRepositoryJob)"), as: JSONValue.self
          ).items.isEmpty
        }
        let result =
          #"{"command":"delete-repository","ok":true,"exitCode":0,"objectsDeleted":9,"objectsRetained":3,"#
          + #""warnings":["retained by Object Lock, not deleted: data/ab/abcd: locked"],"errors":[]}"#
        try await finishPods(
          ns: backupNS, job: names.deleteRepositoryJob, phase: "Succeeded", exitCode: 0, message: result,
          container: "engine")
        try await waitGone(ns, "wipe")
        let e = try #require(try await events(ns, "wipe").first { $0.reason == "BackupsRetained" })
        #expect(e.type == "Warning")
        #expect(e.message?.contains("3 objects are retained by Object Lock") == true)
        #expect(try await !events(ns, "wipe").contains { $0.reason == "BackupsDeleted" })
        try await eventually("the deletion Job to be cleaned up") {
          try await jobs(ns, policy: "wipe", component: "delete-repository").isEmpty
        }
      } catch {
        await controller.stop()
        throw error
      }
      await controller.stop()
    }
  }

  /// The reconciler decides on the policy as the apiserver has it: a cache that lacks the last status write (the
  /// handled trigger) must not start the on-demand run again.
  @Test func aStaleCacheDoesNotStartARunTwice() async throws {
    try await withNamespace("bp-stale") { ns in
      let backupNS = "\(ns)-backup"
      try await createSecrets(ns)
      let controller = try await RunningController(client, namespace: ns, backupNamespace: backupNS)
      let names = ChildNames(namespace: ns, name: "orders-db")
      let runJob = names.runJob(token: "trigger:once")
      var stale: BackupPolicy? = nil
      do {
        var p = policy(ns)
        p.spec.trigger = "once"
        _ = try await client.create(p)
        try await eventually("the finalizer") {
          try await getPolicy(ns, "orders-db").metadata.hasFinalizer(BackupPolicyReconciler.finalizer)
        }
        // The stale copy is the policy as it was before its status recorded the run (the field cleared below).
        try await eventually("the run to be handled") {
          let p = try await getPolicy(ns, "orders-db")
          stale = p
          return p.status?.lastHandledTrigger == "trigger:once"
        }
      } catch {
        await controller.stop()
        throw error
      }
      let settings = controller.app.settings
      await controller.stop()
      // The run finished and its Job was removed (a TTL, or a person).
      try await client.delete(
        ChildResources.jobs, namespace: backupNS, name: runJob, options: DeleteOptions(propagationPolicy: .background))
      var old = try #require(stale, "no copy of the policy from before the run was handled")
      old.status?.lastHandledTrigger = nil
      let store = Store<BackupPolicy>()
      store.apply(.restarted([old]))
      let reconciler = BackupPolicyReconciler(
        client: client, settings: settings, recorder: nil, metrics: nil, logger: Logger(label: "test"))
      _ = try await reconciler.reconcile(ObjectKey(old), store)
      do {
        _ = try await client.get(ChildResources.jobs, namespace: backupNS, name: runJob, as: JSONValue.self)
        Issue.record("the on-demand Job was started again from a stale cache")
      } catch let e as KubeError where e.isNotFound {}
      #expect(try await getPolicy(ns, "orders-db").status?.lastHandledTrigger == "trigger:once")
    }
  }

  @Test func statusOnlyChangesDoNotReconcile() {
    var a = policy("ns")
    a.metadata.generation = 1
    var b = a
    b.status = BackupPolicyStatus(observedGeneration: 1, lastSnapshot: "s")
    b.metadata.resourceVersion = "99"
    #expect(!BotRTController.isRelevantUpdate(a, b))
    var c = b
    c.metadata.generation = 2
    #expect(BotRTController.isRelevantUpdate(a, c))
    var d = b
    d.metadata.annotations = [DRGroup.runNowAnnotation: "x"]
    #expect(BotRTController.isRelevantUpdate(a, d))
    var e = b
    e.metadata.deletionTimestamp = Date()
    #expect(BotRTController.isRelevantUpdate(a, e))
    // The echo of the controller's own finalizer is not relevant (the reconcile that added it applied the policy);
    // someone else's finalizer, or ours removed, is.
    var f = b
    f.metadata.finalizers = [BackupPolicyReconciler.finalizer]
    #expect(!BotRTController.isRelevantUpdate(a, f))
    var g = b
    g.metadata.finalizers = ["other.io/x"]
    #expect(BotRTController.isRelevantUpdate(a, g))
    #expect(BotRTController.isRelevantUpdate(f, b))
  }

  @Test func keyRotationRunsWhenDueUnderAnInjectedClock() async throws {
    try await withNamespace("bp-keyrot") { ns in
      let backupNS = "\(ns)-backup"
      try await createSecrets(ns)
      let offset = Mutex<TimeInterval>(0)
      let controller = try await RunningController(client, namespace: ns, backupNamespace: backupNS) {
        Date().addingTimeInterval(offset.withLock { $0 })
      }
      let labels = [ns, "orders-db", "standard"]
      do {
        var p = policy(ns)
        p.spec.encryption.keyRotationDays = 1
        p.spec.trigger = "first"
        _ = try await client.create(p)
        try await eventually("KeyRotationDue=False/NotDue") {
          try await condition(ns, "orders-db", "KeyRotationDue")?.reason == "NotDue"
        }
        // The first backup creates the repository (there is no key to rotate before).
        let firstJob = ChildNames(namespace: ns, name: "orders-db").runJob(token: "trigger:first")
        try await eventually("a Pod of the first backup") {
          try await !client.list(
            ChildResources.pods, namespace: backupNS, options: ListOptions(labelSelector: "job-name=\(firstJob)"),
            as: JSONValue.self
          ).items.isEmpty
        }
        try await finishPods(
          ns: backupNS, job: firstJob, phase: "Succeeded", exitCode: 0,
          message: #"{"command":"backup","ok":true,"exitCode":0,"snapshotId":"s1","errors":[]}"#)
        try await eventually("the first backup in status", timeout: .seconds(60)) {
          try await getPolicy(ns, "orders-db").status?.lastSuccessfulBackup != nil
        }
        let created = try #require(try await getPolicy(ns, "orders-db").metadata.creationTimestamp)
        let next = try #require(try await getPolicy(ns, "orders-db").status?.nextKeyRotation)
        #expect(abs(next.timeIntervalSince(created) - 86_400) < 1)
        #expect(controller.app.registry.value("botrt_key_rotation_limit_seconds", labels: labels) == 86_400)
        #expect((controller.app.registry.value("botrt_key_age_seconds", labels: labels) ?? -1) >= 0)

        // Two days later: due, a rotate-keys Job starts.
        offset.withLock { $0 = 2 * 86_400 }
        var poke = try await getPolicy(ns, "orders-db")
        poke.metadata.annotations = ["test/poke": "1"]
        _ = try await client.update(poke)
        try await eventually("KeyRotationDue=True and a rotation Job") {
          let c = try await condition(ns, "orders-db", "KeyRotationDue")
          let jobs = try await jobs(ns, policy: "orders-db", component: "rotate-keys")
          return c?.status == .true && jobs.count == 1
        }
        #expect((controller.app.registry.value("botrt_key_age_seconds", labels: labels) ?? 0) > 86_400)
        let job = try #require(try await jobs(ns, policy: "orders-db", component: "rotate-keys").first)
        let jobName = try #require(job[path: "metadata", "name"]?.stringValue)
        let args = (job[path: "spec", "template", "spec", "containers"]?.arrayValue?.first?["args"]?.arrayValue ?? [])
          .compactMap(\.stringValue)
        #expect(args.first == "rotate-keys")
        #expect(args.contains("--new-kek"))
        try await eventually("a KeyRotationStarted Event") {
          try await events(ns, "orders-db").contains { $0.reason == "KeyRotationStarted" }
        }

        // Back to the real time (a reconcile says so: not due a day after creation); the Job succeeds: the
        // rotation is recorded and the next one is a day away.
        offset.withLock { $0 = 0 }
        var poke2 = try await getPolicy(ns, "orders-db")
        poke2.metadata.annotations = ["test/poke": "2"]
        _ = try await client.update(poke2)
        try await eventually("a reconcile at the real time") {
          try await condition(ns, "orders-db", "KeyRotationDue")?.reason == "NotDue"
        }
        try await eventually("a Pod of the rotation Job") {
          try await !client.list(
            ChildResources.pods, namespace: backupNS, options: ListOptions(labelSelector: "job-name=\(jobName)"),
            as: JSONValue.self
          ).items.isEmpty
        }
        let result =
          #"{"command":"rotate-keys","ok":true,"exitCode":0,"kms":"vault-transit://vault.vault.svc:80/transit/k","#
          + #""keyVersion":"2","errors":[]}"#
        try await finishPods(
          ns: backupNS, job: jobName, phase: "Succeeded", exitCode: 0, message: result, container: "engine")
        try await eventually("lastKeyRotation", timeout: .seconds(60)) {
          try await getPolicy(ns, "orders-db").status?.lastKeyRotation != nil
        }
        let s = try #require(try await getPolicy(ns, "orders-db").status)
        let last = try #require(s.lastKeyRotation)
        #expect(abs(last.timeIntervalSinceNow) < 120)
        #expect(s.nextKeyRotation == last.addingTimeInterval(86_400))
        #expect(s.conditions?.condition("KeyRotationDue")?.status == .false)
        try await eventually("a KeyRotated Event") {
          try await events(ns, "orders-db").contains { $0.reason == "KeyRotated" }
        }
        #expect((controller.app.registry.value("botrt_key_age_seconds", labels: labels) ?? .infinity) < 600)
        try await client.delete(BackupPolicy.self, namespace: ns, name: "orders-db")
        try await waitGone(ns, "orders-db")
      } catch {
        await controller.stop()
        throw error
      }
      await controller.stop()
    }
  }
}

extension BackupPolicyControllerTests {
  /// The Secret watch asks for metadata only: the controller never holds Secret data it does not copy.
  @Test func secretsAreListedAndWatchedAsMetadataOnly() async throws {
    try await withNamespace("bp-meta") { ns in
      try await createSecrets(ns)
      let source = KubeWatchSource<Unstructured>(
        client: client, resource: ChildResources.secrets, namespace: ns, metadataOnly: true)
      let list = try await source.list(ListOptions())
      let s3 = try #require(list.items.first { $0.metadata.name == "s3-creds" })
      #expect(s3.kind == "PartialObjectMetadata")
      #expect(s3.body["data"] == nil)
      let stream = try await source.watch(
        ListOptions(resourceVersion: list.metadata.resourceVersion, timeoutSeconds: 10))
      _ = try await client.create(
        Secret(metadata: ObjectMeta(name: "late", namespace: ns), data: ["k": Data("secret-value".utf8)]))
      // Other Secrets may come first (the namespace's ServiceAccount token): look for ours.
      var got: Unstructured? = nil
      for _ in 0..<10 {
        guard let event = try await stream.next() else { break }
        if case .added(let o) = event, o.metadata.name == "late" {
          got = o
          break
        }
      }
      let late = try #require(got, "no ADDED event for the Secret 'late'")
      #expect(late.kind == "PartialObjectMetadata")
      #expect(late.body["data"] == nil)
      stream.cancel()
    }
  }
}

/// The EncryptionKeyTooOld, ReplicaEncryptionKeyTooOld and RTOViolationRisk alerts of
/// manifests/monitoring/prometheusrule.yaml, evaluated by `promtool test rules`
/// (Debian's `prometheus` package, installed by hack/install-deps.sh; a missing promtool fails the test).
@Suite struct KeyRotationAlertTests {
  @Test func encryptionKeyTooOldFiresOnlyAfterTheLimitHasPassedForAnHour() throws {
    let path = TestCluster.repoRoot + "/manifests/monitoring/prometheusrule.yaml"
    let doc = try YAML.parse(try String(contentsOfFile: path, encoding: .utf8), file: path)
    // The rule groups as a promtool rule file; annotations (templates that query) are not under test.
    let groups: [JSONValue] = (doc[path: "spec", "groups"]?.arrayValue ?? []).map { g in
      var group = g
      group["rules"] = .array(
        (g["rules"]?.arrayValue ?? []).map { r in
          var rule = r
          rule["annotations"] = nil
          return rule
        })
      return group
    }
    let labels: JSONValue = [
      "namespace": "shop", "policy": "db", "tier": "standard", "severity": "high", "compliance": "sox,gdpr,pci,hipaa",
    ]
    var replicaLabels = labels
    replicaLabels["replica"] = "dr"
    // The key ages one minute per minute against a one-hour limit: over the limit from minute 61, firing after an
    // hour more; a second policy rotated in time never fires.
    let test: JSONValue = [
      "rule_files": ["rules.json"], "evaluation_interval": "1m",
      "tests": [
        [
          "interval": "1m",
          "input_series": [
            ["series": #"botrt_key_age_seconds{namespace="shop",policy="db",tier="standard"}"#, "values": "0+60x200"],
            [
              "series": #"botrt_key_rotation_limit_seconds{namespace="shop",policy="db",tier="standard"}"#,
              "values": "3600x200",
            ],
            [
              "series": #"botrt_key_age_seconds{namespace="shop",policy="ok",tier="standard"}"#,
              "values": "0+60x50 0+60x150",
            ],
            [
              "series": #"botrt_key_rotation_limit_seconds{namespace="shop",policy="ok",tier="standard"}"#,
              "values": "3600x200",
            ],
            [
              "series": #"botrt_replica_key_age_seconds{namespace="shop",policy="db",tier="standard",replica="dr"}"#,
              "values": "0+60x200",
            ],
            [
              "series":
                #"botrt_replica_key_rotation_limit_seconds{namespace="shop",policy="db",tier="standard",replica="dr"}"#,
              "values": "3600x200",
            ],
            // RTOViolationRisk: a drill whose measured RTO is above its target, another within it.
            ["series": #"botrt_drill_rto_seconds{namespace="shop",drill="slow"}"#, "values": "1200x200"],
            ["series": #"botrt_drill_rto_target_seconds{namespace="shop",drill="slow"}"#, "values": "900x200"],
            ["series": #"botrt_drill_rto_seconds{namespace="shop",drill="fast"}"#, "values": "300x200"],
            ["series": #"botrt_drill_rto_target_seconds{namespace="shop",drill="fast"}"#, "values": "900x200"],
          ],
          "alert_rule_test": [
            ["eval_time": "3m", "alertname": "RTOViolationRisk", "exp_alerts": []],
            [
              "eval_time": "10m", "alertname": "RTOViolationRisk",
              "exp_alerts": [["exp_labels": ["namespace": "shop", "drill": "slow", "severity": "warning"]]],
            ],
            ["eval_time": "100m", "alertname": "EncryptionKeyTooOld", "exp_alerts": []],
            ["eval_time": "125m", "alertname": "EncryptionKeyTooOld", "exp_alerts": [["exp_labels": labels]]],
            ["eval_time": "100m", "alertname": "ReplicaEncryptionKeyTooOld", "exp_alerts": []],
            [
              "eval_time": "125m", "alertname": "ReplicaEncryptionKeyTooOld",
              "exp_alerts": [["exp_labels": replicaLabels]],
            ],
          ],
        ]
      ],
    ]
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-keyalert-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let enc = KubeJSON.encoder()
    try enc.encode(JSONValue.object(["groups": .array(groups)])).write(to: dir.appendingPathComponent("rules.json"))
    try enc.encode(test).write(to: dir.appendingPathComponent("test.json"))
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["promtool", "test", "rules", "test.json"]
    p.currentDirectoryURL = dir
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    #expect(p.terminationStatus == 0, "promtool test rules (Debian package prometheus): \(out)")
  }
}
