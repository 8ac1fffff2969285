import Foundation
import KubeClient
import KubeCore
import Logging
import Synchronization

/// Writes core/v1 Events; `KubeEventSink` implements it over KubeClient.
public protocol EventSink: Sendable {
  func create(_ event: Event) async throws -> Event
  /// Updates an existing event's count, lastTimestamp and message (a merge patch).
  func updateCount(namespace: String, name: String, count: Int, lastTimestamp: Date, message: String) async throws
}

/// The type of an Event.
public enum EventType: String, Sendable {
  case normal = "Normal"
  case warning = "Warning"
}

/// Settings of the recorder.
public struct EventRecorderConfig: Sendable {
  /// The reporting controller, e.g. "botrt-controller" (source.component and reportingComponent).
  public var component: String
  /// The reporting instance, e.g. the pod name.
  public var instance: String
  /// Events waiting to be written; more are dropped (counted).
  public var bufferSize: Int
  /// Repeats of the same event within this window raise `count` on one Event instead of creating new ones.
  public var aggregationWindow: Duration
  /// Token bucket per involved object (client-go's spam filter): at most `burst` writes about one object at once,
  /// refilled at one per `refillInterval`. One chatty object never starves the Events of another.
  public var burst: Int
  public var refillInterval: Duration

  public init(
    component: String, instance: String = ProcessInfo.processInfo.hostName, bufferSize: Int = 256,
    aggregationWindow: Duration = .seconds(600), burst: Int = 25, refillInterval: Duration = .seconds(1)
  ) {
    self.component = component
    self.instance = instance
    self.bufferSize = max(1, bufferSize)
    self.aggregationWindow = aggregationWindow
    self.burst = max(1, burst)
    self.refillInterval = refillInterval
  }
}

/// Records Events without ever blocking the caller: `record` only enqueues into a bounded buffer (dropping with a
/// counter when full); `run()` writes them, aggregating repeats and rate-limiting.
public final class EventRecorder: Sendable {
  struct Pending: Sendable {
    var object: ObjectReference
    var type: EventType
    var reason: String
    var message: String
    var at: Duration
    var wall: Date
  }

  struct AggregateKey: Hashable {
    var uid: String
    var kind: String
    var namespace: String
    var name: String
    var type: String
    var reason: String
    var message: String
  }

  struct Aggregate {
    var eventName: String
    var namespace: String
    var count: Int
    var lastSeen: Duration
  }

  /// The involved object a token bucket belongs to.
  struct ObjectKey: Hashable {
    var uid: String
    var kind: String
    var namespace: String
    var name: String
  }

  struct Bucket {
    var tokens: Double
    var lastRefill: Duration
  }

  private struct State {
    var buckets: [ObjectKey: Bucket] = [:]
    var aggregates: [AggregateKey: Aggregate] = [:]
  }

  public let config: EventRecorderConfig
  private let sink: any EventSink
  private let clock: RuntimeClock
  private let logger: Logger
  private let stream: AsyncStream<Pending>
  private let continuation: AsyncStream<Pending>.Continuation
  private let state: Mutex<State>
  private let dropped = Mutex(0)
  private let written = Mutex(0)
  private let droppedCounter: Counter?

  public init(
    config: EventRecorderConfig, sink: any EventSink, clock: RuntimeClock = .continuous, logger: Logger,
    metrics: MetricsRegistry? = nil
  ) {
    self.config = config
    self.sink = sink
    self.clock = clock
    self.logger = logger
    (stream, continuation) = AsyncStream.makeStream(
      of: Pending.self, bufferingPolicy: .bufferingOldest(config.bufferSize))
    state = Mutex(State())
    droppedCounter = metrics?.counter(
      "botrt_events_dropped_total", help: "Events dropped because the buffer was full or rate-limited.")
  }

  /// Events dropped so far (buffer full or rate limit).
  public var droppedCount: Int { dropped.withLock { $0 } }
  /// Events written (created or aggregated) so far.
  public var writtenCount: Int { written.withLock { $0 } }

  /// Queues an event about `object`; never blocks and never throws.
  public func record(_ object: ObjectReference, type: EventType, reason: String, message: String) {
    let p = Pending(
      object: object, type: type, reason: reason, message: String(message.prefix(1024)), at: clock.now(),
      wall: clock.wallNow())
    if case .dropped = continuation.yield(p) { drop() }
  }

  /// Queues an event about a Kubernetes object.
  public func record<O: KubeObject>(_ object: O, type: EventType, reason: String, message: String) {
    record(object.objectReference, type: type, reason: reason, message: message)
  }

  private func drop() {
    dropped.withLock { $0 += 1 }
    droppedCounter?.inc()
  }

  /// Stops accepting events; `run()` returns after writing what is buffered.
  public func finish() { continuation.finish() }

  /// Writes queued events until `finish()` or cancellation.
  public func run() async {
    for await p in stream {
      await write(p)
    }
  }

  private func takeToken(_ object: ObjectKey, now: Duration) -> Bool {
    state.withLock { s in
      let interval = Backoff.seconds(config.refillInterval)
      let burst = Double(config.burst)
      func refilled(_ b: Bucket) -> Double {
        interval > 0 ? min(burst, b.tokens + Backoff.seconds(now - b.lastRefill) / interval) : b.tokens
      }
      // Bound the buckets: a bucket that has refilled is the same as none.
      if s.buckets.count > 4096 { s.buckets = s.buckets.filter { refilled($0.value) < burst } }
      var b =
        s.buckets[object].map { Bucket(tokens: refilled($0), lastRefill: now) }
        ?? Bucket(tokens: burst, lastRefill: now)
      defer { s.buckets[object] = b }
      if b.tokens >= 1 {
        b.tokens -= 1
        return true
      }
      return false
    }
  }

  func write(_ p: Pending) async {
    let ns = p.object.namespace.flatMap { $0.isEmpty ? nil : $0 } ?? "default"
    let key = AggregateKey(
      uid: p.object.uid ?? "", kind: p.object.kind ?? "", namespace: ns, name: p.object.name ?? "",
      type: p.type.rawValue, reason: p.reason, message: p.message)
    let object = ObjectKey(uid: key.uid, kind: key.kind, namespace: ns, name: key.name)
    guard takeToken(object, now: p.at) else {
      drop()
      return
    }
    let window = config.aggregationWindow
    let existing: Aggregate? = state.withLock { s in
      // Bound the aggregation cache: forget entries older than the window.
      if s.aggregates.count > 4096 { s.aggregates = s.aggregates.filter { p.at - $0.value.lastSeen < window } }
      guard let a = s.aggregates[key], p.at - a.lastSeen < window else { return nil }
      return a
    }
    do {
      if let a = existing {
        try await sink.updateCount(
          namespace: a.namespace, name: a.eventName, count: a.count + 1, lastTimestamp: p.wall, message: p.message)
        state.withLock { s in
          s.aggregates[key]?.count = a.count + 1
          s.aggregates[key]?.lastSeen = p.at
        }
      } else {
        let base = String((p.object.name ?? "object").lowercased().prefix(200)) + "."
        let name = base + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        var event = Event(
          metadata: ObjectMeta(name: name, namespace: ns), involvedObject: p.object, reason: p.reason,
          message: p.message, type: p.type.rawValue, source: EventSource(component: config.component),
          firstTimestamp: p.wall, lastTimestamp: p.wall, count: 1)
        event.reportingComponent = config.component
        event.reportingInstance = config.instance
        let created = try await sink.create(event)
        state.withLock { s in
          s.aggregates[key] = Aggregate(
            eventName: created.metadata.name ?? name, namespace: ns, count: 1, lastSeen: p.at)
        }
      }
      written.withLock { $0 += 1 }
    } catch {
      // An aggregated event may have been deleted (TTL); create a fresh one next time.
      if existing != nil { state.withLock { _ = $0.aggregates.removeValue(forKey: key) } }
      // An object in a namespace being deleted (its finalizer still running) cannot get Events: expected, not a fault.
      let terminating = if case .api(let e) = error as? KubeError { e.isNamespaceTerminating } else { false }
      logger.log(
        level: terminating ? .debug : .warning, "could not write an event",
        metadata: ["reason": "\(p.reason)", "object": "\(key.name)", "error": "\(error)"])
    }
  }
}
