import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Testing

/// Issue 18 (memory): the shared informers' caches leave `metadata.managedFields` out, as controller-runtime users'
/// caches do, except where a reader of field ownership asked to keep them. Against the real apiserver, whose
/// server-side apply records the field managers.
@Suite(.serialized) struct InformerManagedFieldsTests {
  @Test func cachesLeaveManagedFieldsOutUnlessAskedToKeepThem() async throws {
    let client = try RuntimeEnv.client()
    try await withTestNamespace("kc-mf", client: client) { ns in
      var cm = ConfigMap(metadata: ObjectMeta(name: "owned", namespace: ns, labels: ["t": "mf"]), data: ["k": "v"])
      cm = try await client.apply(cm, fieldManager: "botrt-test")
      let live = try await client.get(ConfigMap.resource, namespace: ns, name: "owned", as: JSONValue.self)
      // The apiserver records the manager: what a cache that keeps managedFields must show.
      #expect(live[path: "metadata", "managedFields"]?.arrayValue?.isEmpty == false)

      let registry = InformerRegistry(client: client, logger: RuntimeEnv.logger("informers"))
      let stripped = registry.informer(ConfigMap.resource, namespace: ns, labelSelector: "t=mf", as: Unstructured.self)
      let metadata = registry.informer(
        ConfigMap.resource, namespace: ns, labelSelector: "t=mf", metadataOnly: true, as: Unstructured.self)
      let kept = registry.informer(
        ConfigMap.resource, namespace: ns, labelSelector: "t=mf", keepManagedFields: true, as: Unstructured.self)
      let typed = registry.informer(ConfigMap.self, namespace: ns)
      #expect(registry.keys.count == 4)

      let tasks = [
        Task { await stripped.subscribe { _ in } }, Task { await metadata.subscribe { _ in } },
        Task { await kept.subscribe { _ in } }, Task { await typed.subscribe { _ in } },
      ]
      defer { for t in tasks { t.cancel() } }
      // The update after the first list arrives as a watch event: both paths (list and watch) are checked.
      try await waitUntil {
        stripped.store.isReady && metadata.store.isReady && kept.store.isReady && typed.store.isReady
      }
      cm.data = ["k": "v2"]
      let updated = try await client.apply(cm, fieldManager: "botrt-test").metadata.resourceVersion
      let key = ObjectKey(namespace: ns, name: "owned")
      try await waitUntil {
        [stripped.store, metadata.store, kept.store].allSatisfy { $0.get(key)?.metadata.resourceVersion == updated }
          && typed.store.get(key)?.metadata.resourceVersion == updated
      }
      for (name, store) in [("default", stripped.store), ("metadata only", metadata.store)] {
        let o = try #require(store.get(key), "\(name)")
        #expect(o.body[path: "metadata", "managedFields"] == nil, "\(name) cache keeps managedFields")
        #expect(o.body[path: "metadata", "labels", "t"]?.stringValue == "mf", "\(name)")
      }
      #expect(metadata.store.get(key)?.body["data"] == nil)
      #expect(stripped.store.get(key)?.body[path: "data", "k"]?.stringValue == "v2")
      #expect(kept.store.get(key)?.body[path: "metadata", "managedFields"]?.arrayValue?.isEmpty == false)
      #expect(typed.store.get(key)?.metadata.managedFields == nil)
    }
  }

  func waitUntil(_ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(30)
    while !condition() {
      guard ContinuousClock.now < deadline else { throw RuntimeTestEnvironmentError(description: "timed out") }
      try await Task.sleep(for: .milliseconds(50))
    }
  }
}
