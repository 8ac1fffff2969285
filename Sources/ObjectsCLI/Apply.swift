import EngineContract
import Foundation
import KubeClient
import KubeCore
import Logging

/// `botrt-objects apply`.
struct Applier {
  var arguments: ObjectsApplyArguments
  var sourceNamespace: String
  var index: ObjectsIndex
  var client: KubeClient
  var logger: Logger

  /// The directory's index; a missing or malformed one is a usage error naming the file.
  static func readIndex(directory: String) throws -> ObjectsIndex {
    let path = directory + "/" + ObjectsLayout.indexFile
    guard let data = FileManager.default.contents(atPath: path) else {
      throw ObjectsFailure(
        code: ObjectsExitCode.usage,
        message: "\(path): missing or unreadable (not a directory written by `botrt-objects export`?)")
    }
    let index: ObjectsIndex
    do { index = try JSONDecoder().decode(ObjectsIndex.self, from: data) } catch {
      throw ObjectsFailure(code: ObjectsExitCode.usage, message: "\(path): malformed: \(describe(error))")
    }
    guard index.version == 1 else {
      throw ObjectsFailure(
        code: ObjectsExitCode.usage, message: "\(path): version \(index.version) is not supported (want 1)")
    }
    return index
  }

  /// A decoding error without any of the input's text.
  static func describe(_ error: Error) -> String {
    switch error {
    case DecodingError.dataCorrupted(let c):
      return "not valid JSON" + (c.codingPath.isEmpty ? "" : " at \(path(c.codingPath))")
    case DecodingError.keyNotFound(let k, let c): return "missing \(path(c.codingPath + [k]))"
    case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
      return "wrong type at \(path(c.codingPath))"
    default: return "not valid JSON"
    }
  }

  static func path(_ keys: [CodingKey]) -> String {
    keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(
      in: CharacterSet(charactersIn: "."))
  }

  func run() async throws -> (ObjectsResult, Int32) {
    let a = arguments
    guard !a.namespace.isEmpty else {
      throw ObjectsFailure(code: ObjectsExitCode.usage, message: "--\(ObjectsFlag.namespace) is empty")
    }
    let (planned, unparsable) = ApplyTransform.plan(index, kinds: a.kinds)
    var failures = unparsable.map {
      ObjectsResult.Failure(object: "\($0.kind)/\($0.name)", message: "the index's kind \($0.kind) is not a kind")
    }
    var created = 0
    var existing = 0
    var skipped: [String] = []
    var resources: [String: ResourceDescriptor?] = [:]
    for p in planned {
      let id = "\(p.kind)/\(p.entry.name)"
      let key = "\(p.entry.apiVersion) \(p.kind.kind)"
      // The resource of the kind at the exported apiVersion.
      if resources[key] == nil {
        do {
          let r = try await client.resources(groupVersion: p.entry.apiVersion).first {
            $0.kind == p.kind.kind && !$0.name.contains("/")
          }
          let version = p.entry.apiVersion.split(separator: "/").last.map(String.init) ?? p.entry.apiVersion
          resources[key] = r.map {
            ResourceDescriptor(
              group: p.kind.group, version: version, plural: $0.name, kind: $0.kind, namespaced: $0.namespaced)
          }
        } catch let e as KubeError where e.isRetryable || e.isUnauthorized {
          throw ObjectsFailure(code: ObjectsExitCode.failed, message: "discovery of \(p.entry.apiVersion): \(e)")
        } catch {
          failures.append(.init(object: id, message: "discovery of \(p.entry.apiVersion) failed: \(error)"))
          continue
        }
      }
      guard let resource = resources[key] ?? nil, resource.namespaced else {
        failures.append(
          .init(object: id, message: "the apiserver serves no namespaced \(p.kind.kind) in \(p.entry.apiVersion)"))
        continue
      }
      guard ApplyTransform.isSafeRelativePath(p.entry.file) else {
        failures.append(.init(object: id, message: "the index's file \(p.entry.file) is not inside the directory"))
        continue
      }
      let file = a.directory + "/" + p.entry.file
      guard let data = FileManager.default.contents(atPath: file) else {
        failures.append(.init(object: id, message: "\(file): missing or unreadable"))
        continue
      }
      let object: JSONValue
      do { object = try JSONValue(jsonData: data) } catch {
        failures.append(.init(object: id, message: "\(file): \(Self.describe(error))"))
        continue
      }
      guard object.objectValue != nil, object[path: "metadata", "name"]?.stringValue == p.entry.name else {
        failures.append(.init(object: id, message: "\(file): not the object the index names"))
        continue
      }
      switch ApplyTransform.prepare(
        object, kind: p.kind, sourceNamespace: sourceNamespace, targetNamespace: a.namespace)
      {
      case .skip(let reason):
        logger.info("skipped \(id): \(reason)")
        skipped.append(id)
      case .create(let o):
        do {
          _ = try await client.create(resource, namespace: a.namespace, o)
          created += 1
        } catch let e as KubeError where e.isAlreadyExists {
          existing += 1
        } catch let e as KubeError where e.isUnauthorized {
          throw ObjectsFailure(code: ObjectsExitCode.failed, message: "creating \(id): \(e)")
        } catch let e as KubeError {
          let message = e.apiError.map { "\($0.code) \($0.reason.rawValue): \($0.message)" } ?? "\(e)"
          logger.warning("creating \(id) failed: \(message)")
          failures.append(.init(object: id, message: message))
        } catch {
          failures.append(.init(object: id, message: "\(error)"))
        }
      }
    }
    logger.info(
      "applied to namespace \(a.namespace): \(created) created, \(existing) existing, \(skipped.count) skipped, \(failures.count) failed"
    )
    let result = ObjectsResult(
      command: ObjectsCommandName.apply, objects: created, existing: existing, skipped: skipped, failures: failures)
    return (result, failures.isEmpty ? ObjectsExitCode.ok : ObjectsExitCode.partial)
  }
}
