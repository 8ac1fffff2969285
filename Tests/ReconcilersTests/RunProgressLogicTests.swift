import DRAPI
import EngineContract
import Foundation
import Testing

@testable import Reconcilers

/// Progress in status: read at most every 10 s per object, with a percentage and an estimate when a total is known.
@Suite struct RunProgressLogicTests {
  let t0 = Date(timeIntervalSince1970: 1_780_000_000)

  @Test func readsAtMostEveryTenSecondsPerRun() {
    var p = RunProgress(job: "j1", startTime: t0, updateTime: t0)
    p.bytesDone = 5
    #expect(RunProgressLogic.due(previous: nil, job: "j1", now: t0))
    #expect(!RunProgressLogic.due(previous: p, job: "j1", now: t0.addingTimeInterval(9.9)))
    #expect(RunProgressLogic.due(previous: p, job: "j1", now: t0.addingTimeInterval(10)))
    // Another run is shown at once; a status written by a clock ahead of ours does not stop updates.
    #expect(RunProgressLogic.due(previous: p, job: "j2", now: t0.addingTimeInterval(1)))
    #expect(RunProgressLogic.due(previous: p, job: "j1", now: t0.addingTimeInterval(-60)))
    #expect(RunProgressLogic.nextUpdate(after: p) == t0.addingTimeInterval(10))
  }

  @Test func aRestoreWithTheEnginesTotalGetsAPercentageAndAnEstimate() {
    let line = EngineProgress(
      phase: "restore", files: 0, bytesDone: 250, bytesTotal: 1000, bytesStored: 0, errors: 0, secondsElapsed: 30)
    let now = t0.addingTimeInterval(32)
    let p = RunProgressLogic.progress(
      job: "r", startTime: t0, line: line, previous: nil, previousBackupBytes: nil, now: now)
    #expect(p.bytesDone == 250 && p.filesDone == nil && p.totalBytes == 1000 && p.totalBytesSource == "Engine")
    #expect(p.percent == 25)
    // 30 s for a quarter: 90 s more.
    #expect(p.estimatedCompletion == now.addingTimeInterval(90))
    #expect(p.updateTime == now && p.phase == "restore")
  }

  @Test func aBackupIsEstimatedFromThePreviousBackupUntilItExceedsIt() {
    let line = EngineProgress(
      phase: "backup", files: 7, bytesDone: 600, bytesTotal: nil, bytesStored: 100, errors: 0, secondsElapsed: nil)
    let p = RunProgressLogic.progress(
      job: "b", startTime: t0, line: line, previous: nil, previousBackupBytes: 1200, now: t0.addingTimeInterval(60))
    #expect(p.totalBytes == 1200 && p.totalBytesSource == "PreviousBackup" && p.percent == 50 && p.filesDone == 7)
    // Elapsed from the Job's start when the line has none: 60 s for half.
    #expect(p.estimatedCompletion == t0.addingTimeInterval(120))
    var bigger = line
    bigger.bytesDone = 1500
    let q = RunProgressLogic.progress(
      job: "b", startTime: t0, line: bigger, previous: p, previousBackupBytes: 1200, now: t0.addingTimeInterval(70))
    #expect(q.totalBytes == nil && q.percent == nil && q.estimatedCompletion == nil && q.bytesDone == 1500)
    // Never 100 while it runs.
    var full = line
    full.bytesDone = 1200
    let r = RunProgressLogic.progress(
      job: "b", startTime: t0, line: full, previous: nil, previousBackupBytes: 1200, now: t0.addingTimeInterval(80))
    #expect(r.percent == 99 && r.estimatedCompletion == nil)
  }

  @Test func noLineKeepsTheRunsLastValuesWithTheNewTime() {
    var before = RunProgress(job: "b", startTime: t0, updateTime: t0)
    before.bytesDone = 42
    let kept = RunProgressLogic.progress(
      job: "b", startTime: t0, line: nil, previous: before, previousBackupBytes: nil, now: t0.addingTimeInterval(10))
    #expect(kept.bytesDone == 42 && kept.updateTime == t0.addingTimeInterval(10))
    // Another run's values are not carried over.
    let fresh = RunProgressLogic.progress(
      job: "c", startTime: t0, line: nil, previous: before, previousBackupBytes: nil, now: t0.addingTimeInterval(10))
    #expect(fresh.job == "c" && fresh.bytesDone == 0 && fresh.phase == nil)
  }
}
