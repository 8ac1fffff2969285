import DRAPI
import EngineContract
import Foundation
import KubeCore

/// One step of a plan in execution order, with its effective timeout and retry budget.
public struct PlannedStep: Sendable, Hashable {
  /// Position in the flattened plan (0-based).
  public var index: Int
  /// Name of the procedure it belongs to.
  public var procedure: String
  /// The step as written.
  public var step: RecoveryStep
  /// Time limit of one attempt, in seconds.
  public var timeoutSeconds: Int64
  /// Attempts after the first failure.
  public var retries: Int32
  /// JSON path of the step in the spec, for messages.
  public var field: String

  /// "procedure/step", as status.failedStep shows it.
  public var displayName: String { "\(procedure)/\(step.name)" }
  /// Whether the step runs a Job.
  public var runsJob: Bool { [.restore, .verify, .job].contains(step.action) }
}

/// A Deployment or StatefulSet as observed: desired and ready replicas.
public struct WorkloadState: Sendable, Hashable {
  /// spec.replicas.
  public var replicas: Int32
  /// status.readyReplicas.
  public var readyReplicas: Int32
  /// status.replicas (pods that exist).
  public var currentReplicas: Int32

  public init(replicas: Int32, readyReplicas: Int32, currentReplicas: Int32? = nil) {
    self.replicas = replicas
    self.readyReplicas = readyReplicas
    self.currentReplicas = currentReplicas ?? readyReplicas
  }

  /// "Deployment/ns/name", the key of `PlanWorld.workloads`.
  public static func key(_ kind: String, _ namespace: String, _ name: String) -> String {
    "\(kind)/\(namespace)/\(name)"
  }
}

/// What the reconciler read before advancing a plan: Jobs by name, workloads by key, and the annotations of the
/// target namespaces other than the plan's own (by namespace; absent: the namespace does not exist).
public struct PlanWorld: Sendable, Hashable {
  public var jobs: [String: JobObservation]
  public var workloads: [String: WorkloadState]
  public var targetNamespaces: [String: [String: String]]
  /// The namespace of each observed Job (a restore into another namespace runs its Job there).
  public var jobNamespaces: [String: String]
  /// Whether the claims restores create when missing (`into.pvc.create`) exist, by `RestoreTarget.key`.
  public var claims: [String: Bool]
  /// The progress of the running restore Jobs, by Job name: read from their Pod logs when due
  /// (`RecoveryPlanLogic.progressReads`), else as status had it.
  public var progress: [String: RunProgress]

  public init(
    jobs: [String: JobObservation] = [:], workloads: [String: WorkloadState] = [:],
    targetNamespaces: [String: [String: String]] = [:], jobNamespaces: [String: String] = [:],
    claims: [String: Bool] = [:], progress: [String: RunProgress] = [:]
  ) {
    self.jobs = jobs
    self.workloads = workloads
    self.targetNamespaces = targetNamespaces
    self.jobNamespaces = jobNamespaces
    self.claims = claims
    self.progress = progress
  }

  /// Records the step Jobs observed in `namespace`, each with its Pods (`ManagedCaches.jobsWithPods`).
  public mutating func observeJobs(_ runs: [JobWithPods], in namespace: String) {
    for run in runs {
      let o = JobObservation.observe(job: run.job, pods: run.pods)
      jobs[o.name] = o
      jobNamespaces[o.name] = namespace
    }
  }
}

/// Which namespaces a RecoveryPlan may scale workloads and restore claims in: its own, and those whose Namespace object names the plan's
/// namespace in the annotation `dr.botrt.io/recovery-allowed-from` (comma-separated namespaces). Only who can
/// update that Namespace (its admins) can set it; without it, anyone allowed to write a RecoveryPlan could scale
/// kube-system/coredns to 0.
public enum RecoveryTargetAccess {
  /// The annotation on a target Namespace naming the namespaces whose plans may recover into it.
  public static let annotation = "dr.botrt.io/recovery-allowed-from"
  /// The condition reason of a refused plan.
  public static let reason = "TargetNamespaceNotAllowed"

  /// The plans among `plans` whose steps touch namespace `name` other than their own: those a change of that
  /// Namespace (its opt-in annotation) may let run.
  public static func plans(touching name: String, among plans: [RecoveryPlan]) -> [RecoveryPlan] {
    plans.filter { foreignNamespaces($0).contains(name) }
  }

  /// The namespaces other than the plan's own that its steps touch, sorted.
  public static func foreignNamespaces(_ plan: RecoveryPlan) -> [String] {
    let own = plan.metadata.namespace ?? "default"
    let steps = plan.spec.procedures.flatMap(\.steps)
    let all = steps.flatMap { $0.targets ?? [] }.map { RecoveryPlanLogic.namespace($0, plan) }
    // Restores into a claim of another namespace (into.pvc.namespace) run their Job there.
    let claims = steps.compactMap { RestoreTarget.of($0, plan: plan)?.namespace }
    return Set(all + claims + (plan.spec.targetNamespace.map { [$0] } ?? [])).subtracting([own]).sorted()
  }

  /// The namespaces the plan's step Jobs are read from: its own, then those a restore into a claim of another
  /// namespace runs its Job in, where that namespace allows recoveries from the plan's (`targetNamespaces`: the
  /// annotations of the plan's foreign namespaces as read; a plan acts nowhere else, so it reads nowhere else).
  public static func jobNamespaces(_ plan: RecoveryPlan, targetNamespaces: [String: [String: String]]) -> [String] {
    let own = plan.metadata.namespace ?? "default"
    let restores = plan.spec.procedures.flatMap(\.steps).compactMap { RestoreTarget.of($0, plan: plan) }
    let foreign = Set(
      restores.filter { $0.foreign && allows(planNamespace: own, annotations: targetNamespaces[$0.namespace]) }.map(
        \.namespace))
    return [own] + foreign.sorted()
  }

  /// Whether a namespace with `annotations` lets plans of `planNamespace` recover into it.
  public static func allows(planNamespace: String, annotations: [String: String]?) -> Bool {
    guard let value = annotations?[annotation] else { return false }
    return value.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == planNamespace }
  }

  /// Why the plan may not run (the first namespace it may not touch, and the annotation to set), or nil.
  /// `namespaces`: the annotations of the plan's foreign namespaces as read (absent: the namespace does not exist).
  public static func problem(_ plan: RecoveryPlan, namespaces: [String: [String: String]]) -> String? {
    let own = plan.metadata.namespace ?? "default"
    for ns in foreignNamespaces(plan) where !allows(planNamespace: own, annotations: namespaces[ns]) {
      let why = namespaces[ns] == nil ? "does not exist" : "does not allow recoveries from \(own)"
      return "The plan's steps touch namespace \(ns), which \(why); a plan may touch only its own namespace (\(own)) "
        + "unless an admin of the target sets the annotation \(annotation) on Namespace \(ns) to a comma-separated "
        + "list naming \(own) (e.g. kubectl annotate namespace \(ns) \(annotation)=\(own))"
    }
    return nil
  }
}

/// The log of a running restore step's Job to read for its progress (`RecoveryPlanLogic.progressReads`).
public struct RestoreProgressRead: Sendable, Hashable {
  /// The step's Job.
  public var job: String
  /// The namespace the Job runs in (a restore into another namespace's claim runs there).
  public var namespace: String
  /// The Pod whose restore container's log holds the progress lines; nil while the Job has none that runs.
  public var pod: String?
  /// When the Job started.
  public var startTime: Date?
  /// The step's progress as status has it.
  public var previous: RunProgress?
  /// The last backup's size of the policy restored (`BackupPolicyStatus.lastBackupBytes`), when status has one.
  public var previousBackupBytes: Int64?
  /// Whether to read the log now (`RunProgressLogic.due`: at most every 10 s); else `previous` stays.
  public var due: Bool
}

/// Something the reconciler must do after a plan advanced.
public enum PlanAction: Sendable, Hashable {
  /// Create the Job of a step (build it with `RecoveryJobs.stepJob`).
  case createJob(step: Int, jobName: String)
  /// Delete the Job of a failed or timed-out attempt of a step (propagation Background).
  case deleteJob(step: Int, name: String)
  /// Set spec.replicas of a workload through its scale subresource.
  case scale(kind: String, namespace: String, name: String, replicas: Int32)
}

/// The result of advancing a plan once.
public struct PlanAdvance: Sendable {
  /// The new status (write it through the status subresource).
  public var status: RecoveryPlanStatus
  /// What to do, in order.
  public var actions: [PlanAction]
  /// Events to emit.
  public var events: [PlannedEvent]
  /// When to look again at the latest, even if nothing changes (timeouts, RTO deadline).
  public var requeueAfter: TimeInterval?
}

/// RecoveryPlan logic without I/O: the step plan, the run trigger, and the step state machine driven by observed
/// Jobs and workloads with an injected time.
///
/// Step states: Pending → Running → Succeeded, or Failed (an attempt that failed or passed its timeout, with no
/// retries left; a timed-out attempt's message says "timed out"). A failed step stops the plan: the steps after it
/// become Skipped. `StepStatus.startTime` is the start of the current attempt; `attempts` counts attempts so far.
public enum RecoveryPlanLogic {
  /// Flattens procedures into steps in order; throws for a step that cannot run (naming the field).
  public static func steps(_ spec: RecoveryPlanSpec) throws(SpecError) -> [PlannedStep] {
    var out: [PlannedStep] = []
    var names = Set<String>()
    for (pi, proc) in spec.procedures.enumerated() {
      for (si, step) in proc.steps.enumerated() {
        let field = "spec.procedures[\(pi)].steps[\(si)]"
        guard names.insert("\(proc.name)/\(step.name)").inserted else {
          throw SpecError(field: "\(field).name", message: "step '\(proc.name)/\(step.name)' appears twice; rename one")
        }
        let timeout = try step.timeoutSeconds(field: "\(field).timeout")
        guard timeout > 0 else { throw SpecError(field: "\(field).timeout", message: "the timeout must be over 0s") }
        let retries = step.retries ?? 0
        // The schema's range; `retries + 1` in status messages would trap at Int32.max.
        guard (0...10).contains(retries) else {
          throw SpecError(field: "\(field).retries", message: "retries must be 0-10, got \(retries)")
        }
        switch step.action {
        case .scaleDown, .scaleUp, .waitReady:
          guard let t = step.targets, !t.isEmpty else {
            throw SpecError(
              field: "\(field).targets", message: "\(step.action.rawValue) needs at least one Deployment or StatefulSet"
            )
          }
        case .restore:
          guard let r = step.restore else {
            throw SpecError(field: "\(field).restore", message: "a restore step needs restore.policyRef and into")
          }
          _ = try r.into.kind(at: "\(field).restore.into")
          if r.beforeTime != nil, let s = r.snapshot, s != "latest" {
            throw SpecError(
              field: "\(field).restore.beforeTime", message: "give either a snapshot id or beforeTime, not both")
          }
        case .verify:
          guard let v = step.verify, v.policyRef != nil || v.databaseQuery != nil else {
            throw SpecError(field: "\(field).verify", message: "set verify.policyRef, verify.databaseQuery or both")
          }
        case .job:
          guard step.job != nil else {
            throw SpecError(field: "\(field).job", message: "a job step needs job (image, command)")
          }
        }
        out.append(
          PlannedStep(
            index: out.count, procedure: proc.name, step: step, timeoutSeconds: timeout, retries: retries,
            field: field))
      }
    }
    guard !out.isEmpty else { throw SpecError(field: "spec.procedures", message: "the plan has no steps") }
    return out
  }

  /// The run token of a pending run (spec.trigger or the run-now annotation), when not yet handled.
  public static func pendingTrigger(_ plan: RecoveryPlan) -> String? {
    let handled = plan.status?.lastHandledTrigger
    if let t = plan.spec.trigger, !t.isEmpty, "trigger:\(t)" != handled { return "trigger:\(t)" }
    if let a = plan.metadata.annotations?[DRGroup.runNowAnnotation], !a.isEmpty, "annotation:\(a)" != handled {
      return "annotation:\(a)"
    }
    return nil
  }

  /// The Job name of an attempt: unique per plan, run, step and attempt; at most 63 characters.
  public static func jobName(plan: RecoveryPlan, run: String, step: Int, attempt: Int32) -> String {
    let base = String(plan.name.prefix(30)).trimmingCharacters(in: CharacterSet(charactersIn: "-."))
    return "rp-\(base)-\(shortHash("\(plan.metadata.namespace ?? "")/\(plan.name)/\(run)"))-\(step)-\(attempt)"
  }

  /// The namespace a workload reference points at (default: the plan's target namespace).
  static func namespace(_ w: WorkloadReference, _ plan: RecoveryPlan) -> String {
    w.namespace ?? plan.spec.targetNamespace ?? plan.metadata.namespace ?? "default"
  }

  /// The engine container of a restore Job that prints the progress lines (`RecoveryJobs.restoreParts`).
  public static let restoreContainer = "restore"

  /// The running restore steps' Jobs whose progress status shows: those of a running run whose step runs and whose
  /// Job is observed running, with whether their log is due for a read (`RunProgressLogic.due`).
  public static func progressReads(
    plan: RecoveryPlan, world: PlanWorld, policies: [String: BackupPolicy], now: Date
  ) -> [RestoreProgressRead] {
    guard plan.status?.phase == .running, let status = plan.status?.steps,
      let steps = try? Self.steps(plan.spec), steps.count == status.count
    else { return [] }
    var out: [RestoreProgressRead] = []
    for (p, s) in zip(steps, status) where p.step.action == .restore && s.state == .running {
      guard let name = s.jobName, let job = world.jobs[name], job.state == .running, job.startTime != nil else {
        continue
      }
      let policy = p.step.restore.flatMap { policies[$0.policyRef.name] }
      out.append(
        RestoreProgressRead(
          job: name, namespace: world.jobNamespaces[name] ?? plan.metadata.namespace ?? "default",
          pod: job.activePod, startTime: job.startTime, previous: s.progress,
          previousBackupBytes: policy?.status?.lastBackupBytes,
          due: RunProgressLogic.due(previous: s.progress, job: name, now: now)))
    }
    return out
  }

  /// Advances the plan once: starts a pending run, moves the current step along, finishes the run.
  public static func advance(plan: RecoveryPlan, world: PlanWorld, now: Date) -> PlanAdvance {
    var st = plan.status ?? RecoveryPlanStatus()
    var actions: [PlanAction] = []
    var events: [PlannedEvent] = []
    var requeue: TimeInterval? = nil
    let gen = plan.metadata.generation
    st.observedGeneration = gen
    var conds = st.conditions ?? []
    func done() -> PlanAdvance {
      // Progress shows only on the running steps of a running run: a step that ended has its outcome in message.
      st.steps = st.steps?.map { s in
        var s = s
        if s.state != .running || st.phase != .running { s.progress = nil }
        return s
      }
      // The targets of the plan's compliance profiles, from its last completed run (ComplianceTargets.swift).
      var judged = plan
      judged.status = st
      ComplianceEvaluation.apply(
        ComplianceEvaluation.plan(judged, now: now), to: &conds, generation: plan.metadata.generation, now: now)
      st.conditions = conds
      return PlanAdvance(status: st, actions: actions, events: events, requeueAfter: requeue)
    }

    // Targets and steps: an invalid spec makes the plan not Ready and starts nothing.
    let rto: Sourced<Int64>
    let steps: [PlannedStep]
    do {
      rto = try effectiveRTO(tier: plan.spec.tier, override: plan.spec.rtoTarget, compliance: plan.spec.compliance)
      steps = try Self.steps(plan.spec)
    } catch {
      conds.setCondition(
        type: RecoveryPlanCondition.ready, status: .false, reason: "InvalidSpec", message: error.description,
        observedGeneration: gen, now: now)
      if st.phase == nil { st.phase = .idle }
      return done()
    }
    st.rtoTargetSeconds = rto.value
    st.rtoTarget = DurationText.format(seconds: rto.value)
    st.rtoSource = rto.source.description
    conds.setCondition(
      type: RecoveryPlanCondition.ready, status: .true, reason: "Valid",
      message: "\(steps.count) steps in \(plan.spec.procedures.count) procedures; RTO target \(st.rtoTarget!) "
        + "(\(rto.source)).", observedGeneration: gen, now: now)

    // Namespaces the plan may not touch: not Ready, nothing starts, and a running run stops before its next action.
    if let refused = RecoveryTargetAccess.problem(plan, namespaces: world.targetNamespaces) {
      conds.setCondition(
        type: RecoveryPlanCondition.ready, status: .false, reason: RecoveryTargetAccess.reason, message: refused,
        observedGeneration: gen, now: now)
      if st.phase == .running {
        st.phase = .failed
        st.completionTime = now
        st.message = refused
        conds.setCondition(
          type: RecoveryPlanCondition.succeeded, status: .false, reason: RecoveryTargetAccess.reason,
          message: refused, observedGeneration: gen, now: now)
        events.append(PlannedEvent(warning: true, reason: RecoveryTargetAccess.reason, message: refused))
      } else {
        if st.phase == nil { st.phase = .idle }
        if let token = pendingTrigger(plan) {
          // The refused trigger is not handled: it runs once the target namespace allows it.
          events.append(
            PlannedEvent(
              warning: true, reason: RecoveryTargetAccess.reason, message: "Run \(token) refused: \(refused)"))
        }
      }
      return done()
    }

    // Start a run when triggered and none is running (a plan never runs twice at once).
    if st.phase != .running {
      guard let token = pendingTrigger(plan) else {
        if st.phase == nil { st.phase = .idle }
        return done()
      }
      st.phase = .running
      st.lastHandledTrigger = token
      st.startTime = now
      st.completionTime = nil
      st.rtoAchievedSeconds = nil
      st.rtoAchieved = nil
      st.failedStep = nil
      st.scaledWorkloads = []
      st.message = "Started by \(token)."
      st.steps = steps.map {
        StepStatus(procedure: $0.procedure, name: $0.step.name, action: $0.step.action.rawValue, state: .pending)
      }
      conds.setCondition(
        type: RecoveryPlanCondition.succeeded, status: .unknown, reason: "Running",
        message: "The plan is running (\(token)).", observedGeneration: gen, now: now)
      conds.setCondition(
        type: RecoveryPlanCondition.rtoMet, status: .unknown, reason: "Running",
        message: "The RTO is measured when the run ends.", observedGeneration: gen, now: now)
      events.append(PlannedEvent(warning: false, reason: "PlanStarted", message: "Recovery started (\(token))."))
    }

    guard var stepStatus = st.steps, stepStatus.count == steps.count, let runStart = st.startTime else {
      // The spec changed under a running plan: stop it rather than guess which step is which.
      st.phase = .failed
      st.completionTime = now
      st.message = "The plan's steps changed while it ran; the run was stopped. Trigger it again."
      conds.setCondition(
        type: RecoveryPlanCondition.succeeded, status: .false, reason: "SpecChanged", message: st.message!,
        observedGeneration: gen, now: now)
      return done()
    }
    let run = st.lastHandledTrigger ?? ""
    var scaled = st.scaledWorkloads ?? []

    func fail(_ i: Int, _ message: String) {
      stepStatus[i].state = .failed
      stepStatus[i].completionTime = now
      stepStatus[i].progress = nil
      stepStatus[i].message = message
      for j in (i + 1)..<stepStatus.count { stepStatus[j].state = .skipped }
      st.phase = .failed
      st.completionTime = now
      st.failedStep = steps[i].displayName
      st.message = "Step \(steps[i].displayName) failed: \(message)"
      conds.setCondition(
        type: RecoveryPlanCondition.succeeded, status: .false, reason: "StepFailed", message: st.message!,
        observedGeneration: gen, now: now)
      conds.setCondition(
        type: RecoveryPlanCondition.rtoMet, status: .false, reason: "NotRecovered",
        message: "The service was not recovered, so the RTO target of \(st.rtoTarget ?? "?") was not met.",
        observedGeneration: gen, now: now)
      events.append(PlannedEvent(warning: true, reason: "StepFailed", message: st.message!))
    }

    // Starts (or restarts) attempt `attempt` of step i.
    func start(_ i: Int, attempt: Int32) {
      let p = steps[i]
      stepStatus[i].state = .running
      stepStatus[i].attempts = attempt
      stepStatus[i].startTime = now
      stepStatus[i].completionTime = nil
      stepStatus[i].progress = nil
      stepStatus[i].message = attempt > 1 ? "Attempt \(attempt) of \(p.retries + 1)." : nil
      if p.runsJob {
        let name = jobName(plan: plan, run: run, step: i, attempt: attempt)
        stepStatus[i].jobName = name
        actions.append(.createJob(step: i, jobName: name))
      }
      events.append(
        PlannedEvent(
          warning: false, reason: attempt > 1 ? "StepRetrying" : "StepStarted",
          message: "Step \(p.displayName) (\(p.step.action.rawValue)) started"
            + (attempt > 1 ? ", attempt \(attempt) of \(p.retries + 1)." : ".")))
    }

    // A failed attempt: retry within the budget, else fail the plan.
    func attemptFailed(_ i: Int, _ message: String) {
      let p = steps[i]
      let attempts = stepStatus[i].attempts ?? 1
      if let job = stepStatus[i].jobName { actions.append(.deleteJob(step: i, name: job)) }
      if attempts <= p.retries {
        events.append(
          PlannedEvent(
            warning: true, reason: "StepAttemptFailed",
            message: "Step \(p.displayName) attempt \(attempts) failed: \(message)"))
        start(i, attempt: attempts + 1)
        stepStatus[i].message = "Attempt \(attempts) failed: \(message)"
      } else {
        fail(i, attempts > 1 ? "\(message) (after \(attempts) attempts)" : message)
      }
    }

    // Scale actions for step i; returns whether every target already has the desired replicas.
    func scaleTargets(_ i: Int) -> (done: Bool, missing: [String]) {
      let p = steps[i]
      var allDone = true
      var missing: [String] = []
      for t in p.step.targets ?? [] {
        let ns = namespace(t, plan)
        let key = WorkloadState.key(t.kind.rawValue, ns, t.name)
        guard let w = world.workloads[key] else {
          missing.append("\(t.kind.rawValue) \(ns)/\(t.name)")
          allDone = false
          continue
        }
        let desired: Int32
        if p.step.action == .scaleDown {
          desired = p.step.replicas ?? 0
          if !scaled.contains(where: { $0.kind == t.kind.rawValue && $0.namespace == ns && $0.name == t.name }) {
            scaled.append(ScaledWorkload(kind: t.kind.rawValue, namespace: ns, name: t.name, replicas: w.replicas))
          }
        } else {
          let remembered = scaled.first { $0.kind == t.kind.rawValue && $0.namespace == ns && $0.name == t.name }
          desired = p.step.replicas ?? remembered?.replicas ?? 1
        }
        if w.replicas != desired {
          actions.append(.scale(kind: t.kind.rawValue, namespace: ns, name: t.name, replicas: desired))
          allDone = false
        } else if p.step.action == .scaleDown && w.currentReplicas > desired {
          allDone = false  // wait until the pods are gone, so nothing writes during the restore
        }
      }
      return (allDone, missing)
    }

    // Walk the steps: finish what finished, start the next; several quick steps may pass in one call.
    var i = 0
    while i < steps.count, st.phase == .running {
      let p = steps[i]
      switch stepStatus[i].state {
      case .succeeded, .skipped:
        i += 1
        continue
      case .failed:
        fail(i, stepStatus[i].message ?? "failed")
        continue
      case .pending:
        start(i, attempt: 1)
      case .running:
        break
      }
      // Running: decide from the world.
      let attemptStart = stepStatus[i].startTime ?? now
      let deadline = attemptStart.addingTimeInterval(TimeInterval(p.timeoutSeconds))
      var outcome: (ok: Bool, message: String?)? = nil
      switch p.step.action {
      case .restore, .verify, .job:
        if let name = stepStatus[i].jobName, let job = world.jobs[name] {
          switch job.state {
          case .succeeded:
            let results = job.containers.values.compactMap(\.engineResult)
            let snap = results.compactMap(\.snapshotId).first
            let bytes = results.compactMap(\.bytesRead).reduce(0, +)
            var msg = "Job \(name) completed"
            if let snap { msg += "; snapshot \(snap.prefix(12))" }
            if bytes > 0 { msg += ", \(bytes) bytes" }
            msg += "."
            // `latest` passed over newer snapshots that did not verify: say which, in the step and as a Warning.
            let skipped = results.flatMap { $0.skippedSnapshots ?? [] }
            if !skipped.isEmpty {
              let text = SkippedSnapshotsText.describe(skipped, chosen: snap)
              msg += " " + text
              events.append(
                PlannedEvent(
                  warning: true, reason: SkippedSnapshotsText.eventReason,
                  message: "Step \(p.displayName): \(text)"))
            }
            outcome = (true, msg)
          case .failed: outcome = (false, "Job \(name): \(job.failureSummary)")
          case .running:
            // A restore's progress (`progressReads`), read again every RunProgressLogic.updateIntervalSeconds.
            if p.step.action == .restore {
              stepStatus[i].progress = world.progress[name]
              if let pr = world.progress[name] {
                requeue = min(
                  requeue ?? .infinity, max(1, RunProgressLogic.nextUpdate(after: pr).timeIntervalSince(now)))
              }
            }
          }
        }
      case .scaleDown, .scaleUp:
        let (ok, missing) = scaleTargets(i)
        if !missing.isEmpty {
          outcome = (false, "not found: " + missing.joined(separator: ", "))
        } else if ok {
          outcome = (
            true,
            "Scaled "
              + (p.step.targets ?? []).map { "\($0.kind.rawValue) \($0.name)" }.joined(
                separator: ", ") + "."
          )
        }
      case .waitReady:
        var notReady: [String] = []
        for t in p.step.targets ?? [] {
          let ns = namespace(t, plan)
          guard let w = world.workloads[WorkloadState.key(t.kind.rawValue, ns, t.name)] else {
            notReady.append("\(t.kind.rawValue) \(ns)/\(t.name) (not found)")
            continue
          }
          if w.readyReplicas < w.replicas || w.replicas == 0 {
            notReady.append("\(t.kind.rawValue) \(ns)/\(t.name) (\(w.readyReplicas)/\(w.replicas) ready)")
          }
        }
        if notReady.isEmpty {
          outcome = (true, "All targets are ready.")
        } else {
          stepStatus[i].message = "Waiting for " + notReady.joined(separator: ", ") + "."
        }
      }
      if let o = outcome, o.ok {
        stepStatus[i].state = .succeeded
        stepStatus[i].completionTime = now
        stepStatus[i].progress = nil
        stepStatus[i].message = o.message
        events.append(
          PlannedEvent(
            warning: false, reason: "StepSucceeded", message: "Step \(p.displayName) succeeded: \(o.message ?? "")"))
        i += 1
        continue
      }
      if let o = outcome, !o.ok {
        attemptFailed(i, o.message ?? "failed")
        if st.phase != .running { break }
        // A restarted attempt waits for its new Job.
        requeue = min(requeue ?? .infinity, TimeInterval(p.timeoutSeconds))
        break
      }
      if now >= deadline {
        attemptFailed(i, "timed out after \(DurationText.format(seconds: p.timeoutSeconds))")
        if st.phase == .running { requeue = min(requeue ?? .infinity, TimeInterval(p.timeoutSeconds)) }
        break
      }
      requeue = min(requeue ?? .infinity, max(1, deadline.timeIntervalSince(now)))
      if p.step.action == .waitReady || p.step.action == .scaleDown || p.step.action == .scaleUp {
        requeue = min(requeue ?? .infinity, 5)  // workloads are polled, Jobs are watched
      }
      break
    }

    if st.phase == .running, i >= steps.count {
      // Every step succeeded.
      st.phase = .succeeded
      st.completionTime = now
      let achieved = Int64(now.timeIntervalSince(runStart).rounded())
      st.rtoAchievedSeconds = achieved
      st.rtoAchieved = DurationText.format(seconds: achieved)
      let met = achieved <= rto.value
      st.message =
        "Recovered in \(st.rtoAchieved!) (\(steps.count) steps); the RTO target is \(st.rtoTarget!)"
        + (met ? ", met." : ", missed.")
      conds.setCondition(
        type: RecoveryPlanCondition.succeeded, status: .true, reason: "AllStepsSucceeded", message: st.message!,
        observedGeneration: gen, now: now)
      conds.setCondition(
        type: RecoveryPlanCondition.rtoMet, status: met ? .true : .false, reason: met ? "WithinTarget" : "OverTarget",
        message: "RTO achieved \(st.rtoAchieved!), target \(st.rtoTarget!) (\(rto.source)).", observedGeneration: gen,
        now: now)
      events.append(PlannedEvent(warning: !met, reason: met ? "PlanSucceeded" : "RTOMissed", message: st.message!))
    } else if st.phase == .running {
      // Still running: once past the RTO target, say so before the run ends.
      let elapsed = now.timeIntervalSince(runStart)
      if elapsed > TimeInterval(rto.value) {
        conds.setCondition(
          type: RecoveryPlanCondition.rtoMet, status: .false, reason: "OverTarget",
          message: "The run has taken \(DurationText.format(seconds: Int64(elapsed))), longer than the RTO target of "
            + "\(st.rtoTarget!).", observedGeneration: gen, now: now)
      } else {
        requeue = min(requeue ?? .infinity, TimeInterval(rto.value) - elapsed + 1)
      }
    }
    st.steps = stepStatus
    st.scaledWorkloads = scaled
    if requeue == .infinity { requeue = nil }
    return done()
  }
}
