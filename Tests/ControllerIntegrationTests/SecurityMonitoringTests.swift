import ControllerApp
import DRAPI
import Foundation
import KubeClient
import KubeCore
import Reconcilers
import Testing

/// The security signals on the local control plane (docs/security-monitoring.md): each is produced for real, read
/// from the controller's /metrics, and the alert of manifests/monitoring is evaluated on the scraped values with
/// promtool.
extension BackupPolicyControllerTests {
  func networkPolicy(_ ns: String, _ name: String) async throws -> JSONValue? {
    do {
      return try await client.get(ChildResources.networkPolicies, namespace: ns, name: name, as: JSONValue.self)
    } catch let e as KubeError where e.isNotFound {
      return nil
    }
  }

  func objectExists(_ resource: ResourceDescriptor, _ ns: String, _ name: String) async throws -> Bool {
    do {
      _ = try await client.get(resource, namespace: ns, name: name, as: JSONValue.self)
      return true
    } catch let e as KubeError where e.isNotFound {
      return false
    }
  }

  func setTrigger(_ ns: String, _ trigger: String) async throws {
    _ = try await client.patch(
      BackupPolicy.self, namespace: ns, name: "orders-db", .merge(["spec": ["trigger": .string(trigger)]]))
  }

  /// A Job nobody planned that runs the engine's restore: what an intruder in a backup namespace would create.
  func foreignEngineJob(_ name: String, _ ns: String) -> JSONValue {
    [
      "apiVersion": "batch/v1", "kind": "Job", "metadata": ["name": .string(name), "namespace": .string(ns)],
      "spec": [
        "backoffLimit": 0,
        "template": [
          "spec": [
            "restartPolicy": "Never",
            "containers": [["name": "backup", "image": "botrt/botrt-engine:test", "args": ["restore"]]],
          ]
        ],
      ],
    ]
  }

  /// A bare Pod (no Job controls it).
  func barePod(_ name: String, _ ns: String) -> JSONValue {
    [
      "apiVersion": "v1", "kind": "Pod", "metadata": ["name": .string(name), "namespace": .string(ns)],
      "spec": ["containers": [["name": "sh", "image": "busybox"]]],
    ]
  }

  /// Input series for promtool from scraped series: 0 for `before` minutes, then the scraped value.
  func stepSeries(_ found: [(String, Double)], before: Int = 5, after: Int = 10) -> [PromRules.Input] {
    found.map { s, v in
      PromRules.Input(series: s, values: "0x\(before) \(PromRules.format(v))x\(after)")
    }
  }

  @Test func isolationDriftIsRestoredReportedAndAlerted() async throws {
    try await withNamespace("sec-drift") { ns in
      let backupNS = "\(ns)-backup"
      try await createSecrets(ns)
      // Port 0: the kernel picks a free port, which the controller's health server reports once it listens (a fixed
      // port in the ephemeral range once collided with an outgoing connection).
      let controller = try await RunningController(
        client, namespace: ns, backupNamespace: backupNS, metricsAddress: "127.0.0.1:0")
      do {
        _ = try await client.create(policy(ns))
        let want = BackupPolicyChildren.sharedNetworkPolicies(
          namespace: backupNS, settings: controller.app.settings)
        try await eventually("the shared NetworkPolicies") {
          for c in want where try await networkPolicy(backupNS, c.name) == nil { return false }
          return true
        }
        let deny = try #require(want.first { $0.name == SharedChildNames.defaultDeny })

        // Another field manager opens all egress on the default-deny policy (server-side apply, forced).
        let widened: JSONValue = [
          "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
          "metadata": ["name": .string(deny.name), "namespace": .string(backupNS)],
          "spec": ["podSelector": [:], "policyTypes": ["Ingress", "Egress"], "egress": [[:]]],
        ]
        _ = try await client.apply(
          ChildResources.networkPolicies, namespace: backupNS, name: deny.name, widened, fieldManager: "mallory",
          force: true)
        try await eventually("the default-deny policy to be restored, without the added egress") {
          let live = try await networkPolicy(backupNS, deny.name)
          return live?["spec"] == deny.body["spec"]
        }
        try await eventually("an IsolationDrift Event naming mallory") {
          try await events(backupNS, deny.name).contains {
            $0.reason == "IsolationDrift" && $0.type == "Warning" && $0.message?.contains("mallory") == true
          }
        }
        let modified = [backupNS, "NetworkPolicy", deny.name, "modified"]
        #expect((controller.app.registry.value("botrt_isolation_drift_total", labels: modified) ?? 0) >= 1)

        // Another client deletes the egress policy: it is recreated.
        let egress = SharedChildNames.allowEgress
        try await client.delete(ChildResources.networkPolicies, namespace: backupNS, name: egress)
        try await eventually("the deleted egress policy to be recreated") {
          try await networkPolicy(backupNS, egress) != nil
        }
        try await eventually("an IsolationDrift Event for the deletion") {
          try await events(backupNS, egress).contains {
            $0.reason == "IsolationDrift" && $0.message?.contains("deleted") == true
          }
        }
        #expect(
          (controller.app.registry.value(
            "botrt_isolation_drift_total", labels: [backupNS, "NetworkPolicy", egress, "deleted"]) ?? 0) >= 1)
        // A change by the controller itself is not drift: the counter stays as it is after a re-apply.
        let before = controller.app.registry.value("botrt_isolation_drift_total", labels: modified)
        _ = try await client.patch(
          BackupPolicy.self, namespace: ns, name: "orders-db", .merge(["metadata": ["annotations": ["touch": "1"]]]))
        try await Task.sleep(for: .seconds(2))
        #expect(controller.app.registry.value("botrt_isolation_drift_total", labels: modified) == before)

        // NetworkIsolationBreach fires on the scraped counters, and not without them.
        let scraped = try PromRules.scrape("127.0.0.1:\(controller.app.healthServer?.port ?? 0)")
        let drift = PromRules.series(scraped, "botrt_isolation_drift_total", matching: ["namespace": backupNS])
        #expect(drift.count == 2)
        try PromRules.test(
          stepSeries(drift),
          [
            PromRules.Expectation(
              evalTime: "10m", alert: "NetworkIsolationBreach",
              firing: drift.map { s, _ in
                var l = PromRules.labels(s)
                l["action"] = nil
                l["severity"] = "high"
                return l
              }.sorted { $0["name"]! < $1["name"]! }),
            PromRules.Expectation(evalTime: "4m", alert: "NetworkIsolationBreach", firing: []),
          ], name: "isolation")
        try await client.delete(BackupPolicy.self, namespace: ns, name: "orders-db")
        try await waitGone(ns, "orders-db")
      } catch {
        await controller.stop()
        throw error
      }
      await controller.stop()
    }
  }

  @Test func runsKeyAccessAndForeignWorkloadsAreAuditedAndAlerted() async throws {
    try await withNamespace("sec-runs") { ns in
      let backupNS = "\(ns)-backup"
      try await createSecrets(ns)
      // Port 0: the kernel picks a free port, which the controller's health server reports once it listens (a fixed
      // port in the ephemeral range once collided with an outgoing connection).
      let controller = try await RunningController(
        client, namespace: ns, backupNamespace: backupNS, metricsAddress: "127.0.0.1:0")
      // Another controller in the cluster, scoped to another namespace (a second install, or a test alongside):
      // this namespace's runs are not its to audit, count or mark.
      let bystander = try await RunningController(
        client, namespace: "\(ns)-bystander", backupNamespace: "\(ns)-bystander-backup")
      let names = ChildNames(namespace: ns, name: "orders-db")
      let key = "vault-transit://vault.vault.svc:8200/transit/backup-database-key"
      do {
        _ = try await client.create(policy(ns))
        try await eventually("the backup CronJob") {
          try await objectExists(
            ChildResources.cronJobs(apiVersion: controller.app.settings.cronJobAPIVersion), backupNS,
            names.backupCronJob)
        }
        // Between runs: no storage egress and no credentials binding.
        try await Task.sleep(for: .seconds(1))
        #expect(try await !objectExists(ChildResources.roleBindings, backupNS, names.roleBinding))
        #expect(try await !objectExists(ChildResources.networkPolicies, backupNS, names.storageEgress))

        // Four on-demand runs in a row (a spike); the first reports two unwraps of the policy's key.
        var jobs: [String] = []
        for i in 1...4 {
          try await setTrigger(ns, "spike-\(i)")
          let job = names.runJob(token: "trigger:spike-\(i)")
          jobs.append(job)
          try await eventually("a Pod of \(job)") {
            try await !client.list(
              ChildResources.pods, namespace: backupNS, options: ListOptions(labelSelector: "job-name=\(job)"),
              as: JSONValue.self
            ).items.isEmpty
          }
          if i == 1 {
            // During a run: both exist.
            try await eventually("the run's storage egress and credentials binding") {
              let binding = try await objectExists(ChildResources.roleBindings, backupNS, names.roleBinding)
              let egress = try await objectExists(ChildResources.networkPolicies, backupNS, names.storageEgress)
              return binding && egress
            }
          }
          let result =
            #"{"command":"backup","ok":true,"exitCode":0,"snapshotId":"s\#(i)","bytesRead":10,"bytesStored":5,"#
            + #""durationSeconds":1,"errors":[],"keyUnwraps":[{"key":"\#(key)","count":2}],"storageRequests":30}"#
          try await finishPods(ns: backupNS, job: job, phase: "Succeeded", exitCode: 0, message: result)
        }
        // After the runs: both gone again.
        try await eventually("the grants to be revoked after the runs", timeout: .seconds(60)) {
          let binding = try await objectExists(ChildResources.roleBindings, backupNS, names.roleBinding)
          let egress = try await objectExists(ChildResources.networkPolicies, backupNS, names.storageEgress)
          return !binding && !egress
        }
        let onDemand = [ns, "orders-db", key, "on-demand"]
        try await eventually("the on-demand unwraps to be counted") {
          controller.app.registry.value("botrt_key_unwrap_total", labels: onDemand) == 8
        }
        #expect(controller.app.registry.value("botrt_backup_runs_total", labels: [ns, "orders-db", "on-demand"]) == 4)
        #expect(bystander.app.registry.value("botrt_backup_runs_total", labels: [ns, "orders-db", "on-demand"]) == nil)
        #expect(bystander.app.registry.value("botrt_key_unwrap_total", labels: onDemand) == nil)
        #expect(controller.app.registry.value("botrt_storage_requests_total", labels: [ns, "orders-db"]) == 120)

        // A failed run also ends the window.
        try await setTrigger(ns, "fails")
        let failing = names.runJob(token: "trigger:fails")
        try await eventually("the failing run's grant") {
          try await objectExists(ChildResources.roleBindings, backupNS, names.roleBinding)
        }
        let refused = #"{"command":"backup","ok":false,"exitCode":4,"errors":["s3 PUT: HTTP 403 AccessDenied"]}"#
        try await eventually("the failing Job to fail", timeout: .seconds(90)) {
          try await finishPods(ns: backupNS, job: failing, phase: "Failed", exitCode: 4, message: refused)
          let job = try await client.get(ChildResources.jobs, namespace: backupNS, name: failing, as: JSONValue.self)
          return SecurityAudit.isFinished(job)
        }
        try await eventually("the grants to be revoked after the failure", timeout: .seconds(60)) {
          let binding = try await objectExists(ChildResources.roleBindings, backupNS, names.roleBinding)
          let egress = try await objectExists(ChildResources.networkPolicies, backupNS, names.storageEgress)
          return !binding && !egress
        }
        try await eventually("the AccessDenied refusal to be counted") {
          controller.app.registry.value("botrt_backup_refused_total", labels: [ns, "orders-db", "access-denied"]) == 1
        }

        // A Job the controller did not create runs the engine in the backup namespace with the policy's key; the
        // repository refuses its key (exit code 12) after one unwrap.
        _ = try await client.create(
          ChildResources.jobs, namespace: backupNS, foreignEngineJob("exfiltrate", backupNS),
          options: WriteOptions(fieldManager: "mallory"))
        try await eventually("an UnexpectedBackupJob Event naming mallory") {
          try await events(backupNS, "exfiltrate").contains {
            $0.reason == "UnexpectedBackupJob" && $0.type == "Warning" && $0.message?.contains("mallory") == true
          }
        }
        let denied =
          #"{"command":"restore","ok":false,"exitCode":12,"errors":["unwrap refused"],"#
          + #""keyUnwraps":[{"key":"\#(key)","count":1}]}"#
        try await eventually("the foreign Job to fail", timeout: .seconds(90)) {
          try await finishPods(ns: backupNS, job: "exfiltrate", phase: "Failed", exitCode: 12, message: denied)
          let job = try await client.get(
            ChildResources.jobs, namespace: backupNS, name: "exfiltrate", as: JSONValue.self)
          return SecurityAudit.isFinished(job)
        }
        try await eventually("the foreign run's unwrap and refusal") {
          controller.app.registry.value("botrt_key_unwrap_total", labels: [backupNS, "", key, "foreign"]) == 1
            && controller.app.registry.value("botrt_backup_refused_total", labels: [backupNS, "", "key"]) == 1
        }
        try await eventually("a BackupAccessRefused Event") {
          try await events(backupNS, "exfiltrate").contains { $0.reason == "BackupAccessRefused" }
        }
        #expect(
          controller.app.registry.value("botrt_unexpected_workloads_total", labels: [backupNS, "Job", "foreign"]) == 1)
        // Its Pod is part of a Job, so it is not reported a second time; the foreign Job got no grant.
        #expect(
          controller.app.registry.value("botrt_unexpected_workloads_total", labels: [backupNS, "Pod", "foreign"]) == nil
        )
        #expect(try await !objectExists(ChildResources.roleBindings, backupNS, names.roleBinding))

        // A bare Pod in the backup namespace.
        try await createPod(backupNS, barePod("stray", backupNS), options: WriteOptions(fieldManager: "mallory"))
        try await eventually("an UnexpectedBackupPod Event") {
          try await events(backupNS, "stray").contains { $0.reason == "UnexpectedBackupPod" && $0.type == "Warning" }
        }
        #expect(
          controller.app.registry.value("botrt_unexpected_workloads_total", labels: [backupNS, "Pod", "foreign"]) == 1)

        // The audit annotation keeps a second look from counting again.
        let audited = try await client.get(ChildResources.jobs, namespace: backupNS, name: jobs[0], as: JSONValue.self)
        #expect(audited[path: "metadata", "annotations", SecurityAudit.auditAnnotation] == "finished")

        // The alerts on the scraped values.
        let scraped = try PromRules.scrape("127.0.0.1:\(controller.app.healthServer?.port ?? 0)")
        let unwraps = PromRules.series(scraped, "botrt_key_unwrap_total")
        let refusals = PromRules.series(scraped, "botrt_backup_refused_total")
        let unexpected = PromRules.series(scraped, "botrt_unexpected_workloads_total")
        let runs = PromRules.series(scraped, "botrt_backup_runs_total", matching: ["origin": "on-demand"])
        #expect(unwraps.count == 2 && refusals.count == 2 && unexpected.count == 2 && runs.count == 1)
        var inputs = stepSeries(unwraps) + stepSeries(refusals) + stepSeries(unexpected)
        // Runs: none for 6 hours, then the scraped burst.
        inputs += runs.map { PromRules.Input(series: $0.0, values: "0x360 \(PromRules.format($0.1))x10") }
        // A steady schedule for comparison: one run a minute for 6 hours is no spike.
        inputs.append(
          PromRules.Input(
            series: #"botrt_backup_runs_total{namespace="steady",origin="scheduled",policy="every-minute"}"#,
            values: "0+1x370"))
        try PromRules.test(
          inputs,
          [
            PromRules.Expectation(
              evalTime: "10m", alert: "EncryptionKeyAccess",
              firing: [["namespace": backupNS, "key": key, "origin": "foreign", "severity": "warning"]]),
            PromRules.Expectation(
              evalTime: "10m", alert: "UnauthorizedBackupAccess",
              firing: [["namespace": backupNS, "severity": "critical"], ["namespace": ns, "severity": "critical"]]),
            PromRules.Expectation(evalTime: "4m", alert: "UnauthorizedBackupAccess", firing: []),
            PromRules.Expectation(
              evalTime: "365m", alert: "BackupConnectionSpike",
              firing: [["namespace": ns, "policy": "orders-db", "severity": "warning"]]),
            PromRules.Expectation(evalTime: "355m", alert: "BackupConnectionSpike", firing: []),
          ], name: "runs")

        try await client.delete(BackupPolicy.self, namespace: ns, name: "orders-db")
        try await waitGone(ns, "orders-db")
      } catch {
        await controller.stop()
        await bystander.stop()
        throw error
      }
      await controller.stop()
      await bystander.stop()
    }
  }
}

extension BackupPolicyControllerTests {
  /// A policy's own spec.backupNamespace is audited like the controller's: a foreign Job and a bare Pod there are
  /// reported; once no policy names the namespace, it is no longer watched.
  @Test func aPolicysOwnBackupNamespaceIsAudited() async throws {
    try await withNamespace("sec-own") { ns in
      let backupNS = "\(ns)-backup"
      let own = "\(ns)-own"
      try await createSecrets(ns)
      let controller = try await RunningController(
        client, namespace: ns, backupNamespace: backupNS, metricsAddress: nil)
      do {
        var p = policy(ns)
        p.spec.backupNamespace = own
        _ = try await client.create(p)
        let names = ChildNames(namespace: ns, name: "orders-db")
        try await eventually("the backup CronJob in the policy's own backup namespace") {
          try await objectExists(
            ChildResources.cronJobs(apiVersion: controller.app.settings.cronJobAPIVersion), own, names.backupCronJob)
        }
        _ = try await client.create(
          ChildResources.jobs, namespace: own, foreignEngineJob("sneak", own),
          options: WriteOptions(fieldManager: "eve"))
        try await eventually("an UnexpectedBackupJob Event in \(own)") {
          try await events(own, "sneak").contains {
            $0.reason == "UnexpectedBackupJob" && $0.type == "Warning" && $0.message?.contains("eve") == true
          }
        }
        try await createPod(own, barePod("lurker", own), options: WriteOptions(fieldManager: "eve"))
        try await eventually("an UnexpectedBackupPod Event in \(own)") {
          try await events(own, "lurker").contains { $0.reason == "UnexpectedBackupPod" && $0.type == "Warning" }
        }
        #expect(
          controller.app.registry.value("botrt_unexpected_workloads_total", labels: [own, "Job", "foreign"]) == 1)
        #expect(
          controller.app.registry.value("botrt_unexpected_workloads_total", labels: [own, "Pod", "foreign"]) == 1)

        // The policy goes: the namespace is no longer watched, so a new foreign Job there is not reported.
        try await client.delete(BackupPolicy.self, namespace: ns, name: "orders-db")
        try await waitGone(ns, "orders-db")
        try await Task.sleep(for: .seconds(2))
        _ = try await client.create(
          ChildResources.jobs, namespace: own, foreignEngineJob("after", own),
          options: WriteOptions(fieldManager: "eve"))
        try await Task.sleep(for: .seconds(3))
        let late = try await events(own, "after").filter { $0.reason == "UnexpectedBackupJob" }
        #expect(late.isEmpty, "the namespace is still audited after its policy went")
        #expect(
          controller.app.registry.value("botrt_unexpected_workloads_total", labels: [own, "Job", "foreign"]) == 1)
      } catch {
        await controller.stop()
        _ = try? await client.delete(Namespace.self, name: own)
        throw error
      }
      await controller.stop()
      // The policy's own backup namespace is not one withNamespace removes.
      try await client.delete(Namespace.self, name: own)
    }
  }
}

extension BackupPolicyControllerTests {
  /// The compliance targets of a policy's profiles in its status (`kubectl describe`) and in `botrt-controller report`.
  @Test func complianceTargetsAreShownWithTheirEvidence() async throws {
    guard let bin = ProcessInfo.processInfo.environment["BOTRT_CONTROLLER_BIN"], !bin.isEmpty else {
      throw ControllerTestError(
        description: "BOTRT_CONTROLLER_BIN is not set: export it to the built botrt-controller (hack/test.sh does)")
    }
    try await withNamespace("sec-compliance") { ns in
      let backupNS = "\(ns)-backup"
      try await createSecrets(ns)
      let controller = try await RunningController(client, namespace: ns, backupNamespace: backupNS)
      let names = ChildNames(namespace: ns, name: "orders-db")
      do {
        var p = policy(ns)
        p.spec.compliance = [.hipaa]
        // Suspended, so that the 5-minute schedule HIPAA asks for does not start runs during the test.
        p.spec.suspend = true
        _ = try await client.create(p)
        try await eventually("ComplianceMet=Unknown before any backup") {
          let c = try await condition(ns, "orders-db", "ComplianceMet")
          return c?.status == .unknown && c?.reason == "NotMeasured"
        }
        try await setTrigger(ns, "c-1")
        let job = names.runJob(token: "trigger:c-1")
        try await eventually("a Pod of \(job)") {
          try await !client.list(
            ChildResources.pods, namespace: backupNS, options: ListOptions(labelSelector: "job-name=\(job)"),
            as: JSONValue.self
          ).items.isEmpty
        }
        let result = #"{"command":"backup","ok":true,"exitCode":0,"snapshotId":"c1","bytesRead":1,"bytesStored":1}"#
        try await finishPods(ns: backupNS, job: job, phase: "Succeeded", exitCode: 0, message: result)
        try await eventually("ComplianceMet=True after the backup", timeout: .seconds(60)) {
          try await condition(ns, "orders-db", "ComplianceMet")?.status == .true
        }
        let stored = try await getPolicy(ns, "orders-db")
        // The RPO is counted from the snapshot's point in time (the run's start), not from when the run finished:
        // the two fall in different seconds whenever the run crosses a second boundary.
        let last = try #require(stored.status?.lastSnapshotTime ?? stored.status?.lastSuccessfulBackup)
        let c = try #require(stored.status?.conditions?.condition("ComplianceMet"))
        #expect(c.reason == "TargetsMet")
        #expect(c.message.contains("HIPAA healthcare data RPO (RPO 5m): met"))
        #expect(c.message.contains(KubeJSON.formatDate(last)))
        #expect(c.message.contains("HIPAA complete access logging (required): by design, not measured"))

        let (rc, out) = try PromRules.run([bin, "report", "-n", ns])
        #expect(rc == 0, "\(out)")
        #expect(out.contains("Compliance targets"))
        #expect(out.contains("BackupPolicy \(ns)/orders-db"))
        #expect(out.contains("HIPAA healthcare data RPO (RPO 5m): met, measured"))
        #expect(out.contains("at \(rfc3339Seconds(last))"))

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

extension PromRules {
  /// A sample value as promtool reads it.
  static func format(_ v: Double) -> String { v == v.rounded() ? String(Int64(v)) : String(v) }
}
