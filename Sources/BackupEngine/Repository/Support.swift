import EngineContract
import Foundation

/// A byte-bounded blocking FIFO for pipeline threads: `push` blocks while full, `pop` while empty.
final class BoundedQueue<T>: @unchecked Sendable {
  private let cond = NSCondition()
  private var items: [T?] = []
  private var head = 0
  private var bytes = 0
  private let maxBytes: Int
  private var closed = false

  init(maxBytes: Int) { self.maxBytes = maxBytes }

  /// Adds an item of `size` bytes; returns false when the queue was closed (consumers gave up).
  @discardableResult
  func push(_ item: T, size: Int) -> Bool {
    cond.lock()
    defer { cond.unlock() }
    while !closed && bytes > 0 && bytes + size > maxBytes { cond.wait() }
    if closed { return false }
    items.append(item)
    bytes += size
    cond.broadcast()
    return true
  }

  /// Takes the next item, or nil when closed and drained.
  func pop(size: (T) -> Int) -> T? {
    cond.lock()
    defer { cond.unlock() }
    while head == items.count && !closed { cond.wait() }
    if head == items.count { return nil }
    let it = items[head]!
    items[head] = nil  // release the payload now, not when the array is compacted
    head += 1
    if head > 1024 && head * 2 > items.count {
      items.removeFirst(head)
      head = 0
    }
    bytes -= size(it)
    cond.broadcast()
    return it
  }

  /// No more items will be pushed.
  func close() {
    cond.lock()
    closed = true
    cond.broadcast()
    cond.unlock()
  }
}

/// Runs `count` OS threads (off the cooperative pool) and resumes when all have returned.
func runThreads(_ count: Int, name: String, _ body: @escaping @Sendable (Int) -> Void) async {
  await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
    let group = DispatchGroup()
    for i in 0..<count {
      group.enter()
      let t = Thread {
        body(i)
        group.leave()
      }
      t.name = "\(name)-\(i)"
      t.stackSize = 4 << 20
      t.start()
    }
    group.notify(queue: .global()) { cont.resume() }
  }
}

/// Runs blocking work (which may wait for async storage calls through `blockingAwait`) on an OS thread of its own,
/// never on a thread of the cooperative pool: blocking one there deadlocks when the pool has as few threads as cores
/// (one or two on a small node, or several backups in one process) and the awaited task needs a thread too.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
  let box = ResultBox<T>()
  await runThreads(1, name: "blocking") { _ in
    do { box.set(.success(try body())) } catch { box.set(.failure(error)) }
  }
  return try box.get()
}

/// Runs an async operation from a pipeline thread, blocking that thread (never a cooperative one).
func blockingAwait<T: Sendable>(_ op: @escaping @Sendable () async throws -> T) throws -> T {
  let sem = DispatchSemaphore(value: 0)
  let box = ResultBox<T>()
  Task {
    do { box.set(.success(try await op())) } catch { box.set(.failure(error)) }
    sem.signal()
  }
  sem.wait()
  return try box.get()
}

final class ResultBox<T: Sendable>: @unchecked Sendable {
  private let lock = NSLock()
  private var r: Result<T, any Error>?
  func set(_ v: Result<T, any Error>) { lock.withLock { r = v } }
  func get() throws -> T { try lock.withLock { r! }.get() }
}

/// A lock-protected value.
final class Locked<T>: @unchecked Sendable {
  private let lock = NSLock()
  private var value: T
  init(_ v: T) { value = v }
  func with<R>(_ body: (inout T) throws -> R) rethrows -> R {
    lock.lock()
    defer { lock.unlock() }
    return try body(&value)
  }
}

/// A progress report emitted while a command runs: the contract's progress line, which `--json` writes as it is
/// (with the seconds elapsed) and the controller reads back from a Job's log.
public typealias ProgressEvent = EngineProgress

/// Receives progress events (from any thread).
public typealias ProgressHandler = @Sendable (ProgressEvent) -> Void
