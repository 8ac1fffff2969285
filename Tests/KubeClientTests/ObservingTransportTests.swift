import CurlHTTP
import Foundation
import KubeCore
import Synchronization
import Testing

@testable import KubeClient

@Suite struct ObservingTransportTests {
  @Test(arguments: [
    ("GET", "https://h:6443/api/v1/namespaces/ns/configmaps/a", "get", "configmaps"),
    ("GET", "https://h:6443/api/v1/namespaces/ns/configmaps?limit=500", "list", "configmaps"),
    ("GET", "https://h:6443/api/v1/pods?watch=true&resourceVersion=5", "watch", "pods"),
    ("GET", "https://h:6443/api/v1/namespaces/kube-system", "get", "namespaces"),
    ("GET", "https://h:6443/api/v1/namespaces", "list", "namespaces"),
    (
      "PATCH", "https://h:6443/apis/dr.botrt.io/v1alpha1/namespaces/ns/backuppolicies/p/status", "patch",
      "backuppolicies/status"
    ),
    ("POST", "https://h:6443/apis/batch/v1/namespaces/ns/jobs", "create", "jobs"),
    ("PUT", "https://h:6443/apis/coordination.k8s.io/v1/namespaces/ns/leases/l", "update", "leases"),
    ("DELETE", "https://h:6443/apis/batch/v1/namespaces/ns/jobs/j", "delete", "jobs"),
    ("GET", "https://h:6443/version", "get", "discovery"),
    ("GET", "https://h:6443/apis/batch/v1", "get", "discovery"),
  ])
  func classifies(method: String, url: String, verb: String, resource: String) {
    let r = ObservedRequest.classify(method: method, url: url, status: 200)
    #expect(r.verb == verb)
    #expect(r.resource == resource)
  }

  @Test func reportsEveryRequestWithItsStatusAndNothingElse() async throws {
    let seen = Mutex<[ObservedRequest]>([])
    let fake = FakeTransport([.respond(200, body: cmJSON), .respond(404, body: statusJSON(404, "NotFound", "gone"))])
    let client = KubeClient(
      config: ClientConfig(
        server: "https://127.0.0.1:6443", auth: .token("t"), userDescription: "u", caDescription: "c"),
      transport: ObservingTransport(fake) { r in seen.withLock { $0.append(r) } }, retry: RetryPolicy(maxAttempts: 1))
    _ = try await client.get(ConfigMap.self, namespace: "ns", name: "a")
    await #expect(throws: KubeError.self) { _ = try await client.get(ConfigMap.self, namespace: "ns", name: "b") }
    #expect(
      seen.withLock { $0 } == [
        ObservedRequest(verb: "get", resource: "configmaps", status: 200),
        ObservedRequest(verb: "get", resource: "configmaps", status: 404),
      ])
  }
}
