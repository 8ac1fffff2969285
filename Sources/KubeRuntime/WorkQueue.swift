import Foundation

/// A work queue of keys, as client-go's rate-limited queue: deduplicating, one holder per key, delayed and
/// rate-limited re-adds, graceful shutdown.
///
/// Guarantees:
/// - A key is queued at most once: adding a key that is already waiting does nothing.
/// - A key handed out by `get()` is never handed out again until `done(_:)`; a key added meanwhile is marked
///   dirty and queued again on `done(_:)`, so no change is lost and no key is processed twice at once.
/// - `addRateLimited(_:)` re-adds after `ItemBackoff` (5 ms doubling to 1000 s per consecutive failure);
///   `forget(_:)` resets the key's failure count.
/// - `addAfter(_:_:)` keeps at most one pending timer per key (the earliest), so memory stays bounded by the
///   number of distinct keys.
/// - After `shutDown()`, `get()` returns nil, adds are ignored, and `waitUntilIdle()` lets in-flight items finish.
public actor WorkQueue<Key: Hashable & Sendable> {
  private struct Waiter {
    var id: UInt64
    var continuation: CheckedContinuation<Key?, Never>
  }

  private var queue: [Key] = []
  private var head = 0
  private var dirty: Set<Key> = []
  private var processing: Set<Key> = []
  private var failures: [Key: Int] = [:]
  private var delayed: [Key: (deadline: Duration, task: Task<Void, Never>)] = [:]
  private var waiters: [Waiter] = []
  private var idleWaiters: [CheckedContinuation<Void, Never>] = []
  private var nextWaiterID: UInt64 = 0
  private var cancelledWaiters: Set<UInt64> = []
  private var shuttingDown = false

  /// The queue's name, used as the `name` label of its metrics.
  public nonisolated let name: String
  private let clock: RuntimeClock
  private let itemBackoff: ItemBackoff
  private let metrics: WorkQueueMetrics?

  /// Total keys accepted by `add` (after deduplication).
  public private(set) var addsTotal = 0
  /// Total rate-limited re-adds.
  public private(set) var retriesTotal = 0

  public init(
    name: String, clock: RuntimeClock = .continuous, itemBackoff: ItemBackoff = ItemBackoff(),
    metrics: MetricsRegistry? = nil
  ) {
    self.name = name
    self.clock = clock
    self.itemBackoff = itemBackoff
    self.metrics = metrics.map(WorkQueueMetrics.init)
  }

  /// Keys waiting to be handed out.
  public var depth: Int { queue.count - head }
  /// Keys currently handed out and not yet `done`.
  public var inFlight: Int { processing.count }
  /// Keys with a pending `addAfter` timer.
  public var pendingDelayed: Int { delayed.count }
  public var isShuttingDown: Bool { shuttingDown }

  /// Queues `key` unless it is already waiting; if it is being processed it is queued again after `done`.
  public func add(_ key: Key) {
    guard !shuttingDown, !dirty.contains(key) else { return }
    dirty.insert(key)
    addsTotal += 1
    metrics?.adds.inc([name])
    if processing.contains(key) { return }
    if let w = popWaiter() {
      dirty.remove(key)
      processing.insert(key)
      w.continuation.resume(returning: key)
    } else {
      queue.append(key)
      updateDepth()
    }
  }

  /// Adds `key` after `delay` (at once for zero); of several pending delays for one key the earliest wins.
  public func addAfter(_ key: Key, _ delay: Duration) {
    guard !shuttingDown else { return }
    if delay <= .zero {
      add(key)
      return
    }
    let deadline = clock.now() + delay
    if let existing = delayed[key] {
      if existing.deadline <= deadline { return }
      existing.task.cancel()
    }
    let clock = self.clock
    let task = Task { [weak self] in
      do {
        try await clock.sleep(for: delay)
      } catch {
        return
      }
      await self?.fireDelayed(key, deadline: deadline)
    }
    delayed[key] = (deadline, task)
  }

  private func fireDelayed(_ key: Key, deadline: Duration) {
    guard let d = delayed[key], d.deadline == deadline else { return }
    delayed[key] = nil
    add(key)
  }

  /// Re-adds `key` after its per-key exponential backoff and counts a failure.
  public func addRateLimited(_ key: Key) {
    guard !shuttingDown else { return }
    let n = (failures[key] ?? 0) + 1
    failures[key] = n
    retriesTotal += 1
    metrics?.retries.inc([name])
    addAfter(key, itemBackoff.delay(failures: n))
  }

  /// Consecutive failures recorded for `key`.
  public func numRequeues(_ key: Key) -> Int { failures[key] ?? 0 }

  /// Clears the failure count of `key` (after a success).
  public func forget(_ key: Key) { failures[key] = nil }

  /// The next key to process, waiting while the queue is empty; nil after shutdown or cancellation.
  public func get() async -> Key? {
    if shuttingDown || Task.isCancelled { return nil }
    if head < queue.count {
      let key = queue[head]
      head += 1
      compact()
      dirty.remove(key)
      processing.insert(key)
      updateDepth()
      return key
    }
    nextWaiterID += 1
    let id = nextWaiterID
    return await withTaskCancellationHandler {
      await withCheckedContinuation { (c: CheckedContinuation<Key?, Never>) in
        if cancelledWaiters.remove(id) != nil || shuttingDown {
          c.resume(returning: nil)
        } else {
          waiters.append(Waiter(id: id, continuation: c))
        }
      }
    } onCancel: {
      Task { await self.cancelWaiter(id) }
    }
  }

  private func cancelWaiter(_ id: UInt64) {
    if let i = waiters.firstIndex(where: { $0.id == id }) {
      waiters.remove(at: i).continuation.resume(returning: nil)
    } else {
      cancelledWaiters.insert(id)
      // Bounded: a stale id is only left when the waiter already got a key.
      if cancelledWaiters.count > 1024 { cancelledWaiters.removeAll() }
    }
  }

  /// Marks `key` finished; if it was re-added while processing, it is queued again.
  public func done(_ key: Key) {
    guard processing.remove(key) != nil else { return }
    if dirty.contains(key) && !shuttingDown {
      if let w = popWaiter() {
        dirty.remove(key)
        processing.insert(key)
        w.continuation.resume(returning: key)
      } else {
        queue.append(key)
        updateDepth()
      }
    }
    if processing.isEmpty {
      let ws = idleWaiters
      idleWaiters = []
      for w in ws { w.resume() }
    }
  }

  /// Stops handing out keys: waiting `get()` calls return nil, pending timers are cancelled, adds are ignored.
  public func shutDown() {
    guard !shuttingDown else { return }
    shuttingDown = true
    for (_, d) in delayed { d.task.cancel() }
    delayed = [:]
    let ws = waiters
    waiters = []
    for w in ws { w.continuation.resume(returning: nil) }
    queue = []
    head = 0
    dirty = []
    updateDepth()
  }

  /// Returns once no key is being processed.
  public func waitUntilIdle() async {
    if processing.isEmpty { return }
    await withCheckedContinuation { idleWaiters.append($0) }
  }

  private func popWaiter() -> Waiter? { waiters.isEmpty ? nil : waiters.removeFirst() }

  private func compact() {
    if head == queue.count {
      queue.removeAll(keepingCapacity: queue.count < 1024)
      head = 0
    } else if head > 64 && head * 2 > queue.count {
      queue.removeFirst(head)
      head = 0
    }
  }

  private func updateDepth() { metrics?.depth.set(Double(depth), [name]) }
}

/// The metric families of work queues.
struct WorkQueueMetrics: Sendable {
  let adds: Counter
  let retries: Counter
  let depth: Gauge

  init(_ registry: MetricsRegistry) {
    adds = registry.counter("botrt_workqueue_adds_total", help: "Keys added to the work queue.", labels: ["name"])
    retries = registry.counter(
      "botrt_workqueue_retries_total", help: "Rate-limited re-adds after a failure.", labels: ["name"])
    depth = registry.gauge("botrt_workqueue_depth", help: "Keys waiting in the work queue.", labels: ["name"])
  }
}
