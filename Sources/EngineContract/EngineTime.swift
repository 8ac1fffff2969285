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
  /// Only text of that exact shape reaches the formatter: ICU also traps on a long digit run elsewhere (botrt-fuzz
  /// `manifest` found `05.5555555555555555555555555e5555…Z`, whose digits after the `e` were not cut).
  public static func parse(_ text: String) -> Date? {
    let s = cutFraction(text)
    guard wellFormed(s) else { return nil }
    let f = ISO8601DateFormatter()
    for o: ISO8601DateFormatter.Options in [[.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime]] {
      f.formatOptions = o
      if let d = f.date(from: s) { return d }
    }
    return nil
  }

  /// Whether `s` is `YYYY-MM-DDTHH:MM:SS[.digits](Z|±HH:MM)`, byte by byte.
  static func wellFormed(_ s: String) -> Bool {
    let u = Array(s.utf8)
    func digit(_ i: Int) -> Bool { i < u.count && u[i] >= UInt8(ascii: "0") && u[i] <= UInt8(ascii: "9") }
    func digits(_ r: Range<Int>) -> Bool { r.allSatisfy(digit) }
    func byte(_ i: Int, _ c: Unicode.Scalar) -> Bool { i < u.count && u[i] == UInt8(ascii: c) }
    guard digits(0..<4), byte(4, "-"), digits(5..<7), byte(7, "-"), digits(8..<10), byte(10, "T"), digits(11..<13),
      byte(13, ":"), digits(14..<16), byte(16, ":"), digits(17..<19)
    else { return false }
    var i = 19
    if byte(i, ".") {
      i += 1
      let start = i
      while digit(i) { i += 1 }
      guard i > start else { return false }
    }
    if byte(i, "Z") { return i + 1 == u.count }
    guard byte(i, "+") || byte(i, "-") else { return false }
    return i + 6 == u.count && digits((i + 1)..<(i + 3)) && byte(i + 3, ":") && digits((i + 4)..<(i + 6))
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
