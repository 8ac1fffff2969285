import Foundation
import KubeCore
import Logging
import Synchronization

/// What a reconcile asks for next. The reconciler does not learn why it ran; it reads the world and converges.
public enum ReconcileResult: Sendable, Hashable {
  /// Nothing scheduled: run again when the object or one of its children changes.
  case awaitChange
  /// Run again after this delay (e.g. a schedule's next fire time), even without a change.
  case requeueAfter(Duration)
}

/// A reconcile error that retrying cannot fix (e.g. an invalid spec); it is logged and not requeued.
public protocol TerminalReconcileError: Error {}

/// A terminal error carrying a message.
public struct TerminalError: TerminalReconcileError, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// Maps a child object to the keys of the parents to reconcile.
public typealias KeyMapper<Child> = @Sendable (Child) -> [ObjectKey]

/// Ready-made mappers from children to owners.
public enum Mappers {
  /// The owners of kind `kind` (and apiVersion `apiVersion` when given) named by the child's ownerReferences;
  /// owner references cannot cross namespaces, so the owner is in the child's namespace (nil for cluster scope
  /// when `ownerNamespaced` is false).
  public static func owners<Child: KubeObject>(
    kind: String, apiVersion: String? = nil, ownerNamespaced: Bool = true
  ) -> KeyMapper<Child> {
    { child in
      (child.metadata.ownerReferences ?? []).filter { ref in
        ref.kind == kind && (apiVersion == nil || ref.apiVersion == apiVersion)
      }.map { ObjectKey(namespace: ownerNamespaced ? child.metadata.namespace : nil, name: $0.name) }
    }
  }

  /// The owner named by labels: `nameLabel` holds its name and `namespaceLabel` its namespace; for children in
  /// another namespace or cluster-scoped children (which owner references cannot express).
  /// `watchNamespace`: the one namespace the controller watches (nil: all); a child naming an owner in another
  /// namespace (e.g. a Job in a shared namespace run for a policy the controller does not watch) maps to nothing.
  public static func labels<Child: KubeObject>(
    nameLabel: String, namespaceLabel: String?, watchNamespace: String? = nil
  ) -> KeyMapper<Child> {
    { child in
      owner(
        labels: child.metadata.labels ?? [:], nameLabel: nameLabel, namespaceLabel: namespaceLabel,
        watchNamespace: watchNamespace
      ).map { [$0] } ?? []
    }
  }

  /// The owner `labels` name (the rule of `labels(nameLabel:namespaceLabel:watchNamespace:)`, for a caller that has
  /// the labels without a decoded object): nil when the name is missing or empty, when `namespaceLabel` is given
  /// and its value is missing or empty, or when the owner is outside `watchNamespace` (nil: all namespaces).
  public static func owner(
    labels: [String: String], nameLabel: String, namespaceLabel: String?, watchNamespace: String? = nil
  ) -> ObjectKey? {
    guard let name = labels[nameLabel], !name.isEmpty else { return nil }
    let ns = namespaceLabel.flatMap { labels[$0] }
    if namespaceLabel != nil && (ns ?? "").isEmpty { return nil }
    if let watchNamespace, ns != watchNamespace { return nil }
    return ObjectKey(namespace: ns, name: name)
  }
}

/// Something the manager runs: `run()` until done; `requestStop()` asks it to finish gracefully.
public protocol Runnable: Sendable {
  /// A name for logs.
  var name: String { get }
  /// Runs until stopped (or the task is cancelled).
  func run() async
  /// Stops taking new work; in-flight work finishes, then `run()` returns.
  func requestStop() async
}

/// Settings of a controller.
public struct ControllerOptions: Sendable {
  /// Concurrent reconciles (of different keys; one key is never reconciled twice at once).
  public var workers: Int
  public var watcher: WatcherConfig
  public var itemBackoff: ItemBackoff
  /// Backoff of the watchers' retries.
  public var watchBackoff: @Sendable () -> Backoff

  public init(
    workers: Int = 2, watcher: WatcherConfig = WatcherConfig(), itemBackoff: ItemBackoff = ItemBackoff(),
    watchBackoff: @escaping @Sendable () -> Backoff = { Backoff() }
  ) {
    self.workers = max(1, workers)
    self.watcher = watcher
    self.itemBackoff = itemBackoff
    self.watchBackoff = watchBackoff
  }
}

/// A controller for one primary kind: an informer (a watch and its cache, its own or shared through an
/// `InformerRegistry`) feeding a work queue, informers of related kinds mapped back to primary keys, and N workers
/// calling the reconciler.
///
/// Guarantees: a key is never reconciled twice at once (the queue hands a key to one worker at a time and
/// re-queues it if it changed meanwhile); an error requeues the key with per-key exponential backoff unless it is
/// a `TerminalReconcileError`; `.requeueAfter` schedules a delayed run; on stop, intake ends, in-flight
/// reconciles finish, then `run()` returns.
public final class Controller<Object: KubeObject>: Runnable {
  /// The reconcile function: the key and the cache (the object is `store.get(key)`, nil when deleted).
  public typealias Reconcile = @Sendable (ObjectKey, Store<Object>) async throws -> ReconcileResult

  public let name: String
  /// The cache of the primary kind.
  public let store: Store<Object>
  /// The controller's work queue.
  public let queue: WorkQueue<ObjectKey>
  private let options: ControllerOptions
  private let clock: RuntimeClock
  private let logger: Logger
  private let reconcile: Reconcile
  private let metricsRegistry: MetricsRegistry?
  private let metrics: ControllerMetrics?
  private let primary: @Sendable (Controller<Object>) async -> Void
  private let related = Mutex<[@Sendable (Controller<Object>) async -> Void]>([])
  private let stopEvent = AsyncEvent()

  /// A controller whose primary kind comes from `informer` (shared with other controllers, or its own).
  ///
  /// - Parameters:
  ///   - informer: the watch and cache of the primary kind; `store` is its cache.
  ///   - relevant: called with the cached and the new object on each update of the primary kind; an update it
  ///     calls irrelevant (e.g. only status changed, the echo of the controller's own status write) updates the
  ///     cache without a reconcile. nil: every update reconciles.
  public init(
    name: String, informer: SharedInformer<Object>, options: ControllerOptions = ControllerOptions(),
    clock: RuntimeClock = .continuous, logger: Logger, metrics: MetricsRegistry? = nil,
    relevant: (@Sendable (_ cached: Object, _ new: Object) -> Bool)? = nil, reconcile: @escaping Reconcile
  ) {
    self.name = name
    self.store = informer.store
    self.options = options
    self.clock = clock
    var l = logger
    l[metadataKey: "controller"] = "\(name)"
    self.logger = l
    self.reconcile = reconcile
    self.metricsRegistry = metrics
    self.metrics = metrics.map(ControllerMetrics.init)
    self.queue = WorkQueue(name: name, clock: clock, itemBackoff: options.itemBackoff, metrics: metrics)
    primary = { controller in
      await informer.subscribe { event in
        switch event {
        case .restarted(let all):
          for o in all { await controller.queue.add(ObjectKey(o)) }
        case .applied(let o, let old):
          if let relevant, let old, !relevant(old, o) { return }
          await controller.queue.add(ObjectKey(o))
        case .deleted(let o):
          await controller.queue.add(ObjectKey(o))
        }
      }
    }
  }

  /// A controller with its own watch of `source` (selectors and paging from `options.watcher`).
  ///
  /// - Parameters:
  ///   - source: the list/watch calls of the primary kind.
  ///   - store: the cache to fill (pass one with indexers if reconcilers query by index).
  public convenience init<Source: WatchSource>(
    name: String, source: Source, store: Store<Object> = Store(), options: ControllerOptions = ControllerOptions(),
    clock: RuntimeClock = .continuous, logger: Logger, metrics: MetricsRegistry? = nil,
    relevant: (@Sendable (_ cached: Object, _ new: Object) -> Bool)? = nil, reconcile: @escaping Reconcile
  ) where Source.Object == Object {
    var l = logger
    l[metadataKey: "controller"] = "\(name)"
    let informer = SharedInformer(
      source: source, config: options.watcher, store: store, clock: clock, backoff: options.watchBackoff, logger: l,
      metrics: metrics)
    self.init(
      name: name, informer: informer, options: options, clock: clock, logger: logger, metrics: metrics,
      relevant: relevant, reconcile: reconcile)
  }

  /// Also follows `informer` (a related kind) and reconciles the primary keys `mapper` returns for each change.
  /// Call before `run()`.
  public func watches<Child: KubeObject>(_ informer: SharedInformer<Child>, mapper: @escaping KeyMapper<Child>) {
    watches(informer, relevant: { _, _ in true }, mapper: mapper)
  }

  /// Also follows `informer`, reconciling the keys `mapper` returns for additions, deletions, relists and the
  /// updates `relevant(new, old)` accepts (e.g. not a Pod's status churn). Call before `run()`.
  public func watches<Child: KubeObject>(
    _ informer: SharedInformer<Child>, relevant: @escaping @Sendable (Child, Child?) -> Bool,
    mapper: @escaping KeyMapper<Child>
  ) {
    related.withLock {
      $0.append { controller in
        await informer.subscribe { event in
          switch event {
          case .restarted(let all):
            for o in all { for k in mapper(o) { await controller.queue.add(k) } }
          case .applied(let o, let old):
            guard relevant(o, old) else { return }
            for k in mapper(o) { await controller.queue.add(k) }
          case .deleted(let o):
            for k in mapper(o) { await controller.queue.add(k) }
          }
        }
      }
    }
  }

  /// Also watches `source` (a related kind) with a watch of its own, and reconciles the primary keys `mapper`
  /// returns for each change. Call before `run()`.
  public func watches<Source: WatchSource>(
    _ source: Source, config: WatcherConfig = WatcherConfig(), mapper: @escaping KeyMapper<Source.Object>
  ) {
    watches(
      SharedInformer(
        source: source, config: config, clock: clock, backoff: options.watchBackoff, logger: logger,
        metrics: metricsRegistry),
      mapper: mapper)
  }

  /// Runs watchers and workers until `requestStop()` (graceful) or cancellation (in-flight reconciles see it).
  public func run() async {
    logger.info("starting", metadata: ["workers": "\(options.workers)"])
    let watchers = [primary] + related.withLock { $0 }
    await withDiscardingTaskGroup { group in
      for w in 0..<options.workers {
        group.addTask { await self.worker(w) }
      }
      group.addTask {
        await withDiscardingTaskGroup { intake in
          for w in watchers { intake.addTask { await w(self) } }
          await self.stopEvent.wait()
          intake.cancelAll()
        }
        // Intake stopped: no new keys; workers finish what they hold, then `get()` returns nil.
        await self.queue.shutDown()
      }
    }
    logger.info("stopped")
  }

  /// Stops intake; in-flight reconciles finish, then `run()` returns.
  public func requestStop() async { stopEvent.signal() }

  private func worker(_ id: Int) async {
    while let key = await queue.get() {
      await process(key)
      await queue.done(key)
    }
  }

  /// Runs one reconcile and logs one line for its outcome, naming the object (kind, namespace, name): `reconciled`
  /// at info (success or requeue), a warning when it failed and is retried, an error when it failed for good.
  private func process(_ key: ObjectKey) async {
    var log = logger
    log[metadataKey: "kind"] = "\(Object.self)"
    if let ns = key.namespace { log[metadataKey: "namespace"] = "\(ns)" }
    log[metadataKey: "name"] = "\(key.name)"
    let start = clock.now()
    let outcome: String
    do {
      let result = try await reconcile(key, store)
      await queue.forget(key)
      switch result {
      case .awaitChange:
        outcome = "success"
        log.info("reconciled", metadata: ["outcome": "\(outcome)"])
      case .requeueAfter(let d):
        outcome = "requeue"
        await queue.addAfter(key, d)
        log.info("reconciled", metadata: ["outcome": "\(outcome)", "requeueAfter": "\(d)"])
      }
    } catch let e as TerminalReconcileError {
      outcome = "terminal_error"
      await queue.forget(key)
      log.error(
        "reconcile failed permanently; waiting for a change", metadata: ["outcome": "\(outcome)", "error": "\(e)"])
    } catch {
      outcome = "error"
      await queue.addRateLimited(key)
      let n = await queue.numRequeues(key)
      log.warning(
        "reconcile failed; requeued with backoff",
        metadata: ["outcome": "\(outcome)", "error": "\(error)", "failures": "\(n)"])
    }
    metrics?.reconciles.inc([name, outcome])
    metrics?.duration.observe(clock.now() - start, [name])
  }
}

struct ControllerMetrics: Sendable {
  let reconciles: Counter
  let duration: Histogram

  init(_ r: MetricsRegistry) {
    reconciles = r.counter(
      "botrt_reconcile_total", help: "Reconciles by controller and outcome.", labels: ["controller", "outcome"])
    duration = r.histogram("botrt_reconcile_duration_seconds", help: "Reconcile duration.", labels: ["controller"])
  }
}
