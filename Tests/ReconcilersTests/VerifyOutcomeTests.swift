import DRAPI
import EngineContract
import Foundation
import KubeCore
import KubeRuntime
import Testing

@testable import Reconcilers

/// The verify CronJob's runs are read back: the newest finished one sets status.lastVerify, RepositoryVerified and the
/// verify metrics.
@Suite struct VerifyOutcomeTests {
  func run(_ name: String, _ state: BackupRun.State, finished: TimeInterval, result: EngineResult? = nil) -> BackupRun {
    BackupRun(
      jobName: name, state: state, startTime: testNow.addingTimeInterval(finished - 60),
      finishTime: state == .running ? nil : testNow.addingTimeInterval(finished), result: result,
      exitCode: state == .failed ? 5 : nil, failureMessage: state == .failed ? "BackoffLimitExceeded" : nil)
  }

  func passed(snapshots: Int = 3, bytes: Int64 = 4096) -> EngineResult {
    var r = EngineResult(command: "verify", ok: true, exitCode: 0, errors: [])
    r.snapshotsVerified = snapshots
    r.bytesDownloaded = bytes
    return r
  }

  /// What the engine writes for a verify that found problems: each problem, then the error it exits with.
  func failed(_ problems: [String]) -> EngineResult {
    var r = EngineResult(
      command: "verify", ok: false, exitCode: 5,
      errors: problems + ["integrity: repository: \(problems.count) problems found; first: \(problems[0])"])
    r.snapshotsVerified = 3
    r.bytesDownloaded = 1024
    return r
  }

  func policy(verify: Bool = true, status: BackupPolicyStatus? = nil) -> BackupPolicy {
    var meta = ObjectMeta(name: "db", namespace: "shop")
    meta.generation = 2
    var spec = BackupPolicySpec(
      tier: .standard, source: BackupSource(pvc: PVCSource(claimName: "data")),
      repository: RepositorySpec(local: LocalRepository(path: "/backups", claimName: "backups")),
      encryption: EncryptionSpec(kms: KMSSpec(localKeySecretRef: SecretReference(name: "kek", key: "key"))))
    if verify { spec.verify = PolicyVerifySpec(schedule: "0 4 * * 0") }
    var p = BackupPolicy(metadata: meta, spec: spec)
    p.status = status
    return p
  }

  @Test func noFinishedRunIsUnknownNoVerifyYet() {
    for runs in [[], [run("db-verify-1", .running, finished: 0)]] {
      let v = VerifyOutcome.evaluate(runs, previous: nil)
      #expect(v.status == .unknown && v.reason == "NoVerifyYet")
      #expect(v.lastVerify == nil && !v.failing && v.lastSuccess == nil)
      var s = BackupPolicyStatus()
      #expect(v.apply(to: &s, generation: 2, now: testNow) == nil)
      #expect(s.conditions?.condition(BackupPolicyCondition.repositoryVerified)?.status == .unknown)
      #expect(s.lastVerify == nil)
    }
  }

  @Test func aPassedRunIsTrueWithWhatItChecked() throws {
    let v = VerifyOutcome.evaluate([run("db-verify-7", .succeeded, finished: 0, result: passed())], previous: nil)
    #expect(v.status == .true && v.reason == "VerifyPassed" && !v.failing)
    #expect(v.message.contains("db-verify-7") && v.message.contains("3 snapshots"))
    #expect(v.message.contains("4096 bytes"))
    #expect(
      v.lastVerify
        == VerifyRunStatus(
          time: testNow, job: "db-verify-7", succeeded: true, snapshots: 3, bytesDownloaded: 4096, errors: 0))
    #expect(v.lastSuccess == testNow)
    var s = BackupPolicyStatus()
    #expect(v.apply(to: &s, generation: 2, now: testNow) == nil)
    let c = try #require(s.conditions?.condition(BackupPolicyCondition.repositoryVerified))
    #expect(c.status == .true && c.reason == "VerifyPassed" && c.observedGeneration == 2)
    #expect(s.lastVerify?.job == "db-verify-7")
  }

  @Test func aFailedRunIsFalseNamingTheJobAndTheFirstProblem() throws {
    let problems = [
      "data/3f/3f2a9c: pack content does not match its hash", "snapshots/9a1b: 12 blobs are not in the index",
    ]
    let v = VerifyOutcome.evaluate(
      [
        run("db-verify-6", .succeeded, finished: -7 * 86_400, result: passed()),
        run("db-verify-7", .failed, finished: 0, result: failed(problems)),
      ], previous: nil)
    #expect(v.status == .false && v.reason == "VerifyFailed" && v.failing)
    #expect(v.message.contains("db-verify-7") && v.message.contains(problems[0]))
    #expect(v.message.contains("2 problems") && v.message.contains(VerifyOutcome.runbook))
    let last = try #require(v.lastVerify)
    #expect(!last.succeeded && last.errors == 2 && last.message == problems[0] && last.job == "db-verify-7")
    #expect(last.snapshots == 3 && last.bytesDownloaded == 1024)
    #expect(v.lastSuccess == testNow.addingTimeInterval(-7 * 86_400))

    // The first time it fails: a Warning Event; the same failure seen again: none.
    var s = BackupPolicyStatus()
    let e = try #require(v.apply(to: &s, generation: 2, now: testNow))
    #expect(e.warning && e.reason == "VerifyFailed" && e.message == v.message)
    #expect(v.apply(to: &s, generation: 2, now: testNow) == nil)
    #expect(s.conditions?.condition(BackupPolicyCondition.repositoryVerified)?.status == .false)
  }

  /// A run that failed without a result (the container was killed, the image could not be pulled): the Job's
  /// failure, no problem count.
  @Test func aFailedRunWithoutAResultNamesTheJobsFailure() throws {
    let v = VerifyOutcome.evaluate([run("db-verify-8", .failed, finished: 0)], previous: nil)
    #expect(v.status == .false && v.failing)
    #expect(v.lastVerify?.errors == nil && v.lastVerify?.message == "BackoffLimitExceeded")
    #expect(v.message.contains("db-verify-8 failed: BackoffLimitExceeded"))
    // A failure before any problem was listed (e.g. the repository could not be opened) is one error.
    let opened = VerifyOutcome.evaluate(
      [
        run(
          "db-verify-9", .failed, finished: 0,
          result: EngineResult(command: "verify", ok: false, exitCode: 4, errors: ["storage: 503 Slow Down"]))
      ], previous: nil)
    #expect(opened.lastVerify?.errors == 1 && opened.lastVerify?.message == "storage: 503 Slow Down")
  }

  @Test func theNewestFinishedRunWinsAgainstTheRecordedOne() throws {
    let recorded = VerifyRunStatus(
      time: testNow.addingTimeInterval(-86_400), job: "db-verify-5", succeeded: false, errors: 1, message: "bad")
    // A newer run replaces the record, whatever order the list has.
    let newer = VerifyOutcome.evaluate(
      [
        run("db-verify-7", .succeeded, finished: 0, result: passed()),
        run("db-verify-6", .failed, finished: -3600, result: failed(["x"])),
      ], previous: recorded)
    #expect(newer.lastVerify?.job == "db-verify-7" && newer.status == .true)
    // An older Job still in the cluster does not replace a newer record.
    let older = VerifyOutcome.evaluate(
      [run("db-verify-4", .succeeded, finished: -2 * 86_400, result: passed())], previous: recorded)
    #expect(older.lastVerify == recorded && older.status == .false && older.message.contains("db-verify-5"))
    #expect(older.lastSuccess == testNow.addingTimeInterval(-2 * 86_400))
    // The recorded run's Jobs were deleted (history limits): the record stays.
    let gone = VerifyOutcome.evaluate([], previous: recorded)
    #expect(gone.lastVerify == recorded && gone.status == .false)
    // A recorded success is the last success when no newer one is observed.
    let ok = VerifyRunStatus(time: testNow.addingTimeInterval(-60), job: "db-verify-3", succeeded: true)
    #expect(VerifyOutcome.evaluate([], previous: ok).lastSuccess == testNow.addingTimeInterval(-60))
    #expect(VerifyOutcome.evaluate([], previous: ok).status == .true)
  }

  @Test func unsettingVerifyRemovesTheConditionAndTheRecord() {
    var s = BackupPolicyStatus()
    _ = VerifyOutcome.evaluate([run("db-verify-7", .failed, finished: 0, result: failed(["x"]))], previous: nil)
      .apply(to: &s, generation: 1, now: testNow)
    #expect(s.lastVerify != nil && s.conditions?.condition(BackupPolicyCondition.repositoryVerified) != nil)
    s.conditions?.setCondition(
      type: BackupPolicyCondition.ready, status: .true, reason: "Applied", message: "", observedGeneration: 1,
      now: testNow)
    VerifyOutcome.remove(from: &s)
    #expect(s.lastVerify == nil)
    #expect(s.conditions?.condition(BackupPolicyCondition.repositoryVerified) == nil)
    #expect(s.conditions?.condition(BackupPolicyCondition.ready) != nil)
    // Nothing to remove: status is left as it was (no empty conditions list written).
    var empty = BackupPolicyStatus()
    VerifyOutcome.remove(from: &empty)
    #expect(empty == BackupPolicyStatus())
  }

  /// One list of the policy's prune and verify Jobs, split by their component label, each read from its own
  /// container.
  @Test func pruneAndVerifyJobsAreSplitByComponent() {
    func job(_ name: String, _ component: String) -> JSONValue {
      [
        "metadata": ["name": .string(name), "labels": [ChildLabels.component: .string(component)]],
        "status": [
          "succeeded": 1, "completionTime": "2026-05-28T22:00:00Z",
          "conditions": [["type": "Complete", "status": "True"]],
        ],
      ]
    }
    func pod(_ container: String, _ message: String) -> JSONValue {
      [
        "status": [
          "containerStatuses": [
            [
              "name": .string(container),
              "state": ["terminated": ["exitCode": 0, "message": .string(message)]],
            ]
          ]
        ]
      ]
    }
    let split = BackupPolicyReconciler.runsByComponent(
      [
        (job("db-prune-1", "prune"), [pod("prune", #"{"command":"forget","ok":true}"#)]),
        (job("db-verify-1", "verify"), [pod("verify", #"{"command":"verify","ok":true,"snapshotsVerified":4}"#)]),
        (job("db-backup-1", "backup"), [pod("backup", #"{"command":"backup","ok":true}"#)]),
      ], containers: ["prune": "prune", VerifyOutcome.component: VerifyOutcome.container])
    #expect(split.keys.sorted() == ["prune", "verify"])
    #expect(split["prune"]?.map(\.jobName) == ["db-prune-1"] && split["prune"]?.first?.result?.command == "forget")
    #expect(split["verify"]?.first?.result?.snapshotsVerified == 4)
  }

  /// The gauges: failing and the newest success, set with the policy's labels, removed without spec.verify.
  @Test func theMetricsFollowTheOutcomeAndGoWithoutVerify() {
    let registry = MetricsRegistry()
    let m = BackupPolicyMetrics(registry)
    let l = ["shop", "db", "standard"]
    let mine = ["namespace": "shop", "policy": "db"]
    m.recordVerify(VerifyOutcome.evaluate([], previous: nil), l, policy: mine)
    #expect(registry.value("botrt_verify_failing", labels: l) == nil)
    let v = VerifyOutcome.evaluate(
      [
        run("db-verify-6", .succeeded, finished: -86_400, result: passed()),
        run("db-verify-7", .failed, finished: 0, result: failed(["x"])),
      ], previous: nil)
    m.recordVerify(v, l, policy: mine)
    #expect(registry.value("botrt_verify_failing", labels: l) == 1)
    #expect(
      registry.value("botrt_verify_last_success_timestamp_seconds", labels: l)
        == testNow.addingTimeInterval(-86_400).timeIntervalSince1970)
    m.recordVerify(nil, l, policy: mine)
    #expect(registry.value("botrt_verify_failing", labels: l) == nil)
    #expect(registry.value("botrt_verify_last_success_timestamp_seconds", labels: l) == nil)
  }

  /// status.lastVerify survives the JSON round trip the status subresource makes, under the CRD's field names.
  @Test func lastVerifyEncodesUnderTheSchemasNames() throws {
    var s = BackupPolicyStatus()
    s.lastVerify = VerifyRunStatus(
      time: testNow, job: "db-verify-7", succeeded: false, snapshots: 3, bytesDownloaded: 10, errors: 2, message: "m")
    let json = try JSONDecoder().decode(JSONValue.self, from: try KubeJSON.encoder().encode(s))
    let keys = Set(json["lastVerify"]?.objectValue?.keys.map { $0 } ?? [])
    #expect(keys == ["time", "job", "succeeded", "snapshots", "bytesDownloaded", "errors", "message"])
    let back = try KubeJSON.decoder().decode(BackupPolicyStatus.self, from: try KubeJSON.encoder().encode(s))
    #expect(back.lastVerify == s.lastVerify)
  }
}
