import Foundation

/// Application-consistent hooks of a claim-source policy (spec.hooks: source.pvc, or source.claims around each claim's
/// backup): commands the controller runs in the
/// application's pods through `pods/exec` before the backup reads the claim (pre) and after its Job ended (post).
public struct BackupHooks: Codable, Sendable, Hashable {
  /// Run in order before the backup container starts; the backup Pod's gate waits for them.
  public var pre: [BackupHook]?
  /// Run in order once the backup Job ended, Complete or Failed.
  public var post: [BackupHook]?

  public init(pre: [BackupHook]? = nil, post: [BackupHook]? = nil) {
    self.pre = pre
    self.post = post
  }

  /// Whether any hook is set (an empty `hooks: {}` is none).
  public var isEmpty: Bool { (pre ?? []).isEmpty && (post ?? []).isEmpty }

  /// The most hooks in each list.
  public static let maxPerList = 8
  /// The most pods one hook runs in; pods beyond it (in name order) are left out and the result says so.
  public static let maxPods = 16
  /// The default timeout of a hook, in seconds.
  public static let defaultTimeoutSeconds: Int32 = 60
}

/// What a failed hook does to the run.
public enum HookOnError: String, Codable, Sendable, Hashable, CaseIterable {
  /// A pre hook: the backup does not run (its gate fails). A post hook: recorded as the run's hook failure.
  case abort = "Abort"
  /// Recorded (Event HookFailed, status.lastHooks) and the run goes on.
  case `continue` = "Continue"
}

/// The pods a hook runs in: every Running pod of the policy's namespace with all of these labels.
public struct HookPodSelector: Codable, Sendable, Hashable {
  public var matchLabels: [String: String]

  public init(matchLabels: [String: String]) { self.matchLabels = matchLabels }
}

/// One hook: a command exec'd directly (not through a shell) in a container of each selected pod.
public struct BackupHook: Codable, Sendable, Hashable {
  /// Unique within its list.
  public var name: String
  public var podSelector: HookPodSelector
  /// The container (default: the pod's first).
  public var container: String?
  /// The command and its arguments.
  public var command: [String]
  /// 1 to 3600 (default 60).
  public var timeoutSeconds: Int32?
  /// Abort or Continue (default: Abort for pre hooks, Continue for post hooks).
  public var onError: HookOnError?

  public init(
    name: String, podSelector: HookPodSelector, container: String? = nil, command: [String],
    timeoutSeconds: Int32? = nil, onError: HookOnError? = nil
  ) {
    self.name = name
    self.podSelector = podSelector
    self.container = container
    self.command = command
    self.timeoutSeconds = timeoutSeconds
    self.onError = onError
  }

  /// The timeout in effect.
  public var effectiveTimeoutSeconds: Int32 { timeoutSeconds ?? BackupHooks.defaultTimeoutSeconds }
}

/// The hooks of one backup run (status.lastHooks): the run's Job, the state of its pre and post hooks and each
/// hook's result.
public struct HookRunStatus: Codable, Sendable, Hashable {
  /// The backup Job.
  public var job: String
  /// The pre hooks: Running, Done or Failed (the backup did not run).
  public var pre: String?
  /// The post hooks: Running, Done or Failed.
  public var post: String?
  /// Each hook's result in each pod, in the order they ran.
  public var results: [HookResultStatus]?

  public init(job: String, pre: String? = nil, post: String? = nil, results: [HookResultStatus]? = nil) {
    self.job = job
    self.pre = pre
    self.post = post
    self.results = results
  }
}

/// One hook's result in one pod.
public struct HookResultStatus: Codable, Sendable, Hashable {
  /// The hook's name.
  public var name: String
  /// Pre or Post.
  public var phase: String
  /// The pod it ran in (unset when Skipped).
  public var pod: String?
  /// Succeeded, Failed, Skipped (no Running pod matched) or TimedOut.
  public var result: String
  /// The command's exit code, when it exited.
  public var exitCode: Int32?
  /// Why it failed or was skipped, with the end of its standard error (at most 256 bytes of it).
  public var message: String?
  /// When it ended.
  public var time: Date?

  public init(
    name: String, phase: String, pod: String? = nil, result: String, exitCode: Int32? = nil, message: String? = nil,
    time: Date? = nil
  ) {
    self.name = name
    self.phase = phase
    self.pod = pod
    self.result = result
    self.exitCode = exitCode
    self.message = message
    self.time = time
  }
}

extension SpecValidation {
  static func isDNSLabel(_ s: String) -> Bool {
    let u = Array(s.utf8)
    guard !u.isEmpty, u.count <= 63 else { return false }
    func ok(_ c: UInt8) -> Bool { (0x61...0x7a).contains(c) || (0x30...0x39).contains(c) }
    return ok(u.first!) && ok(u.last!) && u.allSatisfy { ok($0) || $0 == 0x2d }
  }

  /// spec.hooks: only with a PVC source; names unique DNS labels; a selector with at least one label; a command;
  /// timeouts 1-3600 s; at most 8 hooks per list.
  static func hooks(_ spec: BackupPolicySpec) -> [SpecError] {
    guard let hooks = spec.hooks, !hooks.isEmpty else { return [] }
    var errors: [SpecError] = []
    if spec.source.objects != nil {
      errors.append(
        SpecError(
          field: "spec.hooks",
          message: "hooks run only with a claim source (source.pvc or source.claims), around the read of the "
            + "application's data; an objects source (spec.source.objects) reads no data of the application's "
            + "pods; remove spec.hooks"))
    }
    if spec.source.command != nil {
      errors.append(
        SpecError(
          field: "spec.hooks",
          message: "hooks run only with a claim source (source.pvc or source.claims): a dump command "
            + "(spec.source.command) is itself the consistency point (it reads the application through its own "
            + "protocol, e.g. pg_dump's snapshot), and its Job runs in the backup namespace, away from the "
            + "application's pods; remove spec.hooks or back up the application's claim with source.pvc"))
    }
    for (list, items) in [("pre", hooks.pre ?? []), ("post", hooks.post ?? [])] {
      let f = "spec.hooks.\(list)"
      if items.count > BackupHooks.maxPerList {
        errors.append(
          SpecError(field: f, message: "at most \(BackupHooks.maxPerList) hooks, got \(items.count)"))
      }
      var names = Set<String>()
      for (i, h) in items.enumerated() {
        let hf = "\(f)[\(i)]"
        if !isDNSLabel(h.name) {
          errors.append(
            SpecError(
              field: "\(hf).name",
              message: "'\(h.name.prefix(80))' must be a DNS label (lowercase letters, digits and '-', at most 63)"))
        } else if !names.insert(h.name).inserted {
          errors.append(SpecError(field: "\(hf).name", message: "duplicate hook name '\(h.name)' in \(f)"))
        }
        if h.podSelector.matchLabels.isEmpty {
          errors.append(
            SpecError(
              field: "\(hf).podSelector.matchLabels",
              message: "must name at least one label: an empty selector would run the hook in every pod of the "
                + "namespace"))
        }
        if let c = h.container, !isDNSLabel(c) {
          errors.append(SpecError(field: "\(hf).container", message: "'\(c.prefix(80))' must be a DNS label"))
        }
        if h.command.isEmpty || h.command[0].isEmpty {
          errors.append(
            SpecError(
              field: "\(hf).command",
              message: "must name the program to run (it is exec'd directly, not through a shell: use "
                + "[sh, -c, '...'] for a pipeline)"))
        }
        if let t = h.timeoutSeconds, !(1...3600).contains(t) {
          errors.append(SpecError(field: "\(hf).timeoutSeconds", message: "must be 1-3600, got \(t)"))
        }
      }
    }
    return errors
  }
}
