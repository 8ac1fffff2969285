import Foundation
import KubeClient
import KubeCore
import Logging
import Synchronization

/// What a subscriber of a `SharedInformer` is told: the watcher's events, after the cache applied them, with the
/// object an update replaced.
public enum InformerEvent<Object: Sendable>: Sendable {
  /// A complete (re)list, or the cache's content handed to a subscriber that joined after the first list.
  case restarted([Object])
  /// An object was added (`old` nil) or modified (`old` is what the cache held before).
  case applied(Object, old: Object?)
  /// An object was deleted (its last known state).
  case deleted(Object)
}

/// One watch of one collection and its cache, shared by every controller that needs that collection (as
/// controller-runtime's manager cache is): each subscriber gets every event, and reads the same `store`.
///
/// The watch runs while at least one subscriber does: the first `subscribe` starts it, the last one to leave stops
/// it. A subscriber that joins once the cache is filled is handed the cache's content first (as `.restarted`), so it
/// misses nothing that happened before it came. The cache is updated before subscribers hear of a change, and each
/// event is awaited by every subscriber before the next is read (back-pressure, no buffer).
public final class SharedInformer<Object: KubeObject>: Sendable {
  /// Receives the informer's events.
  public typealias Handler = @Sendable (InformerEvent<Object>) async -> Void

  /// The collection, for logs ("jobs.v1.batch in all namespaces, labels managed-by=x").
  public let name: String
  /// The cache of the collection.
  public let store: Store<Object>
  private let watch: @Sendable (@escaping @Sendable (WatcherEvent<Object>) async -> Void) async -> Void
  /// What the cache keeps of an object the watch brings (nil: the object is not kept); nil: everything, as it came.
  private let keep: (@Sendable (Object) -> Object?)?

  private struct State {
    var handlers: [UInt64: Handler] = [:]
    var next: UInt64 = 0
    var task: Task<Void, Never>?
  }

  private let state = Mutex(State())

  /// An informer over `source` with the selectors and paging of `config`.
  ///
  /// `keep` decides what the cache holds of each object the watch brings (nil: not kept, as if it did not exist),
  /// like controller-runtime's transform functions: one watch of a whole kind can then keep the objects its readers
  /// need whole, a few fields of others, and nothing of the rest.
  public init<Source: WatchSource>(
    name: String? = nil, source: Source, config: WatcherConfig = WatcherConfig(), store: Store<Object> = Store(),
    clock: RuntimeClock = .continuous, backoff: @escaping @Sendable () -> Backoff = { Backoff() }, logger: Logger,
    metrics: MetricsRegistry? = nil, keep: (@Sendable (Object) -> Object?)? = nil
  ) where Source.Object == Object {
    self.name = name ?? source.resourceName
    self.store = store
    self.keep = keep
    let watcher = Watcher(
      source: source, config: config, clock: clock, backoff: backoff, logger: logger, metrics: metrics)
    watch = { handle in await watcher.run(handle) }
  }

  /// An informer fed by `events` instead of a watch of its own (a view of another informer).
  private init(
    name: String, store: Store<Object>,
    events: @escaping @Sendable (@escaping @Sendable (WatcherEvent<Object>) async -> Void) async -> Void
  ) {
    self.name = name
    self.store = store
    self.keep = nil
    watch = events
  }

  /// A view of this informer: the objects `select` maps to a value (nil: not in the view), in a cache of its own,
  /// fed by this informer's events. A view opens no watch: however many views a kind has, it is watched once.
  ///
  /// A view subscribes to this informer while it has subscribers itself, so it starts and stops the watch as a
  /// subscriber of this informer would.
  public func view<View: KubeObject>(
    name: String, _ select: @escaping @Sendable (Object) -> View?
  ) -> SharedInformer<View> {
    let store = Store<View>()
    return SharedInformer<View>(name: name, store: store) { handle in
      await self.subscribe { event in
        switch event {
        case .restarted(let all):
          await handle(.restarted(all.compactMap(select)))
        case .applied(let o, _):
          if let v = select(o) {
            await handle(.applied(v))
          } else if let had = store.get(ObjectKey(o)) {
            // Out of the view now (e.g. its labels changed): gone from the view's point of view.
            await handle(.deleted(had))
          }
        case .deleted(let o):
          if let had = store.get(ObjectKey(o)) { await handle(.deleted(had)) }
        }
      }
    }
  }

  /// Lists the collection again from scratch, if the watch runs: the new list replaces the cache and subscribers
  /// hear `.restarted`. For a `keep` rule that now keeps objects it dropped before (they come with the list).
  public func relist() {
    state.withLock { s in
      guard let running = s.task else { return }
      running.cancel()
      s.task = Task {
        await running.value
        await self.run()
      }
    }
  }

  /// Hands this informer's events to `handler` until the calling task is cancelled.
  public func subscribe(_ handler: @escaping Handler) async {
    let (id, late) = state.withLock { s -> (UInt64, Bool) in
      s.next += 1
      s.handlers[s.next] = handler
      guard s.task == nil else { return (s.next, true) }
      s.task = Task { await self.run() }
      return (s.next, false)
    }
    // A late subscriber also hears of events that come meanwhile: at worst a key is queued twice.
    if late, store.isReady { await handler(.restarted(store.list())) }
    await AsyncEvent().wait()
    let last = state.withLock { s -> Task<Void, Never>? in
      s.handlers[id] = nil
      guard s.handlers.isEmpty else { return nil }
      defer { s.task = nil }
      return s.task
    }
    if let last {
      last.cancel()
      await last.value
    }
  }

  /// The number of subscribers now (for tests).
  public var subscribers: Int { state.withLock { $0.handlers.count } }

  private func run() async {
    await watch { event in
      guard let event = self.kept(event) else { return }
      let delivered: InformerEvent<Object>
      switch event {
      case .restarted(let all): delivered = .restarted(all)
      case .applied(let o): delivered = .applied(o, old: self.store.get(ObjectKey(o)))
      case .deleted(let o): delivered = .deleted(o)
      }
      self.store.apply(event)
      for h in self.state.withLock({ Array($0.handlers.values) }) { await h(delivered) }
    }
  }
}

extension SharedInformer {
  /// `event` as the cache keeps it (`keep`): an object no longer kept is deleted from the cache; nil when there is
  /// nothing to apply.
  fileprivate func kept(_ event: WatcherEvent<Object>) -> WatcherEvent<Object>? {
    guard let keep else { return event }
    switch event {
    case .restarted(let all): return .restarted(all.compactMap(keep))
    case .applied(let o):
      if let k = keep(o) { return .applied(k) }
      return store.get(ObjectKey(o)).map { .deleted($0) }
    case .deleted(let o): return store.get(ObjectKey(o)).map { .deleted($0) }
    }
  }
}

/// Identifies one shared watch: the collection (resource and namespace), its selectors, whether it is metadata only,
/// and the Swift type it decodes to.
public struct InformerKey: Hashable, Sendable, CustomStringConvertible {
  public var resource: ResourceDescriptor
  /// nil: all namespaces (or a cluster-scoped resource).
  public var namespace: String?
  public var labelSelector: String?
  public var fieldSelector: String?
  public var metadataOnly: Bool
  /// Whether the cached objects keep `metadata.managedFields` (only for readers of field ownership).
  public var keepsManagedFields: Bool = false
  /// The decoded type's name.
  public var type: String
  /// The name of the informer's `keep` rule (what its cache holds of each object), if it has one.
  public var keepRule: String? = nil

  public var description: String {
    var s = "\(resource) in \(namespace.map { "namespace \($0)" } ?? "all namespaces")"
    if let l = labelSelector { s += ", labels \(l)" }
    if let f = fieldSelector { s += ", fields \(f)" }
    if metadataOnly { s += ", metadata only" }
    if keepsManagedFields { s += ", with managedFields" }
    if let k = keepRule { s += ", keeping \(k)" }
    return s
  }
}

/// The shared informers of one client, like controller-runtime's manager cache: one watch and one cache per
/// collection (`InformerKey`), handed to every controller that asks for the same collection. Controllers built from
/// the same registry therefore open one watch for a collection, however many of them need it.
public final class InformerRegistry: Sendable {
  public let client: KubeClient
  private let config: WatcherConfig
  private let clock: RuntimeClock
  private let backoff: @Sendable () -> Backoff
  private let logger: Logger
  private let metrics: MetricsRegistry?
  private let informers = Mutex<[InformerKey: any Sendable]>([:])
  /// Views (`SharedInformer.view`) and other values shared by the registry's users, by name.
  private let sharedValues = Mutex<[String: any Sendable]>([:])

  /// `config` gives the paging and timeouts of every watch (its selectors are ignored: each informer has its own).
  public init(
    client: KubeClient, config: WatcherConfig = WatcherConfig(), clock: RuntimeClock = .continuous,
    backoff: @escaping @Sendable () -> Backoff = { Backoff() }, logger: Logger, metrics: MetricsRegistry? = nil
  ) {
    self.client = client
    self.config = config
    self.clock = clock
    self.backoff = backoff
    self.logger = logger
    self.metrics = metrics
  }

  /// The informer of `resource` in `namespace` (nil: all namespaces) with these selectors, made on first use.
  ///
  /// Its cache leaves `metadata.managedFields` out, as controller-runtime users' caches do: the field-ownership trees
  /// are often the larger part of an object, and only readers of field ownership (`keepManagedFields`) need them.
  ///
  /// `keep` (named `keepRule`, which identifies it) decides what the cache holds of each object
  /// (`SharedInformer.init`).
  public func informer<Object: KubeObject>(
    _ resource: ResourceDescriptor, namespace: String?, labelSelector: String? = nil, fieldSelector: String? = nil,
    metadataOnly: Bool = false, keepManagedFields: Bool = false, as type: Object.Type = Object.self,
    keepRule: String? = nil, keep: (@Sendable (Object) -> Object?)? = nil
  ) -> SharedInformer<Object> {
    let key = InformerKey(
      resource: resource, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector,
      metadataOnly: metadataOnly, keepsManagedFields: keepManagedFields, type: String(reflecting: Object.self),
      keepRule: keep == nil ? nil : keepRule ?? "a rule")
    return informers.withLock { all in
      if let existing = all[key] as? SharedInformer<Object> { return existing }
      var config = self.config
      config.labelSelector = labelSelector
      config.fieldSelector = fieldSelector
      var l = logger
      l[metadataKey: "informer"] = "\(key)"
      let made = SharedInformer(
        name: key.description,
        source: KubeWatchSource<Object>(
          client: client, resource: resource, namespace: namespace, metadataOnly: metadataOnly,
          stripManagedFields: !keepManagedFields),
        config: config, clock: clock, backoff: backoff, logger: l, metrics: metrics, keep: keep)
      all[key] = made
      return made
    }
  }

  /// The value shared under `name`, made by `make` on first use (e.g. a view of an informer, or the rule an
  /// informer's `keep` reads): every user of the registry that asks for `name` gets the same one.
  public func shared<Value: Sendable>(_ name: String, make: () -> Value) -> Value {
    if let existing = sharedValues.withLock({ $0[name] as? Value }) { return existing }
    // Made outside the lock (`make` may ask for other shared values); of two made at once, the first stored wins.
    let made = make()
    return sharedValues.withLock { all in
      if let existing = all[name] as? Value { return existing }
      all[name] = made
      return made
    }
  }

  /// The informer of the typed resource `type` in `namespace` (nil: all namespaces).
  public func informer<Object: KubeResource>(_ type: Object.Type, namespace: String?) -> SharedInformer<Object> {
    informer(Object.resource, namespace: namespace, as: type)
  }

  /// The collections asked for so far, sorted by description.
  public var keys: [InformerKey] { informers.withLock { $0.keys.sorted { $0.description < $1.description } } }
}
