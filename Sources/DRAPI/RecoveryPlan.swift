import Foundation
import KubeCore

/// RecoveryPlan: ordered procedures that bring a service back from backup, with a measured RTO.
public struct RecoveryPlan: StatusResource, Hashable {
  /// The REST identity of recoveryplans.dr.botrt.io.
  public static let resource = ResourceDescriptor(
    group: DRGroup.group, version: DRGroup.version, plural: "recoveryplans", kind: "RecoveryPlan", namespaced: true)

  public var apiVersion: String = DRGroup.apiVersion
  public var kind: String = "RecoveryPlan"
  public var metadata: ObjectMeta
  public var spec: RecoveryPlanSpec
  public var status: RecoveryPlanStatus?

  public init(metadata: ObjectMeta, spec: RecoveryPlanSpec, status: RecoveryPlanStatus? = nil) {
    self.metadata = metadata
    self.spec = spec
    self.status = status
  }
}

/// The desired state of a RecoveryPlan.
public struct RecoveryPlanSpec: Codable, Sendable, Hashable {
  public var tier: Tier
  /// RTO override (duration text).
  public var rtoTarget: String?
  public var compliance: [ComplianceProfile]?
  /// Where the service is recovered (default: the plan's namespace).
  public var targetNamespace: String?
  public var procedures: [RecoveryProcedure]
  /// On-demand run token.
  public var trigger: String?

  public init(
    tier: Tier, rtoTarget: String? = nil, compliance: [ComplianceProfile]? = nil, targetNamespace: String? = nil,
    procedures: [RecoveryProcedure], trigger: String? = nil
  ) {
    self.tier = tier
    self.rtoTarget = rtoTarget
    self.compliance = compliance
    self.targetNamespace = targetNamespace
    self.procedures = procedures
    self.trigger = trigger
  }
}

/// A named group of steps.
public struct RecoveryProcedure: Codable, Sendable, Hashable {
  public var name: String
  public var description: String?
  public var steps: [RecoveryStep]

  public init(name: String, description: String? = nil, steps: [RecoveryStep]) {
    self.name = name
    self.description = description
    self.steps = steps
  }
}

/// The action of a recovery step.
public enum StepAction: String, Codable, Sendable, Hashable, CaseIterable {
  case scaleDown, scaleUp, restore, verify, waitReady, job
}

/// A Deployment or StatefulSet.
public struct WorkloadReference: Codable, Sendable, Hashable {
  /// Workload kind.
  public enum Kind: String, Codable, Sendable, Hashable {
    case deployment = "Deployment"
    case statefulSet = "StatefulSet"
  }

  public var kind: Kind
  public var name: String
  public var namespace: String?

  public init(kind: Kind, name: String, namespace: String? = nil) {
    self.kind = kind
    self.name = name
    self.namespace = namespace
  }
}

/// Where restored data goes: exactly one of a PVC or a command reading the stream.
public struct RestoreDestination: Codable, Sendable, Hashable {
  public var pvc: RestorePVC?
  public var command: ContainerSpec?
  /// The snapshot's Kubernetes objects (a policy with spec.objects), re-created in a namespace (RecoveryPlans only).
  public var objects: RestoreObjects?

  public init(pvc: RestorePVC? = nil, command: ContainerSpec? = nil, objects: RestoreObjects? = nil) {
    self.pvc = pvc
    self.command = command
    self.objects = objects
  }
}

/// Where and which of a snapshot's Kubernetes objects a restore step re-creates (`botrt-objects apply`).
public struct RestoreObjects: Codable, Sendable, Hashable {
  /// The namespace they are created in (default: the plan's spec.targetNamespace, else the plan's own). The restore
  /// Job runs there; another namespace than the plan's must allow it (dr.botrt.io/recovery-allowed-from).
  public var namespace: String?
  /// Only these kinds (`Kind` or `Kind.group`; default: every kind in the snapshot).
  public var kinds: [String]?

  public init(namespace: String? = nil, kinds: [String]? = nil) {
    self.namespace = namespace
    self.kinds = kinds
  }
}

/// A PVC to restore into.
public struct RestorePVC: Codable, Sendable, Hashable {
  public var claimName: String
  public var subPath: String?
  /// The user the restore writes as (default: the engine's user); 0 restores recorded owners as root with CHOWN,
  /// DAC_OVERRIDE, FOWNER and FSETID.
  public var runAsUser: Int64?
  /// The group the restore writes as (default: runAsUser's value when that is set).
  public var runAsGroup: Int64?
  /// The claim's namespace (RecoveryPlans only; default: the plan's spec.targetNamespace, else the plan's own). The
  /// restore Job runs there.
  public var namespace: String?
  /// Set: create the claim when it does not exist, from the policy's recorded source claim (status.sourceClaim)
  /// with these overrides (RecoveryPlans only). An existing claim is restored into as it is.
  public var create: RestoreClaimCreate?

  public init(
    claimName: String, subPath: String? = nil, runAsUser: Int64? = nil, runAsGroup: Int64? = nil,
    namespace: String? = nil, create: RestoreClaimCreate? = nil
  ) {
    self.claimName = claimName
    self.subPath = subPath
    self.runAsUser = runAsUser
    self.runAsGroup = runAsGroup
    self.namespace = namespace
    self.create = create
  }
}

/// How a restore creates a missing claim: overrides of the recorded source claim's spec.
public struct RestoreClaimCreate: Codable, Sendable, Hashable {
  /// Storage class (default: the recorded one; "" asks for none, so a pre-provisioned volume binds).
  public var storageClassName: String?
  /// Storage request, a quantity such as 10Gi (default: the recorded request).
  public var size: String?
  /// Access modes (default: the recorded ones, else ReadWriteOnce).
  public var accessModes: [String]?

  public init(storageClassName: String? = nil, size: String? = nil, accessModes: [String]? = nil) {
    self.storageClassName = storageClassName
    self.size = size
    self.accessModes = accessModes
  }
}

/// What to restore (policy and snapshot) and where.
public struct RestoreStepSpec: Codable, Sendable, Hashable {
  public var policyRef: LocalObjectReference
  /// "latest" or a snapshot id (default latest).
  public var snapshot: String?
  /// Newest snapshot before this time instead.
  public var beforeTime: Date?
  public var into: RestoreDestination
  /// One of the policy's spec.replicas to restore from instead of its primary repository.
  public var replica: String?
  /// The claim to restore, of a policy that backs up several (spec.source.claims): `latest` and `beforeTime` pick
  /// among that claim's snapshots.
  public var claim: String?

  public init(
    policyRef: LocalObjectReference, snapshot: String? = nil, beforeTime: Date? = nil, into: RestoreDestination,
    replica: String? = nil, claim: String? = nil
  ) {
    self.claim = claim
    self.policyRef = policyRef
    self.snapshot = snapshot
    self.beforeTime = beforeTime
    self.into = into
    self.replica = replica
  }
}

/// A query run against a restored database and compared with an expected result.
public struct DatabaseQuery: Codable, Sendable, Hashable {
  public var image: String
  public var command: [String]?
  public var args: [String]?
  public var env: [EnvVar]?
  /// Written to standard input.
  public var query: String?
  /// Expected standard output, compared after trimming.
  public var expected: String?

  public init(
    image: String, command: [String]? = nil, args: [String]? = nil, env: [EnvVar]? = nil, query: String? = nil,
    expected: String? = nil
  ) {
    self.image = image
    self.command = command
    self.args = args
    self.env = env
    self.query = query
    self.expected = expected
  }

  /// Whether `output` matches `expected` (both trimmed of surrounding whitespace; no expectation matches any output).
  public func matches(output: String) -> Bool {
    guard let expected else { return true }
    return output.trimmingCharacters(in: .whitespacesAndNewlines)
      == expected.trimmingCharacters(in: .whitespacesAndNewlines)
  }
}

/// What a verify step checks.
public struct VerifyStepSpec: Codable, Sendable, Hashable {
  public var policyRef: LocalObjectReference?
  public var readData: Bool?
  public var databaseQuery: DatabaseQuery?
  /// One of the policy's spec.replicas to verify instead of its primary repository (needs policyRef).
  public var replica: String?

  public init(
    policyRef: LocalObjectReference? = nil, readData: Bool? = nil,
    databaseQuery: DatabaseQuery? = nil, replica: String? = nil
  ) {
    self.policyRef = policyRef
    self.readData = readData
    self.databaseQuery = databaseQuery
    self.replica = replica
  }
}

/// One step of a procedure.
public struct RecoveryStep: Codable, Sendable, Hashable {
  public var name: String
  public var description: String?
  public var action: StepAction
  public var targets: [WorkloadReference]?
  public var replicas: Int32?
  public var restore: RestoreStepSpec?
  public var verify: VerifyStepSpec?
  public var job: ContainerSpec?
  /// Time limit of one attempt (duration text, default 10m).
  public var timeout: String?
  /// Attempts after the first failure (default 0).
  public var retries: Int32?

  public init(
    name: String, description: String? = nil, action: StepAction, targets: [WorkloadReference]? = nil,
    replicas: Int32? = nil, restore: RestoreStepSpec? = nil, verify: VerifyStepSpec? = nil, job: ContainerSpec? = nil,
    timeout: String? = nil, retries: Int32? = nil
  ) {
    self.name = name
    self.description = description
    self.action = action
    self.targets = targets
    self.replicas = replicas
    self.restore = restore
    self.verify = verify
    self.job = job
    self.timeout = timeout
    self.retries = retries
  }

  /// The timeout of one attempt in seconds (default 10 minutes).
  public func timeoutSeconds(field: String) throws(SpecError) -> Int64 {
    guard let timeout else { return 600 }
    do {
      return try DurationText.parseSeconds(timeout, field: field)
    } catch {
      throw SpecError(field: field, message: error.description)
    }
  }
}

/// Phase of a RecoveryPlan's last run.
public enum PlanPhase: String, Codable, Sendable, Hashable {
  case idle = "Idle"
  case running = "Running"
  case succeeded = "Succeeded"
  case failed = "Failed"
}

/// State of one step.
public enum StepState: String, Codable, Sendable, Hashable {
  case pending = "Pending"
  case running = "Running"
  case succeeded = "Succeeded"
  case failed = "Failed"
  case skipped = "Skipped"
}

/// Progress of one step of the last run.
public struct StepStatus: Codable, Sendable, Hashable {
  public var procedure: String
  public var name: String
  public var action: String?
  public var state: StepState
  public var attempts: Int32?
  public var startTime: Date?
  public var completionTime: Date?
  public var jobName: String?
  public var message: String?
  /// A running restore step's progress, from its Job's engine progress lines (at most every 10 s); cleared when the
  /// step ends.
  public var progress: RunProgress?

  public init(
    procedure: String, name: String, action: String? = nil, state: StepState, attempts: Int32? = nil,
    startTime: Date? = nil, completionTime: Date? = nil, jobName: String? = nil, message: String? = nil,
    progress: RunProgress? = nil
  ) {
    self.procedure = procedure
    self.name = name
    self.action = action
    self.state = state
    self.attempts = attempts
    self.startTime = startTime
    self.completionTime = completionTime
    self.jobName = jobName
    self.message = message
    self.progress = progress
  }
}

/// A replica count remembered by a scaleDown step.
public struct ScaledWorkload: Codable, Sendable, Hashable {
  public var kind: String
  public var namespace: String?
  public var name: String
  public var replicas: Int32

  public init(kind: String, namespace: String? = nil, name: String, replicas: Int32) {
    self.kind = kind
    self.namespace = namespace
    self.name = name
    self.replicas = replicas
  }
}

/// The observed state of a RecoveryPlan.
public struct RecoveryPlanStatus: Codable, Sendable, Hashable {
  public var observedGeneration: Int64?
  public var conditions: [Condition]?
  public var phase: PlanPhase?
  public var lastHandledTrigger: String?
  public var startTime: Date?
  public var completionTime: Date?
  public var rtoTargetSeconds: Int64?
  public var rtoTarget: String?
  public var rtoSource: String?
  public var rtoAchievedSeconds: Int64?
  public var rtoAchieved: String?
  public var failedStep: String?
  public var message: String?
  public var steps: [StepStatus]?
  public var scaledWorkloads: [ScaledWorkload]?

  public init(
    observedGeneration: Int64? = nil, conditions: [Condition]? = nil, phase: PlanPhase? = nil,
    lastHandledTrigger: String? = nil, startTime: Date? = nil, completionTime: Date? = nil,
    rtoTargetSeconds: Int64? = nil, rtoTarget: String? = nil, rtoSource: String? = nil,
    rtoAchievedSeconds: Int64? = nil, rtoAchieved: String? = nil, failedStep: String? = nil, message: String? = nil,
    steps: [StepStatus]? = nil, scaledWorkloads: [ScaledWorkload]? = nil
  ) {
    self.observedGeneration = observedGeneration
    self.conditions = conditions
    self.phase = phase
    self.lastHandledTrigger = lastHandledTrigger
    self.startTime = startTime
    self.completionTime = completionTime
    self.rtoTargetSeconds = rtoTargetSeconds
    self.rtoTarget = rtoTarget
    self.rtoSource = rtoSource
    self.rtoAchievedSeconds = rtoAchievedSeconds
    self.rtoAchieved = rtoAchieved
    self.failedStep = failedStep
    self.message = message
    self.steps = steps
    self.scaledWorkloads = scaledWorkloads
  }
}

/// Condition types of a RecoveryPlan.
public enum RecoveryPlanCondition {
  public static let ready = "Ready"
  public static let succeeded = "Succeeded"
  public static let rtoMet = "RTOMet"
}
