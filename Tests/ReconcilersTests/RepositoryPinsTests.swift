import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// Issue 14 item 5, the controller's side: the pins recorded in status, and passed to the Jobs that open the
/// primary repository and to no other.
@Suite struct RepositoryPinsLogicTests {
  let id = String(repeating: "a1", count: 16)
  let key = String(repeating: "b2", count: 32)

  func run(_ name: String, _ state: BackupRun.State, at: TimeInterval, repo: String?, id: String, key: String)
    -> BackupRun
  {
    var res = EngineResult.starting("backup")
    res.repository = repo
    res.repositoryId = id
    res.signingKey = key
    return BackupRun(
      jobName: name, state: state, startTime: testNow.addingTimeInterval(at - 5),
      finishTime: testNow.addingTimeInterval(at), result: res)
  }

  func identity(_ url: String) -> RepositoryIdentity { RepositoryIdentity(repository: url, id: id, signingKey: key) }

  @Test func theOldestSuccessfulRunOfTheRepositoryIsPinnedAndOthersAreIgnored() {
    let url = "s3://backups/shop"
    let other = String(repeating: "cd", count: 16)
    let runs = [
      run("failed", .failed, at: -300, repo: url, id: other, key: key),
      run("elsewhere", .succeeded, at: -200, repo: "s3://old-bucket/shop", id: other, key: key),
      run("first", .succeeded, at: -100, repo: url + "/", id: id.uppercased(), key: key),
      run("second", .succeeded, at: -50, repo: url, id: id, key: key),
    ]
    let got = BackupPolicyStatusLogic.repositoryIdentity(previous: nil, runs: runs, repositoryURL: url)
    #expect(
      got.identity
        == RepositoryIdentity(
          repository: url, id: id, signingKey: key, recordedAt: testNow.addingTimeInterval(-100), recordedFrom: "first")
    )
    #expect(got.conflict == nil)
    // Malformed pins (an old or hostile writer of the message) are not recorded.
    let bad = [run("bad", .succeeded, at: -10, repo: url, id: "xyz", key: key)]
    #expect(BackupPolicyStatusLogic.repositoryIdentity(previous: nil, runs: bad, repositoryURL: url).identity == nil)
    // A result without the repository it opened (an older engine) pins nothing.
    let old = [run("old", .succeeded, at: -10, repo: nil, id: id, key: key)]
    #expect(BackupPolicyStatusLogic.repositoryIdentity(previous: nil, runs: old, repositoryURL: url).identity == nil)
  }

  @Test func aRecordedIdentityStaysUntilTheSpecMovesTheRepository() {
    let url = "gs://dr/shop"
    let pinned = identity(url)
    let later = [run("later", .succeeded, at: -10, repo: url, id: String(repeating: "ef", count: 16), key: key)]
    #expect(
      BackupPolicyStatusLogic.repositoryIdentity(previous: pinned, runs: later, repositoryURL: url).identity == pinned)
    #expect(
      BackupPolicyStatusLogic.repositoryIdentity(previous: pinned, runs: [], repositoryURL: nil).identity == pinned)
    #expect(
      BackupPolicyStatusLogic.repositoryIdentity(previous: pinned, runs: [], repositoryURL: "gs://dr/elsewhere")
        .identity == nil)
  }

  @Test func twoIdentitiesForOneRepositoryAreReportedAndTheFirstIsKept() {
    let url = "file:///backups"
    let runs = [
      run("first", .succeeded, at: -100, repo: url, id: id, key: key),
      run("swapped", .succeeded, at: -50, repo: url, id: String(repeating: "cd", count: 16), key: key),
    ]
    let got = BackupPolicyStatusLogic.repositoryIdentity(previous: nil, runs: runs, repositoryURL: url)
    #expect(got.identity?.recordedFrom == "first")
    #expect(got.conflict?.contains("swapped") == true)
  }

  @Test func statusRecordsThePinsWithAnEvent() throws {
    var p = dumpPolicy()
    p.metadata.creationTimestamp = testNow.addingTimeInterval(-3_600)
    let url = try EngineInvocation(policy: p) { $0 }.repoURL
    let out = BackupPolicyStatusLogic.compute(
      policy: p, effective: try EffectivePolicy(spec: p.spec, now: testNow), problem: nil,
      runs: [run("b1", .succeeded, at: -10, repo: url, id: id, key: key)], backupNamespace: "botrt-backup",
      handledTrigger: nil, childSummary: "", now: testNow, repositoryURL: url)
    #expect(out.status.repositoryIdentity?.id == id)
    #expect(out.events.contains { $0.reason == "RepositoryPinned" && $0.message.contains(id) })
  }

  /// Every Job that opens the primary repository carries its pins; copy Jobs carry them once, for the source.
  @Test func jobsOfThePrimaryCarryThePinsAndReplicasNeverGetThem() throws {
    var p = replicatedPolicy()
    let url = try EngineInvocation(policy: p) { $0 }.repoURL
    p.status = BackupPolicyStatus()
    p.status?.repositoryIdentity = identity(url)
    let children = try BackupPolicyChildren.build(
      ChildInputs(
        policy: p, effective: try EffectivePolicy(spec: p.spec, now: testNow), settings: settings(),
        secrets: replicaSecrets))
    func engineArgs(_ body: JSONValue) -> [[String]] {
      let pod =
        body[path: "spec", "jobTemplate", "spec", "template", "spec"] ?? body[path: "spec", "template", "spec"]
      let cs = (pod?["initContainers"]?.arrayValue ?? []) + (pod?["containers"]?.arrayValue ?? [])
      return cs.map { ($0["args"]?.arrayValue ?? []).compactMap(\.stringValue) }.filter { $0.contains("--repo") }
    }
    let crons = children.filter { $0.resource.kind == "CronJob" }
    #expect(crons.count >= 2)
    for c in crons {
      for a in engineArgs(c.body) {
        #expect(a.contains(id) && a.contains(key), "\(c.name): \(a)")
      }
    }
    let copy = try ReplicationChildren.copyJob(
      ChildInputs(
        policy: p, effective: try EffectivePolicy(spec: p.spec, now: testNow), settings: settings(),
        secrets: replicaSecrets), index: 0, snapshot: "abc", backupTime: testNow)
    let args = try #require(engineArgs(copy.body).first)
    #expect(args.filter { $0 == EngineFlag.long(EngineFlag.expectRepositoryID) }.count == 1)
    // The replica's own rotation Job opens only the replica: no pins of the primary.
    let replica = ReplicaKeyRotation.virtualPolicy(
      p, replica: p.spec.replicas![0], status: ReplicaStatus(name: "dr-gcs"))
    #expect(!(try EngineInvocation(policy: replica) { $0 }).common.argv.contains(id))
  }

  @Test func restoresOfARecoveryPlanCarryThePolicysPins() throws {
    var policy = try recoveryTestPolicy()
    let url = try EngineInvocation(policy: policy) { $0 }.repoURL
    policy.status = BackupPolicyStatus()
    policy.status?.repositoryIdentity = identity(url)
    let plan = try recoveryTestPlan()
    let steps = try RecoveryPlanLogic.steps(plan.spec)
    let ctx = RecoveryJobContext(
      settings: ControllerSettings(engineImage: "registry.local/botrt-engine:1"), policies: ["db": policy],
      namespace: "shop", labels: [:], owner: plan.ownerReference())
    let body = try RecoveryJobs.stepJob(steps[1], jobName: "rp-x-1", ctx: ctx)
    let engine = try #require(body[path: "spec", "template", "spec", "initContainers"]?[0])
    let args = (engine["args"]?.arrayValue ?? []).compactMap(\.stringValue)
    #expect(args.contains(id) && args.contains(key), "\(args)")
  }
}

/// Issue 14 item 5 for replicas: each replica's own pins, recorded from its copies' target identity, passed to the
/// Jobs that open the replica (copies as --to-expect-*, its rotations, restores, verifies and drills from it).
@Suite struct ReplicaPinsLogicTests {
  let primaryID = String(repeating: "a1", count: 16)
  let primaryKey = String(repeating: "b2", count: 32)
  let replicaID = String(repeating: "c3", count: 16)
  let replicaKey = String(repeating: "d4", count: 32)

  /// A successful copy of `snapshot` whose result names `target` with the given identity.
  func copy(_ snapshot: String, at: TimeInterval, target: String?, id: String, key: String) -> CopyRun {
    var res = CopyResult(ok: true, copied: [CopyResult.Copied(source: snapshot, target: "r-\(snapshot)")])
    res.repository = "s3://backups/payments"
    res.repositoryId = primaryID
    res.signingKey = primaryKey
    res.targetRepository = target
    res.targetRepositoryId = id
    res.targetSigningKey = key
    let t = testNow.addingTimeInterval(at)
    return CopyRun(
      jobName: "copy-\(snapshot)", replica: "dr-gcs", sourceSnapshot: snapshot,
      sourceBackupTime: t.addingTimeInterval(-5),
      state: .succeeded, startTime: t.addingTimeInterval(-3), finishTime: t, result: res)
  }

  func outcome(_ p: BackupPolicy) throws -> StatusOutcome {
    var result = EngineResult(ok: true, snapshotId: "s2")
    result.snapshotTime = ISO8601DateFormatter().string(from: testNow.addingTimeInterval(-60))
    let run = BackupRun(
      jobName: "b-s2", state: .succeeded, startTime: testNow.addingTimeInterval(-65),
      finishTime: testNow.addingTimeInterval(-60), result: result)
    return BackupPolicyStatusLogic.compute(
      policy: p, effective: try EffectivePolicy(spec: p.spec, now: testNow), problem: nil, runs: [run],
      backupNamespace: "botrt-backup", handledTrigger: nil, childSummary: "ok", now: testNow)
  }

  @Test func theFirstCopyNamingTheReplicaPinsItAndAMoveDropsThePins() throws {
    let p = replicatedPolicy()
    let url = try #require(ReplicaInvocation.repositoryURL(p.spec, p.spec.replicas![0]))
    #expect(url == "gs://dr-bucket/payments")
    // The copy result's source identity (the primary's) is never taken for the replica.
    let elsewhere = copy("s0", at: -300, target: "gs://other/payments", id: primaryID, key: primaryKey)
    let first = copy("s1", at: -200, target: url, id: replicaID, key: replicaKey)
    var o = try outcome(p)
    let r = ReplicationLogic.apply(policy: p, copies: [elsewhere, first], canCopy: true, now: testNow, outcome: &o)
    let pins = try #require(o.status.replicas?.first?.repositoryIdentity)
    #expect(pins.id == replicaID && pins.signingKey == replicaKey && pins.repository == url)
    #expect(pins.recordedFrom == "copy-s1")
    #expect(r.events.contains { $0.reason == "RepositoryPinned" && $0.message.hasPrefix("Replica dr-gcs:") })
    #expect(o.status.repositoryIdentity == nil, "the primary's pins come from backups only")

    // Kept while the replica's repository stays; a later copy reporting another identity is a conflict.
    var p2 = p
    p2.status = o.status
    let swapped = copy("s2", at: -100, target: url, id: primaryID, key: replicaKey)
    var o2 = try outcome(p2)
    let r2 = ReplicationLogic.apply(policy: p2, copies: [first, swapped], canCopy: true, now: testNow, outcome: &o2)
    #expect(o2.status.replicas?.first?.repositoryIdentity == pins)
    #expect(!r2.events.contains { $0.reason == "RepositoryPinned" })
    // Before any pins are recorded, two copies reporting different identities are a conflict; the first is kept.
    var o3 = try outcome(p)
    let r3 = ReplicationLogic.apply(policy: p, copies: [first, swapped], canCopy: true, now: testNow, outcome: &o3)
    #expect(o3.status.replicas?.first?.repositoryIdentity?.recordedFrom == "copy-s1")
    let conflict = try #require(r3.events.first { $0.reason == "RepositoryIdentityConflict" })
    #expect(conflict.warning && conflict.message.contains("copy-s2") && conflict.message.hasPrefix("Replica dr-gcs:"))

    // The replica's repository moves: its pins go, and copies of the old location do not pin the new one.
    var moved = p2
    moved.spec.replicas![0].repository.gcs?.bucket = "dr-bucket-2"
    var o4 = try outcome(moved)
    _ = ReplicationLogic.apply(policy: moved, copies: [first], canCopy: true, now: testNow, outcome: &o4)
    #expect(o4.status.replicas?.first?.repositoryIdentity == nil)
  }

  /// Copy Jobs pass the replica's pins as --to-expect-* and the primary's as --expect-*; rotations of the replica
  /// and restores from it pass the replica's as --expect-*.
  @Test func jobsThatOpenTheReplicaCarryItsPins() throws {
    var p = replicatedPolicy()
    let replicaURL = try #require(ReplicaInvocation.repositoryURL(p.spec, p.spec.replicas![0]))
    var st = BackupPolicyStatus()
    st.repositoryIdentity = RepositoryIdentity(
      repository: try EngineInvocation(policy: p) { $0 }.repoURL, id: primaryID, signingKey: primaryKey)
    var rs = ReplicaStatus(name: "dr-gcs", lastCopyTime: testNow)
    rs.repositoryIdentity = RepositoryIdentity(repository: replicaURL, id: replicaID, signingKey: replicaKey)
    st.replicas = [rs]
    p.status = st
    let input = ChildInputs(
      policy: p, effective: try EffectivePolicy(spec: p.spec, now: testNow), settings: settings(),
      secrets: replicaSecrets)
    let job = try ReplicationChildren.copyJob(input, index: 0, snapshot: "s1", backupTime: testNow)
    let args = argv(job.body[path: "spec", "template", "spec", "containers"]?[0])
    func value(_ flag: String) -> String? {
      args.firstIndex(of: EngineFlag.long(flag)).flatMap { args.indices.contains($0 + 1) ? args[$0 + 1] : nil }
    }
    #expect(value(EngineFlag.expectRepositoryID) == primaryID && value(EngineFlag.expectSigningKey) == primaryKey)
    #expect(value(EngineFlag.toExpectRepositoryID) == replicaID, "\(args)")
    #expect(value(EngineFlag.toExpectSigningKey) == replicaKey, "\(args)")

    let rotation = try ReplicationChildren.rotationJob(input, index: 0, ReplicaRotationJob(token: "t1"))
    let rot = argv(rotation.body[path: "spec", "template", "spec", "containers"]?[0])
    #expect(rot.contains(replicaID) && rot.contains(replicaKey) && !rot.contains(primaryID), "\(rot)")

    let restore = try ReplicaSource.invocation(p, replica: "dr-gcs", field: "spec.replica") { $0 }
    #expect(restore.common.expectedRepositoryID == replicaID && restore.common.expectedSigningKey == replicaKey)
    #expect(try EngineInvocation(policy: p) { $0 }.common.expectedRepositoryID == primaryID)

    // Pins of another location (the replica moved since) are not passed.
    var moved = p
    moved.spec.replicas![0].repository.gcs?.bucket = "dr-bucket-2"
    let movedJob = try ReplicationChildren.copyJob(
      ChildInputs(
        policy: moved, effective: try EffectivePolicy(spec: moved.spec, now: testNow), settings: settings(),
        secrets: replicaSecrets), index: 0, snapshot: "s1", backupTime: testNow)
    let movedArgs = argv(movedJob.body[path: "spec", "template", "spec", "containers"]?[0])
    #expect(!movedArgs.contains(EngineFlag.long(EngineFlag.toExpectRepositoryID)) && !movedArgs.contains(replicaID))
  }
}
