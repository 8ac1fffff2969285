import Testing

@testable import DRAPI

@Suite struct DurationTests {
  @Test func parsesEachUnit() throws {
    #expect(try DurationText.parseSeconds("30s") == 30)
    #expect(try DurationText.parseSeconds("5m") == 300)
    #expect(try DurationText.parseSeconds("24h") == 86_400)
    #expect(try DurationText.parseSeconds("90d") == 90 * 86_400)
    #expect(try DurationText.parseSeconds("2w") == 14 * 86_400)
    #expect(try DurationText.parseSeconds("7y") == 7 * 365 * 86_400)
  }

  @Test func parsesCombinations() throws {
    #expect(try DurationText.parseSeconds("1h30m") == 5_400)
    #expect(try DurationText.parseSeconds("1d2h3m4s") == 86_400 + 7_200 + 180 + 4)
    #expect(try DurationText.parseSeconds("0s") == 0)
  }

  @Test func rejectsBadTextNamingTheField() {
    for bad in ["", "5", "m", "5x", "1.5h", "-5m", "5 m", "h5"] {
      #expect(throws: DurationError.self, "\(bad)") { try DurationText.parseSeconds(bad, field: "spec.rpo") }
    }
    do {
      _ = try DurationText.parseSeconds("5x", field: "spec.retention.maxAge")
      Issue.record("5x parsed")
    } catch {
      #expect(error.field == "spec.retention.maxAge")
      #expect(error.description.contains("'x'"))
      #expect(error.description.contains("spec.retention.maxAge"))
    }
    do {
      _ = try DurationText.parseSeconds("90", field: "spec.rpo")
      Issue.record("90 parsed")
    } catch {
      #expect(error.reason.contains("no unit"))
    }
  }

  @Test func rejectsOverflow() {
    #expect(throws: DurationError.self) { try DurationText.parseSeconds("99999999999999999999s") }
    #expect(throws: DurationError.self) { try DurationText.parseSeconds("9999999999999y") }
  }

  @Test func formats() {
    #expect(DurationText.format(seconds: 0) == "0s")
    #expect(DurationText.format(seconds: 900) == "15m")
    #expect(DurationText.format(seconds: 252) == "4m12s")
    #expect(DurationText.format(seconds: 3 * 3_600) == "3h")
    #expect(DurationText.format(seconds: 90 * 86_400 + 61) == "90d1m1s")
  }

  @Test func formatThenParseRoundTrips() throws {
    for s: Int64 in [1, 59, 60, 61, 3_599, 3_601, 86_399, 86_401, 1_000_000] {
      #expect(try DurationText.parseSeconds(DurationText.format(seconds: s)) == s)
    }
  }
}
