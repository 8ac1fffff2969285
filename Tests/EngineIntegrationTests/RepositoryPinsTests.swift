import DRAPI
import EngineContract
import Foundation
import KubeCore
import Reconcilers
import Testing

/// Issue 14 item 5 across the boundary: the engine's result (real binary) → the controller's status logic → the
/// backup CronJob's arguments → the engine, which then refuses a repository replaced under the same location.
@Suite struct RepositoryPinsTests {
  static let now = Date()

  static func policy(repo: String) -> BackupPolicy {
    var meta = ObjectMeta(name: "pins", namespace: "shop")
    meta.uid = "uid-pins"
    let spec = BackupPolicySpec(
      tier: .standard, source: BackupSource(pvc: PVCSource(claimName: "data")),
      repository: RepositorySpec(local: LocalRepository(path: repo)),
      encryption: EncryptionSpec(kms: KMSSpec(localKeySecretRef: SecretReference(name: "kek", key: "key"))))
    return BackupPolicy(metadata: meta, spec: spec)
  }

  /// The backup CronJob's engine arguments, as the controller builds them for `policy`.
  static func backupArgs(_ policy: BackupPolicy) throws -> [String] {
    let children = try BackupPolicyChildren.build(
      ChildInputs(
        policy: policy, effective: try EffectivePolicy(spec: policy.spec, now: now),
        settings: ControllerSettings(engineImage: "botrt/engine:1", cronJobAPIVersion: "batch/v1", calicoServed: false),
        secrets: ["kek": Secret(metadata: ObjectMeta(name: "kek", namespace: "shop"), data: ["key": Data(count: 32)])]))
    let names = ChildNames(namespace: "shop", name: "pins")
    let cron = try #require(children.first { $0.resource.kind == "CronJob" && $0.name == names.backupCronJob })
    let containers = try #require(
      cron.body[path: "spec", "jobTemplate", "spec", "template", "spec", "containers"]?.arrayValue)
    let args = try #require(containers.first { $0["name"]?.stringValue == "backup" }?["args"]?.arrayValue)
    return args.compactMap(\.stringValue)
  }

  @Test func theFirstResultPinsTheRepositoryAndEveryLaterJobRefusesAReplacedOne() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/a.txt", Data("hello\n".utf8))
    var policy = Self.policy(repo: h.repo)

    // No pins before the first run.
    let before = try Self.backupArgs(policy)
    #expect(!before.contains(EngineFlag.long(EngineFlag.expectRepositoryID)))

    // The first backup creates the repository; its result is read as the controller reads a termination message.
    func engineArgs(_ args: [String]) -> [String] {
      // The controller's arguments with the key and data this test has (the Secret and claim mounts of the Pod).
      var a = args
      if let i = a.firstIndex(of: EngineFlag.long(EngineFlag.kms)) { a[i + 1] = h.kmsURL }
      // The claim's mount path, the backup's one path argument.
      if a.last?.hasPrefix("/backup/") == true { a[a.count - 1] = h.dir + "/src" }
      return a
    }
    let first = try h.run(engineArgs(before), withRepo: false)
    #expect(first.code == 0, "\(first.stderr)")
    let line = first.resultLine
    let result = try #require(EngineResult.parse(line))
    let run = BackupRun(
      jobName: "pins-backup-1", state: .succeeded, startTime: Self.now.addingTimeInterval(-5), finishTime: Self.now,
      result: result)
    let url = try EngineInvocation(policy: policy) { $0 }.repoURL
    let pinned = BackupPolicyStatusLogic.repositoryIdentity(previous: nil, runs: [run], repositoryURL: url)
    let identity = try #require(pinned.identity, "the engine's result names \(result.repository ?? "no repository")")
    #expect(identity.id == result.repositoryId && identity.signingKey == result.signingKey)
    #expect(identity.recordedFrom == "pins-backup-1")

    // Every later Job carries the pins, and they work on the real repository.
    policy.status = BackupPolicyStatus()
    policy.status?.repositoryIdentity = identity
    let after = try Self.backupArgs(policy)
    #expect(after.contains(identity.id) && after.contains(identity.signingKey))
    let second = try h.run(engineArgs(after), withRepo: false)
    #expect(second.code == 0, "\(second.stderr)")

    // The repository is deleted: the pinned Job does not quietly create a new one.
    try FileManager.default.removeItem(atPath: h.repo)
    let vanished = try h.run(engineArgs(after), withRepo: false)
    #expect(vanished.code == EngineExitCode.integrity, "\(vanished.stderr)")
    #expect(vanished.stderr.contains(identity.id), "\(vanished.stderr)")
    #expect(!FileManager.default.fileExists(atPath: h.repo + "/config"))

    // Someone with write access creates another repository there: the pinned Job refuses it, naming both ids.
    let planted = try h.run(engineArgs(before), withRepo: false)
    #expect(planted.code == 0, "\(planted.stderr)")
    let refused = try h.run(engineArgs(after), withRepo: false)
    #expect(refused.code == EngineExitCode.integrity, "\(refused.stderr)")
    #expect(refused.stderr.contains("was expected"), "\(refused.stderr)")

    // The spec moves the repository: the pins are dropped and the next result pins the new location.
    var moved = policy
    moved.spec.repository = RepositorySpec(local: LocalRepository(path: h.repo + "-new"))
    let movedURL = try EngineInvocation(policy: moved) { $0 }.repoURL
    #expect(!(try Self.backupArgs(moved)).contains(EngineFlag.long(EngineFlag.expectRepositoryID)))
    #expect(
      BackupPolicyStatusLogic.repositoryIdentity(previous: identity, runs: [run], repositoryURL: movedURL).identity
        == nil)
  }
}
