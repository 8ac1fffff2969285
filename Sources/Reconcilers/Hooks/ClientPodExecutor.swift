import KubeClient
import KubeCore

/// The hooks' `PodExecutor` through the apiserver's `pods/exec`.
public struct ClientPodExecutor: PodExecutor {
  let client: KubeClient

  public init(client: KubeClient) { self.client = client }

  public func exec(namespace: String, pod: String, container: String, command: [String], timeoutSeconds: Int32) async
    -> HookExecOutcome
  {
    do {
      let r = try await client.exec(
        namespace: namespace, pod: pod, container: container.isEmpty ? nil : container, command: command,
        timeout: .seconds(Int64(timeoutSeconds)), outputLimit: 4 * HookKeys.stderrTailBytes)
      return Self.outcome(.success(r))
    } catch {
      return Self.outcome(.failure(error))
    }
  }

  /// A hook's outcome from what exec returned or threw: the exit code and the end of stderr; a refusal (403) as
  /// forbidden (the opt-in RoleBinding is missing); the timeout; anything else as a failure with its description.
  public static func outcome(_ result: Result<PodExecResult, any Error>) -> HookExecOutcome {
    switch result {
    case .success(let r):
      return .exited(code: r.exitCode, stderr: Array(r.stderr.suffix(HookKeys.stderrTailBytes)))
    case .failure(let e as PodExecError):
      switch e.kind {
      case .forbidden: return .forbidden(e.description)
      case .timeout: return .timedOut(stderr: [])
      case .notFound, .failed, .protocolError: return .failed(e.description)
      }
    case .failure(let e as KubeError) where e.isForbidden:
      return .forbidden("\(e)")
    case .failure(let e):
      return .failed("\(e)")
    }
  }
}
