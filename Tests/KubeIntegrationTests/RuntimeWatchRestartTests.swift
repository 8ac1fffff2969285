import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Synchronization
import Testing

@Suite(.serialized, .timeLimit(.minutes(4))) struct RuntimeWatchRestartTests {
  /// A watcher-fed store survives kube-apiserver being stopped and started again: it backs off while the server is
  /// down, resumes (or relists), and sees every change made after the restart, ending with the right final state.
  @Test func watchSurvivesApiserverRestart() async throws {
    let client = try RuntimeEnv.client()
    let sel = ["botrt.io/restart-test": "yes"]
    try await withRuntimeNamespace("rt-restart", client: client) { ns in
      for i in 0..<5 {
        _ = try await client.create(
          ConfigMap(metadata: ObjectMeta(name: "cm\(i)", namespace: ns, labels: sel), data: ["v": "0"]))
      }
      let store = Store<ConfigMap>()
      let watcher = Watcher(
        source: KubeWatchSource<ConfigMap>(client: client, namespace: ns),
        config: WatcherConfig(pageSize: 2, labelSelector: "botrt.io/restart-test=yes"),
        backoff: { Backoff(initial: .milliseconds(200), max: .seconds(2)) }, logger: RuntimeEnv.logger("watcher"))
      let task = Task { await watcher.run { store.apply($0) } }
      defer { task.cancel() }
      try await runtimeEventually("initial list") { store.isReady && store.count == 5 }

      // A change before the restart is seen through the watch.
      var cm0 = try await client.get(ConfigMap.self, namespace: ns, name: "cm0")
      cm0.data = ["v": "before"]
      _ = try await client.update(cm0)
      try await runtimeEventually("cm0=before") {
        store.get(ObjectKey(namespace: ns, name: "cm0"))?.data?["v"] == "before"
      }

      try RuntimeEnv.cluster("stop-apiserver")
      var restarted = false
      do {
        // The server is down: the watcher retries with backoff while the cache keeps serving the last state.
        try await Task.sleep(for: .seconds(3))
        #expect(store.count == 5)
        try RuntimeEnv.cluster("start-apiserver")
        restarted = true
      } catch {
        if !restarted {
          do {
            try RuntimeEnv.cluster("start-apiserver")
          } catch let startError {
            Issue.record("could not restart kube-apiserver after a failure: \(startError)")
          }
        }
        throw error
      }

      // Changes after the restart: update, delete, create.
      try await runtimeEventually("apiserver back", timeout: .seconds(60)) {
        _ = try await client.get(ConfigMap.self, namespace: ns, name: "cm1")
        return true
      }
      var cm1 = try await client.get(ConfigMap.self, namespace: ns, name: "cm1")
      cm1.data = ["v": "after"]
      _ = try await client.update(cm1)
      try await client.delete(ConfigMap.self, namespace: ns, name: "cm2")
      _ = try await client.create(
        ConfigMap(metadata: ObjectMeta(name: "new", namespace: ns, labels: sel), data: ["v": "new"]))

      try await runtimeEventually("final state after restart", timeout: .seconds(60)) {
        let names = store.list().map(\.name)
        return names == ["cm0", "cm1", "cm3", "cm4", "new"]
          && store.get(ObjectKey(namespace: ns, name: "cm1"))?.data?["v"] == "after"
          && store.get(ObjectKey(namespace: ns, name: "cm0"))?.data?["v"] == "before"
      }
      // The cache matches a fresh list exactly (names and resourceVersions).
      let fresh = try await client.listAll(
        ConfigMap.self, namespace: ns, options: ListOptions(labelSelector: "botrt.io/restart-test=yes"))
      let expected = fresh.items.map { "\($0.name)@\($0.metadata.resourceVersion ?? "")" }
      let cached = store.list().map { "\($0.name)@\($0.metadata.resourceVersion ?? "")" }
      #expect(cached == expected.sorted())
    }
  }

  /// Cancelling a watcher that sits in an open watch ends it (and its HTTP transfer) promptly.
  @Test func cancelledWatcherStopsPromptly() async throws {
    let client = try RuntimeEnv.client()
    try await withRuntimeNamespace("rt-cancel", client: client) { ns in
      let store = Store<ConfigMap>()
      let watcher = Watcher(
        source: KubeWatchSource<ConfigMap>(client: client, namespace: ns), logger: RuntimeEnv.logger("watcher"))
      let task = Task { await watcher.run { store.apply($0) } }
      try await runtimeEventually("initial list") { store.isReady }
      _ = try await client.create(ConfigMap(metadata: ObjectMeta(name: "seen", namespace: ns), data: [:]))
      try await runtimeEventually("watch event") { store.get(ObjectKey(namespace: ns, name: "seen")) != nil }
      let cancelled = ContinuousClock.now
      task.cancel()
      await task.value
      #expect(ContinuousClock.now - cancelled < .seconds(5))
    }
  }
}
