import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// A running restore step's progress in the plan's status (`StepStatus.progress`): which logs are read and when
/// (`RecoveryPlanLogic.progressReads`), what status shows (`advance`), and the restore containers that print it.
@Suite struct RecoveryPlanProgressTests {
  /// The test plan run up to its restore step (step 1), which runs Job `job`.
  func planAtRestore() throws -> (plan: RecoveryPlan, world: PlanWorld, job: String) {
    var plan = try recoveryTestPlan()
    var world = PlanWorld(workloads: [webKey: WorkloadState(replicas: 3, readyReplicas: 3)])
    plan.status = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow).status
    world.workloads[webKey] = WorkloadState(replicas: 0, readyReplicas: 0, currentReplicas: 0)
    let a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow + 5)
    plan.status = a.status
    let job = try #require(a.status.steps?[1].jobName)
    #expect(a.status.steps?[1].state == .running)
    #expect(a.status.steps?[1].progress == nil)
    var o = JobObservation(name: job, state: .running, startTime: drillNow + 6)
    o.activePod = job + "-abcde"
    world.jobs[job] = o
    world.jobNamespaces[job] = "shop"
    return (plan, world, job)
  }

  func progress(_ job: String, bytes: Int64, at t: Date) -> RunProgress {
    var p = RunProgress(job: job, startTime: drillNow + 6, updateTime: t, bytesDone: bytes)
    p.phase = "restore"
    p.totalBytes = 1000
    p.totalBytesSource = RunProgressLogic.totalFromEngine
    return p
  }

  @Test func aRunningRestoreStepsLogIsReadAtMostEveryTenSeconds() throws {
    var (plan, world, job) = try planAtRestore()
    var policy = try recoveryTestPolicy()
    policy.status = BackupPolicyStatus()
    policy.status?.lastBackupBytes = 4096
    // No progress yet: read now, from the Job's Pod in the Job's namespace.
    let first = RecoveryPlanLogic.progressReads(plan: plan, world: world, policies: ["db": policy], now: drillNow + 8)
    #expect(
      first == [
        RestoreProgressRead(
          job: job, namespace: "shop", pod: job + "-abcde", startTime: drillNow + 6, previous: nil,
          previousBackupBytes: 4096, due: true)
      ])
    // Read 3 s ago: not due, the previous value is what status keeps.
    let shown = progress(job, bytes: 100, at: drillNow + 8)
    plan.status?.steps?[1].progress = shown
    let soon = RecoveryPlanLogic.progressReads(plan: plan, world: world, policies: [:], now: drillNow + 11)
    #expect(soon.map(\.due) == [false] && soon.first?.previous == shown)
    #expect(
      RecoveryPlanLogic.progressReads(plan: plan, world: world, policies: [:], now: drillNow + 18).map(\.due) == [true])
    // A Job that ended, or one not observed yet: nothing to read.
    world.jobs[job]?.state = .succeeded
    #expect(RecoveryPlanLogic.progressReads(plan: plan, world: world, policies: [:], now: drillNow + 30).isEmpty)
    world.jobs = [:]
    #expect(RecoveryPlanLogic.progressReads(plan: plan, world: world, policies: [:], now: drillNow + 30).isEmpty)
  }

  @Test func statusShowsTheProgressWhileTheRestoreRunsAndClearsItWhenTheStepEnds() throws {
    var (plan, world, job) = try planAtRestore()
    // Read at +8: the step shows it, and the plan looks again when the next read is due.
    world.progress[job] = progress(job, bytes: 250, at: drillNow + 8)
    var a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow + 8)
    #expect(a.status.steps?[1].state == .running)
    #expect(a.status.steps?[1].progress == progress(job, bytes: 250, at: drillNow + 8))
    #expect((a.requeueAfter ?? .infinity) <= 10)
    #expect(a.status.steps?.enumerated().allSatisfy { $0.offset == 1 || $0.element.progress == nil } == true)
    plan.status = a.status
    // Not due at +12: the observed value is the previous one, kept.
    world.progress[job] = plan.status?.steps?[1].progress
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow + 12)
    #expect(a.status.steps?[1].progress?.bytesDone == 250)
    #expect((a.requeueAfter ?? .infinity) <= 6)
    // The next read.
    world.progress[job] = progress(job, bytes: 600, at: drillNow + 18)
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow + 18)
    #expect(a.status.steps?[1].progress?.bytesDone == 600)
    plan.status = a.status
    // The Job succeeded: the step ended, no progress (its outcome is in message).
    world.jobs[job]?.state = .succeeded
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow + 25)
    #expect(a.status.steps?[1].state == .succeeded)
    #expect(a.status.steps?[1].progress == nil)
    #expect(a.status.steps?.allSatisfy { $0.progress == nil } == true)
  }

  @Test func aFailedOrRetriedRestoreStepHasNoProgress() throws {
    var (plan, world, job) = try planAtRestore()
    world.progress[job] = progress(job, bytes: 250, at: drillNow + 8)
    plan.status = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow + 8).status
    #expect(plan.status?.steps?[1].progress != nil)
    world.jobs[job]?.state = .failed
    let a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow + 20)
    #expect(a.status.steps?[1].state == .failed)
    #expect(a.status.steps?[1].progress == nil)
    // With a retry: the new attempt's Job starts without the old one's progress.
    var retried = try recoveryTestPlan(retries: 1)
    retried.status = plan.status
    retried.status?.steps?[1].progress = progress(job, bytes: 250, at: drillNow + 8)
    let r = RecoveryPlanLogic.advance(plan: retried, world: world, now: drillNow + 20)
    #expect(r.status.steps?[1].state == .running && r.status.steps?[1].attempts == 2)
    #expect(r.status.steps?[1].progress == nil)
  }

  @Test func onlyARestoreStepShowsProgress() throws {
    var (plan, world, job) = try planAtRestore()
    world.jobs[job]?.state = .succeeded
    plan.status = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow + 20).status
    // The verify step runs a Job now; a progress observed for it is not shown (its engine prints none).
    let verify = try #require(plan.status?.steps?[2].jobName)
    #expect(plan.status?.steps?[2].state == .running)
    world.jobs[verify] = JobObservation(name: verify, state: .running, startTime: drillNow + 21)
    #expect(RecoveryPlanLogic.progressReads(plan: plan, world: world, policies: [:], now: drillNow + 22).isEmpty)
    world.progress[verify] = progress(verify, bytes: 1, at: drillNow + 22)
    let a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow + 22)
    #expect(a.status.steps?[2].progress == nil)
  }

  @Test func theActivePodIsTheNewestPodThatHasNotEnded() throws {
    func pod(_ name: String, _ phase: String, created: String) -> JSONValue {
      [
        "metadata": ["name": .string(name), "creationTimestamp": .string(created)],
        "status": ["phase": .string(phase)],
      ]
    }
    let job: JSONValue = ["metadata": ["name": "rp-1"], "status": ["startTime": "2026-12-07T10:00:00Z"]]
    // A command restore's engine runs as an init container: the Pod is Pending meanwhile.
    let pending = JobObservation.observe(job: job, pods: [pod("rp-1-a", "Pending", created: "2026-12-07T10:00:01Z")])
    #expect(pending.state == .running && pending.activePod == "rp-1-a")
    let running = JobObservation.observe(
      job: job,
      pods: [
        pod("rp-1-a", "Failed", created: "2026-12-07T10:00:01Z"),
        pod("rp-1-b", "Running", created: "2026-12-07T10:00:09Z"),
      ])
    #expect(running.activePod == "rp-1-b")
    let ended = JobObservation.observe(job: job, pods: [pod("rp-1-a", "Succeeded", created: "2026-12-07T10:00:01Z")])
    #expect(ended.activePod == nil)
  }

  /// The engine containers of a claim restore and of a command restore print progress lines (`--json` at the Job
  /// rate); the command restore's load container does not run the engine and gets neither.
  @Test func restoreContainersPrintProgressLines() throws {
    var plan = try recoveryTestPlan()
    let ctx = RecoveryJobContext(
      settings: ControllerSettings(engineImage: "e:1"), policies: ["db": try recoveryTestPolicy()], namespace: "shop",
      labels: [:], owner: nil)
    func engine(_ c: JSONValue?) -> (args: [String], env: [String: String]) {
      let args = (c?["args"]?.arrayValue ?? []).compactMap(\.stringValue)
      var env: [String: String] = [:]
      for e in c?["env"]?.arrayValue ?? [] {
        if let n = e["name"]?.stringValue { env[n] = e["value"]?.stringValue ?? "" }
      }
      return (args, env)
    }
    let command = try RecoveryJobs.stepJob(try RecoveryPlanLogic.steps(plan.spec)[1], jobName: "rp", ctx: ctx)
    let restore = engine(command[path: "spec", "template", "spec", "initContainers"]?[0])
    #expect(command[path: "spec", "template", "spec", "initContainers"]?[0]?["name"] == "restore")
    #expect(restore.args.first == "restore" && restore.args.contains("--json") && !restore.args.contains("--quiet"))
    #expect(restore.env[EngineEnv.progressFPS] == EngineProgress.jobFramesPerSecond)
    let load = engine(command[path: "spec", "template", "spec", "containers"]?[0])
    #expect(load.env[EngineEnv.progressFPS] == nil)

    plan.spec.procedures[0].steps[1].restore?.into = RestoreDestination(pvc: RestorePVC(claimName: "data"))
    let claim = try RecoveryJobs.stepJob(try RecoveryPlanLogic.steps(plan.spec)[1], jobName: "rp", ctx: ctx)
    let c = claim[path: "spec", "template", "spec", "containers"]?[0]
    #expect(c?["name"]?.stringValue == RecoveryPlanLogic.restoreContainer)
    #expect(
      engine(c).args.contains("--json") && engine(c).env[EngineEnv.progressFPS] == EngineProgress.jobFramesPerSecond)
  }
}
