import ControllerApp
import DRAPI
import EngineContract
import Foundation
import KubeClient
import KubeCore
import Reconcilers
import Synchronization
import Testing

/// A `PodExecutor` that answers by the command's first word and records every call.
final class FakePodExecutor: PodExecutor {
  let calls = Mutex<[(pod: String, container: String, command: [String])]>([])
  let answers: [String: HookExecOutcome]

  init(_ answers: [String: HookExecOutcome]) { self.answers = answers }

  func exec(namespace: String, pod: String, container: String, command: [String], timeoutSeconds: Int32) async
    -> HookExecOutcome
  {
    calls.withLock { $0.append((pod, container, command)) }
    return answers[command.first ?? ""] ?? .failed("no answer for \(command)")
  }

  func commands() -> [String] {
    calls.withLock { $0.map { "\($0.pod)/\($0.container):\($0.command.joined(separator: " "))" } }
  }
}

extension BackupPolicyControllerTests {
  /// A PVC-source policy with hooks, triggered once with `token`.
  func hookedPolicy(_ ns: String, pre: [String], post: [String], token: String) -> BackupPolicy {
    var p = policy(ns, name: "app-data")
    p.spec.dataType = .files
    p.spec.source = BackupSource(pvc: PVCSource(claimName: "data"))
    func hook(_ word: String) -> BackupHook {
      BackupHook(name: word, podSelector: HookPodSelector(matchLabels: ["app": "db"]), command: [word, "/data"])
    }
    p.spec.hooks = BackupHooks(pre: pre.map(hook), post: post.map(hook))
    p.spec.trigger = token
    return p
  }

  /// An application pod (the control plane has no kubelet: its status is set here), Running with two containers.
  func appPod(_ ns: String, _ name: String) async throws {
    let pod: JSONValue = [
      "apiVersion": "v1", "kind": "Pod",
      "metadata": ["name": .string(name), "namespace": .string(ns), "labels": ["app": "db"]],
      "spec": [
        "containers": [["name": "postgres", "image": "postgres:15"], ["name": "exporter", "image": "exporter:1"]]
      ],
    ]
    // A new namespace's default ServiceAccount and its token come a moment after it: until then the apiserver
    // answers 500 (no token yet) or 403 (no ServiceAccount yet).
    try await eventually("Pod \(name) created") {
      do {
        _ = try await client.create(ChildResources.pods, namespace: ns, pod)
        return true
      } catch let e as KubeError where e.code == 500 || e.isForbidden {
        return false
      }
    }
    _ = try await client.patch(
      ChildResources.pods, namespace: ns, name: name, subresource: "status",
      .merge(["status": ["phase": "Running"]]), as: JSONValue.self)
  }

  /// The one Pod of a Job, once the job controller made it.
  func jobPod(_ ns: String, _ job: String) async throws -> JSONValue {
    var found: JSONValue? = nil
    try await eventually("a Pod of Job \(job)") {
      found = try await client.list(
        ChildResources.pods, namespace: ns, options: ListOptions(labelSelector: "job-name=\(job)"), as: JSONValue.self
      ).items.first
      return found != nil
    }
    return found ?? .null
  }

  /// Plays the kubelet: the backup Pod's gate init container is running (waiting for the annotation).
  func gateWaits(_ ns: String, _ pod: String) async throws {
    let now = KubeJSON.formatDate(Date())
    _ = try await client.patch(
      ChildResources.pods, namespace: ns, name: pod, subresource: "status",
      .merge([
        "status": [
          "phase": "Pending", "startTime": .string(now),
          "initContainerStatuses": [
            [
              "name": .string(HookKeys.gateContainer), "ready": false, "restartCount": 0, "image": "e", "imageID": "",
              "state": ["running": ["startedAt": .string(now)]],
            ]
          ],
        ]
      ]), as: JSONValue.self)
  }

  func annotation(_ resource: ResourceDescriptor, _ ns: String, _ name: String, _ key: String) async throws -> String? {
    try await client.get(resource, namespace: ns, name: name, as: JSONValue.self)[path: "metadata", "annotations", key]?
      .stringValue
  }

  @Test func hooksRunInTheApplicationPodsAroundTheBackupAndPostRunsAfterAFailure() async throws {
    try await withNamespace("bp-hooks") { ns in
      try await createSecrets(ns)
      try await appPod(ns, "db-0")
      try await appPod(ns, "db-1")
      let exec = FakePodExecutor([
        "freeze": .exited(code: 0, stderr: []), "thaw": .exited(code: 0, stderr: Array("thawed\n".utf8)),
        "lock": .exited(code: 1, stderr: Array("ERROR: cannot lock tables\n".utf8)),
        "forbid": .forbidden("pods \"db-0\" is forbidden: cannot create resource \"pods/exec\""),
      ])
      let controller = try await RunningController(
        client, namespace: ns, backupNamespace: "\(ns)-backup", podExecutor: exec)
      let names = ChildNames(namespace: ns, name: "app-data")
      do {
        // 1. A run whose pre hooks succeed: the gate opens, the backup runs, the post hooks follow.
        _ = try await client.create(hookedPolicy(ns, pre: ["freeze"], post: ["thaw"], token: "t1"))
        let job1 = names.runJob(token: "trigger:t1")
        let pod1 = try await jobPod(ns, job1)
        let cron = try await client.get(
          ChildResources.cronJobs(apiVersion: "batch/v1beta1"), namespace: ns, name: names.backupCronJob,
          as: JSONValue.self)
        for (what, spec) in [
          ("CronJob", cron[path: "spec", "jobTemplate", "spec", "template", "spec"]), ("Pod", pod1["spec"]),
        ] {
          let gate = spec?["initContainers"]?.arrayValue?.first
          #expect(gate?["name"] == .string(HookKeys.gateContainer), "\(what)")
          #expect(gate?["args"]?[0] == "gate", "\(what)")
          #expect(
            spec?["volumes"]?.arrayValue?.contains {
              $0[path: "downwardAPI", "items"]?[0]?[path: "fieldRef", "fieldPath"] == "metadata.annotations"
            } == true, "\(what)")
        }
        let podName = pod1[path: "metadata", "name"]?.stringValue ?? ""
        // Before the gate runs nothing is exec'd (the application is not frozen while the Pod starts).
        try await Task.sleep(for: .seconds(2))
        #expect(exec.commands().isEmpty)
        try await gateWaits(ns, podName)
        try await eventually("the gate marked done") {
          try await annotation(ChildResources.pods, ns, podName, HookKeys.pre) == EngineGate.done
        }
        // Each hook in every Running matching pod, in its first container.
        #expect(Set(exec.commands()) == ["db-0/postgres:freeze /data", "db-1/postgres:freeze /data"])
        try await finishPods(
          ns: ns, job: job1, phase: "Succeeded", exitCode: 0,
          message: #"{"command":"backup","ok":true,"exitCode":0,"snapshotId":"snap-h1","errors":[]}"#)
        try await eventually("the post hooks done, once") {
          try await annotation(ChildResources.jobs, ns, job1, HookKeys.post) == EngineGate.done
        }
        #expect(exec.commands().filter { $0.hasSuffix("thaw /data") }.count == 2)
        try await eventually("status.lastHooks of the first run") {
          let s = try await getPolicy(ns, "app-data").status
          return s?.lastHooks?.job == job1 && s?.lastHooks?.post == "Done"
            && s?.conditions?.condition(BackupPolicyCondition.hooksPermitted)?.status == .true
        }
        let h1 = try #require(try await getPolicy(ns, "app-data").status?.lastHooks)
        #expect(h1.pre == "Done" && h1.results?.count == 4)
        // The metrics: each hook's result in each pod, and how long each phase took.
        let r = controller.app.registry
        #expect(r.value("botrt_hook_runs_total", labels: [ns, "app-data", "pre", "Succeeded"]) == 2)
        #expect(r.value("botrt_hook_runs_total", labels: [ns, "app-data", "post", "Succeeded"]) == 2)
        #expect(r.histogramCount("botrt_hook_phase_duration_seconds", labels: [ns, "app-data", "pre"]) == 1)
        #expect(h1.results?.first { $0.phase == "Post" }?.message == "thawed")

        // 2. A pre hook fails (Abort): the gate is failed with the hook's message, the backup does not run, and the
        // post hooks still run once the Job failed.
        var p = try await getPolicy(ns, "app-data")
        p.spec.hooks = hookedPolicy(ns, pre: ["lock", "freeze"], post: ["thaw"], token: "t2").spec.hooks
        p.spec.trigger = "t2"
        _ = try await client.update(p)
        let job2 = names.runJob(token: "trigger:t2")
        let pod2 = try await jobPod(ns, job2)[path: "metadata", "name"]?.stringValue ?? ""
        let before = exec.commands().count
        try await gateWaits(ns, pod2)
        try await eventually("the gate marked failed") {
          try await annotation(ChildResources.pods, ns, pod2, HookKeys.pre) == EngineGate.failed
        }
        let message = try await annotation(ChildResources.pods, ns, pod2, HookKeys.preMessage) ?? ""
        #expect(
          message.contains("hook lock failed in pod db-0") && message.contains("cannot lock tables"), "\(message)")
        // freeze was not run after the failed lock.
        #expect(exec.commands().dropFirst(before).allSatisfy { $0.contains(":lock ") })
        try await finishPods(
          ns: ns, job: job2, phase: "Failed", exitCode: Int64(EngineExitCode.gateFailed), message: message,
          container: HookKeys.gateContainer)
        try await eventually("the post hooks after the failure") {
          try await annotation(ChildResources.jobs, ns, job2, HookKeys.post) == EngineGate.done
        }
        try await eventually("status.lastHooks of the failed run, and a HookFailed Event") {
          let h = try await getPolicy(ns, "app-data").status?.lastHooks
          let failed = try await events(ns, "app-data").contains { $0.reason == "HookFailed" }
          return h?.job == job2 && h?.pre == "Failed" && h?.post == "Done" && failed
        }

        // 3. A controller restarted during the pre hooks: the Pod found `running` is failed, not run again.
        p = try await getPolicy(ns, "app-data")
        p.spec.hooks = hookedPolicy(ns, pre: ["freeze"], post: ["thaw"], token: "t3").spec.hooks
        p.spec.trigger = "t3"
        _ = try await client.update(p)
        let job3 = names.runJob(token: "trigger:t3")
        let pod3 = try await jobPod(ns, job3)[path: "metadata", "name"]?.stringValue ?? ""
        _ = try await client.patch(
          ChildResources.pods, namespace: ns, name: pod3,
          .merge(["metadata": ["annotations": [HookKeys.pre: "running"]]]), as: JSONValue.self)
        let before3 = exec.commands().count
        try await gateWaits(ns, pod3)
        try await eventually("the interrupted gate failed") {
          try await annotation(ChildResources.pods, ns, pod3, HookKeys.pre) == EngineGate.failed
        }
        #expect(
          try await annotation(ChildResources.pods, ns, pod3, HookKeys.preMessage) == HookLogic.restartedDuringPre)
        #expect(exec.commands().count == before3, "pre hooks are never run twice")

        // 4. exec refused (no opt-in RoleBinding): the gate fails, and HooksPermitted says which RoleBinding to make.
        try await finishPods(
          ns: ns, job: job3, phase: "Failed", exitCode: Int64(EngineExitCode.gateFailed), message: "x",
          container: HookKeys.gateContainer)
        p = try await getPolicy(ns, "app-data")
        p.spec.hooks = hookedPolicy(ns, pre: ["forbid"], post: [], token: "t4").spec.hooks
        p.spec.trigger = "t4"
        _ = try await client.update(p)
        let job4 = names.runJob(token: "trigger:t4")
        let pod4 = try await jobPod(ns, job4)[path: "metadata", "name"]?.stringValue ?? ""
        try await gateWaits(ns, pod4)
        try await eventually("the refused gate failed") {
          try await annotation(ChildResources.pods, ns, pod4, HookKeys.pre) == EngineGate.failed
        }
        try await eventually("HooksPermitted=False naming the RoleBinding") {
          let c = try await condition(ns, "app-data", BackupPolicyCondition.hooksPermitted)
          return c?.status == .false && c?.reason == "HooksForbidden"
            && c?.message.contains("--clusterrole=botrt-hook-executor") == true
        }
      } catch {
        await controller.stop()
        throw error
      }
      await controller.stop()
    }
  }
}
