import Foundation

/// Group, version and resource (plural): the identity of a REST collection.
public struct GroupVersionResource: Sendable, Hashable, CustomStringConvertible {
  /// Empty for the core group.
  public var group: String
  public var version: String
  public var resource: String

  public init(group: String, version: String, resource: String) {
    self.group = group
    self.version = version
    self.resource = resource
  }

  /// "v1" for the core group, otherwise "group/version".
  public var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }

  public var description: String { group.isEmpty ? "\(resource).\(version)" : "\(resource).\(version).\(group)" }
}

/// Everything needed to address a resource: group, version, plural, kind and scope.
public struct ResourceDescriptor: Sendable, Hashable, CustomStringConvertible {
  public var group: String
  public var version: String
  public var plural: String
  public var kind: String
  public var namespaced: Bool

  public init(group: String, version: String, plural: String, kind: String, namespaced: Bool) {
    self.group = group
    self.version = version
    self.plural = plural
    self.kind = kind
    self.namespaced = namespaced
  }

  public var gvr: GroupVersionResource { GroupVersionResource(group: group, version: version, resource: plural) }

  /// "v1" for the core group, otherwise "group/version".
  public var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }

  /// "/api/v1" or "/apis/group/version".
  public var groupVersionPath: String { group.isEmpty ? "/api/\(version)" : "/apis/\(group)/\(version)" }

  public var description: String { group.isEmpty ? "\(plural).\(version)" : "\(plural).\(version).\(group)" }

  public static let configMaps = ResourceDescriptor(
    group: "", version: "v1", plural: "configmaps", kind: "ConfigMap", namespaced: true)
  public static let secrets = ResourceDescriptor(
    group: "", version: "v1", plural: "secrets", kind: "Secret", namespaced: true)
  public static let namespaces = ResourceDescriptor(
    group: "", version: "v1", plural: "namespaces", kind: "Namespace", namespaced: false)
  public static let events = ResourceDescriptor(
    group: "", version: "v1", plural: "events", kind: "Event", namespaced: true)
  public static let pods = ResourceDescriptor(group: "", version: "v1", plural: "pods", kind: "Pod", namespaced: true)
  public static let nodes = ResourceDescriptor(
    group: "", version: "v1", plural: "nodes", kind: "Node", namespaced: false)
  public static let serviceAccounts = ResourceDescriptor(
    group: "", version: "v1", plural: "serviceaccounts", kind: "ServiceAccount", namespaced: true)
  public static let leases = ResourceDescriptor(
    group: "coordination.k8s.io", version: "v1", plural: "leases", kind: "Lease", namespaced: true)
  public static let customResourceDefinitions = ResourceDescriptor(
    group: "apiextensions.k8s.io", version: "v1", plural: "customresourcedefinitions",
    kind: "CustomResourceDefinition", namespaced: false)
  public static let persistentVolumeClaims = ResourceDescriptor(
    group: "", version: "v1", plural: "persistentvolumeclaims", kind: "PersistentVolumeClaim", namespaced: true)
  public static let jobs = ResourceDescriptor(
    group: "batch", version: "v1", plural: "jobs", kind: "Job", namespaced: true)
  public static let networkPolicies = ResourceDescriptor(
    group: "networking.k8s.io", version: "v1", plural: "networkpolicies", kind: "NetworkPolicy", namespaced: true)
}
