import Foundation

// Typed status of the Jobs and Pods the controller runs: the fields it reads back (a run's state and times, and the
// engine's result in a container's termination message), every other member kept (`KubeStruct`). Times stay as the
// apiserver wrote them (RFC 3339 text); the `...Date` accessors parse them.

/// batch/v1 JobStatus.
public struct JobStatus: KubeStruct {
  public var conditions: [JobCondition]?
  public var startTime: String?
  public var completionTime: String?
  public var active: Int64?
  public var succeeded: Int64?
  public var failed: Int64?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(conditions: [JobCondition]? = nil, startTime: String? = nil, completionTime: String? = nil) {
    self.conditions = conditions
    self.startTime = startTime
    self.completionTime = completionTime
  }

  public static var fields: [KubeField<JobStatus>] {
    [
      .field("conditions", \.conditions), .field("startTime", \.startTime),
      .field("completionTime", \.completionTime), .field("active", \.active), .field("succeeded", \.succeeded),
      .field("failed", \.failed),
    ]
  }

  /// The status of a Job as read unstructured (a cache's or a list's body), decoding only its `status`.
  public static func of(_ job: JSONValue) -> JobStatus { job["status"].flatMap(JobStatus.init(json:)) ?? JobStatus() }

  /// The condition of `type` whose status is "True", if any.
  public func trueCondition(_ type: String) -> JobCondition? {
    conditions?.first { $0.type == type && $0.status == "True" }
  }

  /// The Complete condition, when True.
  public var complete: JobCondition? { trueCondition("Complete") }
  /// The Failed condition, when True.
  public var failedCondition: JobCondition? { trueCondition("Failed") }
  /// Whether the Job has finished: Complete or Failed is True.
  public var isFinished: Bool { complete != nil || failedCondition != nil }

  public var startDate: Date? { startTime.flatMap(KubeJSON.parseDate) }
  public var completionDate: Date? { completionTime.flatMap(KubeJSON.parseDate) }
}

/// batch/v1 JobCondition.
public struct JobCondition: KubeStruct {
  public var type = ""
  public var status = ""
  public var reason: String?
  public var message: String?
  public var lastTransitionTime: String?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(
    type: String, status: String, reason: String? = nil, message: String? = nil, lastTransitionTime: String? = nil
  ) {
    self.type = type
    self.status = status
    self.reason = reason
    self.message = message
    self.lastTransitionTime = lastTransitionTime
  }

  public static var fields: [KubeField<JobCondition>] {
    [
      .field("type", \.type), .field("status", \.status), .field("reason", \.reason), .field("message", \.message),
      .field("lastTransitionTime", \.lastTransitionTime),
    ]
  }

  public var lastTransitionDate: Date? { lastTransitionTime.flatMap(KubeJSON.parseDate) }
  /// "reason: message", of the parts that are set.
  public var summary: String { [reason, message].compactMap { $0 }.joined(separator: ": ") }
}

/// core/v1 PodStatus.
public struct PodStatus: KubeStruct {
  public var phase: String?
  public var reason: String?
  public var message: String?
  public var startTime: String?
  public var initContainerStatuses: [ContainerStatus]?
  public var containerStatuses: [ContainerStatus]?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(
    phase: String?, initContainerStatuses: [ContainerStatus]? = nil, containerStatuses: [ContainerStatus]? = nil
  ) {
    self.phase = phase
    self.initContainerStatuses = initContainerStatuses
    self.containerStatuses = containerStatuses
  }

  public static var fields: [KubeField<PodStatus>] {
    [
      .field("phase", \.phase), .field("reason", \.reason), .field("message", \.message),
      .field("startTime", \.startTime), .field("initContainerStatuses", \.initContainerStatuses),
      .field("containerStatuses", \.containerStatuses),
    ]
  }

  /// The status of a Pod as read unstructured (a cache's or a list's body), decoding only its `status`.
  public static func of(_ pod: JSONValue) -> PodStatus { pod["status"].flatMap(PodStatus.init(json:)) ?? PodStatus() }

  /// Whether the Pod has ended: phase Succeeded or Failed.
  public var isFinished: Bool { phase == "Succeeded" || phase == "Failed" }

  /// The regular containers' statuses, then the init containers'.
  public var allContainerStatuses: [ContainerStatus] { (containerStatuses ?? []) + (initContainerStatuses ?? []) }
}

/// core/v1 ContainerStatus.
public struct ContainerStatus: KubeStruct {
  public var name = ""
  public var state: ContainerState?
  public var restartCount: Int64?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(name: String, state: ContainerState?) {
    self.name = name
    self.state = state
  }

  public static var fields: [KubeField<ContainerStatus>] {
    [.field("name", \.name), .field("state", \.state), .field("restartCount", \.restartCount)]
  }

  /// The container's terminated state, once it ended.
  public var terminated: ContainerStateTerminated? { state?.terminated }
}

/// core/v1 ContainerState: the terminated state is modeled; waiting and running are kept unknown.
public struct ContainerState: KubeStruct {
  public var terminated: ContainerStateTerminated?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(terminated: ContainerStateTerminated?) { self.terminated = terminated }

  public static var fields: [KubeField<ContainerState>] { [.field("terminated", \.terminated)] }
}

/// core/v1 ContainerStateTerminated; `message` is the termination message (the engine's JSON result).
public struct ContainerStateTerminated: KubeStruct {
  public var exitCode: Int64?
  public var reason: String?
  public var message: String?
  public var startedAt: String?
  public var finishedAt: String?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(
    exitCode: Int64?, reason: String? = nil, message: String? = nil, startedAt: String? = nil,
    finishedAt: String? = nil
  ) {
    self.exitCode = exitCode
    self.reason = reason
    self.message = message
    self.startedAt = startedAt
    self.finishedAt = finishedAt
  }

  public static var fields: [KubeField<ContainerStateTerminated>] {
    [
      .field("exitCode", \.exitCode), .field("reason", \.reason), .field("message", \.message),
      .field("startedAt", \.startedAt), .field("finishedAt", \.finishedAt),
    ]
  }

  /// The exit code as the kubelet reports it (an int32).
  public var exitCode32: Int32? { exitCode.map { Int32(truncatingIfNeeded: $0) } }
  public var startedDate: Date? { startedAt.flatMap(KubeJSON.parseDate) }
  public var finishedDate: Date? { finishedAt.flatMap(KubeJSON.parseDate) }
}
