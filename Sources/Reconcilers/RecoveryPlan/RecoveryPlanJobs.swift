import DRAPI
import EngineContract
import Foundation
import KubeCore

/// A Job and its Pods as observed from the API: state, times, and the terminated containers' results.
public struct JobObservation: Sendable, Hashable {
  /// How the Job stands.
  public enum State: String, Sendable, Hashable {
    case running, succeeded, failed
  }

  /// A terminated container of the Job's newest Pod.
  public struct Terminated: Sendable, Hashable {
    public var exitCode: Int32
    public var reason: String?
    /// The termination message (the engine's JSON result).
    public var message: String?
    public var startedAt: Date?
    public var finishedAt: Date?

    /// The engine result in the message, if it is one.
    public var engineResult: EngineResult? { EngineResult.parse(message) }
  }

  public var name: String
  public var state: State
  public var startTime: Date?
  public var finishTime: Date?
  /// Terminated containers (init and regular) of the newest Pod, by container name.
  public var containers: [String: Terminated]
  /// Why the Job failed (its Failed condition, or the Pod's reason).
  public var failureMessage: String?
  /// The newest Pod that has not ended (Pending while its init containers run, or Running): the one whose log
  /// a running restore's progress is read from.
  public var activePod: String?
  /// The Job's containers in the order they run: its Pod template's init containers, then its containers (the steps
  /// of a sequential Job, `RecoveryJobs.sequentialJob`).
  public var steps: [String] = []

  /// What a running Job is doing: the first of `steps` that has not ended in the newest Pod; nil when the Job is not
  /// running or its steps are not known.
  public var currentStep: String? {
    guard state == .running else { return nil }
    return steps.first { containers[$0] == nil }
  }

  public init(
    name: String, state: State, startTime: Date? = nil, finishTime: Date? = nil, containers: [String: Terminated] = [:],
    failureMessage: String? = nil
  ) {
    self.name = name
    self.state = state
    self.startTime = startTime
    self.finishTime = finishTime
    self.containers = containers
    self.failureMessage = failureMessage
  }

  /// Observes a Job (unstructured, as a cache or a list holds it) and its Pods, from their typed status (`JobStatus`,
  /// `PodStatus`).
  public static func observe(job: JSONValue, pods: [JSONValue]) -> JobObservation {
    let status = JobStatus.of(job)
    var o = JobObservation(
      name: job[path: "metadata", "name"]?.stringValue ?? "", state: .running, startTime: status.startDate)
    o.steps = ["initContainers", "containers"].flatMap {
      (job[path: "spec", "template", "spec", $0]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
    }
    if let c = status.complete {
      o.state = .succeeded
      o.finishTime = status.completionDate ?? c.lastTransitionDate
    } else if let c = status.failedCondition {
      o.state = .failed
      o.finishTime = c.lastTransitionDate
      o.failureMessage = c.summary
    }
    // The newest Pod (by creation time) holds the attempt that decided the Job.
    func created(_ pod: JSONValue) -> Date {
      pod[path: "metadata", "creationTimestamp"]?.stringValue.flatMap(KubeJSON.parseDate) ?? .distantPast
    }
    guard let newest = pods.max(by: { created($0) < created($1) }) else { return o }
    let pod = PodStatus.of(newest)
    if o.state == .running, pod.phase == "Pending" || pod.phase == "Running" {
      o.activePod = newest[path: "metadata", "name"]?.stringValue
    }
    // Init containers first, then the regular ones: a name in both keeps the regular container's state.
    for cs in (pod.initContainerStatuses ?? []) + (pod.containerStatuses ?? []) {
      guard let t = cs.terminated else { continue }
      o.containers[cs.name] = Terminated(
        exitCode: t.exitCode32 ?? -1, reason: t.reason, message: t.message, startedAt: t.startedDate,
        finishedAt: t.finishedDate)
    }
    if o.state == .failed, let reason = pod.reason {
      o.failureMessage = [o.failureMessage, reason + (pod.message.map { ": \($0)" } ?? "")].compactMap { $0 }.joined(
        separator: "; ")
    }
    return o
  }

  /// A one-line summary of why the Job failed, naming the failing container and the engine's first error.
  public var failureSummary: String {
    let failed = containers.sorted { $0.key < $1.key }.first { $0.value.exitCode != 0 }
    if let (name, t) = failed {
      if let r = t.engineResult, let e = r.errors?.first {
        return "container \(name) exited with code \(t.exitCode): \(e)"
      }
      let msg = t.message.map { ": " + String($0.prefix(300)) } ?? ""
      return "container \(name) exited with code \(t.exitCode) (\(t.reason ?? "Error"))\(msg)"
    }
    return failureMessage ?? "the Job failed"
  }
}

/// How status and Events name the snapshots the engine's `latest` passed over (newer ones that did not verify).
public enum SkippedSnapshotsText {
  /// The reason of the Warning Event.
  public static let eventReason = "SnapshotSkipped"

  /// "Skipped snapshot ID (REASON); restored ID, the newest that verifies." Reasons are cut to 200 characters.
  public static func describe(_ skipped: [EngineResult.SkippedSnapshot], chosen: String?) -> String {
    let list = skipped.map { "\($0.id.prefix(12)) (\($0.reason.prefix(200)))" }.joined(separator: ", ")
    let noun = skipped.count == 1 ? "snapshot" : "snapshots"
    return "Skipped \(noun) \(list), which did not verify; "
      + (chosen.map { "used \($0.prefix(12)), the newest snapshot that verifies." } ?? "used an older snapshot.")
  }
}

/// Everything a recovery or drill Job needs from the cluster, read beforehand.
public struct RecoveryJobContext: Sendable {
  /// Controller settings (engine image and path, user).
  public var settings: ControllerSettings
  /// BackupPolicies of the plan's namespace by name.
  public var policies: [String: BackupPolicy]
  /// Namespace the Job runs in.
  public var namespace: String
  /// Labels of the Job and its Pod.
  public var labels: [String: String]
  /// Owner reference (nil when the Job is in another namespace than its owner).
  public var owner: OwnerReference?
  /// Maps a Secret name of the policy's namespace to the name the Job's namespace has (copies for scratch namespaces).
  public var secretName: @Sendable (String) -> String
  /// A snapshot the engine must find in the repository before it restores or verifies (`--require-snapshot`): for
  /// drills of the latest snapshot, the newest one the policy's status records, so a deleted newest snapshot or a
  /// rolled-back repository fails the drill instead of passing on older data.
  public var requireSnapshot: String? = nil
  /// The plan's spec.targetNamespace: the default namespace of a restore step's claim (`RestoreTarget`).
  public var targetNamespace: String? = nil
  /// Seconds a finished Job stays (a Job in another namespace than its owner's, which no owner reference removes).
  public var ttlSecondsAfterFinished: Int64? = nil

  public init(
    settings: ControllerSettings, policies: [String: BackupPolicy], namespace: String, labels: [String: String],
    owner: OwnerReference?, secretName: @escaping @Sendable (String) -> String = { $0 }
  ) {
    self.settings = settings
    self.policies = policies
    self.namespace = namespace
    self.labels = labels
    self.owner = owner
    self.secretName = secretName
  }
}

/// Builders of the Jobs of recovery steps and drills: restore, verify (with an optional database query), custom.
///
/// The engine runs from the engine image (`command: [enginePath]`), and only the engine's containers get the storage
/// and KMS credentials. A restore into a command of another image is two containers: the engine restores the stream
/// into a file on a shared emptyDir (`stagePath`), then the command reads it on its standard input.
public enum RecoveryJobs {
  /// Where a streamed restore is staged for the command that reads it.
  static let stagePath = "/botrt/stage"
  /// Mount path of a restore PVC, and of the drill's restore emptyDir.
  public static let restorePath = "/restore"

  static func policy(_ ref: LocalObjectReference, _ ctx: RecoveryJobContext, field: String) throws(SpecError)
    -> BackupPolicy
  {
    guard let p = ctx.policies[ref.name] else {
      throw SpecError(
        field: field,
        message: "BackupPolicy '\(ref.name)' does not exist in namespace \(ctx.namespace); create it or "
          + "fix the name")
    }
    return p
  }

  /// The engine's snapshot argument and flags for a restore: a snapshot id, "latest", or the newest before a time.
  ///
  /// `beforeTime` becomes `latest --before RFC3339`; this needs an engine whose restore accepts `--before`.
  /// `--require-snapshot ID` when the context requires one.
  public static func snapshotArgument(snapshot: String?, beforeTime: Date?) -> EngineRestoreArguments.Snapshot {
    if let t = beforeTime { return .latestBefore(rfc3339Seconds(t)) }
    guard let id = snapshot, !id.isEmpty, id != "latest" else { return .latest }
    return .id(id)
  }

  /// The engine's snapshot argument and flags for a restore, as the engine reads them.
  public static func snapshotArguments(snapshot: String?, beforeTime: Date?) -> [String] {
    switch snapshotArgument(snapshot: snapshot, beforeTime: beforeTime) {
    case .latest: ["latest"]
    case .id(let id): [id]
    case .latestBefore(let t): ["latest", EngineFlag.long(EngineFlag.before), t]
    }
  }

  static let baseEnv = BackupPolicyChildren.baseEnv
  static let tmpMount = BackupPolicyChildren.tmpMount
  static let tmpVolume = BackupPolicyChildren.tmpVolume
  static let terminationLog = "/dev/termination-log"
  /// The restore's result in a drill's run Pod, on the /tmp emptyDir every container of the Pod mounts: the verify
  /// after it checks the snapshot named there.
  public static let restoreResultShare = "/tmp/botrt-restore-result.json"

  static func env(_ list: [EnvVar]?, _ ctx: RecoveryJobContext) -> [EnvVariable] {
    (list ?? []).map { e in
      if let ref = e.valueFrom?.secretKeyRef { return .secret(e.name, secret: ctx.secretName(ref.name), key: ref.key) }
      return EnvVariable(name: e.name, value: e.value ?? "")
    }
  }

  static func security(_ s: ControllerSettings) -> SecurityContext {
    SecurityContext(
      allowPrivilegeEscalation: false, runAsNonRoot: true, runAsUser: s.runAsUser,
      capabilities: Capabilities(drop: ["ALL"]), seccompProfile: .runtimeDefault)
  }

  /// What a restore into a claim may do as root (`into.pvc.runAsUser: 0`): set the recorded owners (CHOWN), write
  /// into directories of other owners (DAC_OVERRIDE), set modes and times of files it no longer owns (FOWNER) and
  /// keep set-id bits (FSETID). All four are in the Pod Security baseline's allowed list.
  static let ownerRestoreCapabilities = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"]

  /// The restore container's identity on a claim: `into.pvc.runAsUser`/`runAsGroup`, else the engine's user.
  static func restoreSecurity(_ pvc: RestorePVC?, _ s: ControllerSettings) -> SecurityContext {
    guard let pvc, let uid = pvc.runAsUser else { return security(s) }
    return SecurityContext(
      allowPrivilegeEscalation: false, runAsNonRoot: uid != 0, runAsUser: uid, runAsGroup: pvc.runAsGroup ?? uid,
      capabilities: Capabilities(add: uid == 0 ? ownerRestoreCapabilities : nil, drop: ["ALL"]),
      seccompProfile: .runtimeDefault)
  }

  /// The restore container(s) and volumes: into a PVC (or an emptyDir at /restore when `into` is nil), or into a
  /// command of another image (the engine restores the stream to `stagePath`, then container NAME-load runs
  /// `CMD < FILE`; either failing fails the Job).
  /// `replicaField`: the field spec.replica is reported under (default FIELD.replica).
  /// `resultShare`: a file on the Pod's shared /tmp where the engine's restore also writes its result, for a verify
  /// that follows in the same Pod (`EngineVerifyArguments.Which.restoredBy`).
  /// `verifyRestore`: the engine reads the restored files back and checks them against the snapshot (`--verify`).
  static func restoreParts(
    spec: RestoreStepSpec, ctx: RecoveryJobContext, name: String, field: String, replicaField: String? = nil,
    resultShare: String? = nil, verifyRestore: Bool = false
  ) throws(SpecError) -> (
    initContainers: [Container], containers: [Container], volumes: [Volume], keepsClaimGroups: Bool
  ) {
    let p = try policy(spec.policyRef, ctx, field: "\(field).policyRef")
    // The repository opened: the policy's, or one of its replicas' (ReplicaSource); the stream name and the claim
    // layout below stay the policy's.
    var inv = try ReplicaSource.invocation(
      p, replica: spec.replica, field: replicaField ?? "\(field).replica", secretName: ctx.secretName)
    let s = ctx.settings
    // A restore-only policy (a DR cluster's) reads the repository without writing to it: no lock, no audit object.
    inv.common.readOnly = BackupPolicyChildren.isRestoreOnly(p, settings: s)
    let snapshot = try ReplicaSource.snapshot(
      spec.snapshot, policy: p, replica: spec.replica, field: "\(field).snapshot")
    let snap = snapshotArgument(snapshot: snapshot, beforeTime: spec.beforeTime)
    let tags = try claimTags(spec, policy: p, snapshot: snap, field: field)
    func restore(_ output: EngineRestoreArguments.Output, stripComponents: Int = 0) -> [String] {
      var a = EngineRestoreArguments(
        common: inv.common, snapshot: snap, requireSnapshot: ctx.requireSnapshot, output: output,
        stripComponents: stripComponents, tags: tags)
      // Progress lines in the restore container's log, which the controller reads into the step's status.progress
      // (`RecoveryPlanLogic.progressReads`).
      a.common.progress = true
      // As root on a claim (into.pvc.runAsUser: 0) every file's owner, group and mode come back as recorded, set-id
      // bits included (the CRD's promise; FSETID is among the container's capabilities).
      if spec.into.pvc?.runAsUser == 0 { a.keepSetID = true }
      // A claim's files go back without the snapshot's Kubernetes objects (spec.objects), which only an objects
      // restore re-creates (and which must never land in a claim: Secrets are among them).
      if stripComponents > 0 { a.excludePaths = [ObjectsLayout.snapshotEntry] }
      if let share = resultShare { a.resultFiles = [terminationLog, share] }
      a.verify = verifyRestore
      return EngineArguments.restore(a).argv
    }
    var volumes: [Volume] = [tmpVolume] + BackupPolicyChildren.typed(inv.volumes)
    var mounts: [VolumeMount] = [tmpMount] + BackupPolicyChildren.typed(inv.mounts)
    let invEnv: [EnvVariable] = BackupPolicyChildren.typed(inv.env)
    // The rate of the progress lines (`EngineProgress.jobFramesPerSecond`), for the engine's restore container.
    let engineEnv = baseEnv + [BackupPolicyChildren.progressEnv] + invEnv
    // Into a claim, a command, or (none set) an emptyDir.
    let into = try spec.into.atMostOne(at: "\(field).into")
    if p.spec.source.objects != nil, let into, into.name != .objects {
      throw SpecError(
        field: "\(field).into.\(into.name.rawValue)",
        message: "BackupPolicy '\(p.name)' backs up only Kubernetes objects (spec.source.objects), which hold no "
          + "claim's files or dump stream; restore them with into.objects")
    }
    if case .command(let command)? = into {
      guard let words = command.command, !words.isEmpty else {
        throw SpecError(
          field: "\(field).into.command.command",
          message: "the restore command must be given explicitly (e.g. [psql, -d, app]); it reads the stream in a "
            + "shell pipeline, so the image's entrypoint is not used")
      }
      // The stream's name in the snapshot: the restore command's, else the backup's. The CRDs default both to
      // "dump"; a restore left at that default follows a policy that names its stream otherwise.
      let backupStream = p.spec.source.command?.fileName
      var stream = command.fileName ?? backupStream ?? "dump"
      if stream == "dump", let b = backupStream { stream = b }
      // The engine restores the stream into a file on a shared emptyDir; then the command reads it in its own image.
      // Two steps, not a pipe between two containers: recovery and drill Jobs run their containers one after the
      // other (init containers), and the command's image gets no storage or KMS credentials this way.
      let file = "\(stagePath)/\(stream)"
      let engineArgs = restore(.file(path: stream, into: stagePath))
      let all = words + (command.args ?? [])
      let script = [
        "f=\(shellQuote(file))",
        "if [ ! -f \"$f\" ]; then echo \"botrt: the restore left no $f\" >&2; exit 1; fi",
        all.map(shellQuote).joined(separator: " ") + " < \"$f\"",
        "rc=$?",
        "if [ \"$rc\" -ne 0 ]; then echo \"botrt: the restore command exited with status $rc\" >&2; exit \"$rc\"; fi",
      ].joined(separator: "\n")
      volumes.append(Volume(name: "stage", emptyDir: EmptyDirVolumeSource()))
      let stage = VolumeMount(name: "stage", mountPath: stagePath)
      let restore = Container(
        name: name, image: s.engineImage, command: [s.enginePath], args: engineArgs, env: engineEnv,
        volumeMounts: mounts + [stage], securityContext: security(s), terminationMessagePolicy: "File")
      let load = Container(
        name: name + "-load", image: command.image, command: ["sh", "-c", script],
        env: baseEnv + env(command.env, ctx), volumeMounts: [tmpMount, stage], securityContext: security(s),
        terminationMessagePolicy: "FallbackToLogsOnError")
      return ([], [restore, load], volumes, false)
    }
    if case .objects(let objects)? = into {
      guard p.spec.source.command == nil else {
        throw SpecError(
          field: "\(field).into.objects",
          message: "BackupPolicy '\(p.name)' backs up a dump command, whose snapshots hold no Kubernetes objects; "
            + "objects are backed up with a claim source (spec.objects) or an objects source (spec.source.objects)")
      }
      // The engine restores the snapshot's objects into a memory-backed emptyDir; then `botrt-objects apply`,
      // the only container with a ServiceAccount token, creates them in the Job's namespace.
      volumes += [KubeObjects.objectsVolume, KubeObjects.tokenVolumeSource]
      let objectsMount = VolumeMount(name: KubeObjects.volume, mountPath: ObjectsLayout.restoreRoot)
      let restore = Container(
        name: name, image: s.engineImage, command: [s.enginePath],
        args: restore(.file(path: ObjectsLayout.snapshotEntry, into: ObjectsLayout.restoreRoot)),
        env: engineEnv, volumeMounts: mounts + [objectsMount], securityContext: security(s),
        terminationMessagePolicy: "File")
      let apply = KubeObjects.applyContainer(objects, namespace: ctx.namespace, settings: s)
      return ([], [restore, apply], volumes, false)
    }
    switch into {
    case .pvc(let pvc)?:
      volumes.append(Volume(name: "restore", persistentVolumeClaim: ClaimVolumeSource(claimName: pvc.claimName)))
      let sub = pvc.subPath.flatMap { $0.isEmpty ? nil : $0 }
      mounts.append(VolumeMount(name: "restore", mountPath: restorePath, subPath: sub))
    case .command?, .objects?, nil:  // a command and objects returned above
      volumes.append(Volume(name: "restore", emptyDir: EmptyDirVolumeSource()))
      mounts.append(VolumeMount(name: "restore", mountPath: restorePath))
    }
    let c = Container(
      name: name, image: s.engineImage, command: [s.enginePath],
      // A claim's backup is stored under the claim's name (the engine backs up /backup/CLAIM): restored into a
      // claim, its content goes back to the claim's root (or subPath), not into a directory named after it.
      args: restore(
        .target(restorePath),
        stripComponents: spec.into.pvc != nil && (p.spec.source.pvc != nil || p.spec.source.claims != nil) ? 1 : 0),
      env: engineEnv, volumeMounts: mounts, securityContext: restoreSecurity(spec.into.pvc, s),
      terminationMessagePolicy: "File")
    // A restore with its own identity on a claim must not have the kubelet change the group of the claim's files
    // at mount time (fsGroup): the restored owners are the point.
    return ([], [c], volumes, spec.into.pvc?.runAsUser != nil)
  }

  /// The engine's `--tag` of a restore (and its drill's verify) of one claim of a multi-claim policy (`restore.claim`):
  /// `latest` and `beforeTime` pick among that claim's snapshots (tagged claim=NAME); a snapshot id needs none. A
  /// multi-claim policy's restore must name its claim, and only such a policy's may.
  public static func claimTags(
    _ spec: RestoreStepSpec, policy p: BackupPolicy, snapshot: EngineRestoreArguments.Snapshot, field: String
  ) throws(SpecError) -> [String] {
    let claim = spec.claim.flatMap { $0.isEmpty ? nil : $0 }
    guard p.spec.source.claims != nil else {
      if let claim {
        throw SpecError(
          field: "\(field).claim",
          message: "names claim '\(claim.prefix(253))', but BackupPolicy '\(p.name)' backs up a single source "
            + "(spec.source.pvc or command), not several claims (spec.source.claims); remove claim")
      }
      return []
    }
    guard let claim else {
      let known = (p.status?.claims ?? []).map(\.name)
      let shown = known.isEmpty ? "" : " (status.claims: \(known.prefix(8).joined(separator: ", ")))"
      throw SpecError(
        field: "\(field).claim",
        message: "BackupPolicy '\(p.name)' backs up several claims (spec.source.claims); name the claim to restore"
          + shown)
    }
    switch snapshot {
    case .id: return []
    case .latest, .latestBefore: return [MultiClaim.tag(claim)]
    }
  }

  /// The verify containers: `botrt-engine verify [--read-data] SNAPSHOT|--all`, and a database query compared with
  /// its expected output (the comparison's verdict is the container's exit code and a JSON termination message).
  /// `which`: the snapshot(s) to verify; a drill passes the snapshot its restore restored (`.restoredBy`), so verify
  /// checks that snapshot only and reports it.
  /// `replica`: verify that replica of the policy instead (`replicaField`: where it is named).
  static func verifyParts(
    policyRef: LocalObjectReference?, replica: String? = nil, replicaField: String? = nil,
    which: EngineVerifyArguments.Which, readData: Bool, query: DatabaseQuery?,
    ctx: RecoveryJobContext, field: String
  ) throws(SpecError) -> (containers: [Container], volumes: [Volume]) {
    let s = ctx.settings
    var containers: [Container] = []
    var volumes: [Volume] = []
    if replica != nil, policyRef == nil {
      throw SpecError(
        field: replicaField ?? "\(field).replica", message: "names a replica but no policyRef; set policyRef too")
    }
    if let ref = policyRef {
      let p = try policy(ref, ctx, field: "\(field).policyRef")
      var inv = try ReplicaSource.invocation(
        p, replica: replica, field: replicaField ?? "\(field).replica", secretName: ctx.secretName)
      inv.common.readOnly = BackupPolicyChildren.isRestoreOnly(p, settings: s)
      volumes = BackupPolicyChildren.typed(inv.volumes)
      let a = EngineVerifyArguments(
        common: inv.common, which: which, readData: readData, requireSnapshot: ctx.requireSnapshot)
      let args = EngineArguments.verify(a).argv
      containers.append(
        Container(
          name: "verify", image: s.engineImage, command: [s.enginePath], args: args,
          env: baseEnv + BackupPolicyChildren.typed(inv.env),
          volumeMounts: [tmpMount] + BackupPolicyChildren.typed(inv.mounts), securityContext: security(s),
          terminationMessagePolicy: "File"))
    }
    if let q = query {
      guard let words = q.command, !words.isEmpty else {
        throw SpecError(
          field: "\(field).databaseQuery.command",
          message: "the query command must be given (e.g. [psql, -tA, -d, app])")
      }
      let all = words + (q.args ?? [])
      let script = [
        "out=$(printf '%s\\n' \"$BOTRT_QUERY\" | " + all.map(shellQuote).joined(separator: " ") + ") || {",
        "  rc=$?; echo \"botrt: the query command exited with status $rc\" >&2; exit \"$rc\"; }",
        "trim() { printf '%s' \"$1\" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//'; }",
        "got=$(trim \"$out\"); want=$(trim \"$BOTRT_EXPECTED\")",
        "esc() { printf '%s' \"$1\" | head -c 512 | sed -e 's/\\\\/\\\\\\\\/g' -e 's/\"/\\\\\"/g' | tr '\\n\\t' '  '; }",
        "if [ -z \"${BOTRT_EXPECTED+x}\" ] || [ \"$got\" = \"$want\" ]; then ok=true; code=0; else ok=false; code=5; fi",
        "printf '{\"command\":\"query\",\"ok\":%s,\"exitCode\":%d,\"output\":\"%s\",\"expected\":\"%s\"}\\n' "
          + "\"$ok\" \"$code\" \"$(esc \"$got\")\" \"$(esc \"$want\")\" > /dev/termination-log",
        "exit \"$code\"",
      ].joined(separator: "\n")
      var e = baseEnv + env(q.env, ctx) + [EnvVariable(name: "BOTRT_QUERY", value: q.query ?? "")]
      if let x = q.expected { e.append(EnvVariable(name: "BOTRT_EXPECTED", value: x)) }
      containers.append(
        Container(
          name: "query", image: q.image, command: ["sh", "-c", script], env: e, volumeMounts: [tmpMount],
          securityContext: security(s), terminationMessagePolicy: "File"))
    }
    return (containers, volumes)
  }

  /// A Job whose containers run one after the other: all but the last as init containers.
  /// `keepClaimGroups`: no pod fsGroup, so the kubelet leaves the group ownership of a mounted claim's files alone
  /// (a restore that sets the recorded owners itself).
  static func sequentialJob(
    name: String, ctx: RecoveryJobContext, initContainers: [Container], steps: [Container], volumes: [Volume],
    activeDeadlineSeconds: Int64?, keepClaimGroups: Bool = false
  ) -> Job {
    var seen = Set<String>()
    let vols = volumes.filter { seen.insert($0.name).inserted }
    let u = ctx.settings.runAsUser
    let podSecurity = PodSecurityContext(
      runAsNonRoot: true, runAsUser: u, runAsGroup: u, fsGroup: keepClaimGroups ? nil : u,
      seccompProfile: .runtimeDefault)
    // The administrator's default resources (--default-requests, --default-limits, --max-resources as limits) for
    // every container of a plan's or drill's Job, as for a policy's: a drill runs in a scratch namespace outside any
    // tenant's quota.
    let bounded = (try? ctx.settings.resourceBounds.effective(nil)).flatMap { BackupPolicyChildren.resources($0) }
    func withBounds(_ cs: [Container]) -> [Container] {
      cs.map { c in
        var c = c
        if c.resources == nil { c.resources = bounded }
        return c
      }
    }
    let inits = withBounds(initContainers + steps.dropLast())
    let pod = PodSpec(
      automountServiceAccountToken: false, restartPolicy: "Never", securityContext: podSecurity, volumes: vols,
      initContainers: inits.isEmpty ? nil : inits, containers: withBounds(Array(steps.suffix(1))))
    var meta = ObjectMeta(name: name, namespace: ctx.namespace, labels: ctx.labels)
    if let o = ctx.owner {
      meta.ownerReferences = [
        OwnerReference(
          apiVersion: o.apiVersion, kind: o.kind, name: o.name, uid: o.uid, controller: true, blockOwnerDeletion: true)
      ]
    }
    return Job(
      metadata: meta,
      spec: JobSpec(
        backoffLimit: 0, activeDeadlineSeconds: activeDeadlineSeconds,
        ttlSecondsAfterFinished: ctx.ttlSecondsAfterFinished,
        template: PodTemplateSpec(metadata: ObjectMeta(labels: ctx.labels), spec: pod)))
  }

  /// The namespace the Job of a step runs in: a restore's claim's (`RestoreTarget`), else the plan's.
  public static func jobNamespace(_ step: PlannedStep, ctx: RecoveryJobContext) -> String {
    guard step.step.action == .restore, let r = step.step.restore,
      let t = RestoreTarget.of(r, planNamespace: ctx.namespace, targetNamespace: ctx.targetNamespace)
    else { return ctx.namespace }
    return t.namespace
  }

  /// The context of a restore step's Job: the plan's, or for a claim in another namespace the target's (no owner
  /// reference, the Secret copies' names, a TTL). Throws when the Job could not open the repository there.
  static func restoreContext(
    _ r: RestoreStepSpec, ctx: RecoveryJobContext, jobName: String, field: String
  ) throws(SpecError) -> RecoveryJobContext {
    guard let t = RestoreTarget.of(r, planNamespace: ctx.namespace, targetNamespace: ctx.targetNamespace), t.foreign
    else { return ctx }
    let p = try policy(r.policyRef, ctx, field: "\(field).restore.policyRef")
    let source = try ReplicaSource.policy(p, replica: r.replica, field: "\(field).restore.replica")
    if let problem = t.repositoryProblem(policy: source, field: "\(field).restore") { throw problem }
    var out = ctx
    out.namespace = t.namespace
    out.owner = nil
    out.ttlSecondsAfterFinished = RestoreTarget.ttlSecondsAfterFinished
    let previous = ctx.secretName
    out.secretName = { RestoreTarget.secretCopyName(previous($0), jobName: jobName) }
    return out
  }

  /// The Job of one recovery step (restore, verify or job); throws for scale and waitReady, which are no Jobs.
  public static func stepJob(
    _ step: PlannedStep, jobName: String, ctx: RecoveryJobContext
  ) throws(SpecError) -> JSONValue {
    let field = step.field
    let s = step.step
    switch s.action {
    case .restore:
      guard let r = s.restore else {
        throw SpecError(field: "\(field).restore", message: "a restore step needs restore")
      }
      let jobCtx = try restoreContext(r, ctx: ctx, jobName: jobName, field: field)
      let parts = try restoreParts(spec: r, ctx: jobCtx, name: "restore", field: "\(field).restore")
      var job = sequentialJob(
        name: jobName, ctx: jobCtx, initContainers: parts.initContainers, steps: parts.containers,
        volumes: parts.volumes, activeDeadlineSeconds: step.timeoutSeconds, keepClaimGroups: parts.keepsClaimGroups
      )
      // Objects are created with the restore ServiceAccount (KubeObjects.restoreAccess), whose token only the
      // objects container mounts.
      if r.into.objects != nil { job.spec?.template.spec?.serviceAccountName = KubeObjects.restoreServiceAccount }
      return job.json
    case .verify:
      let v = s.verify ?? VerifyStepSpec()
      let parts = try verifyParts(
        policyRef: v.policyRef, replica: v.replica, which: .all, readData: v.readData ?? true, query: v.databaseQuery,
        ctx: ctx, field: "\(field).verify")
      guard !parts.containers.isEmpty else {
        throw SpecError(field: "\(field).verify", message: "set policyRef, databaseQuery or both; nothing to verify")
      }
      return sequentialJob(
        name: jobName, ctx: ctx, initContainers: [], steps: parts.containers,
        volumes: [tmpVolume] + parts.volumes, activeDeadlineSeconds: step.timeoutSeconds
      ).json
    case .job:
      guard let j = s.job else { throw SpecError(field: "\(field).job", message: "a job step needs job (a container)") }
      let c = Container(
        name: "step", image: j.image, command: j.command, args: j.args, env: baseEnv + env(j.env, ctx),
        volumeMounts: [tmpMount], securityContext: security(ctx.settings),
        terminationMessagePolicy: "FallbackToLogsOnError")
      return sequentialJob(
        name: jobName, ctx: ctx, initContainers: [], steps: [c], volumes: [tmpVolume],
        activeDeadlineSeconds: step.timeoutSeconds
      ).json
    case .scaleDown, .scaleUp, .waitReady:
      throw SpecError(field: "\(field).action", message: "\(s.action.rawValue) runs no Job")
    }
  }
}

/// RFC 3339 in UTC with whole seconds ("2026-09-06T03:00:00Z"), for engine flags and run tokens.
public func rfc3339Seconds(_ date: Date) -> String {
  var cal = Calendar(identifier: .gregorian)
  cal.timeZone = TimeZone(identifier: "UTC")!
  let c = cal.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
  func two(_ v: Int?) -> String { let s = String(v ?? 0); return s.count < 2 ? "0" + s : s }
  return "\(c.year ?? 1970)-\(two(c.month))-\(two(c.day))T\(two(c.hour)):\(two(c.minute)):\(two(c.second))Z"
}
