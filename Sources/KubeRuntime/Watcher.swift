import Foundation
import KubeCore
import Logging

/// The identity of an object in a cache or queue: namespace (nil when cluster-scoped) and name.
public struct ObjectKey: Hashable, Sendable, Comparable, CustomStringConvertible {
  public var namespace: String?
  public var name: String

  public init(namespace: String?, name: String) {
    self.namespace = namespace.flatMap { $0.isEmpty ? nil : $0 }
    self.name = name
  }

  /// The key of `object`.
  public init<O: KubeObject>(_ object: O) { self.init(namespace: object.metadata.namespace, name: object.name) }

  /// "namespace/name", or "name" when cluster-scoped.
  public var description: String { namespace.map { "\($0)/\(name)" } ?? name }

  public static func < (lhs: ObjectKey, rhs: ObjectKey) -> Bool {
    ((lhs.namespace ?? ""), lhs.name) < ((rhs.namespace ?? ""), rhs.name)
  }
}

/// What a watcher tells its consumer.
public enum WatcherEvent<Object: Sendable>: Sendable {
  /// A full (re)list finished: these are all objects; a cache replaces its contents atomically.
  case restarted([Object])
  /// An object was added or modified.
  case applied(Object)
  /// An object was deleted (its last known state).
  case deleted(Object)
}

/// An open watch: pull events one at a time; `cancel` aborts the underlying transfer.
public struct WatchEventStream<Object: Sendable>: Sendable {
  /// The next event, or nil when the server closed the watch normally.
  public var next: @Sendable () async throws -> WatchEvent<Object>?
  public var cancel: @Sendable () -> Void

  public init(
    next: @escaping @Sendable () async throws -> WatchEvent<Object>?, cancel: @escaping @Sendable () -> Void = {}
  ) {
    self.next = next
    self.cancel = cancel
  }
}

/// The list and watch calls of one collection (kind + namespace + selectors), as a watcher needs them.
///
/// `KubeWatchSource` implements it over `KubeClient`; tests use a scripted fake.
public protocol WatchSource<Object>: Sendable {
  associatedtype Object: KubeObject
  /// Human-readable name of the collection, for logs and metric labels (e.g. "configmaps.v1").
  var resourceName: String { get }
  /// One page of a list; `options` carries limit and continue.
  func list(_ options: ListOptions) async throws -> KubeList<Object>
  /// Opens a watch; `options` carries resourceVersion, allowWatchBookmarks and timeoutSeconds.
  func watch(_ options: ListOptions) async throws -> WatchEventStream<Object>
}

/// Tells errors of list and watch calls apart: 410 Gone means "relist", everything else is retried with backoff.
public enum WatchErrors {
  /// Whether `error` is a 410 Gone/Expired (from a KubeError, a Status, or a `WatchGone`).
  public static func isGone(_ error: any Error) -> Bool {
    if let g = error as? GoneClassifiable { return g.isGoneError }
    return false
  }
}

/// Errors that know whether they mean 410 Gone.
public protocol GoneClassifiable {
  var isGoneError: Bool { get }
}

extension Status: GoneClassifiable {
  public var isGoneError: Bool { code == 410 || typedReason == .gone || typedReason == .expired }
}

/// Settings of a watcher.
public struct WatcherConfig: Sendable {
  /// List page size (limit).
  public var pageSize: Int
  /// Server-side watch timeout; kube-rs uses 290 s, below the apiserver's 5 minute default.
  public var watchTimeoutSeconds: Int
  public var labelSelector: String?
  public var fieldSelector: String?
  /// How long opening a watch may take before it is abandoned and retried with backoff (an apiserver that
  /// accepts connections while still starting can otherwise hold the request until the watch timeout).
  /// nil: no client-side limit.
  public var watchOpenTimeout: Duration?

  public init(
    pageSize: Int = 500, watchTimeoutSeconds: Int = 290, labelSelector: String? = nil, fieldSelector: String? = nil,
    watchOpenTimeout: Duration? = .seconds(30)
  ) {
    self.pageSize = pageSize
    self.watchTimeoutSeconds = watchTimeoutSeconds
    self.watchOpenTimeout = watchOpenTimeout
    self.labelSelector = labelSelector
    self.fieldSelector = fieldSelector
  }
}

/// The watcher as an explicit value-type state machine (no I/O): the driver asks `nextRequest()`, performs it,
/// and feeds the outcome back.
///
/// States: `empty` → `listing` (pages with limit + continue) → `initListed(rv)` (emits `.restarted` with every
/// object, so a store swaps atomically) → `watching(rv)` (bookmarks on, timeoutSeconds) → on a normal end back to
/// `initListed(last rv)` (resume) → on 410 Gone to `empty` (relist) → on other errors the state is kept and the
/// driver waits for a jittered backoff (0.8 s to 30 s, reset after a healthy period).
public struct WatcherMachine<Object: KubeObject>: Sendable {
  /// Where the machine is.
  public enum State: Sendable, Equatable {
    case empty
    /// Between list pages: the next page's continue token and how many objects are accumulated.
    case listing(continueToken: String)
    /// Listed (or a watch ended): the next step opens a watch from `resourceVersion`.
    case initListed(resourceVersion: String)
    /// A watch is open; `resourceVersion` is the last one seen (objects and bookmarks).
    case watching(resourceVersion: String)
  }

  /// The I/O the driver must do next.
  public enum Request: Sendable, Equatable {
    case list(ListOptions)
    case watch(ListOptions)
  }

  /// What to do after a watch event.
  public enum EventOutcome: Sendable {
    /// Hand these events to the consumer and keep reading.
    case emit([WatcherEvent<Object>])
    /// Close the stream; wait `delay` (if any) before the next request.
    case restart(delay: Duration?)
  }

  public private(set) var state: State = .empty
  public let config: WatcherConfig
  public var backoff: Backoff
  private var accumulated: [Object] = []
  /// Relists performed because of 410 Gone.
  public private(set) var goneCount = 0

  public init(config: WatcherConfig = WatcherConfig(), backoff: Backoff = Backoff()) {
    self.config = config
    self.backoff = backoff
  }

  /// Objects accumulated from the list pages so far.
  public var accumulatedCount: Int { accumulated.count }

  /// The request for the current state.
  public func nextRequest() -> Request {
    var o = ListOptions(labelSelector: config.labelSelector, fieldSelector: config.fieldSelector)
    switch state {
    case .empty:
      o.limit = config.pageSize
      return .list(o)
    case .listing(let token):
      o.limit = config.pageSize
      o.continueToken = token
      return .list(o)
    case .initListed(let rv), .watching(let rv):
      o.resourceVersion = rv
      o.allowWatchBookmarks = true
      o.timeoutSeconds = config.watchTimeoutSeconds
      return .watch(o)
    }
  }

  /// Feeds a list page; returns `.restarted` with all objects after the last page.
  public mutating func listSucceeded(_ page: KubeList<Object>) -> [WatcherEvent<Object>] {
    if case .empty = state { accumulated = [] }
    accumulated.append(contentsOf: page.items)
    if let token = page.metadata.continueToken, !token.isEmpty {
      state = .listing(continueToken: token)
      return []
    }
    let all = accumulated
    accumulated = []
    state = .initListed(resourceVersion: page.metadata.resourceVersion ?? "")
    return [.restarted(all)]
  }

  /// The watch request was answered with a stream.
  public mutating func watchStarted() {
    if case .initListed(let rv) = state { state = .watching(resourceVersion: rv) }
  }

  /// Feeds one watch event.
  public mutating func received(_ event: WatchEvent<Object>, now: Duration) -> EventOutcome {
    switch event {
    case .added(let o), .modified(let o):
      track(o)
      return .emit([.applied(o)])
    case .deleted(let o):
      track(o)
      return .emit([.deleted(o)])
    case .bookmark(let rv):
      if !rv.isEmpty, case .watching = state { state = .watching(resourceVersion: rv) }
      return .emit([])
    case .error(let status):
      if status.isGoneError {
        relist()
        return .restart(delay: nil)
      }
      resumeWatch()
      return .restart(delay: backoff.next(now: now))
    }
  }

  /// The server closed the watch normally (timeout): watch again from the last seen resourceVersion.
  public mutating func streamEnded() { resumeWatch() }

  /// A call failed: on 410 Gone relist at once (returns nil); otherwise keep the state and return the backoff delay.
  public mutating func failed(_ error: any Error, now: Duration) -> Duration? {
    if WatchErrors.isGone(error) {
      relist()
      return nil
    }
    resumeWatch()
    return backoff.next(now: now)
  }

  private mutating func track(_ o: Object) {
    if let rv = o.metadata.resourceVersion, !rv.isEmpty, case .watching = state {
      state = .watching(resourceVersion: rv)
    }
  }

  private mutating func relist() {
    state = .empty
    accumulated = []
    goneCount += 1
  }

  private mutating func resumeWatch() {
    if case .watching(let rv) = state { state = .initListed(resourceVersion: rv) }
  }
}

/// Runs a `WatcherMachine` against a `WatchSource` until cancelled, handing events to a consumer.
///
/// The consumer is awaited for each event, so a slow consumer slows the watch down (back-pressure) instead of
/// growing a buffer.
public struct Watcher<Source: WatchSource>: Sendable {
  public let source: Source
  public let config: WatcherConfig
  public let clock: RuntimeClock
  public let logger: Logger
  private let makeBackoff: @Sendable () -> Backoff
  private let metrics: WatcherMetrics?

  public init(
    source: Source, config: WatcherConfig = WatcherConfig(), clock: RuntimeClock = .continuous,
    backoff: @escaping @Sendable () -> Backoff = { Backoff() }, logger: Logger, metrics: MetricsRegistry? = nil
  ) {
    self.source = source
    self.config = config
    self.clock = clock
    self.makeBackoff = backoff
    var l = logger
    l[metadataKey: "resource"] = "\(source.resourceName)"
    self.logger = l
    self.metrics = metrics.map(WatcherMetrics.init)
  }

  /// Lists and watches until the task is cancelled.
  public func run(_ handle: @Sendable (WatcherEvent<Source.Object>) async -> Void) async {
    var machine = WatcherMachine<Source.Object>(config: config, backoff: makeBackoff())
    let label = [source.resourceName]
    while !Task.isCancelled {
      var delay: Duration?
      switch machine.nextRequest() {
      case .list(let options):
        do {
          let page = try await source.list(options)
          for e in machine.listSucceeded(page) {
            if case .restarted(let all) = e {
              logger.debug("listed", metadata: ["objects": "\(all.count)"])
              metrics?.relists.inc(label)
            }
            await handle(e)
          }
        } catch {
          if Task.isCancelled { return }
          delay = machine.failed(error, now: clock.now())
          metrics?.errors.inc(label)
          logger.warning("list failed; retrying", metadata: ["error": "\(error)", "retryIn": "\(delay ?? .zero)"])
        }
      case .watch(let options):
        do {
          let stream = try await openWatch(options)
          machine.watchStarted()
          defer { stream.cancel() }
          reading: while let event = try await stream.next() {
            switch machine.received(event, now: clock.now()) {
            case .emit(let events):
              for e in events { await handle(e) }
            case .restart(let d):
              delay = d
              metrics?.errors.inc(label)
              if case .error(let status) = event {
                logger.info(
                  "watch ended with an error event",
                  metadata: [
                    "code": "\(status.code ?? 0)", "reason": "\(status.reason ?? "")", "relist": "\(d == nil)",
                  ])
              }
              break reading
            }
            if Task.isCancelled { return }
          }
          if case .watching = machine.state { machine.streamEnded() }
        } catch {
          if Task.isCancelled { return }
          delay = machine.failed(error, now: clock.now())
          metrics?.errors.inc(label)
          logger.warning(
            "watch failed; retrying",
            metadata: ["error": "\(error)", "relist": "\(delay == nil)", "retryIn": "\(delay ?? .zero)"])
        }
      }
      if let d = delay {
        do {
          try await clock.sleep(for: d)
        } catch {
          return
        }
      }
    }
  }
}

extension Watcher {
  /// Opens a watch, giving up after `config.watchOpenTimeout` (the open call is cancelled).
  func openWatch(_ options: ListOptions) async throws -> WatchEventStream<Source.Object> {
    let source = self.source
    let clock = self.clock
    guard let timeout = config.watchOpenTimeout else { return try await source.watch(options) }
    return try await withThrowingTaskGroup(of: WatchEventStream<Source.Object>?.self) { group in
      group.addTask { try await source.watch(options) }
      group.addTask {
        try await clock.sleep(for: timeout)
        return nil
      }
      defer { group.cancelAll() }
      while let result = try await group.next() {
        if let stream = result { return stream }
        throw WatchOpenTimeout(resource: source.resourceName, timeout: timeout)
      }
      throw CancellationError()
    }
  }
}

/// Opening a watch took longer than `WatcherConfig.watchOpenTimeout`; retried with backoff.
public struct WatchOpenTimeout: Error, Sendable, CustomStringConvertible {
  public var resource: String
  public var timeout: Duration
  public var description: String {
    "opening a watch of \(resource) took longer than \(timeout); is the apiserver overloaded or still starting?"
  }
}

struct WatcherMetrics: Sendable {
  let relists: Counter
  let errors: Counter

  init(_ r: MetricsRegistry) {
    relists = r.counter("botrt_watcher_lists_total", help: "Complete (re)lists by watchers.", labels: ["resource"])
    errors = r.counter("botrt_watcher_errors_total", help: "Failed list or watch calls.", labels: ["resource"])
  }
}
