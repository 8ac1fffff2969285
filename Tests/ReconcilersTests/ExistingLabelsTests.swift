import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Reconcilers
import Synchronization
import Testing

/// The ownership check reads the labels of an object from a shared cache when the object is there, and asks the
/// apiserver otherwise (a label-selected cache cannot tell that an object without the controller's labels is absent).
@Suite struct ExistingLabelsTests {
  final class Count: Sendable {
    let value = Mutex(0)
  }

  let requests = Count()
  let store = Store<Unstructured>()

  /// Labels read with a client that counts its requests (to a closed port: each one fails).
  func labels(of child: DesiredChild) async throws -> [String: String]? {
    let requests = self.requests
    let client = KubeClient(
      config: ClientConfig(server: "https://127.0.0.1:1"),
      transport: ObservingTransport { _ in requests.value.withLock { $0 += 1 } }, retry: RetryPolicy(maxAttempts: 1))
    return try await ExistingLabels(client: client, caches: [.networkPolicies: store]).labels(of: child)
  }

  func child(_ resource: ResourceDescriptor, _ name: String) -> DesiredChild {
    DesiredChild(resource: resource, namespace: "botrt-backup", name: name, body: [:])
  }

  @Test func aCachedObjectIsNotRead() async throws {
    let labels = ["dr.botrt.io/policy-namespace": "shop", "dr.botrt.io/policy-name": "orders"]
    store.apply(
      .restarted([
        try Unstructured(
          apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy",
          metadata: ObjectMeta(name: "np", namespace: "botrt-backup", labels: labels))
      ]))
    #expect(try await self.labels(of: child(.networkPolicies, "np")) == labels)
    #expect(requests.value.withLock { $0 } == 0)
  }

  @Test func anObjectMissingFromTheCacheOrOfAnotherKindIsRead() async throws {
    store.apply(.restarted([]))
    await #expect(throws: (any Error).self) { try await self.labels(of: child(.networkPolicies, "np")) }
    await #expect(throws: (any Error).self) { try await self.labels(of: child(.serviceAccounts, "sa")) }
    #expect(requests.value.withLock { $0 } == 2)
  }
}
