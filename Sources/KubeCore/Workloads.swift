import Foundation

// Typed built-in kinds of the batch and core groups: the fields the controller sets or reads, every other member
// kept (`KubeStruct`). Names that DRAPI also uses for its own spec types are spelled differently here
// (`EnvVariable`, `SecretKeyReference`, `ContainerResources`).

/// batch/v1 Job.
public struct Job: KubeResource, KubeStruct {
  public static let resource = ResourceDescriptor.jobs
  public var apiVersion = "batch/v1"
  public var kind = "Job"
  public var metadata = ObjectMeta()
  public var spec: JobSpec?
  /// Written by the job controller; never set by the controller's builders.
  public var status: JobStatus?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(metadata: ObjectMeta, spec: JobSpec? = nil) {
    self.metadata = metadata
    self.spec = spec
  }

  public static var fields: [KubeField<Job>] {
    [
      .field("apiVersion", \.apiVersion), .field("kind", \.kind), .codable("metadata", \.metadata),
      .field("spec", \.spec), .field("status", \.status),
    ]
  }
}

/// batch/v1 JobSpec.
public struct JobSpec: KubeStruct {
  public var backoffLimit: Int64?
  public var activeDeadlineSeconds: Int64?
  /// Seconds after the Job finished when the TTL controller deletes it (and what it owns).
  public var ttlSecondsAfterFinished: Int64?
  public var template = PodTemplateSpec()
  public var unknownFields = UnknownFields()

  public init() {}

  public init(
    backoffLimit: Int64? = nil, activeDeadlineSeconds: Int64? = nil, ttlSecondsAfterFinished: Int64? = nil,
    template: PodTemplateSpec
  ) {
    self.backoffLimit = backoffLimit
    self.activeDeadlineSeconds = activeDeadlineSeconds
    self.ttlSecondsAfterFinished = ttlSecondsAfterFinished
    self.template = template
  }

  public static var fields: [KubeField<JobSpec>] {
    [
      .field("backoffLimit", \.backoffLimit), .field("activeDeadlineSeconds", \.activeDeadlineSeconds),
      .field("ttlSecondsAfterFinished", \.ttlSecondsAfterFinished), .field("template", \.template),
    ]
  }
}

/// batch/v1 (or v1beta1) CronJob; `apiVersion` is the version the cluster serves.
public struct CronJob: KubeObject, KubeStruct {
  public var apiVersion = "batch/v1"
  public var kind = "CronJob"
  public var metadata = ObjectMeta()
  public var spec: CronJobSpec?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(apiVersion: String = "batch/v1", metadata: ObjectMeta, spec: CronJobSpec? = nil) {
    self.apiVersion = apiVersion
    self.metadata = metadata
    self.spec = spec
  }

  public static var fields: [KubeField<CronJob>] {
    [
      .field("apiVersion", \.apiVersion), .field("kind", \.kind), .codable("metadata", \.metadata),
      .field("spec", \.spec),
    ]
  }
}

/// batch/v1 CronJobSpec.
public struct CronJobSpec: KubeStruct {
  public var schedule = ""
  public var suspend: Bool?
  /// "Allow", "Forbid" or "Replace".
  public var concurrencyPolicy: String?
  public var startingDeadlineSeconds: Int64?
  public var successfulJobsHistoryLimit: Int64?
  public var failedJobsHistoryLimit: Int64?
  public var jobTemplate = JobTemplateSpec()
  public var unknownFields = UnknownFields()

  public init() {}

  public init(
    schedule: String, suspend: Bool? = nil, concurrencyPolicy: String? = nil, startingDeadlineSeconds: Int64? = nil,
    successfulJobsHistoryLimit: Int64? = nil, failedJobsHistoryLimit: Int64? = nil, jobTemplate: JobTemplateSpec
  ) {
    self.schedule = schedule
    self.suspend = suspend
    self.concurrencyPolicy = concurrencyPolicy
    self.startingDeadlineSeconds = startingDeadlineSeconds
    self.successfulJobsHistoryLimit = successfulJobsHistoryLimit
    self.failedJobsHistoryLimit = failedJobsHistoryLimit
    self.jobTemplate = jobTemplate
  }

  public static var fields: [KubeField<CronJobSpec>] {
    [
      .field("schedule", \.schedule), .field("suspend", \.suspend), .field("concurrencyPolicy", \.concurrencyPolicy),
      .field("startingDeadlineSeconds", \.startingDeadlineSeconds),
      .field("successfulJobsHistoryLimit", \.successfulJobsHistoryLimit),
      .field("failedJobsHistoryLimit", \.failedJobsHistoryLimit), .field("jobTemplate", \.jobTemplate),
    ]
  }
}

/// batch/v1 JobTemplateSpec.
public struct JobTemplateSpec: KubeStruct {
  public var metadata: ObjectMeta?
  public var spec: JobSpec?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(metadata: ObjectMeta? = nil, spec: JobSpec? = nil) {
    self.metadata = metadata
    self.spec = spec
  }

  public static var fields: [KubeField<JobTemplateSpec>] { [.codable("metadata", \.metadata), .field("spec", \.spec)] }
}

/// core/v1 Pod.
public struct Pod: KubeResource, KubeStruct {
  public static let resource = ResourceDescriptor.pods
  public var apiVersion = "v1"
  public var kind = "Pod"
  public var metadata = ObjectMeta()
  public var spec: PodSpec?
  /// Written by the kubelet.
  public var status: PodStatus?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(metadata: ObjectMeta, spec: PodSpec? = nil) {
    self.metadata = metadata
    self.spec = spec
  }

  public static var fields: [KubeField<Pod>] {
    [
      .field("apiVersion", \.apiVersion), .field("kind", \.kind), .codable("metadata", \.metadata),
      .field("spec", \.spec), .field("status", \.status),
    ]
  }
}

/// core/v1 PodTemplateSpec.
public struct PodTemplateSpec: KubeStruct {
  public var metadata: ObjectMeta?
  public var spec: PodSpec?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(metadata: ObjectMeta? = nil, spec: PodSpec? = nil) {
    self.metadata = metadata
    self.spec = spec
  }

  public static var fields: [KubeField<PodTemplateSpec>] { [.codable("metadata", \.metadata), .field("spec", \.spec)] }
}

/// core/v1 PodSpec.
public struct PodSpec: KubeStruct {
  public var serviceAccountName: String?
  public var automountServiceAccountToken: Bool?
  /// "Always", "OnFailure" or "Never".
  public var restartPolicy: String?
  public var securityContext: PodSecurityContext?
  public var volumes: [Volume]?
  public var initContainers: [Container]?
  public var containers: [Container] = []
  public var nodeSelector: [String: String]?
  /// The node the pod was bound to (set by the scheduler, or by the pod's author).
  public var nodeName: String?
  public var affinity: Affinity?
  public var tolerations: [Toleration]?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(
    serviceAccountName: String? = nil, automountServiceAccountToken: Bool? = nil, restartPolicy: String? = nil,
    securityContext: PodSecurityContext? = nil, volumes: [Volume]? = nil, initContainers: [Container]? = nil,
    containers: [Container]
  ) {
    self.serviceAccountName = serviceAccountName
    self.automountServiceAccountToken = automountServiceAccountToken
    self.restartPolicy = restartPolicy
    self.securityContext = securityContext
    self.volumes = volumes
    self.initContainers = initContainers
    self.containers = containers
  }

  public static var fields: [KubeField<PodSpec>] {
    [
      .field("serviceAccountName", \.serviceAccountName),
      .field("automountServiceAccountToken", \.automountServiceAccountToken),
      .field("restartPolicy", \.restartPolicy), .field("securityContext", \.securityContext),
      .field("volumes", \.volumes), .field("initContainers", \.initContainers), .field("containers", \.containers),
      .field("nodeSelector", \.nodeSelector), .field("nodeName", \.nodeName), .field("affinity", \.affinity),
      .field("tolerations", \.tolerations),
    ]
  }
}

/// core/v1 PodSecurityContext.
public struct PodSecurityContext: KubeStruct {
  public var runAsNonRoot: Bool?
  public var runAsUser: Int64?
  public var runAsGroup: Int64?
  public var fsGroup: Int64?
  public var seccompProfile: SeccompProfile?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(
    runAsNonRoot: Bool? = nil, runAsUser: Int64? = nil, runAsGroup: Int64? = nil, fsGroup: Int64? = nil,
    seccompProfile: SeccompProfile? = nil
  ) {
    self.runAsNonRoot = runAsNonRoot
    self.runAsUser = runAsUser
    self.runAsGroup = runAsGroup
    self.fsGroup = fsGroup
    self.seccompProfile = seccompProfile
  }

  public static var fields: [KubeField<PodSecurityContext>] {
    [
      .field("runAsNonRoot", \.runAsNonRoot), .field("runAsUser", \.runAsUser), .field("runAsGroup", \.runAsGroup),
      .field("fsGroup", \.fsGroup), .field("seccompProfile", \.seccompProfile),
    ]
  }
}

/// core/v1 SeccompProfile.
public struct SeccompProfile: KubeStruct {
  /// "RuntimeDefault", "Localhost" or "Unconfined".
  public var type = ""
  public var unknownFields = UnknownFields()

  public init() {}
  public init(type: String) { self.type = type }

  /// The container runtime's default profile.
  public static let runtimeDefault = SeccompProfile(type: "RuntimeDefault")

  public static var fields: [KubeField<SeccompProfile>] { [.field("type", \.type)] }
}

/// core/v1 SecurityContext (of a container).
public struct SecurityContext: KubeStruct {
  public var allowPrivilegeEscalation: Bool?
  public var readOnlyRootFilesystem: Bool?
  public var runAsNonRoot: Bool?
  public var runAsUser: Int64?
  public var runAsGroup: Int64?
  public var capabilities: Capabilities?
  public var seccompProfile: SeccompProfile?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(
    allowPrivilegeEscalation: Bool? = nil, readOnlyRootFilesystem: Bool? = nil, runAsNonRoot: Bool? = nil,
    runAsUser: Int64? = nil, runAsGroup: Int64? = nil, capabilities: Capabilities? = nil,
    seccompProfile: SeccompProfile? = nil
  ) {
    self.allowPrivilegeEscalation = allowPrivilegeEscalation
    self.readOnlyRootFilesystem = readOnlyRootFilesystem
    self.runAsNonRoot = runAsNonRoot
    self.runAsUser = runAsUser
    self.runAsGroup = runAsGroup
    self.capabilities = capabilities
    self.seccompProfile = seccompProfile
  }

  public static var fields: [KubeField<SecurityContext>] {
    [
      .field("allowPrivilegeEscalation", \.allowPrivilegeEscalation),
      .field("readOnlyRootFilesystem", \.readOnlyRootFilesystem), .field("runAsNonRoot", \.runAsNonRoot),
      .field("runAsUser", \.runAsUser), .field("runAsGroup", \.runAsGroup), .field("capabilities", \.capabilities),
      .field("seccompProfile", \.seccompProfile),
    ]
  }
}

/// core/v1 Capabilities.
public struct Capabilities: KubeStruct {
  public var add: [String]?
  public var drop: [String]?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(add: [String]? = nil, drop: [String]? = nil) {
    self.add = add
    self.drop = drop
  }

  public static var fields: [KubeField<Capabilities>] { [.field("add", \.add), .field("drop", \.drop)] }
}

/// core/v1 Container.
public struct Container: KubeStruct {
  public var name = ""
  public var image: String?
  public var command: [String]?
  public var args: [String]?
  public var workingDir: String?
  public var env: [EnvVariable]?
  public var volumeMounts: [VolumeMount]?
  public var resources: ContainerResources?
  public var securityContext: SecurityContext?
  public var terminationMessagePath: String?
  /// "File" or "FallbackToLogsOnError".
  public var terminationMessagePolicy: String?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(
    name: String, image: String? = nil, command: [String]? = nil, args: [String]? = nil, workingDir: String? = nil,
    env: [EnvVariable]? = nil, volumeMounts: [VolumeMount]? = nil, resources: ContainerResources? = nil,
    securityContext: SecurityContext? = nil, terminationMessagePath: String? = nil,
    terminationMessagePolicy: String? = nil
  ) {
    self.name = name
    self.image = image
    self.command = command
    self.args = args
    self.workingDir = workingDir
    self.env = env
    self.volumeMounts = volumeMounts
    self.resources = resources
    self.securityContext = securityContext
    self.terminationMessagePath = terminationMessagePath
    self.terminationMessagePolicy = terminationMessagePolicy
  }

  public static var fields: [KubeField<Container>] {
    [
      .field("name", \.name), .field("image", \.image), .field("command", \.command), .field("args", \.args),
      .field("workingDir", \.workingDir), .field("env", \.env), .field("volumeMounts", \.volumeMounts),
      .field("resources", \.resources), .field("securityContext", \.securityContext),
      .field("terminationMessagePath", \.terminationMessagePath),
      .field("terminationMessagePolicy", \.terminationMessagePolicy),
    ]
  }
}

/// core/v1 EnvVar (a container's environment variable).
public struct EnvVariable: KubeStruct {
  public var name = ""
  public var value: String?
  public var valueFrom: EnvVariableSource?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(name: String, value: String? = nil, valueFrom: EnvVariableSource? = nil) {
    self.name = name
    self.value = value
    self.valueFrom = valueFrom
  }

  /// A variable read from a Secret's key.
  public static func secret(_ name: String, secret: String, key: String, optional: Bool? = nil) -> EnvVariable {
    EnvVariable(
      name: name,
      valueFrom: EnvVariableSource(secretKeyRef: SecretKeyReference(name: secret, key: key, optional: optional)))
  }

  public static var fields: [KubeField<EnvVariable>] {
    [.field("name", \.name), .field("value", \.value), .field("valueFrom", \.valueFrom)]
  }
}

/// core/v1 EnvVarSource.
public struct EnvVariableSource: KubeStruct {
  public var secretKeyRef: SecretKeyReference?
  public var unknownFields = UnknownFields()

  public init() {}
  public init(secretKeyRef: SecretKeyReference?) { self.secretKeyRef = secretKeyRef }

  public static var fields: [KubeField<EnvVariableSource>] { [.field("secretKeyRef", \.secretKeyRef)] }
}

/// core/v1 SecretKeySelector.
public struct SecretKeyReference: KubeStruct {
  public var name = ""
  public var key = ""
  public var optional: Bool?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(name: String, key: String, optional: Bool? = nil) {
    self.name = name
    self.key = key
    self.optional = optional
  }

  public static var fields: [KubeField<SecretKeyReference>] {
    [.field("name", \.name), .field("key", \.key), .field("optional", \.optional)]
  }
}

/// core/v1 VolumeMount.
public struct VolumeMount: KubeStruct {
  public var name = ""
  public var mountPath = ""
  public var readOnly: Bool?
  public var subPath: String?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(name: String, mountPath: String, readOnly: Bool? = nil, subPath: String? = nil) {
    self.name = name
    self.mountPath = mountPath
    self.readOnly = readOnly
    self.subPath = subPath
  }

  public static var fields: [KubeField<VolumeMount>] {
    [
      .field("name", \.name), .field("mountPath", \.mountPath), .field("readOnly", \.readOnly),
      .field("subPath", \.subPath),
    ]
  }
}

/// core/v1 ResourceRequirements: quantities as written ("500m", "1Gi").
public struct ContainerResources: KubeStruct {
  public var requests: [String: String]?
  public var limits: [String: String]?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(requests: [String: String]? = nil, limits: [String: String]? = nil) {
    self.requests = requests
    self.limits = limits
  }

  public static var fields: [KubeField<ContainerResources>] {
    [.field("requests", \.requests), .field("limits", \.limits)]
  }
}

/// core/v1 Volume: the sources the controller mounts (emptyDir, secret, persistentVolumeClaim); others are kept.
public struct Volume: KubeStruct {
  public var name = ""
  public var emptyDir: EmptyDirVolumeSource?
  public var secret: SecretVolumeSource?
  public var persistentVolumeClaim: ClaimVolumeSource?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(
    name: String, emptyDir: EmptyDirVolumeSource? = nil, secret: SecretVolumeSource? = nil,
    persistentVolumeClaim: ClaimVolumeSource? = nil
  ) {
    self.name = name
    self.emptyDir = emptyDir
    self.secret = secret
    self.persistentVolumeClaim = persistentVolumeClaim
  }

  public static var fields: [KubeField<Volume>] {
    [
      .field("name", \.name), .field("emptyDir", \.emptyDir), .field("secret", \.secret),
      .field("persistentVolumeClaim", \.persistentVolumeClaim),
    ]
  }
}

/// core/v1 EmptyDirVolumeSource.
public struct EmptyDirVolumeSource: KubeStruct {
  public var medium: String?
  public var sizeLimit: String?
  public var unknownFields = UnknownFields()

  public init() {}

  public static var fields: [KubeField<EmptyDirVolumeSource>] {
    [.field("medium", \.medium), .field("sizeLimit", \.sizeLimit)]
  }
}

/// core/v1 SecretVolumeSource.
public struct SecretVolumeSource: KubeStruct {
  public var secretName: String?
  public var optional: Bool?
  public var unknownFields = UnknownFields()

  public init() {}
  public init(secretName: String?, optional: Bool? = nil) {
    self.secretName = secretName
    self.optional = optional
  }

  public static var fields: [KubeField<SecretVolumeSource>] {
    [.field("secretName", \.secretName), .field("optional", \.optional)]
  }
}

/// core/v1 PersistentVolumeClaimVolumeSource.
public struct ClaimVolumeSource: KubeStruct {
  public var claimName = ""
  public var readOnly: Bool?
  public var unknownFields = UnknownFields()

  public init() {}
  public init(claimName: String, readOnly: Bool? = nil) {
    self.claimName = claimName
    self.readOnly = readOnly
  }

  public static var fields: [KubeField<ClaimVolumeSource>] {
    [.field("claimName", \.claimName), .field("readOnly", \.readOnly)]
  }
}

/// core/v1 ServiceAccount.
public struct ServiceAccount: KubeResource, KubeStruct {
  public static let resource = ResourceDescriptor.serviceAccounts
  public var apiVersion = "v1"
  public var kind = "ServiceAccount"
  public var metadata = ObjectMeta()
  public var automountServiceAccountToken: Bool?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(metadata: ObjectMeta, automountServiceAccountToken: Bool? = nil) {
    self.metadata = metadata
    self.automountServiceAccountToken = automountServiceAccountToken
  }

  public static var fields: [KubeField<ServiceAccount>] {
    [
      .field("apiVersion", \.apiVersion), .field("kind", \.kind), .codable("metadata", \.metadata),
      .field("automountServiceAccountToken", \.automountServiceAccountToken),
    ]
  }
}

/// core/v1 PersistentVolumeClaim: the fields a restore creates a claim with and reads back.
public struct PersistentVolumeClaim: KubeResource, KubeStruct {
  public static let resource = ResourceDescriptor.persistentVolumeClaims
  public var apiVersion = "v1"
  public var kind = "PersistentVolumeClaim"
  public var metadata = ObjectMeta()
  public var spec: PersistentVolumeClaimSpec?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(metadata: ObjectMeta, spec: PersistentVolumeClaimSpec? = nil) {
    self.metadata = metadata
    self.spec = spec
  }

  public static var fields: [KubeField<PersistentVolumeClaim>] {
    [
      .field("apiVersion", \.apiVersion), .field("kind", \.kind), .codable("metadata", \.metadata),
      .field("spec", \.spec),
    ]
  }
}

/// core/v1 PersistentVolumeClaimSpec: access modes, class, volume mode and the storage request.
public struct PersistentVolumeClaimSpec: KubeStruct {
  public var accessModes: [String]?
  /// Unset: the cluster's default class; "": no class.
  public var storageClassName: String?
  public var volumeMode: String?
  public var resources: ContainerResources?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(
    accessModes: [String]? = nil, storageClassName: String? = nil, volumeMode: String? = nil,
    resources: ContainerResources? = nil
  ) {
    self.accessModes = accessModes
    self.storageClassName = storageClassName
    self.volumeMode = volumeMode
    self.resources = resources
  }

  public static var fields: [KubeField<PersistentVolumeClaimSpec>] {
    [
      .field("accessModes", \.accessModes), .field("storageClassName", \.storageClassName),
      .field("volumeMode", \.volumeMode), .field("resources", \.resources),
    ]
  }
}
