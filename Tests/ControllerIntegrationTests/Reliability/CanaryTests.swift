import DRAPI
import Foundation
import KubeClient
import KubeCore
import Reconcilers
import Testing

/// Issue 7: a canary value in every Secret the policies reference (S3 credentials, the Vault token, a local key, a
/// database password) never appears in the controller's logs (JSON and text), Events, the status of policies, plans
/// and drills, /metrics, the compliance report (`botrt-controller report`), nor inline in the Jobs and CronJobs it
/// writes (they must reference Secrets). The runs include failures (a missing key, a missing Secret) and on-demand
/// runs, so that error paths are logged too. The Secret copies the controller makes in the backup namespace hold
/// the value by design and are the only place it may be.
@Suite(.serialized) struct CanaryTests {
  @Test func canarySecretNeverLeaks() async throws {
    let rc = try await ReliabilityCluster()
    let client = rc.client
    let ns = try await rc.makeNamespace("rel-canary")
    let backupNS = "\(ns)-backup"
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-rel-canary-\(ns)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let canary = "CANARY-\(UUID().uuidString)"
    // Also as it would look base64-encoded (the form Secret data takes in JSON).
    let needles = [canary, Data(canary.utf8).base64EncodedString()]
    var procs: [ControllerProcess] = []
    do {
      try await rc.createSecrets(
        ns,
        values: [
          "s3-creds": ["AWS_ACCESS_KEY_ID": canary, "AWS_SECRET_ACCESS_KEY": canary],
          "vault-token": ["token": canary], "db-creds": ["password": canary], "local-key": ["key": canary],
          "half-creds": ["AWS_ACCESS_KEY_ID": canary],
        ])
      // The JSON-logging controller first, then the text one: both handle creations, changes and failures.
      for (i, format) in ["json", "text"].enumerated() {
        let p = try ControllerProcess(
          namespace: ns, backupNamespace: backupNS, metrics: true, logFormat: format,
          logPath: "\(dir)/controller-\(format).log")
        procs.append(p)
        _ = try await client.create(ReliabilityCluster.policy(ns, "vault-\(format)", trigger: "run-\(format)"))
        var local = ReliabilityCluster.policy(ns, "local-\(format)", trigger: "run-\(format)")
        local.spec.encryption = EncryptionSpec(
          kms: KMSSpec(localKeySecretRef: SecretReference(name: "local-key", key: "key")))
        _ = try await client.create(local)
        var broken = ReliabilityCluster.policy(ns, "broken-\(format)")
        broken.spec.repository.s3?.credentialsSecretRef = SecretNameReference(name: "half-creds")
        _ = try await client.create(broken)
        var missing = ReliabilityCluster.policy(ns, "missing-\(format)")
        missing.spec.encryption = EncryptionSpec(
          kms: KMSSpec(localKeySecretRef: SecretReference(name: "local-key", key: "other")))
        _ = try await client.create(missing)
        _ = try await client.create(
          DRDrill.resource, namespace: ns,
          try ControllerKillTests.drillJSON(ns, "drill-\(format)", policy: "vault-\(format)", trigger: "d-\(format)"))
        _ = try await client.create(
          RecoveryPlan.resource, namespace: ns, try ControllerKillTests.planJSON(ns, "plan-\(format)", trigger: "r"))
        try await eventually("the \(format) controller's policies to be reconciled") {
          let vault = try await rc.readyCondition(ns, "vault-\(format)")
          let local = try await rc.readyCondition(ns, "local-\(format)")
          let broken = try await rc.readyCondition(ns, "broken-\(format)")
          let missing = try await rc.readyCondition(ns, "missing-\(format)")
          return vault?.status == .true && local?.status == .true && broken?.status == .false
            && missing?.status == .false
        }
        try await eventually("the drill to start") {
          try await client.get(DRDrill.self, namespace: ns, name: "drill-\(format)").status?.currentRun != nil
        }
        // A change and a Secret rotation while it runs.
        _ = try await client.patch(
          Secret.self, namespace: ns, name: "vault-token", .merge(["stringData": ["token": .string(canary + "-2")]]))
        _ = try await client.patch(
          BackupPolicy.self, namespace: ns, name: "vault-\(format)", .merge(["spec": ["trigger": "again"]]))
        try await eventually("the second run") {
          try await client.get(BackupPolicy.self, namespace: ns, name: "vault-\(format)").status?.lastHandledTrigger
            == "trigger:again"
        }
        try await Task.sleep(for: .seconds(2))
        if i == 0 {
          p.kill(SIGKILL)
          // The next controller starts from this state (and must see the same objects).
          for name in ["vault", "local", "broken", "missing"] {
            try await client.delete(BackupPolicy.self, namespace: ns, name: "\(name)-json")
          }
        }
      }
      var places: [(String, String)] = []
      for p in procs { places.append(("log \(p.process.logPath)", p.process.output)) }
      places.append(("/metrics", try await procs[1].metrics()))
      for n in [ns, backupNS] {
        let events = try await client.list(Event.self, namespace: n)
        places.append(("Events in \(n)", String(decoding: try JSONEncoder().encode(events.items), as: UTF8.self)))
        let jobs = try await client.list(ChildResources.jobs, namespace: n, as: JSONValue.self)
        places.append(("Jobs in \(n)", String(decoding: try JSONEncoder().encode(jobs.items), as: UTF8.self)))
      }
      let settings = try await rc.settings(backupNamespace: backupNS)
      let cronJobs = try await client.list(
        ChildResources.cronJobs(apiVersion: settings.cronJobAPIVersion), namespace: backupNS, as: JSONValue.self)
      places.append(("CronJobs", String(decoding: try JSONEncoder().encode(cronJobs.items), as: UTF8.self)))
      for resource in [BackupPolicy.resource, RecoveryPlan.resource, DRDrill.resource] {
        let items = try await client.list(resource, namespace: ns, as: JSONValue.self).items
        places.append(
          (
            "\(resource.plural) status",
            String(decoding: try JSONEncoder().encode(items.map { $0["status"] }), as: UTF8.self)
          ))
      }
      let report = try SpawnedProcess(
        executable: try Reliability.controllerBinary(), arguments: ["report", "--namespace", ns, "--output", "json"],
        logPath: "\(dir)/report.json")
      report.wait()
      places.append(("botrt-controller report", report.output))
      #expect(report.output.contains("vault-text"), "the report is empty: \(report.output.prefix(500))")
      // The test itself would be worthless if the value were nowhere: the Secret copies do hold it.
      let copies = try await client.list(ChildResources.secrets, namespace: backupNS, as: JSONValue.self)
      #expect(String(decoding: try JSONEncoder().encode(copies.items), as: UTF8.self).contains(needles[1]))
      var leaks: [String] = []
      for (place, text) in places {
        #expect(!text.isEmpty, "\(place) is empty")
        for n in needles where text.contains(n) { leaks.append(place) }
      }
      #expect(leaks.isEmpty, "the canary appears in: \(leaks)")
      Reliability.figure(
        "canary_places_checked",
        "\(places.count) (\(places.map(\.0).map { $0.hasPrefix("log ") ? "log" : $0 }.joined(separator: "; ")))")
      Reliability.figure("canary_bytes_scanned", "\(places.map(\.1.utf8.count).reduce(0, +))")
      Reliability.figure("canary_leaks", leaks.isEmpty ? "0" : "\(leaks)")
    } catch {
      for p in procs { p.kill() }
      await rc.cleanup([ns, backupNS])
      throw error
    }
    for p in procs { p.kill() }
    await rc.cleanup([ns, backupNS])
  }
}
