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

/// Runs `body`, which may block (`blockingAwait`), on an OS thread of its own and resumes with its result: an async
/// caller must never block its cooperative thread, or concurrent callers can take every thread of the pool (2 on a
/// 2-core machine) while the tasks they wait for have none left to run on.
func offPool<T: Sendable>(name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
  let box = ResultBox<T>()
  await runThreads(1, name: name) { _ in
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

/// A progress report emitted while a command runs.
public struct ProgressEvent: Sendable, Codable {
  public var phase: String
  public var files: Int
  public var bytesDone: Int64
  public var bytesTotal: Int64?
  public var bytesStored: Int64
  public var errors: Int
  public init(phase: String, files: Int, bytesDone: Int64, bytesTotal: Int64?, bytesStored: Int64, errors: Int) {
    self.phase = phase
    self.files = files
    self.bytesDone = bytesDone
    self.bytesTotal = bytesTotal
    self.bytesStored = bytesStored
    self.errors = errors
  }
}

/// Receives progress events (from any thread).
public typealias ProgressHandler = @Sendable (ProgressEvent) -> Void
