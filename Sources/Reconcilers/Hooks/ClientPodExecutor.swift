import KubeClient
import KubeCore

/// The hooks' `PodExecutor` through the apiserver's `pods/exec`.
public struct ClientPodExecutor: PodExecutor {
  let client: KubeClient

  public init(client: KubeClient) { self.client = client }

  public func exec(namespace: String, pod: String, container: String, command: [String], timeoutSeconds: Int32) async
    -> HookExecOutcome
  {
    .failed("this controller build has no pods/exec client")
  }
}
