import DRAPI
import Foundation
import KubeClient
import KubeCore
import Reconcilers
import Testing

/// Issue 7: kube-apiserver restarted (hack/cluster.sh stop-apiserver / start-apiserver) under a running controller
/// process, with changes made just before the stop (the controller may be in the middle of reconciling them) and
/// right after the start (its watches are still reconnecting). Nothing is missed: every change is reconciled to
/// exactly the desired children; no Job is duplicated: each trigger gives exactly one Job. The same process keeps
/// running (it must not need a restart). BOTRT_RELIABILITY_RESTARTS sets the number of restarts (1 in hack/test.sh).
@Suite(.serialized) struct ApiserverRestartTests {
  @Test func apiserverRestartMissesNothingAndDuplicatesNoJob() async throws {
    let rc = try await ReliabilityCluster()
    let client = rc.client
    let ns = try await rc.makeNamespace("rel-api")
    let backupNS = "\(ns)-backup"
    let log = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-rel-api-\(ns).log").path
    var controller: ControllerProcess? = nil
    var apiserverDown = false
    do {
      try await rc.createSecrets(ns)
      let settings = try await rc.settings(backupNamespace: backupNS)
      let restarts = Reliability.int("BOTRT_RELIABILITY_RESTARTS", default: 1)
      controller = try ControllerProcess(
        namespace: ns, backupNamespace: backupNS, metrics: true, logPath: log)
      var d = ControllerKillTests.Desired()
      for name in ["p0", "p1"] {
        _ = try await client.create(ReliabilityCluster.policy(ns, name))
        d.policies.insert(name)
      }
      _ = try await client.create(
        RecoveryPlan.resource, namespace: ns, try ControllerKillTests.planJSON(ns, "plan0", trigger: "r0"))
      d.plans["plan0"] = 1
      _ = try await rc.converge(
        "before the restarts", ns: ns, backupNS: backupNS, settings: settings, triggers: d.triggers,
        gone: d.gonePolicies)
      var times: [Double] = []
      for round in 1...restarts {
        // Just before the stop: a trigger, a new policy with a trigger, a schedule change, a deletion.
        let k = round * 10
        _ = try await client.patch(
          BackupPolicy.self, namespace: ns, name: "p0", .merge(["spec": ["trigger": .string("before\(k)")]]))
        d.triggers["p0", default: []].append("before\(k)")
        _ = try await client.create(ReliabilityCluster.policy(ns, "p\(k)", trigger: "first\(k)"))
        d.policies.insert("p\(k)")
        d.triggers["p\(k)"] = ["first\(k)"]
        _ = try await client.patch(
          BackupPolicy.self, namespace: ns, name: "p1", .merge(["spec": ["schedule": .string("\(k % 60) 1 * * *")]]))
        if let old = d.policies.subtracting(["p0", "p1", "p\(k)"]).sorted().first {
          try await client.delete(BackupPolicy.self, namespace: ns, name: old)
          d.policies.remove(old)
          d.triggers[old] = nil
          d.gonePolicies.insert(old)
        }
        apiserverDown = true
        try Reliability.cluster("stop-apiserver")
        try await Task.sleep(for: .seconds(2))
        try Reliability.cluster("start-apiserver")
        apiserverDown = false
        // Right after the start, while the watches reconnect.
        let t0 = ContinuousClock.now
        _ = try await client.patch(
          BackupPolicy.self, namespace: ns, name: "p1", .merge(["spec": ["trigger": .string("after\(k)")]]))
        d.triggers["p1", default: []].append("after\(k)")
        _ = try await client.create(ReliabilityCluster.policy(ns, "p\(k + 1)"))
        d.policies.insert("p\(k + 1)")
        _ = try await client.patch(
          RecoveryPlan.resource, namespace: ns, name: "plan0", .merge(["spec": ["trigger": .string("r\(k)")]]),
          as: JSONValue.self)
        _ = try await rc.converge(
          "restart \(round)", ns: ns, backupNS: backupNS, settings: settings, triggers: d.triggers,
          gone: d.gonePolicies)
        var extra: [String] = []
        let deadline = ContinuousClock.now + .seconds(60)
        repeat {
          extra = try await ControllerKillTests.planAndDrillDivergence(client, ns, d)
          if extra.isEmpty { break }
          try await Task.sleep(for: .milliseconds(300))
        } while ContinuousClock.now < deadline
        #expect(extra.isEmpty, "restart \(round): \(extra)")
        let took = ContinuousClock.now - t0
        times.append(Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18)
        #expect(
          controller?.process.isRunning == true,
          "the controller exited: \(controller?.process.output.suffix(3000) ?? "")")
      }
      let metrics = try await controller?.metrics() ?? ""
      let watchErrors = ControllerProcess.sum(metrics, "botrt_watcher_errors_total")
      #expect(watchErrors > 0, "the watches never saw the apiserver go away (botrt_watcher_errors_total is 0)")
      Reliability.figure("apiserver_restarts", "\(times.count)")
      Reliability.figure(
        "apiserver_restart_converge_seconds", times.map { String(format: "%.1f", $0) }.joined(separator: ","))
      Reliability.figure("apiserver_restart_watch_errors", String(format: "%.0f", watchErrors))
    } catch {
      if apiserverDown { try? Reliability.cluster("start-apiserver") }
      controller?.kill()
      await rc.cleanup([ns, backupNS])
      throw error
    }
    controller?.kill()
    await rc.cleanup([ns, backupNS])
  }
}
