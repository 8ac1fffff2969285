import DRAPI
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Synchronization
import Testing

// The servers of the custom-resource-path matrix (CustomResourcePathTests.swift) and the helpers its tests share.
//
// The matrix: every test runs once per server named in BOTRT_CR_SERVERS (comma-separated; unset: both):
//   1.20  the kube-apiserver 1.20.2 of hack/cluster.sh, from KUBECONFIG (hack/test.sh's swift-test step);
//   1.36  the apiextensions-apiserver 0.36 of hack/crd-apiserver.sh, from BOTRT_CRD136_KUBECONFIG
//         (hack/crd136-test.sh runs `swift test --filter CustomResourcePath` with BOTRT_CR_SERVERS=1.36).
// A selected server whose kubeconfig variable is not set fails its tests; an unknown name fails too.

/// The environment of the custom-resource-path tests is missing or a wait timed out.
struct CRPathError: Error, CustomStringConvertible {
  var description: String
}

enum CRMatrix {
  static let variable = "BOTRT_CR_SERVERS"
  static let known = ["1.20", "1.36"]

  /// The servers this run covers: BOTRT_CR_SERVERS, or every known server when it is unset.
  static var servers: [String] {
    guard let v = ProcessInfo.processInfo.environment[variable], !v.isEmpty else { return known }
    return v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
  }
}

/// One server of the matrix, connected and with the CRDs installed.
struct CRServer: Sendable {
  let name: String
  let client: KubeClient
  /// The full 1.20 apiserver serves the core kinds (Namespaces, Events, Secrets); the standalone 1.36 CRD server
  /// serves custom resources only and takes them in any namespace name without a Namespace object.
  let servesCoreKinds: Bool

  static let crdFieldManager = "botrt-crd-tests"

  /// The repository root, found from this file's path.
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

  /// Connects to the server `name` (see the matrix above), checks its version and installs the CRDs: `crds/` on
  /// 1.20, `crds/cel/` (the rendering for 1.25 and later) on 1.36.
  static func connect(_ name: String) async throws -> CRServer {
    let variable: String
    let crdDir: String
    let minor: String
    switch name {
    case "1.20": (variable, crdDir, minor) = ("KUBECONFIG", "crds", "20")
    case "1.36": (variable, crdDir, minor) = ("BOTRT_CRD136_KUBECONFIG", "crds/cel", "36")
    default:
      throw CRPathError(
        description: "\(CRMatrix.variable) names the unknown server '\(name)'; known: \(CRMatrix.known)")
    }
    guard let path = ProcessInfo.processInfo.environment[variable], !path.isEmpty else {
      throw CRPathError(
        description: "the \(name) leg of the custom-resource-path matrix needs \(variable), which is not set. "
          + (name == "1.20"
            ? "Start the control plane (`hack/cluster.sh up`, `source <(hack/cluster.sh env)`) or run hack/test.sh"
            : "Run hack/crd136-test.sh (it starts hack/crd-apiserver.sh), or `hack/crd-apiserver.sh up` and "
              + "`source <(hack/crd-apiserver.sh env)`")
          + "; \(CRMatrix.variable)=<server> runs only the legs whose server is up")
    }
    var logger = Logger(label: "cr-path.\(name)")
    logger.logLevel = .warning
    // As the controller builds its client: ClientConfig.fromEnvironment with KUBECONFIG.
    let config = try ClientConfig.fromEnvironment(environment: ["KUBECONFIG": path])
    let client = KubeClient(config: config, logger: logger)
    let version = try await client.send(KubeRequest(method: "GET", path: "/version"), decoding: JSONValue.self)
    guard version["minor"]?.stringValue == minor else {
      throw CRPathError(
        description: "\(variable)=\(path) is not Kubernetes 1.\(minor): /version says \(version["major"] ?? nil)."
          + "\(version["minor"] ?? nil)")
    }
    let server = CRServer(name: name, client: client, servesCoreKinds: name == "1.20")
    try await server.installCRDs(crdDir)
    return server
  }

  /// Applies every CRD of `dir` and waits until each is Established and its resource served.
  func installCRDs(_ dir: String) async throws {
    let url = Self.root.appendingPathComponent(dir)
    let files = try FileManager.default.contentsOfDirectory(atPath: url.path).filter { $0.hasSuffix(".yaml") }.sorted()
    for file in files {
      let text = try String(contentsOf: url.appendingPathComponent(file), encoding: .utf8)
      for crd in try YAML.parseDocuments(text, file: file) where crd["kind"] == "CustomResourceDefinition" {
        let name = try #require(crd[path: "metadata", "name"]?.stringValue)
        _ = try await client.apply(
          .customResourceDefinitions, namespace: nil, name: name, Unstructured(crd), fieldManager: Self.crdFieldManager,
          force: true)
        try await crEventually("CRD \(name) Established on \(self.name)") {
          let got = try await client.get(.customResourceDefinitions, namespace: nil, name: name, as: Unstructured.self)
          return (got.status?["conditions"]?.arrayValue ?? []).contains {
            $0["type"] == "Established" && $0["status"] == "True"
          }
        }
      }
    }
    for r in [BackupPolicy.resource, RecoveryPlan.resource, DRDrill.resource] {
      try await crEventually("\(r) served on \(name)") {
        client.invalidateDiscovery()
        return try await client.isServed(group: r.group, version: r.version, resource: r.plural)
      }
    }
  }

  /// Runs `body` with a fresh namespace name. On 1.20 the Namespace is created and deleted; on 1.36 the name is only
  /// used (the standalone server does not check namespaces). Afterwards every custom resource of the three kinds in
  /// it loses its finalizers and is deleted, whatever happened.
  func withNamespace(_ prefix: String, _ body: (String) async throws -> Void) async throws {
    let ns = "\(prefix)-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
    if servesCoreKinds {
      _ = try await client.create(Namespace(metadata: ObjectMeta(name: ns, labels: ["botrt.io/test": "cr-path"])))
    }
    var failure: (any Error)?
    do {
      try await body(ns)
    } catch {
      failure = error
    }
    do {
      try await removeCustomResources(ns)
      if servesCoreKinds {
        do {
          try await client.delete(Namespace.self, name: ns, options: DeleteOptions(propagationPolicy: .background))
        } catch let e as KubeError where e.isNotFound {}
      }
    } catch {
      if failure == nil { failure = error }
    }
    if let failure { throw failure }
  }

  private func removeCustomResources(_ ns: String) async throws {
    for r in [BackupPolicy.resource, RecoveryPlan.resource, DRDrill.resource] {
      let list = try await client.listAll(r, namespace: ns, as: Unstructured.self)
      for o in list.items {
        let name = o.metadata.name ?? ""
        do {
          if !(o.metadata.finalizers ?? []).isEmpty {
            _ = try await client.patch(
              r, namespace: ns, name: name, .merge(["metadata": ["finalizers": nil]]), as: JSONValue.self)
          }
          try await client.delete(r, namespace: ns, name: name)
        } catch let e as KubeError where e.isNotFound {}
      }
    }
  }

  /// Creates a custom resource from YAML (namespace filled in).
  @discardableResult
  func create(_ resource: ResourceDescriptor, _ ns: String, _ yaml: String) async throws -> JSONValue {
    var doc = try YAML.parse(yaml, file: "test.yaml")
    doc["metadata"]?["namespace"] = .string(ns)
    return try await client.create(resource, namespace: ns, doc)
  }

  /// The object as JSON, or nil when it does not exist.
  func raw(_ resource: ResourceDescriptor, _ ns: String, _ name: String) async throws -> JSONValue? {
    do {
      return try await client.get(resource, namespace: ns, name: name, as: JSONValue.self)
    } catch let e as KubeError where e.isNotFound {
      return nil
    }
  }
}

/// A minimal valid BackupPolicy (local repository, local key).
func crPolicyYAML(_ name: String, labels: [String: String] = [:], tier: String = "standard") -> String {
  let l = labels.isEmpty ? "" : ", labels: {\(labels.map { "\($0.key): \"\($0.value)\"" }.joined(separator: ", "))}"
  return """
    apiVersion: dr.botrt.io/v1alpha1
    kind: BackupPolicy
    metadata: {name: \(name)\(l)}
    spec:
      tier: \(tier)
      source: {pvc: {claimName: data}}
      repository: {local: {path: /repo, claimName: repo}}
      encryption: {kms: {localKeySecretRef: {name: key}}}
    """
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes; the error names `what` and the last error.
func crEventually(_ what: String, timeout: Duration = .seconds(30), _ check: () async throws -> Bool) async throws {
  let deadline = ContinuousClock.now + timeout
  var lastError: (any Error)?
  while ContinuousClock.now < deadline {
    do {
      if try await check() { return }
      lastError = nil
    } catch {
      lastError = error
    }
    try await Task.sleep(for: .milliseconds(100))
  }
  throw CRPathError(
    description: "timed out after \(timeout) waiting for \(what)" + (lastError.map { "; last error: \($0)" } ?? ""))
}

func crLogger(_ label: String) -> Logger {
  var l = Logger(label: "cr-path.\(label)")
  l.logLevel =
    ProcessInfo.processInfo.environment["BOTRT_TEST_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .warning
  return l
}

/// A `WatchSource` around the controller's `KubeWatchSource` that records every list, watch and event, and can
/// simulate a watcher that lost its connection while the server compacted its history:
/// - `disconnect()`: the open watch ends (its next event is dropped) and the next watch call waits;
/// - `reconnectCompacted()`: the waiting watch call goes to the server with resourceVersion "1", which both servers
///   answer with 410 Expired ("too old resource version"), as they would for a compacted resourceVersion.
final class RecordingSource<Object: KubeObject>: WatchSource {
  enum Entry: Sendable, Equatable {
    case list(continued: Bool, resourceVersion: String?)
    case watch(resourceVersion: String?, bookmarks: Bool?, timeoutSeconds: Int?)
    case object(type: String, resourceVersion: String)
    case bookmark(resourceVersion: String)
    case errorEvent(code: Int?, reason: String?)
    case watchFailed(gone: Bool, error: String)
  }

  enum Mode: Sendable { case normal, disconnected, compacted }

  private let inner: KubeWatchSource<Object>
  private let state = Mutex<(log: [Entry], mode: Mode, parked: Bool)>(([], .normal, false))

  init(_ inner: KubeWatchSource<Object>) { self.inner = inner }

  var resourceName: String { inner.resourceName }
  var log: [Entry] { state.withLock { $0.log } }
  /// Whether a watch call waits for `reconnectCompacted()`.
  var parked: Bool { state.withLock { $0.parked } }

  func disconnect() { state.withLock { $0.mode = .disconnected } }
  func reconnectCompacted() { state.withLock { $0.mode = .compacted } }

  private func record(_ e: Entry) { state.withLock { $0.log.append(e) } }

  func list(_ options: ListOptions) async throws -> KubeList<Object> {
    record(.list(continued: options.continueToken != nil, resourceVersion: options.resourceVersion))
    return try await inner.list(options)
  }

  func watch(_ options: ListOptions) async throws -> WatchEventStream<Object> {
    var o = options
    while state.withLock({ s in
      s.parked = s.mode == .disconnected
      return s.parked
    }) {
      try await Task.sleep(for: .milliseconds(50))
    }
    state.withLock { s in
      if s.mode == .compacted {
        o.resourceVersion = "1"
        s.mode = .normal
      }
    }
    record(
      .watch(resourceVersion: o.resourceVersion, bookmarks: o.allowWatchBookmarks, timeoutSeconds: o.timeoutSeconds))
    let stream: WatchEventStream<Object>
    do {
      stream = try await inner.watch(o)
    } catch {
      record(.watchFailed(gone: WatchErrors.isGone(error), error: "\(error)"))
      throw error
    }
    return WatchEventStream(
      next: { [self] in
        guard let event = try await stream.next() else { return nil }
        if state.withLock({ $0.mode == .disconnected }) {
          stream.cancel()
          return nil
        }
        switch event {
        case .added(let o): record(.object(type: "ADDED", resourceVersion: o.metadata.resourceVersion ?? ""))
        case .modified(let o): record(.object(type: "MODIFIED", resourceVersion: o.metadata.resourceVersion ?? ""))
        case .deleted(let o): record(.object(type: "DELETED", resourceVersion: o.metadata.resourceVersion ?? ""))
        case .bookmark(let rv): record(.bookmark(resourceVersion: rv))
        case .error(let s): record(.errorEvent(code: s.code, reason: s.reason))
        }
        return event
      }, cancel: stream.cancel)
  }
}
