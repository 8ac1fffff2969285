import Foundation
import KubeCore
import Synchronization

/// A thread-safe cache of one kind, keyed by namespace/name, with secondary indexes; fed by a watcher.
///
/// `.restarted` replaces the whole content in one step (readers see either the old or the new list, never a mix).
/// Reads return snapshots (value copies), so a reader never observes a half-applied change.
public final class Store<Object: KubeObject>: Sendable {
  /// Computes the index values of an object (e.g. an owner uid, a label value).
  public typealias IndexFunction = @Sendable (Object) -> [String]

  private struct State {
    var objects: [ObjectKey: Object] = [:]
    /// index name → value → keys.
    var indexes: [String: [String: Set<ObjectKey>]] = [:]
    var ready = false
    var generation: UInt64 = 0
  }

  private let state = Mutex(State())
  private let indexers: [String: IndexFunction]
  private let readyEvent = AsyncEvent()

  /// A store with the named index functions.
  public init(indexers: [String: IndexFunction] = [:]) {
    self.indexers = indexers
    state.withLock { s in for name in indexers.keys { s.indexes[name] = [:] } }
  }

  /// Applies a watcher event.
  public func apply(_ event: WatcherEvent<Object>) {
    switch event {
    case .restarted(let all):
      var fresh = State()
      for o in all { fresh.objects[ObjectKey(o)] = o }
      for (name, fn) in indexers {
        var idx: [String: Set<ObjectKey>] = [:]
        for (k, o) in fresh.objects { for v in fn(o) { idx[v, default: []].insert(k) } }
        fresh.indexes[name] = idx
      }
      fresh.ready = true
      state.withLock { s in
        fresh.generation = s.generation + 1
        s = fresh
      }
      readyEvent.signal()
    case .applied(let o):
      let key = ObjectKey(o)
      state.withLock { s in
        if let old = s.objects[key] { unindex(&s, key, old) }
        s.objects[key] = o
        index(&s, key, o)
        s.generation += 1
      }
    case .deleted(let o):
      let key = ObjectKey(o)
      state.withLock { s in
        if let old = s.objects.removeValue(forKey: key) { unindex(&s, key, old) }
        s.generation += 1
      }
    }
  }

  private func index(_ s: inout State, _ key: ObjectKey, _ o: Object) {
    for (name, fn) in indexers { for v in fn(o) { s.indexes[name, default: [:]][v, default: []].insert(key) } }
  }

  private func unindex(_ s: inout State, _ key: ObjectKey, _ o: Object) {
    for (name, fn) in indexers {
      for v in fn(o) {
        s.indexes[name]?[v]?.remove(key)
        if s.indexes[name]?[v]?.isEmpty == true { s.indexes[name]?[v] = nil }
      }
    }
  }

  /// The cached object with `key`.
  public func get(_ key: ObjectKey) -> Object? { state.withLock { $0.objects[key] } }

  /// All cached objects, sorted by key.
  public func list() -> [Object] {
    state.withLock { s in s.objects.keys.sorted().compactMap { s.objects[$0] } }
  }

  /// The objects of `namespace`, sorted by name.
  public func list(namespace: String) -> [Object] {
    state.withLock { s in s.objects.keys.filter { $0.namespace == namespace }.sorted().compactMap { s.objects[$0] } }
  }

  /// The cached objects of `namespace` (nil: every namespace) that `isIncluded` accepts, sorted by key: one pass
  /// under the lock, only the matches copied.
  public func select(namespace: String? = nil, _ isIncluded: (Object) -> Bool) -> [Object] {
    state.withLock { s in
      s.objects.filter { (namespace == nil || $0.key.namespace == namespace) && isIncluded($0.value) }
        .sorted { $0.key < $1.key }.map(\.value)
    }
  }

  /// The objects whose index `name` contains `value`, sorted by key.
  public func byIndex(_ name: String, _ value: String) -> [Object] {
    state.withLock { s in (s.indexes[name]?[value] ?? []).sorted().compactMap { s.objects[$0] } }
  }

  /// The number of cached objects.
  public var count: Int { state.withLock { $0.objects.count } }

  /// Whether a first complete list has been applied.
  public var isReady: Bool { state.withLock { $0.ready } }

  /// Increases on every change; lets tests and readers detect updates cheaply.
  public var generation: UInt64 { state.withLock { $0.generation } }

  /// Waits until the first complete list has been applied.
  public func waitUntilReady() async { await readyEvent.wait() }
}

/// Ready-made index functions.
public enum Indexers {
  /// The uids of an object's owner references.
  public static func ownerUID<O: KubeObject>(_ o: O) -> [String] { (o.metadata.ownerReferences ?? []).map(\.uid) }

  /// The value of `label`, if set.
  public static func label<O: KubeObject>(_ label: String) -> @Sendable (O) -> [String] {
    { o in o.metadata.labels?[label].map { [$0] } ?? [] }
  }
}

/// A one-shot event: `wait()` returns once `signal()` has been called (immediately afterwards).
public final class AsyncEvent: Sendable {
  private struct State {
    var signalled = false
    var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    var next: UInt64 = 0
  }

  private let state = Mutex(State())

  public init() {}

  public var isSignalled: Bool { state.withLock { $0.signalled } }

  /// Releases all current and future waiters.
  public func signal() {
    let ws: [CheckedContinuation<Void, Never>] = state.withLock { s in
      if s.signalled { return [] }
      s.signalled = true
      let w = Array(s.waiters.values)
      s.waiters = [:]
      return w
    }
    for w in ws { w.resume() }
  }

  /// Waits for the signal; returns early (without it) when the task is cancelled.
  public func wait() async {
    let id: UInt64 = state.withLock {
      $0.next += 1
      return $0.next
    }
    await withTaskCancellationHandler {
      await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
        let resumeNow = state.withLock { s -> Bool in
          if s.signalled || Task.isCancelled { return true }
          s.waiters[id] = c
          return false
        }
        if resumeNow { c.resume() }
      }
    } onCancel: {
      let c = state.withLock { $0.waiters.removeValue(forKey: id) }
      c?.resume()
    }
  }
}
