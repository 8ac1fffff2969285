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
