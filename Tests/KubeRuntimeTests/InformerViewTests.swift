import Foundation
import KubeClient
import KubeCore
import Logging
import Synchronization
import Testing

@testable import KubeRuntime

/// One watch of a kind, many readers: what a cache keeps (`keep`), views of it (`view`), and a keep rule that grows
/// (`relist`).
@Suite(.timeLimit(.minutes(1))) struct InformerViewTests {
  /// A collection the test changes: a list returns its objects now, a watch sends what `send` is given.
  final class LiveSource: WatchSource, Sendable {
    typealias Object = ConfigMap
    let objects: Mutex<[ConfigMap]>
    let calls = Mutex<[String]>([])
    private let pending = Mutex<[WatchEvent<ConfigMap>]>([])
    private let arrived = Mutex<AsyncEvent>(AsyncEvent())

    init(_ objects: [ConfigMap]) { self.objects = Mutex(objects) }

    var resourceName: String { "configmaps.v1" }
    var lists: Int { calls.withLock { $0.filter { $0 == "list" }.count } }

    func list(_ options: ListOptions) async throws -> KubeList<ConfigMap> {
      calls.withLock { $0.append("list") }
      return KubeList(metadata: ListMeta(resourceVersion: "1"), items: objects.withLock { $0 })
    }

    func watch(_ options: ListOptions) async throws -> WatchEventStream<ConfigMap> {
      calls.withLock { $0.append("watch") }
      return WatchEventStream(next: {
        while !Task.isCancelled {
          if let e = self.pending.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) { return e }
          await self.arrived.withLock { $0 }.wait()
        }
        throw CancellationError()
      })
    }

    /// Sends `event` to the open watch.
    func send(_ event: WatchEvent<ConfigMap>) {
      let wake = arrived.withLock { a in
        defer { a = AsyncEvent() }
        return a
      }
      pending.withLock { $0.append(event) }
      wake.signal()
    }
  }

  /// What a subscriber heard, in order.
  final class Heard<Object: KubeObject>: Sendable {
    let events = Mutex<[String]>([])
    func record(_ e: InformerEvent<Object>) {
      let s: String
      switch e {
      case .restarted(let all): s = "restarted " + all.map(\.name).sorted().joined(separator: ",")
      case .applied(let o, let old): s = (old == nil ? "added " : "modified ") + o.name
      case .deleted(let o): s = "deleted " + o.name
      }
      events.withLock { $0.append(s) }
    }
    var all: [String] { events.withLock { $0 } }
  }

  func until(_ what: String, _ condition: @Sendable () -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while !condition() {
      if ContinuousClock.now > deadline { throw ScriptError(message: "timed out waiting for \(what)") }
      try await Task.sleep(for: .milliseconds(5))
    }
  }

  func informer(_ source: LiveSource, keep: (@Sendable (ConfigMap) -> ConfigMap?)? = nil) -> SharedInformer<ConfigMap> {
    SharedInformer(source: source, clock: RuntimeClock(ManualClock()), logger: Logger(label: "test"), keep: keep)
  }

  /// The cache keeps what `keep` returns: a changed part, nothing of a dropped object, and an object that stops
  /// being kept leaves the cache as a delete.
  @Test func theCacheKeepsWhatTheRuleReturns() async throws {
    let source = LiveSource([cm("a", rv: "1", labels: ["keep": "yes"]), cm("b", rv: "1")])
    let parent = informer(source) { o in
      guard o.metadata.labels?["keep"] == "yes" else { return nil }
      var kept = o
      kept.data = nil
      return kept
    }
    let heard = Heard<ConfigMap>()
    let run = Task { await parent.subscribe { heard.record($0) } }
    try await until("the first list") { parent.store.isReady }
    #expect(parent.store.list().map(\.name) == ["a"])
    #expect(parent.store.list().first?.data == nil)
    source.send(.modified(cm("a", rv: "2")))
    source.send(.added(cm("c", rv: "3", labels: ["keep": "yes"])))
    source.send(.modified(cm("b", rv: "4")))
    try await until("three events") { heard.all.count >= 3 }
    #expect(heard.all == ["restarted a", "deleted a", "added c"])
    #expect(parent.store.list().map(\.name) == ["c"])
    run.cancel()
    await run.value
  }

  /// Views of one informer: each sees the objects it selects, an object that leaves a view is deleted from it, and
  /// however many views there are, the collection is listed and watched once.
  @Test func viewsShareOneWatch() async throws {
    let source = LiveSource([cm("a", rv: "1", labels: ["team": "x"]), cm("b", rv: "1", labels: ["team": "y"])])
    let parent = informer(source)
    let x = parent.view(name: "team x") { $0.metadata.labels?["team"] == "x" ? $0 : nil }
    let y = parent.view(name: "team y") { $0.metadata.labels?["team"] == "y" ? $0 : nil }
    let (heardX, heardY) = (Heard<ConfigMap>(), Heard<ConfigMap>())
    let runs = [Task { await x.subscribe { heardX.record($0) } }, Task { await y.subscribe { heardY.record($0) } }]
    try await until("both views filled") { x.store.isReady && y.store.isReady }
    try await until("the watch") { source.calls.withLock { $0 } == ["list", "watch"] }
    #expect(parent.subscribers == 2)
    source.send(.modified(cm("a", rv: "2", labels: ["team": "y"])))
    source.send(.added(cm("c", rv: "3", labels: ["team": "x"])))
    source.send(.deleted(cm("b", rv: "4", labels: ["team": "y"])))
    try await until("the views to follow") { heardY.all.count >= 3 && heardX.all.count >= 3 }
    #expect(heardX.all == ["restarted a", "deleted a", "added c"])
    #expect(heardY.all == ["restarted b", "added a", "deleted b"])
    #expect(x.store.list().map(\.name) == ["c"])
    #expect(y.store.list().map(\.name) == ["a"])
    #expect(source.calls.withLock { $0 } == ["list", "watch"])
    for r in runs { r.cancel() }
    for r in runs { await r.value }
    try await until("the views to leave the informer") { parent.subscribers == 0 }
  }

  /// A rule that keeps more from now on lists again: what it dropped before comes with the new list, and every
  /// view hears it as a restart.
  @Test func aGrownRuleListsAgain() async throws {
    let source = LiveSource([cm("a", ns: "one", rv: "1"), cm("b", ns: "two", rv: "1")])
    let kept = Mutex<Set<String>>(["one"])
    let parent = informer(source) { o in kept.withLock { $0.contains(o.namespace ?? "") } ? o : nil }
    let all = parent.view(name: "all") { $0 }
    let heard = Heard<ConfigMap>()
    let run = Task { await all.subscribe { heard.record($0) } }
    try await until("the first list") { all.store.isReady }
    #expect(all.store.list().map(\.name) == ["a"])
    _ = kept.withLock { $0.insert("two") }
    parent.relist()
    try await until("the second list") { all.store.count == 2 }
    #expect(source.lists == 2)
    #expect(heard.all == ["restarted a", "restarted a,b"])
    // The new watch follows changes as the first did.
    try await until("the new watch") { source.calls.withLock { $0.filter { $0 == "watch" }.count } == 2 }
    source.send(.deleted(cm("a", ns: "one", rv: "2")))
    try await until("the delete") { all.store.count == 1 }
    run.cancel()
    await run.value
    #expect(parent.subscribers == 0)
  }
}
