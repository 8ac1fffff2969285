import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// A running drill's restore progress in status (`DrillCurrentRun.progress`): which log is read and when
/// (`DrillLogic.progressRead`), what status shows while the run goes on (`DrillLogic.waiting`), that it goes with the
/// run (`finish`), and the run Job's restore container that prints it.
@Suite struct DrillRestoreProgressTests {
  static let scratch = "drill-shop-weekly-1a2b3c4d"

  /// A drill whose run started at `drillNow`, its run Job started at +2 with Pod `drill-run-abcde` whose restore
  /// (init) container runs.
  func running() throws -> (drill: DRDrill, job: JobObservation) {
    var d = try drillTestDrill(trigger: "go")
    d.status = DrillLogic.startRun(
      d, token: "trigger:go", scratchNamespace: Self.scratch, schedule: Sourced("0 3 * * 0", .preset(.weekly)),
      now: drillNow)
    #expect(d.status?.currentRun?.progress == nil)
    var job = JobObservation(name: DrillLogic.runJobName, state: .running, startTime: drillNow + 2)
    job.activePod = "drill-run-abcde"
    return (d, job)
  }

  func world(_ job: JobObservation?, progress: RunProgress?) -> DrillRunWorld {
    DrillRunWorld(
      job: job, scratchNamespace: Self.scratch, runStart: drillNow, timeoutSeconds: 3_600, progress: progress)
  }

  func progress(bytes: Int64, at t: Date) -> RunProgress {
    var p = RunProgress(job: DrillLogic.runJobName, startTime: drillNow + 2, updateTime: t, bytesDone: bytes)
    p.phase = "restore"
    p.totalBytes = 1000
    p.totalBytesSource = RunProgressLogic.totalFromEngine
    return p
  }

  /// The verify container runs: the restore container ended with its result.
  func verifying(_ job: JobObservation) -> JobObservation {
    var j = job
    j.containers[DrillLogic.restoreContainer] = .init(
      exitCode: 0, message: #"{"command":"restore","ok":true,"bytesRead":1000}"#, finishedAt: drillNow + 30)
    return j
  }

  @Test func theRestoreLogIsReadInTheScratchNamespaceAtMostEveryTenSeconds() throws {
    var (d, job) = try running()
    // No progress yet: read now, from the run Pod's restore container in the scratch namespace.
    #expect(
      DrillLogic.progressRead(d, job: job, now: drillNow + 4)
        == RestoreProgressRead(
          job: "drill-run", namespace: Self.scratch, pod: "drill-run-abcde", startTime: drillNow + 2, previous: nil,
          previousBackupBytes: nil, due: true))
    // Read 3 s ago: not due, status's value stays; due again 10 s after the read.
    let shown = progress(bytes: 100, at: drillNow + 4)
    d.status?.currentRun?.progress = shown
    let soon = try #require(DrillLogic.progressRead(d, job: job, now: drillNow + 7))
    #expect(!soon.due && soon.previous == shown)
    #expect(DrillLogic.progressRead(d, job: job, now: drillNow + 14)?.due == true)
    // The restore ended (verify runs), the Job ended, the Job is not started or not observed: nothing to read.
    #expect(DrillLogic.progressRead(d, job: verifying(job), now: drillNow + 40) == nil)
    job.state = .succeeded
    #expect(DrillLogic.progressRead(d, job: job, now: drillNow + 40) == nil)
    job.state = .running
    job.startTime = nil
    #expect(DrillLogic.progressRead(d, job: job, now: drillNow + 40) == nil)
    #expect(DrillLogic.progressRead(d, job: nil, now: drillNow + 40) == nil)
    // An idle drill reads nothing.
    job.startTime = drillNow + 2
    d.status?.phase = .idle
    #expect(DrillLogic.progressRead(d, job: job, now: drillNow + 40) == nil)
  }

  @Test func statusShowsTheProgressWhileTheRestoreRunsAndNotAfter() throws {
    var (d, job) = try running()
    let poll = DrillReconciler.pollSeconds
    // Read at +4: currentRun shows it, and the drill looks again within the poll.
    var w = DrillLogic.waiting(
      try #require(d.status), world: world(job, progress: progress(bytes: 250, at: drillNow + 4)), now: drillNow + 4,
      pollSeconds: poll)
    #expect(w.status.currentRun?.progress == progress(bytes: 250, at: drillNow + 4))
    #expect(w.status.currentRun?.scratchNamespace == Self.scratch && w.status.phase == .running)
    #expect(w.requeueAfter <= poll)
    d.status = w.status
    // Not due at +12 (the reconciler hands the previous value on): kept, and the next look is when the read is due.
    w = DrillLogic.waiting(
      try #require(d.status), world: world(job, progress: d.status?.currentRun?.progress), now: drillNow + 12,
      pollSeconds: poll)
    #expect(w.status.currentRun?.progress?.bytesDone == 250)
    #expect(w.status.currentRun?.progress?.updateTime == drillNow + 4)
    #expect(w.requeueAfter == 2)
    // The next read.
    w = DrillLogic.waiting(
      try #require(d.status), world: world(job, progress: progress(bytes: 600, at: drillNow + 14)),
      now: drillNow + 14, pollSeconds: poll)
    #expect(w.status.currentRun?.progress?.bytesDone == 600)
    d.status = w.status
    // The restore ended and verify runs: no progress (even one handed on), the run goes on at the poll.
    w = DrillLogic.waiting(
      try #require(d.status), world: world(verifying(job), progress: progress(bytes: 1000, at: drillNow + 40)),
      now: drillNow + 40, pollSeconds: poll)
    #expect(w.status.currentRun != nil && w.status.currentRun?.progress == nil)
    #expect(w.requeueAfter == poll)
    // The Job not observed yet (applied a moment ago): none either.
    w = DrillLogic.waiting(
      try #require(d.status), world: world(nil, progress: nil), now: drillNow + 1, pollSeconds: poll)
    #expect(w.status.currentRun?.progress == nil)
  }

  /// currentRun.step follows the run Job's containers: restore while it runs, then verify, then the query; the step
  /// names come from the Job itself (`JobObservation.steps`), so a restore into a database shows restore-load.
  @Test func theStepFollowsTheRunJobsContainers() throws {
    var (d, job) = try running()
    job.steps = ["restore", "restore-load", "verify", "query"]
    let poll = DrillReconciler.pollSeconds
    #expect(d.status?.currentRun?.step == "restore")
    var w = DrillLogic.waiting(
      try #require(d.status), world: world(job, progress: nil), now: drillNow + 4, pollSeconds: poll)
    #expect(w.status.currentRun?.step == "restore")
    job = verifying(job)
    w = DrillLogic.waiting(
      try #require(d.status), world: world(job, progress: nil), now: drillNow + 40, pollSeconds: poll)
    #expect(w.status.currentRun?.step == "restore-load")
    job.containers["restore-load"] = .init(exitCode: 0, finishedAt: drillNow + 50)
    job.containers["verify"] = .init(exitCode: 0, finishedAt: drillNow + 60)
    d.status = w.status
    w = DrillLogic.waiting(
      try #require(d.status), world: world(job, progress: nil), now: drillNow + 61, pollSeconds: poll)
    #expect(w.status.currentRun?.step == "query")
    d.status = w.status
    // Not observed yet: the step stays as status has it.
    w = DrillLogic.waiting(
      try #require(d.status), world: world(nil, progress: nil), now: drillNow + 62, pollSeconds: poll)
    #expect(w.status.currentRun?.step == "query")
    // The run Job the builder makes names its steps in the order they run (the drill's restore, then verify).
    let json = try DrillLogic.runJob(
      d, spec: try DrillLogic.runSpec(d, plan: nil), namespace: Self.scratch,
      settings: ControllerSettings(engineImage: "e:1"), policies: ["db": try recoveryTestPolicy()],
      timeoutSeconds: 3_600)
    let observed = JobObservation.observe(job: json, pods: [])
    #expect(observed.steps == ["restore", "restore-load", "verify", "query"], "\(observed.steps)")
    #expect(observed.currentStep == "restore")
  }

  @Test func theProgressGoesWithTheRunWhenItEnds() throws {
    var (d, job) = try running()
    d.status?.currentRun?.progress = progress(bytes: 600, at: drillNow + 14)
    job = verifying(job)
    job.state = .succeeded
    job.finishTime = drillNow + 60
    #expect(DrillLogic.progress(world(job, progress: nil), now: drillNow + 60) == .evaluate(failure: nil))
    let policy = try recoveryTestPolicy()
    let targets = try DrillLogic.targets(
      d, policy: try EffectivePolicy(spec: policy.spec, now: drillNow), policyCompliance: [], plan: nil)
    let out = DrillLogic.finish(
      d, job: job, runStart: drillNow, token: "trigger:go", scratchNamespace: Self.scratch, snapshotTime: nil,
      baseline: nil, security: allSecure, targets: targets, now: drillNow + 60)
    #expect(out.status.phase == .idle)
    #expect(out.status.currentRun == nil)
    // A timed-out run too.
    var running = try self.running()
    running.drill.status?.currentRun?.progress = progress(bytes: 600, at: drillNow + 3_590)
    let timedOut = DrillLogic.finish(
      running.drill, job: running.job, runStart: drillNow, token: "trigger:go", scratchNamespace: Self.scratch,
      snapshotTime: nil, baseline: nil, security: allSecure, targets: targets, failure: "the drill passed its timeout",
      now: drillNow + 3_601)
    #expect(timedOut.status.currentRun == nil)
  }

  /// The run Job's restore container (the drill's first init container) prints the engine's progress lines: `--json`
  /// at the Job rate; the command restore's load container, which does not run the engine, gets neither.
  @Test func theRunJobsRestoreContainerPrintsProgressLines() throws {
    let d = try drillTestDrill()
    let job = try DrillLogic.runJob(
      d, spec: try DrillLogic.runSpec(d, plan: nil), namespace: Self.scratch,
      settings: ControllerSettings(engineImage: "e:1"), policies: ["db": try recoveryTestPolicy()],
      timeoutSeconds: 3600)
    func container(_ name: String) -> (args: [String], env: [String: String])? {
      let all =
        (job[path: "spec", "template", "spec", "initContainers"]?.arrayValue ?? [])
        + (job[path: "spec", "template", "spec", "containers"]?.arrayValue ?? [])
      guard let c = all.first(where: { $0["name"]?.stringValue == name }) else { return nil }
      var env: [String: String] = [:]
      for e in c["env"]?.arrayValue ?? [] {
        if let n = e["name"]?.stringValue { env[n] = e["value"]?.stringValue ?? "" }
      }
      return ((c["args"]?.arrayValue ?? []).compactMap(\.stringValue), env)
    }
    let restore = try #require(container(DrillLogic.restoreContainer))
    #expect(restore.args.first == "restore" && restore.args.contains("--json") && !restore.args.contains("--quiet"))
    #expect(restore.env[EngineEnv.progressFPS] == EngineProgress.jobFramesPerSecond)
    #expect(try #require(container("restore-load")).env[EngineEnv.progressFPS] == nil)
    #expect(try #require(container("verify")).env[EngineEnv.progressFPS] == nil)
  }
}
