import Foundation

// Typed scheduling fields of core/v1 PodSpec: node affinity and tolerations (the fields the controller sets), every
// other member kept (`KubeStruct`).

/// core/v1 Affinity (only node affinity is typed; pod affinity and anti-affinity are kept as unknown fields).
public struct Affinity: KubeStruct {
  public var nodeAffinity: NodeAffinity?
  public var unknownFields = UnknownFields()

  public init() {}
  public init(nodeAffinity: NodeAffinity?) { self.nodeAffinity = nodeAffinity }

  public static var fields: [KubeField<Affinity>] { [.field("nodeAffinity", \.nodeAffinity)] }
}

/// core/v1 NodeAffinity (the required part; the preferred part is kept as an unknown field).
public struct NodeAffinity: KubeStruct {
  public var requiredDuringSchedulingIgnoredDuringExecution: NodeSelector?
  public var unknownFields = UnknownFields()

  public init() {}
  public init(required: NodeSelector?) { self.requiredDuringSchedulingIgnoredDuringExecution = required }

  public static var fields: [KubeField<NodeAffinity>] {
    [.field("requiredDuringSchedulingIgnoredDuringExecution", \.requiredDuringSchedulingIgnoredDuringExecution)]
  }
}

/// core/v1 NodeSelector: the terms are ORed.
public struct NodeSelector: KubeStruct {
  public var nodeSelectorTerms: [NodeSelectorTerm] = []
  public var unknownFields = UnknownFields()

  public init() {}
  public init(nodeSelectorTerms: [NodeSelectorTerm]) { self.nodeSelectorTerms = nodeSelectorTerms }

  public static var fields: [KubeField<NodeSelector>] { [.field("nodeSelectorTerms", \.nodeSelectorTerms)] }
}

/// core/v1 NodeSelectorTerm: the requirements are ANDed.
public struct NodeSelectorTerm: KubeStruct {
  public var matchExpressions: [NodeSelectorRequirement]?
  public var matchFields: [NodeSelectorRequirement]?
  public var unknownFields = UnknownFields()

  public init() {}
  public init(matchExpressions: [NodeSelectorRequirement]? = nil, matchFields: [NodeSelectorRequirement]? = nil) {
    self.matchExpressions = matchExpressions
    self.matchFields = matchFields
  }

  public static var fields: [KubeField<NodeSelectorTerm>] {
    [.field("matchExpressions", \.matchExpressions), .field("matchFields", \.matchFields)]
  }
}

/// core/v1 NodeSelectorRequirement.
public struct NodeSelectorRequirement: KubeStruct {
  public var key = ""
  /// "In", "NotIn", "Exists", "DoesNotExist", "Gt" or "Lt".
  public var `operator` = ""
  public var values: [String]?
  public var unknownFields = UnknownFields()

  public init() {}
  public init(key: String, operator op: String, values: [String]? = nil) {
    self.key = key
    self.operator = op
    self.values = values
  }

  public static var fields: [KubeField<NodeSelectorRequirement>] {
    [.field("key", \.key), .field("operator", \.operator), .field("values", \.values)]
  }
}

/// core/v1 Toleration.
public struct Toleration: KubeStruct {
  public var key: String?
  /// "Exists" or "Equal" (the default).
  public var `operator`: String?
  public var value: String?
  /// "NoSchedule", "PreferNoSchedule" or "NoExecute"; unset: every effect.
  public var effect: String?
  public var tolerationSeconds: Int64?
  public var unknownFields = UnknownFields()

  public init() {}
  public init(
    key: String? = nil, operator op: String? = nil, value: String? = nil, effect: String? = nil,
    tolerationSeconds: Int64? = nil
  ) {
    self.key = key
    self.operator = op
    self.value = value
    self.effect = effect
    self.tolerationSeconds = tolerationSeconds
  }

  public static var fields: [KubeField<Toleration>] {
    [
      .field("key", \.key), .field("operator", \.operator), .field("value", \.value), .field("effect", \.effect),
      .field("tolerationSeconds", \.tolerationSeconds),
    ]
  }
}
