import Synchronization

/// A runnable that starts its inner runnable only once `open()` is called: a controller over a resource that may be
/// served later (a CRD installed while the process runs), which must not list and watch a resource the apiserver
/// does not serve. Once open it stays open; a stop before the opening means the inner runnable never runs.
public final class GatedRunnable: Runnable {
  let inner: any Runnable
  private let state = Mutex<(opened: Bool, stopped: Bool, waiter: CheckedContinuation<Bool, Never>?)>(
    (false, false, nil))

  public init(_ inner: any Runnable) { self.inner = inner }

  public var name: String { inner.name }

  /// Whether `open()` was called.
  public var isOpen: Bool { state.withLock { $0.opened } }

  /// Lets the inner runnable start (at once when `run()` is waiting).
  public func open() {
    let waiter = state.withLock { s -> CheckedContinuation<Bool, Never>? in
      if s.opened || s.stopped { return nil }
      s.opened = true
      defer { s.waiter = nil }
      return s.waiter
    }
    waiter?.resume(returning: true)
  }

  public func run() async {
    let go = await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
      let now = state.withLock { s -> Bool? in
        if s.stopped { return false }
        if s.opened { return true }
        s.waiter = c
        return nil
      }
      if let now { c.resume(returning: now) }
    }
    if go { await inner.run() }
  }

  public func requestStop() async {
    let waiter = state.withLock { s -> CheckedContinuation<Bool, Never>? in
      s.stopped = true
      defer { s.waiter = nil }
      return s.waiter
    }
    waiter?.resume(returning: false)
    await inner.requestStop()
  }
}
