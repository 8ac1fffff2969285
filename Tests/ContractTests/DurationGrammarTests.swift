import EngineContract
import Testing

/// The one duration grammar of the CRDs and the engine's flags.
struct DurationGrammarTests {
  @Test func unitsAndCompositeValues() throws {
    #expect(try EngineDuration.parseSeconds("30s") == 30)
    #expect(try EngineDuration.parseSeconds("11m") == 660, "m is minutes")
    #expect(try EngineDuration.parseSeconds("1h30m") == 5_400)
    #expect(try EngineDuration.parseSeconds("90d") == 90 * 86_400)
    #expect(try EngineDuration.parseSeconds("2w") == 14 * 86_400)
    #expect(try EngineDuration.parseSeconds("7y") == 7 * 365 * 86_400)
    #expect(try EngineDuration.parseSeconds("1y2d3h4m5s") == 365 * 86_400 + 2 * 86_400 + 3 * 3_600 + 4 * 60 + 5)
  }

  @Test func malformedAndOutOfRange() throws {
    for bad in [
      "", "7", "m", "1.5h", "-1h", "1h 30m", "1q", "9223372036854775807s", "99999999999999999999y", "1001y",
      "1000y1s", "١h",
    ] {
      #expect(throws: EngineDurationError.self, "\(bad)") { try EngineDuration.parseSeconds(bad) }
    }
    #expect(try EngineDuration.parseSeconds("1000y") == EngineDuration.maxSeconds)
  }

  @Test func formatReadsBack() throws {
    for s: Int64 in [0, 1, 59, 60, 660, 5_400, 86_400, 7 * 365 * 86_400, EngineDuration.maxSeconds, 123_456_789] {
      #expect(try EngineDuration.parseSeconds(EngineDuration.format(seconds: s)) == s)
    }
  }
}
