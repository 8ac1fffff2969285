import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// Issue 14, pins the admin states (`repository.expectedIdentity`), the controller's side: passed to every Job that
/// opens the repository from the first one on, preferred to status, a differing record reported by field, and
/// malformed values refused by field.
@Suite struct StatedPinsLogicTests {
  let statedID = String(repeating: "5a", count: 16)
  let statedKey = String(repeating: "6b", count: 32)
  let recordedID = String(repeating: "a1", count: 16)
  let recordedKey = String(repeating: "b2", count: 32)
  let replicaID = String(repeating: "7c", count: 16)
  let replicaKey = String(repeating: "8d", count: 32)

  var stated: ExpectedRepositoryIdentity { ExpectedRepositoryIdentity(repositoryId: statedID, signingKey: statedKey) }
  var statedReplica: ExpectedRepositoryIdentity {
    ExpectedRepositoryIdentity(repositoryId: replicaID, signingKey: replicaKey)
  }

  /// The engine arguments of every engine container of a Job or CronJob body.
  func engineArgs(_ body: JSONValue) -> [[String]] {
    let pod = body[path: "spec", "jobTemplate", "spec", "template", "spec"] ?? body[path: "spec", "template", "spec"]
    let cs = (pod?["initContainers"]?.arrayValue ?? []) + (pod?["containers"]?.arrayValue ?? [])
    return cs.map { ($0["args"]?.arrayValue ?? []).compactMap(\.stringValue) }.filter { $0.contains("--repo") }
  }

  func value(_ args: [String], _ flag: String) -> String? {
    args.firstIndex(of: EngineFlag.long(flag)).flatMap { args.indices.contains($0 + 1) ? args[$0 + 1] : nil }
  }

  func run(_ name: String, at: TimeInterval, repo: String, id: String, key: String) -> BackupRun {
    var res = EngineResult.starting("backup")
    res.repository = repo
    res.repositoryId = id
    res.signingKey = key
    return BackupRun(
      jobName: name, state: .succeeded, startTime: testNow.addingTimeInterval(at - 5),
      finishTime: testNow.addingTimeInterval(at), result: res)
  }

  /// A policy with a replica, both stated, and a status that recorded other identities for both (e.g. planted
  /// repositories pinned on first use).
  func statedPolicy(recorded: Bool) throws -> BackupPolicy {
    var p = replicatedPolicy()
    p.spec.repository.expectedIdentity = stated
    p.spec.replicas?[0].repository.expectedIdentity = statedReplica
    if recorded {
      var st = BackupPolicyStatus()
      st.repositoryIdentity = RepositoryIdentity(
        repository: try EngineInvocation(spec: p.spec) { $0 }.repoURL, id: recordedID, signingKey: recordedKey)
      var rs = ReplicaStatus(name: "dr-gcs", lastCopyTime: testNow)
      rs.repositoryIdentity = RepositoryIdentity(
        repository: try #require(ReplicaInvocation.repositoryURL(p.spec, p.spec.replicas![0])), id: recordedID,
        signingKey: recordedKey)
      st.replicas = [rs]
      p.status = st
    }
    return p
  }

  /// With an empty status (a new policy, a DR cluster, a status lost) and with a status that recorded other
  /// identities, every Job that opens the primary or the replica passes the stated values and never the recorded.
  @Test(arguments: [false, true])
  func everyJobPassesTheStatedIdentityFromTheFirstOnAndItWinsOverStatus(recorded: Bool) throws {
    let p = try statedPolicy(recorded: recorded)
    let input = ChildInputs(
      policy: p, effective: try EffectivePolicy(spec: p.spec, now: testNow), settings: settings(),
      secrets: replicaSecrets, runToken: "trigger:now")
    var bodies = try BackupPolicyChildren.build(input).filter { ["Job", "CronJob"].contains($0.resource.kind) }
      .map { ($0.name, $0.body) }
    #expect(bodies.count >= 3, "\(bodies.map(\.0))")
    let rotation = try BackupPolicyChildren.keyRotationJob(input, KeyRotationJob(token: "rotate:1"))
    bodies.append((rotation.name, rotation.body))
    let delete = try BackupPolicyChildren.deleteRepositoryJob(input)
    bodies.append((delete.name, delete.body))
    for (name, body) in bodies {
      let all = engineArgs(body)
      #expect(!all.isEmpty, "\(name) runs the engine")
      for a in all {
        #expect(value(a, EngineFlag.expectRepositoryID) == statedID, "\(name): \(a)")
        #expect(value(a, EngineFlag.expectSigningKey) == statedKey, "\(name): \(a)")
        #expect(!a.contains(recordedID) && !a.contains(replicaID), "\(name): \(a)")
      }
    }
    // Copies: the source's and the target's stated identities.
    let copy = try ReplicationChildren.copyJob(input, index: 0, snapshot: "s1", backupTime: testNow)
    let c = try #require(engineArgs(copy.body).first)
    #expect(value(c, EngineFlag.expectRepositoryID) == statedID && value(c, EngineFlag.expectSigningKey) == statedKey)
    #expect(value(c, EngineFlag.toExpectRepositoryID) == replicaID, "\(c)")
    #expect(value(c, EngineFlag.toExpectSigningKey) == replicaKey, "\(c)")
    #expect(!c.contains(recordedID))
    // The replica's rotations and restores from the replica: the replica's stated identity.
    for job in [ReplicaRotationJob(token: "own"), ReplicaRotationJob(token: "follow", followPrimary: true)] {
      let r = try #require(engineArgs(try ReplicationChildren.rotationJob(input, index: 0, job).body).first)
      #expect(
        value(r, EngineFlag.expectRepositoryID) == replicaID && value(r, EngineFlag.expectSigningKey) == replicaKey)
      #expect(!r.contains(statedID) && !r.contains(recordedID), "\(r)")
    }
    let fromReplica = try ReplicaSource.invocation(p, replica: "dr-gcs", field: "spec.replica") { $0 }
    #expect(fromReplica.common.expectedRepositoryID == replicaID)
    #expect(fromReplica.common.expectedSigningKey == replicaKey)
  }

  /// A DR cluster's restore-only policy with an empty status: its RecoveryPlan restores and verifies and its drills
  /// open the repository with the stated identity.
  @Test func aRestoreOnlyPolicysPlanAndDrillJobsPassTheStatedIdentity() throws {
    var policy = try recoveryTestPolicy()
    policy.spec.mode = .restoreOnly
    policy.spec.repository.expectedIdentity = stated
    #expect(policy.status == nil)
    let plan = try recoveryTestPlan()
    let steps = try RecoveryPlanLogic.steps(plan.spec)
    let ctx = RecoveryJobContext(
      settings: ControllerSettings(engineImage: "registry.local/botrt-engine:1"), policies: ["db": policy],
      namespace: "shop", labels: [:], owner: plan.ownerReference())
    var checked = 0
    for step in steps where [.restore, .verify].contains(step.step.action) {
      for a in engineArgs(try RecoveryJobs.stepJob(step, jobName: "rp-x-\(step.index)", ctx: ctx)) {
        #expect(value(a, EngineFlag.expectRepositoryID) == statedID, "\(step.step.name): \(a)")
        #expect(value(a, EngineFlag.expectSigningKey) == statedKey, "\(step.step.name): \(a)")
        checked += 1
      }
    }
    #expect(checked >= 2)
    let d = try drillTestDrill()
    let job = try DrillLogic.runJob(
      d, spec: try DrillLogic.runSpec(d, plan: nil), namespace: "drill-x",
      settings: ControllerSettings(engineImage: "e:1"), policies: ["db": policy], timeoutSeconds: 3600)
    let drill = engineArgs(job)
    #expect(drill.count >= 2, "the drill restores and verifies")
    for a in drill {
      #expect(value(a, EngineFlag.expectRepositoryID) == statedID && value(a, EngineFlag.expectSigningKey) == statedKey)
    }
  }

  /// Status holds another identity than the spec states: a Warning names the differing field(s); the record stays
  /// until a run under the stated identity succeeds, which records it (and the Warning stops).
  @Test func aRecordedIdentityThatDiffersIsReportedByFieldUntilARunConfirmsTheStatedOne() throws {
    let p = try statedPolicy(recorded: true)
    let url = try EngineInvocation(spec: p.spec) { $0 }.repoURL
    func compute(_ p: BackupPolicy, runs: [BackupRun]) throws -> StatusOutcome {
      BackupPolicyStatusLogic.compute(
        policy: p, effective: try EffectivePolicy(spec: p.spec, now: testNow), problem: nil, runs: runs,
        backupNamespace: "botrt-backup", handledTrigger: nil, childSummary: "", now: testNow, repositoryURL: url)
    }
    let out = try compute(p, runs: [])
    #expect(out.status.repositoryIdentity?.id == recordedID, "the record is evidence and stays")
    let w = try #require(out.events.first { $0.reason == "RepositoryIdentityMismatch" })
    #expect(w.warning)
    #expect(w.message.contains("spec.repository.expectedIdentity.repositoryId is \(statedID)"), "\(w.message)")
    #expect(w.message.contains("spec.repository.expectedIdentity.signingKey"), "\(w.message)")
    #expect(w.message.contains(recordedID), "\(w.message)")

    // Only the signing key differs: only it is named.
    var keyOnly = p
    keyOnly.status?.repositoryIdentity?.id = statedID
    let k = try #require(try compute(keyOnly, runs: []).events.first { $0.reason == "RepositoryIdentityMismatch" })
    #expect(k.message.contains("spec.repository.expectedIdentity.signingKey"))
    #expect(!k.message.contains("expectedIdentity.repositoryId"), "\(k.message)")

    // A run under the stated pins succeeds: it is recorded, and the Warning stops. A run of the old identity
    // before it does not keep the old record.
    let confirmed = try compute(
      p,
      runs: [
        run("old", at: -200, repo: url, id: recordedID, key: recordedKey),
        run("stated", at: -100, repo: url, id: statedID, key: statedKey),
      ])
    #expect(confirmed.status.repositoryIdentity?.id == statedID)
    #expect(confirmed.status.repositoryIdentity?.recordedFrom == "stated")
    #expect(!confirmed.events.contains { $0.reason == "RepositoryIdentityMismatch" })
    #expect(confirmed.events.contains { $0.reason == "RepositoryPinned" && $0.message.contains(statedID) })

    // A status that agrees raises nothing; no statement, nothing either.
    var agreeing = p
    agreeing.status?.repositoryIdentity = RepositoryIdentity(repository: url, id: statedID, signingKey: statedKey)
    #expect(!(try compute(agreeing, runs: [])).events.contains { $0.reason == "RepositoryIdentityMismatch" })
    var unstated = p
    unstated.spec.repository.expectedIdentity = nil
    #expect(!(try compute(unstated, runs: [])).events.contains { $0.reason == "RepositoryIdentityMismatch" })

    // The replica's record differs from its statement: the Warning names the replica's field.
    var o = try compute(p, runs: [])
    let r = ReplicationLogic.apply(policy: p, copies: [], canCopy: true, now: testNow, outcome: &o)
    let rw = try #require(r.events.first { $0.reason == "RepositoryIdentityMismatch" })
    #expect(rw.warning && rw.message.hasPrefix("Replica dr-gcs:"))
    #expect(rw.message.contains("spec.replicas[0].repository.expectedIdentity.repositoryId"), "\(rw.message)")
    #expect(rw.message.contains("status.replicas[0].repositoryIdentity.id"), "\(rw.message)")
  }

  /// Malformed stated values: validation names the field, and the builders refuse them naming the field (a spec the
  /// apiserver let through, e.g. an old CRD, never crashes the controller or reaches a Job).
  @Test(arguments: [
    ("short", String(repeating: "6b", count: 32)),
    (String(repeating: "5A", count: 16), String(repeating: "6b", count: 32)),
    (String(repeating: "5a", count: 16), String(repeating: "zz", count: 32)),
    (String(repeating: "5a", count: 16), ""),
    (String(repeating: "é", count: 32), String(repeating: "6b", count: 32)),
    (String(repeating: "5a", count: 16) + "\n--repo", String(repeating: "6b", count: 10_000)),
  ])
  func aMalformedStatedIdentityIsRefusedNamingTheField(id: String, key: String) throws {
    let bad = ExpectedRepositoryIdentity(repositoryId: id, signingKey: key)
    let idOK = ExpectedRepositoryIdentity.isLowerHex(id, count: 32)
    let keyOK = ExpectedRepositoryIdentity.isLowerHex(key, count: 64)
    #expect(!(idOK && keyOK))
    var expected: [String] = []
    if !idOK { expected.append("repositoryId") }
    if !keyOK { expected.append("signingKey") }

    var p = replicatedPolicy()
    p.spec.repository.expectedIdentity = bad
    #expect(
      SpecValidation.validate(p.spec).map(\.field) == expected.map { "spec.repository.expectedIdentity.\($0)" })
    do {
      _ = try EngineInvocation(policy: p) { $0 }
      Issue.record("a malformed stated identity reached an invocation")
    } catch {
      #expect(error.field == "spec.repository.expectedIdentity.\(expected[0])")
      #expect(error.message.count < 400, "the message shows at most a prefix of the value")
    }

    var r = replicatedPolicy()
    r.spec.replicas?[0].repository.expectedIdentity = bad
    #expect(
      SpecValidation.validate(r.spec).map(\.field)
        == expected.map { "spec.replicas[0].repository.expectedIdentity.\($0)" })
    let input = ChildInputs(
      policy: r, effective: try EffectivePolicy(spec: r.spec, now: testNow), settings: settings(),
      secrets: replicaSecrets)
    do {
      _ = try ReplicationChildren.copyJob(input, index: 0, snapshot: "s1", backupTime: testNow)
      Issue.record("a malformed stated replica identity reached a copy Job")
    } catch {
      #expect(error.field == "spec.replicas[0].repository.expectedIdentity.\(expected[0])")
    }
    do {
      _ = try ReplicaSource.invocation(r, replica: "dr-gcs", field: "spec.replica") { $0 }
      Issue.record("a malformed stated replica identity reached a restore")
    } catch {
      #expect(error.field == "spec.replicas[0].repository.expectedIdentity.\(expected[0])")
    }
    // The primary's Jobs do not depend on the replica's statement.
    #expect(try EngineInvocation(policy: r) { $0 }.common.expectedRepositoryID == nil)
  }
}
