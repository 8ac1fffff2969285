/// An error in a duration text such as "7y" or "1h30m": the text and what is wrong with it.
public struct EngineDurationError: Error, Sendable, Hashable, CustomStringConvertible {
  public var value: String
  public var reason: String
  public init(value: String, reason: String) {
    self.value = value
    self.reason = reason
  }
  public var description: String {
    "invalid duration '\(value)': \(reason); use one or more <number><unit> with units y, w, d, h, m, s "
      + "(m is minutes; e.g. 7y, 90d, 24h, 1h30m)"
  }
}

/// The one duration grammar of the CRDs and the engine's flags (`--max-age`, `--retry-lock`): one or more
/// `<number><unit>` with units y (365 days), w, d, h, m (minutes), s, e.g. "7y", "90d", "1h30m".
public enum EngineDuration {
  /// Seconds per unit character.
  public static let units: [Character: Int64] = [
    "y": 365 * 86_400, "w": 7 * 86_400, "d": 86_400, "h": 3_600, "m": 60, "s": 1,
  ]
  /// The longest duration accepted: 1,000 years, so a sum with any date stays a representable time.
  public static let maxSeconds: Int64 = 1_000 * 365 * 86_400

  /// Parses a duration into seconds (at most `maxSeconds`).
  public static func parseSeconds(_ text: String) throws(EngineDurationError) -> Int64 {
    func fail(_ reason: String) -> EngineDurationError { EngineDurationError(value: text, reason: reason) }
    guard !text.isEmpty else { throw fail("it is empty") }
    var total: Int64 = 0
    var number: Int64? = nil
    for ch in text {
      if ch.isASCII, let digit = ch.wholeNumberValue {
        let (m, o1) = (number ?? 0).multipliedReportingOverflow(by: 10)
        let (v, o2) = m.addingReportingOverflow(Int64(digit))
        guard !o1, !o2, v <= maxSeconds else { throw fail("the number is too large (at most 1000y)") }
        number = v
      } else if let unit = units[ch] {
        guard let n = number else { throw fail("unit '\(ch)' has no number before it") }
        let (part, o1) = n.multipliedReportingOverflow(by: unit)
        let (sum, o2) = total.addingReportingOverflow(part)
        guard !o1, !o2, sum <= maxSeconds else { throw fail("the duration is too large (at most 1000y)") }
        total = sum
        number = nil
      } else {
        throw fail("'\(ch)' is not a digit or one of the units y, w, d, h, m, s")
      }
    }
    if let n = number { throw fail("the number \(n) at the end has no unit") }
    return total
  }

  /// Formats seconds compactly, largest units first (days at most, so it reads like a `kubectl` age): 900 -> "15m",
  /// 252 -> "4m12s", 0 -> "0s". `parseSeconds` reads it back to the same value.
  public static func format(seconds: Int64) -> String {
    guard seconds > 0 else { return "0s" }
    var rest = seconds
    var out = ""
    for (unit, size) in [("d", Int64(86_400)), ("h", 3_600), ("m", 60), ("s", 1)] where rest >= size {
      out += "\(rest / size)\(unit)"
      rest %= size
    }
    return out
  }
}
