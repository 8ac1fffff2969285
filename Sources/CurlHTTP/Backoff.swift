import Foundation

/// Exponential backoff with full jitter: attempt n waits a random time in
/// [base * factor^n * (1 - jitter), base * factor^n], capped at `max`.
public struct ExponentialBackoff: Sendable, Hashable {
  public var base: Duration
  public var max: Duration
  public var factor: Double
  /// Fraction of the delay that is randomized, 0...1.
  public var jitter: Double

  public init(
    base: Duration = .milliseconds(800), max: Duration = .seconds(30), factor: Double = 2, jitter: Double = 0.5
  ) {
    self.base = base
    self.max = max
    self.factor = factor
    self.jitter = jitter
  }

  /// The delay before retry number `attempt` (0-based), with `unit` in 0...1 as the random draw.
  public func delay(attempt: Int, unit: Double) -> Duration {
    let baseSeconds = Self.seconds(base)
    let maxSeconds = Self.seconds(max)
    let raw = Swift.min(maxSeconds, baseSeconds * pow(factor, Double(Swift.max(0, Swift.min(attempt, 62)))))
    let jittered = raw * (1 - jitter * Swift.min(1, Swift.max(0, unit)))
    return .milliseconds(Int64((jittered * 1000).rounded()))
  }

  /// The delay before retry number `attempt`, drawn with the system random generator.
  public func delay(attempt: Int) -> Duration {
    delay(attempt: attempt, unit: Double.random(in: 0...1))
  }

  public static func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
  }
}

/// Parses an HTTP Retry-After value given in seconds (dates are treated as absent).
public func parseRetryAfter(_ value: String?) -> Duration? {
  guard let v = value?.trimmingCharacters(in: .whitespaces), let s = Int(v), s >= 0 else { return nil }
  return .seconds(Swift.min(s, 300))
}
