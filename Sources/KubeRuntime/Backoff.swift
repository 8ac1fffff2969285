import Foundation

/// Jittered exponential backoff that resets after a healthy period (kube-rs's watcher default: 0.8 s to 30 s).
///
/// Attempt n waits a random time in `[d * (1 - jitter), d]` with `d = min(max, initial * factor^n)`.
/// When no failure was reported for `resetAfter`, the next failure starts again from `initial`.
public struct Backoff: Sendable {
  public var initial: Duration
  public var max: Duration
  public var factor: Double
  /// Fraction of each delay that is randomized, 0...1.
  public var jitter: Double
  /// A failure-free period after which the attempt count goes back to zero.
  public var resetAfter: Duration
  /// The random draw in 0...1; injectable for tests.
  public var random: @Sendable () -> Double

  /// Failures counted since the last reset.
  public private(set) var attempt = 0
  private var lastFailure: Duration?

  public init(
    initial: Duration = .milliseconds(800), max: Duration = .seconds(30), factor: Double = 2, jitter: Double = 0.5,
    resetAfter: Duration = .seconds(120), random: @escaping @Sendable () -> Double = { Double.random(in: 0...1) }
  ) {
    self.initial = initial
    self.max = max
    self.factor = factor
    self.jitter = Swift.min(1, Swift.max(0, jitter))
    self.resetAfter = resetAfter
    self.random = random
  }

  /// The un-jittered delay of attempt `n` (0-based), capped at `max`.
  public func ceiling(attempt n: Int) -> Duration {
    let seconds = Swift.min(
      Self.seconds(max), Self.seconds(initial) * pow(factor, Double(Swift.min(Swift.max(0, n), 62))))
    return Self.duration(seconds)
  }

  /// Records a failure at monotonic time `now` and returns how long to wait before the next try.
  public mutating func next(now: Duration) -> Duration {
    if let last = lastFailure, now - last >= resetAfter { attempt = 0 }
    let ceiling = Self.seconds(ceiling(attempt: attempt))
    let draw = Swift.min(1, Swift.max(0, random()))
    attempt += 1
    lastFailure = now
    return Self.duration(ceiling * (1 - jitter * draw))
  }

  /// Forgets all failures (e.g. after a success that proves the peer healthy).
  public mutating func reset() {
    attempt = 0
    lastFailure = nil
  }

  static func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
  }

  static func duration(_ seconds: Double) -> Duration {
    .nanoseconds(Int64((seconds * 1e9).rounded()))
  }
}

/// Per-item exponential failure backoff of the work queue: `base * 2^failures`, capped (client-go: 5 ms to 1000 s).
public struct ItemBackoff: Sendable, Hashable {
  public var base: Duration
  public var max: Duration

  public init(base: Duration = .milliseconds(5), max: Duration = .seconds(1000)) {
    self.base = base
    self.max = max
  }

  /// The delay after the `failures`-th consecutive failure (1-based; 0 gives `base`).
  public func delay(failures: Int) -> Duration {
    let exp = Swift.min(Swift.max(0, failures - 1), 62)
    let seconds = Backoff.seconds(base) * pow(2, Double(exp))
    return seconds >= Backoff.seconds(max) ? max : Backoff.duration(seconds)
  }
}
