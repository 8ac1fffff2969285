import DRAPI
import EngineContract
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging

/// The DRDrill gauges, labelled namespace and drill.
public struct DrillMetrics: Sendable {
  public let lastRun: Gauge
  public let rto: Gauge
  public let rpo: Gauge
  public let score: Gauge
  /// The RTO target the last run was scored against (RTOViolationRisk compares the two).
  public let rtoTarget: Gauge
  /// 1 when the last run passed, 0 when it failed (DrillFailed).
  public let lastPassed: Gauge
  /// When the next scheduled run is due (DrillOverdue); absent while the drill is suspended.
  public let nextRun: Gauge

  /// Every gauge of a drill (they go with the drill).
  var gauges: [Gauge] { [lastRun, rto, rpo, score, rtoTarget, lastPassed, nextRun] }

  public init(_ r: MetricsRegistry) {
    let l = ["namespace", "drill"]
    rtoTarget = r.gauge(
      "botrt_drill_rto_target_seconds", help: "RTO target (seconds) the last drill run was scored against.",
      labels: l)
    lastRun = r.gauge(
      "botrt_drill_last_run_timestamp_seconds", help: "Unix time the last drill run started.", labels: l)
    rto = r.gauge("botrt_drill_rto_seconds", help: "RTO achieved by the last drill run (start to verified).", labels: l)
    rpo = r.gauge("botrt_drill_rpo_seconds", help: "Age of the snapshot the last drill run restored.", labels: l)
    score = r.gauge("botrt_drill_compliance_score", help: "Compliance score (0-100) of the last drill run.", labels: l)
    lastPassed = r.gauge(
      "botrt_drill_last_passed", help: "1 when the last drill run passed, 0 when it failed.", labels: l)
    nextRun = r.gauge(
      "botrt_drill_next_run_timestamp_seconds", help: "Unix time the drill's next scheduled run is due.", labels: l)
  }

  /// Records the drill's next scheduled run (nil: none, e.g. suspended).
  func setNextRun(_ drill: DRDrill, _ next: Date?) {
    let l = [drill.metadata.namespace ?? "", drill.name]
    if let next {
      nextRun.set(next.timeIntervalSince1970, l)
    } else {
      nextRun.remove(matching: ["namespace": l[0], "drill": l[1]])
    }
  }
}

/// The DRDrill reconciler: decides when a run starts (schedule or trigger, never two at once), creates the fenced
/// scratch namespace with copies of the Secrets the restore needs and the run Job, evaluates the finished run
/// (`DrillLogic.finish`), records it in status, Events and metrics, and removes the scratch namespace, also after
/// failures and timeouts, and when the drill is deleted mid-run (finalizer). It never writes spec.
public final class DrillReconciler: RunsReconciler {
  public static let fieldManager = ChildLabels.controllerName
  /// The finalizer this controller adds to every DRDrill: it removes the drill's scratch namespaces.
  public static let finalizer = "dr.botrt.io/cleanup"
  /// How often a running drill is looked at besides Job and Pod events.
  public static let pollSeconds: TimeInterval = 5

  let client: KubeClient
  /// Fetch, finalizer, failure and status, as every kind does them.
  let entry: ReconcileEntry<DRDrill>
  let settings: ControllerSettings
  let now: @Sendable () -> Date
  let recorder: EventRecorder?
  let metrics: DrillMetrics?
  let logger: Logger
  /// The shared caches of the controller's own objects: the run's Job and Pods are read from them once filled.
  let managed: ManagedCaches
  /// The shared caches of BackupPolicies (the BackupPolicy controller's) and RecoveryPlans (the RecoveryPlan
  /// controller's): a drill's target is read from them once they are filled, else read live.
  let policies: Store<BackupPolicy>?
  let plans: Store<RecoveryPlan>?
  /// The shared cache of the claims of `claimsNamespace` (nil: all namespaces), which multi-claim policies select
  /// from: a drill's source claim is read from it once it is filled, else (or outside that namespace) read live.
  let claims: Store<PersistentVolumeClaim>?
  let claimsNamespace: String?

  public init(
    client: KubeClient, settings: ControllerSettings, now: @escaping @Sendable () -> Date = { Date() },
    recorder: EventRecorder?, metrics: MetricsRegistry?, logger: Logger, managed: ManagedCaches = .none,
    policies: Store<BackupPolicy>? = nil, plans: Store<RecoveryPlan>? = nil,
    claims: Store<PersistentVolumeClaim>? = nil, claimsNamespace: String? = nil
  ) {
    self.client = client
    self.entry = ReconcileEntry(
      client: client, finalizer: Self.finalizer, fieldManager: Self.fieldManager, logger: logger)
    self.settings = settings
    self.now = now
    self.recorder = recorder
    self.metrics = metrics.map(DrillMetrics.init)
    self.logger = logger
    self.managed = managed
    self.policies = policies
    self.plans = plans
    self.claims = claims
    self.claimsNamespace = claimsNamespace
  }

  /// The controller's name; it also reconciles a drill when its run Job or Pod (in the scratch namespace) changes
  /// (`InformerRegistry.runsController`).
  public static let controllerName = "drdrill"

  /// The drill a Job or Pod of the controller belongs to, by the drill labels.
  public static func owner(watchNamespace: String?) -> KeyMapper<Unstructured> {
    Mappers.labels(
      nameLabel: DrillLogic.drillNameLabel, namespaceLabel: DrillLogic.drillNamespaceLabel,
      watchNamespace: watchNamespace)
  }

  public func reconcile(_ key: ObjectKey, _ store: Store<DRDrill>) async throws -> ReconcileResult {
    // Scratch namespaces are cluster-scoped, so no owner reference removes them: a drill deleted mid-run removes its
    // scratch namespaces before its finalizer goes.
    try await entry.reconcile(key, store, apply: apply) { d in
      // Listed live: the drill's last look must not miss a namespace created a moment ago and not cached yet.
      try await self.removeStaleScratchNamespaces(d, keep: nil, live: true)
      // A deleted drill's gauges go: a frozen RTO above its target would keep RTOViolationRisk firing.
      if let m = self.metrics {
        let mine = ["namespace": d.metadata.namespace ?? "", "drill": d.name]
        for g in m.gauges { g.remove(matching: mine) }
      }
      self.logger.info(
        "drill deleted; its scratch namespaces are being removed", metadata: ["object": "DRDrill \(key)"])
      return .done(.awaitChange)
    }
  }

  /// The target's policy (directly, or through the plan's first restore step) and the plan, from the shared caches
  /// once they are filled (`cachedOrLive`).
  func resolveTarget(_ drill: DRDrill) async throws -> (BackupPolicy?, RecoveryPlan?, SpecError?) {
    let ns = drill.metadata.namespace ?? "default"
    var plan: RecoveryPlan? = nil
    let policyName: String?
    switch drill.spec.target.kind {
    case .backupPolicy(let ref)?:
      policyName = ref.name
    case .recoveryPlan(let ref)?:
      plan = try await cachedOrLive(plans, namespace: ns, name: ref.name)
      guard plan != nil else {
        return (
          nil, nil,
          SpecError(
            field: "spec.target.recoveryPlanRef", message: "RecoveryPlan '\(ref.name)' does not exist in \(ns)")
        )
      }
      policyName = plan?.spec.procedures.flatMap(\.steps).first { $0.action == .restore }?.restore?.policyRef.name
    case nil:
      return (nil, nil, drill.spec.target.exactlyOneErrors(at: "spec.target").first)
    }
    guard let name = policyName else {
      return (nil, plan, SpecError(field: "spec.target", message: "the target names no BackupPolicy to restore from"))
    }
    if let policy = try await cachedOrLive(policies, namespace: ns, name: name) { return (policy, plan, nil) }
    let field = plan == nil ? "spec.target.backupPolicyRef" : "spec.target.recoveryPlanRef"
    return (nil, plan, SpecError(field: field, message: "BackupPolicy '\(name)' does not exist in \(ns)"))
  }

  /// An object from a shared cache once it is filled (nil: it does not exist), else read live.
  func cachedOrLive<T: KubeResource>(_ store: Store<T>?, namespace: String, name: String) async throws -> T? {
    if let store, store.isReady { return store.get(ObjectKey(namespace: namespace, name: name)) }
    do {
      return try await client.get(T.self, namespace: namespace, name: name)
    } catch let e as KubeError where e.isNotFound {
      return nil
    }
  }

  public func apply(_ drill: DRDrill) async throws -> ReconcileResult {
    let now = self.now()
    var status = drill.status ?? DRDrillStatus()
    status.observedGeneration = drill.metadata.generation
    status.target = drill.spec.target.displayName
    var conds = status.conditions ?? []

    let (policyOpt, plan, targetProblem) = try await resolveTarget(drill)
    var schedule: Sourced<String>? = nil
    var problem = SpecValidation.validate(drill.spec).first ?? targetProblem
    if problem == nil, let policy = policyOpt {
      do {
        schedule = try DrillLogic.schedule(
          drill, targetTier: plan?.spec.tier ?? policy.spec.tier,
          targetCompliance: (policy.spec.compliance ?? []) + (plan?.spec.compliance ?? []))
        let spec = try DrillLogic.runSpec(drill, plan: plan)
        // A replica to restore from must be one of the policy's (spec.target.replica names it).
        _ = try DrillLogic.sourcePolicy(spec, policy: policy)
        // A restore into a claim needs a source claim to size the scratch claim from: refused here, not after a
        // run's hour of Pending.
        let source = try await readSourceClaim(drill, spec: spec, policy: policy)
        _ = try DrillLogic.scratchClaim(drill, spec: spec, namespace: "scratch", policy: policy, source: source)
      } catch let e as SpecError {
        problem = e
      }
    }
    guard let policy = policyOpt, let schedule, problem == nil else {
      let p = problem ?? SpecError(field: "spec.target", message: "unresolved")
      conds.setCondition(
        type: DRDrillCondition.ready, status: .false, reason: "InvalidTarget", message: p.description,
        observedGeneration: drill.metadata.generation, now: now)
      status.conditions = conds
      if status.phase == nil { status.phase = .idle }
      try await entry.writeStatus(drill, status)
      return .requeueAfter(.seconds(30))
    }
    let cron: CronSchedule
    do {
      cron = try CronSchedule(schedule.value)
    } catch {
      throw TerminalError("DRDrill \(drill.name): effective schedule '\(schedule.value)': \(error)")
    }
    status.effectiveSchedule = schedule.value
    status.scheduleSource = schedule.source.description
    conds.setCondition(
      type: DRDrillCondition.ready, status: .true, reason: "Valid",
      message: "The drill rehearses \(drill.spec.target.displayName ?? "?") on the schedule '\(schedule.value)' "
        + "(\(schedule.source)).",
      observedGeneration: drill.metadata.generation, now: now)
    status.conditions = conds

    if status.phase == .running, let run = status.currentRun, let scratch = run.scratchNamespace,
      let start = run.startTime
    {
      var d = drill
      d.status = status
      return try await progress(
        d, stored: drill, policy: policy, plan: plan, cron: cron, scratch: scratch, start: start, now: now)
    }

    try await removeStaleScratchNamespaces(drill, keep: nil)
    if status.phase == .running {
      // Running without a recorded run (e.g. status edited by hand): nothing can be observed, so the drill idles.
      status.phase = .idle
      status.currentRun = nil
    }
    var d = drill
    d.status = status
    switch DrillLogic.decide(d, cron: cron, now: now) {
    case .running:
      try await entry.writeStatus(drill, status)
      return .requeueAfter(.seconds(Int64(Self.pollSeconds)))
    case .suspended:
      status.nextScheduledRun = nil
      metrics?.setNextRun(drill, nil)
      status.phase = status.phase ?? .idle
      try await entry.writeStatus(drill, status)
      return .awaitChange
    case .waitUntil(let t):
      status.nextScheduledRun = t
      metrics?.setNextRun(drill, t)
      status.phase = status.phase ?? .idle
      try await entry.writeStatus(drill, status)
      return .requeueAfter(requeueDelay(seconds: t.timeIntervalSince(now)))
    case .start(let token):
      return try await startRun(
        d, stored: drill, token: token, policy: policy, plan: plan, schedule: schedule, cron: cron, now: now)
    }
  }

  /// Starts a run of `drill` (its status as computed by this reconcile); `stored` is the drill as read, whose status
  /// the status patch is computed against (a patch from the computed status would leave out what this reconcile
  /// changed, such as conditions and observedGeneration).
  func startRun(
    _ drill: DRDrill, stored: DRDrill, token: String, policy: BackupPolicy, plan: RecoveryPlan?,
    schedule: Sourced<String>,
    cron: CronSchedule, now: Date
  ) async throws -> ReconcileResult {
    let ns = drill.metadata.namespace ?? "default"
    let scratch = DrillLogic.scratchNamespace(drill, token: token)
    let spec = try DrillLogic.runSpec(drill, plan: plan)
    var secrets: [String: Secret] = [:]
    // The repository the run opens: the policy's, or its replica's (its Secrets are the ones copied).
    let source = try DrillLogic.sourcePolicy(spec, policy: policy)
    let inv = try EngineInvocation(policy: source) { $0 }
    var names = inv.secrets.map(\.sourceName)
    for e in (spec.restore.into.command?.env ?? []) + (spec.query?.env ?? []) {
      if let r = e.valueFrom?.secretKeyRef { names.append(r.name) }
    }
    for name in Set(names) {
      do {
        secrets[name] = try await client.get(Secret.self, namespace: ns, name: name)
      } catch let e as KubeError where e.isNotFound {
        continue
      }
    }
    let sourceClaim = try await readSourceClaim(drill, spec: spec, policy: policy)
    let timeout = try drillTimeout(drill)
    var children = DrillLogic.scratchChildren(drill, namespace: scratch, policy: source, settings: settings)
    let job: JSONValue
    do {
      children += try DrillLogic.secretCopies(drill, namespace: scratch, policy: source, spec: spec, secrets: secrets)
      if let claim = try DrillLogic.scratchClaim(
        drill, spec: spec, namespace: scratch, policy: policy, source: sourceClaim)
      {
        children.append(claim)
      }
      job = try DrillLogic.runJob(
        drill, spec: spec, namespace: scratch, settings: settings, policies: [policy.name: policy],
        timeoutSeconds: timeout)
    } catch {
      // Nothing was created: say why in status and try again later (a missing Secret may still appear).
      var st = drill.status ?? DRDrillStatus()
      var conds = st.conditions ?? []
      conds.setCondition(
        type: DRDrillCondition.ready, status: .false, reason: "CannotRun",
        message: "The run (\(token)) cannot start: \(error.description)", observedGeneration: drill.metadata.generation,
        now: now)
      st.conditions = conds
      try await entry.writeStatus(stored, st)
      recorder?.record(
        drill, type: .warning, reason: "CannotRun", message: "The run cannot start: \(error.description)")
      return .requeueAfter(.seconds(30))
    }
    // The scratch namespace is created, never applied: one that exists already is used only when it is this drill's
    // (an earlier attempt of this run); any other is refused, so a run never lands in another tenant's namespace.
    let created = try await createScratchNamespace(drill, scratch: scratch, children: children)
    if case .terminating = created {
      // An earlier attempt's namespace of the same name is being deleted (e.g. removed as stale a moment ago): a run
      // started in it would lose its Job with the namespace and wait for it until its timeout. Start once it is gone.
      logger.info(
        "drill waits for its scratch namespace to be deleted",
        metadata: ["object": "DRDrill \(ns)/\(drill.name)", "scratch": "\(scratch)"])
      return .requeueAfter(.seconds(2))
    }
    if case .conflict(let conflict) = created {
      var st = drill.status ?? DRDrillStatus()
      var conds = st.conditions ?? []
      let message = "The run (\(token)) cannot start: \(conflict.description)."
      conds.setCondition(
        type: DRDrillCondition.ready, status: .false, reason: DrillLogic.scratchConflictReason, message: message,
        observedGeneration: drill.metadata.generation, now: now)
      st.conditions = conds
      try await entry.writeStatus(stored, st)
      recorder?.record(drill, type: .warning, reason: DrillLogic.scratchConflictReason, message: message)
      return .requeueAfter(.seconds(300))
    }
    for c in children where c.resource != ChildResources.namespaces {
      _ = try await client.apply(
        c.resource, namespace: c.namespace, name: c.name, c.body, fieldManager: Self.fieldManager, force: true)
    }
    // The namespace's default ServiceAccount must exist before a Pod can be created there.
    for _ in 0..<50 {
      do {
        _ = try await client.get(
          ChildResources.serviceAccounts, namespace: scratch, name: "default", as: JSONValue.self)
        break
      } catch let e as KubeError where e.isNotFound {
        try await Task.sleep(for: .milliseconds(200))
      }
    }
    _ = try await client.apply(
      ChildResources.jobs, namespace: scratch, name: DrillLogic.runJobName, job, fieldManager: Self.fieldManager,
      force: true)
    var st = DrillLogic.startRun(drill, token: token, scratchNamespace: scratch, schedule: schedule, now: now)
    // A suspended drill run by its trigger has no next scheduled run.
    st.nextScheduledRun = drill.spec.suspend == true ? nil : cron.next(after: now)
    try await entry.writeStatus(stored, st)
    metrics?.setNextRun(drill, st.nextScheduledRun)
    recorder?.record(
      drill, type: .normal, reason: "DrillStarted",
      message: "Drill started (\(token)): restoring into the scratch namespace \(scratch).")
    logger.info("drill started", metadata: ["object": "DRDrill \(ns)/\(drill.name)", "scratch": "\(scratch)"])
    return .requeueAfter(.seconds(Int64(Self.pollSeconds)))
  }

  /// The claim the run's scratch claim is sized from (`DrillLogic.sourceClaimReference`), as read; nil when the run
  /// restores into no claim, or when the claim does not exist or cannot be read.
  func readSourceClaim(_ drill: DRDrill, spec: DrillRunSpec, policy: BackupPolicy) async throws -> JSONValue? {
    guard let ref = DrillLogic.sourceClaimReference(drill, spec: spec, policy: policy) else { return nil }
    if let claims, claims.isReady, claimsNamespace == nil || claimsNamespace == ref.namespace {
      return try claims.get(ObjectKey(namespace: ref.namespace, name: ref.name)).map { try JSONValue(encoding: $0) }
    }
    do {
      return try await client.get(
        ChildResources.persistentVolumeClaims, namespace: ref.namespace, name: ref.name, as: JSONValue.self)
    } catch let e as KubeError where e.isNotFound || e.isForbidden {
      return nil
    }
  }

  /// What `createScratchNamespace` found.
  enum ScratchNamespaceOutcome {
    /// Created, or this drill's already (an earlier attempt of this run): the run may start in it.
    case ready
    /// This drill's, but being deleted: the run must wait until it is gone.
    case terminating
    /// Someone else's.
    case conflict(ChildNameConflict)
  }

  /// Creates the scratch namespace among `children` (create, not apply); when it exists already, it is `.ready` if
  /// its labels make it this drill's (`DrillLogic.scratchNamespaceConflict`) and it is not being deleted.
  func createScratchNamespace(
    _ drill: DRDrill, scratch: String, children: [DesiredChild]
  ) async throws -> ScratchNamespaceOutcome {
    guard let ns = children.first(where: { $0.resource == ChildResources.namespaces && $0.name == scratch }) else {
      return .ready
    }
    do {
      _ = try await client.create(
        ChildResources.namespaces, namespace: nil, ns.body, options: WriteOptions(fieldManager: Self.fieldManager))
      return .ready
    } catch let e as KubeError where e.isAlreadyExists {
      let existing = try await client.get(
        ChildResources.namespaces, namespace: nil, name: scratch, as: Unstructured.self, metadataOnly: true)
      if let conflict = DrillLogic.scratchNamespaceConflict(
        drill, scratch: scratch, existing: existing.metadata.labels ?? [:])
      {
        return .conflict(conflict)
      }
      return existing.metadata.isDeleting ? .terminating : .ready
    }
  }

  func drillTimeout(_ drill: DRDrill) throws -> Int64 {
    guard let t = drill.spec.timeout else { return 3_600 }
    return try DurationText.parseSeconds(t, field: "spec.timeout")
  }

  func progress(
    _ drill: DRDrill, stored: DRDrill, policy: BackupPolicy, plan: RecoveryPlan?, cron: CronSchedule, scratch: String,
    start: Date,
    now: Date
  ) async throws -> ReconcileResult {
    var world = DrillRunWorld(
      job: try await observeRun(drill, scratch: scratch), scratchNamespace: scratch, runStart: start,
      timeoutSeconds: try drillTimeout(drill))
    let failure: String?
    switch DrillLogic.progress(world, now: now) {
    case .wait:
      // Still running: status acknowledges a spec change (generation, Ready) without waiting for the run's end, and
      // shows the restore's progress while it runs.
      world.progress = await observeProgress(drill, job: world.job, now: now)
      guard let computed = drill.status else { return .requeueAfter(.seconds(Int64(Self.pollSeconds))) }
      let w = DrillLogic.waiting(computed, world: world, now: now, pollSeconds: Self.pollSeconds)
      try await entry.writeStatus(stored, w.status)
      return .requeueAfter(requeueDelay(seconds: w.requeueAfter))
    case .evaluate(let f):
      failure = f
    }
    let job = world.job

    // Evaluate.
    let restoreResult = job?.containers["restore"]?.engineResult
    let snapshotTime = DrillLogic.restoredSnapshotTime(restoreResult, policy: policy.status)
    let security = try await securityChecks(policy: policy, job: job)
    let effective = try EffectivePolicy(spec: policy.spec, now: now)
    let targets = try DrillLogic.targets(
      drill, policy: effective, policyCompliance: policy.spec.compliance ?? [], plan: plan)
    let baseline = DrillLogic.baselineThroughput(history: drill.status?.history ?? [], policy: policy.status)
    let outcome = DrillLogic.finish(
      drill, job: job, runStart: start, token: drill.status?.lastHandledTrigger, scratchNamespace: scratch,
      snapshotTime: snapshotTime, baseline: baseline, security: security, targets: targets, failure: failure, now: now)
    var st = outcome.status
    st.nextScheduledRun = drill.spec.suspend == true ? nil : cron.next(after: now)
    try await entry.writeStatus(stored, st)
    for e in outcome.events {
      recorder?.record(drill, type: e.warning ? .warning : .normal, reason: e.reason, message: e.message)
    }
    if let m = metrics {
      let l = [drill.metadata.namespace ?? "", drill.name]
      m.lastRun.set(outcome.metrics.lastRunTimestampSeconds, l)
      if let v = outcome.metrics.rtoSeconds { m.rto.set(v, l) }
      m.rtoTarget.set(Double(targets.rtoSeconds), l)
      if let v = outcome.metrics.rpoSeconds { m.rpo.set(v, l) }
      m.score.set(outcome.metrics.complianceScore, l)
      m.lastPassed.set(outcome.result.passed == true ? 1 : 0, l)
      m.setNextRun(drill, st.nextScheduledRun)
    }
    try await removeStaleScratchNamespaces(drill, keep: nil)
    logger.info(
      "drill finished",
      metadata: [
        "object": "DRDrill \(drill.metadata.namespace ?? "")/\(drill.name)",
        "passed": "\(outcome.result.passed ?? false)",
        "score": "\(outcome.result.complianceScore ?? 0)",
      ])
    return .requeueAfter(.seconds(1))
  }

  /// The progress of the run's restore while it runs (`DrillLogic.progressRead`): read from the tail of the restore
  /// container's log (in the scratch namespace) when due, at most every 10 s, else as status has it; nil when no
  /// restore runs. A log that cannot be read (the container still starting, the Pod gone, or no grant of pods/log)
  /// is logged and leaves the values as they were, with the new time (`RunProgressLogic.progress`), so the log is
  /// read again 10 s later, not at every poll.
  func observeProgress(_ drill: DRDrill, job: JobObservation?, now: Date) async -> RunProgress? {
    guard let r = DrillLogic.progressRead(drill, job: job, now: now) else { return nil }
    guard r.due else { return r.previous }
    var line: EngineProgress? = nil
    if let pod = r.pod {
      line = await RunProgressLogic.readLatest(
        client: client, logger: logger, namespace: r.namespace, pod: pod, container: DrillLogic.restoreContainer,
        what: "the drill's restore progress", object: "DRDrill \(drill.metadata.namespace ?? "")/\(drill.name)")
    }
    return RunProgressLogic.progress(
      job: r.job, startTime: r.startTime, line: line, previous: r.previous, previousBackupBytes: nil, now: now)
  }

  /// The run Job of the drill's run in `scratch` with its Pods: from the shared caches of the controller's Jobs and
  /// Pods when they show it (no request on the polls of a running drill), else read live: before the caches are
  /// listed, while they do not show the Job (just applied, or gone: a run fails on a live read only), and when the
  /// Job finished but the cached Pods do not show its Pod finished yet (two watches deliver in either order;
  /// `ManagedCaches.cachedJobsWithPods`).
  func observeRun(_ drill: DRDrill, scratch: String) async throws -> JobObservation? {
    if let cached = managed.cachedJobsWithPods(namespace: scratch, labels: DrillLogic.labels(drill)),
      let run = DrillLogic.observeRun(cached)
    {
      return run
    }
    do {
      let job = try await client.get(
        ChildResources.jobs, namespace: scratch, name: DrillLogic.runJobName, as: JSONValue.self)
      let pods = try await client.listAll(
        ChildResources.pods, namespace: scratch,
        options: ListOptions(labelSelector: "job-name=\(DrillLogic.runJobName)"), as: JSONValue.self)
      return JobObservation.observe(job: job, pods: pods.items)
    } catch let e as KubeError where e.isNotFound {
      return nil
    }
  }

  /// The security posture: the backup namespace's shared NetworkPolicies present with the specs the controller
  /// applies; the Calico policy, where served, present with the spec the controller applies; encryption and
  /// signatures from the run's results (`DrillLogic.runEvidence`); and RBAC: the backup ServiceAccount's Role and
  /// RoleBindings as observed in the workload namespace grant no more than the builders declare
  /// (`DeclaredRBAC.widerThanDeclared`). The run's own Pod has no ServiceAccount token at all.
  func securityChecks(policy: BackupPolicy, job: JobObservation?) async throws -> SecurityChecks {
    let backupNS = BackupPolicyChildren.backupNamespace(policy, settings: settings)
    var intact = true
    for want in BackupPolicyChildren.sharedNetworkPolicies(namespace: backupNS, settings: settings) {
      do {
        let have = try await client.get(
          ChildResources.networkPolicies, namespace: backupNS, name: want.name, as: JSONValue.self)
        if have["spec"] != want.body["spec"] { intact = false }
      } catch let e as KubeError where e.isNotFound {
        intact = false
      }
    }
    var calico: Bool? = nil
    if settings.calicoServed {
      let want = BackupPolicyChildren.calicoPolicy(settings)
      do {
        let have = try await client.get(
          ChildResources.globalNetworkPolicies, namespace: nil, name: want.name, as: JSONValue.self)
        calico = have["spec"] == want.body["spec"]
      } catch let e as KubeError where e.isNotFound {
        calico = false
      }
    }
    let evidence = DrillLogic.runEvidence(job)
    var rbac = false
    do {
      let declared = try BackupPolicyChildren.declaredRBAC(policy, settings: settings)
      var role: JSONValue? = nil
      do {
        role = try await client.get(
          ChildResources.roles, namespace: declared.namespace, name: declared.role, as: JSONValue.self)
      } catch let e as KubeError where e.isNotFound {
        role = nil
      }
      let bindings = try await client.listAll(
        ChildResources.roleBindings, namespace: declared.namespace, options: ListOptions(), as: JSONValue.self)
      let wider = declared.widerThanDeclared(role: role, bindings: bindings.items)
      if let wider { logger.warning("RBAC wider than declared", metadata: ["detail": "\(wider)"]) }
      rbac = wider == nil
    } catch let e as SpecError {
      logger.warning("RBAC not checked", metadata: ["error": "\(e)"])
    }
    return SecurityChecks(
      networkPoliciesIntact: intact, calicoIntact: calico, encryptionVerified: evidence.encryption,
      signaturesVerified: evidence.signatures, rbacWithinDeclared: rbac)
  }

  /// Deletes the drill's scratch namespaces other than `keep` (runs that ended, crashed or timed out).
  ///
  /// They are found in the shared metadata cache of the controller's Namespaces (`ManagedCaches`, labelled
  /// managed-by=botrt-controller, as every scratch namespace is), so an idle reconcile makes no request; listed live
  /// before the cache fills, and when `live` (a deleted drill's cleanup, whose finalizer goes afterwards).
  func removeStaleScratchNamespaces(_ drill: DRDrill, keep: String?, live: Bool = false) async throws {
    let labels = DrillLogic.scratchSelection(drill)
    let found =
      live
      ? try await ManagedCaches.live(ChildResources.namespaces, namespace: nil, labels: labels, client: client)
      : try await managed.read(ChildResources.namespaces, namespace: nil, labels: labels, client: client)
    for name in DrillLogic.staleScratchNamespaces(found, keep: keep) {
      do {
        try await client.delete(
          ChildResources.namespaces, namespace: nil, name: name, options: DeleteOptions(propagationPolicy: .background))
        logger.info("deleted scratch namespace", metadata: ["namespace": "\(name)"])
      } catch let e as KubeError where e.isNotFound || e.isConflict {
        // Gone, or (Conflict) already being deleted: a cache a watch event behind the first delete still shows it
        // without its deletionTimestamp, and the apiserver refuses a second delete of a terminating namespace.
      }
    }
  }
}
