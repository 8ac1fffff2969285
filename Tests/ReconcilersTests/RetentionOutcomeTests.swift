import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// The prune CronJob's runs are read back: the newest finished one sets RetentionApplied and the metrics.
@Suite struct RetentionOutcomeTests {
  func run(_ name: String, _ state: BackupRun.State, finished: TimeInterval, result: EngineResult? = nil) -> BackupRun {
    BackupRun(
      jobName: name, state: state, startTime: testNow.addingTimeInterval(finished - 60),
      finishTime: state == .running ? nil : testNow.addingTimeInterval(finished), result: result,
      exitCode: state == .failed ? 4 : nil, failureMessage: state == .failed ? "BackoffLimitExceeded" : nil)
  }

  @Test func noFinishedRunLeavesTheConditionAlone() {
    #expect(RetentionOutcome.evaluate([]) == nil)
    #expect(RetentionOutcome.evaluate([run("p-3", .running, finished: 0)]) == nil)
  }

  @Test func aFailedNewestRunIsFalseWithTheJobAndTheError() throws {
    let failed = run(
      "payments-prune-29", .failed, finished: 0,
      result: EngineResult(command: "forget", ok: false, exitCode: 4, errors: ["storage: 503 Slow Down"]))
    let r = try #require(RetentionOutcome.evaluate([run("payments-prune-28", .succeeded, finished: -86_400), failed]))
    #expect(r.status == .false && r.reason == "RetentionFailed" && r.failing)
    #expect(r.message.contains("payments-prune-29") && r.message.contains("storage: 503 Slow Down"))
    #expect(r.lastSuccess == testNow.addingTimeInterval(-86_400))
  }

  @Test func aSucceededNewestRunIsTrue() throws {
    let ok = run(
      "payments-prune-30", .succeeded, finished: 0,
      result: EngineResult(command: "forget", ok: true, exitCode: 0, bytesStored: -4096))
    let r = try #require(
      RetentionOutcome.evaluate([run("payments-prune-29", .failed, finished: -86_400), ok]))
    #expect(r.status == .true && r.reason == "Applied" && !r.failing)
    #expect(r.message.contains("payments-prune-30") && r.message.contains("4096 bytes"))
    #expect(r.lastSuccess == testNow)
  }

  /// The repository's stored bytes: the newest successful prune's figure replaces the status's when it finished after
  /// the newest successful backup (even when a later prune failed); a result without the figure (an older engine)
  /// changes nothing.
  @Test func theNewestSuccessfulPrunesTotalReplacesAnOlderBackupsOnly() throws {
    func pruned(_ total: Int64?) -> EngineResult {
      var r = EngineResult(command: "forget", ok: true, exitCode: 0, bytesStored: -4096)
      r.repositoryStoredBytes = total
      return r
    }
    let r = try #require(
      RetentionOutcome.evaluate([
        run("p-1", .succeeded, finished: -3600, result: pruned(1000)), run("p-2", .failed, finished: 0),
      ]))
    #expect(r.failing && r.repositoryStoredBytes == 1000)
    #expect(r.repositoryStoredBytesAt == testNow.addingTimeInterval(-3600))
    var afterBackup = BackupPolicyStatus(lastSuccessfulBackup: testNow.addingTimeInterval(-7200))
    afterBackup.repositoryStoredBytes = 1500
    r.applyStoredBytes(to: &afterBackup)
    #expect(afterBackup.repositoryStoredBytes == 1000)
    var beforeBackup = BackupPolicyStatus(lastSuccessfulBackup: testNow.addingTimeInterval(-60))
    beforeBackup.repositoryStoredBytes = 1500
    r.applyStoredBytes(to: &beforeBackup)
    #expect(beforeBackup.repositoryStoredBytes == 1500)
    let old = try #require(RetentionOutcome.evaluate([run("p-3", .succeeded, finished: 0, result: pruned(nil))]))
    old.applyStoredBytes(to: &afterBackup)
    #expect(afterBackup.repositoryStoredBytes == 1000)
  }
}
