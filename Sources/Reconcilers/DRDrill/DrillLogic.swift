import DRAPI
import EngineContract
import Foundation
import KubeCore

/// What a drill should do now.
public enum DrillDecision: Sendable, Hashable {
  /// A run is in progress: never start a second one.
  case running
  /// Start a run; the token says why ("trigger:X", "annotation:X" or "schedule:TIME").
  case start(token: String)
  /// Nothing to do before this time (the next scheduled run).
  case waitUntil(Date)
  /// spec.suspend is set and nothing was triggered.
  case suspended
}

/// What the drill reconciler observed of a running drill's run: the run Job with its Pods (nil: no run Job), when the
/// run started and how long it may take.
public struct DrillRunWorld: Sendable, Hashable {
  /// The run Job and its newest Pod's terminated containers; nil when there is no run Job (not created yet, or gone).
  public var job: JobObservation?
  /// The run's scratch namespace.
  public var scratchNamespace: String
  /// When the run started (status.currentRun.startTime).
  public var runStart: Date
  /// spec.timeout in seconds.
  public var timeoutSeconds: Int64
  /// The restore's progress while the run's restore container runs: read from its log when due
  /// (`DrillLogic.progressRead`), else as status had it; nil when no restore runs.
  public var progress: RunProgress?

  public init(
    job: JobObservation?, scratchNamespace: String, runStart: Date, timeoutSeconds: Int64,
    progress: RunProgress? = nil
  ) {
    self.job = job
    self.scratchNamespace = scratchNamespace
    self.runStart = runStart
    self.timeoutSeconds = timeoutSeconds
    self.progress = progress
  }
}

/// What to do with a running drill.
public enum DrillProgress: Sendable, Hashable {
  /// The run is still going (or its Job is not there yet) within its timeout: look again later.
  case wait
  /// The run is over: evaluate it, failed for `failure` when given (timed out, its Job gone).
  case evaluate(failure: String?)
}

/// The restore and verification a drill run performs, derived from its target.
public struct DrillRunSpec: Sendable, Hashable {
  /// What is restored and how (into: a command for databases, else files into an emptyDir of the scratch namespace).
  /// `restore.replica`: the drill's spec.target.replica, else the RecoveryPlan step's.
  public var restore: RestoreStepSpec
  /// Verify with `--read-data`. (The restore itself always authenticates and re-hashes every blob it writes, so
  /// every restored file is checked against the snapshot's content hashes; there is no switch for that.)
  public var readData: Bool
  /// The database query and its expected output.
  public var query: DatabaseQuery?
  /// The field that names `restore.replica` (spec.target.replica, or the plan's step seen through
  /// spec.target.recoveryPlanRef).
  public var replicaField = "spec.target.replica"
}

/// Metric values of a finished drill run (the controller sets the gauges from these).
public struct DrillMetricValues: Sendable, Hashable {
  /// botrt_drill_last_run_timestamp_seconds.
  public var lastRunTimestampSeconds: Double
  /// botrt_drill_rto_seconds (nil: no verified restore).
  public var rtoSeconds: Double?
  /// botrt_drill_rpo_seconds (nil: unknown).
  public var rpoSeconds: Double?
  /// botrt_drill_compliance_score.
  public var complianceScore: Double
}

/// The outcome of evaluating a finished drill run.
public struct DrillOutcome: Sendable {
  /// The new status (history recorded, conditions set, phase Idle).
  public var status: DRDrillStatus
  /// The recorded result.
  public var result: DrillResult
  /// The score and its parts.
  public var score: ComplianceScore
  /// Events to emit.
  public var events: [PlannedEvent]
  /// Gauge values.
  public var metrics: DrillMetricValues
}

/// DRDrill logic without I/O: schedule, run decisions, the scratch namespace and its fences, the run Job, and the
/// evaluation of a finished run (RPO, RTO, integrity, performance, security, compliance score, conditions).
public enum DrillLogic {
  /// Labels of drill children.
  public static let drillNameLabel = "dr.botrt.io/drill-name"
  public static let drillNamespaceLabel = "dr.botrt.io/drill-namespace"
  public static let scratchLabel = "dr.botrt.io/scratch"

  /// The effective schedule: spec.schedule (preset or cron), else the target tier's drill frequency, tightened by the
  /// compliance profiles of the drill and its target.
  public static func schedule(
    _ drill: DRDrill, targetTier: Tier?, targetCompliance: [ComplianceProfile]
  ) throws(SpecError) -> Sourced<String> {
    try effectiveDrillSchedule(
      schedule: drill.spec.schedule, targetTier: targetTier,
      compliance: (drill.spec.compliance ?? []) + targetCompliance)
  }

  /// The pending manual run token, when not yet handled.
  public static func pendingTrigger(_ drill: DRDrill) -> String? {
    let handled = drill.status?.lastHandledTrigger
    if let t = drill.spec.trigger, !t.isEmpty, "trigger:\(t)" != handled { return "trigger:\(t)" }
    if let a = drill.metadata.annotations?[DRGroup.runNowAnnotation], !a.isEmpty, "annotation:\(a)" != handled {
      return "annotation:\(a)"
    }
    return nil
  }

  /// The next scheduled run: the first fire time after the last run (or the drill's creation).
  public static func nextRun(_ drill: DRDrill, cron: CronSchedule, now: Date) -> Date? {
    let anchor = drill.status?.lastRunTime ?? drill.metadata.creationTimestamp ?? now
    return cron.next(after: anchor)
  }

  /// Decides whether to start a run. Missed fire times start one run, not one per missed time.
  public static func decide(_ drill: DRDrill, cron: CronSchedule, now: Date) -> DrillDecision {
    if drill.status?.phase == .running { return .running }
    if let t = pendingTrigger(drill) { return .start(token: t) }
    if drill.spec.suspend == true { return .suspended }
    guard let next = nextRun(drill, cron: cron, now: now) else { return .suspended }
    if next <= now { return .start(token: "schedule:" + rfc3339Seconds(next)) }
    return .waitUntil(next)
  }

  /// The scratch namespace of a run: "drill-<name>-<nameHash(namespace, name, token)>", at most 53 characters.
  /// Namespaces are cluster-wide: the 64-bit SHA-256 part keeps one tenant's drill from naming another's.
  public static func scratchNamespace(_ drill: DRDrill, token: String) -> String {
    let base = String(drill.name.lowercased().prefix(30)).trimmingCharacters(in: CharacterSet(charactersIn: "-."))
    return "drill-\(base)-\(nameHash(drill.metadata.namespace ?? "", drill.name, token))"
  }

  /// The condition reason of a run refused because its scratch namespace exists and is not the drill's.
  public static let scratchConflictReason = "ScratchNamespaceConflict"

  /// Nil when an existing namespace named `scratch` (its labels `existing`) is this drill's scratch namespace, made by
  /// the controller for it (an earlier attempt of the same run): the drill's namespace and name labels and the scratch
  /// label. Otherwise the conflict: the run must not restore into, copy Secrets into, or fence another tenant's
  /// namespace (or one someone created in advance to receive the copies).
  public static func scratchNamespaceConflict(
    _ drill: DRDrill, scratch: String, existing: [String: String]
  ) -> ChildNameConflict? {
    let mine =
      existing[drillNamespaceLabel] == (drill.metadata.namespace ?? "") && existing[drillNameLabel] == drill.name
      && existing[scratchLabel] == "true" && existing[ChildLabels.managedBy] == ChildLabels.controllerName
    if mine { return nil }
    return ChildNameConflict(child: "Namespace \(scratch)", owner: ChildOwnership.ownerText(existing))
  }

  /// The run Job's name (in the scratch namespace).
  public static let runJobName = "drill-run"

  /// Labels of everything a run creates (the scratch namespace is found and removed by these).
  /// The labels that find a drill's scratch namespaces (every one also carries the controller's managed-by label and
  /// `scratchLabel`, `scratchChildren`).
  public static func scratchSelection(_ drill: DRDrill) -> [String: String] {
    [drillNameLabel: drill.name, drillNamespaceLabel: drill.metadata.namespace ?? ""]
  }

  /// The scratch namespaces to delete among `namespaces` (as listed or cached, metadata only): every one but `keep`
  /// and those already being deleted.
  public static func staleScratchNamespaces(_ namespaces: [JSONValue], keep: String?) -> [String] {
    namespaces.compactMap { n in
      guard let name = n[path: "metadata", "name"]?.stringValue, name != keep,
        n[path: "metadata", "deletionTimestamp"] == nil
      else { return nil }
      return name
    }.sorted()
  }

  public static func labels(_ drill: DRDrill) -> [String: String] {
    [
      drillNamespaceLabel: drill.metadata.namespace ?? "", drillNameLabel: drill.name,
      ChildLabels.managedBy: ChildLabels.controllerName, "component": "disaster-recovery",
    ]
  }

  /// What a run restores and checks, from the target: a BackupPolicy (files into an emptyDir, or the restore command
  /// of spec.restore) or a RecoveryPlan (its first restore step and its verify steps; a PVC destination becomes an
  /// emptyDir, since the scratch namespace has no copy of the claim).
  public static func runSpec(_ drill: DRDrill, plan: RecoveryPlan?) throws(SpecError) -> DrillRunSpec {
    let v = drill.spec.verification
    let planRef: LocalObjectReference
    switch try drill.spec.target.kind(at: "spec.target") {
    case .backupPolicy(let ref):
      return DrillRunSpec(
        restore: RestoreStepSpec(
          policyRef: ref, snapshot: drill.spec.snapshot, into: drill.spec.restore ?? RestoreDestination(),
          replica: drill.spec.target.replica, claim: drill.spec.claim),
        readData: v?.readData ?? true, query: v?.databaseQuery)
    case .recoveryPlan(let ref):
      planRef = ref
    }
    guard let plan else {
      throw SpecError(
        field: "spec.target.recoveryPlanRef", message: "RecoveryPlan '\(planRef.name)' does not exist in this namespace"
      )
    }
    let steps = plan.spec.procedures.flatMap(\.steps)
    guard let r = steps.first(where: { $0.action == .restore })?.restore else {
      throw SpecError(
        field: "spec.target.recoveryPlanRef",
        message: "RecoveryPlan '\(planRef.name)' has no restore step, so there is nothing to rehearse")
    }
    var restore = r
    var replicaField = "spec.target.replica"
    if let name = drill.spec.target.replica {
      restore.replica = name
    } else if restore.replica != nil {
      replicaField = "spec.target.recoveryPlanRef"
    }
    if let s = drill.spec.snapshot { restore.snapshot = s }
    if let c = drill.spec.claim { restore.claim = c }
    if let into = drill.spec.restore {
      restore.into = into
    } else {
      // A plan's restore into a claim, or of Kubernetes objects, is rehearsed as a restore of the snapshot into the
      // run's emptyDir (a drill creates no objects).
      switch restore.into.kind {
      case .pvc?, .objects?: restore.into = RestoreDestination()
      case .command?, nil: break
      }
    }
    let verify = steps.first { $0.action == .verify }?.verify
    return DrillRunSpec(
      restore: restore, readData: v?.readData ?? verify?.readData ?? true,
      query: v?.databaseQuery ?? verify?.databaseQuery, replicaField: replicaField)
  }

  /// The policy whose repository the run opens: the target policy, or the one of its replica the run restores from
  /// (`ReplicaSource.policy`: the replica's repository, keys and pins, never the primary's pins); its Secrets are the
  /// ones copied into the scratch namespace and its endpoints the ones the fence lets through.
  ///
  /// A repository on a claim (`repository.local.claimName`) cannot be drilled: the run's Jobs are in the scratch
  /// namespace, where the policy's claim does not exist, so the Pod would stay Pending until the drill's timeout.
  /// It is refused here, naming the field, before any run starts.
  public static func sourcePolicy(_ spec: DrillRunSpec, policy: BackupPolicy) throws(SpecError) -> BackupPolicy {
    let source = try ReplicaSource.policy(policy, replica: spec.restore.replica, field: spec.replicaField)
    if let claim = source.spec.repository.local?.claimName {
      let which = spec.restore.replica.map { "the repository of its replica '\($0)'" } ?? "its repository"
      throw SpecError(
        field: spec.restore.replica == nil ? "spec.target" : spec.replicaField,
        message: "BackupPolicy '\(policy.name)' keeps \(which) on claim '\(claim)' of namespace "
          + "\(policy.metadata.namespace ?? "default") (repository.local.claimName); a drill's Jobs run in its scratch "
          + "namespace, where that claim cannot be mounted: drill a replica in object storage (spec.target.replica) "
          + "or rehearse the restore with a RecoveryPlan in the policy's namespace")
    }
    return source
  }

  /// The scratch namespace and its fences: default-deny for ingress and egress, then egress only for the drill's
  /// pods to DNS, the storage and KMS endpoints of the policy, and the drill's spec.egress destinations.
  public static func scratchChildren(
    _ drill: DRDrill, namespace ns: String, policy: BackupPolicy, settings: ControllerSettings
  ) -> [DesiredChild] {
    let l = labels(drill)
    var out: [DesiredChild] = []
    var nsLabels = l
    nsLabels[scratchLabel] = "true"
    out.append(
      DesiredChild(
        resource: ChildResources.namespaces, namespace: nil, name: ns,
        body: [
          "apiVersion": "v1", "kind": "Namespace",
          "metadata": ["name": .string(ns), "labels": .object(nsLabels.mapValues { .string($0) })],
        ]))
    out.append(
      DesiredChild(
        resource: ChildResources.networkPolicies,
        object: NetworkPolicy(
          metadata: ObjectMeta(name: "botrt-drill-default-deny", namespace: ns, labels: l),
          spec: NetworkPolicySpec(policyTypes: ["Ingress", "Egress"]))))
    // DNS and the declared key services, the policy's storage, cloud KMS and Vault endpoints, and spec.egress
    // (NetworkIsolation: the same rules as the backup namespace and its run windows).
    var egress = NetworkIsolation.sharedEgressRules(settings)
    for r in NetworkIsolation.windowRules(policy.spec, settings: settings) where !egress.contains(r) {
      egress.append(r)
    }
    for e in drill.spec.egress ?? [] {
      for r in NetworkIsolation.drillEgressRules(host: e.host, port: Int(e.port), settings: settings)
      where !egress.contains(r) {
        egress.append(r)
      }
    }
    out.append(
      DesiredChild(
        resource: ChildResources.networkPolicies,
        object: NetworkPolicy(
          metadata: ObjectMeta(name: "botrt-drill-allow-storage", namespace: ns, labels: l),
          spec: NetworkPolicySpec(
            podSelector: LabelSelector(matchLabels: [drillNameLabel: drill.name]), policyTypes: ["Egress"],
            egress: egress))))
    return out
  }

  /// The claim a drill's scratch claim is sized from, when the run restores into a claim (spec.restore.pvc): the
  /// BackupPolicy's source claim (spec.source.pvc.claimName) in the policy's namespace, else the claim the drill names,
  /// in the drill's namespace. Nil when the run restores into an emptyDir or a command.
  public static func sourceClaimReference(
    _ drill: DRDrill, spec: DrillRunSpec, policy: BackupPolicy
  ) -> (namespace: String, name: String)? {
    guard let into = spec.restore.into.pvc else { return nil }
    if let src = policy.spec.source.pvc?.claimName, !src.isEmpty {
      return (policy.metadata.namespace ?? drill.metadata.namespace ?? "default", src)
    }
    // A multi-claim policy: the claim the run restores.
    if policy.spec.source.claims != nil, let src = spec.restore.claim, !src.isEmpty {
      return (policy.metadata.namespace ?? drill.metadata.namespace ?? "default", src)
    }
    return (drill.metadata.namespace ?? "default", into.claimName)
  }

  /// The field a missing source claim is reported under.
  public static let restoreClaimField = "spec.restore.pvc.claimName"

  /// The scratch claim a run restores into (spec.restore.pvc): a fresh scratch namespace has no claims, so the drill
  /// creates one there under the name the restore mounts, with the storage request, access modes and storage class of
  /// the source claim (`source`, the PersistentVolumeClaim as read; nil when it could not be read), labelled as the
  /// drill's; it goes with the scratch namespace. Nil when the run does not restore into a claim. Throws naming
  /// spec.restore.pvc.claimName when the source claim is missing or has no storage request.
  public static func scratchClaim(
    _ drill: DRDrill, spec: DrillRunSpec, namespace ns: String, policy: BackupPolicy, source: JSONValue?
  ) throws(SpecError) -> DesiredChild? {
    guard let into = spec.restore.into.pvc, let ref = sourceClaimReference(drill, spec: spec, policy: policy) else {
      return nil
    }
    guard let source else {
      throw SpecError(
        field: restoreClaimField,
        message: "the drill restores into a claim in its scratch namespace sized from PersistentVolumeClaim "
          + "'\(ref.name)' in namespace \(ref.namespace), which cannot be read")
    }
    guard let storage = source[path: "spec", "resources", "requests", "storage"], storage.stringValue != nil else {
      throw SpecError(
        field: restoreClaimField,
        message: "PersistentVolumeClaim '\(ref.name)' in namespace \(ref.namespace) has no storage request to size "
          + "the drill's scratch claim from")
    }
    let modes = source[path: "spec", "accessModes"]?.arrayValue ?? []
    var claimSpec: [String: JSONValue] = [
      "accessModes": .array(modes.isEmpty ? ["ReadWriteOnce"] : modes),
      "resources": ["requests": ["storage": storage]],
    ]
    if let sc = source[path: "spec", "storageClassName"], sc.stringValue != nil { claimSpec["storageClassName"] = sc }
    if let vm = source[path: "spec", "volumeMode"], vm.stringValue != nil { claimSpec["volumeMode"] = vm }
    return DesiredChild(
      resource: ChildResources.persistentVolumeClaims, namespace: ns, name: into.claimName,
      body: [
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": [
          "name": .string(into.claimName), "namespace": .string(ns),
          "labels": .object(labels(drill).mapValues { .string($0) }),
        ],
        "spec": .object(claimSpec),
      ])
  }

  /// Copies of the policy's Secrets the run Job reads, into the scratch namespace (same names).
  public static func secretCopies(
    _ drill: DRDrill, namespace ns: String, policy: BackupPolicy, spec: DrillRunSpec, secrets: [String: Secret]
  ) throws(SpecError) -> [DesiredChild] {
    let inv = try EngineInvocation(policy: policy) { $0 }
    var names = inv.secrets.map(\.sourceName)
    for e in (spec.restore.into.command?.env ?? []) + (spec.query?.env ?? []) {
      if let r = e.valueFrom?.secretKeyRef, !names.contains(r.name) { names.append(r.name) }
    }
    var out: [DesiredChild] = []
    for name in names {
      guard let s = secrets[name] else {
        throw SpecError(
          field: "spec.target",
          message: "Secret '\(name)' that the restore needs does not exist in namespace "
            + "\(drill.metadata.namespace ?? "")")
      }
      let data = JSONValue.object((s.data ?? [:]).mapValues { .string($0.base64EncodedString()) })
      out.append(
        DesiredChild(
          resource: ChildResources.secrets, namespace: ns, name: name,
          body: [
            "apiVersion": "v1", "kind": "Secret", "type": .string(s.type ?? "Opaque"),
            "metadata": [
              "name": .string(name), "namespace": .string(ns),
              "labels": .object(labels(drill).mapValues { .string($0) }),
            ],
            "data": data,
          ]))
    }
    return out
  }

  /// How long a run Job may be missing after the run started before the run counts as failed: the Job is applied
  /// right after status records the run, and a cache may not show it yet.
  public static let runJobGraceSeconds: TimeInterval = 60

  /// The run Job among the Jobs (with their Pods) read from the scratch namespace, observed; nil when it is not
  /// among them.
  public static func observeRun(_ jobs: [JobWithPods]) -> JobObservation? {
    jobs.first { $0.job[path: "metadata", "name"]?.stringValue == runJobName }.map {
      JobObservation.observe(job: $0.job, pods: $0.pods)
    }
  }

  /// Decides whether a running drill waits or is evaluated: a Job still running (or not there yet, for
  /// `runJobGraceSeconds`) waits until the timeout, after which the run fails; a Job missing after the grace failed
  /// (it was deleted); a finished Job is evaluated.
  public static func progress(_ world: DrillRunWorld, now: Date) -> DrillProgress {
    let elapsed = now.timeIntervalSince(world.runStart)
    if world.job?.state == .running || (world.job == nil && elapsed < runJobGraceSeconds) {
      if elapsed <= TimeInterval(world.timeoutSeconds) { return .wait }
      return .evaluate(
        failure: "the drill passed its timeout of \(DurationText.format(seconds: world.timeoutSeconds))")
    }
    if world.job == nil {
      return .evaluate(failure: "the run Job \(runJobName) in \(world.scratchNamespace) disappeared")
    }
    return .evaluate(failure: nil)
  }

  /// The run Job's engine container that restores and prints the progress lines (`RecoveryJobs.restoreParts`, with
  /// `runJob`'s name for it).
  public static let restoreContainer = "restore"

  /// Whether the run's restore runs: the run Job runs and its newest Pod's restore container has not ended (after it,
  /// the Job verifies or queries, which report no progress).
  public static func restoreRuns(_ job: JobObservation?) -> Bool {
    guard let job, job.state == .running else { return false }
    return job.containers[restoreContainer] == nil
  }

  /// The restore log of a running drill's run to read for its progress: while the run Job (started) runs and its
  /// restore container has not ended (`restoreRuns`), in the scratch namespace, with whether it is due
  /// (`RunProgressLogic.due`: at most every 10 s; else `previous`, status's value, stays). Nil when no restore runs.
  public static func progressRead(_ drill: DRDrill, job: JobObservation?, now: Date) -> RestoreProgressRead? {
    guard drill.status?.phase == .running, let run = drill.status?.currentRun, let scratch = run.scratchNamespace,
      let job, restoreRuns(job), job.startTime != nil
    else { return nil }
    return RestoreProgressRead(
      job: job.name, namespace: scratch, pod: job.activePod, startTime: job.startTime, previous: run.progress,
      previousBackupBytes: nil, due: RunProgressLogic.due(previous: run.progress, job: job.name, now: now))
  }

  /// The status of a drill whose run goes on (`progress` said wait), and when to look again: currentRun shows the
  /// restore's progress as observed (`world.progress`) while the restore runs, and none once it ended; the next look
  /// is after `pollSeconds`, or sooner when the next progress read is due (`RunProgressLogic.nextUpdate`).
  public static func waiting(
    _ status: DRDrillStatus, world: DrillRunWorld, now: Date, pollSeconds: TimeInterval
  ) -> (status: DRDrillStatus, requeueAfter: TimeInterval) {
    var st = status
    var requeue = pollSeconds
    guard st.currentRun != nil else { return (st, requeue) }
    // The step the run is at (restore, restore-load, verify, query), once its Job is observed.
    if let step = world.job?.currentStep { st.currentRun?.step = step }
    let shown = restoreRuns(world.job) ? world.progress : nil
    st.currentRun?.progress = shown
    if let p = shown {
      requeue = min(requeue, max(1, RunProgressLogic.nextUpdate(after: p).timeIntervalSince(now)))
    }
    return (st, requeue)
  }

  /// The run Job in the scratch namespace: restore (init container), then verify of the restored snapshot, then the
  /// database query; each writes a JSON result the evaluation reads back.
  ///
  /// The snapshot's data is downloaded once, by the restore, which decrypts, authenticates and re-hashes every blob
  /// it writes; with `readData` it then reads every restored file back from the scratch volume and checks it against
  /// the snapshot (`restore --verify`). Verify checks the snapshot's structure (signed manifests, trees, index, packs
  /// present) without downloading the data again: a drill reads about the snapshot's stored size, not twice it.
  /// Verify names the snapshot the restore restored, from the restore's result on the Pod's shared /tmp
  /// (`--snapshot-from`), so a backup landing between the two containers cannot make `latest` mean two snapshots;
  /// `finish` still fails the integrity check when the two results name different snapshots.
  public static func runJob(
    _ drill: DRDrill, spec: DrillRunSpec, namespace ns: String, settings: ControllerSettings,
    policies: [String: BackupPolicy], timeoutSeconds: Int64
  ) throws(SpecError) -> JSONValue {
    var ctx = RecoveryJobContext(
      settings: settings, policies: policies, namespace: ns, labels: labels(drill), owner: nil)
    // A drill of the latest snapshot requires the newest one the policy recorded: a deleted newest snapshot or a
    // rolled-back repository would otherwise pass the drill on older data.
    // From a replica: the id of its newest copy there.
    let latest = (spec.restore.snapshot ?? "latest").isEmpty || (spec.restore.snapshot ?? "latest") == "latest"
    if latest, spec.restore.beforeTime == nil, let p = policies[spec.restore.policyRef.name] {
      ctx.requireSnapshot = ReplicaSource.requiredLatest(p, replica: spec.restore.replica)
      // One claim of a multi-claim policy: that claim's newest recorded snapshot (its primary's).
      if p.spec.source.claims != nil {
        ctx.requireSnapshot =
          spec.restore.replica == nil
          ? p.status?.claims?.first { $0.name == spec.restore.claim }?.lastSnapshotId : nil
      }
    }
    let restore = try RecoveryJobs.restoreParts(
      spec: spec.restore, ctx: ctx, name: "restore", field: "spec", replicaField: spec.replicaField,
      resultShare: RecoveryJobs.restoreResultShare, verifyRestore: spec.readData)
    let verify = try RecoveryJobs.verifyParts(
      policyRef: spec.restore.policyRef, replica: spec.restore.replica, replicaField: spec.replicaField,
      which: .restoredBy(resultFile: RecoveryJobs.restoreResultShare), readData: false, query: spec.query,
      ctx: ctx, field: "spec.verification")
    return RecoveryJobs.sequentialJob(
      name: runJobName, ctx: ctx, initContainers: restore.initContainers, steps: restore.containers + verify.containers,
      volumes: restore.volumes + verify.volumes, activeDeadlineSeconds: timeoutSeconds,
      keepClaimGroups: restore.keepsClaimGroups
    ).json
  }

  /// The run's evidence for two security checks, told apart from the engine's results (nil: no run was observed).
  /// Signatures: the restore succeeded, and the engine's restore refuses a snapshot whose signed manifests (snapshot
  /// and index) do not verify, so a successful restore is a verified manifest check. Encryption: the restore
  /// decrypted data (it read more than 0 bytes, each blob AES-256-GCM authenticated) and `verify` (when it ran)
  /// reported no integrity error. A restore of an empty snapshot verifies signatures but no encryption.
  public static func runEvidence(_ job: JobObservation?) -> (encryption: Bool?, signatures: Bool?) {
    guard let job else { return (nil, nil) }
    let restore = job.containers["restore"]
    let result = restore?.engineResult
    let restoreOK = restore?.exitCode == 0 && result?.ok != false
    let verify = job.containers["verify"]
    let verifyOK = verify.map { $0.exitCode == 0 && $0.engineResult?.ok != false } ?? true
    let decrypted = restoreOK && (result?.bytesRead ?? 0) > 0 && (result?.errors ?? []).isEmpty && verifyOK
    return (decrypted, restoreOK)
  }

  /// The targets of a run: RPO from the policy's effective RPO, RTO from the plan's (or the policy's) effective RTO,
  /// both tightened by the drill's own compliance profiles; thresholds from spec.verification.
  public static func targets(
    _ drill: DRDrill, policy: EffectivePolicy, policyCompliance: [ComplianceProfile], plan: RecoveryPlan?
  ) throws(SpecError) -> DrillTargets {
    let profiles = Array(Set((drill.spec.compliance ?? []) + policyCompliance + (plan?.spec.compliance ?? [])))
    var rto = policy.rtoSeconds.value
    if let p = plan {
      rto = try effectiveRTO(tier: p.spec.tier, override: p.spec.rtoTarget, compliance: p.spec.compliance).value
    }
    var rpo = policy.rpoSeconds.value
    for p in profiles {
      let t = ComplianceTargets.of(p)
      if let x = t.rpoSeconds { rpo = min(rpo, x) }
      if let x = t.rtoSeconds { rto = min(rto, x) }
    }
    let v = drill.spec.verification
    return DrillTargets(
      rpoSeconds: rpo, rtoSeconds: rto, maxDegradationPercent: Double(v?.maxPerformanceDegradationPercent ?? 20),
      minScore: v?.minComplianceScore ?? 95, profiles: profiles)
  }

  /// The smallest restore whose throughput is measured and compared with the baseline (64 MiB).
  public static let minThroughputBytes: Int64 = 64 << 20

  /// The throughput a run is compared with: the median restore throughput of up to 5 earlier passed runs, else the
  /// policy's last backup throughput (bytes read / duration), else none (first run of a new policy).
  public static func baselineThroughput(history: [DrillResult], policy: BackupPolicyStatus?) -> Double? {
    let earlier = history.filter { $0.passed == true }.compactMap(\.restoreBytesPerSecond).filter { $0 > 0 }.prefix(5)
    if !earlier.isEmpty {
      let sorted = earlier.sorted()
      let n = sorted.count
      return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
    if let b = policy?.lastBackupBytes, let d = policy?.lastBackupDurationSeconds, b > 0, d > 0 { return Double(b) / d }
    return nil
  }

  /// The restored snapshot's point in time, from which the drill's RPO is counted: the engine's snapshot time in the
  /// restore result, else (an older engine) the policy's record of its newest snapshot when that is the one restored.
  public static func restoredSnapshotTime(_ restore: EngineResult?, policy: BackupPolicyStatus?) -> Date? {
    if let t = restore?.snapshotDate { return t }
    guard let id = restore?.snapshotId, let last = policy?.lastSnapshot, id.hasPrefix(last) || last.hasPrefix(id)
    else { return nil }
    return policy?.lastSnapshotTime ?? policy?.lastSuccessfulBackup
  }

  /// Evaluates a finished run and records it: the result, the score, conditions Passed, RTOMet and RPOMet, Events
  /// and metric values. `snapshotTime` is the restored snapshot's creation time (nil: unknown).
  public static func finish(
    _ drill: DRDrill, job: JobObservation?, runStart: Date, token: String?, scratchNamespace: String?,
    snapshotTime: Date?, baseline: Double?, security: SecurityChecks, targets: DrillTargets, failure: String? = nil,
    now: Date
  ) -> DrillOutcome {
    var failures: [String] = []
    if let failure { failures.append(failure) }
    let restore = job?.containers["restore"]
    let load = job?.containers["restore-load"]
    let verify = job?.containers["verify"]
    let query = job?.containers["query"]
    let restoreResult = restore?.engineResult

    // Integrity: the Job completed and every check that ran said ok.
    var integrity = job?.state == .succeeded
    for (name, c) in [("restore", restore), ("restore-load", load), ("verify", verify), ("query", query)] {
      guard let c else { continue }
      if c.exitCode != 0 {
        integrity = false
        if let e = c.engineResult?.errors?.first {
          failures.append("\(name) failed: \(e)")
        } else {
          failures.append("\(name) exited with code \(c.exitCode)" + (c.message.map { ": \($0.prefix(300))" } ?? ""))
        }
      }
    }
    // Verify must have checked the snapshot the restore restored: both select it the same way, but a backup between
    // the two containers (or a snapshot that restores but does not verify) can make them differ.
    if let restored = restoreResult?.snapshotId, let verified = verify?.engineResult?.snapshotId,
      !restored.isEmpty, !verified.isEmpty, !restored.hasPrefix(verified), !verified.hasPrefix(restored)
    {
      integrity = false
      failures.append(
        "verify checked snapshot \(verified.prefix(12)), not the restored snapshot \(restored.prefix(12))")
    }
    if let job, job.state == .failed, failures.isEmpty { failures.append(job.failureSummary) }
    if job == nil && failure == nil { failures.append("the run Job was not found") }

    let verifiedAt = [verify?.finishedAt, query?.finishedAt, job?.finishTime].compactMap { $0 }.max()
    let rto: Int64? = integrity ? verifiedAt.map { Int64(max(0, $0.timeIntervalSince(runStart)).rounded()) } : nil
    let rpo: Int64? = snapshotTime.map { Int64(max(0, runStart.timeIntervalSince($0)).rounded()) }
    // Throughput is measured only on restores large enough for it to mean something: below that, fixed costs
    // (process start, key unwrap, connections) dominate, and a baseline would be noise.
    var throughput: Double? = nil
    if let r = restoreResult, let b = r.bytesRead, let d = r.durationSeconds, b >= minThroughputBytes, d > 0 {
      throughput = Double(b) / d
    }
    let m = DrillMeasurements(
      rpoAchievedSeconds: rpo, rtoAchievedSeconds: rto, dataIntegrity: integrity, restoreBytesPerSecond: throughput,
      baselineBytesPerSecond: baseline, security: security)
    let score = ComplianceScore.compute(m, targets: targets)
    let rtoMet = rto.map { $0 <= targets.rtoSeconds } ?? false
    let rpoMet = rpo.map { $0 <= targets.rpoSeconds } ?? false
    let perfOK = (m.performanceDegradationPercent ?? 0) <= targets.maxDegradationPercent
    let passed =
      integrity && rtoMet && rpoMet && perfOK && security.allPassed && score.score >= targets.minScore
    let failedChecks = security.applicable.filter { !$0.passed }.map(\.name)
    for c in failedChecks { failures.append(securityFailurePrefix + c) }

    var result = DrillResult(
      startTime: runStart, completionTime: now, trigger: token, snapshot: restoreResult?.snapshotId,
      scratchNamespace: scratchNamespace, passed: passed, rpoAchievedSeconds: rpo, rpoTargetSeconds: targets.rpoSeconds,
      rtoAchievedSeconds: rto, rtoTargetSeconds: targets.rtoSeconds, dataIntegrity: integrity,
      performanceDegradationPercent: m.performanceDegradationPercent.map { ($0 * 10).rounded() / 10 },
      restoreBytesPerSecond: throughput, securityPosture: security.allPassed, complianceScore: score.score,
      failures: failures.isEmpty ? nil : failures)
    result.bytesRead = bytesRead(restore: restoreResult, verify: verify?.engineResult)
    result.message = describe(
      result, targets: targets, score: score, failedSecurityChecks: failedChecks,
      restoredBytes: restoreResult?.bytesRead)
    // `latest` passed over newer snapshots that did not verify: the result and a Warning Event name them.
    let skipped = restoreResult?.skippedSnapshots ?? []
    let skippedText = skipped.isEmpty ? nil : SkippedSnapshotsText.describe(skipped, chosen: restoreResult?.snapshotId)
    if let skippedText { result.message = (result.message.map { $0 + " " } ?? "") + skippedText }

    var st = drill.status ?? DRDrillStatus()
    st.record(result, limit: Int(drill.spec.historyLimit ?? 10))
    st.phase = .idle
    st.currentRun = nil
    st.observedGeneration = drill.metadata.generation
    var conds = st.conditions ?? []
    let gen = drill.metadata.generation
    conds.setCondition(
      type: DRDrillCondition.passed, status: passed ? .true : .false,
      reason: passed ? "DrillPassed" : (integrity ? "TargetsMissed" : "DataIntegrityFailed"),
      message: result.message ?? "", observedGeneration: gen, now: now)
    let fmt = DurationText.format(seconds:)
    conds.setCondition(
      type: DRDrillCondition.rtoMet, status: rtoMet ? .true : .false,
      reason: rto == nil ? "NotRestored" : (rtoMet ? "WithinTarget" : "OverTarget"),
      message: rto.map {
        "The restore was verified \(fmt($0)) after the drill started, "
          + ($0 <= targets.rtoSeconds ? "within" : "over") + " the RTO target of \(fmt(targets.rtoSeconds))."
      } ?? "No restore was verified, so the RTO target of \(fmt(targets.rtoSeconds)) was not met.",
      observedGeneration: gen, now: now)
    conds.setCondition(
      type: DRDrillCondition.rpoMet, status: rpoMet ? .true : .false,
      reason: rpo == nil ? "SnapshotAgeUnknown" : (rpoMet ? "WithinTarget" : "OverTarget"),
      message: rpo.map {
        "The restored snapshot was \(fmt($0)) old when the drill started, "
          + ($0 <= targets.rpoSeconds ? "within" : "over") + " the RPO target of \(fmt(targets.rpoSeconds))."
      }
        ?? (result.snapshot == nil
          ? "No snapshot was restored, so its age was not measured and the RPO target of "
            + "\(fmt(targets.rpoSeconds)) was not met."
          : "The restored snapshot's age is unknown, so the RPO target of \(fmt(targets.rpoSeconds)) is not shown "
            + "to be met."),
      observedGeneration: gen, now: now)
    // The targets of the drill's compliance profiles, as of this run (ComplianceTargets.swift).
    var judged = drill
    judged.status = st
    ComplianceEvaluation.apply(ComplianceEvaluation.drill(judged, now: now), to: &conds, generation: gen, now: now)
    st.conditions = conds

    var events: [PlannedEvent] = []
    events.append(
      PlannedEvent(warning: !passed, reason: passed ? "DrillPassed" : "DrillFailed", message: result.message ?? ""))
    if let skippedText {
      events.append(PlannedEvent(warning: true, reason: SkippedSnapshotsText.eventReason, message: skippedText))
    }
    if !integrity {
      events.append(
        PlannedEvent(
          warning: true, reason: "DataIntegrityFailed",
          message: "The drill's restored data did not verify: "
            + failures.filter { !$0.hasPrefix(securityFailurePrefix) }.joined(separator: "; ")))
    }
    let metrics = DrillMetricValues(
      lastRunTimestampSeconds: runStart.timeIntervalSince1970, rtoSeconds: rto.map(Double.init),
      rpoSeconds: rpo.map(Double.init), complianceScore: Double(score.score))
    return DrillOutcome(status: st, result: result, score: score, events: events, metrics: metrics)
  }

  /// The bytes a run read from the repository: what its restore and its verify fetched from the storage
  /// (`storageBytesRead`: objects, ranges and listings as stored, compressed and encrypted). Not the restore's
  /// `bytesRead`, which counts the restored (plain) bytes. Nil when neither reported one (an older engine, or the
  /// run did not get that far).
  public static func bytesRead(restore: EngineResult?, verify: EngineResult?) -> Int64? {
    let parts = [restore?.storageBytesRead, verify?.storageBytesRead].compactMap { $0 }
    return parts.isEmpty ? nil : parts.reduce(0, +)
  }

  /// Plain sentences about a run, for status, Events and `kubectl describe`: the verdict, then each measurement with
  /// its target and whether it was met, then what went wrong.
  public static func describe(
    _ r: DrillResult, targets: DrillTargets, score: ComplianceScore, failedSecurityChecks: [String] = [],
    restoredBytes: Int64? = nil
  ) -> String {
    let fmt = DurationText.format(seconds:)
    var s: [String] = []
    if r.passed == true {
      s.append("The drill passed: every target was met.")
    } else if r.dataIntegrity != true {
      s.append("The drill failed: the restored data did not verify.")
    } else {
      s.append("The drill failed: not every target was met.")
    }
    let rtoTarget = fmt(targets.rtoSeconds)
    if let rto = r.rtoAchievedSeconds {
      s.append(
        "The restore was verified \(fmt(rto)) after the drill started, "
          + (rto <= targets.rtoSeconds
            ? "within the RTO target of \(rtoTarget)." : "so the RTO target of \(rtoTarget) was missed."))
    } else {
      s.append("No restore was verified, so the RTO target of \(rtoTarget) was not met.")
    }
    let rpoTarget = fmt(targets.rpoSeconds)
    let snap = r.snapshot.map { " \($0.prefix(12))" } ?? ""
    if let rpo = r.rpoAchievedSeconds {
      s.append(
        "The restored snapshot\(snap) was \(fmt(rpo)) old when the drill started, "
          + (rpo <= targets.rpoSeconds
            ? "within the RPO target of \(rpoTarget)." : "so the RPO target of \(rpoTarget) was missed."))
    } else if r.snapshot == nil {
      s.append("No snapshot was restored, so its age was not measured and the RPO target of \(rpoTarget) was not met.")
    } else {
      s.append(
        "The age of the restored snapshot\(snap) is unknown (it is not the policy's last snapshot), so the RPO "
          + "target of \(rpoTarget) is not shown to be met.")
    }
    s.append(r.dataIntegrity == true ? "All restored data verified." : "Data integrity FAILED.")
    let maxDeg = Int(targets.maxDegradationPercent)
    if let d = r.performanceDegradationPercent {
      s.append(
        d < 0.5
          ? "Restore throughput matched or beat the baseline."
          : "Restore throughput was \(Int(d.rounded())) % below the baseline"
            + (d <= targets.maxDegradationPercent
              ? ", within the \(maxDeg) % allowed." : "; at most \(maxDeg) % is allowed."))
    } else if r.restoreBytesPerSecond != nil {
      s.append("There is no throughput baseline yet; this run's throughput becomes one if it passes.")
    } else if let b = restoredBytes, b < minThroughputBytes {
      s.append(
        "The restore read \(b) bytes, too few to measure throughput (at least \(minThroughputBytes >> 20) MiB), "
          + "so it was not compared with the baseline.")
    }
    if r.securityPosture == true {
      s.append("Every security check passed.")
    } else if failedSecurityChecks.isEmpty {
      s.append("The security checks did not pass.")
    } else {
      let names = failedSecurityChecks.map { "'\($0)'" }
      let list = names.count == 1 ? names[0] : names.dropLast().joined(separator: ", ") + " and " + names.last!
      s.append("The security check\(names.count == 1 ? "" : "s") \(list) failed.")
    }
    s.append("The compliance score is \(score.score) of 100; at least \(targets.minScore) is required.")
    for v in score.profiles where !v.met {
      s.append("\(v.profile.rawValue.uppercased()) is not met: " + v.gaps.joined(separator: ", ") + ".")
    }
    let other = (r.failures ?? []).filter { !$0.hasPrefix(securityFailurePrefix) }
    if !other.isEmpty { s.append("What went wrong: " + other.joined(separator: "; ") + ".") }
    return s.joined(separator: " ")
  }

  /// How a failed security check is recorded in a result's failures.
  static let securityFailurePrefix = "security check failed: "

  /// Marks a run started in status: phase Running, the current run, the handled trigger, the next schedule.
  public static func startRun(
    _ drill: DRDrill, token: String, scratchNamespace: String, schedule: Sourced<String>, now: Date
  ) -> DRDrillStatus {
    var st = drill.status ?? DRDrillStatus()
    st.phase = .running
    st.currentRun = DrillCurrentRun(startTime: now, scratchNamespace: scratchNamespace, step: "restore")
    if !token.hasPrefix("schedule:") { st.lastHandledTrigger = token }
    st.lastRunTime = now
    st.effectiveSchedule = schedule.value
    st.scheduleSource = schedule.source.description
    st.target = drill.spec.target.displayName
    st.observedGeneration = drill.metadata.generation
    return st
  }
}
