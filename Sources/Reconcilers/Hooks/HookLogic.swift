import DRAPI
import EngineContract
import Foundation
import KubeCore

/// The names and values hooked backups carry (spec.hooks).
public enum HookKeys {
  /// The backup Pod's annotation the gate waits on: unset (pre hooks not started), running, done or failed.
  public static let pre = "dr.botrt.io/pre-hooks"
  /// The backup Pod's annotation with why the gate failed (its termination message).
  public static let preMessage = "dr.botrt.io/pre-hooks-message"
  /// The backup Job's annotation of its post hooks: running, done or failed (they run exactly once).
  public static let post = "dr.botrt.io/post-hooks"
  /// The backup Job's record of its hooks: a `HookRunStatus` as JSON (status.lastHooks is read from it).
  public static let record = "dr.botrt.io/hooks"
  /// The backup Job's annotation, set when exec or the Pod patch was refused: the message of HooksPermitted=False.
  public static let forbidden = "dr.botrt.io/hooks-forbidden"
  /// When the hook runner last wrote the Job's record (RFC 3339 with fractional seconds): which of two runs started
  /// in the same second ran its hooks last.
  public static let recordTime = "dr.botrt.io/hooks-time"
  /// The gate init container.
  public static let gateContainer = "hooks-gate"
  /// The downward API volume with the Pod's annotations.
  public static let gateVolume = "botrt-gate"
  /// Where the gate reads them.
  public static let gateDirectory = "/etc/botrt-gate"
  public static let gateFile = gateDirectory + "/annotations"
  /// The ClusterRole a namespace admin binds to opt in to hooks.
  public static let executorClusterRole = "botrt-hook-executor"
  /// The most results kept in the record (the annotation stays small).
  public static let maxResults = 32
  /// The stderr bytes kept per result.
  public static let stderrTailBytes = 256
  /// The gate's margin over the pre hooks' timeouts: the kubelet's report of the waiting gate, the controller's
  /// watch and the kubelet's refresh of the downward API file.
  public static let gateMarginSeconds: Int64 = 300

  /// The gate's timeout for `hooks`: the pre hooks' timeouts summed plus the margin (hooks run in their pods at
  /// once, so the number of pods does not add up).
  public static func gateTimeoutSeconds(_ hooks: BackupHooks) -> Int64 {
    let sum = (hooks.pre ?? []).reduce(Int64(0)) { $0 + Int64($1.effectiveTimeoutSeconds) }
    return min(EngineGate.maxTimeoutSeconds, sum + gateMarginSeconds)
  }

  /// The RoleBinding a namespace admin creates to let the controller run hooks in `namespace` (docs/security-model.md).
  public static func roleBindingHint(namespace: String, serviceAccount: String, controllerNamespace: String) -> String {
    "create a RoleBinding in namespace \(namespace) binding ClusterRole \(executorClusterRole) to ServiceAccount "
      + "\(controllerNamespace)/\(serviceAccount) (kubectl -n \(namespace) create rolebinding botrt-hooks "
      + "--clusterrole=\(executorClusterRole) --serviceaccount=\(controllerNamespace):\(serviceAccount))"
  }
}

/// One hook command's outcome in one pod, as a `PodExecutor` reports it.
public enum HookExecOutcome: Sendable, Hashable {
  /// The command ran and exited; the end of its standard error.
  case exited(code: Int32, stderr: [UInt8])
  /// It did not end within its timeout.
  case timedOut(stderr: [UInt8])
  /// exec was refused (403): the opt-in RoleBinding is missing.
  case forbidden(String)
  /// exec could not start or broke off (no such container, the pod went away, the apiserver failed).
  case failed(String)
}

/// Runs a command in a container of a pod (`pods/exec`). The real one is the client's exec; tests pass their own.
public protocol PodExecutor: Sendable {
  func exec(namespace: String, pod: String, container: String, command: [String], timeoutSeconds: Int32) async
    -> HookExecOutcome
}

/// What the hook runner sees of a backup Job and its Pods.
public struct HookJobView: Sendable, Hashable {
  public struct PodView: Sendable, Hashable {
    public var name: String
    public var uid: String
    /// The gate annotation (`HookKeys.pre`).
    public var pre: String?
    /// The gate init container is running (waiting for the annotation).
    public var gateWaiting: Bool
    /// The Pod has the gate (made from a hooked template).
    public var hasGate: Bool

    public init(name: String, uid: String, pre: String?, gateWaiting: Bool, hasGate: Bool = true) {
      self.name = name
      self.uid = uid
      self.pre = pre
      self.gateWaiting = gateWaiting
      self.hasGate = hasGate
    }
  }

  public var name: String
  public var uid: String
  /// The Job's template has the gate: a hooked run.
  public var hooked: Bool
  /// Complete or Failed.
  public var finished: Bool
  /// `HookKeys.post`.
  public var post: String?
  public var pods: [PodView]

  public init(name: String, uid: String, hooked: Bool, finished: Bool, post: String?, pods: [PodView]) {
    self.name = name
    self.uid = uid
    self.hooked = hooked
    self.finished = finished
    self.post = post
    self.pods = pods
  }

  /// The view of a Job and its Pods as the API returns them.
  public static func observe(job: JSONValue, pods: [JSONValue]) -> HookJobView {
    func hasGate(_ spec: JSONValue?) -> Bool {
      (spec?["initContainers"]?.arrayValue ?? []).contains { $0["name"]?.stringValue == HookKeys.gateContainer }
    }
    let conditions = job[path: "status", "conditions"]?.arrayValue ?? []
    let finished = conditions.contains {
      ($0["type"]?.stringValue == "Complete" || $0["type"]?.stringValue == "Failed")
        && $0["status"]?.stringValue == "True"
    }
    let views = pods.map { p -> PodView in
      let waiting = (p[path: "status", "initContainerStatuses"]?.arrayValue ?? []).contains {
        $0["name"]?.stringValue == HookKeys.gateContainer && $0[path: "state", "running"] != nil
      }
      return PodView(
        name: p[path: "metadata", "name"]?.stringValue ?? "", uid: p[path: "metadata", "uid"]?.stringValue ?? "",
        pre: p[path: "metadata", "annotations", HookKeys.pre]?.stringValue, gateWaiting: waiting,
        hasGate: hasGate(p["spec"]))
    }.sorted { $0.name < $1.name }
    return HookJobView(
      name: job[path: "metadata", "name"]?.stringValue ?? "", uid: job[path: "metadata", "uid"]?.stringValue ?? "",
      hooked: hasGate(job[path: "spec", "template", "spec"]), finished: finished,
      post: job[path: "metadata", "annotations", HookKeys.post]?.stringValue, pods: views)
  }
}

/// The final mark of a list of hooks: the annotation's value, the gate's message, and the Job's record.
public struct HookMark: Sendable, Hashable {
  /// done or failed.
  public var value: String
  /// Why the gate failed (pre hooks).
  public var message: String?
  /// The Job's record of its hooks.
  public var record: HookRunStatus
  /// Further Job annotations (`HookKeys.forbidden`).
  public var extra: [String: String]

  public init(value: String, message: String? = nil, record: HookRunStatus, extra: [String: String] = [:]) {
    self.value = value
    self.message = message
    self.record = record
    self.extra = extra
  }
}

/// What this controller process did already (a cache may lag its own writes by a watch event, and a write may fail
/// and be retried).
public struct HookMemory: Sendable, Hashable {
  /// Pods (uid) whose pre hooks this process started or marked.
  public var preHandled: Set<String> = []
  /// Pods (uid) whose pre hooks ended here, with the mark still to be written (or written: writing it again is
  /// harmless).
  public var preFinal: [String: HookMark] = [:]
  /// Jobs (uid) whose post hooks this process started or marked.
  public var postHandled: Set<String> = []
  public var postFinal: [String: HookMark] = [:]

  public init() {}
}

/// One step of the hook state machine.
public enum HookStep: Sendable, Hashable {
  /// Mark the Pod running, run the pre hooks, mark it done or failed.
  case runPre(pod: String, uid: String)
  /// The pre hooks ended in this process but the Pod still shows running: write the mark (again).
  case markPre(pod: String, uid: String, HookMark)
  /// The Pod was found running, not by this process: a controller restarted during its pre hooks. Mark it failed
  /// (the hooks are not run twice); the post hooks run when the Job ends.
  case failInterruptedPre(pod: String, uid: String)
  /// Mark the Job's post hooks running, run them, mark them done or failed.
  case runPost
  /// The post hooks ended in this process but the Job still shows running: write the mark (again).
  case markPost(HookMark)
  /// The Job's post hooks were found running, not by this process: mark them failed, not run twice.
  case failInterruptedPost
}

/// The pure decisions of the hook runner.
public enum HookLogic {
  /// The message of a gate failed by a restart.
  public static let restartedDuringPre = "the controller restarted during the pre hooks"
  public static let restartedDuringPost = "the controller restarted during the post hooks"

  /// The steps for a Job, given what this process did already. `hasPost`: the policy has post hooks.
  public static func steps(_ job: HookJobView, memory: HookMemory, hasPost: Bool) -> [HookStep] {
    guard job.hooked else { return [] }
    var out: [HookStep] = []
    for pod in job.pods where pod.hasGate {
      switch pod.pre {
      case nil where pod.gateWaiting && !job.finished && !memory.preHandled.contains(pod.uid):
        out.append(.runPre(pod: pod.name, uid: pod.uid))
      case EngineGate.running?:
        if let mark = memory.preFinal[pod.uid] {
          out.append(.markPre(pod: pod.name, uid: pod.uid, mark))
        } else if !memory.preHandled.contains(pod.uid) {
          out.append(.failInterruptedPre(pod: pod.name, uid: pod.uid))
        }
      default: break
      }
    }
    if job.finished, hasPost {
      switch job.post {
      case nil where !memory.postHandled.contains(job.uid): out.append(.runPost)
      case EngineGate.running?:
        if let mark = memory.postFinal[job.uid] {
          out.append(.markPost(mark))
        } else if !memory.postHandled.contains(job.uid) {
          out.append(.failInterruptedPost)
        }
      default: break
      }
    }
    return out
  }

  /// A pod a hook may run in: its name, labels, phase and first container.
  public struct Target: Sendable, Hashable {
    public var name: String
    public var labels: [String: String]
    public var running: Bool
    public var containers: [String]

    public init(name: String, labels: [String: String], running: Bool, containers: [String]) {
      self.name = name
      self.labels = labels
      self.running = running
      self.containers = containers
    }

    public static func observe(_ pod: JSONValue) -> Target {
      Target(
        name: pod[path: "metadata", "name"]?.stringValue ?? "",
        labels: (pod[path: "metadata", "labels"]?.objectValue ?? [:]).compactMapValues(\.stringValue),
        running: pod[path: "status", "phase"]?.stringValue == "Running"
          && pod[path: "metadata", "deletionTimestamp"] == nil,
        containers: (pod[path: "spec", "containers"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue })
    }
  }

  /// The pods `hook` runs in: Running pods with all its labels, in name order, at most `BackupHooks.maxPods`; and
  /// how many more matched.
  public static func select(_ hook: BackupHook, among pods: [Target]) -> (pods: [Target], leftOut: Int) {
    let matching = pods.filter { p in
      p.running && hook.podSelector.matchLabels.allSatisfy { p.labels[$0.key] == $0.value }
    }.sorted { $0.name < $1.name }
    return (Array(matching.prefix(BackupHooks.maxPods)), max(0, matching.count - BackupHooks.maxPods))
  }

  /// The end of a stderr as text: its last `HookKeys.stderrTailBytes` bytes, decoded leniently, trimmed.
  public static func tail(_ bytes: [UInt8]) -> String {
    let t = String(decoding: bytes.suffix(HookKeys.stderrTailBytes), as: UTF8.self)
    return t.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  /// The result of one hook in one pod.
  public static func result(
    _ hook: BackupHook, phase: String, pod: String, outcome: HookExecOutcome, now: Date
  ) -> HookResultStatus {
    func joined(_ a: String, _ b: String) -> String { b.isEmpty ? a : "\(a): \(b)" }
    switch outcome {
    case .exited(let code, let err):
      return HookResultStatus(
        name: hook.name, phase: phase, pod: pod, result: code == 0 ? "Succeeded" : "Failed", exitCode: code,
        message: code == 0 ? (tail(err).isEmpty ? nil : tail(err)) : joined("exited with \(code)", tail(err)),
        time: now)
    case .timedOut(let err):
      return HookResultStatus(
        name: hook.name, phase: phase, pod: pod, result: "TimedOut",
        message: joined("did not end within \(hook.effectiveTimeoutSeconds)s", tail(err)), time: now)
    case .forbidden(let m), .failed(let m):
      return HookResultStatus(
        name: hook.name, phase: phase, pod: pod, result: "Failed", message: String(m.prefix(512)), time: now)
    }
  }

  /// What running a list of hooks came to.
  public struct ListOutcome: Sendable, Hashable {
    /// The results in order.
    public var results: [HookResultStatus] = []
    /// An Abort hook failed (or exec was refused): pre hooks fail the gate; post hooks are Failed.
    public var aborted = false
    /// Why, for the gate's message and the Event.
    public var failure: String? = nil
    /// exec was refused (403): the message of HooksPermitted=False.
    public var forbidden: String? = nil
    /// Hooks that failed but went on (Continue).
    public var continuedFailures: [String] = []
  }

  /// Folds one hook's results into the list's outcome; returns whether the list goes on.
  public static func fold(
    _ hook: BackupHook, isPre: Bool, results: [HookResultStatus], outcomes: [HookExecOutcome],
    into o: inout ListOutcome
  ) -> Bool {
    o.results += results
    for case .forbidden(let m) in outcomes {
      o.forbidden = m
      o.aborted = true
      o.failure = "hook \(hook.name): \(m)"
      return false
    }
    let failed = results.filter { $0.result == "Failed" || $0.result == "TimedOut" }
    guard let first = failed.first else { return true }
    let onError = hook.onError ?? (isPre ? .abort : .continue)
    let what =
      "hook \(hook.name) \(first.result == "TimedOut" ? "timed out" : "failed") in pod \(first.pod ?? "?")"
      + (first.message.map { " (\($0))" } ?? "")
    if onError == .abort {
      o.aborted = true
      o.failure = what
      return false
    }
    o.continuedFailures.append(what)
    return true
  }

  /// The record kept on the Job: results capped at `HookKeys.maxResults` (the newest kept).
  public static func capped(_ r: HookRunStatus) -> HookRunStatus {
    var r = r
    if let res = r.results, res.count > HookKeys.maxResults { r.results = Array(res.suffix(HookKeys.maxResults)) }
    return r
  }

  /// The Job's hook record, from its annotation.
  public static func record(_ annotations: [String: String]) -> HookRunStatus? {
    guard let text = annotations[HookKeys.record] else { return nil }
    return try? KubeJSON.decoder().decode(HookRunStatus.self, from: Data(text.utf8))
  }

  /// status.lastHooks and the HooksPermitted condition from the runs: the newest run (by start time, else name)
  /// that has a record. nil condition: leave it out (no hooks in the spec).
  public static func lastHooks(
    runs: [(name: String, start: Date?, annotations: [String: String])], hooked: Bool, previous: HookRunStatus?
  ) -> (status: HookRunStatus?, permitted: (ConditionStatus, String, String)?) {
    let withRecord = runs.filter { $0.annotations[HookKeys.record] != nil || $0.annotations[HookKeys.forbidden] != nil }
    // A Job the job controller has not started yet is the newest of all. Start times have whole seconds: of two runs
    // started in the same second, the one whose record was written last (names are hashes, in no order).
    func written(_ a: [String: String]) -> Date { a[HookKeys.recordTime].flatMap(parseRecordTime) ?? .distantPast }
    let newest = withRecord.max {
      ($0.start ?? .distantFuture, written($0.annotations), $0.name)
        < ($1.start ?? .distantFuture, written($1.annotations), $1.name)
    }
    let status = newest.flatMap { record($0.annotations) } ?? previous
    guard hooked else { return (status, nil) }
    if let n = newest, let m = n.annotations[HookKeys.forbidden] {
      return (status, (.false, "HooksForbidden", m))
    }
    if newest != nil {
      return (status, (.true, "HooksRan", "the controller ran the hooks of Job \(newest!.name)"))
    }
    return (status, (.unknown, "NoHookedRunYet", "no backup with hooks ran yet"))
  }

  /// `HookKeys.recordTime`'s format.
  public static func formatRecordTime(_ d: Date) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.string(from: d)
  }

  static func parseRecordTime(_ s: String) -> Date? {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.date(from: s)
  }
}
