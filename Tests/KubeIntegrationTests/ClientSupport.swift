import Foundation
import KubeClient
import KubeCore
import Testing

/// The environment of the client integration tests is missing or unusable.
struct ClientTestEnvironmentError: Error, CustomStringConvertible {
  var description: String
}

enum ClientEnv {
  /// `KUBECONFIG`, required: the tests fail (never skip) without a control plane.
  static func kubeconfigPaths() throws -> [String] {
    guard let kc = ProcessInfo.processInfo.environment["KUBECONFIG"], !kc.isEmpty else {
      throw ClientTestEnvironmentError(
        description: "KUBECONFIG is not set: these integration tests need the local control plane."
          + " Start it with `hack/cluster.sh up` and `source <(hack/cluster.sh env)`, or run hack/test.sh")
    }
    return Kubeconfig.paths(fromEnvironmentValue: kc)
  }

  static func env(_ name: String) throws -> String {
    guard let v = ProcessInfo.processInfo.environment[name], !v.isEmpty else {
      throw ClientTestEnvironmentError(
        description: "\(name) is not set: run the tests through hack/test.sh or `source <(hack/cluster.sh env)`")
    }
    return v
  }

  static func config(context: String? = nil) throws -> ClientConfig {
    try Kubeconfig.load(paths: kubeconfigPaths()).clientConfig(context: context)
  }

  static func client(context: String? = nil) throws -> KubeClient {
    KubeClient(config: try config(context: context))
  }
}

/// A fresh namespace for one test, deleted afterwards whatever happens.
func withTestNamespace(
  _ prefix: String, client: KubeClient, _ body: (String) async throws -> Void
) async throws {
  let name = "\(prefix)-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))".lowercased()
  _ = try await client.create(Namespace(metadata: ObjectMeta(name: name, labels: ["botrt.io/test": "client"])))
  do {
    try await body(name)
  } catch {
    try await deleteNamespace(name, client: client)
    throw error
  }
  try await deleteNamespace(name, client: client)
}

private func deleteNamespace(_ name: String, client: KubeClient) async throws {
  do {
    try await client.delete(Namespace.self, name: name, options: DeleteOptions(propagationPolicy: .background))
  } catch let e as KubeError where e.isNotFound {
    return
  }
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes.
func eventually(
  _ what: String, timeout: Duration = .seconds(30), _ check: () async throws -> Bool
) async throws {
  let deadline = ContinuousClock.now + timeout
  while ContinuousClock.now < deadline {
    if try await check() { return }
    try await Task.sleep(for: .milliseconds(100))
  }
  throw ClientTestEnvironmentError(description: "timed out after \(timeout) waiting for \(what)")
}
