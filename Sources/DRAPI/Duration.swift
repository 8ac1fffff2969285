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

/// Durations as written in the CRDs: one or more `<number><unit>` with units y (365 d), w, d, h, m, s.
public enum DurationText {
  /// Seconds per unit character.
  static let units: [Character: Int64] = ["y": 365 * 86_400, "w": 7 * 86_400, "d": 86_400, "h": 3_600, "m": 60, "s": 1]

  /// Parses e.g. "7y", "90d", "24h", "5m", "30s" or "1h30m" into seconds.
  public static func parseSeconds(_ text: String, field: String = "duration") throws(DurationError) -> Int64 {
    func fail(_ reason: String) -> DurationError { DurationError(field: field, value: text, reason: reason) }
    guard !text.isEmpty else { throw fail("it is empty") }
    var total: Int64 = 0
    var number: Int64? = nil
    for ch in text {
      if ch.isASCII, let digit = ch.wholeNumberValue {
        let (m, o1) = (number ?? 0).multipliedReportingOverflow(by: 10)
        let (v, o2) = m.addingReportingOverflow(Int64(digit))
        guard !o1, !o2 else { throw fail("the number is too large") }
        number = v
      } else if let unit = units[ch] {
        guard let n = number else { throw fail("unit '\(ch)' has no number before it") }
        let (part, o1) = n.multipliedReportingOverflow(by: unit)
        let (sum, o2) = total.addingReportingOverflow(part)
        guard !o1, !o2 else { throw fail("the duration is too large") }
        total = sum
        number = nil
      } else {
        throw fail("'\(ch)' is not a digit or one of the units y, w, d, h, m, s")
      }
    }
    if let n = number { throw fail("the number \(n) at the end has no unit") }
    return total
  }

  /// Formats seconds compactly, largest units first: 900 -> "15m", 252 -> "4m12s", 0 -> "0s".
  ///
  /// Years and weeks are not used, so the text reads like a `kubectl` age ("90d", "26h").
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
