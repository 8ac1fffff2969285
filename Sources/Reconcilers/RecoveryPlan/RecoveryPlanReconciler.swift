import DRAPI
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging

/// Labels of the Jobs a RecoveryPlan runs.
public enum RecoveryPlanLabels {
  public static let planName = "dr.botrt.io/plan-name"
  public static let planNamespace = "dr.botrt.io/plan-namespace"
}

/// The RecoveryPlan reconciler: reads the plan's Jobs and target workloads, advances the step state machine
/// (`RecoveryPlanLogic.advance`), carries out its actions (create or delete step Jobs, scale workloads), writes status
/// through the status subresource, and emits an Event per step. It never writes spec. The step Jobs run in the
/// plan's namespace and carry an owner reference to the plan, so they go with it.
public final class RecoveryPlanReconciler: Sendable {
  /// The one field manager of every write.
  public static let fieldManager = ChildLabels.controllerName

  let client: KubeClient
  /// Fetch, failure and status, as every kind does them.
  let entry: ReconcileEntry<RecoveryPlan>
  let settings: ControllerSettings
  let now: @Sendable () -> Date
  let recorder: EventRecorder?
  let logger: Logger

  public init(
    client: KubeClient, settings: ControllerSettings, now: @escaping @Sendable () -> Date = { Date() },
    recorder: EventRecorder?, logger: Logger
  ) {
    self.client = client
    self.entry = ReconcileEntry(client: client, fieldManager: Self.fieldManager, logger: logger)
    self.settings = settings
    self.now = now
    self.recorder = recorder
    self.logger = logger
  }

  /// A Controller for RecoveryPlans that also reconciles a plan when one of its Jobs or their Pods changes (the
  /// controller's Jobs and Pods, shared with the other controllers; those outside `namespace` are not the plans').
  public static func controller(
    client: KubeClient, informers: InformerRegistry, settings: ControllerSettings, namespace: String?, workers: Int,
    now: @escaping @Sendable () -> Date = { Date() }, recorder: EventRecorder?, metrics: MetricsRegistry?,
    logger: Logger
  ) -> Controller<RecoveryPlan> {
    let reconciler = RecoveryPlanReconciler(
      client: client, settings: settings, now: now, recorder: recorder, logger: logger)
    let labels: KeyMapper<Unstructured> = Mappers.labels(
      nameLabel: RecoveryPlanLabels.planName, namespaceLabel: RecoveryPlanLabels.planNamespace)
    return informers.runsController(
      name: "recoveryplan", namespace: namespace, workers: workers, logger: logger, metrics: metrics,
      owner: { child in
        guard namespace == nil || child.metadata.namespace == namespace else { return [] }
        return labels(child)
      }, reconcile: reconciler.reconcile)
  }

  /// The Controller's reconcile function.
  public func reconcile(_ key: ObjectKey, _ store: Store<RecoveryPlan>) async throws -> ReconcileResult {
    try await entry.reconcile(key, store, apply: apply)
  }

  func labels(_ plan: RecoveryPlan) -> [String: String] {
    [
      RecoveryPlanLabels.planName: plan.name, RecoveryPlanLabels.planNamespace: plan.metadata.namespace ?? "default",
      ChildLabels.managedBy: ChildLabels.controllerName, "component": "disaster-recovery",
    ]
  }

  /// Converges one plan; returns when to look again.
  public func apply(_ plan: RecoveryPlan) async throws -> ReconcileResult {
    let ns = plan.metadata.namespace ?? "default"
    let policies = try await client.listAll(BackupPolicy.self, namespace: ns)
    let ctx = RecoveryJobContext(
      settings: settings, policies: Dictionary(policies.items.map { ($0.name, $0) }) { a, _ in a }, namespace: ns,
      labels: labels(plan), owner: plan.ownerReference())

    // Every Job of the plan must be buildable before anything runs, so a run never stops half-way on a typo.
    var problem: SpecError? = nil
    do {
      for step in try RecoveryPlanLogic.steps(plan.spec) where step.runsJob {
        _ = try RecoveryJobs.stepJob(step, jobName: "check", ctx: ctx)
      }
    } catch {
      problem = error
    }
    if let problem {
      var st = plan.status ?? RecoveryPlanStatus()
      var conds = st.conditions ?? []
      conds.setCondition(
        type: RecoveryPlanCondition.ready, status: .false, reason: "InvalidSpec", message: problem.description,
        observedGeneration: plan.metadata.generation, now: now())
      st.conditions = conds
      st.observedGeneration = plan.metadata.generation
      if st.phase == nil { st.phase = .idle }
      try await entry.writeStatus(plan, st)
      return .requeueAfter(.seconds(30))
    }

    let world = try await observe(plan)
    let advance = RecoveryPlanLogic.advance(plan: plan, world: world, now: now())
    let steps = try RecoveryPlanLogic.steps(plan.spec)
    for action in advance.actions {
      switch action {
      case .createJob(let index, let name):
        let body = try RecoveryJobs.stepJob(steps[index], jobName: name, ctx: ctx)
        _ = try await client.apply(
          ChildResources.jobs, namespace: ns, name: name, body, fieldManager: Self.fieldManager, force: true)
      case .deleteJob(let name):
        do {
          try await client.delete(
            ChildResources.jobs, namespace: ns, name: name, options: DeleteOptions(propagationPolicy: .background))
        } catch let e as KubeError where e.isNotFound {}
      case .scale(let kind, let namespace, let name, let replicas):
        // advance never scales outside the allowed namespaces; this keeps it so should that logic change.
        guard
          namespace == ns
            || RecoveryTargetAccess.allows(planNamespace: ns, annotations: world.targetNamespaces[namespace])
        else {
          throw TerminalError("RecoveryPlan \(ns)/\(plan.name): refusing to scale \(kind) \(namespace)/\(name)")
        }
        _ = try await client.patch(
          workloadResource(kind), namespace: namespace, name: name,
          .merge(["spec": ["replicas": .int(Int64(replicas))]]), as: JSONValue.self)
      }
    }
    try await entry.writeStatus(plan, advance.status)
    for e in advance.events {
      recorder?.record(plan, type: e.warning ? .warning : .normal, reason: e.reason, message: e.message)
    }
    logger.info(
      "reconciled",
      metadata: [
        "object": "RecoveryPlan \(ns)/\(plan.name)", "phase": "\(advance.status.phase?.rawValue ?? "")",
        "actions": "\(advance.actions.count)",
      ])
    if let after = advance.requeueAfter { return .requeueAfter(requeueDelay(seconds: after)) }
    return .awaitChange
  }

  static let deployments = ResourceDescriptor(
    group: "apps", version: "v1", plural: "deployments", kind: "Deployment", namespaced: true)
  static let statefulSets = ResourceDescriptor(
    group: "apps", version: "v1", plural: "statefulsets", kind: "StatefulSet", namespaced: true)

  func workloadResource(_ kind: String) -> ResourceDescriptor {
    kind == "StatefulSet" ? Self.statefulSets : Self.deployments
  }

  /// Reads the plan's Jobs (with their Pods) and the workloads its steps name.
  func observe(_ plan: RecoveryPlan) async throws -> PlanWorld {
    let ns = plan.metadata.namespace ?? "default"
    let selector = "\(RecoveryPlanLabels.planName)=\(plan.name)"
    var world = PlanWorld()
    let jobs = try await client.listAll(
      ChildResources.jobs, namespace: ns, options: ListOptions(labelSelector: selector), as: JSONValue.self)
    if !jobs.items.isEmpty {
      let pods = try await client.listAll(
        ChildResources.pods, namespace: ns, options: ListOptions(labelSelector: selector), as: JSONValue.self)
      for job in jobs.items {
        let name = job[path: "metadata", "name"]?.stringValue ?? ""
        let mine = pods.items.filter { $0[path: "metadata", "labels", "job-name"]?.stringValue == name }
        world.jobs[name] = JobObservation.observe(job: job, pods: mine)
      }
    }
    // The target namespaces' opt-in (RecoveryTargetAccess); workloads are read only where the plan may act.
    for tns in RecoveryTargetAccess.foreignNamespaces(plan) {
      do {
        let n = try await client.get(
          ChildResources.namespaces, namespace: nil, name: tns, as: Unstructured.self, metadataOnly: true)
        world.targetNamespaces[tns] = n.metadata.annotations ?? [:]
      } catch let e as KubeError where e.isNotFound {
        continue
      }
    }
    var seen = Set<String>()
    for step in plan.spec.procedures.flatMap(\.steps) {
      for t in step.targets ?? [] {
        let tns = t.namespace ?? plan.spec.targetNamespace ?? ns
        if tns != ns, !RecoveryTargetAccess.allows(planNamespace: ns, annotations: world.targetNamespaces[tns]) {
          continue
        }
        let key = WorkloadState.key(t.kind.rawValue, tns, t.name)
        guard seen.insert(key).inserted else { continue }
        do {
          let w = try await client.get(
            workloadResource(t.kind.rawValue), namespace: tns, name: t.name, as: JSONValue.self)
          world.workloads[key] = WorkloadState(
            replicas: Int32(truncatingIfNeeded: w[path: "spec", "replicas"]?.intValue ?? 1),
            readyReplicas: Int32(truncatingIfNeeded: w[path: "status", "readyReplicas"]?.intValue ?? 0),
            currentReplicas: Int32(truncatingIfNeeded: w[path: "status", "replicas"]?.intValue ?? 0))
        } catch let e as KubeError where e.isNotFound {
          continue
        }
      }
    }
    return world
  }
}
