import Foundation
import KubeCore
import Synchronization

@testable import KubeRuntime

func cm(_ name: String, ns: String = "default", rv: String, labels: [String: String]? = nil, owner: String? = nil)
  -> ConfigMap
{
  var meta = ObjectMeta(name: name, namespace: ns, uid: "uid-\(name)", resourceVersion: rv, labels: labels)
  if let owner {
    meta.ownerReferences = [OwnerReference(apiVersion: "v1", kind: "ConfigMap", name: owner, uid: "uid-\(owner)")]
  }
  return ConfigMap(metadata: meta, data: ["v": rv])
}

/// One scripted answer of the fake source.
enum ScriptStep: Sendable {
  case page([ConfigMap], rv: String, continueToken: String?)
  case listError(any Error & Sendable)
  /// A watch answering these events, then ending normally (or with `thenError`).
  case watch([WatchEvent<ConfigMap>], thenError: (any Error & Sendable)? = nil)
  case watchError(any Error & Sendable)
}

/// A scripted `WatchSource`: answers calls in order, records the options of each call, and blocks (until
/// cancelled) when the script is exhausted.
final class ScriptedSource: WatchSource, Sendable {
  typealias Object = ConfigMap
  private let steps: Mutex<[ScriptStep]>
  let calls = Mutex<[(kind: String, options: ListOptions)]>([])
  let exhausted = AsyncEvent()

  init(_ steps: [ScriptStep]) { self.steps = Mutex(steps) }

  var resourceName: String { "configmaps.v1" }

  private func nextStep(_ kind: String, _ options: ListOptions) async throws -> ScriptStep {
    calls.withLock { $0.append((kind, options)) }
    let step: ScriptStep? = steps.withLock { $0.isEmpty ? nil : $0.removeFirst() }
    guard let step else {
      exhausted.signal()
      await AsyncEvent().wait()
      throw CancellationError()
    }
    return step
  }

  func list(_ options: ListOptions) async throws -> KubeList<ConfigMap> {
    switch try await nextStep("list", options) {
    case .page(let items, let rv, let token):
      return KubeList(metadata: ListMeta(resourceVersion: rv, continueToken: token), items: items)
    case .listError(let e): throw e
    default: throw ScriptError(message: "expected a list call, the script has a watch step")
    }
  }

  func watch(_ options: ListOptions) async throws -> WatchEventStream<ConfigMap> {
    switch try await nextStep("watch", options) {
    case .watch(let events, let err):
      let remaining = Mutex(events)
      return WatchEventStream(next: {
        if let e = remaining.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) { return e }
        if let err { throw err }
        return nil
      })
    case .watchError(let e): throw e
    default: throw ScriptError(message: "expected a watch call, the script has a list step")
    }
  }
}

struct ScriptError: Error, CustomStringConvertible {
  var message: String
  var description: String { message }
}

struct FakeTransportError: Error, CustomStringConvertible {
  var description: String { "connection refused (fake)" }
}

let gone = Status(message: "too old resource version", reason: "Expired", code: 410)
