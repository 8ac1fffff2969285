import Foundation

/// RFC 3339 times as the engine records them (a manifest's time, a lock's expiry, a key file's creation, a result's
/// `snapshotTime`) and as its flags take them, parsed without trapping on hostile text.
///
/// Foundation's `ISO8601DateFormatter` (ICU underneath) kills the process with a division by zero on a fractional
/// second of about 35 digits or more (found by botrt-fuzz's `result` target), and these texts come from the storage
/// or from a Pod's termination message. The fraction is cut to nanoseconds (9 digits) before the formatter sees it.
public enum EngineTime {
  /// Fraction digits kept: nanoseconds, the most any writer of these times writes.
  static let maxFractionDigits = 9

  /// Parses an RFC 3339 time with a zone (Z or an offset), with or without fractional seconds; nil when unreadable.
  public static func parse(_ text: String) -> Date? {
    let s = cutFraction(text)
    let f = ISO8601DateFormatter()
    for o: ISO8601DateFormatter.Options in [[.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime]] {
      f.formatOptions = o
      if let d = f.date(from: s) { return d }
    }
    return nil
  }

  /// `text` with the digits after its first "." cut to `maxFractionDigits`.
  static func cutFraction(_ text: String) -> String {
    var u = Array(text.utf8)
    guard let dot = u.firstIndex(of: UInt8(ascii: ".")) else { return text }
    var end = dot + 1
    while end < u.count, u[end] >= UInt8(ascii: "0"), u[end] <= UInt8(ascii: "9") { end += 1 }
    guard end - (dot + 1) > maxFractionDigits else { return text }
    u.removeSubrange((dot + 1 + maxFractionDigits)..<end)
    return String(decoding: u, as: UTF8.self)
  }
}
