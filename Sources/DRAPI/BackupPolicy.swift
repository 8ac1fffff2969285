import EngineContract
import Foundation
import KubeCore

/// BackupPolicy: scheduled, encrypted backups of a PVC or a dump command, with retention, key rotation and an RPO.
public struct BackupPolicy: StatusResource, Hashable {
  /// The REST identity of backuppolicies.dr.botrt.io.
  public static let resource = ResourceDescriptor(
    group: DRGroup.group, version: DRGroup.version, plural: "backuppolicies", kind: "BackupPolicy", namespaced: true)

  public var apiVersion: String = DRGroup.apiVersion
  public var kind: String = "BackupPolicy"
  public var metadata: ObjectMeta
  public var spec: BackupPolicySpec
  public var status: BackupPolicyStatus?

  public init(metadata: ObjectMeta, spec: BackupPolicySpec, status: BackupPolicyStatus? = nil) {
    self.metadata = metadata
    self.spec = spec
    self.status = status
  }
}

/// Kind of data; selects the data key.
public enum DataType: String, Codable, Sendable, Hashable, CaseIterable {
  case database, files, logs

  /// The name of the data key for this kind of data, as in the original design.
  public var keyName: String { "backup-\(rawValue)-key" }
}

/// How hard the engine compresses a policy's data (`botrt-engine backup --compression`).
public enum CompressionMode: String, Codable, Sendable, Hashable, CaseIterable {
  /// zstd level 1 (the engine's default).
  case auto
  /// zstd level 3.
  case better
  /// zstd level 9.
  case max
  /// No compression.
  case off
}

/// What the controller does with a policy's repository (spec.mode).
public enum PolicyMode: String, Codable, Sendable, Hashable, CaseIterable {
  /// Back up on the schedule, prune, verify, rotate keys, copy to the replicas (the default).
  case backup = "Backup"
  /// Only read the repository: RecoveryPlans and DRDrills restore from it, and nothing writes to it (no backup, prune,
  /// verify or key rotation CronJob or Job, no replica copy, no repository deletion). For a disaster recovery cluster
  /// that applies the primary cluster's policies from git (Velero's BackupStorageLocation `accessMode: ReadOnly`).
  case restoreOnly = "RestoreOnly"
}

/// The desired state of a BackupPolicy.
public struct BackupPolicySpec: Codable, Sendable, Hashable {
  /// Protection tier.
  public var tier: Tier
  /// Cron override of the tier's schedule.
  public var schedule: String?
  /// RPO override (duration text).
  public var rpo: String?
  /// Compliance profiles.
  public var compliance: [ComplianceProfile]?
  /// Kind of data (default files).
  public var dataType: DataType?
  /// Compression of the data (default auto).
  public var compression: CompressionMode?
  /// What to back up.
  public var source: BackupSource
  /// Where the repository lives.
  public var repository: RepositorySpec
  /// Encryption settings.
  public var encryption: EncryptionSpec
  /// Retention rules (unset rules come from the tier).
  public var retention: RetentionSpec?
  /// Stop scheduling new backups.
  public var suspend: Bool?
  /// On-demand run token.
  public var trigger: String?
  /// Override of the backup namespace.
  public var backupNamespace: String?
  /// Delete stored backups when the policy is deleted.
  public var deleteBackupsOnDelete: Bool?
  /// Repositories the snapshots are copied to after each successful backup.
  public var replicas: [ReplicaSpec]?
  /// PEM CA certificates trusted in addition to the system's for every HTTPS connection of the policy's Jobs.
  public var caSecretRef: SecretReference?
  /// Resources of the engine container.
  public var resources: ResourceRequirements?
  /// Successful Jobs to keep.
  public var successfulJobsHistoryLimit: Int32?
  /// Failed Jobs to keep.
  public var failedJobsHistoryLimit: Int32?
  /// A periodic check of the whole repository on its own schedule (`verify --all --read-data-subset`).
  public var verify: PolicyVerifySpec?
  /// Backup (default) or RestoreOnly: a policy on a disaster recovery cluster that only restores.
  public var mode: PolicyMode?
  /// Commands run in the application's pods before and after each backup (a PVC source only).
  public var hooks: BackupHooks?
  /// The namespace's Kubernetes objects, backed up in the same snapshot as the claim (a pvc or claims source).
  public var objects: ObjectsBackupSpec?

  /// The objects each backup exports: `objects`, else (a `source.objects` policy) the standard kinds; nil when the
  /// backups store no objects.
  public var effectiveObjects: ObjectsBackupSpec? {
    objects ?? (source.objects != nil ? ObjectsBackupSpec() : nil)
  }

  /// Whether the spec asks for restore-only (the controller's `--restore-only` makes every policy so as well).
  public var isRestoreOnly: Bool { mode == .restoreOnly }

  public init(
    tier: Tier, schedule: String? = nil, rpo: String? = nil, compliance: [ComplianceProfile]? = nil,
    dataType: DataType? = nil, source: BackupSource, repository: RepositorySpec, encryption: EncryptionSpec,
    retention: RetentionSpec? = nil, suspend: Bool? = nil, trigger: String? = nil, backupNamespace: String? = nil,
    deleteBackupsOnDelete: Bool? = nil, resources: ResourceRequirements? = nil,
    successfulJobsHistoryLimit: Int32? = nil, failedJobsHistoryLimit: Int32? = nil, replicas: [ReplicaSpec]? = nil,
    compression: CompressionMode? = nil
  ) {
    self.tier = tier
    self.schedule = schedule
    self.rpo = rpo
    self.compliance = compliance
    self.dataType = dataType
    self.compression = compression
    self.source = source
    self.repository = repository
    self.encryption = encryption
    self.retention = retention
    self.suspend = suspend
    self.trigger = trigger
    self.backupNamespace = backupNamespace
    self.deleteBackupsOnDelete = deleteBackupsOnDelete
    self.resources = resources
    self.successfulJobsHistoryLimit = successfulJobsHistoryLimit
    self.failedJobsHistoryLimit = failedJobsHistoryLimit
    self.replicas = replicas
  }
}

/// The Kubernetes objects of the policy's namespace that each backup also stores, in the same snapshot as the claim
/// (`botrt-objects export` in the backup pod's init container; the snapshot's entry `_kubernetes`).
public struct ObjectsBackupSpec: Codable, Sendable, Hashable {
  /// The kinds, `Kind` for the core group or `Kind.group` (default: `ObjectsKind.standard`).
  public var kinds: [String]?
  /// Kinds left out of `kinds` (e.g. `Secret`).
  public var excludeKinds: [String]?
  /// Custom resources, added to the kinds.
  public var customResources: [CustomResourceKind]?
  /// Only objects whose labels match (default: every object). An object labelled
  /// `dr.botrt.io/exclude-from-backup: "true"` is never backed up.
  public var selector: ClaimSelector?

  public init(
    kinds: [String]? = nil, excludeKinds: [String]? = nil, customResources: [CustomResourceKind]? = nil,
    selector: ClaimSelector? = nil
  ) {
    self.kinds = kinds
    self.excludeKinds = excludeKinds
    self.customResources = customResources
    self.selector = selector
  }

  /// The kinds exported: `kinds` (or the standard list) and the custom resources, without `excludeKinds`, each once
  /// in the order given. Kinds that do not parse are left out (validation names them).
  public var effectiveKinds: [ObjectsKind] {
    let base = kinds.map { $0.compactMap(ObjectsKind.init) } ?? ObjectsKind.standard
    let custom = (customResources ?? []).map { ObjectsKind(kind: $0.kind, group: $0.group) }
    let excluded = Set((excludeKinds ?? []).compactMap(ObjectsKind.init))
    var seen = Set<ObjectsKind>()
    return (base + custom).filter { !excluded.contains($0) && seen.insert($0).inserted }
  }
}

/// A custom resource kind by API group and Kind (`group: example.io`, `kind: Widget`).
public struct CustomResourceKind: Codable, Sendable, Hashable {
  public var group: String
  public var kind: String
  public init(group: String, kind: String) {
    self.group = group
    self.kind = kind
  }
}

extension ClaimSelector {
  /// The selector in the Kubernetes label-selector syntax (`a=b,c in (d,e),!f`), nil when it selects everything.
  public var labelSelectorString: String? {
    var parts: [String] = (matchLabels ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    for e in matchExpressions ?? [] {
      let values = (e.values ?? []).sorted().joined(separator: ",")
      switch e.operator {
      case "In": parts.append("\(e.key) in (\(values))")
      case "NotIn": parts.append("\(e.key) notin (\(values))")
      case "Exists": parts.append(e.key)
      case "DoesNotExist": parts.append("!\(e.key)")
      default: continue
      }
    }
    return parts.isEmpty ? nil : parts.joined(separator: ",")
  }
}

/// A periodic verify of the whole repository: structure of every snapshot, and the content of a subset of the packs
/// (`botrt-engine verify --all --read-data-subset SUBSET`), as a CronJob of its own.
public struct PolicyVerifySpec: Codable, Sendable, Hashable {
  /// Cron schedule (UTC).
  public var schedule: String
  /// The packs read: a percentage ("10%") or a part "n/t". Default: 10%.
  public var readDataSubset: String?

  /// The subset read when readDataSubset is not set.
  public static let defaultReadDataSubset = "10%"

  public init(schedule: String, readDataSubset: String? = nil) {
    self.schedule = schedule
    self.readDataSubset = readDataSubset
  }
}

/// A further repository that snapshots are copied to.
public struct ReplicaSpec: Codable, Sendable, Hashable {
  /// Replica name, unique within the policy.
  public var name: String
  public var repository: RepositorySpec
  /// The replica's keys (default: the policy's).
  public var encryption: EncryptionSpec?
  /// Whether the replica's lag counts for RPOMet (default false).
  public var countsForRPO: Bool?

  public init(name: String, repository: RepositorySpec, encryption: EncryptionSpec? = nil, countsForRPO: Bool? = nil) {
    self.name = name
    self.repository = repository
    self.encryption = encryption
    self.countsForRPO = countsForRPO
  }
}

/// The identity of a repository, recorded from the first successful run that reported it and pinned in every later
/// Job (`--expect-repository-id`, `--expect-signing-key`): a repository replaced wholesale under the same location
/// (another config and key files, e.g. planted by someone with write access to the storage) is refused before any
/// key is used or any data is written.
public struct RepositoryIdentity: Codable, Sendable, Hashable {
  /// The repository URL the pins belong to (as the Jobs' `--repo`). When the spec names another location, the pins
  /// are dropped and recorded again from the next run.
  public var repository: String
  /// The repository id (32 hex digits).
  public var id: String
  /// The hex Ed25519 public key (64 hex digits) that signs the repository's config, key files and manifests.
  public var signingKey: String
  /// When the run the pins came from finished.
  public var recordedAt: Date?
  /// The Job whose result the pins came from.
  public var recordedFrom: String?

  public init(repository: String, id: String, signingKey: String, recordedAt: Date? = nil, recordedFrom: String? = nil)
  {
    self.repository = repository
    self.id = id
    self.signingKey = signingKey
    self.recordedAt = recordedAt
    self.recordedFrom = recordedFrom
  }
}

/// A repository's identity stated in the spec (`repository.expectedIdentity`): the values of the engine's result
/// (`repositoryId`, `signingKey`) and of status.repositoryIdentity (`id`, `signingKey`). Passed to every Job that opens
/// the repository as `--expect-repository-id` and `--expect-signing-key` (a copy's target as `--to-expect-*`), and
/// preferred to the identity recorded in status.
public struct ExpectedRepositoryIdentity: Codable, Sendable, Hashable {
  /// The repository id: 32 lowercase hex digits.
  public var repositoryId: String
  /// The hex Ed25519 public key that signs the repository's config, key files and manifests: 64 lowercase hex digits.
  public var signingKey: String

  public init(repositoryId: String, signingKey: String) {
    self.repositoryId = repositoryId
    self.signingKey = signingKey
  }

  /// Whether `s` is `count` lowercase hex digits (the engine prints ids and keys so).
  public static func isLowerHex(_ s: String, count: Int) -> Bool {
    s.utf8.count == count && s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
  }

  /// A value as an error message shows it: quoted, at most 80 characters (the values are public, not secrets).
  static func shown(_ s: String) -> String { s.count > 80 ? "'\(s.prefix(80))...'" : "'\(s)'" }

  /// Errors naming `field`.repositoryId / `field`.signingKey when a value does not have its shape.
  public func errors(at field: String) -> [SpecError] {
    var out: [SpecError] = []
    if !Self.isLowerHex(repositoryId, count: 32) {
      out.append(
        SpecError(
          field: "\(field).repositoryId",
          message: "must be the repository id, 32 lowercase hex digits (status.repositoryIdentity.id or the engine "
            + "result's repositoryId), got \(Self.shown(repositoryId))"))
    }
    if !Self.isLowerHex(signingKey, count: 64) {
      out.append(
        SpecError(
          field: "\(field).signingKey",
          message:
            "must be the repository's signing key, 64 lowercase hex digits (status.repositoryIdentity.signingKey "
            + "or the engine result's signingKey), got \(Self.shown(signingKey))"))
    }
    return out
  }
}

/// Copy progress of one replica.
public struct ReplicaStatus: Codable, Sendable, Hashable {
  /// The replica's name (spec.replicas[].name).
  public var name: String
  /// Pending (nothing copied yet), Copying, InSync (holds the primary's newest snapshot) or Failed.
  public var state: String?
  /// The primary's snapshot id that the replica's newest copy came from.
  public var lastCopiedSnapshot: String?
  /// The id of that copy in the replica repository (restore from the replica with it), when the copy wrote it.
  public var replicaSnapshot: String?
  /// Completion time of the primary backup that the replica's newest copy came from.
  public var lastCopiedBackupTime: Date?
  /// When the newest successful copy finished.
  public var lastCopyTime: Date?
  /// Seconds between the primary's newest successful backup and the newest backup the replica holds.
  public var lagSeconds: Int64?
  /// The copy Job running or last run.
  public var copyJob: String?
  /// What happened in the last copy, in a sentence.
  public var message: String?
  /// When the replica's data keys were last rewrapped (its own rotation, or following the primary's).
  public var lastKeyRotation: Date?
  /// When the replica's own key-encryption key is due for rotation (replicas with their own encryption).
  public var nextKeyRotation: Date?
  /// The key wrapping the replica's data keys since its last rotation, when it is not the spec's.
  public var currentKey: String?
  /// The dr.botrt.io/rotate-keys-now value last handled for this replica.
  public var lastHandledKeyRotationRequest: String?
  /// The state of the replica's key rotation, in a sentence.
  public var keyRotation: String?
  /// The replica repository's id and signing key, recorded from the first successful copy whose result names the
  /// replica's repository and pinned in every later Job that opens the replica (copies, its key rotations, restores,
  /// verifies and drills from it).
  public var repositoryIdentity: RepositoryIdentity?

  public init(
    name: String, state: String? = nil, lastCopiedSnapshot: String? = nil, replicaSnapshot: String? = nil,
    lastCopiedBackupTime: Date? = nil, lastCopyTime: Date? = nil, lagSeconds: Int64? = nil, copyJob: String? = nil,
    message: String? = nil, lastKeyRotation: Date? = nil, nextKeyRotation: Date? = nil, currentKey: String? = nil,
    lastHandledKeyRotationRequest: String? = nil, keyRotation: String? = nil
  ) {
    self.lastKeyRotation = lastKeyRotation
    self.nextKeyRotation = nextKeyRotation
    self.currentKey = currentKey
    self.lastHandledKeyRotationRequest = lastHandledKeyRotationRequest
    self.keyRotation = keyRotation
    self.name = name
    self.state = state
    self.lastCopiedSnapshot = lastCopiedSnapshot
    self.replicaSnapshot = replicaSnapshot
    self.lastCopiedBackupTime = lastCopiedBackupTime
    self.lastCopyTime = lastCopyTime
    self.lagSeconds = lagSeconds
    self.copyJob = copyJob
    self.message = message
  }
}

/// What to back up: exactly one of a PVC, several PVCs or a dump command.
public struct BackupSource: Codable, Sendable, Hashable {
  /// A PersistentVolumeClaim mounted read-only.
  public var pvc: PVCSource?
  /// A command whose standard output is streamed into the engine.
  public var command: ContainerSpec?
  /// Several PersistentVolumeClaims of the policy's namespace (a label selector or a list), each backed up as a
  /// snapshot of its own.
  public var claims: ClaimsSource?
  /// Only the namespace's Kubernetes objects, no volume (`spec.objects` selects them; default: the standard kinds).
  public var objects: ObjectsSource?

  public init(
    pvc: PVCSource? = nil, command: ContainerSpec? = nil, claims: ClaimsSource? = nil, objects: ObjectsSource? = nil
  ) {
    self.pvc = pvc
    self.command = command
    self.claims = claims
    self.objects = objects
  }
}

/// A source of the namespace's Kubernetes objects only (`source.objects: {}`): each snapshot holds the `_kubernetes`
/// entry alone, as a claim's snapshot holds it beside the claim with `spec.objects`. What is exported is
/// `spec.objects` (the standard kinds when that is unset).
public struct ObjectsSource: Codable, Sendable, Hashable {
  public init() {}
}

/// Several PersistentVolumeClaims of the policy's namespace: exactly one of a label selector or a list of names,
/// plus the read settings every selected claim is backed up with (as `PVCSource` has them for one claim).
public struct ClaimsSource: Codable, Sendable, Hashable {
  /// The claims whose labels match (`{}`: every claim of the namespace).
  public var selector: ClaimSelector?
  /// The claims by name.
  public var claimNames: [String]?
  /// Directory inside each volume.
  public var subPath: String?
  /// The user the backups read the claims as (default: the engine's user); 0 is root with DAC_READ_SEARCH only.
  public var runAsUser: Int64?
  /// The group the backups read the claims as (default: runAsUser's value when that is set).
  public var runAsGroup: Int64?
  /// The paths backed up, anchored at the backed-up directory (restic's --files-from, keeping the claim's layout;
  /// `IncludePaths`); nil or empty: everything.
  public var include: [String]?
  /// restic --exclude patterns; a leading `/` anchors at the backed-up directory.
  public var exclude: [String]?
  /// restic --exclude-file: files in the claim (anchored at the backed-up directory) whose lines are more
  /// `exclude` patterns, read at each backup as the claim's data (`EngineFileSelection.excludeFileRoot`).
  public var excludeFile: [String]?
  /// restic --exclude-if-present file names (NAME or NAME:HEADER).
  public var excludeIfPresent: [String]?
  /// restic --exclude-caches.
  public var excludeCaches: Bool?
  /// restic --one-file-system: mounts below the backed-up directory are left out.
  public var oneFileSystem: Bool?

  /// The most claims one policy backs up (claimNames' maxItems; of more claims a selector matches, the first this
  /// many by name are backed up and the policy says so).
  public static let maxClaims = 64

  public init(
    selector: ClaimSelector? = nil, claimNames: [String]? = nil, subPath: String? = nil, runAsUser: Int64? = nil,
    runAsGroup: Int64? = nil, exclude: [String]? = nil, excludeIfPresent: [String]? = nil, excludeCaches: Bool? = nil
  ) {
    self.selector = selector
    self.claimNames = claimNames
    self.subPath = subPath
    self.runAsUser = runAsUser
    self.runAsGroup = runAsGroup
    self.exclude = exclude
    self.excludeIfPresent = excludeIfPresent
    self.excludeCaches = excludeCaches
  }

  /// The read settings for one selected claim, as a single-claim source.
  public func pvc(_ claimName: String) -> PVCSource {
    var p = PVCSource(
      claimName: claimName, subPath: subPath, readOnly: true, runAsUser: runAsUser, runAsGroup: runAsGroup)
    p.include = include
    p.exclude = exclude
    p.excludeFile = excludeFile
    p.excludeIfPresent = excludeIfPresent
    p.excludeCaches = excludeCaches
    p.oneFileSystem = oneFileSystem
    return p
  }
}

/// A label selector of claims (metav1.LabelSelector: matchLabels and matchExpressions, all of which must match).
public struct ClaimSelector: Codable, Sendable, Hashable {
  public var matchLabels: [String: String]?
  public var matchExpressions: [ClaimSelectorRequirement]?

  public init(matchLabels: [String: String]? = nil, matchExpressions: [ClaimSelectorRequirement]? = nil) {
    self.matchLabels = matchLabels
    self.matchExpressions = matchExpressions
  }

  /// Whether `labels` match every label and every expression (an empty selector matches everything).
  public func matches(_ labels: [String: String]) -> Bool {
    for (k, v) in matchLabels ?? [:] where labels[k] != v { return false }
    for e in matchExpressions ?? [] where !e.matches(labels) { return false }
    return true
  }
}

/// One requirement of a `ClaimSelector`: key, operator (In, NotIn, Exists, DoesNotExist) and values.
public struct ClaimSelectorRequirement: Codable, Sendable, Hashable {
  public var key: String
  public var `operator`: String
  public var values: [String]?

  public init(key: String, operator op: String, values: [String]? = nil) {
    self.key = key
    self.operator = op
    self.values = values
  }

  /// The operators, as metav1 names them.
  public static let operators = ["In", "NotIn", "Exists", "DoesNotExist"]

  /// Whether `labels` meet the requirement (an unknown operator matches nothing; validation refuses it).
  public func matches(_ labels: [String: String]) -> Bool {
    let v = labels[key]
    switch self.operator {
    case "In": return v.map { (values ?? []).contains($0) } ?? false
    case "NotIn": return v.map { !(values ?? []).contains($0) } ?? true
    case "Exists": return v != nil
    case "DoesNotExist": return v == nil
    default: return false
    }
  }
}

/// A PersistentVolumeClaim to back up.
public struct PVCSource: Codable, Sendable, Hashable {
  /// Claim name.
  public var claimName: String
  /// Directory inside the volume.
  public var subPath: String?
  /// Always true (read-only mount).
  public var readOnly: Bool?
  /// The user the backup reads the claim as (default: the engine's user); 0 is root with DAC_READ_SEARCH only.
  public var runAsUser: Int64?
  /// The group the backup reads the claim as (default: runAsUser's value when that is set).
  public var runAsGroup: Int64?
  /// The paths backed up, anchored at the backed-up directory (restic's --files-from, keeping the claim's layout;
  /// `IncludePaths`); nil or empty: everything.
  public var include: [String]?
  /// restic --exclude patterns; a leading `/` anchors at the backed-up directory.
  public var exclude: [String]?
  /// restic --exclude-file: files in the claim (anchored at the backed-up directory) whose lines are more
  /// `exclude` patterns, read at each backup as the claim's data (`EngineFileSelection.excludeFileRoot`).
  public var excludeFile: [String]?
  /// restic --exclude-if-present file names (NAME or NAME:HEADER).
  public var excludeIfPresent: [String]?
  /// restic --exclude-caches.
  public var excludeCaches: Bool?
  /// restic --one-file-system: mounts below the backed-up directory are left out.
  public var oneFileSystem: Bool?

  public init(
    claimName: String, subPath: String? = nil, readOnly: Bool? = nil, runAsUser: Int64? = nil,
    runAsGroup: Int64? = nil
  ) {
    self.claimName = claimName
    self.subPath = subPath
    self.readOnly = readOnly
    self.runAsUser = runAsUser
    self.runAsGroup = runAsGroup
  }
}

/// Where the repository lives: exactly one backend.
public struct RepositorySpec: Codable, Sendable, Hashable {
  /// Whether two specs name the same location (kind, endpoint, bucket or account and container, prefix; or local
  /// path and claim), whatever their credentials and settings: the same repository. The CRD's CEL rule says the same.
  public func sameLocation(_ o: RepositorySpec) -> Bool {
    guard let mine = kind, let other = o.kind else { return false }
    switch (mine, other) {
    case (.s3(let a), .s3(let b)):
      return a.bucket == b.bucket && (a.prefix ?? "") == (b.prefix ?? "") && (a.endpoint ?? "") == (b.endpoint ?? "")
    case (.gcs(let a), .gcs(let b)):
      return a.bucket == b.bucket && (a.prefix ?? "") == (b.prefix ?? "") && (a.endpoint ?? "") == (b.endpoint ?? "")
    case (.azure(let a), .azure(let b)):
      return a.account == b.account && a.container == b.container && (a.prefix ?? "") == (b.prefix ?? "")
        && (a.endpoint ?? "") == (b.endpoint ?? "")
    case (.local(let a), .local(let b)):
      return a.path == b.path && (a.claimName ?? "") == (b.claimName ?? "")
    case (.s3, _), (.gcs, _), (.azure, _), (.local, _):
      return false
    }
  }

  /// S3 or S3-compatible.
  public var s3: S3Repository?
  /// Google Cloud Storage.
  public var gcs: GCSRepository?
  /// Azure Blob Storage.
  public var azure: AzureRepository?
  /// A local directory or PVC.
  public var local: LocalRepository?
  /// The repository's identity as the admin states it: every Job that opens this repository requires it from the
  /// first run on, instead of pinning what the first backup or copy finds (trust on first use).
  public var expectedIdentity: ExpectedRepositoryIdentity?

  public init(
    s3: S3Repository? = nil, gcs: GCSRepository? = nil, azure: AzureRepository? = nil, local: LocalRepository? = nil,
    expectedIdentity: ExpectedRepositoryIdentity? = nil
  ) {
    self.s3 = s3
    self.gcs = gcs
    self.azure = azure
    self.local = local
    self.expectedIdentity = expectedIdentity
  }

  /// The names of the backends that are set ("s3", "gcs", "azure", "local").
  public var configuredBackends: [String] { setChoiceNames }
}

/// An S3 bucket.
public struct S3Repository: Codable, Sendable, Hashable {
  public var bucket: String
  public var prefix: String?
  public var region: String?
  public var endpoint: String?
  public var forcePathStyle: Bool?
  public var credentialsSecretRef: SecretNameReference
  public var objectLock: ObjectLock?
  public var serverSideEncryption: S3ServerSideEncryption?

  public init(
    bucket: String, prefix: String? = nil, region: String? = nil, endpoint: String? = nil,
    forcePathStyle: Bool? = nil, credentialsSecretRef: SecretNameReference, objectLock: ObjectLock? = nil,
    serverSideEncryption: S3ServerSideEncryption? = nil
  ) {
    self.bucket = bucket
    self.prefix = prefix
    self.region = region
    self.endpoint = endpoint
    self.forcePathStyle = forcePathStyle
    self.credentialsSecretRef = credentialsSecretRef
    self.objectLock = objectLock
    self.serverSideEncryption = serverSideEncryption
  }
}

/// S3 Object Lock settings.
public struct ObjectLock: Codable, Sendable, Hashable {
  /// Object Lock mode.
  public enum Mode: String, Codable, Sendable, Hashable {
    case compliance, governance
  }

  public var mode: Mode
  public var days: Int32

  public init(mode: Mode, days: Int32) {
    self.mode = mode
    self.days = days
  }
}

/// Optional S3 server-side encryption.
public struct S3ServerSideEncryption: Codable, Sendable, Hashable {
  /// SSE mode.
  public enum Mode: String, Codable, Sendable, Hashable {
    case awsKMS = "aws:kms"
    case aes256 = "AES256"
  }

  public var mode: Mode
  public var kmsKeyId: String?

  public init(mode: Mode, kmsKeyId: String? = nil) {
    self.mode = mode
    self.kmsKeyId = kmsKeyId
  }
}

/// A Google Cloud Storage bucket.
public struct GCSRepository: Codable, Sendable, Hashable {
  public var bucket: String
  public var prefix: String?
  public var endpoint: String?
  public var credentialsSecretRef: SecretReference?

  public init(
    bucket: String, prefix: String? = nil, endpoint: String? = nil, credentialsSecretRef: SecretReference? = nil
  ) {
    self.bucket = bucket
    self.prefix = prefix
    self.endpoint = endpoint
    self.credentialsSecretRef = credentialsSecretRef
  }
}

/// An Azure Blob Storage container.
public struct AzureRepository: Codable, Sendable, Hashable {
  public var account: String
  public var container: String
  public var prefix: String?
  public var endpoint: String?
  public var credentialsSecretRef: SecretNameReference

  public init(
    account: String, container: String, prefix: String? = nil, endpoint: String? = nil,
    credentialsSecretRef: SecretNameReference
  ) {
    self.account = account
    self.container = container
    self.prefix = prefix
    self.endpoint = endpoint
    self.credentialsSecretRef = credentialsSecretRef
  }
}

/// A local directory, optionally on a PVC.
public struct LocalRepository: Codable, Sendable, Hashable {
  public var path: String
  public var claimName: String?

  public init(path: String, claimName: String? = nil) {
    self.path = path
    self.claimName = claimName
  }
}

/// Client-side encryption settings.
public struct EncryptionSpec: Codable, Sendable, Hashable {
  /// The key service.
  public var kms: KMSSpec
  /// Days between key rotations (1-90, default 90).
  public var keyRotationDays: Int?
  /// With localKeySecretRef: the Secret new master keys are taken from at each rotation (the first entry, by
  /// name, after the one in use).
  public var rotationKeysSecretRef: SecretNameReference?

  public init(kms: KMSSpec, keyRotationDays: Int? = nil, rotationKeysSecretRef: SecretNameReference? = nil) {
    self.kms = kms
    self.keyRotationDays = keyRotationDays
    self.rotationKeysSecretRef = rotationKeysSecretRef
  }
}

/// The key service: exactly one kind.
public struct KMSSpec: Codable, Sendable, Hashable {
  public var vaultTransit: VaultTransitKMS?
  public var awsKms: AWSKMS?
  public var localKeySecretRef: SecretReference?
  public var azureKeyVault: AzureKeyVaultKMS?
  public var gcpKms: GCPKMS?
  /// Allow http:// addresses and endpoints of the key service (default false: refused).
  public var allowPlaintextHTTP: Bool?

  public init(
    vaultTransit: VaultTransitKMS? = nil, awsKms: AWSKMS? = nil, localKeySecretRef: SecretReference? = nil,
    azureKeyVault: AzureKeyVaultKMS? = nil, gcpKms: GCPKMS? = nil, allowPlaintextHTTP: Bool? = nil
  ) {
    self.allowPlaintextHTTP = allowPlaintextHTTP
    self.vaultTransit = vaultTransit
    self.awsKms = awsKms
    self.localKeySecretRef = localKeySecretRef
    self.azureKeyVault = azureKeyVault
    self.gcpKms = gcpKms
  }

  /// The key service's URLs that must be https:// unless `allowPlaintextHTTP`: (field under kms, value).
  public var plaintextCheckedURLs: [(field: String, url: String)] { setChoices.flatMap(\.plaintextCheckedURLs) }

  /// Every KMS kind, in schema order.
  public static var allKinds: [String] { allChoiceNames }

  /// The names of the KMS kinds that are set.
  public var configuredKinds: [String] { setChoiceNames }
}

/// Azure Key Vault (wrapKey/unwrapKey).
public struct AzureKeyVaultKMS: Codable, Sendable, Hashable {
  public var vaultURL: String
  public var keyName: String
  public var keyVersion: String?
  public var authorityHost: String?
  public var credentialsSecretRef: SecretNameReference

  public init(
    vaultURL: String, keyName: String, keyVersion: String? = nil, authorityHost: String? = nil,
    credentialsSecretRef: SecretNameReference
  ) {
    self.vaultURL = vaultURL
    self.keyName = keyName
    self.keyVersion = keyVersion
    self.authorityHost = authorityHost
    self.credentialsSecretRef = credentialsSecretRef
  }
}

/// Google Cloud KMS (encrypt/decrypt).
public struct GCPKMS: Codable, Sendable, Hashable {
  /// projects/P/locations/L/keyRings/R/cryptoKeys/K.
  public var keyName: String
  public var endpoint: String?
  public var credentialsSecretRef: SecretReference?

  public init(keyName: String, endpoint: String? = nil, credentialsSecretRef: SecretReference? = nil) {
    self.keyName = keyName
    self.endpoint = endpoint
    self.credentialsSecretRef = credentialsSecretRef
  }
}

/// Vault or OpenBao Transit.
public struct VaultTransitKMS: Codable, Sendable, Hashable {
  public var address: String
  public var mount: String?
  public var key: String
  public var authSecretRef: SecretReference
  public var caSecretRef: SecretReference?

  public init(
    address: String, mount: String? = nil, key: String, authSecretRef: SecretReference,
    caSecretRef: SecretReference? = nil
  ) {
    self.address = address
    self.mount = mount
    self.key = key
    self.authSecretRef = authSecretRef
    self.caSecretRef = caSecretRef
  }
}

/// AWS KMS.
public struct AWSKMS: Codable, Sendable, Hashable {
  public var keyId: String
  public var region: String?
  public var endpoint: String?
  public var credentialsSecretRef: SecretNameReference?

  public init(
    keyId: String, region: String? = nil, endpoint: String? = nil, credentialsSecretRef: SecretNameReference? = nil
  ) {
    self.keyId = keyId
    self.region = region
    self.endpoint = endpoint
    self.credentialsSecretRef = credentialsSecretRef
  }
}

/// Which snapshots `forget --prune` keeps.
public struct RetentionSpec: Codable, Sendable, Hashable {
  public var keepLast: Int32?
  public var keepHourly: Int32?
  public var keepDaily: Int32?
  public var keepWeekly: Int32?
  public var keepMonthly: Int32?
  public var keepYearly: Int32?
  /// Keep everything younger than this (duration text).
  public var maxAge: String?

  public init(
    keepLast: Int32? = nil, keepHourly: Int32? = nil, keepDaily: Int32? = nil, keepWeekly: Int32? = nil,
    keepMonthly: Int32? = nil, keepYearly: Int32? = nil, maxAge: String? = nil
  ) {
    self.keepLast = keepLast
    self.keepHourly = keepHourly
    self.keepDaily = keepDaily
    self.keepWeekly = keepWeekly
    self.keepMonthly = keepMonthly
    self.keepYearly = keepYearly
    self.maxAge = maxAge
  }

  /// Whether no rule is set.
  public var isEmpty: Bool { self == RetentionSpec() }

  /// How far back, in seconds from the newest snapshot, the rules are guaranteed to keep a snapshot (keepLast
  /// counts as no span): the promise checked against the tier's keep column and the compliance minimums.
  ///
  /// `maxAge` keeps every snapshot within its age of the newest one. A calendar rule `keepX: n` keeps the newest
  /// snapshot of each of the last n calendar units that have one; the newest snapshot may lie at the very start of
  /// the current unit and the oldest kept one at the very end of its unit, so only n - 2 whole units are certain
  /// (a month counts 28 days, twelve months 365 days, a year 365 days). `keepMonthly: 86` is thus 7 years.
  public func keptSpanSeconds() throws(DurationError) -> Int64 {
    var span: Int64 = 0
    if let a = maxAge { span = try DurationText.parseSeconds(a, field: "retention.maxAge") }
    let day: Int64 = 86_400
    let certain: [(Int32?, (Int64) -> Int64)] = [
      (keepHourly, { $0 * 3_600 }), (keepDaily, { $0 * day }), (keepWeekly, { $0 * 7 * day }),
      (keepMonthly, Self.certainSeconds(months:)), (keepYearly, { $0 * 365 * day }),
    ]
    for (count, seconds) in certain {
      if let n = count, n > 2 { span = max(span, seconds(Int64(n) - 2)) }
    }
    return span
  }

  /// The fewest seconds `months` consecutive calendar months can last (12 months at least 365 days, any other
  /// month at least 28).
  public static func certainSeconds(months: Int64) -> Int64 {
    ((months / 12) * 365 + (months % 12) * 28) * 86_400
  }

  /// The smallest `keepMonthly` whose certain span (see `keptSpanSeconds`) is at least `seconds`.
  public static func keepMonthly(covering seconds: Int64) -> Int32 {
    var months: Int64 = 0
    while certainSeconds(months: months) < seconds { months += 1 }
    return Int32(clamping: months + 2)
  }
}

/// The observed state of a BackupPolicy.
public struct BackupPolicyStatus: Codable, Sendable, Hashable {
  public var observedGeneration: Int64?
  public var conditions: [Condition]?
  public var lastSuccessfulBackup: Date?
  /// The point in time of the newest successful snapshot (when its backup started reading the data); RPO ages count
  /// from it.
  public var lastSnapshotTime: Date?
  public var lastBackupAttempt: Date?
  public var lastSnapshot: String?
  public var lastBackupBytes: Int64?
  public var lastBackupStoredBytes: Int64?
  public var lastBackupDurationSeconds: Double?
  public var rpoAgeSeconds: Int64?
  public var rpoTargetSeconds: Int64?
  public var rpoSource: String?
  public var effectiveSchedule: String?
  public var scheduleSource: String?
  public var nextScheduledRun: Date?
  public var lastKeyRotation: Date?
  public var nextKeyRotation: Date?
  /// The key that wraps the repository since the last rotation, when it is not the one spec names: the AWS KMS
  /// key id a rotation created, or the entry of encryption.rotationKeysSecretRef in use.
  public var currentKey: String?
  /// The dr.botrt.io/rotate-keys-now value last acted on ("request:VALUE").
  public var lastHandledKeyRotationRequest: String?
  public var lastHandledTrigger: String?
  public var backupNamespace: String?
  public var lastFailure: String?
  public var replicas: [ReplicaStatus]?
  /// The primary repository's id and signing key, pinned in every Job that opens it.
  public var repositoryIdentity: RepositoryIdentity?
  /// The repository's stored bytes (its pack files' sizes summed) as the engine reported them after the newest
  /// successful backup or prune, whichever finished last.
  public var repositoryStoredBytes: Int64?
  /// The newest finished run of the periodic verify (spec.verify), newest by finish time.
  public var lastVerify: VerifyRunStatus?
  /// The source claim (spec.source.pvc) as last read: what a restore creates a missing claim from.
  public var sourceClaim: SourceClaimStatus?
  /// Where the backup pods are placed: the node of the pod that mounts the ReadWriteOnce source claim (unset when
  /// the backup may run on any node).
  public var placement: BackupPlacementStatus?
  /// The backup running now: bytes and files done, and an estimate of when it ends (updated at most every 10 s;
  /// absent when no backup runs).
  public var progress: RunProgress?
  /// The hooks of the newest backup run that had hooks (spec.hooks).
  public var lastHooks: HookRunStatus?
  /// Each claim of a multi-claim source (spec.source.claims): its last backup, placement and recorded spec.
  public var claims: [ClaimBackupStatus]?

  public init(
    observedGeneration: Int64? = nil, conditions: [Condition]? = nil, lastSuccessfulBackup: Date? = nil,
    lastBackupAttempt: Date? = nil, lastSnapshot: String? = nil, lastBackupBytes: Int64? = nil,
    lastBackupStoredBytes: Int64? = nil, lastBackupDurationSeconds: Double? = nil, rpoAgeSeconds: Int64? = nil,
    rpoTargetSeconds: Int64? = nil, rpoSource: String? = nil, effectiveSchedule: String? = nil,
    scheduleSource: String? = nil, nextScheduledRun: Date? = nil, lastKeyRotation: Date? = nil,
    nextKeyRotation: Date? = nil, currentKey: String? = nil, lastHandledKeyRotationRequest: String? = nil,
    lastHandledTrigger: String? = nil, backupNamespace: String? = nil,
    lastFailure: String? = nil, replicas: [ReplicaStatus]? = nil, lastSnapshotTime: Date? = nil
  ) {
    self.lastSnapshotTime = lastSnapshotTime
    self.observedGeneration = observedGeneration
    self.conditions = conditions
    self.lastSuccessfulBackup = lastSuccessfulBackup
    self.lastBackupAttempt = lastBackupAttempt
    self.lastSnapshot = lastSnapshot
    self.lastBackupBytes = lastBackupBytes
    self.lastBackupStoredBytes = lastBackupStoredBytes
    self.lastBackupDurationSeconds = lastBackupDurationSeconds
    self.rpoAgeSeconds = rpoAgeSeconds
    self.rpoTargetSeconds = rpoTargetSeconds
    self.rpoSource = rpoSource
    self.effectiveSchedule = effectiveSchedule
    self.scheduleSource = scheduleSource
    self.nextScheduledRun = nextScheduledRun
    self.lastKeyRotation = lastKeyRotation
    self.nextKeyRotation = nextKeyRotation
    self.currentKey = currentKey
    self.lastHandledKeyRotationRequest = lastHandledKeyRotationRequest
    self.lastHandledTrigger = lastHandledTrigger
    self.backupNamespace = backupNamespace
    self.lastFailure = lastFailure
    self.replicas = replicas
  }
}

/// A PVC-source policy's claim as the controller last read it: what a RecoveryPlan restore (`into.pvc.create`)
/// creates a missing claim from.
public struct SourceClaimStatus: Codable, Sendable, Hashable {
  public var name: String
  public var namespace: String
  public var accessModes: [String]?
  /// spec.storageClassName when it names a class.
  public var storageClassName: String?
  /// The claim names the empty class (`storageClassName: ""`: no dynamic provisioning, a pre-made volume binds).
  /// Recorded apart because a merge patch cannot carry an empty string into a new status object: the apiserver
  /// reads it as null and refuses it.
  public var noStorageClass: Bool?
  public var volumeMode: String?
  /// spec.resources.requests.storage (a quantity such as 10Gi).
  public var storage: String?
  /// When the claim was read with this spec (unchanged while the spec stays the same).
  public var observedTime: Date?

  public init(
    name: String, namespace: String, accessModes: [String]? = nil, storageClassName: String? = nil,
    noStorageClass: Bool? = nil, volumeMode: String? = nil, storage: String? = nil, observedTime: Date? = nil
  ) {
    self.noStorageClass = noStorageClass
    self.name = name
    self.namespace = namespace
    self.accessModes = accessModes
    self.storageClassName = storageClassName
    self.volumeMode = volumeMode
    self.storage = storage
    self.observedTime = observedTime
  }
}

/// One claim of a multi-claim source (spec.source.claims): its backups' outcome, where they run, and the claim's spec
/// as last read (what a RecoveryPlan restore of the claim creates it from when it is missing).
public struct ClaimBackupStatus: Codable, Sendable, Hashable {
  /// The claim's name.
  public var name: String
  /// Pending (no backup of it finished yet), Succeeded, Failed, or Partial (a snapshot was stored but some files
  /// could not be read).
  public var result: String?
  /// What the last finished backup of the claim did, in a sentence.
  public var message: String?
  /// When the newest successful backup of the claim finished.
  public var lastSuccessfulBackup: Date?
  /// The point in time of the claim's newest successful snapshot (when its backup started reading).
  public var lastSnapshotTime: Date?
  /// The id of the claim's newest successful snapshot.
  public var lastSnapshotId: String?
  /// The claim's backup CronJob.
  public var cronJob: String?
  /// Where the claim's backup pods run (RWO placement); unset when they may run on any node.
  public var placement: BackupPlacementStatus?
  /// The claim's spec as last read; kept when the claim is gone.
  public var claim: SourceClaimStatus?
  /// Set when the claim no longer exists: its record stays so that a restore can create it again.
  public var gone: Bool?

  public init(
    name: String, result: String? = nil, message: String? = nil, lastSuccessfulBackup: Date? = nil,
    lastSnapshotTime: Date? = nil, lastSnapshotId: String? = nil, cronJob: String? = nil,
    placement: BackupPlacementStatus? = nil, claim: SourceClaimStatus? = nil, gone: Bool? = nil
  ) {
    self.name = name
    self.result = result
    self.message = message
    self.lastSuccessfulBackup = lastSuccessfulBackup
    self.lastSnapshotTime = lastSnapshotTime
    self.lastSnapshotId = lastSnapshotId
    self.cronJob = cronJob
    self.placement = placement
    self.claim = claim
    self.gone = gone
  }
}

/// Where a PVC-source policy's backup pods run: on the node of the pod that mounts its ReadWriteOnce (or
/// ReadWriteOncePod) claim, since only that node can mount it (docs/api-reference.md, "RWO placement").
public struct BackupPlacementStatus: Codable, Sendable, Hashable {
  /// The node (its name) the backup CronJob's and on-demand Job's pods are bound to by node affinity.
  public var node: String
  /// The pod that mounts the claim there.
  public var pod: String
  /// Where the backup runs and why, in a sentence.
  public var message: String?

  public init(node: String, pod: String, message: String? = nil) {
    self.node = node
    self.pod = pod
    self.message = message
  }
}

/// One finished run of the periodic verify (`botrt-engine verify --all --read-data-subset`, spec.verify).
public struct VerifyRunStatus: Codable, Sendable, Hashable {
  /// When the run finished.
  public var time: Date?
  /// The verify Job.
  public var job: String
  /// Whether the repository verified (no error).
  public var succeeded: Bool
  /// Snapshots checked, when the engine reported it.
  public var snapshots: Int?
  /// Bytes of pack data read from the storage to check content (the engine's bytesDownloaded).
  public var bytesDownloaded: Int64?
  /// Problems found (the engine's errors; 1 for a failed run without a result).
  public var errors: Int?
  /// The first problem, or why the run failed without a result.
  public var message: String?

  public init(
    time: Date?, job: String, succeeded: Bool, snapshots: Int? = nil, bytesDownloaded: Int64? = nil,
    errors: Int? = nil, message: String? = nil
  ) {
    self.time = time
    self.job = job
    self.succeeded = succeeded
    self.snapshots = snapshots
    self.bytesDownloaded = bytesDownloaded
    self.errors = errors
    self.message = message
  }
}

/// Condition types of a BackupPolicy.
public enum BackupPolicyCondition {
  public static let ready = "Ready"
  public static let scheduleActive = "ScheduleActive"
  public static let lastBackupSucceeded = "LastBackupSucceeded"
  public static let rpoMet = "RPOMet"
  public static let keyRotationDue = "KeyRotationDue"
  public static let replicasInSync = "ReplicasInSync"
  /// True while a replica's key-encryption key is due for rotation or its data keys wait to be rewrapped under
  /// the primary's new key (present only on policies with replicas).
  public static let replicaKeyRotationDue = "ReplicaKeyRotationDue"
  /// Whether the newest finished retention run (the prune CronJob's `forget --prune`) succeeded; the reason names
  /// the outcome and the message the Job.
  public static let retentionApplied = "RetentionApplied"
  /// Whether the newest finished periodic verify (spec.verify) found the repository intact: True VerifyPassed, False
  /// VerifyFailed naming the Job and the first problem, Unknown NoVerifyYet; absent without spec.verify.
  public static let repositoryVerified = "RepositoryVerified"
  /// Whether the controller may run the policy's hooks (spec.hooks): False HooksForbidden when exec or the backup
  /// Pod's patch was refused (the opt-in RoleBinding is missing), naming the RoleBinding to create; absent without
  /// hooks.
  public static let hooksPermitted = "HooksPermitted"
}
