import Foundation
import KubeCore
import Testing

@testable import DRAPI

/// Parses an RFC 3339 date for tests.
func date(_ s: String) -> Date {
  guard let d = KubeJSON.parseDate(s) else { fatalError("bad test date \(s)") }
  return d
}

@Suite struct CronTests {
  func next(_ expr: String, _ after: String) throws -> String? {
    try CronSchedule(expr).next(after: date(after)).map(KubeJSON.formatDate)
  }

  @Test func everyFiveMinutes() throws {
    #expect(try next("*/5 * * * *", "2024-01-01T00:00:00Z") == "2024-01-01T00:05:00.000000Z")
    #expect(try next("*/5 * * * *", "2024-01-01T00:04:59Z") == "2024-01-01T00:05:00.000000Z")
    #expect(try next("*/5 * * * *", "2024-12-31T23:58:00Z") == "2025-01-01T00:00:00.000000Z")
  }

  @Test func strictlyAfter() throws {
    #expect(try next("0 * * * *", "2024-01-01T05:00:00Z") == "2024-01-01T06:00:00.000000Z")
    #expect(try next("0 * * * *", "2024-01-01T04:59:59.5Z") == "2024-01-01T05:00:00.000000Z")
  }

  @Test func rangesStepsListsAndNames() throws {
    // Weekdays at 04:30: Friday 2024-03-01 -> Monday 2024-03-04.
    #expect(try next("30 4 * * MON-FRI", "2024-03-01T05:00:00Z") == "2024-03-04T04:30:00.000000Z")
    #expect(try next("0 9-17/4 * * *", "2024-03-01T09:00:00Z") == "2024-03-01T13:00:00.000000Z")
    #expect(try next("0 9-17/4 * * *", "2024-03-01T17:00:00Z") == "2024-03-02T09:00:00.000000Z")
    #expect(try next("15,45 * * * *", "2024-03-01T10:20:00Z") == "2024-03-01T10:45:00.000000Z")
    #expect(try next("0 0 1 jan,Jul *", "2024-02-01T00:00:00Z") == "2024-07-01T00:00:00.000000Z")
    // "N/step" runs from N to the maximum.
    #expect(try next("50/5 * * * *", "2024-03-01T10:56:00Z") == "2024-03-01T11:50:00.000000Z")
  }

  @Test func quarterlyAndYearEnd() throws {
    #expect(try next(DrillPreset.quarterly.cron, "2024-04-01T03:00:00Z") == "2024-07-01T03:00:00.000000Z")
    #expect(try next(DrillPreset.quarterly.cron, "2024-11-15T00:00:00Z") == "2025-01-01T03:00:00.000000Z")
    #expect(try next(DrillPreset.biweekly.cron, "2024-03-01T03:00:00Z") == "2024-03-15T03:00:00.000000Z")
  }

  @Test func leapDay() throws {
    #expect(try next("0 0 29 2 *", "2024-03-01T00:00:00Z") == "2028-02-29T00:00:00.000000Z")
    #expect(try next("0 0 29 2 *", "2023-06-01T00:00:00Z") == "2024-02-29T00:00:00.000000Z")
  }

  @Test func impossibleDateHasNoNextTime() throws {
    #expect(try CronSchedule("0 0 31 2 *").next(after: date("2024-01-01T00:00:00Z")) == nil)
  }

  @Test func dayOfMonthOrDayOfWeekWhenBothRestricted() throws {
    // The 13th or any Friday: from Mon 2024-09-02 the first is Fri 2024-09-06.
    #expect(try next("0 0 13 * 5", "2024-09-02T00:00:00Z") == "2024-09-06T00:00:00.000000Z")
    // With day-of-week "*", only the day of month counts.
    #expect(try next("0 0 13 * *", "2024-09-02T00:00:00Z") == "2024-09-13T00:00:00.000000Z")
    // With day-of-month "?" (any), only the weekday counts: Sunday 2024-09-08.
    #expect(try next("0 0 ? * SUN", "2024-09-02T00:00:00Z") == "2024-09-08T00:00:00.000000Z")
  }

  @Test func macros() throws {
    #expect(try next("@hourly", "2024-01-01T00:30:00Z") == "2024-01-01T01:00:00.000000Z")
    #expect(try next("@daily", "2024-01-01T00:30:00Z") == "2024-01-02T00:00:00.000000Z")
    #expect(try next("@weekly", "2024-01-01T00:30:00Z") == "2024-01-07T00:00:00.000000Z")
    #expect(try next("@monthly", "2024-01-01T00:30:00Z") == "2024-02-01T00:00:00.000000Z")
    #expect(try next("@yearly", "2024-01-01T00:30:00Z") == "2025-01-01T00:00:00.000000Z")
    #expect(try next("@every 1h30m", "2024-01-01T00:30:00Z") == "2024-01-01T02:00:00.000000Z")
    #expect(try CronSchedule("@every 90s").fixedInterval == 90)
  }

  func expectError(_ expr: String, field: String, token: String, mentions: String) {
    do {
      _ = try CronSchedule(expr)
      Issue.record("'\(expr)' parsed")
    } catch {
      #expect(error.field == field, "\(expr): \(error)")
      #expect(error.token == token, "\(expr): \(error)")
      #expect(error.description.contains(mentions), "\(expr): \(error)")
      if !expr.isEmpty { #expect(error.description.contains(expr)) }
    }
  }

  @Test func errorsNameTheFieldAndToken() {
    expectError("*/5 * * *", field: "expression", token: "*/5 * * *", mentions: "found 4")
    expectError("0 0 * * * *", field: "expression", token: "0 0 * * * *", mentions: "expected 5 fields")
    expectError("60 * * * *", field: "minute", token: "60", mentions: "outside 0-59")
    expectError("0 24 * * *", field: "hour", token: "24", mentions: "outside 0-23")
    expectError("0 0 0 * *", field: "day-of-month", token: "0", mentions: "outside 1-31")
    expectError("0 0 1 13 *", field: "month", token: "13", mentions: "outside 1-12")
    expectError("0 0 * * 7", field: "day-of-week", token: "7", mentions: "outside 0-6")
    expectError("0 0 * FOO *", field: "month", token: "FOO", mentions: "JAN")
    expectError("0 0 * * MON-FOO", field: "day-of-week", token: "MON-FOO", mentions: "'FOO'")
    expectError("*/0 * * * *", field: "minute", token: "*/0", mentions: "step")
    expectError("5-1 * * * *", field: "minute", token: "5-1", mentions: "after its end")
    expectError("1,,2 * * * *", field: "minute", token: "1,,2", mentions: "empty")
    expectError("? * * * *", field: "minute", token: "?", mentions: "day-of-month")
    expectError("@fortnightly", field: "expression", token: "@fortnightly", mentions: "unknown macro")
    expectError("@every 5d", field: "@every", token: "5d", mentions: "unit 'd'")
    expectError("", field: "expression", token: "", mentions: "empty")
  }

  @Test func maxInterval() throws {
    let start = date("2024-01-01T00:00:00Z")
    #expect(try CronSchedule("*/5 * * * *").maxInterval(from: start) == 300)
    #expect(try CronSchedule("0 2 * * *").maxInterval(from: start) == 86_400)
    // Weekdays only: the weekend gap is three days.
    #expect(try CronSchedule("0 9 * * 1-5").maxInterval(from: start) == 3 * 86_400)
    #expect(try CronSchedule("@every 2h").maxInterval(from: start) == 7_200)
  }

  @Test func civilConversionsRoundTrip() {
    for day: Int64 in stride(from: -800_000, through: 800_000, by: 997) {
      let (y, m, d) = CronSchedule.civil(fromDays: day)
      #expect(CronSchedule.days(fromCivil: y, m, d) == day)
    }
    #expect(CronSchedule.days(fromCivil: 1970, 1, 1) == 0)
    #expect(CronSchedule.days(fromCivil: 2000, 3, 1) == 11_017)
  }
}
