import Foundation
import KubeClient
import KubeCore
import Testing

/// `KubeClient.podLog` (what status.progress of a running backup is read from) against the local apiserver. The
/// apiserver negotiates the log subresource before it looks at the Pod: a client that asks for the wrong media type
/// gets 406 NotAcceptable for every Pod, running or not, and never a line of its log.
@Suite struct ClientPodLogTests {
  @Test func aPodsLogIsReadAndAMissingPodIsNotFound() async throws {
    let client = try ClientEnv.client()
    try await withTestNamespace("kc-podlog", client: client) { ns in
      // A Pod no scheduler takes, so it never runs (with or without a node): its log is empty, not refused.
      let pod = try YAML.parseDocuments(
        """
        apiVersion: v1
        kind: Pod
        metadata: {name: unscheduled, namespace: \(ns)}
        spec:
          schedulerName: botrt-no-such-scheduler
          automountServiceAccountToken: false
          containers: [{name: backup, image: botrt.local/none:1, imagePullPolicy: Never}]
        """, file: "pod.yaml")[0]
      // The ServiceAccount admission refuses Pods until the namespace's default ServiceAccount exists.
      try await eventually("the Pod to be created") {
        do {
          _ = try await client.create(.pods, namespace: ns, Unstructured(pod))
          return true
        } catch let e as KubeError where e.isForbidden || e.code == 500 {
          return false
        }
      }
      let log = try await client.podLog(
        namespace: ns, name: "unscheduled", container: "backup", tailLines: 20, limitBytes: 16 * 1024)
      #expect(log.isEmpty, "\(log)")
      do {
        _ = try await client.podLog(
          namespace: ns, name: "missing", container: "backup", tailLines: 20, limitBytes: 16 * 1024)
        Issue.record("the log of a missing Pod was read")
      } catch let e as KubeError {
        #expect(e.isNotFound, "\(e)")
      }
    }
  }
}
