import DRAPI
import EngineContract
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Synchronization

/// The metrics of BackupPolicies, each labelled namespace, policy and tier.
public struct BackupPolicyMetrics: Sendable {
  public let lastSuccess: Gauge
  public let duration: Gauge
  public let bytes: Gauge
  public let rpoTarget: Gauge
  public let rpoAge: Gauge
  public let failures: Counter
  public let reconciles: Counter
  public let reconcileErrors: Counter
  public let keyAge: Gauge
  public let keyRotationLimit: Gauge
  public let retentionLastSuccess: Gauge
  public let retentionFailing: Gauge
  public let addedBytes: Gauge
  public let repositoryStoredBytes: Gauge
  public let verifyLastSuccess: Gauge
  public let verifyFailing: Gauge

  /// Every gauge of a policy (they go with the policy; counters stay).
  var gauges: [Gauge] {
    [
      rpoTarget, rpoAge, lastSuccess, duration, bytes, keyAge, keyRotationLimit, retentionLastSuccess, retentionFailing,
      addedBytes, repositoryStoredBytes, verifyLastSuccess, verifyFailing,
    ]
  }

  public init(_ r: MetricsRegistry) {
    let l = ["namespace", "policy", "tier"]
    lastSuccess = r.gauge(
      "botrt_backup_last_success_timestamp_seconds",
      help: "Unix time of the last successful backup (of several claims: the oldest claim's newest one, the time the "
        + "RPO counts).", labels: l)
    duration = r.gauge("botrt_backup_duration_seconds", help: "Duration of the last successful backup.", labels: l)
    bytes = r.gauge("botrt_backup_bytes", help: "Bytes read by the last successful backup.", labels: l)
    rpoTarget = r.gauge("botrt_rpo_target_seconds", help: "The effective RPO target.", labels: l)
    rpoAge = r.gauge(
      "botrt_rpo_age_seconds", help: "Age of the last successful backup at the last reconcile.", labels: l)
    failures = r.counter("botrt_backup_failures_total", help: "Backup runs that failed.", labels: l)
    reconciles = r.counter("botrt_backup_policy_reconciles_total", help: "Reconciles of a BackupPolicy.", labels: l)
    reconcileErrors = r.counter(
      "botrt_backup_policy_reconcile_errors_total", help: "Reconciles of a BackupPolicy that failed.", labels: l)
    keyAge = r.gauge(
      "botrt_key_age_seconds",
      help: "Age of the key-encryption key at the last reconcile: since the last rotation, or since the policy was "
        + "created.", labels: l)
    keyRotationLimit = r.gauge(
      "botrt_key_rotation_limit_seconds", help: "The policy's key rotation period (keyRotationDays).", labels: l)
    retentionLastSuccess = r.gauge(
      "botrt_retention_last_success_timestamp_seconds",
      help: "Unix time the newest successful retention run (forget --prune) still in the cluster finished.", labels: l)
    retentionFailing = r.gauge(
      "botrt_retention_failing", help: "1 when the newest finished retention run (forget --prune) failed, else 0.",
      labels: l)
    addedBytes = r.gauge(
      "botrt_backup_added_bytes",
      help: "Bytes the last successful backup added to the repository: the pack files it wrote, after deduplication, "
        + "compression and encryption (status.lastBackupStoredBytes).", labels: l)
    repositoryStoredBytes = r.gauge(
      "botrt_repository_stored_bytes",
      help: "The repository's stored bytes (its pack files' sizes summed) after the newest successful backup or "
        + "prune (status.repositoryStoredBytes).", labels: l)
    verifyLastSuccess = r.gauge(
      "botrt_verify_last_success_timestamp_seconds",
      help: "Unix time the newest successful periodic verify (spec.verify) known finished.", labels: l)
    verifyFailing = r.gauge(
      "botrt_verify_failing",
      help: "1 when the newest finished periodic verify (spec.verify) found problems or failed, else 0 (absent "
        + "before the first run and without spec.verify).", labels: l)
  }

  /// Sets the verify gauges of a policy with spec.verify from its outcome; without one (nil) they go.
  public func recordVerify(_ v: VerifyOutcome?, _ l: [String], policy mine: [String: String]) {
    guard let v else {
      verifyLastSuccess.remove(matching: mine)
      verifyFailing.remove(matching: mine)
      return
    }
    if v.lastVerify != nil { verifyFailing.set(v.failing ? 1 : 0, l) }
    if let t = v.lastSuccess { verifyLastSuccess.set(t.timeIntervalSince1970, l) }
  }

  /// Sets the policy's gauges from its status (series under another tier go).
  public func record(_ policy: BackupPolicy, _ s: BackupPolicyStatus) {
    let l = [policy.metadata.namespace ?? "", policy.name, policy.spec.tier.rawValue]
    // Series under another tier (the policy's tier changed) would stay frozen: they go.
    let mine = ["namespace": policy.metadata.namespace ?? "", "policy": policy.name]
    for g in gauges { g.keepOnly(l, among: mine) }
    if let t = s.rpoTargetSeconds { rpoTarget.set(Double(t), l) }
    if let a = s.rpoAgeSeconds { rpoAge.set(Double(a), l) }
    // The time the RPO counts, so that BackupRPOViolation (time() minus this, against the RPO target) fires when
    // one claim of several falls behind while the others back up: the oldest claim's newest snapshot.
    let last = policy.spec.source.claims != nil ? MultiClaim.rpo(s.claims ?? []).oldest : s.lastSuccessfulBackup
    if let last { lastSuccess.set(last.timeIntervalSince1970, l) }
    if let d = s.lastBackupDurationSeconds { duration.set(d, l) }
    if let b = s.lastBackupBytes { bytes.set(Double(b), l) }
    if let b = s.lastBackupStoredBytes { addedBytes.set(Double(max(0, b)), l) }
    if let b = s.repositoryStoredBytes { repositoryStoredBytes.set(Double(b), l) }
  }
}

/// A failure to apply or remove a child, naming it.
public struct ChildError: Error, Sendable, CustomStringConvertible {
  public var child: String
  public var operation: String
  /// The error of the operation (a KubeError, a SpecError, ...).
  public var cause: any Error

  public init(child: String, operation: String, cause: any Error) {
    self.child = child
    self.operation = operation
    self.cause = cause
  }

  public var description: String { "cannot \(operation) \(child): \(cause)" }
}

/// The BackupPolicy reconciler: reads the world, applies the desired children with server-side apply under one
/// field manager, prunes children that are no longer desired, and writes status through the status subresource.
/// It never writes spec. A finalizer removes children that owner references cannot (other namespaces, Calico).
public final class BackupPolicyReconciler: Sendable {
  /// The finalizer this controller adds to every BackupPolicy.
  public static let finalizer = "dr.botrt.io/cleanup"
  /// The one field manager of every write.
  public static let fieldManager = ChildLabels.controllerName
  /// How soon a policy that is not Ready is looked at again without a change. Referenced Secrets are watched
  /// (metadata only), so a Secret that appears or changes brings a reconcile at once; this is a safety net.
  public static let problemRetrySeconds = BackupPolicyLogic.problemRetrySeconds
  /// How often a deleted policy looks at its running deletion Job (its Job's changes also bring a reconcile).
  public static let deletionPollSeconds: TimeInterval = 10

  let client: KubeClient
  let settingsBox: Mutex<ControllerSettings>
  /// The settings, with the current Calico discovery.
  public var settings: ControllerSettings { settingsBox.withLock { $0 } }
  let now: @Sendable () -> Date
  let recorder: EventRecorder?
  let metrics: BackupPolicyMetrics?
  let replicaMetrics: ReplicaMetrics?
  let logger: Logger
  /// Where applied NetworkPolicies are recorded for the isolation guard (Sources/Reconcilers/Security/IsolationGuard.swift).
  let isolation: IsolationIntent?
  /// Fetch, finalizer, failure and status, as every kind does them.
  let entry: ReconcileEntry<BackupPolicy>
  /// Where the ownership check of children reads existing objects' labels.
  let existing: ExistingLabels
  /// The shared caches of the controller's own objects, read instead of live lists once filled.
  let managed: ManagedCaches
  /// The shared cache of Pods as RWO placement reads them (ClaimPlacement.swift).
  let claimUsers: ClaimUserCache
  /// The shared cache of the watched namespaces' claims a multi-claim source selects from (nil: listed live).
  let claimStore: Store<PersistentVolumeClaim>?
  /// The children already applied as desired (not applied again).
  let applied = AppliedChildren()
  /// The referenced Secrets, read once per resourceVersion.
  let sourceSecrets: SourceSecrets
  /// Policy (namespace/name) -> the backup namespace of its own it runs Jobs in (backupNamespacesInUse()).
  private let namespacesInUse = Mutex<[String: String]>([:])
  /// Policy uid -> the generation this process last pruned (needsPrune(_:)).
  private let prunedGenerations = Mutex<[String: Int64]>([:])

  public init(
    client: KubeClient, settings: ControllerSettings, now: @escaping @Sendable () -> Date = { Date() },
    recorder: EventRecorder?, metrics: MetricsRegistry?, logger: Logger, isolation: IsolationIntent? = nil,
    managed: ManagedCaches = .none, claimUsers: ClaimUserCache = .none, secretVersions: Store<Unstructured>? = nil,
    claims: Store<PersistentVolumeClaim>? = nil
  ) {
    self.claimUsers = claimUsers
    self.claimStore = claims
    self.sourceSecrets = SourceSecrets(client: client, versions: secretVersions)
    self.isolation = isolation
    self.client = client
    // Only hits count in the ownership check, so the caches of the controller's own objects are all it needs.
    self.existing = ExistingLabels(client: client, caches: managed.stores)
    self.managed = managed
    // The policy is read from the cache when that is safe (ReconcileEntry.readsCache); a pending on-demand run is
    // always read live, so that a run is never started twice.
    self.entry = ReconcileEntry(
      client: client, finalizer: Self.finalizer, fieldManager: Self.fieldManager, logger: logger,
      ownWrites: OwnWrites(), mustReadLive: { BackupPolicyChildren.pendingRunToken($0) != nil })
    self.settingsBox = Mutex(settings)
    self.now = now
    self.recorder = recorder
    self.metrics = metrics.map(BackupPolicyMetrics.init)
    self.replicaMetrics = metrics.map(ReplicaMetrics.init)
    self.logger = logger
  }

  /// Records whether Calico's GlobalNetworkPolicy kind is served (discovered again when its CRD changes); returns
  /// whether that changed.
  @discardableResult
  public func setCalicoServed(_ served: Bool) -> Bool {
    settingsBox.withLock {
      let changed = $0.calicoServed != served
      $0.calicoServed = served
      return changed
    }
  }

  /// The kinds pruned and cleaned up per policy (namespaced, found by the owner labels).
  var ownedKinds: [ResourceDescriptor] { BackupPolicyDeletion.ownedKinds(settings) }

  /// The backup namespaces other than the controller's own in which accepted policies run their Jobs
  /// (spec.backupNamespace of a dump-command source), for the run auditor. Built up by reconciles, so after a
  /// restart it is whole once every policy has been reconciled once.
  public func backupNamespacesInUse() -> Set<String> { Set(namespacesInUse.withLock { Array($0.values) }) }

  /// Records where `policy` runs its Jobs when that is a backup namespace of its own (nil: it does not).
  func recordNamespaceInUse(_ key: String, _ namespace: String?) {
    namespacesInUse.withLock { $0[key] = namespace }
  }

  /// The Controller's reconcile function.
  public func reconcile(_ key: ObjectKey, _ store: Store<BackupPolicy>) async throws -> ReconcileResult {
    let gone = {
      self.recordNamespaceInUse("\(key)", nil)
      self.logger.info("reconciled", metadata: ["object": "\(key)", "outcome": "gone"])
    }
    guard let cached = store.get(key) else {
      gone()
      return .awaitChange
    }
    await managed.waitUntilReady()
    let labels = [key.namespace ?? "", key.name, cached.spec.tier.rawValue]
    metrics?.reconciles.inc(labels)
    do {
      return try await entry.reconcile(key, store, gone: gone, apply: apply) { p in
        // A deletion of the stored backups that was asked for runs (and is waited for) before the children go.
        try await self.delete(p, store: store)
      }
    } catch {
      metrics?.reconcileErrors.inc(labels)
      throw error
    }
  }

  // MARK: - Apply

  /// Converges one live policy; returns when to look again: observe (`observe`), decide
  /// (`BackupPolicyLogic.decide`, pure), act (`act`).
  public func apply(_ policy: BackupPolicy) async throws -> ReconcileResult {
    let world = try await observe(policy)
    return try await act(world, BackupPolicyLogic.decide(world))
  }

  /// Reads everything the decision needs, from the shared caches (Jobs, Pods, children) and by name (the backup
  /// namespace, the referenced Secrets, the source claim). What only an accepted policy needs is read only for one
  /// whose spec is valid and whose backup namespace is allowed.
  func observe(_ policy: BackupPolicy) async throws -> BackupPolicyWorld {
    let settings = self.settings
    var w = BackupPolicyWorld(policy: policy, now: now(), settings: settings)
    let workNS = BackupPolicyChildren.workloadNamespace(policy, settings: settings)
    let restoreOnly = BackupPolicyChildren.isRestoreOnly(policy, settings: settings)
    w.pruneDue = needsPrune(policy)
    var accepted = false
    // The source claim, read once: its record in status, and the access modes RWO placement needs.
    w.sourceClaim = try await readSourceClaim(policy)
    // RWO placement: where the pod that mounts the source claim runs (ClaimPlacement.swift).
    w.placement = await observePlacement(policy, claim: w.sourceClaim)
    // A multi-claim source: the claims it selects now, each placed like a pvc source's claim; a selection that
    // changed (a label, a claim created or deleted) prunes the children of the claims no longer selected.
    if let source = MultiClaim.source(policy) {
      let all = try await readNamespaceClaims(policy)
      var sel = MultiClaim.selection(source, claims: all)
      for name in sel.names {
        let recorded = policy.status?.claims?.first { $0.name == name }?.claim?.accessModes
        let d = await observePlacement(policy, claimName: name, live: sel.read[name], recordedModes: recorded)
        if d != .anywhere { sel.placements[name] = d }
      }
      w.claims = sel
      w.existingClaims = Set(all.filter { !$0.metadata.isDeleting }.map(\.name))
      let before = Set((policy.status?.claims ?? []).filter { $0.gone != true }.map(\.name))
      if before != Set(sel.names) { w.pruneDue = true }
    }
    if case .success(let eff) = BackupPolicyLogic.effective(policy, now: w.now) {
      w.namespaceProblem = try await backupNamespaceProblem(policy)
      if w.namespaceProblem == nil {
        do {
          w.secrets = try await readSecrets(policy)
          // The ownership check reads the objects the children `decide` builds from this world would name.
          let children = try BackupPolicyLogic.children(
            policy, effective: eff, settings: settings, secrets: w.secrets,
            runToken: BackupPolicyLogic.runToken(policy, settings: settings), placement: w.placement,
            claims: w.claims)
          w.conflicts = try await ChildOwnership.conflicts(children, existing: existing)
          accepted = true
        } catch let e as SpecError {
          w.secretsProblem = e
        }
      }
    }
    w.runs = try await observeRuns(policy, namespace: workNS)
    w.progress = await observeProgress(policy, runs: w.runs, namespace: workNS, now: w.now)
    if restoreOnly { return w }
    if accepted {
      w.keyRotationRuns = try await observeRuns(
        policy, namespace: workNS, components: KeyRotationLogic.component, container: "engine")
    }
    // Retention and verify: the prune and verify CronJobs' runs, read back like the backups' in one list.
    w.maintenance = try await observeRunsByComponent(
      policy, namespace: workNS, containers: ["prune": "prune", VerifyOutcome.component: VerifyOutcome.container])
    let hasReplicas = !(policy.spec.replicas ?? []).isEmpty
    if hasReplicas || policy.status?.replicas != nil {
      w.copies = try await observeCopies(policy, namespace: workNS)
      if hasReplicas {
        w.replicaRotationRuns = try await observeRuns(
          policy, namespace: workNS, components: ReplicaKeyRotation.component, container: "engine")
      }
    }
    return w
  }

  /// Carries out a decision: applies the children and prunes, runs the actions in order, writes status once, then
  /// records Events and metrics. When the children cannot be applied, the decision for that failure
  /// (`BackupPolicyLogic.decide(_:applyFailure:)`) is carried out instead and the error is thrown at the end.
  func act(_ world: BackupPolicyWorld, _ decided: BackupPolicyDecision) async throws -> ReconcileResult {
    let policy = world.policy
    let ns = policy.metadata.namespace ?? "default"
    let labels = [ns, policy.name, policy.spec.tier.rawValue]
    var d = decided
    recordNamespaceInUse("\(ObjectKey(policy))", d.namespaceInUse)
    var applyError: Error? = nil
    do {
      for c in d.children { try await applyChild(c, ownerChecked: true) }
      if let keep = d.pruneKeeping {
        try await prune(policy, keeping: keep)
        recordPruned(policy)
      }
      for e in d.childEvents { record(policy, e) }
    } catch {
      applyError = error
      d = BackupPolicyLogic.decide(world, applyFailure: error)
    }
    for action in d.actions {
      switch action {
      case .apply(let c, let event):
        try await applyChild(c)
        if let event { record(policy, event) }
      case .deleteJob(let namespace, let name):
        try await deleteChild(ChildResources.jobs, namespace: namespace, name: name)
      case .fail(let error):
        throw error
      }
    }
    for w in d.warnings { logger.warning("\(w.message)", metadata: w.metadata.mapValues { .string($0) }) }
    try await writeStatus(policy, d.status)
    for e in d.events {
      record(policy, e)
      if e.reason == "BackupFailed" { metrics?.failures.inc(labels) }
    }
    recordMetrics(policy, d)
    let ready = d.status.conditions?.condition(BackupPolicyCondition.ready)
    logger.info(
      "reconciled",
      metadata: [
        "object": "BackupPolicy \(ns)/\(policy.name)",
        "outcome": "\(applyError != nil ? "error" : d.problem != nil ? "not-ready" : "applied")",
        "ready": "\(ready?.status.rawValue ?? "Unknown")", "reason": "\(ready?.reason ?? "")",
        "rpoMet": "\(d.status.conditions?.condition(BackupPolicyCondition.rpoMet)?.status.rawValue ?? "Unknown")",
      ])
    if let applyError { throw applyError }
    if let at = d.requeueAt {
      return .requeueAfter(requeueDelay(seconds: at.timeIntervalSince(world.now)))
    }
    return .awaitChange
  }

  /// Records a planned Event on the policy.
  func record(_ policy: BackupPolicy, _ e: PlannedEvent) {
    recorder?.record(policy, type: e.warning ? .warning : .normal, reason: e.reason, message: e.message)
  }

  /// Sets the policy's and its replicas' metrics from a decision.
  func recordMetrics(_ policy: BackupPolicy, _ d: BackupPolicyDecision) {
    let ns = policy.metadata.namespace ?? "default"
    let tier = policy.spec.tier.rawValue
    let l = [ns, policy.name, tier]
    let mine = ["namespace": ns, "policy": policy.name]
    if let m = metrics, let k = d.metrics.keyAge {
      m.keyAge.set(k.age, l)
      m.keyRotationLimit.set(k.limit, l)
    }
    if let m = replicaMetrics, let r = d.metrics.replicas {
      for st in d.status.replicas ?? [] {
        let rl = [ns, policy.name, tier, st.name]
        if let lag = st.lagSeconds { m.lag.set(Double(lag), rl) }
        if let t = st.lastCopyTime { m.lastCopy.set(t.timeIntervalSince1970, rl) }
      }
      for k in r.keys {
        if let age = k.age, let limit = k.limit {
          m.keyAge.set(age, [ns, policy.name, tier, k.replica])
          m.keyRotationLimit.set(limit, [ns, policy.name, tier, k.replica])
        } else {
          m.keyAge.remove(matching: mine.merging(["replica": k.replica]) { a, _ in a })
          m.keyRotationLimit.remove(matching: mine.merging(["replica": k.replica]) { a, _ in a })
        }
      }
      for gone in r.gone {
        for g in m.gauges { g.remove(matching: mine.merging(["replica": gone]) { a, _ in a }) }
      }
      for name in r.copyFailures { m.copyFailures.inc([ns, policy.name, tier, name]) }
    }
    if d.metrics.removeGauges {
      // No RPO to alert on and no replica lag: the policy's gauges go (a last success from before the switch would
      // raise BackupRPOViolation).
      removeGauges(policy)
    } else {
      metrics?.record(policy, d.status)
    }
    if let m = metrics, let r = d.metrics.retention {
      m.retentionFailing.set(r.failing ? 1 : 0, l)
      if let t = r.lastSuccess { m.retentionLastSuccess.set(t.timeIntervalSince1970, l) }
    }
    metrics?.recordVerify(d.metrics.verify, l, policy: mine)
  }

  /// The policy's source claim (only for a PVC source): from the shared claim cache once it is filled (no request
  /// per reconcile), else a get by name; nil when it does not exist or the controller may not read it (an older
  /// ClusterRole): `SourceClaimRecord` then keeps the previous record.
  func readSourceClaim(_ policy: BackupPolicy) async throws -> PersistentVolumeClaim? {
    guard let name = SourceClaimRecord.claimName(policy) else { return nil }
    if let store = claimStore, store.isReady {
      return store.get(ObjectKey(namespace: policy.metadata.namespace ?? "default", name: name))
    }
    do {
      return try await client.get(PersistentVolumeClaim.self, namespace: policy.metadata.namespace, name: name)
    } catch let e as KubeError where e.isNotFound || e.isForbidden {
      if e.isForbidden {
        logger.warning(
          "cannot read the source claim; status.sourceClaim is not updated (grant get on persistentvolumeclaims)",
          metadata: ["object": "BackupPolicy \(policy.metadata.namespace ?? "")/\(policy.name)", "error": "\(e)"])
      }
      return nil
    }
  }

  /// The claims of the policy's namespace a multi-claim source selects from: from the shared cache once it is
  /// filled, else listed live.
  func readNamespaceClaims(_ policy: BackupPolicy) async throws -> [PersistentVolumeClaim] {
    let ns = policy.metadata.namespace ?? "default"
    if let store = claimStore, store.isReady { return store.list(namespace: ns) }
    return try await client.listAll(PersistentVolumeClaim.self, namespace: ns).items
  }

  /// Reads the Secrets the policy references in its namespace; absent ones are left out (the builder names them).
  /// The label of a namespace that holds backup Jobs (the controller sets it on the namespaces it creates).
  public static let backupNamespaceLabel = "dr.botrt.io/backup-namespace"

  /// Why `spec.backupNamespace` may not be used, or nil. The controller labels the backup namespace, makes it
  /// `restricted`, denies all traffic in it but the backups', and copies the policy's Secrets into it; so a policy may
  /// name a namespace that does not exist yet (the controller creates it) or one that is already a backup namespace,
  /// never another existing namespace (kube-system, another team's): that would let anyone who can write a
  /// BackupPolicy lock down or read into a namespace they have no rights on.
  func backupNamespaceProblem(_ policy: BackupPolicy) async throws -> PolicyProblem? {
    guard let asked = policy.spec.backupNamespace, asked != settings.backupNamespace else { return nil }
    let existing: Namespace
    do {
      existing = try await client.get(Namespace.self, name: asked)
    } catch let e as KubeError where e.isNotFound {
      return nil
    }
    if existing.metadata.labels?[Self.backupNamespaceLabel] == "true" { return nil }
    return PolicyProblem(
      reason: "BackupNamespaceNotAllowed",
      message: "spec.backupNamespace: namespace \(asked) exists and is not a backup namespace (it lacks the label "
        + "\(Self.backupNamespaceLabel)=true); name a new namespace, or leave the field out to use "
        + "\(settings.backupNamespace)")
  }

  func readSecrets(_ policy: BackupPolicy) async throws -> [String: Secret] {
    let ns = policy.metadata.namespace ?? "default"
    let invocation = try EngineInvocation(policy: policy) { $0 }
    var out: [String: Secret] = [:]
    for use in invocation.secrets + (try ReplicationChildren.secretUses(policy.spec)) {
      out[use.sourceName] = try await sourceSecrets.get(namespace: ns, name: use.sourceName)
    }
    return out
  }

  /// Server-side apply of one child, forcing ownership of the fields the controller sets. Unless the caller checked
  /// already (`ownerChecked`), an existing object of the child's name whose owner labels name another owner is
  /// left alone and the ChildNameConflict is thrown.
  func applyChild(_ c: DesiredChild, ownerChecked: Bool = false) async throws {
    if !ownerChecked, let conflict = try await ChildOwnership.conflicts([c], existing: existing).first {
      throw conflict
    }
    isolation?.record(c)
    let hash = AppliedChildren.hash(c.body)
    let cached = managed.store(c.resource)?.get(ObjectKey(namespace: c.namespace, name: c.name))
    if applied.isCurrent(c, hash: hash, cached: cached) { return }
    do {
      let result = try await client.apply(
        c.resource, namespace: c.namespace, name: c.name, AppliedChildren.annotated(c.body, hash: hash),
        fieldManager: Self.fieldManager, force: true)
      applied.record(c, hash: hash, applied: Unstructured(result))
    } catch {
      throw ChildError(child: c.displayName, operation: "apply", cause: error)
    }
  }

  /// Whether this reconcile prunes: after a spec change, and once per generation in each controller process, so
  /// that children whose names changed with an upgrade (e.g. the SHA-256 child names replacing FNV ones) are
  /// removed instead of running on beside the new ones.
  func needsPrune(_ policy: BackupPolicy) -> Bool {
    if policy.status?.observedGeneration != policy.metadata.generation { return true }
    let key = policy.metadata.uid ?? "\(ObjectKey(policy))"
    return prunedGenerations.withLock { $0[key] } != (policy.metadata.generation ?? 0)
  }

  /// Records that the policy's current generation was pruned by this process.
  func recordPruned(_ policy: BackupPolicy) {
    let key = policy.metadata.uid ?? "\(ObjectKey(policy))"
    prunedGenerations.withLock { $0[key] = policy.metadata.generation ?? 0 }
  }

  /// Deletes labelled children that are no longer desired (e.g. a Secret no longer referenced, or children left in
  /// the old namespace when spec.backupNamespace changed).
  func prune(_ policy: BackupPolicy, keeping children: [DesiredChild]) async throws {
    let keep = Set(children.map { "\($0.resource.plural)/\($0.namespace ?? "")/\($0.name)" })
    let namespaces = BackupPolicyDeletion.childNamespaces(policy, settings: settings)
    for c in try await ownedChildren(policy, kinds: ownedKinds, namespaces: namespaces)
    where !keep.contains("\(c.resource.plural)/\(c.namespace)/\(c.name)") {
      try await deleteChild(c.resource, namespace: c.namespace, name: c.name)
    }
  }

  /// Every labelled, namespaced child of the policy of `kinds` in `namespaces`: from the shared caches once they are
  /// filled, else listed live (`ManagedCaches.read`).
  func ownedChildren(
    _ policy: BackupPolicy, kinds: [ResourceDescriptor], namespaces: [String]
  ) async throws -> [ObservedChild] {
    let labels = ChildLabels.owner(policy.metadata.namespace ?? "default", policy.name)
    var out: [ObservedChild] = []
    for namespace in namespaces {
      for resource in kinds {
        for item in try await managed.read(resource, namespace: namespace, labels: labels, client: client) {
          out.append(
            ObservedChild(
              resource: resource, namespace: namespace, name: item[path: "metadata", "name"]?.stringValue ?? "",
              component: item[path: "metadata", "labels", ChildLabels.component]?.stringValue))
        }
      }
    }
    return out
  }

  func deleteChild(_ resource: ResourceDescriptor, namespace: String?, name: String) async throws {
    isolation?.forget(resource, namespace: namespace, name: name)
    applied.forget(resource, namespace: namespace, name: name)
    do {
      try await client.delete(
        resource, namespace: namespace, name: name, options: DeleteOptions(propagationPolicy: .background))
      logger.info(
        "deleted child", metadata: ["child": "\(resource.kind) \(namespace.map { "\($0)/" } ?? "")\(name)"])
    } catch let e as KubeError where e.isNotFound {
      return
    } catch {
      throw ChildError(
        child: "\(resource.kind) \(namespace.map { "\($0)/" } ?? "")\(name)", operation: "delete", cause: error)
    }
  }

  /// The backup runs of the policy: its Jobs (scheduled and on-demand, or of other `components` with their
  /// engine in `container`) and their Pods.
  func observeRuns(
    _ policy: BackupPolicy, namespace: String, components: String = "backup,on-demand", container: String = "backup"
  ) async throws -> [BackupRun] {
    try await jobsWithPods(policy, namespace: namespace, components: components).map {
      BackupRun.observe(job: $0.job, pods: $0.pods, container: container)
    }
  }

  /// The progress of the newest running backup: read from the tail of its Pod's log when due
  /// (`RunProgressLogic.due`: at most every 10 s), else as status has it. A log that cannot be read (the Pod just
  /// started, or no grant of pods/log in that namespace) leaves the values as they were.
  func observeProgress(
    _ policy: BackupPolicy, runs: [BackupRun], namespace: String, now: Date
  ) async -> RunProgress? {
    let running = runs.filter { $0.state == .running && $0.startTime != nil }
    guard let run = running.max(by: { $0.startTime! < $1.startTime! }) else { return nil }
    let previous = policy.status?.progress
    guard RunProgressLogic.due(previous: previous, job: run.jobName, now: now) else { return previous }
    var line: EngineProgress? = nil
    if let pod = run.runningPod {
      line = await RunProgressLogic.readLatest(
        client: client, logger: logger, namespace: namespace, pod: pod, container: "backup",
        what: "the backup's progress",
        object: "BackupPolicy \(policy.metadata.namespace ?? "")/\(policy.name)")
    }
    return RunProgressLogic.progress(
      job: run.jobName, startTime: run.startTime, line: line, previous: previous,
      previousBackupBytes: policy.status?.lastBackupBytes, now: now)
  }

  /// The runs of several components' Jobs from one list, by component (`containers`: component → its engine's
  /// container).
  func observeRunsByComponent(
    _ policy: BackupPolicy, namespace: String, containers: [String: String]
  ) async throws -> [String: [BackupRun]] {
    let components = containers.keys.sorted().joined(separator: ",")
    return Self.runsByComponent(
      try await jobsWithPods(policy, namespace: namespace, components: components), containers: containers)
  }

  /// Jobs with their Pods observed as runs and split by their component label (Jobs of other components left out).
  static func runsByComponent(
    _ jobs: [JobWithPods], containers: [String: String]
  ) -> [String: [BackupRun]] {
    var out: [String: [BackupRun]] = [:]
    for (job, pods) in jobs {
      guard let component = job[path: "metadata", "labels", ChildLabels.component]?.stringValue,
        let container = containers[component]
      else { continue }
      out[component, default: []].append(BackupRun.observe(job: job, pods: pods, container: container))
    }
    return out
  }

  /// The policy's Jobs with the given component labels (comma-separated) in `namespace`, each with its Pods: from the
  /// shared caches once they are filled and caught up (no request), else one live list of each
  /// (`ManagedCaches.jobsWithPods`).
  func jobsWithPods(
    _ policy: BackupPolicy, namespace: String, components: String
  ) async throws -> [JobWithPods] {
    try await managed.jobsWithPods(
      namespace: namespace, labels: ChildLabels.owner(policy.metadata.namespace ?? "default", policy.name),
      components: Set(components.split(separator: ",").map(String.init)), client: client)
  }

  /// Writes status through the status subresource (`ReconcileEntry.writeStatus`), only when something besides the RPO
  /// age changed, so that a status write does not trigger an endless series of reconciles.
  func writeStatus(_ policy: BackupPolicy, _ status: BackupPolicyStatus) async throws {
    var a = status
    var b = policy.status ?? BackupPolicyStatus()
    a.rpoAgeSeconds = nil
    b.rpoAgeSeconds = nil
    if a == b { return }
    do {
      try await entry.writeStatus(policy, status)
    } catch {
      throw ChildError(
        child: "BackupPolicy \(policy.metadata.namespace ?? "")/\(policy.name) status", operation: "apply",
        cause: error)
    }
  }

  /// Removes the policy's gauges and its replicas' (counters stay, as counters do).
  func removeGauges(_ policy: BackupPolicy) {
    let mine = ["namespace": policy.metadata.namespace ?? "default", "policy": policy.name]
    if let m = metrics {
      for g in m.gauges { g.remove(matching: mine) }
    }
    if let m = replicaMetrics {
      for g in m.gauges { g.remove(matching: mine) }
    }
  }

  // MARK: - Deletion

  /// A policy being deleted: observe (`observeDeletion`), decide (`BackupPolicyDeletion.decide`, pure), act.
  func delete(_ policy: BackupPolicy, store: Store<BackupPolicy>) async throws -> CleanupOutcome {
    let world = try await observeDeletion(policy, store: store)
    let ns = policy.metadata.namespace ?? "default"
    switch BackupPolicyDeletion.decide(world) {
    case .waitForDeletion:
      return .waiting(.requeueAfter(.seconds(Int64(Self.deletionPollSeconds))))
    case .startDeletion(let stop, let apply, let event):
      for c in stop { try await deleteChild(c.resource, namespace: c.namespace, name: c.name) }
      for c in apply { try await applyChild(c) }
      recorder?.record(policy, type: .normal, reason: event.reason, message: event.message)
      return .waiting(.requeueAfter(.seconds(Int64(Self.deletionPollSeconds))))
    case .cleanup(let recorded, let delete, let deleteCalico, let events):
      if let recorded { try await recordDeletion(policy, recorded) }
      for c in delete { try await deleteChild(c.resource, namespace: c.namespace, name: c.name) }
      prunedGenerations.withLock { $0[policy.metadata.uid ?? "\(ObjectKey(policy))"] = nil }
      if deleteCalico {
        try await deleteChild(ChildResources.globalNetworkPolicies, namespace: nil, name: SharedChildNames.calicoPolicy)
      }
      for e in events {
        recorder?.record(policy, type: e.warning ? .warning : .normal, reason: e.reason, message: e.message)
      }
      logger.info("reconciled", metadata: ["object": "BackupPolicy \(ns)/\(policy.name)", "outcome": "cleaned-up"])
      // The policy's gauges go with it (a last-success time of 0 against a target of 0 would raise
      // BackupRPOViolation for a policy that no longer exists); counters stay, as counters do.
      removeGauges(policy)
      return .done(.awaitChange)
    }
  }

  /// Reads what deleting the policy needs: its children (Jobs included) from the shared caches, whether another
  /// policy remains, and, while a deletion of its stored backups is pending, the deletion Job's run and, before it
  /// starts, the Secrets the spec names.
  func observeDeletion(_ policy: BackupPolicy, store: Store<BackupPolicy>) async throws -> BackupPolicyDeletionWorld {
    var w = BackupPolicyDeletionWorld(policy: policy, now: now(), settings: settings)
    let pending = BackupPolicyDeletion.deletionPending(policy, settings: settings)
    if pending {
      let names = ChildNames(namespace: policy.metadata.namespace ?? "default", name: policy.name)
      let workNS = BackupPolicyChildren.workloadNamespace(policy, settings: settings)
      let runs = try await observeRuns(
        policy, namespace: workNS, components: BackupDeletion.component, container: "engine")
      w.deletionRun = runs.first { $0.jobName == names.deleteRepositoryJob }
    }
    var namespaces = Set(BackupPolicyDeletion.childNamespaces(policy, settings: settings))
    namespaces.formUnion(BackupPolicyDeletion.runNamespaces(policy, settings: settings))
    w.children = try await ownedChildren(policy, kinds: ownedKinds, namespaces: namespaces.sorted())
    w.children += try await ownedChildren(policy, kinds: [ChildResources.jobs], namespaces: namespaces.sorted())
    if pending, w.deletionRun == nil {
      do {
        w.secrets = .success(try await readSecrets(policy))
      } catch let e as KubeError where e.isRetryable {
        // The apiserver unreachable, 429 or 5xx: the reconcile is retried, and the moment's failure is never taken
        // as a reason to keep the backups the spec asks to delete (BackupsNotDeleted is recorded once, for good).
        throw e
      } catch {
        w.secrets = .failure(DeletionReadError(error))
      }
    }
    w.othersRemain = store.list().contains { $0.metadata.uid != policy.metadata.uid && !$0.metadata.isDeleting }
    return w
  }

  /// Emits the deletion's Event and records it in status, so that a repeated cleanup does not run it again.
  func recordDeletion(_ policy: BackupPolicy, _ e: PlannedEvent) async throws {
    var status = policy.status ?? BackupPolicyStatus()
    var conditions = status.conditions ?? []
    conditions.setCondition(
      type: BackupPolicyDeletion.condition, status: e.reason == "BackupsDeleted" ? .true : .false, reason: e.reason,
      message: e.message, observedGeneration: policy.metadata.generation, now: now())
    status.conditions = conditions
    try await writeStatus(policy, status)
    recorder?.record(policy, type: e.warning ? .warning : .normal, reason: e.reason, message: e.message)
  }
}
