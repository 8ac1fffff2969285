import DRAPI
import Foundation
import KubeCore
import KubeRuntime
import Testing

@testable import Reconcilers

/// What a RecoveryPlan observes of its step Jobs: read from the shared caches (issue 18), in the plan's namespace and
/// in the namespaces its restores run in, mapped back to the plan by labels, and read through typed status.
@Suite struct RecoveryPlanObservationTests {
  /// An object of `kind` in `namespace` with `labels`, `status` and (for Pods) a creation time, as a cache holds it.
  static func object(
    _ kind: String, _ namespace: String, _ name: String, labels: [String: String], created: String? = nil,
    status: JSONValue
  ) -> Unstructured {
    var meta: [String: JSONValue] = [
      "name": .string(name), "namespace": .string(namespace), "labels": .object(labels.mapValues { .string($0) }),
    ]
    if let created { meta["creationTimestamp"] = .string(created) }
    return Unstructured(.object(["kind": .string(kind), "metadata": .object(meta), "status": status]))
  }

  /// The labels of the step Jobs and Pods of plan `plan` of namespace `planNamespace`.
  static func planLabels(_ plan: String, _ planNamespace: String) -> [String: String] {
    var labels = RecoveryPlanLabels.selection(planName: plan, planNamespace: planNamespace)
    labels[ChildLabels.managedBy] = ChildLabels.controllerName
    return labels
  }

  /// A step Job of plan `plan` of namespace `planNamespace`, in `namespace`, in the state `status` says.
  static func job(
    _ name: String, namespace: String, plan: String = "shop-recovery", planNamespace: String = "shop",
    status: JobStatus = JobStatus()
  ) -> Unstructured {
    object("Job", namespace, name, labels: planLabels(plan, planNamespace), status: status.json)
  }

  /// The Pod of Job `job`, with the labels of its Job and the Job controller's job-name.
  static func pod(
    _ job: String, namespace: String, plan: String = "shop-recovery", planNamespace: String = "shop",
    created: String = "2026-09-21T10:00:00Z", status: PodStatus
  ) -> Unstructured {
    var labels = planLabels(plan, planNamespace)
    labels["job-name"] = job
    return object(
      "Pod", namespace, "\(job)-\(created.filter(\.isNumber))", labels: labels, created: created, status: status.json)
  }

  static let complete = JobStatus(
    conditions: [JobCondition(type: "Complete", status: "True", lastTransitionTime: "2026-09-21T10:05:00Z")],
    startTime: "2026-09-21T10:00:00Z", completionTime: "2026-09-21T10:04:59Z")

  static func engineDone(_ container: String, snapshot: String) -> PodStatus {
    PodStatus(
      phase: "Succeeded",
      containerStatuses: [
        ContainerStatus(
          name: container,
          state: ContainerState(
            terminated: ContainerStateTerminated(
              exitCode: 0, reason: "Completed",
              message: #"{"command":"restore","ok":true,"snapshotId":"\#(snapshot)","bytesRead":42}"#)))
      ])
  }

  // MARK: The Job → plan mapping

  @Test func aJobIsMappedToItsPlanByLabelsWhateverNamespaceItRunsIn() {
    let labels = RecoveryPlanLabels.selection(planName: "shop-recovery", planNamespace: "shop")
    let plan = ObjectKey(namespace: "shop", name: "shop-recovery")
    // The labels name the plan; the Job's own namespace (shop-b for a restore into a claim there) plays no part.
    #expect(RecoveryPlanLabels.owner(labels: labels, watchNamespace: nil) == plan)
    // A controller of namespace shop follows the restore Jobs its plans run in shop-b.
    #expect(RecoveryPlanLabels.owner(labels: labels, watchNamespace: "shop") == plan)
    // A controller of another namespace leaves them to the one of shop.
    #expect(RecoveryPlanLabels.owner(labels: labels, watchNamespace: "shop-b") == nil)
    // Not a plan's: no plan name, or no plan namespace (a drill's or a policy's Job).
    #expect(RecoveryPlanLabels.owner(labels: [RecoveryPlanLabels.planName: "x"], watchNamespace: nil) == nil)
    #expect(RecoveryPlanLabels.owner(labels: [RecoveryPlanLabels.planNamespace: "shop"], watchNamespace: nil) == nil)
    #expect(
      RecoveryPlanLabels.owner(
        labels: [RecoveryPlanLabels.planName: "", RecoveryPlanLabels.planNamespace: "shop"], watchNamespace: nil)
        == nil)
  }

  // MARK: Where the Jobs are read

  @Test func jobsAreReadInThePlansNamespaceAndWhereItsRestoresMayRun() throws {
    let foreign = try planRestoring(RestorePVC(claimName: "uploads", namespace: "shop-b"))
    // shop-b has not opted in: the plan acts only in its own namespace, so it reads only there.
    #expect(RecoveryTargetAccess.jobNamespaces(foreign, targetNamespaces: ["shop-b": [:]]) == ["shop"])
    #expect(RecoveryTargetAccess.jobNamespaces(foreign, targetNamespaces: [:]) == ["shop"])
    let allowed = ["shop-b": [RecoveryTargetAccess.annotation: "other, shop"]]
    #expect(RecoveryTargetAccess.jobNamespaces(foreign, targetNamespaces: allowed) == ["shop", "shop-b"])
    // The plan's targetNamespace places the claim too.
    let target = try planRestoring(RestorePVC(claimName: "uploads"), targetNamespace: "shop-b")
    #expect(RecoveryTargetAccess.jobNamespaces(target, targetNamespaces: allowed) == ["shop", "shop-b"])
    // A restore into a claim of its own namespace, or into a command: the plan's namespace only.
    let own = try planRestoring(RestorePVC(claimName: "uploads"))
    #expect(RecoveryTargetAccess.jobNamespaces(own, targetNamespaces: allowed) == ["shop"])
    #expect(RecoveryTargetAccess.jobNamespaces(try recoveryTestPlan(), targetNamespaces: allowed) == ["shop"])
  }

  // MARK: From the caches to the plan's world

  /// A restore into a claim of shop-b: its Job, finished in shop-b, is read from the cluster-wide caches (not the
  /// plan of the same name in namespace other's Job there), and the step succeeds on that observation.
  @Test func aForeignNamespaceRestoreFinishesFromTheCachedJob() throws {
    var plan = try planRestoring(RestorePVC(claimName: "uploads", namespace: "shop-b"))
    let allowed = ["shop-b": [RecoveryTargetAccess.annotation: "shop"]]
    // The run started: the step's Job is created.
    let started = RecoveryPlanLogic.advance(plan: plan, world: PlanWorld(targetNamespaces: allowed), now: drillNow)
    guard case .createJob(_, let name)? = started.actions.first else {
      Issue.record("expected the restore Job")
      return
    }
    plan.status = started.status

    let jobs = Store<Unstructured>()
    let pods = Store<Unstructured>()
    let caches = ManagedCaches([ChildResources.jobs: jobs, ChildResources.pods: pods])
    let selection = RecoveryPlanLabels.selection(planName: plan.name, planNamespace: "shop")
    // Not listed yet: read live.
    #expect(caches.cachedJobsWithPods(namespace: "shop-b", labels: selection) == nil)
    jobs.apply(
      .restarted([
        Self.job(name, namespace: "shop-b", status: Self.complete),
        // A plan of the same name in namespace other, restoring into shop-b too.
        Self.job("rp-other", namespace: "shop-b", planNamespace: "other", status: Self.complete),
      ]))
    // The Job finished but its Pod is not cached yet: the caches are not trusted (read live).
    pods.apply(.restarted([]))
    #expect(caches.cachedJobsWithPods(namespace: "shop-b", labels: selection) == nil)
    pods.apply(
      .restarted([
        Self.pod(name, namespace: "shop-b", status: Self.engineDone("restore", snapshot: "abcdef0123456789")),
        Self.pod(
          "rp-other", namespace: "shop-b", planNamespace: "other",
          status: Self.engineDone("restore", snapshot: "ffff")),
      ]))

    var world = PlanWorld(targetNamespaces: allowed)
    for ns in RecoveryTargetAccess.jobNamespaces(plan, targetNamespaces: allowed) {
      world.observeJobs(try #require(caches.cachedJobsWithPods(namespace: ns, labels: selection)), in: ns)
    }
    #expect(Set(world.jobs.keys) == [name])
    #expect(world.jobNamespaces[name] == "shop-b")
    #expect(world.jobs[name]?.containers["restore"]?.engineResult?.snapshotId == "abcdef0123456789")

    let done = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow.addingTimeInterval(300))
    #expect(done.status.phase == .succeeded)
    #expect(done.status.steps?.first?.state == .succeeded)
    #expect(done.status.steps?.first?.message?.contains("snapshot abcdef012345") == true)
    #expect(done.actions.isEmpty)
  }

  /// A Job applied a moment ago and not cached yet leaves its step running: nothing is created or failed again.
  @Test func aJobNotCachedYetLeavesItsStepRunning() throws {
    var plan = try planRestoring(RestorePVC(claimName: "uploads", namespace: "shop-b"))
    let allowed = ["shop-b": [RecoveryTargetAccess.annotation: "shop"]]
    plan.status =
      RecoveryPlanLogic.advance(plan: plan, world: PlanWorld(targetNamespaces: allowed), now: drillNow).status
    let again = RecoveryPlanLogic.advance(
      plan: plan, world: PlanWorld(targetNamespaces: allowed), now: drillNow.addingTimeInterval(5))
    #expect(again.actions.isEmpty)
    #expect(again.status.phase == .running && again.status.steps?.first?.state == .running)
    #expect(again.requeueAfter != nil)
  }

  // MARK: Typed status

  @Test func anObservationReadsTheNewestPodsTerminatedContainersFromTypedStatus() {
    let job = Self.job("j", namespace: "shop", status: Self.complete).body
    let older = Self.pod(
      "j", namespace: "shop", created: "2026-09-21T09:00:00Z", status: Self.engineDone("restore", snapshot: "old")
    ).body
    let newer = Self.pod(
      "j", namespace: "shop", created: "2026-09-21T10:00:00Z",
      status: PodStatus(
        phase: "Succeeded",
        initContainerStatuses: [
          ContainerStatus(
            name: "restore",
            state: ContainerState(
              terminated: ContainerStateTerminated(
                exitCode: 0, message: #"{"command":"restore","ok":true,"snapshotId":"new"}"#,
                startedAt: "2026-09-21T10:01:00Z", finishedAt: "2026-09-21T10:03:00Z")))
        ],
        containerStatuses: [
          ContainerStatus(
            name: "restore-load", state: ContainerState(terminated: ContainerStateTerminated(exitCode: 0))),
          ContainerStatus(name: "waiting", state: nil),
        ])
    ).body
    let o = JobObservation.observe(job: job, pods: [newer, older])
    #expect(o.name == "j" && o.state == .succeeded)
    #expect(o.startTime == KubeJSON.parseDate("2026-09-21T10:00:00Z"))
    // completionTime, not the condition's transition.
    #expect(o.finishTime == KubeJSON.parseDate("2026-09-21T10:04:59Z"))
    #expect(Set(o.containers.keys) == ["restore", "restore-load"])
    #expect(o.containers["restore"]?.engineResult?.snapshotId == "new")
    #expect(o.containers["restore"]?.finishedAt == KubeJSON.parseDate("2026-09-21T10:03:00Z"))
    #expect(o.failureMessage == nil)

    // No completionTime: the Complete condition's transition.
    var noTime = Self.complete
    noTime.completionTime = nil
    let o2 = JobObservation.observe(job: Self.job("j", namespace: "shop", status: noTime).body, pods: [])
    #expect(o2.finishTime == KubeJSON.parseDate("2026-09-21T10:05:00Z") && o2.containers.isEmpty)

    // A running Job.
    let running = JobObservation.observe(
      job: Self.job("j", namespace: "shop", status: JobStatus(startTime: "2026-09-21T10:00:00Z")).body, pods: [])
    #expect(running.state == .running && running.finishTime == nil)
  }

  @Test func aFailedJobSaysWhyFromItsConditionAndThePodsReason() {
    let failed = JobStatus(
      conditions: [
        JobCondition(
          type: "Failed", status: "True", reason: "DeadlineExceeded", message: "Job was active longer than specified",
          lastTransitionTime: "2026-09-21T10:05:00Z")
      ], startTime: "2026-09-21T10:00:00Z")
    var podStatus = PodStatus(phase: "Failed")
    podStatus.reason = "Evicted"
    podStatus.message = "low on ephemeral storage"
    let o = JobObservation.observe(
      job: Self.job("j", namespace: "shop", status: failed).body,
      pods: [Self.pod("j", namespace: "shop", status: podStatus).body])
    #expect(o.state == .failed)
    #expect(o.finishTime == KubeJSON.parseDate("2026-09-21T10:05:00Z"))
    #expect(
      o.failureMessage
        == "DeadlineExceeded: Job was active longer than specified; Evicted: low on ephemeral storage")
    #expect(o.failureSummary == o.failureMessage)
  }
}
