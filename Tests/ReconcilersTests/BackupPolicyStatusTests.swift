import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

@Suite struct BackupPolicyStatusTests {
  func compute(
    _ p: BackupPolicy, runs: [BackupRun] = [], problem: PolicyProblem? = nil, now: Date = testNow
  ) throws -> StatusOutcome {
    let eff = try EffectivePolicy(spec: p.spec, now: now)
    return BackupPolicyStatusLogic.compute(
      policy: p, effective: eff, problem: problem, runs: runs, backupNamespace: "botrt-backup", handledTrigger: nil,
      childSummary: "All 13 children are in place.", now: now)
  }

  func condition(_ o: StatusOutcome, _ type: String) -> Condition? { o.status.conditions?.condition(type) }

  @Test func engineResultIsParsedFromTheTerminationMessage() {
    let r = EngineResult.parse(
      #"{"command":"backup","ok":true,"exitCode":0,"snapshotId":"abc","bytesRead":100,"bytesStored":40,"durationSeconds":1.5,"errors":[],"keyWraps":1}"#
    )
    #expect(r?.snapshotId == "abc")
    #expect(r?.bytesRead == 100)
    #expect(EngineResult.parse("sh: pg_dump: not found") == nil)
    #expect(EngineResult.parse(nil) == nil)
  }

  @Test func runIsObservedFromJobAndPod() throws {
    let job: JSONValue = [
      "metadata": ["name": "j1"],
      "status": [
        "startTime": "2026-05-28T20:00:00Z", "completionTime": "2026-05-28T20:00:30Z", "succeeded": 1,
        "conditions": [["type": "Complete", "status": "True", "lastTransitionTime": "2026-05-28T20:00:30Z"]],
      ],
    ]
    let pod: JSONValue = [
      "status": [
        "containerStatuses": [
          [
            "name": "backup",
            "state": [
              "terminated": [
                "exitCode": 0, "finishedAt": "2026-05-28T20:00:29Z",
                "message": #"{"ok":true,"exitCode":0,"snapshotId":"s1","bytesRead":7}"#,
              ]
            ],
          ]
        ]
      ]
    ]
    let run = BackupRun.observe(job: job, pods: [pod])
    #expect(run.state == .succeeded)
    #expect(run.result?.snapshotId == "s1")
    #expect(run.finishTime == KubeJSON.parseDate("2026-05-28T20:00:30Z"))
    let failed: JSONValue = [
      "metadata": ["name": "j2"],
      "status": [
        "startTime": "2026-05-28T20:00:00Z",
        "conditions": [
          [
            "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit", "lastTransitionTime": "2026-05-28T20:01:00Z",
          ]
        ],
      ],
    ]
    let f = BackupRun.observe(job: failed, pods: [])
    #expect(f.state == .failed)
    #expect(f.failureMessage == "BackoffLimitExceeded: Job has reached the specified backoff limit")
  }

  @Test func freshPolicyAwaitsItsFirstBackupAndRequeuesAtTheDeadline() throws {
    let p = dumpPolicy()  // created 30 s before testNow, SOX: 60 s RPO
    let o = try compute(p)
    #expect(o.status.observedGeneration == 3)
    #expect(o.status.rpoTargetSeconds == 60)
    #expect(o.status.rpoSource == "compliance:sox")
    #expect(o.status.effectiveSchedule == "* * * * *")
    #expect(condition(o, "Ready")?.status == .true)
    // A 1-minute RPO gets no headroom below cron's every minute: Ready says so.
    #expect(condition(o, "Ready")?.reason == "ReadyWithWarnings")
    #expect(condition(o, "Ready")?.message.contains("leaves no headroom") == true)
    #expect(condition(o, "ScheduleActive")?.status == .true)
    #expect(condition(o, "RPOMet")?.status == .unknown)
    #expect(condition(o, "LastBackupSucceeded")?.reason == "NoBackupYet")
    #expect(o.status.nextScheduledRun == Date(timeIntervalSince1970: 1_780_000_020))
    // Requeue at the next run (20 s away) or when the RPO deadline passes (31 s away): the earlier one.
    #expect(o.requeueAt == Date(timeIntervalSince1970: 1_780_000_021))
    // 100 s later without a backup: RPOMet False, with an Event.
    var later = p
    later.status = o.status
    let o2 = try compute(later, now: testNow.addingTimeInterval(100))
    #expect(condition(o2, "RPOMet")?.status == .false)
    #expect(condition(o2, "RPOMet")?.reason == "NoSuccessfulBackup")
    #expect(o2.events.contains { $0.reason == "RPOViolated" && $0.warning })
  }

  /// The engine's storage figures: what the backup added and the repository's total; a result of an older engine
  /// without the total keeps the last known one.
  @Test func storageFiguresComeFromTheNewestSuccess() throws {
    var p = dumpPolicy()
    var result = EngineResult(ok: true, snapshotId: "s1", bytesRead: 1000, bytesStored: 400, durationSeconds: 4)
    result.repositoryStoredBytes = 9000
    let first = BackupRun(
      jobName: "j1", state: .succeeded, startTime: testNow.addingTimeInterval(-100),
      finishTime: testNow.addingTimeInterval(-90), result: result)
    let o = try compute(p, runs: [first])
    #expect(o.status.lastBackupStoredBytes == 400 && o.status.repositoryStoredBytes == 9000)
    p.status = o.status
    let older = BackupRun(
      jobName: "j2", state: .succeeded, startTime: testNow.addingTimeInterval(-20),
      finishTime: testNow.addingTimeInterval(-10),
      result: EngineResult(ok: true, snapshotId: "s2", bytesRead: 1000, bytesStored: 0, durationSeconds: 1))
    let o2 = try compute(p, runs: [first, older])
    #expect(o2.status.lastBackupStoredBytes == 0 && o2.status.repositoryStoredBytes == 9000)
  }

  @Test func rpoFlipsWithTimeAfterASuccess() throws {
    var p = dumpPolicy()
    let done = testNow.addingTimeInterval(-10)
    let run = BackupRun(
      jobName: "j1", state: .succeeded, startTime: done.addingTimeInterval(-5), finishTime: done,
      result: EngineResult(ok: true, snapshotId: "snap1", bytesRead: 1000, bytesStored: 400, durationSeconds: 4))
    let o = try compute(p, runs: [run])
    #expect(o.status.lastSuccessfulBackup == done)
    #expect(o.status.lastSnapshot == "snap1")
    #expect(o.status.lastBackupBytes == 1000)
    // The RPO age counts from the data's point in time: without the engine's snapshot time, the Job's start.
    #expect(o.status.lastSnapshotTime == done.addingTimeInterval(-5))
    #expect(o.status.rpoAgeSeconds == 15)
    #expect(condition(o, "RPOMet")?.status == .true)
    #expect(condition(o, "LastBackupSucceeded")?.status == .true)
    #expect(o.events.map(\.reason) == ["BackupSucceeded"])
    #expect(o.requeueAt == done.addingTimeInterval(61) || o.requeueAt! < done.addingTimeInterval(61))
    // The same world again: no new Events (idempotent).
    p.status = o.status
    let again = try compute(p, runs: [run])
    #expect(again.events.isEmpty)
    #expect(again.status == o.status)
    // The Job is gone (history limit) and time passes beyond the target: RPOMet False, the last success kept.
    let late = try compute(p, runs: [], now: done.addingTimeInterval(61))
    #expect(late.status.lastSuccessfulBackup == done)
    #expect(condition(late, "RPOMet")?.status == .false)
    #expect(condition(late, "RPOMet")?.reason == "RPOViolated")
    #expect(late.status.rpoAgeSeconds == 66)
    #expect(late.events.map(\.reason) == ["RPOViolated"])
    // The RPO message does not change with time alone (only the next run does), so no write per second.
    var settled = p
    settled.status = late.status
    let later = try compute(settled, runs: [], now: done.addingTimeInterval(500))
    #expect(later.status.conditions?.condition("RPOMet") == late.status.conditions?.condition("RPOMet"))
    #expect(later.status.rpoAgeSeconds == 505)
    #expect(later.events.isEmpty)
  }

  /// A long backup: the snapshot's data is from when it started reading (the engine's snapshotTime), so its RPO age
  /// counts from then, not from when the Job finished 50 s later.
  @Test func rpoAgeCountsFromTheSnapshotTimeNotTheCompletion() throws {
    let p = dumpPolicy()  // sox: RPO 1m
    let done = testNow.addingTimeInterval(-5)
    var result = EngineResult(ok: true, snapshotId: "snap1", bytesRead: 1000, durationSeconds: 50)
    result.snapshotTime = "2026-05-28T20:25:45.250Z"
    let snapshotTime = try #require(result.snapshotDate)
    let run = BackupRun(
      jobName: "j1", state: .succeeded, startTime: snapshotTime.addingTimeInterval(-2), finishTime: done, result: result
    )
    let o = try compute(p, runs: [run], now: snapshotTime.addingTimeInterval(70))
    #expect(o.status.lastSnapshotTime == snapshotTime)
    #expect(o.status.rpoAgeSeconds == 70)
    #expect(condition(o, "RPOMet")?.status == .false, "70 s old data misses a 1m RPO, though the Job ended later")
    #expect(condition(o, "RPOMet")?.message.contains("2026-05-28T20:25:45") == true)
  }

  @Test func failedRunIsReportedOnce() throws {
    var p = dumpPolicy()
    let run = BackupRun(
      jobName: "j9", state: .failed, startTime: testNow.addingTimeInterval(-20), finishTime: testNow,
      result: EngineResult(ok: false, exitCode: 13, errors: ["KMS unreachable"]))
    let o = try compute(p, runs: [run])
    let c = try #require(condition(o, "LastBackupSucceeded"))
    #expect(c.status == .false)
    #expect(c.reason == "BackupFailed")
    #expect(c.message.contains("j9 failed with exit code 13"))
    #expect(c.message.contains("KMS unreachable"))
    #expect(o.events.filter { $0.reason == "BackupFailed" }.count == 1)
    p.status = o.status
    #expect(try compute(p, runs: [run]).events.filter { $0.reason == "BackupFailed" }.isEmpty)
  }

  @Test func runningRunEmitsStartedOnce() throws {
    var p = dumpPolicy()
    let run = BackupRun(jobName: "j3", state: .running, startTime: testNow.addingTimeInterval(-2))
    let o = try compute(p, runs: [run])
    #expect(o.events.map(\.reason) == ["BackupStarted"])
    #expect(o.status.lastBackupAttempt == testNow.addingTimeInterval(-2))
    p.status = o.status
    #expect(try compute(p, runs: [run]).events.isEmpty)
  }

  @Test func problemMakesReadyFalseAndStopsTheSchedule() throws {
    let o = try compute(
      dumpPolicy(),
      problem: PolicyProblem.from(
        SpecError(
          field: "spec.repository.s3.credentialsSecretRef",
          message: "Secret 's3' does not exist in namespace shop; create it", reason: .secretNotFound)))
    let ready = try #require(condition(o, "Ready"))
    #expect(ready.status == .false)
    #expect(ready.reason == "SecretNotFound")
    #expect(ready.message.contains("spec.repository.s3.credentialsSecretRef"))
    #expect(condition(o, "ScheduleActive")?.status == .false)
  }

  @Test func scheduleThatNeverFiresIsNotReady() throws {
    var p = dumpPolicy()
    p.spec.schedule = "0 0 31 2 *"
    let o = try compute(p)
    #expect(condition(o, "Ready")?.status == .false)
    #expect(condition(o, "Ready")?.reason == "ScheduleNeverFires")
    #expect(condition(o, "Ready")?.message.hasPrefix("spec.schedule") == true)
    #expect(o.status.nextScheduledRun == nil)
  }

  @Test func suspendedPolicyHasNoNextRun() throws {
    var p = dumpPolicy()
    p.spec.suspend = true
    let o = try compute(p)
    #expect(condition(o, "ScheduleActive")?.reason == "Suspended")
    #expect(o.status.nextScheduledRun == nil)
  }
}
