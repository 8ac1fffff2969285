import Foundation
import KubeClient
import KubeCore
import Logging
import Synchronization
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The environment of the runtime integration tests is missing or unusable.
struct RuntimeTestEnvironmentError: Error, CustomStringConvertible {
  var description: String
}

enum RuntimeEnv {
  /// A client from `KUBECONFIG`, which is required: without a control plane these tests fail, they never skip.
  static func client() throws -> KubeClient {
    guard let kc = ProcessInfo.processInfo.environment["KUBECONFIG"], !kc.isEmpty else {
      throw RuntimeTestEnvironmentError(
        description: "KUBECONFIG is not set: the runtime integration tests need the local control plane."
          + " Start it with `hack/cluster.sh up` and `source <(hack/cluster.sh env)`, or run hack/test.sh")
    }
    return KubeClient(config: try ClientConfig.fromEnvironment(), logger: logger("kube"))
  }

  static func env(_ name: String) throws -> String {
    guard let v = ProcessInfo.processInfo.environment[name], !v.isEmpty else {
      throw RuntimeTestEnvironmentError(
        description: "\(name) is not set: run the tests through hack/test.sh or `source <(hack/cluster.sh env)`")
    }
    return v
  }

  /// The repository root (for hack/cluster.sh).
  static var repoRoot: URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
  }

  static func logger(_ label: String) -> Logger {
    var l = Logger(label: "runtime-it.\(label)")
    l.logLevel =
      ProcessInfo.processInfo.environment["BOTRT_TEST_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .warning
    return l
  }

  /// Runs `hack/cluster.sh <command>` with the test environment (BOTRT_CLUSTER_DIR must be set).
  static func cluster(_ command: String) throws {
    _ = try env("BOTRT_CLUSTER_DIR")
    let script = repoRoot.appendingPathComponent("hack/cluster.sh").path
    guard FileManager.default.isExecutableFile(atPath: script) else {
      throw RuntimeTestEnvironmentError(description: "\(script) is missing or not executable")
    }
    // Output goes to a file, not a pipe: the restarted kube-apiserver inherits the descriptors and would keep a
    // pipe open forever.
    let logURL = FileManager.default.temporaryDirectory.appendingPathComponent(
      "botrt-cluster-\(command)-\(UUID().uuidString).log")
    guard FileManager.default.createFile(atPath: logURL.path, contents: nil) else {
      throw RuntimeTestEnvironmentError(description: "cannot create \(logURL.path)")
    }
    defer {
      do {
        try FileManager.default.removeItem(at: logURL)
      } catch {
        Issue.record("cannot remove \(logURL.path): \(error)")
      }
    }
    // posix_spawn + waitpid instead of Foundation's Process, whose waitUntilExit was seen to miss the exit of
    // this script (left as a zombie) and hang the test.
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, logURL.path, O_WRONLY | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let args = ["/bin/bash", script, command]
    var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
    defer { for a in cargs { free(a) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, "/bin/bash", &actions, nil, &cargs, environ)
    guard spawned == 0 else {
      throw RuntimeTestEnvironmentError(description: "cannot run \(script) \(command): posix_spawn error \(spawned)")
    }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
      if errno != EINTR {
        throw RuntimeTestEnvironmentError(description: "waitpid for \(script) \(command) failed: errno \(errno)")
      }
    }
    let exited = status & 0x7f == 0
    let code = (status >> 8) & 0xff
    guard exited && code == 0 else {
      let output: String
      do {
        output = try String(contentsOf: logURL, encoding: .utf8)
      } catch {
        output = "<cannot read \(logURL.path): \(error)>"
      }
      throw RuntimeTestEnvironmentError(
        description: "hack/cluster.sh \(command) ended with status \(status): \(output)")
    }
  }
}

/// A fresh namespace for one test, deleted afterwards whatever happens.
func withRuntimeNamespace(_ prefix: String, client: KubeClient, _ body: (String) async throws -> Void) async throws {
  let name = "\(prefix)-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))".lowercased()
  _ = try await client.create(Namespace(metadata: ObjectMeta(name: name, labels: ["botrt.io/test": "runtime"])))
  var failure: (any Error)?
  do {
    try await body(name)
  } catch {
    failure = error
  }
  do {
    try await client.delete(Namespace.self, name: name, options: DeleteOptions(propagationPolicy: .background))
  } catch let e as KubeError where e.isNotFound {
  }
  if let failure { throw failure }
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes; the error names `what`.
func runtimeEventually(
  _ what: String, timeout: Duration = .seconds(30), _ check: () async throws -> Bool
) async throws {
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
  throw RuntimeTestEnvironmentError(
    description: "timed out after \(timeout) waiting for \(what)" + (lastError.map { "; last error: \($0)" } ?? ""))
}

/// A value behind a lock that closures can share.
final class RuntimeLocked<Value: Sendable>: Sendable {
  private let mutex: Mutex<Value>
  init(_ value: Value) { mutex = Mutex(value) }
  func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}
