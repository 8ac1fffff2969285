import DRAPI
import EngineContract
import Foundation
import KubeCore
import Reconcilers
import Testing

@testable import BackupEngine

/// Issue 14 item 5 for replicas across the boundary: the real engine's copy result → the controller's replication
/// status → the copy Job's and a verify-from-replica's arguments → the engine, which then refuses a replica replaced
/// under the same location and does not re-create a vanished one.
@Suite struct ReplicaPinsTests {
  static let now = Date()

  /// The primary at `repo` and one replica "dr" at `replica` under its own local key.
  static func policy(repo: String, replica: String) -> BackupPolicy {
    var meta = ObjectMeta(name: "rpins", namespace: "shop")
    meta.uid = "uid-rpins"
    var spec = BackupPolicySpec(
      tier: .standard, source: BackupSource(pvc: PVCSource(claimName: "data")),
      repository: RepositorySpec(local: LocalRepository(path: repo)),
      encryption: EncryptionSpec(kms: KMSSpec(localKeySecretRef: SecretReference(name: "kek", key: "key"))))
    spec.replicas = [
      ReplicaSpec(
        name: "dr", repository: RepositorySpec(local: LocalRepository(path: replica)),
        encryption: EncryptionSpec(kms: KMSSpec(localKeySecretRef: SecretReference(name: "kek2", key: "key"))))
    ]
    return BackupPolicy(metadata: meta, spec: spec)
  }

  static let secrets = [
    "kek": Secret(metadata: ObjectMeta(name: "kek", namespace: "shop"), data: ["key": Data(count: 32)]),
    "kek2": Secret(metadata: ObjectMeta(name: "kek2", namespace: "shop"), data: ["key": Data(count: 32)]),
  ]

  /// The copy Job's engine arguments, as the controller builds them for `policy`.
  static func copyArgs(_ policy: BackupPolicy, snapshot: String) throws -> [String] {
    let job = try ReplicationChildren.copyJob(
      ChildInputs(
        policy: policy, effective: try EffectivePolicy(spec: policy.spec, now: now),
        settings: ControllerSettings(engineImage: "botrt/engine:1", cronJobAPIVersion: "batch/v1", calicoServed: false),
        secrets: secrets), index: 0, snapshot: snapshot, backupTime: now.addingTimeInterval(-30))
    let c = try #require(job.body[path: "spec", "template", "spec", "containers"]?.arrayValue?.first)
    return (c["args"]?.arrayValue ?? []).compactMap(\.stringValue)
  }

  @Test func theFirstCopyPinsTheReplicaAndLaterCopiesAndRestoresFromItRefuseAReplacedOne() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/a.txt", Data("hello\n".utf8))
    try h.write("kek2", Data(Crypto.randomBytes(32)))
    let replica = h.dir + "/replica"
    var policy = Self.policy(repo: h.repo, replica: replica)
    #expect(try h.run(["init"]).code == 0)
    let backup = try h.run(["backup", h.dir + "/src"])
    let snapshot = try #require(backup.result["snapshotId"] as? String, "\(backup.stderr)")

    /// The controller's arguments with the keys this test has (the Secret mounts of the Pod).
    func engineArgs(_ args: [String]) -> [String] {
      var a = args
      if let i = a.firstIndex(of: EngineFlag.long(EngineFlag.kms)) {
        a[i + 1] = a.first == EngineCommandName.copy ? h.kmsURL : "file://\(h.dir)/kek2"
      }
      if let i = a.firstIndex(of: EngineFlag.long(EngineFlag.toKMS)) { a[i + 1] = "file://\(h.dir)/kek2" }
      return a
    }
    func status(_ policy: BackupPolicy, copies: [CopyRun]) throws -> (BackupPolicyStatus, [PlannedEvent]) {
      var res = EngineResult(ok: true, snapshotId: snapshot)
      res.snapshotTime = ISO8601DateFormatter().string(from: Self.now.addingTimeInterval(-30))
      let run = BackupRun(
        jobName: "rpins-backup-1", state: .succeeded, startTime: Self.now.addingTimeInterval(-35),
        finishTime: Self.now.addingTimeInterval(-30), result: res)
      var o = BackupPolicyStatusLogic.compute(
        policy: policy, effective: try EffectivePolicy(spec: policy.spec, now: Self.now), problem: nil, runs: [run],
        backupNamespace: "botrt-backup", handledTrigger: nil, childSummary: "ok", now: Self.now)
      let r = ReplicationLogic.apply(policy: policy, copies: copies, canCopy: true, now: Self.now, outcome: &o)
      return (o.status, r.events)
    }

    // No pins before the first copy; the copy creates the replica and its result is read as the controller reads a
    // termination message.
    let before = try Self.copyArgs(policy, snapshot: snapshot)
    #expect(!before.contains(EngineFlag.long(EngineFlag.toExpectRepositoryID)))
    let first = try h.run(engineArgs(before), withRepo: false)
    #expect(first.code == 0, "\(first.stderr)")
    let result = try #require(EngineResult.parse(first.resultLine))
    let run = CopyRun(
      jobName: "rpins-copy-1", replica: "dr", sourceSnapshot: snapshot,
      sourceBackupTime: Self.now.addingTimeInterval(-30),
      state: .succeeded, startTime: Self.now.addingTimeInterval(-20), finishTime: Self.now.addingTimeInterval(-10),
      result: result)
    let (st, events) = try status(policy, copies: [run])
    let identity = try #require(
      st.replicas?.first?.repositoryIdentity, "the copy's result names \(result.targetRepository ?? "no target")")
    #expect(identity.id == result.targetRepositoryId && identity.signingKey == result.targetSigningKey)
    #expect(identity.id != result.repositoryId, "the source's identity is not the replica's")
    #expect(identity.recordedFrom == "rpins-copy-1")
    #expect(events.contains { $0.reason == "RepositoryPinned" && $0.message.contains(identity.id) })

    // Later copy Jobs carry the pins, and they work on the real replica; so does a restore from the replica.
    policy.status = st
    let after = try Self.copyArgs(policy, snapshot: snapshot)
    #expect(after.contains(identity.id) && after.contains(identity.signingKey), "\(after)")
    let second = try h.run(engineArgs(after), withRepo: false)
    #expect(second.code == 0, "\(second.stderr)")
    let fromReplica = try ReplicaSource.invocation(policy, replica: "dr", field: "spec.replica") { $0 }
    let verify = EngineArguments.verify(
      EngineVerifyArguments(common: fromReplica.common, which: .latest, readData: true, requireSnapshot: nil)
    ).argv
    #expect(verify.contains(identity.id) && verify.contains(identity.signingKey), "\(verify)")
    let verified = try h.run(engineArgs(verify), withRepo: false)
    #expect(verified.code == 0, "\(verified.stderr)")

    // The replica is replaced with another repository: the pinned copy writes nothing into it, and a verify or
    // restore from the replica refuses it.
    try FileManager.default.removeItem(atPath: replica)
    let planted = try h.run(
      ["init", "--repo", "file://" + replica, "--kms", "file://\(h.dir)/kek2", "--quiet"], withRepo: false)
    #expect(planted.code == 0, "\(planted.stderr)")
    let plantedFiles = CopyTargetPinsTests.snapshotOfFiles(replica)
    let refused = try h.run(engineArgs(after), withRepo: false)
    #expect(refused.code == EngineExitCode.integrity, "\(refused.stderr)")
    #expect(CopyTargetPinsTests.snapshotOfFiles(replica) == plantedFiles, "the planted repository was written to")
    let refusedVerify = try h.run(engineArgs(verify), withRepo: false)
    #expect(refusedVerify.code == EngineExitCode.integrity, "\(refusedVerify.stderr)")

    // The replica vanishes: the pinned copy does not re-create it.
    try FileManager.default.removeItem(atPath: replica)
    let vanished = try h.run(engineArgs(after), withRepo: false)
    #expect(vanished.code == EngineExitCode.integrity, "\(vanished.stderr)")
    #expect(!FileManager.default.fileExists(atPath: replica + "/config"))

    // The replica's repository moves: the pins are dropped from its Jobs and its status.
    var moved = policy
    moved.spec.replicas?[0].repository = RepositorySpec(local: LocalRepository(path: replica + "-new"))
    #expect(!(try Self.copyArgs(moved, snapshot: snapshot)).contains(EngineFlag.long(EngineFlag.toExpectRepositoryID)))
    #expect(try status(moved, copies: [run]).0.replicas?.first?.repositoryIdentity == nil)
  }
}
