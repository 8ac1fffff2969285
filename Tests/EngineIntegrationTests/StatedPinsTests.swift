import DRAPI
import EngineContract
import Foundation
import KubeCore
import Reconcilers
import Testing

@testable import BackupEngine

/// Issue 14, pins the admin states (`repository.expectedIdentity`), played as the attacker with the real engine: a
/// repository replaced before the controller's first run, on a policy and on a DR cluster's restore-only policy with
/// an empty status, and a replica replaced before the first copy. The controller's Jobs (built by its builders) are
/// run by the engine binary with only the Pod's mounts swapped for this test's paths.
@Suite struct StatedPinsTests {
  static let now = Date()

  /// The genuine repository's identity, as its first run's result reports it (what an admin reads and states).
  static func identity(_ out: CLIHarness.Output) throws -> ExpectedRepositoryIdentity {
    let r = try #require(EngineResult.parse(out.resultLine), "\(out.stderr)")
    return ExpectedRepositoryIdentity(
      repositoryId: try #require(r.repositoryId), signingKey: try #require(r.signingKey))
  }

  /// The engine arguments of every engine container of a Job or CronJob body.
  static func engineArgs(_ body: JSONValue) -> [[String]] {
    let pod = body[path: "spec", "jobTemplate", "spec", "template", "spec"] ?? body[path: "spec", "template", "spec"]
    let cs = (pod?["initContainers"]?.arrayValue ?? []) + (pod?["containers"]?.arrayValue ?? [])
    return cs.map { ($0["args"]?.arrayValue ?? []).compactMap(\.stringValue) }.filter {
      $0.contains(EngineFlag.long(EngineFlag.repo))
    }
  }

  /// A Job's arguments with this test's key and paths in place of the Pod's Secret and volume mounts.
  static func local(_ args: [String], h: CLIHarness, kms: String? = nil, target: String? = nil) -> [String] {
    // The Pod's files (the termination message, the drill's shared restore result) in the test's directory: never
    // the host's /dev or /tmp, which other tests share.
    var a = args.map {
      $0 == "/dev/termination-log"
        ? h.dir + "/termination-log" : $0 == RecoveryJobs.restoreResultShare ? h.dir + "/restore-result.json" : $0
    }
    if let i = a.firstIndex(of: EngineFlag.long(EngineFlag.kms)) { a[i + 1] = kms ?? h.kmsURL }
    if let target, let i = a.firstIndex(of: EngineFlag.long(EngineFlag.target)) { a[i + 1] = target }
    // The backup's one path argument, the source claim's mount.
    if a.first == EngineCommandName.backup, a.last?.hasPrefix("/") == true { a[a.count - 1] = h.dir + "/src" }
    return a
  }

  /// Replaces the repository at `path` with a new one the attacker made (with the policy's own key: only the pins
  /// tell it apart) holding a file of theirs; returns its identity. The genuine one is kept at `path.genuine`.
  static func plant(_ h: CLIHarness, at path: String, kms: String) throws -> ExpectedRepositoryIdentity {
    try FileManager.default.moveItem(atPath: path, toPath: path + ".genuine")
    try h.write("evil/planted.txt", Data("attacker\n".utf8))
    let planted = try h.run(
      ["backup", h.dir + "/evil", "--repo", "file://" + path, "--kms", kms, "--init-if-missing", "--quiet"],
      withRepo: false)
    #expect(planted.code == 0, "\(planted.stderr)")
    return try identity(planted)
  }

  /// Puts the genuine repository back at `path`.
  static func restoreGenuine(at path: String) throws {
    try FileManager.default.removeItem(atPath: path)
    try FileManager.default.moveItem(atPath: path + ".genuine", toPath: path)
  }

  @Test func aRepositoryReplacedBeforeTheFirstBackupIsRefusedWhenItsIdentityIsStated() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/a.txt", Data("hello\n".utf8))
    // The genuine repository exists (made on the primary cluster, or by hand); its result gives the identity.
    #expect(try h.run(["init"]).code == 0)
    let genuine = try Self.identity(try h.run(["backup", h.dir + "/src"]))
    // What the docs tell an admin to read: `snapshots --json` reports the same identity.
    let listed = try h.run(["snapshots", "--json"])
    #expect(listed.code == 0, "\(listed.stderr)")
    #expect(try Self.identity(listed) == genuine)
    // Before the controller's first backup, the attacker replaces it.
    let planted = try Self.plant(h, at: h.repo, kms: h.kmsURL)
    #expect(planted.repositoryId != genuine.repositoryId)
    let plantedFiles = CopyTargetPinsTests.snapshotOfFiles(h.repo)

    var policy = RepositoryPinsTests.policy(repo: h.repo)
    policy.spec.verify = PolicyVerifySpec(schedule: "0 4 * * *")
    #expect(policy.status == nil, "nothing pinned yet: trust on first use would take the planted repository")
    let unstated = try Self.local(RepositoryPinsTests.backupArgs(policy), h: h)
    #expect(!unstated.contains(EngineFlag.long(EngineFlag.expectRepositoryID)))
    policy.spec.repository.expectedIdentity = genuine

    // Every CronJob of the policy (backup, prune, verify) passes the stated identity and is refused, writing nothing.
    let children = try BackupPolicyChildren.build(
      ChildInputs(
        policy: policy, effective: try EffectivePolicy(spec: policy.spec, now: Self.now),
        settings: ControllerSettings(engineImage: "botrt/engine:1", cronJobAPIVersion: "batch/v1", calicoServed: false),
        secrets: ["kek": Secret(metadata: ObjectMeta(name: "kek", namespace: "shop"), data: ["key": Data(count: 32)])]))
    let crons = children.filter { $0.resource.kind == "CronJob" }.flatMap { Self.engineArgs($0.body) }
    #expect(
      Set(crons.compactMap(\.first)).isSuperset(of: [
        EngineCommandName.backup, EngineCommandName.forget, EngineCommandName.verify,
      ]), "\(crons)")
    for args in crons {
      #expect(args.contains(genuine.repositoryId) && args.contains(genuine.signingKey), "\(args)")
      let refused = try h.run(Self.local(args, h: h), withRepo: false)
      #expect(refused.code == EngineExitCode.integrity, "\(args.first ?? ""): \(refused.stderr)")
      #expect(refused.stderr.contains(genuine.repositoryId), "\(refused.stderr)")
      #expect(CopyTargetPinsTests.snapshotOfFiles(h.repo) == plantedFiles, "\(args.first ?? "") wrote into it")
    }
    let backup = try Self.local(RepositoryPinsTests.backupArgs(policy), h: h)

    // The location is empty (the attacker deleted the repository): the stated backup does not create a new one.
    try FileManager.default.moveItem(atPath: h.repo, toPath: h.repo + ".planted")
    let vanished = try h.run(backup, withRepo: false)
    #expect(vanished.code == EngineExitCode.integrity, "\(vanished.stderr)")
    #expect(!FileManager.default.fileExists(atPath: h.repo + "/config"))
    try FileManager.default.moveItem(atPath: h.repo + ".planted", toPath: h.repo)

    // Without the statement, the same backup goes into the planted repository and its result would be pinned: the
    // gap the statement closes.
    let tofu = try h.run(unstated, withRepo: false)
    #expect(tofu.code == 0, "\(tofu.stderr)")
    #expect(try Self.identity(tofu) == planted)

    // The genuine repository is back: the stated backup succeeds, and its result replaces a record of the planted
    // identity (as trust on first use had recorded it) in status.
    try Self.restoreGenuine(at: h.repo)
    let ok = try h.run(backup, withRepo: false)
    #expect(ok.code == 0, "\(ok.stderr)")
    let result = try #require(EngineResult.parse(ok.resultLine))
    let url = try EngineInvocation(policy: policy) { $0 }.repoURL
    let run = BackupRun(
      jobName: "pins-backup-2", state: .succeeded, startTime: Self.now.addingTimeInterval(-5), finishTime: Self.now,
      result: result)
    let plantedRecord = RepositoryIdentity(
      repository: url, id: planted.repositoryId, signingKey: planted.signingKey, recordedFrom: "pins-backup-1")
    let pins = BackupPolicyStatusLogic.repositoryIdentity(
      previous: plantedRecord, runs: [run], repositoryURL: url, stated: genuine)
    #expect(pins.identity?.id == genuine.repositoryId && pins.identity?.signingKey == genuine.signingKey)
    #expect(pins.identity?.recordedFrom == "pins-backup-2")
  }

  @Test func aRestoreOnlyPolicysRestoreAndDrillRefuseAPlantedRepository() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/a.txt", Data("genuine\n".utf8))
    #expect(try h.run(["init"]).code == 0)
    let genuine = try Self.identity(try h.run(["backup", h.dir + "/src"]))

    // The DR cluster applies the policy from git: restore-only, the identity stated, no status at all.
    var policy = RepositoryPinsTests.policy(repo: h.repo)
    policy.spec.mode = .restoreOnly
    policy.spec.repository.expectedIdentity = genuine
    let plan = try KubeJSON.decoder().decode(
      RecoveryPlan.self,
      from: Data(
        """
        {"apiVersion": "dr.botrt.io/v1alpha1", "kind": "RecoveryPlan",
         "metadata": {"name": "dr", "namespace": "shop", "uid": "u-dr"},
         "spec": {"tier": "standard", "procedures": [{"name": "p", "steps": [
           {"name": "restore", "action": "restore",
            "restore": {"policyRef": {"name": "pins"}, "snapshot": "latest", "into": {"pvc": {"claimName": "data"}}}},
           {"name": "check", "action": "verify", "verify": {"policyRef": {"name": "pins"}, "readData": true}}]}]}}
        """.utf8))
    let ctx = RecoveryJobContext(
      settings: ControllerSettings(engineImage: "botrt/engine:1"), policies: ["pins": policy], namespace: "shop",
      labels: [:], owner: plan.ownerReference())
    var planArgs: [[String]] = []
    for step in try RecoveryPlanLogic.steps(plan.spec) where [.restore, .verify].contains(step.step.action) {
      planArgs += Self.engineArgs(try RecoveryJobs.stepJob(step, jobName: "dr-\(step.index)", ctx: ctx))
    }
    let drill = DRDrill(
      metadata: ObjectMeta(name: "weekly", namespace: "shop"),
      spec: DRDrillSpec(schedule: "@weekly", target: DrillTarget(backupPolicyRef: LocalObjectReference(name: "pins"))))
    let drillArgs = Self.engineArgs(
      try DrillLogic.runJob(
        drill, spec: try DrillLogic.runSpec(drill, plan: nil), namespace: "drill-scratch",
        settings: ControllerSettings(engineImage: "botrt/engine:1"), policies: ["pins": policy], timeoutSeconds: 600))
    let all = planArgs + drillArgs
    #expect(all.filter { $0.first == EngineCommandName.restore }.count == 2, "\(all)")
    #expect(all.filter { $0.first == EngineCommandName.verify }.count == 2, "\(all)")
    for a in all { #expect(a.contains(genuine.repositoryId) && a.contains(genuine.signingKey), "\(a)") }

    // Against the genuine repository the Jobs work.
    for (i, a) in all.enumerated() {
      let out = try h.run(Self.local(a, h: h, target: h.dir + "/restored-\(i)"), withRepo: false)
      #expect(out.code == 0, "\(a.first ?? ""): \(out.stderr)")
    }
    #expect(FileManager.default.contents(atPath: h.dir + "/restored-0/a.txt") == Data("genuine\n".utf8))

    // The attacker plants a repository in the bucket: every restore and verify refuses it and restores nothing.
    _ = try Self.plant(h, at: h.repo, kms: h.kmsURL)
    let plantedFiles = CopyTargetPinsTests.snapshotOfFiles(h.repo)
    for (i, a) in all.enumerated() {
      let target = h.dir + "/refused-\(i)"
      let out = try h.run(Self.local(a, h: h, target: target), withRepo: false)
      #expect(out.code == EngineExitCode.integrity, "\(a.first ?? ""): \(out.stderr)")
      #expect(out.stderr.contains(genuine.repositoryId), "\(out.stderr)")
      #expect(!FileManager.default.fileExists(atPath: target + "/planted.txt"), "the planted data was restored")
    }
    #expect(CopyTargetPinsTests.snapshotOfFiles(h.repo) == plantedFiles)
  }

  @Test func aReplicaReplacedBeforeTheFirstCopyReceivesNothingWhenItsIdentityIsStated() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/a.txt", Data("hello\n".utf8))
    try h.write("kek2", Data(Crypto.randomBytes(32)))
    let kek2 = "file://\(h.dir)/kek2"
    let replica = h.dir + "/replica"
    #expect(try h.run(["init"]).code == 0)
    let backup = try h.run(["backup", h.dir + "/src"])
    let snapshot = try #require(backup.result["snapshotId"] as? String, "\(backup.stderr)")
    // The admin made the replica's repository and reads its identity from the result.
    let genuine = try Self.identity(
      try h.run(["init", "--repo", "file://" + replica, "--kms", kek2, "--quiet"], withRepo: false))

    var policy = ReplicaPinsTests.policy(repo: h.repo, replica: replica)
    policy.spec.replicas?[0].repository.expectedIdentity = genuine
    func local(_ args: [String]) -> [String] {
      var a = args
      if let i = a.firstIndex(of: EngineFlag.long(EngineFlag.kms)) {
        a[i + 1] = a.first == EngineCommandName.copy ? h.kmsURL : kek2
      }
      if let i = a.firstIndex(of: EngineFlag.long(EngineFlag.toKMS)) { a[i + 1] = kek2 }
      return a
    }
    let copy = try ReplicaPinsTests.copyArgs(policy, snapshot: snapshot)
    #expect(copy.contains(genuine.repositoryId) && copy.contains(genuine.signingKey), "\(copy)")
    var restoreOnly = policy
    restoreOnly.spec.mode = .restoreOnly
    let fromReplica = try ReplicaSource.invocation(restoreOnly, replica: "dr", field: "spec.replica") { $0 }
    let verify = EngineArguments.verify(
      EngineVerifyArguments(common: fromReplica.common, which: .latest, readData: true, requireSnapshot: nil)
    ).argv
    #expect(verify.contains(genuine.repositoryId) && verify.contains(genuine.signingKey), "\(verify)")

    // Replaced before the first copy: the copy writes nothing into it, and a verify from the replica refuses it.
    _ = try Self.plant(h, at: replica, kms: kek2)
    let plantedFiles = CopyTargetPinsTests.snapshotOfFiles(replica)
    let refused = try h.run(local(copy), withRepo: false)
    #expect(refused.code == EngineExitCode.integrity, "\(refused.stderr)")
    #expect(refused.stderr.contains(genuine.repositoryId), "\(refused.stderr)")
    #expect(CopyTargetPinsTests.snapshotOfFiles(replica) == plantedFiles, "the planted replica was written to")
    let refusedVerify = try h.run(local(verify), withRepo: false)
    #expect(refusedVerify.code == EngineExitCode.integrity, "\(refusedVerify.stderr)")

    // The genuine replica: the copy and the verify from it succeed.
    try Self.restoreGenuine(at: replica)
    let copied = try h.run(local(copy), withRepo: false)
    #expect(copied.code == 0, "\(copied.stderr)")
    let verified = try h.run(local(verify), withRepo: false)
    #expect(verified.code == 0, "\(verified.stderr)")
  }
}
