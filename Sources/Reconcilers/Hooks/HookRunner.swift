import DRAPI
import EngineContract
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Synchronization

/// Runs the hooks of hooked backup Jobs (spec.hooks): a controller keyed by the controller's own Jobs, woken by
/// their Pods. A key is never reconciled twice at once, so one Job's hooks never run twice at once.
///
/// Pre hooks: a Pod of the Job whose gate waits and whose `dr.botrt.io/pre-hooks` annotation is unset is first
/// marked `running` (a conditional patch, on the resourceVersion seen), then the hooks run in order, then it is
/// marked `done` or `failed`. A Pod found `running` that this process did not mark is one a previous controller
/// process was running hooks for: it is marked `failed` (hooks are never run twice). Post hooks: once the Job is
/// Complete or Failed, the same with the Job's `dr.botrt.io/post-hooks` annotation. Each step records the hooks'
/// results on the Job (`dr.botrt.io/hooks`), which the policy's reconcile reads into status.lastHooks.
public final class HookRunner: Sendable {
  let client: KubeClient
  let executor: any PodExecutor
  let policies: Store<BackupPolicy>
  let recorder: EventRecorder?
  let logger: Logger
  let now: @Sendable () -> Date
  /// Where the hint of HooksPermitted names the controller's ServiceAccount.
  let serviceAccount: (namespace: String, name: String)
  let memory = Mutex(HookMemory())
  /// `botrt_hook_runs_total{namespace,policy,phase,result}`: each hook's result in each pod (Succeeded, Failed,
  /// TimedOut, Skipped).
  let hookRuns: Counter?
  /// `botrt_hook_phase_duration_seconds{namespace,policy,phase}`: how long a run's pre (the application frozen
  /// before the backup reads) or post hooks took.
  let phaseDuration: Histogram?

  public init(
    client: KubeClient, executor: any PodExecutor, policies: Store<BackupPolicy>, recorder: EventRecorder?,
    logger: Logger, now: @escaping @Sendable () -> Date = { Date() },
    serviceAccount: (namespace: String, name: String) = ("botrt-system", "botrt-controller"),
    metrics: MetricsRegistry? = nil
  ) {
    hookRuns = metrics?.counter(
      "botrt_hook_runs_total", help: "Hook commands run in the application's pods (spec.hooks), by result.",
      labels: ["namespace", "policy", "phase", "result"])
    phaseDuration = metrics?.histogram(
      "botrt_hook_phase_duration_seconds", help: "How long a backup run's pre or post hooks took (spec.hooks).",
      labels: ["namespace", "policy", "phase"], buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600])
    self.client = client
    self.executor = executor
    self.policies = policies
    self.recorder = recorder
    self.logger = logger
    self.now = now
    self.serviceAccount = serviceAccount
  }

  /// The Job a Pod of the controller's belongs to (its controlling owner, else the job-name label).
  public static func jobKey(ofPod pod: Unstructured) -> [ObjectKey] {
    let ns = pod.body[path: "metadata", "namespace"]?.stringValue
    for o in pod.body[path: "metadata", "ownerReferences"]?.arrayValue ?? []
    where o["kind"]?.stringValue == "Job" {
      if let name = o["name"]?.stringValue { return [ObjectKey(namespace: ns, name: name)] }
    }
    if let name = pod.body[path: "metadata", "labels", "job-name"]?.stringValue {
      return [ObjectKey(namespace: ns, name: name)]
    }
    return []
  }

  /// The controller of hooked Jobs: the managed Jobs informer as primary, the managed Pods mapped to their Job.
  public func controller(informers: InformerRegistry, workers: Int, logger: Logger, metrics: MetricsRegistry?)
    -> Controller<Unstructured>
  {
    let c = Controller<Unstructured>(
      name: "hooks", informer: informers.managed(ChildResources.jobs), options: ControllerOptions(workers: workers),
      logger: logger, metrics: metrics, reconcile: reconcile)
    c.watches(informers.managed(ChildResources.pods), mapper: Self.jobKey(ofPod:))
    return c
  }

  /// The policy a Job belongs to, when it is a backup run (component backup or on-demand).
  func policy(of job: JSONValue) -> BackupPolicy? {
    Self.policyKey(ofJob: job).flatMap { policies.get($0) }
  }

  /// The policy a backup Job names in its labels, only when the Job is in that policy's namespace: hooks are for
  /// `pvc` and `claims` sources, whose backup Jobs run in the policy's own namespace. Labels are anyone's to write:
  /// a Job of another namespace that names a policy (a tenant's, labelled as another namespace's hooked policy) is
  /// not that policy's run, and its hooks are not run for it.
  public static func policyKey(ofJob job: JSONValue) -> ObjectKey? {
    let labels = job[path: "metadata", "labels"]
    guard let component = labels?[ChildLabels.component]?.stringValue, ["backup", "on-demand"].contains(component),
      let ns = labels?[ChildLabels.policyNamespace]?.stringValue,
      let name = labels?[ChildLabels.policyName]?.stringValue,
      job[path: "metadata", "namespace"]?.stringValue == ns
    else { return nil }
    return ObjectKey(namespace: ns, name: name)
  }

  public func reconcile(_ key: ObjectKey, _ store: Store<Unstructured>) async throws -> ReconcileResult {
    guard let job = store.get(key)?.body else { return .awaitChange }
    // Not a hooked run: nothing to read.
    let template = job[path: "spec", "template", "spec", "initContainers"]?.arrayValue ?? []
    guard template.contains(where: { $0["name"]?.stringValue == HookKeys.gateContainer }) else { return .awaitChange }
    guard policies.isReady else { return .requeueAfter(.seconds(2)) }
    guard policy(of: job) != nil else { return .awaitChange }
    let ns = key.namespace ?? "default"
    let pods = try await client.list(
      ChildResources.pods, namespace: ns, options: ListOptions(labelSelector: "job-name=\(key.name)"),
      as: JSONValue.self
    ).items
    let view = HookJobView.observe(job: job, pods: pods)
    // Until the policies are listed, a Job's policy may seem absent (looked at again shortly, above); a policy this
    // controller does not watch (another namespace) or one that is gone: not this runner's.
    guard let policy = policy(of: job) else { return .awaitChange }
    let hooks = policy.spec.hooks ?? BackupHooks()
    let steps = HookLogic.steps(view, memory: memory.withLock { $0 }, hasPost: !(hooks.post ?? []).isEmpty)
    for step in steps {
      switch step {
      case .runPre(let name, let uid):
        guard let pod = pods.first(where: { $0[path: "metadata", "uid"]?.stringValue == uid }) else { continue }
        try await runPre(job: job, pod: pod, name: name, uid: uid, policy: policy, hooks: hooks.pre ?? [])
      case .markPre(let name, _, let mark):
        try await writePre(ns, job: key.name, pod: name, mark)
      case .failInterruptedPre(let name, let uid):
        let mark = HookMark(
          value: EngineGate.failed, message: HookLogic.restartedDuringPre, record: record(job) { $0.pre = "Failed" })
        memory.withLock {
          _ = $0.preHandled.insert(uid)
          $0.preFinal[uid] = mark
        }
        try await writePre(ns, job: key.name, pod: name, mark)
        event(policy, warning: true, "HookFailed", "Job \(key.name): \(HookLogic.restartedDuringPre)")
      case .runPost:
        try await runPost(job: job, uid: view.uid, policy: policy, hooks: hooks.post ?? [])
      case .markPost(let mark):
        try await patchJob(ns, key.name, mark.record, extra: mark.extra.merging([HookKeys.post: mark.value]) { $1 })
      case .failInterruptedPost:
        let mark = HookMark(value: EngineGate.failed, record: record(job) { $0.post = "Failed" })
        memory.withLock {
          _ = $0.postHandled.insert(view.uid)
          $0.postFinal[view.uid] = mark
        }
        try await patchJob(ns, key.name, mark.record, extra: [HookKeys.post: mark.value])
        event(policy, warning: true, "HookFailed", "Job \(key.name): \(HookLogic.restartedDuringPost)")
      }
    }
    return .awaitChange
  }

  /// The Job's record, changed by `change` (a new one when it has none).
  func record(_ job: JSONValue, _ change: (inout HookRunStatus) -> Void) -> HookRunStatus {
    let annotations = (job[path: "metadata", "annotations"]?.objectValue ?? [:]).compactMapValues(\.stringValue)
    var r = HookLogic.record(annotations) ?? HookRunStatus(job: job[path: "metadata", "name"]?.stringValue ?? "")
    change(&r)
    return HookLogic.capped(r)
  }

  /// Writes a pre mark: the Job's record first, then the Pod's gate annotation (a Pod gone is left alone).
  func writePre(_ ns: String, job: String, pod: String, _ mark: HookMark) async throws {
    try await patchJob(ns, job, mark.record, extra: mark.extra)
    do {
      try await markPod(ns, pod, rv: nil, mark.value, message: mark.message)
    } catch let e as KubeError where e.isNotFound {
      return
    }
  }

  func runPre(
    job: JSONValue, pod: JSONValue, name: String, uid: String, policy: BackupPolicy, hooks: [BackupHook]
  ) async throws {
    let ns = pod[path: "metadata", "namespace"]?.stringValue ?? "default"
    let jobName = job[path: "metadata", "name"]?.stringValue ?? ""
    // Claim the Pod first, conditionally on the version seen: a stale cache or a second controller gets a conflict
    // instead of running the hooks again.
    do {
      try await markPod(ns, name, rv: pod[path: "metadata", "resourceVersion"]?.stringValue, EngineGate.running)
    } catch let e as KubeError where e.isConflict || e.isNotFound {
      return
    } catch let e as KubeError where e.isForbidden {
      // Not even the Pod may be patched: the gate cannot be told, and times out on its own (the backup never runs
      // unfrozen). The Job records why.
      memory.withLock { _ = $0.preHandled.insert(uid) }
      let m = forbiddenMessage(ns, "the patch of backup Pod \(name) was refused: \(e)")
      try await patchJob(ns, jobName, record(job) { $0.pre = "Failed" }, extra: [HookKeys.forbidden: m])
      event(policy, warning: true, "HookFailed", m)
      return
    }
    memory.withLock { _ = $0.preHandled.insert(uid) }
    let started = ContinuousClock.now
    let outcome = await run(hooks, isPre: true, namespace: ns)
    let seconds = Self.seconds(ContinuousClock.now - started)
    var extra: [String: String] = [:]
    if let f = outcome.forbidden { extra[HookKeys.forbidden] = forbiddenMessage(ns, "exec was refused: \(f)") }
    let mark = HookMark(
      value: outcome.aborted ? EngineGate.failed : EngineGate.done, message: outcome.failure,
      record: record(job) {
        $0.pre = outcome.aborted ? "Failed" : "Done"
        $0.results = ($0.results ?? []).filter { $0.phase != "Pre" } + outcome.results
      }, extra: extra)
    memory.withLock { $0.preFinal[uid] = mark }
    // The Events first: a failed write of the mark is retried from memory (markPre), which reports nothing.
    report(policy, job: jobName, phase: "pre", outcome, seconds: seconds)
    try await writePre(ns, job: jobName, pod: name, mark)
  }

  func runPost(job: JSONValue, uid: String, policy: BackupPolicy, hooks: [BackupHook]) async throws {
    let ns = job[path: "metadata", "namespace"]?.stringValue ?? "default"
    let jobName = job[path: "metadata", "name"]?.stringValue ?? ""
    do {
      _ = try await client.patch(
        ChildResources.jobs, namespace: ns, name: jobName,
        .merge([
          "metadata": [
            "resourceVersion": job[path: "metadata", "resourceVersion"] ?? .null,
            "annotations": .object([HookKeys.post: .string(EngineGate.running)]),
          ]
        ]), options: WriteOptions(fieldManager: ChildLabels.controllerName), as: JSONValue.self)
    } catch let e as KubeError where e.isConflict || e.isNotFound {
      return
    }
    memory.withLock { _ = $0.postHandled.insert(uid) }
    let started = ContinuousClock.now
    let outcome = await run(hooks, isPre: false, namespace: ns)
    let seconds = Self.seconds(ContinuousClock.now - started)
    var extra: [String: String] = [:]
    if let f = outcome.forbidden { extra[HookKeys.forbidden] = forbiddenMessage(ns, "exec was refused: \(f)") }
    let mark = HookMark(
      value: outcome.aborted ? EngineGate.failed : EngineGate.done,
      record: record(job) {
        $0.post = outcome.aborted ? "Failed" : "Done"
        $0.results = ($0.results ?? []).filter { $0.phase != "Post" } + outcome.results
      }, extra: extra)
    memory.withLock { $0.postFinal[uid] = mark }
    report(policy, job: jobName, phase: "post", outcome, seconds: seconds)
    try await patchJob(ns, jobName, mark.record, extra: extra.merging([HookKeys.post: mark.value]) { $1 })
  }

  static func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
  }

  /// Runs `hooks` in order, each in its pods at once; stops at an Abort hook's failure or a refused exec.
  func run(_ hooks: [BackupHook], isPre: Bool, namespace: String) async -> HookLogic.ListOutcome {
    var o = HookLogic.ListOutcome()
    let phase = isPre ? "Pre" : "Post"
    for hook in hooks {
      let targets: [HookLogic.Target]
      do {
        let selector = hook.podSelector.matchLabels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
          .joined(separator: ",")
        targets = try await client.list(
          ChildResources.pods, namespace: namespace, options: ListOptions(labelSelector: selector), as: JSONValue.self
        ).items.map(HookLogic.Target.observe)
      } catch {
        let r = HookResultStatus(
          name: hook.name, phase: phase, result: "Failed", message: "cannot list its pods: \(error)", time: now())
        _ = HookLogic.fold(hook, isPre: isPre, results: [r], outcomes: [.failed("\(error)")], into: &o)
        if o.aborted { return o }
        continue
      }
      let (pods, leftOut) = HookLogic.select(hook, among: targets)
      if pods.isEmpty {
        o.results.append(
          HookResultStatus(
            name: hook.name, phase: phase, result: "Skipped",
            message: "no Running pod in \(namespace) matches its podSelector", time: now()))
        continue
      }
      if leftOut > 0 {
        logger.warning(
          "a hook matches more pods than it runs in",
          metadata: ["hook": "\(hook.name)", "namespace": "\(namespace)", "leftOut": "\(leftOut)"])
      }
      let executor = self.executor
      let outcomes = await withTaskGroup(of: (Int, HookExecOutcome).self) { group in
        for (i, p) in pods.enumerated() {
          let container = hook.container ?? p.containers.first ?? ""
          group.addTask {
            (
              i,
              await executor.exec(
                namespace: namespace, pod: p.name, container: container, command: hook.command,
                timeoutSeconds: hook.effectiveTimeoutSeconds)
            )
          }
        }
        var out: [(Int, HookExecOutcome)] = []
        for await r in group { out.append(r) }
        return out.sorted { $0.0 < $1.0 }.map(\.1)
      }
      var results = zip(pods, outcomes).map {
        HookLogic.result(hook, phase: phase, pod: $0.0.name, outcome: $0.1, now: now())
      }
      if leftOut > 0, !results.isEmpty {
        let m = "\(leftOut) more matching pods left out (at most \(BackupHooks.maxPods))"
        results[results.count - 1].message = results[results.count - 1].message.map { "\($0); \(m)" } ?? m
      }
      if !HookLogic.fold(hook, isPre: isPre, results: results, outcomes: outcomes, into: &o) { return o }
    }
    return o
  }

  /// HooksPermitted=False's message: what was refused, and the RoleBinding to create.
  func forbiddenMessage(_ ns: String, _ what: String) -> String {
    "the controller may not run hooks in namespace \(ns) (\(what.prefix(300))); "
      + HookKeys.roleBindingHint(
        namespace: ns, serviceAccount: serviceAccount.name, controllerNamespace: serviceAccount.namespace)
  }

  /// Sets the gate annotation (and its message); with `rv`, only on that version of the Pod.
  func markPod(_ ns: String, _ name: String, rv: String?, _ value: String, message: String? = nil) async throws {
    var annotations: [String: JSONValue] = [HookKeys.pre: .string(value)]
    if let message { annotations[HookKeys.preMessage] = .string(String(message.prefix(1024))) }
    var meta: [String: JSONValue] = ["annotations": .object(annotations)]
    if let rv { meta["resourceVersion"] = .string(rv) }
    _ = try await client.patch(
      ChildResources.pods, namespace: ns, name: name, .merge(["metadata": .object(meta)]),
      options: WriteOptions(fieldManager: ChildLabels.controllerName), as: JSONValue.self)
  }

  /// Writes the Job's hook record and `extra` annotations.
  func patchJob(_ ns: String, _ name: String, _ record: HookRunStatus, extra: [String: String]) async throws {
    let text = String(decoding: try KubeJSON.encoder().encode(record), as: UTF8.self)
    var annotations: [String: JSONValue] = [
      HookKeys.record: .string(text), HookKeys.recordTime: .string(HookLogic.formatRecordTime(now())),
    ]
    for (k, v) in extra { annotations[k] = .string(v) }
    _ = try await client.patch(
      ChildResources.jobs, namespace: ns, name: name, .merge(["metadata": ["annotations": .object(annotations)]]),
      options: WriteOptions(fieldManager: ChildLabels.controllerName), as: JSONValue.self)
  }

  func event(_ policy: BackupPolicy, warning: Bool, _ reason: String, _ message: String) {
    recorder?.record(policy, type: warning ? .warning : .normal, reason: reason, message: message)
  }

  /// Events of one list of hooks: HookFailed for each failure, HooksRan when they ran; and the metrics.
  func report(_ policy: BackupPolicy, job: String, phase: String, _ o: HookLogic.ListOutcome, seconds: Double) {
    let ns = policy.metadata.namespace ?? "default"
    for r in o.results { hookRuns?.inc([ns, policy.name, phase, r.result]) }
    phaseDuration?.observe(seconds, [ns, policy.name, phase])
    for f in o.continuedFailures { event(policy, warning: true, "HookFailed", "Job \(job), \(phase) \(f); went on") }
    if let f = o.failure {
      event(
        policy, warning: true, "HookFailed",
        "Job \(job), \(phase) \(f)" + (phase == "pre" ? "; the backup does not run" : ""))
      return
    }
    let skipped = o.results.filter { $0.result == "Skipped" }.map(\.name)
    for s in skipped {
      event(policy, warning: true, "HookSkipped", "Job \(job), \(phase) hook \(s): no Running pod matches")
    }
    let ran = o.results.filter { $0.result == "Succeeded" }.count
    event(policy, warning: false, "HooksRan", "Job \(job): \(phase) hooks ran (\(ran) succeeded)")
  }
}
