import Synchronization

/// Runnables kept per namespace for a set of namespaces that changes while the controller runs (the backup
/// namespaces that policies name, for example): `set(_:)` starts the runnables of a namespace that joins the set
/// and stops those of one that leaves it. Before `run()` (a standby waiting for leadership) the set is only
/// recorded; `run()` starts what it holds, and `requestStop()` stops everything.
public final class NamespacedRunnables: Runnable {
  public let name: String
  private let make: @Sendable (String) -> [any Runnable]

  private struct Running: Sendable {
    var runnables: [any Runnable]
    var task: Task<Void, Never>
  }

  private struct State: Sendable {
    var wanted: Set<String> = []
    var running: [String: Running] = [:]
    var started = false
    var stopped = false
  }

  private let state = Mutex(State())
  private let stopEvent = AsyncEvent()

  /// `make` builds the runnables of one namespace (called each time the namespace joins the set).
  public init(name: String, make: @escaping @Sendable (String) -> [any Runnable]) {
    self.name = name
    self.make = make
  }

  /// The namespaces whose runnables run now.
  public var running: Set<String> { state.withLock { Set($0.running.keys) } }

  /// Makes `namespaces` the set; returns once the runnables of the namespaces that left it have stopped.
  public func set(_ namespaces: Set<String>) async { await set { namespaces } }

  /// Makes the set what `current` returns, read under this object's lock, so concurrent callers that read a
  /// changing source apply it in order (the last to take the lock reads the newest value).
  public func set(_ current: () -> Set<String>) async {
    let stopping = state.withLock { s -> [Running] in
      let namespaces = current()
      s.wanted = namespaces
      guard s.started, !s.stopped else { return [] }
      let gone = s.running.keys.filter { !namespaces.contains($0) }
      let stopping = gone.compactMap { s.running.removeValue(forKey: $0) }
      for ns in namespaces where s.running[ns] == nil { s.running[ns] = launch(ns) }
      return stopping
    }
    await stop(stopping)
  }

  public func run() async {
    state.withLock { s in
      s.started = true
      guard !s.stopped else { return }
      for ns in s.wanted where s.running[ns] == nil { s.running[ns] = launch(ns) }
    }
    await stopEvent.wait()
    let all = state.withLock { s -> [Running] in
      s.stopped = true
      defer { s.running = [:] }
      return Array(s.running.values)
    }
    await stop(all)
  }

  public func requestStop() async {
    state.withLock { $0.stopped = true }
    stopEvent.signal()
  }

  private func launch(_ namespace: String) -> Running {
    let runnables = make(namespace)
    let task = Task {
      await withDiscardingTaskGroup { group in
        for r in runnables { group.addTask { await r.run() } }
      }
    }
    return Running(runnables: runnables, task: task)
  }

  private func stop(_ running: [Running]) async {
    for r in running {
      for x in r.runnables { await x.requestStop() }
    }
    for r in running { await r.task.value }
  }
}
