import Foundation

/// An error in a cron expression, naming the field and the token that is wrong.
public struct CronError: Error, Sendable, Hashable, CustomStringConvertible {
  /// The whole expression.
  public var expression: String
  /// The cron field ("minute", "hour", "day-of-month", "month", "day-of-week"), or "expression".
  public var field: String
  /// The offending token.
  public var token: String
  /// What is wrong and what is allowed.
  public var reason: String

  public var description: String {
    "cron expression '\(expression)': \(field) '\(token)': \(reason)"
  }
}

/// A parsed cron schedule in UTC: five fields (minute hour day-of-month month day-of-week) or a macro.
///
/// The semantics follow the parser of the Kubernetes CronJob controller: `*` and `?` mean "any"; day-of-week is
/// 0-6 (Sunday = 0) or SUN-SAT; month is 1-12 or JAN-DEC; when both day fields are restricted, a day matches if
/// either matches. `@every DURATION` fires at a fixed interval after the previous run.
public struct CronSchedule: Sendable, Hashable, CustomStringConvertible {
  /// One of the five fields of a cron expression.
  public enum Field: Int, Sendable, CaseIterable {
    case minute, hour, dayOfMonth, month, dayOfWeek

    /// The field's name as error messages use it.
    public var name: String {
      switch self {
      case .minute: "minute"
      case .hour: "hour"
      case .dayOfMonth: "day-of-month"
      case .month: "month"
      case .dayOfWeek: "day-of-week"
      }
    }

    var bounds: ClosedRange<Int> {
      switch self {
      case .minute: 0...59
      case .hour: 0...23
      case .dayOfMonth: 1...31
      case .month: 1...12
      case .dayOfWeek: 0...6
      }
    }

    var names: [String: Int] {
      switch self {
      case .month:
        [
          "JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6, "JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10,
          "NOV": 11, "DEC": 12,
        ]
      case .dayOfWeek: ["SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6]
      default: [:]
      }
    }
  }

  enum Kind: Sendable, Hashable {
    /// Bit sets per field (bit n = value n), and whether each day field was unrestricted (`*` or `?`).
    case fields(sets: [UInt64], domStar: Bool, dowStar: Bool)
    case every(seconds: Int64)
  }

  /// The expression as written.
  public let expression: String
  let kind: Kind

  public var description: String { expression }

  static let macros: [String: String] = [
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
  ]

  /// Parses and validates an expression; the error names the field and the bad token.
  public init(_ expression: String) throws(CronError) {
    self.expression = expression
    let text = expression.trimmingCharacters(in: .whitespaces)
    func fail(_ field: String, _ token: String, _ reason: String) -> CronError {
      CronError(expression: expression, field: field, token: token, reason: reason)
    }
    guard !text.isEmpty else { throw fail("expression", "", "it is empty; expected 5 fields or a macro") }
    if text.hasPrefix("@every") {
      let rest = text.dropFirst("@every".count)
      guard rest.first == " " else {
        throw fail("expression", text, "use '@every DURATION', e.g. '@every 1h30m'")
      }
      let spec = rest.trimmingCharacters(in: .whitespaces)
      kind = .every(seconds: try Self.parseEvery(spec, expression: expression))
      return
    }
    var body = text
    if text.hasPrefix("@") {
      guard let expanded = Self.macros[text.lowercased()] else {
        throw fail(
          "expression", text,
          "unknown macro; use @yearly, @annually, @monthly, @weekly, @daily, @midnight, "
            + "@hourly or @every DURATION")
      }
      body = expanded
    }
    let tokens = body.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
    guard tokens.count == 5 else {
      throw fail(
        "expression", text,
        "expected 5 fields (minute hour day-of-month month day-of-week), found \(tokens.count)")
    }
    var sets: [UInt64] = []
    var stars: [Bool] = []
    for field in Field.allCases {
      let (bits, star) = try Self.parseField(tokens[field.rawValue], field: field, expression: expression)
      sets.append(bits)
      stars.append(star)
    }
    kind = .fields(sets: sets, domStar: stars[Field.dayOfMonth.rawValue], dowStar: stars[Field.dayOfWeek.rawValue])
  }

  /// Whether `expression` is a valid schedule.
  public static func isValid(_ expression: String) -> Bool {
    do {
      _ = try CronSchedule(expression)
      return true
    } catch {
      return false
    }
  }

  /// The longest `@every` interval: 10 years.
  public static let maxEverySeconds: Int64 = 10 * 365 * 86_400

  static func parseEvery(_ spec: String, expression: String) throws(CronError) -> Int64 {
    // Go durations as the CronJob controller accepts them; whole seconds are what matter here.
    var total: Double = 0
    var i = spec.startIndex
    guard !spec.isEmpty else {
      throw CronError(expression: expression, field: "@every", token: spec, reason: "missing duration, e.g. 1h30m")
    }
    while i < spec.endIndex {
      var j = i
      while j < spec.endIndex, spec[j].isASCII, spec[j].isNumber || spec[j] == "." { j = spec.index(after: j) }
      guard j > i, let value = Double(spec[i..<j]) else {
        throw CronError(
          expression: expression, field: "@every", token: spec, reason: "expected a number at '\(spec[i...])'")
      }
      var k = j
      while k < spec.endIndex, spec[k].isLetter { k = spec.index(after: k) }
      let unit = String(spec[j..<k])
      let scale: Double
      switch unit {
      case "h": scale = 3600
      case "m": scale = 60
      case "s": scale = 1
      case "ms": scale = 0.001
      default:
        throw CronError(
          expression: expression, field: "@every", token: spec,
          reason: "unit '\(unit)' is not one of h, m, s, ms")
      }
      total += value * scale
      i = k
    }
    guard total >= 1 else {
      throw CronError(expression: expression, field: "@every", token: spec, reason: "the interval must be at least 1s")
    }
    // Checked before the conversion to Int64, which traps for values beyond its range (e.g. 99999999999999999h).
    guard total.isFinite, total <= Double(maxEverySeconds) else {
      throw CronError(
        expression: expression, field: "@every", token: spec, reason: "@every duration too large (max 10 years)")
    }
    return Int64(total.rounded(.down))
  }

  static func parseField(_ token: String, field: Field, expression: String) throws(CronError) -> (UInt64, Bool) {
    func fail(_ part: String, _ reason: String) -> CronError {
      CronError(expression: expression, field: field.name, token: part, reason: reason)
    }
    let bounds = field.bounds
    func value(_ text: Substring, in part: String) throws(CronError) -> Int {
      if let n = Int(text) {
        guard bounds.contains(n) else {
          throw fail(part, "\(n) is outside \(bounds.lowerBound)-\(bounds.upperBound)")
        }
        return n
      }
      if let n = field.names[text.uppercased()] { return n }
      let allowed =
        field.names.isEmpty
        ? "a number \(bounds.lowerBound)-\(bounds.upperBound)"
        : "a number \(bounds.lowerBound)-\(bounds.upperBound) or a name such as "
          + (field == .month ? "JAN" : "MON")
      throw fail(part, "'\(text)' is not \(allowed)")
    }
    var bits: UInt64 = 0
    var star = false
    for part in token.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
      guard !part.isEmpty else { throw fail(token, "empty list element") }
      let stepParts = part.split(separator: "/", omittingEmptySubsequences: false)
      guard stepParts.count <= 2 else { throw fail(part, "more than one '/'") }
      var step = 1
      if stepParts.count == 2 {
        guard let s = Int(stepParts[1]), s >= 1 else {
          throw fail(part, "step '\(stepParts[1])' must be a positive number")
        }
        step = s
      }
      let rangeText = stepParts[0]
      var low: Int
      var high: Int
      var partStar = false
      if rangeText == "*" || rangeText == "?" {
        guard rangeText == "*" || field == .dayOfMonth || field == .dayOfWeek else {
          throw fail(part, "'?' is allowed only in day-of-month and day-of-week")
        }
        low = bounds.lowerBound
        high = bounds.upperBound
        partStar = step == 1
      } else {
        let ends = rangeText.split(separator: "-", omittingEmptySubsequences: false)
        guard ends.count <= 2, !ends.contains(where: \.isEmpty) else { throw fail(part, "malformed range") }
        low = try value(ends[0], in: part)
        if ends.count == 2 {
          high = try value(ends[1], in: part)
          guard low <= high else { throw fail(part, "range start \(low) is after its end \(high)") }
        } else {
          // "N/step" means N through the maximum.
          high = stepParts.count == 2 ? bounds.upperBound : low
        }
      }
      star = star || partStar
      var v = low
      while v <= high {
        bits |= 1 << UInt64(v)
        // A step beyond the field's range (e.g. 1/9223372036854775807) ends the loop instead of overflowing.
        let (next, overflow) = v.addingReportingOverflow(step)
        if overflow { break }
        v = next
      }
    }
    return (bits, star)
  }

  /// The interval of an `@every` schedule, or nil for field schedules.
  public var fixedInterval: Int64? {
    if case .every(let s) = kind { return s }
    return nil
  }

  /// The first fire time strictly after `date` (whole minutes, UTC), or nil if none within 5 years.
  ///
  /// For `@every D` this is `date + D`: pass the time of the previous run.
  public func next(after date: Date) -> Date? {
    switch kind {
    case .every(let seconds):
      return date.addingTimeInterval(TimeInterval(seconds))
    case .fields(let sets, let domStar, let dowStar):
      // Dates beyond ±100,000 years have no next fire time here (and would trap in the conversion to Int64).
      let t = date.timeIntervalSince1970
      guard t.isFinite, abs(t) < 3.2e15 else { return nil }
      var minute = Int64((t / 60).rounded(.down)) + 1
      let limit = minute + 5 * 366 * 24 * 60
      func has(_ f: Field, _ v: Int) -> Bool { sets[f.rawValue] & (1 << UInt64(v)) != 0 }
      while minute < limit {
        let day = Self.floorDiv(minute, 1440)
        let (y, m, d) = Self.civil(fromDays: day)
        if !has(.month, m) {
          // First day of the next month.
          let (ny, nm) = m == 12 ? (y + 1, 1) : (y, m + 1)
          minute = Self.days(fromCivil: ny, nm, 1) * 1440
          continue
        }
        let weekday = Int(Self.floorMod(day + 4, 7))  // 1970-01-01 was a Thursday.
        let domMatch = has(.dayOfMonth, d)
        let dowMatch = has(.dayOfWeek, weekday)
        let dayMatch = (domStar || dowStar) ? (domMatch && dowMatch) : (domMatch || dowMatch)
        if !dayMatch {
          minute = (day + 1) * 1440
          continue
        }
        let minuteOfDay = Int(minute - day * 1440)
        let hour = minuteOfDay / 60
        if !has(.hour, hour) {
          minute = day * 1440 + Int64(hour + 1) * 60
          continue
        }
        if !has(.minute, minuteOfDay % 60) {
          minute += 1
          continue
        }
        return Date(timeIntervalSince1970: TimeInterval(minute * 60))
      }
      return nil
    }
  }

  /// The longest gap between consecutive fire times, sampled from `start` over up to `horizon` seconds (at most
  /// 5,000 fires). Used to check that a schedule can meet an RPO.
  public func maxInterval(from start: Date, horizon: TimeInterval = 400 * 86_400) -> Int64? {
    if let every = fixedInterval { return every }
    guard var previous = next(after: start) else { return nil }
    var longest: TimeInterval = 0
    let end = start.addingTimeInterval(horizon)
    for _ in 0..<5_000 {
      guard let n = next(after: previous) else { break }
      longest = max(longest, n.timeIntervalSince(previous))
      if n > end { break }
      previous = n
    }
    return longest > 0 && longest.isFinite ? Int64(min(longest, 9.0e18)) : nil
  }

  static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }
  static func floorMod(_ a: Int64, _ b: Int64) -> Int64 { a - floorDiv(a, b) * b }

  /// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
  static func days(fromCivil year: Int, _ month: Int, _ day: Int) -> Int64 {
    let y = Int64(month <= 2 ? year - 1 : year)
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let mp = Int64((month + 9) % 12)
    let doy = (153 * mp + 2) / 5 + Int64(day) - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146_097 + doe - 719_468
  }

  /// The date for days since 1970-01-01.
  static func civil(fromDays z0: Int64) -> (Int, Int, Int) {
    let z = z0 + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
    return (Int(y), Int(m), Int(d))
  }
}
