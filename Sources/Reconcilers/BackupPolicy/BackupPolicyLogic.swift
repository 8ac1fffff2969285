import DRAPI
import Foundation
import KubeCore

/// Everything one reconcile of a live BackupPolicy reads (the observe step of `BackupPolicyReconciler.apply`), so
/// that `BackupPolicyLogic.decide` needs no client and no clock. Read from the shared caches as before; the fields
/// that only matter for a valid, accepted policy stay empty otherwise.
public struct BackupPolicyWorld: Sendable {
  /// The policy as cached.
  public var policy: BackupPolicy
  /// The moment of this reconcile.
  public var now: Date
  /// The controller's settings (with the current Calico discovery).
  public var settings: ControllerSettings
  /// Why spec.backupNamespace may not be used (`backupNamespaceProblem`; only read for a valid spec), or nil.
  public var namespaceProblem: PolicyProblem? = nil
  /// The referenced Secrets of the policy's namespace that exist, by name.
  public var secrets: [String: Secret] = [:]
  /// The spec error met while reading the Secrets (the repository or a replica cannot be resolved), if any.
  public var secretsProblem: SpecError? = nil
  /// The children whose names another owner's objects hold (ChildOwnership), checked for the children `decide`
  /// builds from this world.
  public var conflicts: [ChildNameConflict] = []
  /// Whether this reconcile prunes (`BackupPolicyReconciler.needsPrune`: a new generation, or none pruned yet by
  /// this process).
  public var pruneDue: Bool = false
  /// The backup runs: scheduled and on-demand Jobs with their Pods.
  public var runs: [BackupRun] = []
  /// The running backup's progress (`BackupPolicyReconciler.observeProgress`), nil when none runs.
  public var progress: RunProgress? = nil
  /// The prune and verify runs, by component ("prune", `VerifyOutcome.component`).
  public var maintenance: [String: [BackupRun]] = [:]
  /// Where the backup pods of a PVC source must run (RWO placement, `observePlacement`).
  public var placement: ClaimPlacement.Decision = .anywhere
  /// The source claim (a PVC source only), nil when absent or unreadable.
  public var sourceClaim: PersistentVolumeClaim? = nil
  /// The claims a multi-claim source selects now, with their placements (spec.source.claims only).
  public var claims: ClaimSelection? = nil
  /// The names of the claims that exist in the policy's namespace (spec.source.claims only): a recorded claim not
  /// among them is gone, and its record stays in status.claims.
  public var existingClaims: Set<String> = []
  /// The key rotation Jobs (`KeyRotationLogic.component`) with their Pods.
  public var keyRotationRuns: [BackupRun] = []
  /// The copy Jobs of the replicas with their Pods (`ReplicaLabels.copyComponent`).
  public var copies: [CopyRun] = []
  /// The replicas' key rotation Jobs (`ReplicaKeyRotation.component`) with their Pods.
  public var replicaRotationRuns: [BackupRun] = []

  public init(policy: BackupPolicy, now: Date, settings: ControllerSettings) {
    self.policy = policy
    self.now = now
    self.settings = settings
  }
}

/// A write the reconcile makes after the children are in place, in order.
public enum BackupPolicyAction: Sendable {
  /// Server-side apply of a Job (its owner checked first); the Event is recorded once it is applied.
  case apply(DesiredChild, event: PlannedEvent?)
  /// Deletes a finished or obsolete Job of the policy.
  case deleteJob(namespace: String, name: String)
  /// Stops the reconcile with this error before the status is written (a Job that must start cannot be built).
  case fail(ChildError)
}

/// The metric values a reconcile sets (the rest follow from the status).
public struct BackupPolicyMetricValues: Sendable {
  /// A restore-only policy's gauges go instead of being set from status.
  public var removeGauges = false
  /// The key-encryption key's age and its rotation limit, in seconds.
  public var keyAge: (age: Double, limit: Double)? = nil
  /// The retention outcome (nil: restore-only, its gauges are left alone).
  public var retention: RetentionOutcome? = nil
  /// The verify outcome (nil: no spec.verify, its gauges go).
  public var verify: VerifyOutcome? = nil
  /// The replica gauges, when the policy has or had replicas.
  public var replicas: ReplicaMetricValues? = nil
}

/// The replicas' metric values: lag and last copy come from status.replicas.
public struct ReplicaMetricValues: Sendable {
  /// Each replica's own key age and rotation limit; nil for a replica following the primary's key.
  public var keys: [(replica: String, age: Double?, limit: Double?)] = []
  /// Replicas gone from the spec (their series go).
  public var gone: [String] = []
  /// The replica of each failed copy reported now.
  public var copyFailures: [String] = []
}

/// What one reconcile of a live BackupPolicy does, decided from its world without I/O.
public struct BackupPolicyDecision: Sendable {
  /// The children to apply (owners already checked); empty when the policy is not accepted.
  public var children: [DesiredChild] = []
  /// When set, the policy's labelled children not in this list are deleted after the children are applied.
  public var pruneKeeping: [DesiredChild]? = nil
  /// Events recorded once the children are in place (OnDemandBackup).
  public var childEvents: [PlannedEvent] = []
  /// The Jobs to start and delete after the children (key rotation, replica rotation, copies), in order.
  public var actions: [BackupPolicyAction] = []
  /// Warnings to log (a replica Job that cannot be built is skipped, not fatal).
  public var warnings: [(message: String, metadata: [String: String])] = []
  /// The backup namespace of its own this policy runs its Jobs in, or nil.
  public var namespaceInUse: String? = nil
  /// Why the policy is not Ready, or nil.
  public var problem: PolicyProblem? = nil
  /// The status to write (once).
  public var status: BackupPolicyStatus
  /// The Events to record after the status is written.
  public var events: [PlannedEvent] = []
  /// When to reconcile again without a change; nil: await a change.
  public var requeueAt: Date? = nil
  /// The metric values to set.
  public var metrics = BackupPolicyMetricValues()

}

/// The Ready message of a multi-claim policy: its claims' backup CronJobs, and the claims the bound left out.
enum MultiClaimSummary {
  static func text(_ sel: ClaimSelection, workNS: String, children: Int) -> String {
    var text =
      sel.names.isEmpty
      ? "No claim is selected by spec.source.claims, so nothing is backed up until one is; the \(children) "
        + "children of this policy are in place."
      : "The backup CronJobs of \(sel.names.count) claims in \(workNS) and the \(children - sel.names.count) other "
        + "children of this policy are in place."
    if sel.leftOut > 0 {
      text +=
        " \(sel.matched) claims match spec.source.claims.selector: only the first \(sel.names.count) by name are "
        + "backed up (at most \(ClaimsSource.maxClaims) per policy); narrow the selector or split the claims among "
        + "several policies."
    }
    return text
  }
}

/// The pure decision of a BackupPolicy reconcile: children, prune, status, Events, requeue and metric values from a
/// `BackupPolicyWorld`. No client, no clock, no I/O.
///
/// Writes whose results a later reconcile reads are actions here, and their results are part of the next world: the
/// on-demand run Job is one of the children (its token is recorded in status.lastHandledTrigger, so it is created
/// once); the key rotation, replica rotation and copy Jobs are `BackupPolicyAction`s whose runs the next reconcile
/// observes. The one write whose failure changes this reconcile's status, applying the children, is decided again:
/// `decide(world, applyFailure:)` gives the decision of a policy whose children could not be applied (ApplyFailed,
/// nothing handled, no copies).
public enum BackupPolicyLogic {
  /// How soon a policy that is not Ready is looked at again without a change (a safety net: referenced Secrets are
  /// watched).
  public static let problemRetrySeconds: TimeInterval = 300

  /// The policy's effective settings, or the problem of an invalid spec (validation first).
  public static func effective(_ policy: BackupPolicy, now: Date) -> Result<EffectivePolicy, SpecError> {
    if let e = SpecValidation.validate(policy.spec).first { return .failure(e) }
    do {
      return .success(try EffectivePolicy(spec: policy.spec, now: now))
    } catch {
      return .failure(error)
    }
  }

  /// The policy's children: its own, and its replicas' unless it is restore-only.
  public static func children(
    _ policy: BackupPolicy, effective: EffectivePolicy, settings: ControllerSettings, secrets: [String: Secret],
    runToken: String?, placement: ClaimPlacement.Decision = .anywhere, claims: ClaimSelection? = nil
  ) throws(SpecError) -> [DesiredChild] {
    let inputs = ChildInputs(
      policy: policy, effective: effective, settings: settings, secrets: secrets, runToken: runToken,
      placement: placement, claims: claims)
    // A restore-only policy's children write nothing (BackupPolicyChildren.build) and it copies to no replica.
    var children = try BackupPolicyChildren.build(inputs)
    if !BackupPolicyChildren.isRestoreOnly(policy, settings: settings) {
      children += try ReplicationChildren.build(inputs, existing: children)
    }
    return children
  }

  /// The on-demand run a reconcile of `policy` creates a Job for (none for a restore-only policy).
  public static func runToken(_ policy: BackupPolicy, settings: ControllerSettings) -> String? {
    BackupPolicyChildren.isRestoreOnly(policy, settings: settings) ? nil : BackupPolicyChildren.pendingRunToken(policy)
  }

  /// The repository's URL for messages, or a stand-in when the spec names none that resolves.
  public static func repositoryText(_ policy: BackupPolicy) -> String {
    do {
      return try EngineInvocation(policy: policy) { $0 }.repoURL
    } catch {
      return "the policy's repository"
    }
  }

  /// The decision for `w`; with `applyFailure`, the decision once applying the children failed with it.
  public static func decide(_ w: BackupPolicyWorld, applyFailure: (any Error)? = nil) -> BackupPolicyDecision {
    let policy = w.policy
    let now = w.now
    let settings = w.settings
    let ns = policy.metadata.namespace ?? "default"
    let backupNS = BackupPolicyChildren.backupNamespace(policy, settings: settings)
    let workNS = BackupPolicyChildren.workloadNamespace(policy, settings: settings)
    // A restore-only policy (spec.mode, or the controller's --restore-only) writes nothing to its repository.
    let restoreOnly = BackupPolicyChildren.isRestoreOnly(policy, settings: settings)
    var d = BackupPolicyDecision(status: policy.status ?? BackupPolicyStatus())

    var problem: PolicyProblem? = nil
    var effective: EffectivePolicy? = nil
    switch Self.effective(policy, now: now) {
    case .success(let e): effective = e
    case .failure(let e): problem = PolicyProblem.from(e)
    }
    if problem == nil, let p = w.namespaceProblem { problem = p }
    d.namespaceInUse = problem == nil && workNS == backupNS && backupNS != settings.backupNamespace ? backupNS : nil

    var handled: String? = nil
    var summary = ""
    var conflictEvent: PlannedEvent? = nil
    if let eff = effective, problem == nil {
      if let applyFailure {
        problem = PolicyProblem(reason: "ApplyFailed", message: "\(applyFailure)")
      } else {
        do throws(SpecError) {
          if let e = w.secretsProblem { throw e }
          let token = runToken(policy, settings: settings)
          let children = try Self.children(
            policy, effective: eff, settings: settings, secrets: w.secrets, runToken: token, placement: w.placement,
            claims: w.claims)
          // An object of a child's name that another owner's labels claim is never applied over (ChildOwnership).
          if !w.conflicts.isEmpty {
            let refusal = ChildOwnership.refusal(w.conflicts)
            problem = refusal.problem
            conflictEvent = refusal.event
          } else {
            d.children = children
            if w.pruneDue {
              // The run-access grants come and go with runs (BackupAccess.swift); pruning leaves them alone.
              d.pruneKeeping =
                children + BackupPolicyChildren.runAccess(policy, settings: settings)
                + ReplicationChildren.runAccess(policy, settings: settings)
            }
            handled = token
            if let token {
              let jobs =
                policy.spec.source.claims == nil
                ? "Job \(ChildNames(namespace: ns, name: policy.name).runJob(token: token))"
                : "a Job for each of \(w.claims?.names.count ?? 0) claims"
              d.childEvents.append(
                PlannedEvent(warning: false, reason: "OnDemandBackup", message: "Created \(jobs) for \(token)."))
            }
            let perPolicy = children.filter { !$0.shared }.count
            if restoreOnly {
              summary = RestoreOnlyStatus.summary(policy, settings: settings, repository: repositoryText(policy))
            } else if policy.spec.source.claims != nil {
              summary = MultiClaimSummary.text(w.claims ?? ClaimSelection(), workNS: workNS, children: perPolicy)
            } else {
              summary =
                "The backup CronJob \(workNS)/\(ChildNames(namespace: ns, name: policy.name).backupCronJob) and "
                + "\(perPolicy - 1) other children of this policy are in place."
            }
          }
        } catch {
          problem = PolicyProblem.from(error)
        }
      }
    }
    d.problem = problem

    // Runs and status.
    var repositoryURL: String? = nil
    if effective != nil {
      do {
        repositoryURL = try EngineInvocation(policy: policy) { $0 }.repoURL
      } catch {
        repositoryURL = nil
      }
    }
    // A multi-claim source: each claim's status, and the RPO over the claims (not while restore-only: nothing runs).
    var claimStatus: [ClaimBackupStatus]? = nil
    var claimsRPO: ClaimsRPO? = nil
    if policy.spec.source.claims != nil, !restoreOnly {
      let st = MultiClaim.status(
        policy, selection: w.claims ?? ClaimSelection(), runs: w.runs, existing: w.existingClaims, now: now)
      claimStatus = st
      claimsRPO = MultiClaim.rpo(st)
    }
    var outcome = BackupPolicyStatusLogic.compute(
      policy: policy, effective: effective, problem: problem, runs: w.runs, backupNamespace: backupNS,
      handledTrigger: handled, childSummary: summary, now: now, repositoryURL: repositoryURL, claimsRPO: claimsRPO)
    if policy.spec.source.claims != nil {
      outcome.status.claims = restoreOnly ? policy.status?.claims : claimStatus
      if let claimStatus {
        MultiClaim.applyFailures(
          claimStatus, previous: policy.status?.claims ?? [], to: &outcome, generation: policy.metadata.generation,
          now: now)
      }
      if let sel = w.claims, sel.leftOut > 0, problem == nil {
        var conditions = outcome.status.conditions ?? []
        if let ready = conditions.condition(BackupPolicyCondition.ready), ready.status == .true {
          conditions.setCondition(
            type: BackupPolicyCondition.ready, status: .true, reason: "ReadyWithWarnings",
            message: ready.message, observedGeneration: policy.metadata.generation, now: now)
          outcome.status.conditions = conditions
        }
      }
    } else {
      outcome.status.claims = nil
    }
    if let e = conflictEvent { outcome.events.append(e) }
    // The running backup's progress, read again every RunProgressLogic.updateIntervalSeconds while it runs.
    outcome.status.progress = w.progress
    if let p = w.progress {
      let at = RunProgressLogic.nextUpdate(after: p)
      outcome.requeueAt = min(outcome.requeueAt ?? at, at)
    }
    outcome.status.sourceClaim = SourceClaimRecord.record(
      policy, claim: w.sourceClaim, previous: policy.status?.sourceClaim, now: now)
    outcome.status.placement = problem == nil && !restoreOnly ? w.placement.status : nil
    // Hooks: the newest hooked run's record (written on its Job by the hook runner) and HooksPermitted.
    let hooked = BackupPolicyChildren.hasHooks(policy) && !restoreOnly
    let hookState = HookLogic.lastHooks(
      runs: w.runs.map { ($0.jobName, $0.startTime, $0.annotations) }, hooked: hooked,
      previous: policy.status?.lastHooks)
    outcome.status.lastHooks = hookState.status
    var hookConditions = outcome.status.conditions ?? []
    if let (st, reason, message) = hookState.permitted {
      hookConditions.setCondition(
        type: BackupPolicyCondition.hooksPermitted, status: st, reason: reason, message: message,
        observedGeneration: policy.metadata.generation, now: now)
    } else {
      hookConditions.removeAll { $0.type == BackupPolicyCondition.hooksPermitted }
    }
    outcome.status.conditions = hookConditions.isEmpty && outcome.status.conditions == nil ? nil : hookConditions
    if restoreOnly { RestoreOnlyStatus.apply(&outcome, policy: policy, now: now) }
    if outcome.status.repositoryIdentity != policy.status?.repositoryIdentity {
      // The children were built from the previous status: build them again with the pins (a status write alone
      // does not bring the policy back).
      let soon = now.addingTimeInterval(1)
      outcome.requeueAt = min(outcome.requeueAt ?? soon, soon)
    }

    var keyChanged = false
    if let eff = effective, problem == nil, !restoreOnly {
      let r = keyRotation(w, effective: eff, workNS: workNS, decision: &d)
      keyChanged = r.currentKey != policy.status?.currentKey
      outcome.status.lastKeyRotation = r.lastKeyRotation
      outcome.status.nextKeyRotation = r.nextKeyRotation
      outcome.status.currentKey = r.currentKey
      outcome.status.lastHandledKeyRotationRequest = r.lastHandledRequest
      var conditions = outcome.status.conditions ?? []
      conditions.setCondition(
        type: BackupPolicyCondition.keyRotationDue, status: r.due, reason: r.reason, message: r.message,
        observedGeneration: policy.metadata.generation, now: now)
      outcome.status.conditions = conditions
      outcome.events += r.events
      if let at = r.requeueAt { outcome.requeueAt = min(outcome.requeueAt ?? at, at) }
      d.metrics.keyAge = (r.keyAgeSeconds, r.limitSeconds)
    }

    // Retention and verify: the prune and verify CronJobs' runs (a restore-only policy has neither).
    let retention = restoreOnly ? nil : RetentionOutcome.evaluate(w.maintenance["prune"] ?? [])
    if restoreOnly || policy.spec.verify == nil {
      VerifyOutcome.remove(from: &outcome.status)
    } else {
      let v = VerifyOutcome.evaluate(
        w.maintenance[VerifyOutcome.component] ?? [], previous: policy.status?.lastVerify)
      if let e = v.apply(to: &outcome.status, generation: policy.metadata.generation, now: now) {
        outcome.events.append(e)
      }
      d.metrics.verify = v
    }
    if let r = retention {
      var conditions = outcome.status.conditions ?? []
      let before = conditions.condition(BackupPolicyCondition.retentionApplied)?.status
      conditions.setCondition(
        type: BackupPolicyCondition.retentionApplied, status: r.status, reason: r.reason, message: r.message,
        observedGeneration: policy.metadata.generation, now: now)
      outcome.status.conditions = conditions
      r.applyStoredBytes(to: &outcome.status)
      if r.failing && before != .false {
        outcome.events.append(PlannedEvent(warning: true, reason: "RetentionFailed", message: r.message))
      }
    }
    d.metrics.retention = retention
    if !restoreOnly {
      replicas(w, effective: effective, ready: problem == nil, workNS: workNS, outcome: &outcome, decision: &d)
    }
    d.metrics.removeGauges = restoreOnly

    d.status = outcome.status
    d.events = outcome.events
    var next = outcome.requeueAt
    if keyChanged {
      // The children still name the key the rotation replaced: apply them again with the new one.
      next = now.addingTimeInterval(1)
    }
    if problem != nil {
      // Referenced Secrets are watched; this is only a safety net.
      let retry = now.addingTimeInterval(problemRetrySeconds)
      next = min(next ?? retry, retry)
    }
    d.requeueAt = next
    return d
  }

  /// The primary's key rotation: the plan from its rotation Jobs, the Job to start and the recorded ones to delete.
  static func keyRotation(
    _ w: BackupPolicyWorld, effective: EffectivePolicy, workNS: String, decision d: inout BackupPolicyDecision
  ) -> KeyRotationOutcome {
    let policy = w.policy
    var entries: [String]? = nil
    if let ref = policy.spec.encryption.rotationKeysSecretRef, let secret = w.secrets[ref.name] {
      entries = secret.entryNames
    }
    let plan = KeyRotationLogic.plan(policy: policy, runs: w.keyRotationRuns, rotationKeys: entries, now: w.now)
    if let start = plan.start {
      do {
        let job = try BackupPolicyChildren.keyRotationJob(
          ChildInputs(policy: policy, effective: effective, settings: w.settings, secrets: w.secrets), start)
        d.actions.append(.apply(job, event: nil))
      } catch {
        d.actions.append(.fail(ChildError(child: "the key rotation Job", operation: "build", cause: error)))
      }
    }
    for name in plan.obsoleteJobs { d.actions.append(.deleteJob(namespace: workNS, name: name)) }
    return plan
  }

  /// Replication after the primary's status is computed: a copy per replica that lacks the newest snapshot (never
  /// two of one replica at once), old copy Jobs deleted, the replicas' key rotations, and the replicas folded into
  /// `outcome` (status.replicas, ReplicasInSync, RPOMet, events, requeue).
  static func replicas(
    _ w: BackupPolicyWorld, effective: EffectivePolicy?, ready: Bool, workNS: String, outcome: inout StatusOutcome,
    decision d: inout BackupPolicyDecision
  ) {
    let now = w.now
    let hasReplicas = !(w.policy.spec.replicas ?? []).isEmpty
    if !hasReplicas && w.policy.status?.replicas == nil { return }
    // The primary's key as this reconcile leaves it (a rotation recorded just now counts).
    var policy = w.policy
    if policy.status != nil {
      policy.status?.lastKeyRotation = outcome.status.lastKeyRotation
      policy.status?.currentKey = outcome.status.currentKey
    }
    let rotations = replicaRotations(policy, runs: w.replicaRotationRuns, secrets: w.secrets, now: now)
    let held = Set(rotations.filter { $0.plan.holdCopies }.map(\.name))
    let plan = ReplicationLogic.apply(
      policy: policy, copies: w.copies, canCopy: ready && effective != nil, held: held, now: now, outcome: &outcome)
    // Replica pins recorded (or dropped) just now apply to the copy and rotation Jobs created below.
    if let before = policy.status?.replicas {
      policy.status?.replicas = before.map { st in
        var st = st
        st.repositoryIdentity = outcome.status.replicas?.first { $0.name == st.name }?.repositoryIdentity
        return st
      }
    }
    // Fold the rotation fields into the replicas' status (a key recorded by a rotation wins over the copy's).
    let previous = policy.status?.replicas ?? []
    outcome.status.replicas = outcome.status.replicas?.map { st in
      guard let r = rotations.first(where: { $0.name == st.name })?.plan.status else { return st }
      var st = st
      let before = previous.first { $0.name == st.name }
      if r.currentKey != before?.currentKey || r.lastKeyRotation != before?.lastKeyRotation {
        st.currentKey = r.currentKey
      }
      st.lastKeyRotation = r.lastKeyRotation
      st.nextKeyRotation = r.nextKeyRotation
      st.lastHandledKeyRotationRequest = r.lastHandledKeyRotationRequest
      st.keyRotation = r.keyRotation
      return st
    }
    var conditions = outcome.status.conditions ?? []
    ReplicaKeyRotation.setCondition(
      rotations.map { ($0.name, $0.plan) }, conditions: &conditions, observedGeneration: policy.metadata.generation,
      now: now)
    outcome.status.conditions = conditions
    for r in rotations {
      outcome.events += r.plan.events
      if let at = r.plan.requeueAt { outcome.requeueAt = min(outcome.requeueAt ?? at, at) }
      for name in r.plan.obsoleteJobs { d.actions.append(.deleteJob(namespace: workNS, name: name)) }
    }
    if let effective, ready {
      let input = ChildInputs(policy: policy, effective: effective, settings: w.settings, secrets: w.secrets)
      for r in rotations {
        guard let start = r.plan.start else { continue }
        do {
          d.actions.append(.apply(try ReplicationChildren.rotationJob(input, index: r.index, start), event: nil))
        } catch {
          d.warnings.append(("cannot build replica rotation Job", ["replica": "\(r.name)", "error": "\(error)"]))
        }
      }
    }
    if let effective {
      let input = ChildInputs(policy: policy, effective: effective, settings: w.settings, secrets: w.secrets)
      for p in plan.create {
        do {
          let job = try ReplicationChildren.copyJob(
            input, index: p.index, snapshot: p.snapshot, backupTime: p.backupTime)
          d.actions.append(
            .apply(
              job,
              event: PlannedEvent(
                warning: false, reason: "ReplicaCopyStarted",
                message: "Created copy Job \(job.name) of snapshot \(p.snapshot) to replica \(p.replica).")))
        } catch {
          d.warnings.append(("cannot build copy Job", ["replica": "\(p.replica)", "error": "\(error)"]))
        }
      }
    }
    for name in plan.delete { d.actions.append(.deleteJob(namespace: workNS, name: name)) }
    outcome.events += plan.events

    var m = ReplicaMetricValues()
    m.keys = rotations.map { r in
      if let age = r.plan.keyAgeSeconds, let limit = r.plan.limitSeconds { return (r.name, age, limit) }
      // A replica following the primary has no key of its own.
      return (r.name, nil, nil)
    }
    let wanted = Set((policy.spec.replicas ?? []).map(\.name))
    m.gone = Set((policy.status?.replicas ?? []).map(\.name)).subtracting(wanted).sorted()
    m.copyFailures = plan.events.filter { $0.reason == "ReplicaCopyFailed" }.map { e in
      (policy.spec.replicas ?? []).first { e.message.hasPrefix("Replica \($0.name):") }?.name ?? ""
    }
    d.metrics.replicas = m
  }

  /// The key rotation plan of every replica (ReplicaKeyRotation) from its rotation Jobs and its previous status.
  static func replicaRotations(
    _ policy: BackupPolicy, runs: [BackupRun], secrets: [String: Secret], now: Date
  ) -> [(index: Int, name: String, plan: ReplicaRotationPlan)] {
    var out: [(index: Int, name: String, plan: ReplicaRotationPlan)] = []
    for (i, replica) in (policy.spec.replicas ?? []).enumerated() {
      let rs = policy.status?.replicas?.first { $0.name == replica.name } ?? ReplicaStatus(name: replica.name)
      var entries: [String]? = nil
      if let ref = replica.encryption?.rotationKeysSecretRef, let secret = secrets[ref.name] {
        entries = secret.entryNames
      }
      let mine = runs.filter { $0.annotations[ReplicaLabels.replica] == replica.name }
      out.append(
        (
          i, replica.name,
          ReplicaKeyRotation.plan(policy: policy, index: i, status: rs, runs: mine, rotationKeys: entries, now: now)
        ))
    }
    return out
  }
}
