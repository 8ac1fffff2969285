import Foundation
import KubeCore

/// One resource of a group-version as discovery lists it.
public struct APIResourceInfo: Codable, Sendable, Hashable {
  /// The plural, or "plural/subresource" for subresources.
  public var name: String
  public var singularName: String?
  public var namespaced: Bool
  public var kind: String
  public var verbs: [String]
  public var shortNames: [String]?
}

/// The answer of `/apis/GROUP/VERSION` or `/api/v1`.
public struct APIResourceList: Codable, Sendable, Hashable {
  public var groupVersion: String
  public var resources: [APIResourceInfo]
}

/// One group with its versions, from `/apis` (the core group has the empty name).
public struct APIGroupInfo: Codable, Sendable, Hashable {
  /// One version of the group.
  public struct Version: Codable, Sendable, Hashable {
    public var groupVersion: String
    public var version: String
  }
  public var name: String
  public var versions: [Version]
  public var preferredVersion: Version?
}

struct APIGroupListBody: Codable { var groups: [APIGroupInfo] }
struct APIVersionsBody: Codable { var versions: [String] }

extension KubeClient {
  /// All API groups and their versions (the core group first, with the empty name).
  public func serverGroups() async throws -> [APIGroupInfo] {
    let core = try await send(KubeRequest(method: "GET", path: "/api"), decoding: APIVersionsBody.self)
    let groups = try await send(KubeRequest(method: "GET", path: "/apis"), decoding: APIGroupListBody.self)
    let coreVersions = core.versions.map { APIGroupInfo.Version(groupVersion: $0, version: $0) }
    return [APIGroupInfo(name: "", versions: coreVersions, preferredVersion: coreVersions.first)] + groups.groups
  }

  /// The resources of one group-version ("v1" or "group/version"); cached until `invalidateDiscovery()`.
  /// A group-version the server does not serve gives an empty list.
  public func resources(groupVersion: String) async throws -> [APIResourceInfo] {
    if let cached = discoveryCache.withLock({ $0[groupVersion] }) { return cached }
    let path = groupVersion.contains("/") ? "/apis/\(groupVersion)" : "/api/\(groupVersion)"
    let list: [APIResourceInfo]
    do {
      list = try await send(KubeRequest(method: "GET", path: path), decoding: APIResourceList.self).resources
    } catch let e as KubeError where e.isNotFound {
      list = []
    }
    discoveryCache.withLock { $0[groupVersion] = list }
    return list
  }

  /// Whether the server serves `resource` (a plural) in group/version.
  public func isServed(group: String, version: String, resource: String) async throws -> Bool {
    let gv = group.isEmpty ? version : "\(group)/\(version)"
    return try await resources(groupVersion: gv).contains { $0.name == resource }
  }

  /// A descriptor for a served resource, or nil.
  public func discoverResource(group: String, version: String, resource: String) async throws -> ResourceDescriptor? {
    let gv = group.isEmpty ? version : "\(group)/\(version)"
    guard let r = try await resources(groupVersion: gv).first(where: { $0.name == resource }) else { return nil }
    return ResourceDescriptor(group: group, version: version, plural: r.name, kind: r.kind, namespaced: r.namespaced)
  }

  /// Forgets cached discovery (after installing CRDs, for example).
  public func invalidateDiscovery() {
    discoveryCache.withLock { $0 = [:] }
  }
}
