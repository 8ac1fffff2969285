import Foundation
import KubeClient
import KubeCore
import Testing

@Suite(.serialized) struct ClientWatchTests {
  @Test func watchSeesCreateUpdateDeleteInOrder() async throws {
    let client = try ClientEnv.client()
    try await withTestNamespace("kc-watch", client: client) { ns in
      // Only "w": the controller-manager adds kube-root-ca.crt to new namespaces at any moment.
      let list = try await client.list(ConfigMap.self, namespace: ns)
      let rv = try #require(list.metadata.resourceVersion)
      let stream = try await client.watch(
        ConfigMap.self, namespace: ns,
        options: ListOptions(
          fieldSelector: "metadata.name=w", resourceVersion: rv, timeoutSeconds: 30, allowWatchBookmarks: true))

      let writer = Task {
        var cm = try await client.create(ConfigMap(metadata: ObjectMeta(name: "w", namespace: ns), data: ["v": "1"]))
        // The update carries a 900 KB value, so its event line spans many transfer chunks.
        cm.data = ["v": "2", "big": String(repeating: "b", count: 900_000)]
        _ = try await client.update(cm)
        try await client.delete(ConfigMap.self, namespace: ns, name: "w")
      }
      var seen: [String] = []
      for try await event in stream {
        switch event {
        case .added(let o): seen.append("ADDED \(o.name) \(o.data?["v"] ?? "")")
        case .modified(let o): seen.append("MODIFIED \(o.name) \(o.data?["v"] ?? "") \(o.data?["big"]?.count ?? 0)")
        case .deleted(let o): seen.append("DELETED \(o.name)")
        case .bookmark: continue
        case .error(let s): Issue.record("unexpected ERROR event: \(s)")
        }
        if seen.count == 3 { break }
      }
      try await writer.value
      #expect(seen == ["ADDED w 1", "MODIFIED w 2 900000", "DELETED w"])
    }
  }

  @Test func watchFromATooOldResourceVersionGets410() async throws {
    let client = try ClientEnv.client()
    try await withTestNamespace("kc-gone", client: client) { ns in
      // How 410 is provoked: resourceVersion "1" predates the apiserver's watch cache (it starts at the revision
      // of its initial list, after the bootstrap writes), and 150 further writes push the window forward beyond
      // the default capacity of 100 events as well. The apiserver then ends the watch with an ERROR event
      // carrying 410 Expired ("too old resource version").
      var cm = try await client.create(ConfigMap(metadata: ObjectMeta(name: "churn", namespace: ns), data: ["n": "0"]))
      for i in 1...150 {
        cm.data = ["n": String(i)]
        cm = try await client.update(cm)
      }
      let stream = try await client.watch(
        ConfigMap.self, namespace: ns, options: ListOptions(resourceVersion: "1", timeoutSeconds: 10))
      var status: Status?
      for try await event in stream {
        if case .error(let s) = event {
          status = s
          break
        }
      }
      let s = try #require(status, "the watch ended without an ERROR event")
      #expect(s.code == 410)
      #expect(s.typedReason == .expired || s.typedReason == .gone)
      #expect(KubeError.api(APIError(watchError: s, url: "configmaps")).isGone)
    }
  }

  @Test func watchEndsAtTheServerTimeout() async throws {
    let client = try ClientEnv.client()
    try await withTestNamespace("kc-wto", client: client) { ns in
      let start = ContinuousClock.now
      let stream = try await client.watch(
        ConfigMap.self, namespace: ns, options: ListOptions(timeoutSeconds: 2, allowWatchBookmarks: true))
      var count = 0
      for try await _ in stream { count += 1 }
      let elapsed = ContinuousClock.now - start
      #expect(elapsed >= .seconds(1))
      #expect(elapsed < .seconds(30))
    }
  }
}
