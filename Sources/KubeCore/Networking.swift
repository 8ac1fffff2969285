import Foundation

// Typed built-in kinds of the networking and RBAC groups (`KubeStruct`: unmodeled members are kept).

/// metav1.LabelSelector.
public struct LabelSelector: KubeStruct {
  public var matchLabels: [String: String]?
  public var matchExpressions: [LabelSelectorRequirement]?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(matchLabels: [String: String]? = nil, matchExpressions: [LabelSelectorRequirement]? = nil) {
    self.matchLabels = matchLabels
    self.matchExpressions = matchExpressions
  }

  public static var fields: [KubeField<LabelSelector>] {
    [.field("matchLabels", \.matchLabels), .field("matchExpressions", \.matchExpressions)]
  }
}

/// metav1.LabelSelectorRequirement.
public struct LabelSelectorRequirement: KubeStruct {
  public var key = ""
  /// "In", "NotIn", "Exists" or "DoesNotExist".
  public var `operator` = ""
  public var values: [String]?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(key: String, operator op: String, values: [String]? = nil) {
    self.key = key
    self.operator = op
    self.values = values
  }

  public static var fields: [KubeField<LabelSelectorRequirement>] {
    [.field("key", \.key), .field("operator", \.operator), .field("values", \.values)]
  }
}

/// networking.k8s.io/v1 NetworkPolicy.
public struct NetworkPolicy: KubeResource, KubeStruct {
  public static let resource = ResourceDescriptor.networkPolicies
  public var apiVersion = "networking.k8s.io/v1"
  public var kind = "NetworkPolicy"
  public var metadata = ObjectMeta()
  public var spec: NetworkPolicySpec?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(metadata: ObjectMeta, spec: NetworkPolicySpec? = nil) {
    self.metadata = metadata
    self.spec = spec
  }

  public static var fields: [KubeField<NetworkPolicy>] {
    [
      .field("apiVersion", \.apiVersion), .field("kind", \.kind), .codable("metadata", \.metadata),
      .field("spec", \.spec),
    ]
  }
}

/// networking.k8s.io/v1 NetworkPolicySpec; `podSelector` is always written (empty: every pod of the namespace).
public struct NetworkPolicySpec: KubeStruct {
  public var podSelector = LabelSelector()
  /// "Ingress", "Egress".
  public var policyTypes: [String]?
  public var ingress: [NetworkPolicyIngressRule]?
  public var egress: [NetworkPolicyEgressRule]?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(
    podSelector: LabelSelector = LabelSelector(), policyTypes: [String]? = nil,
    ingress: [NetworkPolicyIngressRule]? = nil, egress: [NetworkPolicyEgressRule]? = nil
  ) {
    self.podSelector = podSelector
    self.policyTypes = policyTypes
    self.ingress = ingress
    self.egress = egress
  }

  public static var fields: [KubeField<NetworkPolicySpec>] {
    [
      .field("podSelector", \.podSelector), .field("policyTypes", \.policyTypes), .field("ingress", \.ingress),
      .field("egress", \.egress),
    ]
  }
}

/// networking.k8s.io/v1 NetworkPolicyIngressRule.
public struct NetworkPolicyIngressRule: KubeStruct {
  public var from: [NetworkPolicyPeer]?
  public var ports: [NetworkPolicyPort]?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(from: [NetworkPolicyPeer]? = nil, ports: [NetworkPolicyPort]? = nil) {
    self.from = from
    self.ports = ports
  }

  public static var fields: [KubeField<NetworkPolicyIngressRule>] {
    [.field("from", \.from), .field("ports", \.ports)]
  }
}

/// networking.k8s.io/v1 NetworkPolicyEgressRule.
public struct NetworkPolicyEgressRule: KubeStruct {
  public var to: [NetworkPolicyPeer]?
  public var ports: [NetworkPolicyPort]?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(to: [NetworkPolicyPeer]? = nil, ports: [NetworkPolicyPort]? = nil) {
    self.to = to
    self.ports = ports
  }

  public static var fields: [KubeField<NetworkPolicyEgressRule>] { [.field("to", \.to), .field("ports", \.ports)] }
}

/// networking.k8s.io/v1 NetworkPolicyPeer.
public struct NetworkPolicyPeer: KubeStruct {
  public var ipBlock: IPBlock?
  public var namespaceSelector: LabelSelector?
  public var podSelector: LabelSelector?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(ipBlock: IPBlock? = nil, namespaceSelector: LabelSelector? = nil, podSelector: LabelSelector? = nil) {
    self.ipBlock = ipBlock
    self.namespaceSelector = namespaceSelector
    self.podSelector = podSelector
  }

  public static var fields: [KubeField<NetworkPolicyPeer>] {
    [
      .field("ipBlock", \.ipBlock), .field("namespaceSelector", \.namespaceSelector),
      .field("podSelector", \.podSelector),
    ]
  }
}

/// networking.k8s.io/v1 IPBlock.
public struct IPBlock: KubeStruct {
  public var cidr = ""
  public var except: [String]?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(cidr: String, except: [String]? = nil) {
    self.cidr = cidr
    self.except = except
  }

  public static var fields: [KubeField<IPBlock>] { [.field("cidr", \.cidr), .field("except", \.except)] }
}

/// networking.k8s.io/v1 NetworkPolicyPort; `port` is a number or a named port.
public struct NetworkPolicyPort: KubeStruct {
  /// "TCP", "UDP" or "SCTP".
  public var `protocol`: String?
  public var port: IntOrString?
  public var endPort: Int64?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(protocol proto: String? = nil, port: IntOrString? = nil) {
    self.protocol = proto
    self.port = port
  }

  public static var fields: [KubeField<NetworkPolicyPort>] {
    [.field("protocol", \.protocol), .field("port", \.port), .field("endPort", \.endPort)]
  }
}

/// intstr.IntOrString.
public enum IntOrString: JSONConvertible, Codable, Hashable {
  case int(Int64)
  case string(String)

  public init?(json: JSONValue) {
    switch json {
    case .int(let i): self = .int(i)
    case .string(let s): self = .string(s)
    default: return nil
    }
  }

  public var json: JSONValue {
    switch self {
    case .int(let i): .int(i)
    case .string(let s): .string(s)
    }
  }

  public init(from decoder: Decoder) throws {
    guard let v = IntOrString(json: try JSONValue(from: decoder)) else {
      throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not an int or string"))
    }
    self = v
  }

  public func encode(to encoder: Encoder) throws { try json.encode(to: encoder) }
}

/// rbac.authorization.k8s.io/v1 Role.
public struct Role: KubeStruct, KubeResource {
  public static let resource = ResourceDescriptor(
    group: "rbac.authorization.k8s.io", version: "v1", plural: "roles", kind: "Role", namespaced: true)
  public var apiVersion = "rbac.authorization.k8s.io/v1"
  public var kind = "Role"
  public var metadata = ObjectMeta()
  public var rules: [PolicyRule]?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(metadata: ObjectMeta, rules: [PolicyRule]? = nil) {
    self.metadata = metadata
    self.rules = rules
  }

  public static var fields: [KubeField<Role>] {
    [
      .field("apiVersion", \.apiVersion), .field("kind", \.kind), .codable("metadata", \.metadata),
      .field("rules", \.rules),
    ]
  }
}

/// rbac.authorization.k8s.io/v1 PolicyRule.
public struct PolicyRule: KubeStruct {
  public var apiGroups: [String]?
  public var resources: [String]?
  public var verbs: [String] = []
  public var resourceNames: [String]?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(apiGroups: [String]? = nil, resources: [String]? = nil, verbs: [String], resourceNames: [String]? = nil) {
    self.apiGroups = apiGroups
    self.resources = resources
    self.verbs = verbs
    self.resourceNames = resourceNames
  }

  public static var fields: [KubeField<PolicyRule>] {
    [
      .field("apiGroups", \.apiGroups), .field("resources", \.resources), .field("verbs", \.verbs),
      .field("resourceNames", \.resourceNames),
    ]
  }
}

/// rbac.authorization.k8s.io/v1 RoleBinding.
public struct RoleBinding: KubeStruct, KubeResource {
  public static let resource = ResourceDescriptor(
    group: "rbac.authorization.k8s.io", version: "v1", plural: "rolebindings", kind: "RoleBinding", namespaced: true)
  public var apiVersion = "rbac.authorization.k8s.io/v1"
  public var kind = "RoleBinding"
  public var metadata = ObjectMeta()
  public var roleRef = RoleRef()
  public var subjects: [Subject]?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(metadata: ObjectMeta, roleRef: RoleRef, subjects: [Subject]? = nil) {
    self.metadata = metadata
    self.roleRef = roleRef
    self.subjects = subjects
  }

  public static var fields: [KubeField<RoleBinding>] {
    [
      .field("apiVersion", \.apiVersion), .field("kind", \.kind), .codable("metadata", \.metadata),
      .field("roleRef", \.roleRef), .field("subjects", \.subjects),
    ]
  }
}

/// rbac.authorization.k8s.io/v1 RoleRef.
public struct RoleRef: KubeStruct {
  public var apiGroup = ""
  public var kind = ""
  public var name = ""
  public var unknownFields = UnknownFields()

  public init() {}

  public init(apiGroup: String = "rbac.authorization.k8s.io", kind: String = "Role", name: String) {
    self.apiGroup = apiGroup
    self.kind = kind
    self.name = name
  }

  public static var fields: [KubeField<RoleRef>] {
    [.field("apiGroup", \.apiGroup), .field("kind", \.kind), .field("name", \.name)]
  }
}

/// rbac.authorization.k8s.io/v1 Subject.
public struct Subject: KubeStruct {
  public var kind = ""
  public var name = ""
  public var namespace: String?
  public var apiGroup: String?
  public var unknownFields = UnknownFields()

  public init() {}

  public init(kind: String, name: String, namespace: String? = nil, apiGroup: String? = nil) {
    self.kind = kind
    self.name = name
    self.namespace = namespace
    self.apiGroup = apiGroup
  }

  /// A ServiceAccount of `namespace`.
  public static func serviceAccount(_ name: String, namespace: String) -> Subject {
    Subject(kind: "ServiceAccount", name: name, namespace: namespace)
  }

  public static var fields: [KubeField<Subject>] {
    [.field("kind", \.kind), .field("name", \.name), .field("namespace", \.namespace), .field("apiGroup", \.apiGroup)]
  }
}
