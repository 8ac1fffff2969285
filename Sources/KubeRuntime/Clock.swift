import Foundation
import Synchronization

/// A type-erased monotonic clock with a wall-clock reading, built from any Swift `Clock` measured in `Duration`.
///
/// Production code uses `.continuous` (a `ContinuousClock`); tests pass a `ManualClock`, so no test sleeps.
public struct RuntimeClock: Sendable {
  private let elapsed: @Sendable () -> Duration
  private let sleeper: @Sendable (Duration) async throws -> Void
  private let wall: @Sendable () -> Date

  /// Wraps `clock`; `now()` counts from the moment of wrapping, `wallNow()` comes from `wallClock`.
  public init<C: Clock>(_ clock: C, wallClock: @escaping @Sendable () -> Date = { Date() })
  where C.Duration == Duration {
    let start = clock.now
    elapsed = { start.duration(to: clock.now) }
    sleeper = { d in try await clock.sleep(until: clock.now.advanced(by: d), tolerance: nil) }
    wall = wallClock
  }

  /// A manual clock's time and sleeps, with wall time derived from its offset.
  public init(_ clock: ManualClock) {
    elapsed = { clock.now.offset }
    sleeper = { d in try await clock.sleep(until: clock.now.advanced(by: d), tolerance: nil) }
    wall = { clock.wallNow }
  }

  /// The production clock: `ContinuousClock` and the system's wall time.
  public static var continuous: RuntimeClock { RuntimeClock(ContinuousClock()) }

  /// Monotonic time since this clock was created.
  public func now() -> Duration { elapsed() }

  /// Wall-clock time, for timestamps written to the apiserver (never for measuring intervals).
  public func wallNow() -> Date { wall() }

  /// Sleeps for `duration` (returns at once for zero or negative); throws `CancellationError` when cancelled.
  public func sleep(for duration: Duration) async throws {
    if duration <= .zero {
      try Task.checkCancellation()
      return
    }
    try await sleeper(duration)
  }
}

/// A clock that only moves when a test calls `advance(by:)`; sleepers resume when their deadline is reached.
public final class ManualClock: Clock, Sendable {
  /// A point in manual time: the offset from the clock's start.
  public struct Instant: InstantProtocol, Sendable {
    public var offset: Duration
    public init(offset: Duration) { self.offset = offset }
    public func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
    public func duration(to other: Instant) -> Duration { other.offset - offset }
    public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
  }

  private struct Sleeper {
    var id: UInt64
    var deadline: Duration
    var continuation: CheckedContinuation<Void, any Error>
  }

  private struct SleeperWaiter {
    var count: Int
    var continuation: CheckedContinuation<Void, Never>
  }

  private struct State {
    var now: Duration = .zero
    var nextID: UInt64 = 0
    var sleepers: [Sleeper] = []
    var cancelled: Set<UInt64> = []
    var waiters: [SleeperWaiter] = []
  }

  private let state = Mutex(State())
  private let wallStart: Date

  /// A clock at offset zero whose wall time starts at `wallStart`.
  public init(wallStart: Date = Date(timeIntervalSince1970: 1_700_000_000)) { self.wallStart = wallStart }

  public var now: Instant { Instant(offset: state.withLock { $0.now }) }
  public var minimumResolution: Duration { .nanoseconds(1) }

  /// The wall time: `wallStart` plus the elapsed manual time.
  public var wallNow: Date {
    let d = state.withLock { $0.now }
    return wallStart.addingTimeInterval(Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
  }

  /// The number of tasks currently sleeping on this clock.
  public var sleeperCount: Int { state.withLock { $0.sleepers.count } }

  /// The earliest deadline of the current sleepers, if any.
  public var nextDeadline: Duration? { state.withLock { $0.sleepers.map(\.deadline).min() } }

  public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
    try Task.checkCancellation()
    let id: UInt64 = state.withLock {
      $0.nextID += 1
      return $0.nextID
    }
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
        let action: (resume: Bool, cancelled: Bool, waiters: [SleeperWaiter]) = state.withLock { s in
          if s.cancelled.remove(id) != nil { return (false, true, []) }
          if deadline.offset <= s.now { return (true, false, []) }
          s.sleepers.append(Sleeper(id: id, deadline: deadline.offset, continuation: c))
          let count = s.sleepers.count
          var ready: [SleeperWaiter] = []
          s.waiters.removeAll { w in
            if w.count <= count {
              ready.append(w)
              return true
            }
            return false
          }
          return (false, false, ready)
        }
        for w in action.waiters { w.continuation.resume() }
        if action.cancelled {
          c.resume(throwing: CancellationError())
        } else if action.resume {
          c.resume()
        }
      }
    } onCancel: {
      let sleeper: Sleeper? = state.withLock { s in
        if let i = s.sleepers.firstIndex(where: { $0.id == id }) { return s.sleepers.remove(at: i) }
        s.cancelled.insert(id)
        return nil
      }
      sleeper?.continuation.resume(throwing: CancellationError())
    }
  }

  /// Moves time forward by `duration` and resumes every sleeper whose deadline has been reached.
  public func advance(by duration: Duration) {
    let due: [Sleeper] = state.withLock { s in
      s.now += duration
      let now = s.now
      var due: [Sleeper] = []
      s.sleepers.removeAll { sl in
        if sl.deadline <= now {
          due.append(sl)
          return true
        }
        return false
      }
      return due.sorted { $0.deadline < $1.deadline }
    }
    for s in due { s.continuation.resume() }
  }

  /// Advances exactly to the earliest sleeper's deadline (if any) and returns how far time moved.
  @discardableResult
  public func advanceToNextDeadline() -> Duration? {
    let delta: Duration? = state.withLock { s in s.sleepers.map(\.deadline).min().map { Swift.max(.zero, $0 - s.now) } }
    if let d = delta { advance(by: d) }
    return delta
  }

  /// Suspends until at least `count` tasks sleep on this clock (no wall-clock waiting involved).
  public func waitForSleepers(atLeast count: Int) async {
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
      let ready = state.withLock { s -> Bool in
        if s.sleepers.count >= count { return true }
        s.waiters.append(SleeperWaiter(count: count, continuation: c))
        return false
      }
      if ready { c.resume() }
    }
  }
}
