import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Synchronization
import Testing

/// A mirror controller: every ConfigMap labelled `botrt.io/role=parent` gets a child `<name>-mirror` with the same
/// data, an ownerReference and our finalizer; deleting the parent runs the finalizer, which deletes the child.
final class MirrorReconciler: Sendable {
  static let finalizer = "runtime.botrt.io/mirror"
  let client: KubeClient
  let cleanups = Mutex<[String]>([])

  init(client: KubeClient) { self.client = client }

  func reconcile(_ key: ObjectKey, _ store: Store<ConfigMap>) async throws -> ReconcileResult {
    guard let parent = store.get(key) else { return .awaitChange }
    let patcher = KubeJSONPatcher(client: client, resource: ConfigMap.resource)
    return try await Finalizer.reconcile(parent, finalizer: Self.finalizer, patcher: patcher) { event in
      switch event {
      case .apply(let p):
        guard let owner = p.ownerReference() else { throw TerminalError("parent \(key) has no uid") }
        var child = ConfigMap(
          metadata: ObjectMeta(
            name: "\(p.name)-mirror", namespace: p.metadata.namespace, labels: ["botrt.io/role": "child"],
            ownerReferences: [owner]),
          data: p.data ?? [:])
        child.metadata.resourceVersion = nil
        _ = try await client.apply(child, fieldManager: "botrt-runtime-test", force: true)
        return .awaitChange
      case .cleanup(let p):
        do {
          try await client.delete(ConfigMap.self, namespace: p.metadata.namespace, name: "\(p.name)-mirror")
        } catch let e as KubeError where e.isNotFound {
        }
        cleanups.withLock { $0.append(p.name) }
        return .awaitChange
      }
    }
  }
}

@Suite(.serialized, .timeLimit(.minutes(3))) struct RuntimeControllerTests {
  @Test func mirrorControllerConvergesOnCreateUpdateDeleteAndKeepsOthersFinalizers() async throws {
    let client = try RuntimeEnv.client()
    try await withRuntimeNamespace("rt-ctrl", client: client) { ns in
      let reconciler = MirrorReconciler(client: client)
      let metrics = MetricsRegistry()
      let parents = KubeWatchSource<ConfigMap>(client: client, namespace: ns)
      let controller = Controller(
        name: "mirror", source: parents,
        options: ControllerOptions(
          workers: 3, watcher: WatcherConfig(pageSize: 2, labelSelector: "botrt.io/role=parent")),
        logger: RuntimeEnv.logger("controller"), metrics: metrics, reconcile: reconciler.reconcile)
      controller.watches(
        KubeWatchSource<ConfigMap>(client: client, namespace: ns),
        config: WatcherConfig(labelSelector: "botrt.io/role=child"),
        mapper: Mappers.owners(kind: "ConfigMap", apiVersion: "v1"))

      // Objects that exist before the controller starts come through the initial (paged) list.
      for i in 0..<3 {
        _ = try await client.create(
          ConfigMap(
            metadata: ObjectMeta(name: "pre\(i)", namespace: ns, labels: ["botrt.io/role": "parent"]),
            data: ["n": "\(i)"]))
      }
      let run = Task { await controller.run() }

      func child(_ name: String) async throws -> ConfigMap? {
        do {
          return try await client.get(ConfigMap.self, namespace: ns, name: "\(name)-mirror")
        } catch let e as KubeError where e.isNotFound {
          return nil
        }
      }

      for i in 0..<3 {
        try await runtimeEventually("pre\(i)-mirror") { try await child("pre\(i)")?.data?["n"] == "\(i)" }
      }
      // Create after start.
      var p = try await client.create(
        ConfigMap(
          metadata: ObjectMeta(
            name: "live", namespace: ns, labels: ["botrt.io/role": "parent"], finalizers: ["other.io/keep"]),
          data: ["v": "1"]))
      try await runtimeEventually("live-mirror v=1") { try await child("live")?.data?["v"] == "1" }
      let withFinalizers = try await client.get(ConfigMap.self, namespace: ns, name: "live")
      #expect(withFinalizers.metadata.finalizers == ["other.io/keep", MirrorReconciler.finalizer])
      let mirror = try #require(try await child("live"))
      #expect(mirror.metadata.ownerReferences?.first?.uid == p.metadata.uid)

      // Update the parent: the child follows.
      p = try await client.get(ConfigMap.self, namespace: ns, name: "live")
      p.data = ["v": "2", "extra": "x"]
      _ = try await client.update(p)
      try await runtimeEventually("live-mirror v=2") {
        let c = try await child("live")
        return c?.data?["v"] == "2" && c?.data?["extra"] == "x"
      }

      // Delete the child behind the controller's back: the owned-object watch maps it to its parent.
      try await client.delete(ConfigMap.self, namespace: ns, name: "live-mirror")
      try await runtimeEventually("live-mirror recreated") { try await child("live") != nil }

      // Delete the parent: our finalizer runs cleanup and is removed; the other party's stays.
      try await client.delete(ConfigMap.self, namespace: ns, name: "live")
      try await runtimeEventually("cleanup of live") {
        let cur = try await client.get(ConfigMap.self, namespace: ns, name: "live")
        let gone = try await child("live") == nil
        return cur.metadata.finalizers == ["other.io/keep"] && gone
      }
      #expect(reconciler.cleanups.withLock { $0 }.contains("live"))
      // Release the other party's finalizer: the parent goes away.
      _ = try await client.patch(
        ConfigMap.self, namespace: ns, name: "live",
        .json([.test(path: "/metadata/finalizers/0", value: "other.io/keep"), .remove(path: "/metadata/finalizers/0")]))
      try await runtimeEventually("live deleted") {
        do {
          _ = try await client.get(ConfigMap.self, namespace: ns, name: "live")
          return false
        } catch let e as KubeError where e.isNotFound {
          return true
        }
      }
      // The apiserver said gone; the watch's DELETED event may reach the cache a moment later.
      try await runtimeEventually("live gone from the cache") {
        controller.store.get(ObjectKey(namespace: ns, name: "live")) == nil
      }
      #expect(controller.store.list().map(\.name) == ["pre0", "pre1", "pre2"])

      await controller.requestStop()
      await run.value
      #expect((metrics.value("botrt_reconcile_total", labels: ["mirror", "success"]) ?? 0) >= 6)
      #expect(metrics.render().contains("botrt_workqueue_adds_total{name=\"mirror\"}"))
      // Remove our finalizer from the leftovers so the namespace can go.
      for i in 0..<3 {
        let cur = try await client.get(ConfigMap.self, namespace: ns, name: "pre\(i)")
        if let ops = Finalizer.removePatch(cur.metadata, MirrorReconciler.finalizer) {
          _ = try await client.patch(ConfigMap.self, namespace: ns, name: "pre\(i)", .json(ops))
        }
      }
    }
  }
}
