import EngineContract

/// An error in a duration string such as "7y" or "1h30m", naming the field and the bad text.
public struct DurationError: Error, Sendable, Hashable, CustomStringConvertible {
  /// The field that held the duration, e.g. "spec.rpo".
  public var field: String
  /// The text that failed to parse.
  public var value: String
  /// What is wrong.
  public var reason: String

  public var description: String {
    "\(field): invalid duration '\(value)': \(reason); use one or more <number><unit> with units y, w, d, h, m, s "
      + "(e.g. 7y, 90d, 24h, 1h30m)"
  }
}

/// Durations as written in the CRDs: the contract's one grammar (`EngineDuration`), one or more `<number><unit>`
/// with units y (365 d), w, d, h, m (minutes), s, at most 1000y; the engine reads `--max-age` and `--retry-lock`
/// with the same parser.
public enum DurationText {
  /// Parses e.g. "7y", "90d", "24h", "5m", "30s" or "1h30m" into seconds.
  public static func parseSeconds(_ text: String, field: String = "duration") throws(DurationError) -> Int64 {
    do { return try EngineDuration.parseSeconds(text) } catch {
      throw DurationError(field: field, value: text, reason: error.reason)
    }
  }

  /// Formats seconds compactly, largest units first: 900 -> "15m", 252 -> "4m12s", 0 -> "0s".
  ///
  /// Years and weeks are not used, so the text reads like a `kubectl` age ("90d", "26h").
  public static func format(seconds: Int64) -> String { EngineDuration.format(seconds: seconds) }
}
