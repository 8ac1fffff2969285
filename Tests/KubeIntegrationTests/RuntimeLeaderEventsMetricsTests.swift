import CurlHTTP
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Synchronization
import Testing

@Suite(.serialized, .timeLimit(.minutes(3))) struct RuntimeLeaderElectionTests {
  func config(_ ns: String, _ id: String) -> LeaderElectionConfig {
    LeaderElectionConfig(
      namespace: ns, name: "botrt-controller", identity: id, leaseDuration: .seconds(4), renewDeadline: .seconds(3),
      retryPeriod: .milliseconds(500))
  }

  /// Two electors in one process on a real Lease: one leads; the other takes over after a release, and after the
  /// leader stops renewing (within the lease duration plus retry slack).
  @Test func oneLeaderAndHandover() async throws {
    let client = try RuntimeEnv.client()
    try await withRuntimeNamespace("rt-lease", client: client) { ns in
      let api = KubeLeaseAPI(client: client)
      let a = LeaderElector(config: config(ns, "candidate-a"), api: api, logger: RuntimeEnv.logger("a"))
      let b = LeaderElector(config: config(ns, "candidate-b"), api: api, logger: RuntimeEnv.logger("b"))
      let leadingA = AsyncEvent()
      let stopA = AsyncEvent()
      let leadingB = AsyncEvent()
      let both = RuntimeLocked(0)
      let active = RuntimeLocked(0)
      let taskA = Task {
        await a.run {
          let n = active.withLock { v -> Int in
            v += 1
            return v
          }
          if n > 1 { both.withLock { $0 += 1 } }
          leadingA.signal()
          await stopA.wait()
          active.withLock { $0 -= 1 }
        }
      }
      await leadingA.wait()
      let taskB = Task {
        await b.run {
          let n = active.withLock { v -> Int in
            v += 1
            return v
          }
          if n > 1 { both.withLock { $0 += 1 } }
          leadingB.signal()
          await AsyncEvent().wait()
          active.withLock { $0 -= 1 }
        }
      }
      // b keeps trying for a while but a holds and renews the lease.
      try await Task.sleep(for: .seconds(5))
      #expect(a.isLeader)
      #expect(!b.isLeader)
      let lease = try await client.get(Lease.self, namespace: ns, name: "botrt-controller")
      #expect(lease.spec?.holderIdentity == "candidate-a")
      #expect(lease.spec?.leaseDurationSeconds == 4)

      // a finishes gracefully: it releases, and b takes over at its next retry (well within the lease duration).
      let released = ContinuousClock.now
      stopA.signal()
      #expect(await taskA.value == .finished)
      await leadingB.wait()
      #expect(ContinuousClock.now - released < .seconds(3))
      #expect(b.isLeader)
      #expect(!a.isLeader)
      #expect(both.withLock { $0 } == 0)
      let afterRelease = try await client.get(Lease.self, namespace: ns, name: "botrt-controller")
      #expect(afterRelease.spec?.holderIdentity == "candidate-b")
      #expect(afterRelease.spec?.leaseTransitions == 1)
      taskB.cancel()
      _ = await taskB.value

      // A leader that stops renewing without releasing (a crash): c takes over after the lease duration.
      let crashed = LeaderElector(config: config(ns, "candidate-crashed"), api: api, logger: RuntimeEnv.logger("x"))
      let c = LeaderElector(config: config(ns, "candidate-c"), api: api, logger: RuntimeEnv.logger("c"))
      try await runtimeEventually("crashed acquires") { await crashed.tryAcquireOrRenew() }
      let lastRenew = ContinuousClock.now
      try await c.acquire()
      let waited = ContinuousClock.now - lastRenew
      #expect(waited >= .seconds(4) - .milliseconds(100), "took over after \(waited), before the lease expired")
      #expect(waited < .seconds(4) + .seconds(3), "took over only after \(waited)")
      let taken = try await client.get(Lease.self, namespace: ns, name: "botrt-controller")
      #expect(taken.spec?.holderIdentity == "candidate-c")
    }
  }
}

@Suite(.serialized, .timeLimit(.minutes(2))) struct RuntimeEventsTests {
  /// Events are created with the right fields, repeats are aggregated into `count`, and they read back.
  @Test func eventsAreRecordedAndAggregated() async throws {
    let client = try RuntimeEnv.client()
    try await withRuntimeNamespace("rt-events", client: client) { ns in
      let target = try await client.create(ConfigMap(metadata: ObjectMeta(name: "subject", namespace: ns), data: [:]))
      let recorder = EventRecorder(
        config: EventRecorderConfig(component: "botrt-controller", instance: "test-pod"),
        sink: KubeEventSink(client: client), logger: RuntimeEnv.logger("events"))
      recorder.record(target, type: .warning, reason: "BackupFailed", message: "bucket botrt-missing does not exist")
      recorder.record(target, type: .warning, reason: "BackupFailed", message: "bucket botrt-missing does not exist")
      recorder.record(target, type: .normal, reason: "BackupSucceeded", message: "snapshot 1a2b stored")
      recorder.finish()
      await recorder.run()
      #expect(recorder.writtenCount == 3)
      #expect(recorder.droppedCount == 0)
      let events = try await client.list(
        Event.self, namespace: ns, options: ListOptions(fieldSelector: "involvedObject.name=subject"))
      let byReason = Dictionary(events.items.map { ($0.reason ?? "", $0) }, uniquingKeysWith: { a, _ in a })
      #expect(events.items.count == 2)
      let failed = try #require(byReason["BackupFailed"])
      #expect(failed.count == 2)
      #expect(failed.type == "Warning")
      #expect(failed.message == "bucket botrt-missing does not exist")
      #expect(failed.involvedObject.uid == target.metadata.uid)
      #expect(failed.involvedObject.kind == "ConfigMap")
      #expect(failed.source?.component == "botrt-controller")
      let ok = try #require(byReason["BackupSucceeded"])
      #expect(ok.count == 1)
      #expect(ok.type == "Normal")
    }
  }
}

@Suite(.serialized, .timeLimit(.minutes(2))) struct RuntimeMetricsServerTests {
  /// The metrics server answers /metrics, /healthz and /readyz over real HTTP and shuts down cleanly.
  @Test func servesMetricsHealthAndReadiness() async throws {
    let registry = MetricsRegistry()
    registry.counter("botrt_test_total", help: "A test counter.", labels: ["kind"]).inc(["Backup"], by: 3)
    let server = HealthServer(host: "127.0.0.1", port: 0, registry: registry, logger: RuntimeEnv.logger("http"))
    try server.start()
    let port = server.port
    #expect(port != 0)
    let http = CurlClient()
    func get(_ path: String, method: String = "GET") async throws -> HTTPResponse {
      try await http.send(HTTPRequest(method: method, url: "http://127.0.0.1:\(port)\(path)", timeout: .seconds(5)))
    }
    let metrics = try await get("/metrics")
    #expect(metrics.status == 200)
    #expect(metrics.header("content-type")?.hasPrefix("text/plain; version=0.0.4") == true)
    let body = String(decoding: metrics.body, as: UTF8.self)
    #expect(body.contains("# TYPE botrt_test_total counter\nbotrt_test_total{kind=\"Backup\"} 3\n"))
    #expect(try await get("/healthz").status == 200)
    let notReady = try await get("/readyz")
    #expect(notReady.status == 503)
    server.setReady(true)
    let ready = try await get("/readyz")
    #expect(ready.status == 200)
    #expect(String(decoding: ready.body, as: UTF8.self) == "ok\n")
    #expect(try await get("/nope").status == 404)
    #expect(try await get("/metrics", method: "POST").status == 405)
    server.setLive(false)
    #expect(try await get("/healthz").status == 503)
    server.stop()
    await #expect(throws: HTTPTransportError.self) { _ = try await get("/healthz") }
  }
}

@Suite(.serialized, .timeLimit(.minutes(3))) struct RuntimeManagerTests {
  /// The manager runs a controller under leader election with the health server; a stop lets the in-flight
  /// reconcile finish, releases the Lease and stops the server.
  @Test func gracefulStopFinishesInFlightAndReleasesTheLease() async throws {
    let client = try RuntimeEnv.client()
    try await withRuntimeNamespace("rt-manager", client: client) { ns in
      let inFlight = AsyncEvent()
      let finished = RuntimeLocked<[String]>([])
      let registry = MetricsRegistry()
      let controller = Controller(
        name: "slow", source: KubeWatchSource<ConfigMap>(client: client, namespace: ns),
        options: ControllerOptions(workers: 1, watcher: WatcherConfig(labelSelector: "botrt.io/slow=yes")),
        logger: RuntimeEnv.logger("slow"), metrics: registry
      ) { key, _ in
        inFlight.signal()
        // Not cancellable on purpose: a stop must wait for this reconcile instead of abandoning it.
        let until = ContinuousClock.now + .seconds(2)
        while ContinuousClock.now < until { try await Task.sleep(for: .milliseconds(50)) }
        finished.withLock { $0.append(key.name) }
        return .awaitChange
      }
      let elector = LeaderElector(
        config: LeaderElectionConfig(
          namespace: ns, name: "botrt-manager", identity: "manager-1", leaseDuration: .seconds(4),
          renewDeadline: .seconds(3), retryPeriod: .milliseconds(500)),
        api: KubeLeaseAPI(client: client), logger: RuntimeEnv.logger("elector"))
      let server = HealthServer(host: "127.0.0.1", port: 0, registry: registry, logger: RuntimeEnv.logger("http"))
      let manager = ControllerManager(
        controllers: [controller], leaderElector: elector, healthServer: server, shutdownDeadline: .seconds(20),
        handleSignals: false, logger: RuntimeEnv.logger("manager"))
      let run = Task { try await manager.run() }
      try await runtimeEventually("leader") { elector.isLeader }
      let http = CurlClient()
      try await runtimeEventually("ready") {
        try await http.send(HTTPRequest(url: "http://127.0.0.1:\(server.port)/readyz", timeout: .seconds(5))).status
          == 200
      }
      _ = try await client.create(
        ConfigMap(metadata: ObjectMeta(name: "work", namespace: ns, labels: ["botrt.io/slow": "yes"]), data: [:]))
      await inFlight.wait()
      manager.stop()
      let outcome = try await run.value
      #expect(outcome == .stopped(signal: nil))
      #expect(finished.withLock { $0 } == ["work"])
      let lease = try await client.get(Lease.self, namespace: ns, name: "botrt-manager")
      #expect(lease.spec?.holderIdentity == "")
      await #expect(throws: HTTPTransportError.self) {
        _ = try await http.send(HTTPRequest(url: "http://127.0.0.1:\(server.port)/healthz", timeout: .seconds(5)))
      }
    }
  }
}
