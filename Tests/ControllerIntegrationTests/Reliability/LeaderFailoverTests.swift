import DRAPI
import Foundation
import KubeClient
import KubeCore
import Reconcilers
import Testing

/// Issue 7: two controller processes with --leader-elect. Only the Lease holder works: the other one makes no
/// reconcile and no write but to the Lease (its own request counter, botrt_kube_requests_total, says so). After the
/// leader is killed with SIGKILL (it cannot release the Lease), the other takes over once the Lease expires, and
/// reconciles a change made after the kill. Measured: kill -> new holder, and the dead leader's last renewal -> new
/// holder's acquisition. The bound is the Lease duration (15 s) plus 1 s of request latency: the follower dates the
/// last change it saw back to its renewTime (by at most one retry period) and looks again right at the expiry.
@Suite(.serialized) struct LeaderFailoverTests {
  static let leaseDuration = 15.0
  static let retryPeriod = 2.0

  static func writes(_ metrics: String) -> [String: Double] {
    var out: [String: Double] = [:]
    for line in metrics.split(separator: "\n") where line.hasPrefix("botrt_kube_requests_total{") {
      let verb = line.firstMatch(of: /verb="([^"]*)"/)?.1 ?? ""
      let resource = line.firstMatch(of: /resource="([^"]*)"/)?.1 ?? ""
      guard ["create", "update", "patch", "delete", "deletecollection"].contains(String(verb)) else { continue }
      out["\(verb) \(resource)", default: 0] += Double(line.split(separator: " ").last ?? "0") ?? 0
    }
    return out
  }

  @Test func onlyTheLeaderWorksAndTheOtherTakesOverWithinTheLease() async throws {
    let rc = try await ReliabilityCluster()
    let client = rc.client
    let ns = try await rc.makeNamespace("rel-lead")
    let backupNS = "\(ns)-backup"
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-rel-lead-\(ns)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    var procs: [ControllerProcess] = []
    do {
      try await rc.createSecrets(ns)
      let settings = try await rc.settings(backupNamespace: backupNS)
      for i in 0..<2 {
        procs.append(
          try ControllerProcess(
            namespace: ns, backupNamespace: backupNS, metrics: true,
            extra: ["--leader-elect", "--lease-namespace", ns], logPath: "\(dir)/controller-\(i).log"))
      }
      func lease() async throws -> LeaseSpec? {
        do {
          return try await client.get(Lease.self, namespace: ns, name: "botrt-controller").spec
        } catch let e as KubeError where e.isNotFound {
          return nil
        }
      }
      try await eventually("a Lease holder") { try await lease()?.holderIdentity?.isEmpty == false }
      _ = try await client.create(ReliabilityCluster.policy(ns, "p0", trigger: "t0"))
      _ = try await rc.converge(
        "with two candidates", ns: ns, backupNS: backupNS, settings: settings, triggers: ["p0": ["t0"]], gone: [])
      try await Task.sleep(for: .seconds(3))
      // Exactly one of them reconciles and writes.
      var reconciles: [Double] = []
      var writes: [[String: Double]] = []
      for p in procs {
        let m = try await p.metrics()
        reconciles.append(ControllerProcess.sum(m, "botrt_reconcile_total"))
        writes.append(Self.writes(m))
      }
      let leaders = reconciles.indices.filter { reconciles[$0] > 0 }
      #expect(leaders.count == 1, "reconciles per process: \(reconciles)")
      guard leaders.count == 1 else { throw ControllerTestError(description: "not exactly one active controller") }
      let leader = leaders[0]
      let follower = 1 - leader
      let followerWrites = writes[follower].filter { !$0.key.hasSuffix(" leases") && $0.value > 0 }
      #expect(followerWrites.isEmpty, "the follower wrote: \(followerWrites)")
      #expect(writes[leader].keys.contains { $0.hasPrefix("patch ") }, "the leader's writes: \(writes[leader])")
      #expect(procs[leader].process.output.contains("acquired the lease"))
      #expect(!procs[follower].process.output.contains("acquired the lease"))
      // Kill the leader; a change made right after must be reconciled by the other one. The Lease as the dead leader
      // left it has its last renewal.
      let killedAt = Date()
      let t0 = ContinuousClock.now
      procs[leader].kill(SIGKILL)
      let before = try #require(try await lease())
      _ = try await client.create(ReliabilityCluster.policy(ns, "p1", trigger: "t1"))
      var takeover: Double? = nil
      var acquired: LeaseSpec? = nil
      while ContinuousClock.now - t0 < .seconds(40) {
        if let l = try await lease(), l.holderIdentity != before.holderIdentity, l.holderIdentity?.isEmpty == false {
          let d = ContinuousClock.now - t0
          takeover = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
          acquired = l
          break
        }
        try await Task.sleep(for: .milliseconds(100))
      }
      let handover = try #require(takeover, "no new Lease holder 40 s after the leader was killed")
      _ = try await rc.converge(
        "after the failover", ns: ns, backupNS: backupNS, settings: settings, triggers: ["p0": ["t0"], "p1": ["t1"]],
        gone: [])
      let ready = ContinuousClock.now - t0
      let readySeconds = Double(ready.components.seconds) + Double(ready.components.attoseconds) / 1e18
      var gap: Double? = nil
      if let r = before.renewTime, let a = acquired?.acquireTime { gap = a.timeIntervalSince(r) }
      // Liveness: within the Lease duration of the leader's last renewal (which came before the kill), plus 1 s for
      // the follower's requests on a loaded machine.
      let bound = Self.leaseDuration + 1
      #expect(handover <= bound, "takeover after \(handover) s; bound \(bound) s")
      // Safety: the new holder took the Lease only after the dead leader's last renewal had expired (never two
      // leaders at once); renewTime and acquireTime are written by the candidates' clocks (one machine here).
      let safeGap = try #require(gap, "the Lease lacks renewTime or acquireTime")
      #expect(safeGap >= Self.leaseDuration, "taken over \(safeGap) s after the last renewal, before the Lease expired")
      #expect(procs[follower].process.output.contains("acquired the lease"))
      #expect(acquired?.leaseTransitions ?? 0 >= (before.leaseTransitions ?? 0) + 1)
      Reliability.figure("failover_lease_duration_seconds", String(format: "%.0f", Self.leaseDuration))
      Reliability.figure("failover_kill_to_new_holder_seconds", String(format: "%.1f", handover))
      Reliability.figure(
        "failover_kill_to_new_policy_converged_seconds", String(format: "%.1f", readySeconds))
      Reliability.figure("failover_last_renew_to_acquire_seconds", String(format: "%.1f", safeGap))
      Reliability.figure("failover_killed_at", ISO8601DateFormatter().string(from: killedAt))
      Reliability.figure(
        "failover_follower_writes_before_takeover", followerWrites.isEmpty ? "none (leases only)" : "\(followerWrites)")
    } catch {
      for p in procs { p.kill() }
      await rc.cleanup([ns, backupNS])
      throw error
    }
    for p in procs { p.kill() }
    await rc.cleanup([ns, backupNS])
  }
}
