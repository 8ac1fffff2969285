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
      // How 410 is provoked, the same on a fresh control plane and on one that served hours of tests: Events
      // bypass the apiserver's watch cache (its default cache size for events is 0), so a watch of them is served
      // by etcd, whose history is first compacted up to now (as the apiserver's own compaction does every 5
      // minutes); resourceVersion "1" is then gone and the apiserver ends the watch with an ERROR event carrying
      // 410 Expired. A ConfigMap watch is served by the watch cache instead, whose window on a young apiserver
      // still covers revision 1: alone on a fresh control plane, the earlier ConfigMap version of this test got
      // ADDED events and no ERROR.
      try compactEtcd()
      let stream = try await client.watch(
        Event.self, namespace: ns, options: ListOptions(resourceVersion: "1", timeoutSeconds: 10))
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
      #expect(KubeError.api(APIError(watchError: s, url: "events")).isGone)
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

/// Compacts etcd's history up to its current revision through etcd's JSON gateway (`BOTRT_ETCD_URL`, from
/// `hack/cluster.sh env`), as the apiserver's periodic compaction would.
func compactEtcd() throws {
  let base = try ClientEnv.env("BOTRT_ETCD_URL")
  func post(_ path: String, _ body: String) throws -> [String: Any] {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["curl", "-sSf", "-X", "POST", "--data", body, base + path]
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0, let o = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
      throw ClientTestEnvironmentError(description: "etcd at \(base) did not answer \(path)")
    }
    return o
  }
  // A range read of any key answers with the store's current revision in its header.
  let header = try post("/v3/kv/range", #"{"key":"AA=="}"#)["header"] as? [String: Any]
  guard let revision = header?["revision"] as? String else {
    throw ClientTestEnvironmentError(description: "etcd at \(base) sent no revision")
  }
  _ = try post("/v3/kv/compaction", #"{"revision":"\#(revision)","physical":true}"#)
}
