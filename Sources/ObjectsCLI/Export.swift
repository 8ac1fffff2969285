import EngineContract
import Foundation
import KubeClient
import KubeCore
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// A kind resolved through discovery.
enum KindResolution {
  case served(ResourceDescriptor)
  case unserved
  /// Served, but not a namespaced, listable resource.
  case unusable(String)
}

/// Resolves kinds to resources at the preferred version of their group (then the group's other versions).
func resolve(_ kind: ObjectsKind, groups: [APIGroupInfo], client: KubeClient) async throws -> KindResolution {
  guard let g = groups.first(where: { $0.name == kind.group }) else { return .unserved }
  var versions = g.versions.map(\.version)
  if let p = g.preferredVersion?.version {
    versions.removeAll { $0 == p }
    versions.insert(p, at: 0)
  }
  for v in versions {
    let gv = kind.group.isEmpty ? v : "\(kind.group)/\(v)"
    guard
      let r = try await client.resources(groupVersion: gv).first(where: {
        $0.kind == kind.kind && !$0.name.contains("/")
      })
    else { continue }
    if !r.namespaced { return .unusable("\(kind) is cluster-scoped; only namespaced kinds are backed up") }
    if !r.verbs.contains("list") { return .unusable("\(kind) cannot be listed") }
    return .served(
      ResourceDescriptor(group: kind.group, version: v, plural: r.name, kind: r.kind, namespaced: true))
  }
  return .unserved
}

/// Writes `data` to `path` with mode 0600 (created so, never readable by others even for a moment).
func writePrivateFile(_ path: String, _ data: Data) throws {
  let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
  guard fd >= 0 else { throw POSIXFailure(path: path, operation: "open", code: errno) }
  defer { close(fd) }
  guard fchmod(fd, 0o600) == 0 else { throw POSIXFailure(path: path, operation: "chmod", code: errno) }
  try data.withUnsafeBytes { (buf: UnsafeRawBufferPointer) in
    var off = 0
    while off < buf.count {
      let n = write(fd, buf.baseAddress! + off, buf.count - off)
      if n < 0 {
        if errno == EINTR { continue }
        throw POSIXFailure(path: path, operation: "write", code: errno)
      }
      off += n
    }
  }
}

/// Creates `path` and its missing parents with mode 0700 (existing directories are left as they are).
func makePrivateDirectory(_ path: String) throws {
  var isDir: ObjCBool = false
  if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
    if isDir.boolValue { return }
    throw POSIXFailure(path: path, operation: "mkdir", code: ENOTDIR)
  }
  let parent = (path as NSString).deletingLastPathComponent
  if !parent.isEmpty && parent != path { try makePrivateDirectory(parent) }
  if mkdir(path, 0o700) != 0 && errno != EEXIST { throw POSIXFailure(path: path, operation: "mkdir", code: errno) }
  _ = chmod(path, 0o700)
}

struct POSIXFailure: Error, CustomStringConvertible {
  var path: String
  var operation: String
  var code: Int32
  var description: String { "\(path): \(operation): \(String(cString: strerror(code)))" }
}

/// `botrt-objects export`.
struct Exporter {
  var arguments: ObjectsExportArguments
  var client: KubeClient
  var logger: Logger
  /// How long a list refused with 403 is retried from the export's start: the controller binds the reader
  /// ClusterRole when it sees the backup Job (its run window), which may be after this container started.
  var grantWait: Duration = .seconds(120)

  /// Lists a kind; a 403 is retried (every second, until `grantWait` from `started`), then thrown.
  func listWaitingForTheGrant(
    _ resource: ResourceDescriptor, kind: ObjectsKind, started: ContinuousClock.Instant
  ) async throws -> [JSONValue] {
    var logged = false
    while true {
      do {
        return try await client.listAll(
          resource, namespace: arguments.namespace,
          options: ListOptions(labelSelector: arguments.selector.flatMap { $0.isEmpty ? nil : $0 }, limit: 500),
          as: JSONValue.self
        ).items
      } catch let e as KubeError where e.isForbidden && ContinuousClock.now - started < grantWait {
        if !logged {
          logger.info("listing \(kind) is forbidden; waiting for the run's RoleBinding (up to \(grantWait))")
          logged = true
        }
        try await Task.sleep(for: .seconds(1))
      }
    }
  }

  func run() async throws -> (ObjectsResult, Int32) {
    let a = arguments
    guard !a.namespace.isEmpty else {
      throw ObjectsFailure(code: ObjectsExitCode.usage, message: "--\(ObjectsFlag.namespace) is empty")
    }
    let dir = a.directory
    do { try makePrivateDirectory(dir) } catch {
      throw ObjectsFailure(code: ObjectsExitCode.usage, message: "--\(ObjectsFlag.directory): \(error)")
    }
    let kinds = a.kinds.isEmpty ? ObjectsKind.standard : a.kinds
    let started = ContinuousClock.now
    let groups: [APIGroupInfo]
    do { groups = try await client.serverGroups() } catch {
      throw ObjectsFailure(code: ObjectsExitCode.failed, message: "discovery failed: \(error)")
    }
    var entries: [ObjectsIndex.Entry] = []
    var unserved: [String] = []
    var failures: [ObjectsResult.Failure] = []
    var excluded = 0
    for kind in kinds {
      let resolution: KindResolution
      do { resolution = try await resolve(kind, groups: groups, client: client) } catch {
        failures.append(.init(object: kind.description, message: "discovery failed: \(error)"))
        continue
      }
      let resource: ResourceDescriptor
      switch resolution {
      case .unserved:
        unserved.append(kind.description)
        continue
      case .unusable(let why):
        failures.append(.init(object: kind.description, message: why))
        continue
      case .served(let r): resource = r
      }
      let items: [JSONValue]
      do {
        items = try await listWaitingForTheGrant(resource, kind: kind, started: started)
      } catch let e as KubeError where e.code == 400 && a.selector != nil {
        throw ObjectsFailure(
          code: ObjectsExitCode.usage,
          message: "--\(ObjectsFlag.selector): the apiserver rejected it: \(e.apiError?.message ?? "\(e)")")
      } catch let e as KubeError where e.isRetryable || e.isUnauthorized {
        throw ObjectsFailure(code: ObjectsExitCode.failed, message: "listing \(kind): \(e)")
      } catch let e as KubeError where e.isForbidden {
        // The grant never came: the kind is not in botrt-objects-reader (a custom resource needs an aggregated
        // ClusterRole), or the run's RoleBinding is missing.
        failures.append(
          .init(
            object: kind.description,
            message: "list is forbidden: \(e.apiError?.message ?? "\(e)"); the backup ServiceAccount reads through "
              + "the ClusterRole botrt-objects-reader: for a custom resource, label a ClusterRole granting get and "
              + "list on it dr.botrt.io/aggregate-to-objects-reader: \"true\" (manifests/rbac/objects.yaml)"))
        continue
      } catch {
        failures.append(.init(object: kind.description, message: "list failed: \(error)"))
        continue
      }
      for item in items {
        let name = item[path: "metadata", "name"]?.stringValue ?? ""
        if item[path: "metadata", "labels", ObjectsLabels.excludeFromBackup]?.stringValue == "true" {
          excluded += 1
          continue
        }
        let id = "\(kind)/\(name)"
        guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
          failures.append(.init(object: id, message: "the name cannot be a file name"))
          continue
        }
        var o = item
        o["apiVersion"] = .string(resource.apiVersion)
        o["kind"] = .string(resource.kind)
        if var meta = o["metadata"]?.objectValue {
          meta["managedFields"] = nil
          o["metadata"] = .object(meta)
        }
        let file = ObjectsLayout.file(kind: kind, name: name)
        let path = dir + "/" + file
        do {
          try makePrivateDirectory((path as NSString).deletingLastPathComponent)
          try writePrivateFile(path, try o.jsonData(sortedKeys: true))
        } catch {
          throw ObjectsFailure(code: ObjectsExitCode.usage, message: "writing \(id): \(error)")
        }
        entries.append(.init(kind: kind.description, apiVersion: resource.apiVersion, name: name, file: file))
      }
    }
    let index = ObjectsIndex(namespace: a.namespace, objects: entries, unservedKinds: unserved)
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    do {
      try writePrivateFile(dir + "/" + ObjectsLayout.indexFile, try enc.encode(index))
    } catch {
      throw ObjectsFailure(code: ObjectsExitCode.usage, message: "writing \(dir)/\(ObjectsLayout.indexFile): \(error)")
    }
    let notServed = unserved.isEmpty ? "" : "; not served: \(unserved.joined(separator: ", "))"
    logger.info(
      "exported \(entries.count) objects of namespace \(a.namespace) to \(dir); \(excluded) excluded by label\(notServed)"
    )
    let result = ObjectsResult(
      command: ObjectsCommandName.export, objects: entries.count, unservedKinds: unserved, failures: failures)
    return (result, failures.isEmpty ? ObjectsExitCode.ok : ObjectsExitCode.partial)
  }
}
