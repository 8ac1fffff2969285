import Foundation
import KubeCore
import Logging
import Synchronization
import Testing

@testable import KubeRuntime

/// An in-memory Lease store with resourceVersion optimistic concurrency, as the apiserver does it.
final class FakeLeaseAPI: LeaseAPI, Sendable {
  private let state = Mutex<(lease: Lease?, rv: Int)>((nil, 0))
  let failing = Mutex<Set<String>>([])

  var lease: Lease? { state.withLock { $0.lease } }

  /// Rewrites the stored lease's renewTime (as another client with a skewed clock would have written it).
  func setRenewTime(_ t: Date) { state.withLock { $0.lease?.spec?.renewTime = t } }

  func get(namespace: String, name: String) async throws -> Lease? { state.withLock { $0.lease } }

  func create(_ lease: Lease) async throws -> Lease {
    try state.withLock { s in
      if s.lease != nil { throw LeaseConflict(lease: name(lease)) }
      s.rv += 1
      var l = lease
      l.metadata.resourceVersion = String(s.rv)
      s.lease = l
      return l
    }
  }

  func update(_ lease: Lease) async throws -> Lease {
    if let holder = lease.spec?.holderIdentity, failing.withLock({ $0.contains(holder) }) {
      throw FakeTransportError()
    }
    return try state.withLock { s in
      guard let cur = s.lease, cur.metadata.resourceVersion == lease.metadata.resourceVersion else {
        throw LeaseConflict(lease: name(lease))
      }
      s.rv += 1
      var l = lease
      l.metadata.resourceVersion = String(s.rv)
      s.lease = l
      return l
    }
  }

  private func name(_ l: Lease) -> String { "\(l.metadata.namespace ?? "")/\(l.name)" }
}

/// A Lease API whose GET takes `latency` on the manual clock.
final class SlowLeaseAPI: LeaseAPI, Sendable {
  let inner = FakeLeaseAPI()
  let clock: ManualClock
  let latency = Mutex<Duration>(.zero)
  init(clock: ManualClock) { self.clock = clock }
  func get(namespace: String, name: String) async throws -> Lease? {
    let l = try await inner.get(namespace: namespace, name: name)
    clock.advance(by: latency.withLock { $0 })
    return l
  }
  func create(_ lease: Lease) async throws -> Lease { try await inner.create(lease) }
  func update(_ lease: Lease) async throws -> Lease { try await inner.update(lease) }
}

@Suite(.timeLimit(.minutes(1))) struct LeaderElectionTests {
  func elector(_ id: String, _ api: FakeLeaseAPI, _ clock: ManualClock) -> LeaderElector {
    LeaderElector(
      config: LeaderElectionConfig(namespace: "botrt-system", name: "botrt-controller", identity: id),
      api: api, clock: RuntimeClock(clock), logger: Logger(label: "test"))
  }

  @Test func oneLeaderThenTakeoverAfterExpiry() async {
    let clock = ManualClock()
    let api = FakeLeaseAPI()
    let a = elector("a", api, clock)
    let b = elector("b", api, clock)
    #expect(await a.tryAcquireOrRenew())
    #expect(await !b.tryAcquireOrRenew())
    #expect(api.lease?.spec?.holderIdentity == "a")
    #expect(api.lease?.spec?.leaseTransitions == 0)
    // a renews; b keeps observing changes, so the lease never looks expired to b.
    for _ in 0..<10 {
      clock.advance(by: .seconds(2))
      #expect(await a.tryAcquireOrRenew())
      #expect(await !b.tryAcquireOrRenew())
    }
    // a stops renewing: b must wait a full lease duration since it last saw a change.
    clock.advance(by: .seconds(14))
    #expect(await !b.tryAcquireOrRenew())
    clock.advance(by: .seconds(1))
    #expect(await b.tryAcquireOrRenew())
    #expect(api.lease?.spec?.holderIdentity == "b")
    #expect(api.lease?.spec?.leaseTransitions == 1)
    // a comes back: b holds a fresh lease.
    #expect(await !a.tryAcquireOrRenew())
  }

  /// A standby that sees a renewal late dates it back to its renewTime (by at most one retry period) and looks again
  /// right when it expires: the takeover comes a lease duration after the holder's last renewal, not up to two
  /// periods later; a renewal time far in the past counts as one period old (clock skew).
  @Test func theStandbyCountsFromTheRenewalAndWakesAtTheExpiry() async {
    let clock = ManualClock()
    let api = FakeLeaseAPI()
    let a = elector("a", api, clock)
    let b = elector("b", api, clock)
    #expect(await a.tryAcquireOrRenew())  // renewed at T
    clock.advance(by: .milliseconds(1500))
    #expect(await !b.tryAcquireOrRenew())  // seen at T + 1.5 s
    #expect(b.nextAttemptDelay() == .seconds(2))
    clock.advance(by: .milliseconds(12_500))  // T + 14 s
    #expect(await !b.tryAcquireOrRenew())
    #expect(b.nextAttemptDelay() == .milliseconds(1020))
    clock.advance(by: .milliseconds(1010))  // T + 15.01 s
    #expect(await b.tryAcquireOrRenew())
    #expect(api.lease?.spec?.holderIdentity == "b")

    // A renewTime 60 s old (a skewed clock) is trusted for one retry period only.
    let api2 = FakeLeaseAPI()
    let c = elector("c", api2, clock)
    let d = elector("d", api2, clock)
    #expect(await c.tryAcquireOrRenew())
    api2.setRenewTime(clock.wallNow.addingTimeInterval(-60))
    #expect(await !d.tryAcquireOrRenew())
    clock.advance(by: .seconds(12))
    #expect(await !d.tryAcquireOrRenew())
    clock.advance(by: .milliseconds(1010))
    #expect(await d.tryAcquireOrRenew())
  }

  /// A standby whose GET of the Lease takes time dates the holder's renewal by the clocks it read before the request:
  /// it never takes over before the Lease expired. (With the wall time read after the GET, the renewal was dated
  /// earlier by the request's latency, and LeaderFailoverTests once measured a takeover 54 ms before the expiry.)
  @Test func aSlowGetDoesNotBringTheTakeoverForward() async {
    let clock = ManualClock()
    let api = SlowLeaseAPI(clock: clock)
    let a = elector("a", api.inner, clock)
    let b = LeaderElector(
      config: LeaderElectionConfig(namespace: "botrt-system", name: "botrt-controller", identity: "b"),
      api: api, clock: RuntimeClock(clock), logger: Logger(label: "test"))
    #expect(await a.tryAcquireOrRenew())  // renewed at T
    let renewed = try? #require(api.inner.lease?.spec?.renewTime)
    clock.advance(by: .seconds(1))
    api.latency.withLock { $0 = .milliseconds(500) }
    #expect(await !b.tryAcquireOrRenew())  // asks at T + 1 s, the answer comes at T + 1.5 s
    clock.advance(by: .milliseconds(13_200))  // T + 14.7 s: the Lease has 0.3 s left
    #expect(await !b.tryAcquireOrRenew(), "taken over before the Lease expired")
    clock.advance(by: .milliseconds(300))  // T + 15.5 s (the last GET took 0.5 s)
    #expect(await b.tryAcquireOrRenew())
    let acquired = api.inner.lease?.spec?.acquireTime
    if let r = renewed, let acquired { #expect(acquired.timeIntervalSince(r) >= 15) }
  }

  @Test func releaseLetsTheStandbyTakeOverAtOnce() async {
    let clock = ManualClock()
    let api = FakeLeaseAPI()
    let a = elector("a", api, clock)
    let b = elector("b", api, clock)
    #expect(await a.tryAcquireOrRenew())
    #expect(await !b.tryAcquireOrRenew())
    await a.release()
    #expect(api.lease?.spec?.holderIdentity == "")
    #expect(await b.tryAcquireOrRenew())
    #expect(api.lease?.spec?.holderIdentity == "b")
  }

  @Test func runStopsTheWorkWhenRenewalFailsPastTheDeadline() async {
    let clock = ManualClock()
    let api = FakeLeaseAPI()
    let a = elector("a", api, clock)
    let started = AsyncEvent()
    let cancelled = AsyncEvent()
    let task = Task {
      await a.run {
        started.signal()
        await AsyncEvent().wait()
        if Task.isCancelled { cancelled.signal() }
      }
    }
    await started.wait()
    #expect(a.isLeader)
    _ = api.failing.withLock { $0.insert("a") }
    // Renewals every 2 s fail; after 10 s without a renewal the elector gives up.
    for _ in 0..<5 {
      await clock.waitForSleepers(atLeast: 1)
      clock.advance(by: .seconds(2))
    }
    #expect(await task.value == .lost)
    #expect(cancelled.isSignalled)
    #expect(!a.isLeader)
  }

  @Test func runReleasesAfterGracefulFinish() async {
    let clock = ManualClock()
    let api = FakeLeaseAPI()
    let a = elector("a", api, clock)
    let stop = AsyncEvent()
    let task = Task { await a.run { await stop.wait() } }
    var changes = a.leadershipChanges.makeAsyncIterator()
    #expect(await changes.next() == true)
    stop.signal()
    #expect(await task.value == .finished)
    #expect(await changes.next() == false)
    #expect(api.lease?.spec?.holderIdentity == "")
  }
}

final class FakeEventSink: EventSink, Sendable {
  let created = Mutex<[Event]>([])
  let counts = Mutex<[String: Int]>([:])

  func create(_ event: Event) async throws -> Event {
    created.withLock { $0.append(event) }
    return event
  }

  func updateCount(namespace: String, name: String, count: Int, lastTimestamp: Date, message: String) async throws {
    counts.withLock { $0[name] = count }
  }
}

@Suite(.timeLimit(.minutes(1))) struct EventRecorderTests {
  @Test func aggregatesRepeatsAndRateLimits() async {
    let clock = ManualClock()
    let sink = FakeEventSink()
    let rec = EventRecorder(
      config: EventRecorderConfig(
        component: "botrt-controller", instance: "pod-1", burst: 3, refillInterval: .seconds(10)),
      sink: sink, clock: RuntimeClock(clock), logger: Logger(label: "test"))
    let obj = cm("p", rv: "1")
    rec.record(obj, type: .warning, reason: "BackupFailed", message: "bucket missing")
    rec.record(obj, type: .warning, reason: "BackupFailed", message: "bucket missing")
    rec.record(obj, type: .normal, reason: "BackupSucceeded", message: "done")
    rec.record(obj, type: .normal, reason: "Extra", message: "over the burst")
    rec.finish()
    await rec.run()
    let created = sink.created.withLock { $0 }
    #expect(created.map(\.reason) == ["BackupFailed", "BackupSucceeded"])
    #expect(created.first?.involvedObject.name == "p")
    #expect(created.first?.involvedObject.uid == "uid-p")
    #expect(created.first?.type == "Warning")
    #expect(created.first?.reportingComponent == "botrt-controller")
    #expect(created.first?.metadata.namespace == "default")
    #expect(sink.counts.withLock { $0[created[0].name] } == 2)
    #expect(rec.droppedCount == 1)
    #expect(rec.writtenCount == 3)
  }

  /// The rate limit is per involved object (client-go's spam filter): a chatty object that used up its burst does
  /// not cost another object its Events (hooks-e2e lost a policy's HookFailed Warning while two other policies
  /// reported at the same time, under one bucket for all).
  @Test func oneChattyObjectDoesNotStarveAnother() async {
    let clock = ManualClock()
    let sink = FakeEventSink()
    let rec = EventRecorder(
      config: EventRecorderConfig(
        component: "botrt-controller", instance: "pod-1", burst: 3, refillInterval: .seconds(10)),
      sink: sink, clock: RuntimeClock(clock), logger: Logger(label: "test"))
    let chatty = cm("chatty", rv: "1")
    let quiet = cm("quiet", rv: "1")
    for i in 0..<10 { rec.record(chatty, type: .normal, reason: "R\(i)", message: "m\(i)") }
    rec.record(quiet, type: .warning, reason: "HookFailed", message: "the pre hook failed")
    rec.finish()
    await rec.run()
    let created = sink.created.withLock { $0 }
    #expect(created.filter { $0.involvedObject.name == "chatty" }.count == 3)
    #expect(created.contains { $0.involvedObject.name == "quiet" && $0.reason == "HookFailed" })
    #expect(rec.droppedCount == 7)
  }

  @Test func fullBufferDropsWithoutBlocking() {
    let sink = FakeEventSink()
    let rec = EventRecorder(
      config: EventRecorderConfig(component: "c", instance: "i", bufferSize: 2), sink: sink,
      clock: RuntimeClock(ManualClock()), logger: Logger(label: "test"))
    for i in 0..<5 { rec.record(ObjectReference(kind: "X", name: "x\(i)"), type: .normal, reason: "R", message: "m") }
    #expect(rec.droppedCount == 3)
  }
}

@Suite(.timeLimit(.minutes(1))) struct ControllerTests {
  /// Many events for few keys: the reconciler never runs twice at once for one key, failures requeue, and the
  /// last state of every key is reconciled.
  @Test func neverRunsOneKeyConcurrentlyAndRetriesFailures() async throws {
    var events: [WatchEvent<ConfigMap>] = []
    for i in 0..<60 { events.append(.modified(cm("k\(i % 3)", rv: "\(100 + i)"))) }
    let source = ScriptedSource([.page([cm("k0", rv: "1")], rv: "1", continueToken: nil), .watch(events)])
    let running = Mutex<Set<ObjectKey>>([])
    let overlap = Mutex(0)
    let attempts = Mutex<[String: Int]>([:])
    let lastSeen = Mutex<[String: String]>([:])
    let metrics = MetricsRegistry()
    let controller = Controller(
      name: "test", source: source, options: ControllerOptions(workers: 4, itemBackoff: ItemBackoff(base: .zero)),
      clock: RuntimeClock(ManualClock()), logger: Logger(label: "test"), metrics: metrics
    ) { key, store in
      let clash = running.withLock { !$0.insert(key).inserted }
      if clash { overlap.withLock { $0 += 1 } }
      for _ in 0..<20 { await Task.yield() }
      _ = running.withLock { $0.remove(key) }
      let n = attempts.withLock { a -> Int in
        a[key.name, default: 0] += 1
        return a[key.name]!
      }
      if key.name == "k1" && n == 1 { throw ScriptError(message: "transient") }
      if key.name == "k2" && n == 1 { throw TerminalError("bad spec") }
      lastSeen.withLock { $0[key.name] = store.get(key)?.metadata.resourceVersion }
      return .awaitChange
    }
    let run = Task { await controller.run() }
    await source.exhausted.wait()
    // Wait until the queue drained.
    while true {
      let q = controller.queue
      let busy = await q.depth + q.inFlight + q.pendingDelayed
      if busy == 0 { break }
      await Task.yield()
    }
    await controller.requestStop()
    await run.value
    #expect(overlap.withLock { $0 } == 0)
    #expect(lastSeen.withLock { $0 }["k0"] == "157")
    #expect(lastSeen.withLock { $0 }["k1"] == "158")
    #expect(metrics.value("botrt_reconcile_total", labels: ["test", "error"]) == 1)
    #expect(metrics.value("botrt_reconcile_total", labels: ["test", "terminal_error"]) == 1)
  }

  @Test func mappersFindOwners() {
    let child = cm(
      "c", ns: "apps", rv: "1", labels: ["botrt.io/owner": "p", "botrt.io/owner-namespace": "team"], owner: "p")
    let byOwner: KeyMapper<ConfigMap> = Mappers.owners(kind: "ConfigMap")
    #expect(byOwner(child) == [ObjectKey(namespace: "apps", name: "p")])
    let other: KeyMapper<ConfigMap> = Mappers.owners(kind: "Secret")
    #expect(other(child).isEmpty)
    let byLabel: KeyMapper<ConfigMap> = Mappers.labels(
      nameLabel: "botrt.io/owner", namespaceLabel: "botrt.io/owner-namespace")
    #expect(byLabel(child) == [ObjectKey(namespace: "team", name: "p")])
    #expect(byLabel(cm("x", rv: "1")).isEmpty)
    // A controller watching one namespace maps only children of owners in it.
    let watching: (String) -> KeyMapper<ConfigMap> = {
      Mappers.labels(nameLabel: "botrt.io/owner", namespaceLabel: "botrt.io/owner-namespace", watchNamespace: $0)
    }
    #expect(watching("team")(child) == [ObjectKey(namespace: "team", name: "p")])
    #expect(watching("apps")(child).isEmpty)
    // The same rule for bare labels; an empty name or namespace names no owner.
    #expect(
      Mappers.owner(
        labels: ["botrt.io/owner": "p", "botrt.io/owner-namespace": "team"], nameLabel: "botrt.io/owner",
        namespaceLabel: "botrt.io/owner-namespace") == ObjectKey(namespace: "team", name: "p"))
    #expect(
      Mappers.owner(
        labels: ["botrt.io/owner": "p", "botrt.io/owner-namespace": ""], nameLabel: "botrt.io/owner",
        namespaceLabel: "botrt.io/owner-namespace") == nil)
    #expect(Mappers.owner(labels: ["botrt.io/owner": ""], nameLabel: "botrt.io/owner", namespaceLabel: nil) == nil)
    #expect(
      Mappers.owner(labels: ["botrt.io/owner": "g"], nameLabel: "botrt.io/owner", namespaceLabel: nil)
        == ObjectKey(namespace: nil, name: "g"))
  }
}
