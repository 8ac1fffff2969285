import DRAPI
import EngineContract
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging

/// Labels of the Jobs a RecoveryPlan runs.
public enum RecoveryPlanLabels {
  public static let planName = "dr.botrt.io/plan-name"
  public static let planNamespace = "dr.botrt.io/plan-namespace"

  /// The labels that select a plan's step Jobs and their Pods wherever they run: plans of other namespaces may share
  /// the name, and a restore into a claim of another namespace runs its Job there.
  public static func selection(planName: String, planNamespace: String) -> [String: String] {
    [RecoveryPlanLabels.planName: planName, RecoveryPlanLabels.planNamespace: planNamespace]
  }

  /// The plan a Job or Pod of the controller belongs to, named by its labels, whatever namespace the Job runs in (a
  /// restore into a claim of another namespace runs its Job there); nil when the labels name no plan, or a plan
  /// outside `watchNamespace` (nil: all namespaces), which another controller follows.
  public static func owner(labels: [String: String], watchNamespace: String?) -> ObjectKey? {
    Mappers.owner(labels: labels, nameLabel: planName, namespaceLabel: planNamespace, watchNamespace: watchNamespace)
  }
}

/// The RecoveryPlan reconciler: reads the plan's Jobs and target workloads, advances the step state machine
/// (`RecoveryPlanLogic.advance`), carries out its actions (create or delete step Jobs, scale workloads), writes status
/// through the status subresource, and emits an Event per step. It never writes spec. The step Jobs run in the
/// plan's namespace and carry an owner reference to the plan, so they go with it; a restore into a claim of another
/// namespace runs its Job there (`RestoreTarget`: plan labels, a TTL, Secret copies owned by the Job). The Jobs and
/// their Pods are read from the shared caches of the controller's own objects (`ManagedCaches.jobsWithPods`).
public final class RecoveryPlanReconciler: RunsReconciler {
  /// The one field manager of every write.
  public static let fieldManager = ChildLabels.controllerName

  let client: KubeClient
  /// Fetch, failure and status, as every kind does them.
  let entry: ReconcileEntry<RecoveryPlan>
  let settings: ControllerSettings
  let now: @Sendable () -> Date
  let recorder: EventRecorder?
  let logger: Logger
  /// The shared caches of the controller's own objects: the step Jobs and their Pods are read from them once filled.
  let managed: ManagedCaches
  /// The shared cache of BackupPolicies (the BackupPolicy controller's): the policies the restores name are read from
  /// it once filled, else listed live.
  let policies: Store<BackupPolicy>?
  /// The shared cache of every Namespace's metadata (`namespaceInformer`, which wakes the plans): the target
  /// namespaces' opt-in is read from it once filled, else read live.
  let namespaces: Store<Unstructured>?

  public init(
    client: KubeClient, settings: ControllerSettings, now: @escaping @Sendable () -> Date = { Date() },
    recorder: EventRecorder?, logger: Logger, managed: ManagedCaches = .none, policies: Store<BackupPolicy>? = nil,
    namespaces: Store<Unstructured>? = nil
  ) {
    self.client = client
    self.entry = ReconcileEntry(client: client, fieldManager: Self.fieldManager, logger: logger)
    self.settings = settings
    self.now = now
    self.recorder = recorder
    self.logger = logger
    self.managed = managed
    self.policies = policies
    self.namespaces = namespaces
  }

  /// The controller's name. It also reconciles a plan when one of its Jobs or their Pods changes (the controller's
  /// Jobs and Pods, shared with the other controllers; `InformerRegistry.runsController`), mapped by the plan labels
  /// (`owner`): a restore's Job in another namespace wakes its plan too.
  public static let controllerName = "recoveryplan"

  /// The plan a Job or Pod of the controller belongs to; none for Jobs of plans outside `watchNamespace`.
  public static func owner(watchNamespace: String?) -> KeyMapper<Unstructured> {
    { child in
      // Labels read from the body: decoding the whole ObjectMeta of every Job and Pod event costs more.
      let labels = (child.body[path: "metadata", "labels"]?.objectValue ?? [:]).compactMapValues(\.stringValue)
      return RecoveryPlanLabels.owner(labels: labels, watchNamespace: watchNamespace).map { [$0] } ?? []
    }
  }

  /// The informer of every Namespace's metadata (its opt-in annotation `dr.botrt.io/recovery-allowed-from`).
  public static func namespaceInformer(_ informers: InformerRegistry) -> SharedInformer<Unstructured> {
    informers.all(ChildResources.namespaces)
  }

  /// A Namespace that changes wakes the plans whose steps touch it, so a plan refused a target namespace runs as
  /// soon as that namespace's admin allows it.
  public func watches(_ controller: Controller<RecoveryPlan>, informers: InformerRegistry) {
    let plans = controller.store
    controller.watches(
      Self.namespaceInformer(informers),
      mapper: { ns in
        guard let name = ns.metadata.name else { return [] }
        return RecoveryTargetAccess.plans(touching: name, among: plans.list()).map(ObjectKey.init)
      })
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
    var ctx = RecoveryJobContext(
      settings: settings, policies: Dictionary(try await readPolicies(ns).map { ($0.name, $0) }) { a, _ in a },
      namespace: ns, labels: labels(plan), owner: plan.ownerReference())
    ctx.targetNamespace = plan.spec.targetNamespace
    // Every Job of the plan must be buildable before anything runs, so a run never stops half-way on a typo; and
    // every claim a restore creates must be (it needs a size). An invalid spec is reported before anything is read
    // (a plan that names no valid step has no Jobs or claims to observe).
    var problem: (reason: String, error: SpecError)? = nil
    var world = PlanWorld()
    do {
      let steps = try RecoveryPlanLogic.steps(plan.spec)
      for step in steps where step.runsJob {
        _ = try RecoveryJobs.stepJob(step, jobName: "check", ctx: ctx)
      }
      world = try await observe(plan)
      world.progress = await observeProgress(plan, world: world, policies: ctx.policies, now: now())
      if let e = RestoreTarget.claimProblem(plan, steps: steps, policies: ctx.policies, claims: world.claims) {
        problem = (RestoreTarget.claimProblemReason, e)
      }
    } catch let e as SpecError {
      problem = ("InvalidSpec", e)
    }
    if let problem {
      var st = plan.status ?? RecoveryPlanStatus()
      var conds = st.conditions ?? []
      let before = conds.condition(RecoveryPlanCondition.ready)
      conds.setCondition(
        type: RecoveryPlanCondition.ready, status: .false, reason: problem.reason,
        message: problem.error.description, observedGeneration: plan.metadata.generation, now: now())
      st.conditions = conds
      st.observedGeneration = plan.metadata.generation
      if st.phase == nil { st.phase = .idle }
      try await entry.writeStatus(plan, st)
      if before?.reason != problem.reason || before?.message != problem.error.description {
        recorder?.record(plan, type: .warning, reason: problem.reason, message: problem.error.description)
      }
      return .requeueAfter(.seconds(30))
    }

    let advance = RecoveryPlanLogic.advance(plan: plan, world: world, now: now())
    let steps = try RecoveryPlanLogic.steps(plan.spec)
    for action in advance.actions {
      switch action {
      case .createJob(let index, let name):
        try await createJob(plan, steps[index], name: name, ctx: ctx, world: world)
      case .deleteJob(let index, let name):
        // Background propagation: the Job's Pods, and in another namespace the Secret copies it owns, go with it.
        // A Job not observed yet (its watch event still on the way) is in the namespace its step runs in.
        do {
          try await client.delete(
            ChildResources.jobs,
            namespace: world.jobNamespaces[name] ?? RecoveryJobs.jobNamespace(steps[index], ctx: ctx),
            name: name,
            options: DeleteOptions(propagationPolicy: .background))
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

  /// The BackupPolicies of the plan's namespace: from the shared cache once it is filled, else listed live.
  func readPolicies(_ namespace: String) async throws -> [BackupPolicy] {
    if let policies, policies.isReady { return policies.list(namespace: namespace) }
    return try await client.listAll(BackupPolicy.self, namespace: namespace).items
  }

  /// A Namespace's annotations (nil: it does not exist): from the shared cache once it is filled, else read live.
  func namespaceAnnotations(_ name: String) async throws -> [String: String]? {
    if let namespaces, namespaces.isReady {
      return namespaces.get(ObjectKey(namespace: nil, name: name)).map { $0.metadata.annotations ?? [:] }
    }
    do {
      let n = try await client.get(
        ChildResources.namespaces, namespace: nil, name: name, as: Unstructured.self, metadataOnly: true)
      return n.metadata.annotations ?? [:]
    } catch let e as KubeError where e.isNotFound {
      return nil
    }
  }

  /// Creates the Job of a step. A restore into a claim with `into.pvc.create` creates the claim first when it does
  /// not exist (create, never apply: an existing claim is not changed); a restore into another namespace runs its
  /// Job there and then copies the policy's Secrets next to it, owned by the Job (a Pod that starts first waits for
  /// them: the kubelet retries a missing Secret).
  func createJob(
    _ plan: RecoveryPlan, _ step: PlannedStep, name: String, ctx: RecoveryJobContext, world: PlanWorld
  ) async throws {
    let ns = ctx.namespace
    let body = try RecoveryJobs.stepJob(step, jobName: name, ctx: ctx)
    let target = RestoreTarget.of(step.step, plan: plan)
    let jobNS = RecoveryJobs.jobNamespace(step, ctx: ctx)
    // advance never starts a step outside the allowed namespaces; this keeps it so should that logic change.
    guard jobNS == ns || RecoveryTargetAccess.allows(planNamespace: ns, annotations: world.targetNamespaces[jobNS])
    else {
      throw TerminalError("RecoveryPlan \(ns)/\(plan.name): refusing to run Job \(name) in namespace \(jobNS)")
    }
    if let t = target, t.create != nil, world.claims[t.key] != true, let r = step.step.restore,
      let p = ctx.policies[r.policyRef.name]
    {
      let claim = try t.claim(
        policy: p, labels: RestoreTarget.claimLabels(planNamespace: ns, planName: plan.name),
        field: "\(step.field).restore")
      do {
        _ = try await client.create(
          ChildResources.persistentVolumeClaims, namespace: t.namespace, claim.json,
          options: WriteOptions(fieldManager: Self.fieldManager))
        recorder?.record(
          plan, type: .normal, reason: "ClaimCreated",
          message: "Created PersistentVolumeClaim \(t.key) (\(claim.spec?.resources?.requests?["storage"] ?? "?"), "
            + "\((claim.spec?.accessModes ?? []).joined(separator: ","))) for step \(step.displayName); the "
            + "controller never deletes it.")
      } catch let e as KubeError where e.isAlreadyExists {
        // There already: restored into as it is.
      }
    }
    // The Job's NetworkPolicy (RestoreIsolation). In the plan's namespace, applied before the Job (owned by the
    // plan, so that no pod of the Job runs without it), then handed to the Job; in another namespace, applied after
    // the Job and before the Secret copies the Job's pod waits for.
    let isolation = try RestoreIsolation.networkPolicy(
      step, jobName: name, namespace: jobNS, ctx: ctx, owner: ctx.owner)
    if jobNS == ns, let np = isolation { try await applyIsolation(np) }
    // A restore of Kubernetes objects: the ServiceAccount its pod runs as, and the RoleBinding of the restorer
    // ClusterRole to it, before the Job (its pod needs them), then owned by the Job.
    let objects = target?.objects == true
    if objects { try await applyObjectsAccess(jobName: name, namespace: jobNS, labels: ctx.labels, owner: nil) }
    let job: JSONValue = try await client.apply(
      ChildResources.jobs, namespace: jobNS, name: name, body, fieldManager: Self.fieldManager, force: true)
    let owner = job[path: "metadata", "uid"]?.stringValue.map {
      OwnerReference(apiVersion: "batch/v1", kind: "Job", name: name, uid: $0, controller: true)
    }
    if objects, let owner {
      try await applyObjectsAccess(jobName: name, namespace: jobNS, labels: ctx.labels, owner: owner)
    }
    // Owned by the Job, it goes with the Job (a retried step's Job is deleted with its pods).
    if var np = isolation {
      np.metadata.ownerReferences = owner.map { [$0] }
      try await applyIsolation(np)
    }
    guard let t = target, t.foreign, let r = step.step.restore, let p = ctx.policies[r.policyRef.name] else { return }
    let source = try ReplicaSource.policy(p, replica: r.replica, field: "\(step.field).restore.replica")
    let inv = try EngineInvocation(policy: source) { $0 }
    var secrets: [String: Secret] = [:]
    for secret in Set(inv.secrets.map(\.sourceName)) {
      do {
        secrets[secret] = try await client.get(Secret.self, namespace: ns, name: secret)
      } catch let e as KubeError where e.isNotFound {
        continue
      }
    }
    let copies = try RestoreSecretCopies.build(
      names: inv.secrets.map(\.sourceName), secrets: secrets, namespace: t.namespace, jobName: name,
      labels: ctx.labels, owner: owner, field: "\(step.field).restore.policyRef", planNamespace: ns)
    for c in copies {
      _ = try await client.apply(
        ChildResources.secrets, namespace: t.namespace, name: c.name, c, fieldManager: Self.fieldManager,
        force: true)
    }
  }

  /// Applies an objects restore Job's ServiceAccount (before the Job) and its RoleBinding (before the Job, and again
  /// owned by it) (`KubeObjects.restoreAccess`).
  func applyObjectsAccess(
    jobName: String, namespace: String, labels: [String: String], owner: OwnerReference?
  ) async throws {
    let (account, binding) = KubeObjects.restoreAccess(
      jobName: jobName, namespace: namespace, labels: labels, owner: owner)
    if owner == nil {
      _ = try await client.apply(
        ChildResources.serviceAccounts, namespace: namespace, name: KubeObjects.restoreServiceAccount, account.json,
        fieldManager: Self.fieldManager, force: true)
    }
    _ = try await client.apply(
      ChildResources.roleBindings, namespace: namespace, name: jobName, binding.json, fieldManager: Self.fieldManager,
      force: true)
  }

  /// Applies a restore Job's NetworkPolicy.
  func applyIsolation(_ np: NetworkPolicy) async throws {
    _ = try await client.apply(
      ChildResources.networkPolicies, namespace: np.metadata.namespace, name: np.metadata.name ?? "", np.json,
      fieldManager: Self.fieldManager, force: true)
  }

  static let deployments = ResourceDescriptor(
    group: "apps", version: "v1", plural: "deployments", kind: "Deployment", namespaced: true)
  static let statefulSets = ResourceDescriptor(
    group: "apps", version: "v1", plural: "statefulsets", kind: "StatefulSet", namespaced: true)

  func workloadResource(_ kind: String) -> ResourceDescriptor {
    kind == "StatefulSet" ? Self.statefulSets : Self.deployments
  }

  /// The progress of the running restore steps, by Job name: read from the tail of the restore container's log when
  /// due (`RecoveryPlanLogic.progressReads`: at most every 10 s), else as status has it. A log that cannot be read
  /// (the container still starting, or no grant of pods/log in the Job's namespace) leaves the values as they were.
  func observeProgress(
    _ plan: RecoveryPlan, world: PlanWorld, policies: [String: BackupPolicy], now: Date
  ) async -> [String: RunProgress] {
    var out: [String: RunProgress] = [:]
    for r in RecoveryPlanLogic.progressReads(plan: plan, world: world, policies: policies, now: now) {
      guard r.due else {
        if let p = r.previous { out[r.job] = p }
        continue
      }
      var line: EngineProgress? = nil
      if let pod = r.pod {
        line = await RunProgressLogic.readLatest(
          client: client, logger: logger, namespace: r.namespace, pod: pod,
          container: RecoveryPlanLogic.restoreContainer, what: "the restore's progress",
          object: "RecoveryPlan \(plan.metadata.namespace ?? "")/\(plan.name)")
      }
      out[r.job] = RunProgressLogic.progress(
        job: r.job, startTime: r.startTime, line: line, previous: r.previous,
        previousBackupBytes: r.previousBackupBytes, now: now)
    }
    return out
  }

  /// Reads the plan's Jobs (with their Pods) and the workloads its steps name.
  ///
  /// The Jobs and Pods come from the shared caches (`ManagedCaches.jobsWithPods`: cluster-wide, labelled
  /// managed-by=botrt-controller, so they hold the restore Jobs of other namespaces too), read live before the caches
  /// fill and while a finished Job's Pod is not shown finished yet. A Job applied a moment ago and not cached yet
  /// leaves its step running (`RecoveryPlanLogic.advance` waits for it): its watch event brings the plan back.
  func observe(_ plan: RecoveryPlan) async throws -> PlanWorld {
    let ns = plan.metadata.namespace ?? "default"
    var world = PlanWorld()
    // The target namespaces' opt-in (RecoveryTargetAccess); workloads are read only where the plan may act.
    for tns in RecoveryTargetAccess.foreignNamespaces(plan) {
      if let annotations = try await namespaceAnnotations(tns) { world.targetNamespaces[tns] = annotations }
    }
    // The step Jobs: in the plan's namespace, and in those its restores run in where the plan may act.
    let selection = RecoveryPlanLabels.selection(planName: plan.name, planNamespace: ns)
    for jns in RecoveryTargetAccess.jobNamespaces(plan, targetNamespaces: world.targetNamespaces) {
      world.observeJobs(try await managed.jobsWithPods(namespace: jns, labels: selection, client: client), in: jns)
    }
    // Restores into claims: whether the claims they would create exist; only where the plan may act.
    for step in plan.spec.procedures.flatMap(\.steps) {
      guard let t = RestoreTarget.of(step, plan: plan) else { continue }
      if t.foreign, !RecoveryTargetAccess.allows(planNamespace: ns, annotations: world.targetNamespaces[t.namespace]) {
        continue
      }
      if t.create != nil, world.claims[t.key] == nil {
        do {
          _ = try await client.get(
            ChildResources.persistentVolumeClaims, namespace: t.namespace, name: t.claimName, as: Unstructured.self,
            metadataOnly: true)
          world.claims[t.key] = true
        } catch let e as KubeError where e.isNotFound {
          world.claims[t.key] = false
        }
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
        // Read live, by name: no informer holds Deployments or StatefulSets. One would watch and cache every
        // workload of the cluster (and need list and watch on them in the ClusterRole, where get and patch are
        // granted) for the few targets a running plan reads, and a plan polls while it waits for them anyway.
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
