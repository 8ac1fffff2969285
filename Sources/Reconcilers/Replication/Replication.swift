import DRAPI
import EngineContract
import Foundation
import KubeCore

// Replication of a BackupPolicy's snapshots to its replicas (spec.replicas): after each successful backup the
// controller runs one copy Job per replica (`botrt-engine copy`, incremental, re-encrypted under the replica's keys)
// and reports each replica's newest copy, its lag and, for replicas that count, their part in RPOMet.

/// Labels, annotations and names of the replication children.
public enum ReplicaLabels {
  /// The component label value of copy Jobs and their pods.
  public static let copyComponent = "replica-copy"
  /// The replica a copy Job copies to (label).
  public static let replica = "dr.botrt.io/replica"
  /// The primary's snapshot a copy Job was created for (annotation).
  public static let sourceSnapshot = "dr.botrt.io/source-snapshot"
  /// Completion time of the primary backup that made that snapshot (annotation, RFC 3339).
  public static let sourceBackupTime = "dr.botrt.io/source-backup-time"
}

extension ChildNames {
  /// The Role and RoleBinding that let the policy's ServiceAccount read the Secrets its copy Jobs use.
  public var replicaRole: String { "\(base)-replicas" }
  /// The NetworkPolicy allowing the copy pods' egress to the replicas' storage and key services.
  public var replicaEgress: String { "\(base)-replica-egress" }
  /// The rotation Job of one replica for one rotation token.
  public func replicaRotateJob(replica: String, token: String) -> String {
    "\(base)-rrot-\(shortHash("\(replica)/\(token)"))"
  }
  /// The copy Job of one replica for one primary snapshot.
  public func copyJob(replica: String, snapshot: String) -> String {
    "\(base)-copy-\(shortHash("\(replica)/\(snapshot)"))"
  }
}

/// How the engine copies the policy's repository to one replica: `botrt-engine copy` with the source's settings as
/// in a backup pod, and the target's under `--to*` flags and `BOTRT_TO_ENV_*` variables (the replica's own
/// credentials, endpoints and key service). Computed without I/O.
public struct ReplicaInvocation: Sendable, Hashable {
  /// The engine's arguments, typed.
  public var arguments: EngineCopyArguments
  /// The engine's arguments.
  public var args: [String] { EngineArguments.copy(arguments).argv }
  /// The engine container's environment (JSON EnvVar objects).
  public var env: [JSONValue]
  /// The pod's volumes.
  public var volumes: [JSONValue]
  /// The engine container's volume mounts.
  public var mounts: [JSONValue]
  /// Secrets of the policy's namespace the copy pod reads (the primary's repository and key, the replica's).
  public var secrets: [SecretUse]
  /// The replica's repository and key service endpoints, for its egress rules.
  public var targetSpec: BackupPolicySpec

  /// The prefix under which the engine's copy reads the target's environment.
  public static let targetEnvPrefix = EngineEnv.toEnvPrefix

  /// The spec the replica's repository and keys would have as a policy of their own (for EngineInvocation).
  public static func targetSpec(_ policy: BackupPolicySpec, _ replica: ReplicaSpec) -> BackupPolicySpec {
    var s = BackupPolicySpec(
      tier: policy.tier, source: BackupSource(), repository: replica.repository,
      encryption: replica.encryption ?? policy.encryption)
    // The policy's private CAs apply to the replicas' storage and key services too.
    s.caSecretRef = policy.caSecretRef
    return s
  }

  /// The Secret uses of a replica, their fields named under spec.replicas[index].
  public static func targetSecrets(_ policy: BackupPolicySpec, index: Int) throws(SpecError) -> [SecretUse] {
    guard let replica = policy.replicas?[index] else { return [] }
    return try EngineInvocation(spec: targetSpec(policy, replica)) { $0 }.secrets.map {
      var u = $0
      u.field = fieldName(u.field, index: index, ownEncryption: replica.encryption != nil)
      return u
    }
  }

  /// The URL of replica `replica`'s repository (its Jobs' `--repo`, a copy's `--to`), which its pins belong to; nil
  /// when the controller cannot build its invocation (an invalid spec: the recorded pins are kept).
  public static func repositoryURL(_ policy: BackupPolicySpec, _ replica: ReplicaSpec) -> String? {
    do {
      return try EngineInvocation(spec: targetSpec(policy, replica)) { $0 }.repoURL
    } catch {
      return nil
    }
  }

  /// Maps a field of the synthetic target spec to the replica's field.
  static func fieldName(_ field: String, index: Int, ownEncryption: Bool) -> String {
    let r = "spec.replicas[\(index)]"
    if field.hasPrefix("spec.repository") { return r + field.dropFirst("spec".count) }
    if field.hasPrefix("spec.encryption") && ownEncryption { return r + field.dropFirst("spec".count) }
    return field
  }

  /// Computes the copy invocation of replica `index`. `secretName` maps a Secret of the policy's namespace to the
  /// name the pod sees.
  /// `currentKey` is the policy's status.currentKey: the primary's key after a rotation (the replica keeps the key
  /// it was created with; replicas are not rotated).
  /// `retention` is the policy's effective retention: the copy applies it to the replica (`--keep-* --prune`), so a
  /// replica keeps what the primary keeps.
  /// `targetKey` is the key wrapping the replica (its status.replicas[].currentKey, or for a new replica sharing the
  /// policy's encryption the primary's current key).
  /// `identity` is the primary's pins (status.repositoryIdentity), `targetIdentity` the replica's
  /// (status.replicas[].repositoryIdentity): each is passed only for the repository it was recorded for.
  public init(
    policy: BackupPolicySpec, index: Int, currentKey: String? = nil, identity: RepositoryIdentity? = nil,
    targetKey: String? = nil, targetIdentity: RepositoryIdentity? = nil, retention: RetentionSpec? = nil,
    secretName: (String) -> String
  ) throws(SpecError) {
    guard let replicas = policy.replicas, replicas.indices.contains(index) else {
      throw SpecError(field: "spec.replicas", message: "has no replica \(index)")
    }
    let replica = replicas[index]
    // The source is the primary: its pins (status.repositoryIdentity). The target has its own
    // (status.replicas[].repositoryIdentity), passed as --to-expect-*: a replica never gets the primary's.
    let source = try EngineInvocation(
      spec: policy, currentKey: currentKey, identity: identity, secretName: secretName)
    let tSpec = Self.targetSpec(policy, replica)
    let target: EngineInvocation
    do {
      target = try EngineInvocation(
        spec: tSpec, currentKey: targetKey, identity: targetIdentity, secretName: secretName)
    } catch {
      throw SpecError(
        field: Self.fieldName(error.field, index: index, ownEncryption: replica.encryption != nil),
        message: error.message)
    }

    // The target's volumes are renamed (to-NAME) and its paths under the Secrets root follow.
    let root = EngineInvocation.secretsRoot
    var renamedPaths: [(String, String)] = []
    var volumes = source.volumes
    var mounts = source.mounts
    for v in target.volumes {
      guard case .object(var o) = v, let name = o["name"]?.stringValue else { continue }
      o["name"] = .string("to-\(name)")
      volumes.append(.object(o))
    }
    for m in target.mounts {
      guard case .object(var o) = m, let name = o["name"]?.stringValue, let path = o["mountPath"]?.stringValue else {
        continue
      }
      o["name"] = .string("to-\(name)")
      if path.hasPrefix(root + "/") {
        let newPath = "\(root)/to-\(name)"
        renamedPaths.append((path, newPath))
        o["mountPath"] = .string(newPath)
      }
      mounts.append(.object(o))
    }
    func rewrite(_ text: String) -> String {
      var t = text
      for (old, new) in renamedPaths where t.hasPrefix(old + "/") || t == old {
        t = new + t.dropFirst(old.count)
      }
      return t
    }

    // The target's settings as copy's --to* flags or target-only environment.
    var env = source.env
    let t = target.common
    var copy = EngineCopyArguments(common: source.common, to: t.repo, toKMS: rewrite(t.kms))
    copy.toS3Endpoint = t.s3Endpoint
    copy.toS3Region = t.s3Region
    copy.toS3SSE = t.s3SSE
    copy.toS3SSEKMSKeyId = t.s3SSEKMSKeyId
    copy.toKMSEndpoint = t.kmsEndpoint
    copy.toKMSTokenFile = t.kmsTokenFile.map(rewrite)
    copy.toVaultTokenFile = t.vaultTokenFile.map(rewrite)
    copy.toExpectedRepositoryID = t.expectedRepositoryID
    copy.toExpectedSigningKey = t.expectedSigningKey
    if let ca = t.vaultCAFile {
      env.append(["name": .string(Self.targetEnvPrefix + EngineEnv.vaultCACert), "value": .string(rewrite(ca))])
    }
    if t.s3PathStyle {
      env.append(["name": .string(Self.targetEnvPrefix + EngineEnv.s3PathStyle), "value": "1"])
    }
    // The source's --retry-lock applies to both repositories of a copy.
    for e in target.env {
      guard case .object(var o) = e, let name = o["name"]?.stringValue else { continue }
      o["name"] = .string(Self.targetEnvPrefix + name)
      if let v = o["value"]?.stringValue { o["value"] = .string(rewrite(v)) }
      env.append(.object(o))
    }
    copy.initIfMissing = true
    copy.objectLock = replica.repository.s3?.objectLock.map {
      EngineObjectLock(mode: $0.mode == .compliance ? .compliance : .governance, days: Int64($0.days))
    }
    copy.retention = retention.map(EngineInvocation.retention)

    // The copy pod needs the source's repository and key Secrets (not the dump command's) and the target's.
    var secrets = source.secrets.filter { !$0.field.hasPrefix("spec.source") }
    for var u in target.secrets {
      u.field = Self.fieldName(u.field, index: index, ownEncryption: replica.encryption != nil)
      if let j = secrets.firstIndex(where: { $0.sourceName == u.sourceName }) {
        for k in u.requiredKeys where !secrets[j].requiredKeys.contains(k) { secrets[j].requiredKeys.append(k) }
      } else {
        secrets.append(u)
      }
    }
    self.arguments = copy
    self.env = env
    self.volumes = volumes
    self.mounts = mounts
    self.secrets = secrets
    self.targetSpec = tSpec
  }
}

/// Pure builders of the replication children of a BackupPolicy: copies of the replicas' Secrets, a Role and
/// RoleBinding for the policy's ServiceAccount over the Secrets copy pods read, an egress NetworkPolicy to the
/// replicas' endpoints, and the copy Jobs.
public enum ReplicationChildren {
  /// The Secrets of the policy's namespace that the replicas use (fields named under spec.replicas[i]).
  public static func secretUses(_ spec: BackupPolicySpec) throws(SpecError) -> [SecretUse] {
    var out: [SecretUse] = []
    for i in (spec.replicas ?? []).indices {
      for u in try ReplicaInvocation.targetSecrets(spec, index: i)
      where !out.contains(where: { $0.sourceName == u.sourceName }) {
        out.append(u)
      }
    }
    return out
  }

  /// The standing children of the replicas (none without spec.replicas): Secret copies (those the backup children
  /// already make are not repeated) and the Role reading them. The RoleBinding and the egress come and go with the
  /// copy runs (`runAccess`).
  public static func build(_ input: ChildInputs, existing: [DesiredChild] = []) throws(SpecError) -> [DesiredChild] {
    let policy = input.policy
    let replicas = policy.spec.replicas ?? []
    if replicas.isEmpty { return [] }
    let settings = input.settings
    let policyNS = policy.metadata.namespace ?? "default"
    let names = ChildNames(namespace: policyNS, name: policy.name)
    let workNS = BackupPolicyChildren.workloadNamespace(policy, settings: settings)
    let copies = workNS != policyNS
    let owner: OwnerReference? = copies ? nil : policy.ownerReference()
    let owned = BackupPolicyChildren.ownerLabels(policy)
    func with(_ component: String) -> [String: String] { owned.merging([ChildLabels.component: component]) { $1 } }
    func podName(_ s: String) -> String { copies ? names.secretCopy(s) : s }

    var uses: [SecretUse] = []
    for i in replicas.indices {
      let inv = try ReplicaInvocation(
        policy: policy.spec, index: i, currentKey: policy.status?.currentKey,
        identity: policy.status?.repositoryIdentity, secretName: podName)
      for u in inv.secrets where !uses.contains(where: { $0.sourceName == u.sourceName }) { uses.append(u) }
    }
    var out: [DesiredChild] = []
    let existingKeys = Set(existing.map { "\($0.resource.plural)/\($0.namespace ?? "")/\($0.name)" })
    for use in uses {
      guard let source = input.secrets[use.sourceName] else {
        throw SpecError(
          field: use.field, message: "Secret '\(use.sourceName)' does not exist in namespace \(policyNS); create it")
      }
      var data: [String: JSONValue] = [:]
      for (k, v) in source.data ?? [:] { data[k] = .string(v.base64EncodedString()) }
      for (k, v) in source.stringData ?? [:] { data[k] = .string(Data(v.utf8).base64EncodedString()) }
      for key in use.requiredKeys where data[key] == nil {
        throw SpecError(
          field: use.field, message: "Secret '\(use.sourceName)' in namespace \(policyNS) has no key '\(key)'")
      }
      let name = names.secretCopy(use.sourceName)
      guard copies, !existingKeys.contains("\(ChildResources.secrets.plural)/\(workNS)/\(name)") else { continue }
      out.append(
        DesiredChild(
          resource: ChildResources.secrets, namespace: workNS, name: name,
          body: [
            "apiVersion": "v1", "kind": "Secret",
            "metadata": BackupPolicyChildren.meta(
              name: name, namespace: workNS, labels: with("credentials"), owner: nil,
              annotations: ["dr.botrt.io/copied-from": "\(policyNS)/\(use.sourceName)"]),
            "type": .string(source.type ?? "Opaque"),
            "data": .object(data),
          ]))
    }

    let role = Role(
      metadata: BackupPolicyChildren.objectMeta(
        name: names.replicaRole, namespace: workNS, labels: with(ReplicaLabels.copyComponent), owner: owner),
      rules: BackupPolicyChildren.roleRules(secretNames: uses.map { podName($0.sourceName) }))
    out.append(DesiredChild(resource: ChildResources.roles, object: role))
    return out
  }

  /// The objects that exist only while a copy Job of the policy runs (the copy window, as the backup window of
  /// `BackupPolicyChildren.runAccess`): the RoleBinding `<base>-replicas` letting the policy's ServiceAccount read
  /// the Secrets copy pods use, and the NetworkPolicy `<base>-replica-egress` opening the copy pods' egress to the
  /// primary's and the replicas' storage and key endpoints. Empty without replicas or with a spec that cannot run.
  public static func runAccess(_ policy: BackupPolicy, settings: ControllerSettings) -> [DesiredChild] {
    let replicas = policy.spec.replicas ?? []
    if replicas.isEmpty { return [] }
    let policyNS = policy.metadata.namespace ?? "default"
    let names = ChildNames(namespace: policyNS, name: policy.name)
    let workNS = BackupPolicyChildren.workloadNamespace(policy, settings: settings)
    let owner: OwnerReference? = workNS != policyNS ? nil : policy.ownerReference()
    let owned = BackupPolicyChildren.ownerLabels(policy)
    func with(_ component: String) -> [String: String] { owned.merging([ChildLabels.component: component]) { $1 } }
    // The copy pods read the primary too: its endpoints are opened here as well, so that copies do not depend on
    // the backup pods' egress being in place.
    var egress = BackupPolicyChildren.storageEgressRules(policy.spec, settings: settings)
    for i in replicas.indices {
      guard
        let inv = try? ReplicaInvocation(
          policy: policy.spec, index: i, currentKey: policy.status?.currentKey,
          identity: policy.status?.repositoryIdentity, secretName: { $0 })
      else { return [] }
      egress += BackupPolicyChildren.storageEgressRules(inv.targetSpec, settings: settings)
    }
    var out: [DesiredChild] = []
    let binding = RoleBinding(
      metadata: BackupPolicyChildren.objectMeta(
        name: names.replicaRole, namespace: workNS, labels: with(BackupPolicyChildren.runAccessComponent),
        owner: owner),
      roleRef: RoleRef(name: names.replicaRole), subjects: [.serviceAccount(names.serviceAccount, namespace: workNS)])
    out.append(DesiredChild(resource: ChildResources.roleBindings, object: binding))

    // Egress of the copy pods only, to the primary's and the replicas' endpoints.
    var seen = Set<NetworkPolicyEgressRule>()
    let rules2 = egress.filter { seen.insert($0).inserted }
    if !rules2.isEmpty {
      // The copy pods and the replicas' key rotation pods.
      let selector = LabelSelector(
        matchLabels: BackupPolicyChildren.policyPods(policy),
        matchExpressions: [
          LabelSelectorRequirement(
            key: ChildLabels.component, operator: "In",
            values: [ReplicaLabels.copyComponent, ReplicaKeyRotation.component])
        ])
      let np = NetworkPolicy(
        metadata: BackupPolicyChildren.objectMeta(
          name: names.replicaEgress, namespace: workNS, labels: with(BackupPolicyChildren.runAccessComponent),
          owner: owner),
        spec: NetworkPolicySpec(podSelector: selector, policyTypes: ["Egress"], egress: rules2))
      out.append(DesiredChild(resource: ChildResources.networkPolicies, object: np))
    }
    return out
  }

  /// The copy Job of replica `index` for the primary's snapshot `snapshot` (made by the backup that finished at
  /// `backupTime`): hardened like the backup Jobs (non-root, read-only root, no capabilities, no token), one
  /// retry, a deadline, copying every snapshot the replica lacks.
  public static func copyJob(
    _ input: ChildInputs, index: Int, snapshot: String, backupTime: Date
  ) throws(SpecError) -> DesiredChild {
    try BackupPolicyChildren.refuseRestoreOnly(input, "replica copy Job")
    let policy = input.policy
    let s = input.settings
    let policyNS = policy.metadata.namespace ?? "default"
    let names = ChildNames(namespace: policyNS, name: policy.name)
    let workNS = BackupPolicyChildren.workloadNamespace(policy, settings: s)
    let copies = workNS != policyNS
    guard let replica = policy.spec.replicas?[safe: index] else {
      throw SpecError(field: "spec.replicas", message: "has no replica \(index)")
    }
    let targetKey = Self.targetKey(policy, replica: replica)
    let inv = try ReplicaInvocation(
      policy: policy.spec, index: index, currentKey: policy.status?.currentKey,
      identity: policy.status?.repositoryIdentity, targetKey: targetKey,
      targetIdentity: policy.status?.replicas?.first { $0.name == replica.name }?.repositoryIdentity,
      retention: input.effective.retention.value
    ) { copies ? names.secretCopy($0) : $0 }
    var labels = BackupPolicyChildren.ownerLabels(policy)
    labels[ChildLabels.component] = ReplicaLabels.copyComponent
    labels[ReplicaLabels.replica] = replica.name
    let c = Container(
      name: "copy", image: s.engineImage, command: [s.enginePath], args: inv.args,
      env: BackupPolicyChildren.baseEnv + BackupPolicyChildren.typed(inv.env),
      volumeMounts: [BackupPolicyChildren.tmpMount] + BackupPolicyChildren.typed(inv.mounts),
      resources: try BackupPolicyChildren.containerResources(policy.spec, s),
      securityContext: BackupPolicyChildren.containerSecurity(s), terminationMessagePolicy: "File")
    let pod = BackupPolicyChildren.podShell(
      input, names: names, labels: labels, volumes: BackupPolicyChildren.typed(inv.volumes), containers: [c])
    let name = names.copyJob(replica: replica.name, snapshot: snapshot)
    let job = Job(
      metadata: BackupPolicyChildren.objectMeta(
        name: name, namespace: workNS, labels: labels, owner: copies ? nil : policy.ownerReference(),
        annotations: [
          ReplicaLabels.sourceSnapshot: snapshot, ReplicaLabels.sourceBackupTime: KubeJSON.formatDate(backupTime),
          KeyRotationLogic.newKeyAnnotation: targetKey ?? "",
        ]),
      spec: JobSpec(backoffLimit: 1, activeDeadlineSeconds: 21_600, template: pod))
    return DesiredChild(resource: ChildResources.jobs, object: job)
  }
}

extension ReplicationChildren {
  /// The key wrapping replica `replica`: its recorded currentKey once it exists; a replica sharing the policy's
  /// encryption that has no copy yet is created under the primary's current key.
  public static func targetKey(_ policy: BackupPolicy, replica: ReplicaSpec) -> String? {
    let rs = policy.status?.replicas?.first { $0.name == replica.name }
    if rs?.lastCopyTime != nil { return rs?.currentKey }
    return replica.encryption == nil ? policy.status?.currentKey : rs?.currentKey
  }

  /// The rotation Job of replica `index`: `botrt-engine rotate-keys` on the replica's repository with its own
  /// settings (the replica used as the Job's repository), `--new-kek`, `--new-kms` with an entry of its rotation keys
  /// Secret, or, for a replica sharing the policy's encryption, `--new-kms` with the primary's current key.
  public static func rotationJob(
    _ input: ChildInputs, index: Int, _ job: ReplicaRotationJob
  ) throws(SpecError) -> DesiredChild {
    try BackupPolicyChildren.refuseRestoreOnly(input, "replica key rotation Job")
    let policy = input.policy
    let policyNS = policy.metadata.namespace ?? "default"
    let names = ChildNames(namespace: policyNS, name: policy.name)
    let copies = BackupPolicyChildren.workloadNamespace(policy, settings: input.settings) != policyNS
    guard let replica = policy.spec.replicas?[safe: index] else {
      throw SpecError(field: "spec.replicas", message: "has no replica \(index)")
    }
    func podName(_ s: String) -> String { copies ? names.secretCopy(s) : s }
    let inv: EngineInvocation
    do {
      // The replica's own pins: a replaced replica is refused before any key is rewrapped into it.
      inv = try EngineInvocation(
        spec: ReplicaInvocation.targetSpec(policy.spec, replica), currentKey: targetKey(policy, replica: replica),
        identity: policy.status?.replicas?.first { $0.name == replica.name }?.repositoryIdentity, secretName: podName)
    } catch {
      throw SpecError(
        field: ReplicaInvocation.fieldName(error.field, index: index, ownEncryption: replica.encryption != nil),
        message: error.message)
    }
    var target = EngineRotationTarget.newKEK
    if job.followPrimary {
      let primary = try EngineInvocation(spec: policy.spec, currentKey: policy.status?.currentKey, secretName: podName)
      target = .newKMS(primary.kmsURL)
    } else if let key = job.newKey {
      target = .newKMS(EngineInvocation.rotationKeyURL(key))
    }
    let field = replica.encryption != nil ? "spec.replicas[\(index)].encryption" : "spec.encryption"
    return try BackupPolicyChildren.engineJob(
      input, component: ReplicaKeyRotation.component,
      name: names.replicaRotateJob(replica: replica.name, token: job.token),
      arguments: { (common) throws(SpecError) in try BackupPolicyChildren.rotateKeys(common, target, field: field) },
      annotations: [
        KeyRotationLogic.tokenAnnotation: job.token, KeyRotationLogic.newKeyAnnotation: job.newKey ?? "",
        ReplicaLabels.replica: replica.name,
      ], invocation: inv, extraLabels: [ReplicaLabels.replica: replica.name])
  }
}

extension Array {
  subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}

/// The engine's JSON result of a copy: the contract's result type.
public typealias CopyResult = EngineResult

/// One copy Job as observed from its Job and Pods.
public struct CopyRun: Sendable, Hashable {
  public var jobName: String
  public var replica: String
  public var sourceSnapshot: String
  public var sourceBackupTime: Date?
  public var state: BackupRun.State
  public var startTime: Date?
  public var finishTime: Date?
  public var result: CopyResult?
  public var failureMessage: String?
  /// The key the copy opened (or created) the replica with (annotation; nil on Jobs of older controllers, "" for
  /// the spec's key).
  public var targetKey: String?

  public init(
    jobName: String, replica: String, sourceSnapshot: String, sourceBackupTime: Date? = nil,
    state: BackupRun.State, startTime: Date? = nil, finishTime: Date? = nil, result: CopyResult? = nil,
    failureMessage: String? = nil, targetKey: String? = nil
  ) {
    self.targetKey = targetKey
    self.jobName = jobName
    self.replica = replica
    self.sourceSnapshot = sourceSnapshot
    self.sourceBackupTime = sourceBackupTime
    self.state = state
    self.startTime = startTime
    self.finishTime = finishTime
    self.result = result
    self.failureMessage = failureMessage
  }

  /// Observes a copy run from its Job and Pods (unstructured).
  public static func observe(job: JSONValue, pods: [JSONValue]) -> CopyRun {
    let seen = RunObservation(job: job, pods: pods, container: "copy")
    var run = CopyRun(
      jobName: job[path: "metadata", "name"]?.stringValue ?? "",
      replica: job[path: "metadata", "labels", ReplicaLabels.replica]?.stringValue ?? "",
      sourceSnapshot: job[path: "metadata", "annotations", ReplicaLabels.sourceSnapshot]?.stringValue ?? "",
      sourceBackupTime: job[path: "metadata", "annotations", ReplicaLabels.sourceBackupTime]?.stringValue.flatMap(
        KubeJSON.parseDate),
      state: seen.state, startTime: seen.startTime, finishTime: seen.finishTime, failureMessage: seen.failureMessage,
      targetKey: job[path: "metadata", "annotations", KeyRotationLogic.newKeyAnnotation]?.stringValue)
    if let t = seen.terminated {
      run.result = CopyResult.parse(t.message)
      if run.state == .failed, let errors = run.result?.errors, !errors.isEmpty {
        run.failureMessage = errors.joined(separator: "; ")
      } else if run.state == .failed, run.result == nil, let reason = t.reason {
        run.failureMessage = "container exited with code \(seen.exitCode ?? -1) (\(reason))"
      }
    }
    return run
  }
}
