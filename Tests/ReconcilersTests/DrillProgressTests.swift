import DRAPI
import Foundation
import KubeCore
import KubeRuntime
import Testing

@testable import Reconcilers

/// A running drill: the run read from the shared caches (or live when they lag), and the pure wait-or-evaluate
/// decision over what was read.
struct DrillProgressTests {
  static let start = Date(timeIntervalSince1970: 1_800_000_000)

  static func world(_ state: JobObservation.State?, timeout: Int64 = 3_600) -> DrillRunWorld {
    DrillRunWorld(
      job: state.map { JobObservation(name: DrillLogic.runJobName, state: $0) }, scratchNamespace: "drill-x-1",
      runStart: start, timeoutSeconds: timeout)
  }

  @Test func aRunningJobWaitsUntilItsTimeout() {
    #expect(DrillLogic.progress(Self.world(.running), now: Self.start + 10) == .wait)
    #expect(DrillLogic.progress(Self.world(.running), now: Self.start + 3_600) == .wait)
    #expect(
      DrillLogic.progress(Self.world(.running), now: Self.start + 3_601)
        == .evaluate(failure: "the drill passed its timeout of 1h"))
  }

  @Test func aMissingJobIsWaitedForBrieflyThenFailsTheRun() {
    // Applied right after the run was recorded: not there yet is not a failure.
    #expect(DrillLogic.progress(Self.world(nil), now: Self.start + 59) == .wait)
    #expect(
      DrillLogic.progress(Self.world(nil), now: Self.start + 60)
        == .evaluate(failure: "the run Job drill-run in drill-x-1 disappeared"))
    // A timeout shorter than the grace still ends the run.
    if case .evaluate(let f) = DrillLogic.progress(Self.world(nil, timeout: 30), now: Self.start + 31) {
      #expect(f?.hasPrefix("the drill passed its timeout") == true)
    } else {
      Issue.record("a missing Job past the timeout must end the run")
    }
  }

  @Test func aFinishedJobIsEvaluatedWithoutAFailureOfItsOwn() {
    #expect(DrillLogic.progress(Self.world(.succeeded), now: Self.start + 5) == .evaluate(failure: nil))
    #expect(DrillLogic.progress(Self.world(.failed), now: Self.start + 5_000) == .evaluate(failure: nil))
  }

  static let job: JSONValue = [
    "metadata": ["name": "drill-run"],
    "status": ["conditions": [["type": "Complete", "status": "True"]], "startTime": "2027-01-15T08:00:00Z"],
  ]

  @Test func theRunJobIsPickedByNameWithItsPods() {
    let other: JSONValue = ["metadata": ["name": "other"], "status": ["active": 1]]
    let pod: JSONValue = [
      "metadata": ["labels": ["job-name": "drill-run"], "creationTimestamp": "2027-01-15T08:00:00Z"],
      "status": [
        "phase": "Succeeded",
        "containerStatuses": [
          ["name": "verify", "state": ["terminated": ["exitCode": 0, "message": "done"]]]
        ],
      ],
    ]
    let run = DrillLogic.observeRun(ManagedCaches.withTheirPods([other, Self.job], [pod]))
    #expect(run?.name == "drill-run")
    #expect(run?.state == .succeeded)
    #expect(run?.containers["verify"]?.exitCode == 0)
    #expect(DrillLogic.observeRun(ManagedCaches.withTheirPods([other], [])) == nil)
  }

  /// The drill reads the run from the caches only when its Pod caught up with its Job; otherwise live.
  @Test func theCachesAreReadOnlyOnceThePodCaughtUp() throws {
    let drill = try drillTestDrill()
    let labels = DrillLogic.labels(drill)
    func object(_ body: JSONValue, kind: String) -> Unstructured {
      var meta = body["metadata"]?.objectValue ?? [:]
      var l = meta["labels"]?.objectValue ?? [:]
      for (k, v) in labels { l[k] = .string(v) }
      meta["labels"] = .object(l)
      meta["namespace"] = "drill-x-1"
      if meta["name"] == nil { meta["name"] = "drill-run-abcde" }
      var b = body
      b["kind"] = .string(kind)
      b["metadata"] = .object(meta)
      return Unstructured(b)
    }
    let jobs = Store<Unstructured>()
    let pods = Store<Unstructured>()
    let caches = ManagedCaches([ChildResources.jobs: jobs, ChildResources.pods: pods])
    // Not listed yet: live.
    #expect(caches.cachedJobsWithPods(namespace: "drill-x-1", labels: labels) == nil)
    let running: JSONValue = ["metadata": ["labels": ["job-name": "drill-run"]], "status": ["phase": "Running"]]
    jobs.apply(.restarted([object(Self.job, kind: "Job")]))
    pods.apply(.restarted([object(running, kind: "Pod")]))
    // The Job completed, its Pod still shows Running in the cache: live.
    #expect(caches.cachedJobsWithPods(namespace: "drill-x-1", labels: labels) == nil)
    let done: JSONValue = ["metadata": ["labels": ["job-name": "drill-run"]], "status": ["phase": "Succeeded"]]
    pods.apply(.restarted([object(done, kind: "Pod")]))
    let cached = try #require(caches.cachedJobsWithPods(namespace: "drill-x-1", labels: labels))
    #expect(DrillLogic.observeRun(cached)?.state == .succeeded)
    // Another drill's run in the same namespace is not this drill's.
    #expect(
      caches.cachedJobsWithPods(
        namespace: "drill-x-1",
        labels: labels.merging([DrillLogic.drillNameLabel: "x"]) {
          _, b in b
        })?.isEmpty == true)
  }
}
