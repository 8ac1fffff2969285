import Foundation
import KubeCore
import Logging
import Synchronization
import Testing

@testable import KubeRuntime

@Suite(.timeLimit(.minutes(1))) struct WatcherMachineTests {
  @Test func listPagesThenWatchFromListResourceVersion() {
    var m = WatcherMachine<ConfigMap>(config: WatcherConfig(pageSize: 2, watchTimeoutSeconds: 290))
    #expect(m.state == .empty)
    guard case .list(let o1) = m.nextRequest() else { Issue.record("expected list"); return }
    #expect(o1.limit == 2 && o1.continueToken == nil)
    #expect(
      m.listSucceeded(
        KubeList(
          metadata: ListMeta(resourceVersion: "5", continueToken: "c1"),
          items: [
            cm("a", rv: "1"), cm("b", rv: "2"),
          ])
      ).isEmpty)
    #expect(m.state == .listing(continueToken: "c1"))
    guard case .list(let o2) = m.nextRequest() else { Issue.record("expected list"); return }
    #expect(o2.continueToken == "c1" && o2.limit == 2)
    let events = m.listSucceeded(KubeList(metadata: ListMeta(resourceVersion: "7"), items: [cm("c", rv: "3")]))
    guard case .restarted(let all)? = events.first else { Issue.record("expected restarted"); return }
    #expect(all.map(\.name) == ["a", "b", "c"])
    #expect(m.state == .initListed(resourceVersion: "7"))
    guard case .watch(let w) = m.nextRequest() else { Issue.record("expected watch"); return }
    #expect(w.resourceVersion == "7" && w.allowWatchBookmarks == true && w.timeoutSeconds == 290)
  }

  @Test func bookmarksAndEventsAdvanceResourceVersionAndEndResumes() {
    var m = WatcherMachine<ConfigMap>()
    _ = m.listSucceeded(KubeList(metadata: ListMeta(resourceVersion: "10"), items: []))
    m.watchStarted()
    #expect(m.state == .watching(resourceVersion: "10"))
    _ = m.received(.added(cm("a", rv: "11")), now: .zero)
    #expect(m.state == .watching(resourceVersion: "11"))
    _ = m.received(.bookmark(resourceVersion: "15"), now: .zero)
    #expect(m.state == .watching(resourceVersion: "15"))
    m.streamEnded()
    #expect(m.state == .initListed(resourceVersion: "15"))
    guard case .watch(let o) = m.nextRequest() else { Issue.record("expected watch"); return }
    #expect(o.resourceVersion == "15")
  }

  @Test func goneRelistsAndOtherErrorsBackOff() {
    var m = WatcherMachine<ConfigMap>(backoff: Backoff(jitter: 0))
    _ = m.listSucceeded(KubeList(metadata: ListMeta(resourceVersion: "10"), items: []))
    m.watchStarted()
    // A non-410 ERROR event: re-watch from the same version after a backoff.
    guard case .restart(let d1) = m.received(.error(Status(message: "boom", code: 500)), now: .zero) else {
      Issue.record("expected restart")
      return
    }
    #expect(d1 == .milliseconds(800))
    #expect(m.state == .initListed(resourceVersion: "10"))
    // A failed call: keep the state, longer backoff.
    #expect(m.failed(FakeTransportError(), now: .seconds(1)) == .milliseconds(1600))
    #expect(m.state == .initListed(resourceVersion: "10"))
    // 410 as an ERROR event: relist at once.
    m.watchStarted()
    guard case .restart(let d2) = m.received(.error(gone), now: .seconds(2)) else {
      Issue.record("expected restart")
      return
    }
    #expect(d2 == nil)
    #expect(m.state == .empty)
    #expect(m.goneCount == 1)
    // 410 thrown by a call (e.g. an expired continue token): relist too.
    _ = m.listSucceeded(KubeList(metadata: ListMeta(resourceVersion: "20", continueToken: "c"), items: []))
    #expect(m.failed(gone, now: .seconds(3)) == nil)
    #expect(m.state == .empty)
  }
}

@Suite(.timeLimit(.minutes(1))) struct WatcherDriverTests {
  /// The full script from the brief: list pages → watch → bookmark → dropped connection → resume from the last
  /// resourceVersion → 410 → relist → atomic store swap.
  @Test func scriptedLifecycleEndsWithTheRightStore() async throws {
    let source = ScriptedSource([
      .page([cm("a", rv: "1"), cm("b", rv: "2")], rv: "10", continueToken: "page2"),
      .page([cm("c", rv: "3")], rv: "10", continueToken: nil),
      .watch([.modified(cm("a", rv: "11")), .bookmark(resourceVersion: "12")], thenError: FakeTransportError()),
      .watch([.deleted(cm("b", rv: "13")), .added(cm("d", rv: "14"))]),
      .watch([.error(gone)]),
      .listError(FakeTransportError()),
      .page([cm("a", rv: "20"), cm("e", rv: "21")], rv: "30", continueToken: nil),
    ])
    let clock = ManualClock()
    let store = Store<ConfigMap>(indexers: ["v": { [$0.data?["v"] ?? ""] }])
    let events = Mutex<[String]>([])
    let watcher = Watcher(
      source: source, config: WatcherConfig(pageSize: 2, watchOpenTimeout: nil), clock: RuntimeClock(clock),
      backoff: { Backoff(jitter: 0) }, logger: Logger(label: "test"))
    let task = Task {
      await watcher.run { e in
        store.apply(e)
        let s: String
        switch e {
        case .restarted(let all): s = "restarted:" + all.map(\.name).joined(separator: ",")
        case .applied(let o): s = "applied:\(o.name)@\(o.metadata.resourceVersion ?? "")"
        case .deleted(let o): s = "deleted:\(o.name)"
        }
        events.withLock { $0.append(s) }
      }
    }
    // Transport error after the bookmark: the watcher backs off 0.8 s on the manual clock.
    await clock.waitForSleepers(atLeast: 1)
    #expect(clock.nextDeadline == .milliseconds(800))
    clock.advance(by: .milliseconds(800))
    // The relist after 410 fails once: 1.6 s backoff.
    await clock.waitForSleepers(atLeast: 1)
    #expect(clock.nextDeadline == .milliseconds(800) + .milliseconds(1600))
    clock.advance(by: .milliseconds(1600))
    await source.exhausted.wait()
    task.cancel()
    await task.value

    #expect(
      events.withLock { $0 } == [
        "restarted:a,b,c", "applied:a@11", "deleted:b", "applied:d@14", "restarted:a,e",
      ])
    let calls = source.calls.withLock { $0 }
    let summary = calls.map { c -> String in
      c.kind == "list"
        ? "list(\(c.options.continueToken ?? "-"))"
        : "watch(\(c.options.resourceVersion ?? "-"),\(c.options.allowWatchBookmarks == true))"
    }
    #expect(
      summary == [
        "list(-)", "list(page2)", "watch(10,true)", "watch(12,true)", "watch(14,true)", "list(-)", "list(-)",
        "watch(30,true)",
      ])
    // The relist replaced everything: b and c and d are gone, a is the new version.
    #expect(store.list().map(\.name) == ["a", "e"])
    #expect(store.get(ObjectKey(namespace: "default", name: "a"))?.metadata.resourceVersion == "20")
    #expect(store.byIndex("v", "14").isEmpty)
    #expect(store.byIndex("v", "20").map(\.name) == ["a"])
  }
}

@Suite struct StoreTests {
  @Test func indexesFollowUpdatesAndDeletes() {
    let store = Store<ConfigMap>(indexers: ["owner": Indexers.ownerUID, "team": Indexers.label("team")])
    #expect(!store.isReady)
    store.apply(.restarted([cm("p", rv: "1"), cm("c1", rv: "2", labels: ["team": "x"], owner: "p")]))
    #expect(store.isReady)
    #expect(store.byIndex("owner", "uid-p").map(\.name) == ["c1"])
    #expect(store.byIndex("team", "x").map(\.name) == ["c1"])
    store.apply(.applied(cm("c1", rv: "3", labels: ["team": "y"], owner: "p")))
    #expect(store.byIndex("team", "x").isEmpty)
    #expect(store.byIndex("team", "y").map(\.name) == ["c1"])
    store.apply(.applied(cm("c2", ns: "other", rv: "4", owner: "p")))
    #expect(store.byIndex("owner", "uid-p").map(\.name) == ["c1", "c2"])
    #expect(store.byIndex("owner", "uid-p").count == 2)
    #expect(store.list(namespace: "other").map(\.name) == ["c2"])
    store.apply(.deleted(cm("c1", rv: "5")))
    #expect(store.byIndex("owner", "uid-p").map(\.name) == ["c2"])
    #expect(store.count == 2)
    // A restart swaps everything, indexes included.
    store.apply(.restarted([cm("z", rv: "9")]))
    #expect(store.list().map(\.name) == ["z"])
    #expect(store.byIndex("owner", "uid-p").isEmpty)
  }

  @Test func readersNeverSeeAHalfSwappedStore() async {
    let store = Store<ConfigMap>()
    let old = (0..<200).map { cm("old\($0)", rv: "1") }
    let new = (0..<300).map { cm("new\($0)", rv: "2") }
    store.apply(.restarted(old))
    let mixed = await withTaskGroup(of: Int.self) { g in
      g.addTask {
        for i in 0..<50 { store.apply(.restarted(i % 2 == 0 ? new : old)) }
        return 0
      }
      g.addTask {
        var bad = 0
        for _ in 0..<200 {
          let names = store.list().map(\.name)
          let olds = names.filter { $0.hasPrefix("old") }.count
          if !(olds == 200 && names.count == 200) && !(olds == 0 && names.count == 300) { bad += 1 }
          await Task.yield()
        }
        return bad
      }
      return await g.reduce(0, +)
    }
    #expect(mixed == 0)
  }
}
