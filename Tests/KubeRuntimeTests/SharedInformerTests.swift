import Foundation
import KubeClient
import KubeCore
import Logging
import Synchronization
import Testing

@testable import KubeRuntime

@Suite(.timeLimit(.minutes(1))) struct SharedInformerTests {
  /// Reconciles nothing but records the keys it was asked for.
  final class Seen: Sendable {
    let keys = Mutex<Set<String>>([])
    func reconcile(_ key: ObjectKey, _ store: Store<ConfigMap>) async throws -> ReconcileResult {
      _ = keys.withLock { $0.insert(key.name) }
      return .awaitChange
    }
    var names: Set<String> { keys.withLock { $0 } }
  }

  /// A scripted informer (one object listed, one added by the watch) and two controllers of it.
  struct Fixture {
    let source = ScriptedSource([
      .page([cm("k0", rv: "1")], rv: "1", continueToken: nil), .watch([.added(cm("k1", rv: "2"))]),
    ])
    let informer: SharedInformer<ConfigMap>
    let seen = [Seen(), Seen()]
    let controllers: [Controller<ConfigMap>]

    init() {
      let informer = SharedInformer(source: source, clock: RuntimeClock(ManualClock()), logger: Logger(label: "test"))
      self.informer = informer
      controllers = seen.enumerated().map { i, seen in
        Controller(
          name: "c\(i)", informer: informer, clock: RuntimeClock(ManualClock()), logger: Logger(label: "test"),
          reconcile: { key, store in try await seen.reconcile(key, store) })
      }
    }

    /// Waits until controller `i` reconciled both objects.
    func reconciledBoth(_ i: Int) async {
      while !Set(["k0", "k1"]).isSubset(of: seen[i].names) { await Task.yield() }
    }

    var calls: [String] { source.calls.withLock { $0.map(\.kind) } }

    func stop(_ runs: [Task<Void, Never>]) async {
      for c in controllers { await c.requestStop() }
      for r in runs { await r.value }
    }
  }

  /// Two controllers of one informer: one list and one watch, and both reconcile every key.
  @Test func twoControllersShareOneWatch() async throws {
    let f = Fixture()
    let runs = f.controllers.map { c in Task { await c.run() } }
    await f.source.exhausted.wait()
    await f.reconciledBoth(0)
    await f.reconciledBoth(1)
    #expect(f.calls == ["list", "watch", "watch"])
    #expect(f.informer.store.count == 2)
    #expect(f.informer.subscribers == 2)
    await f.stop(runs)
    #expect(f.informer.subscribers == 0)
  }

  /// A controller that starts after the first list is handed the cache, without a list of its own.
  @Test func aLateSubscriberGetsTheCache() async throws {
    let f = Fixture()
    let first = Task { await f.controllers[0].run() }
    await f.source.exhausted.wait()
    await f.reconciledBoth(0)
    let second = Task { await f.controllers[1].run() }
    await f.reconciledBoth(1)
    #expect(f.calls == ["list", "watch", "watch"])
    await f.stop([first, second])
  }

  /// The registry hands out one informer per collection.
  @Test func theRegistryMakesOneInformerPerCollection() throws {
    let registry = InformerRegistry(
      client: KubeClient(config: ClientConfig(server: "https://127.0.0.1:1")), logger: Logger(label: "test"))
    let a = registry.informer(ConfigMap.self, namespace: "apps")
    let b = registry.informer(ConfigMap.self, namespace: "apps")
    let c = registry.informer(ConfigMap.self, namespace: nil)
    let d = registry.informer(ConfigMap.resource, namespace: "apps", labelSelector: "x=y", as: ConfigMap.self)
    #expect(a === b)
    #expect(a !== c)
    #expect(a !== d)
    #expect(registry.keys.count == 3)
  }
}
