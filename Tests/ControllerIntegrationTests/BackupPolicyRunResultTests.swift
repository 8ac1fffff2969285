import ControllerApp
import DRAPI
import Foundation
import KubeClient
import KubeCore
import Reconcilers
import Testing

extension BackupPolicyControllerTests {
  /// The local control plane has no kubelet: the test plays it, finishing the Job's Pods through the status
  /// subresource with the engine's JSON result as the termination message; the real job controller then completes
  /// or fails the Job, and the BackupPolicy controller reads the result back into status, Events and metrics.
  func finishPods(
    ns: String, job: String, phase: String, exitCode: Int64, message: String, container: String = "backup"
  ) async throws {
    let pods = try await client.list(
      ChildResources.pods, namespace: ns, options: ListOptions(labelSelector: "job-name=\(job)"), as: JSONValue.self)
    let now = KubeJSON.formatDate(Date())
    for pod in pods.items where pod[path: "status", "phase"]?.stringValue != phase {
      let name = pod[path: "metadata", "name"]?.stringValue ?? ""
      let status: JSONValue = [
        "status": [
          "phase": .string(phase), "startTime": .string(now),
          "containerStatuses": [
            [
              "name": .string(container), "ready": false, "restartCount": 0, "image": "postgres:16", "imageID": "",
              "state": [
                "terminated": [
                  "exitCode": .int(exitCode), "reason": exitCode == 0 ? "Completed" : "Error",
                  "message": .string(message), "startedAt": .string(now), "finishedAt": .string(now),
                ]
              ],
            ]
          ],
        ]
      ]
      _ = try await client.patch(
        ChildResources.pods, namespace: ns, name: name, subresource: "status", .merge(status), as: JSONValue.self)
    }
  }

  func events(_ ns: String, _ name: String) async throws -> [Event] {
    try await client.list(Event.self, namespace: ns, options: ListOptions(fieldSelector: "involvedObject.name=\(name)"))
      .items
  }

  @Test func finishedRunsAreReadBackIntoStatusEventsAndMetrics() async throws {
    try await withNamespace("bp-runs") { ns in
      let backupNS = "\(ns)-backup"
      try await createSecrets(ns)
      let controller = try await RunningController(client, namespace: ns, backupNamespace: backupNS)
      let names = ChildNames(namespace: ns, name: "orders-db")
      do {
        var p = policy(ns)
        p.spec.trigger = "ok-1"
        _ = try await client.create(p)
        let okJob = names.runJob(token: "trigger:ok-1")
        try await eventually("a Pod of the on-demand Job") {
          try await !client.list(
            ChildResources.pods, namespace: backupNS, options: ListOptions(labelSelector: "job-name=\(okJob)"),
            as: JSONValue.self
          ).items.isEmpty
        }
        let result =
          #"{"command":"backup","ok":true,"exitCode":0,"snapshotId":"snap-it-1","files":1,"bytesRead":4096,"#
          + #""bytesStored":1024,"repositoryStoredBytes":65536,"durationSeconds":2.5,"errors":[]}"#
        try await finishPods(ns: backupNS, job: okJob, phase: "Succeeded", exitCode: 0, message: result)
        try await eventually("status to show the snapshot", timeout: .seconds(60)) {
          try await getPolicy(ns, "orders-db").status?.lastSnapshot == "snap-it-1"
        }
        let s = try #require(try await getPolicy(ns, "orders-db").status)
        #expect(s.lastBackupBytes == 4096)
        #expect(s.lastBackupStoredBytes == 1024)
        // Kept by the apiserver: the CRD's status schema has the field.
        #expect(s.repositoryStoredBytes == 65536)
        #expect(s.lastSuccessfulBackup != nil)
        #expect(s.conditions?.condition("LastBackupSucceeded")?.status == .true)
        #expect(s.conditions?.condition("RPOMet")?.status == .true)
        #expect(s.conditions?.condition("RPOMet")?.reason == "WithinRPO")
        try await eventually("a BackupSucceeded Event") {
          try await events(ns, "orders-db").contains { $0.reason == "BackupSucceeded" }
        }
        let labels = [ns, "orders-db", "standard"]
        #expect(controller.app.registry.value("botrt_backup_bytes", labels: labels) == 4096)
        #expect(controller.app.registry.value("botrt_backup_duration_seconds", labels: labels) == 2.5)
        #expect(controller.app.registry.value("botrt_backup_added_bytes", labels: labels) == 1024)
        #expect(controller.app.registry.value("botrt_repository_stored_bytes", labels: labels) == 65536)
        let last = try #require(
          controller.app.registry.value("botrt_backup_last_success_timestamp_seconds", labels: labels))
        #expect(abs(last - (s.lastSuccessfulBackup?.timeIntervalSince1970 ?? 0)) < 1)
        #expect(controller.app.registry.value("botrt_rpo_target_seconds", labels: labels) == 14_400)

        // A failing run: exit code 13 (KMS) with the engine's errors; the Job fails after its retry.
        // A merge patch: an update would race the controller's status writes (409 Conflict).
        _ = try await client.patch(
          BackupPolicy.resource, namespace: ns, name: "orders-db", .merge(["spec": ["trigger": "fail-1"]]),
          as: JSONValue.self)
        let failJob = names.runJob(token: "trigger:fail-1")
        let failure =
          #"{"command":"backup","ok":false,"exitCode":13,"errors":["KMS vault-transit://vault:8200 unreachable"]}"#
        try await eventually("the failing Job to fail", timeout: .seconds(90)) {
          try await finishPods(ns: backupNS, job: failJob, phase: "Failed", exitCode: 13, message: failure)
          let job = try await client.get(ChildResources.jobs, namespace: backupNS, name: failJob, as: JSONValue.self)
          return (job[path: "status", "conditions"]?.arrayValue ?? []).contains {
            $0["type"] == "Failed" && $0["status"] == "True"
          }
        }
        try await eventually("LastBackupSucceeded=False", timeout: .seconds(60)) {
          try await condition(ns, "orders-db", "LastBackupSucceeded")?.status == .false
        }
        let c = try #require(try await condition(ns, "orders-db", "LastBackupSucceeded"))
        #expect(c.reason == "BackupFailed")
        #expect(c.message.contains("exit code 13"))
        #expect(c.message.contains("unreachable"))
        // The earlier success still holds the RPO.
        #expect(try await getPolicy(ns, "orders-db").status?.lastSnapshot == "snap-it-1")
        try await eventually("a BackupFailed Event") {
          try await events(ns, "orders-db").contains { $0.reason == "BackupFailed" && $0.type == "Warning" }
        }
        #expect((controller.app.registry.value("botrt_backup_failures_total", labels: labels) ?? 0) >= 1)

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
