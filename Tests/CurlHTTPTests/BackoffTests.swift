import Testing

@testable import CurlHTTP

@Suite struct BackoffTests {
  @Test func growsAndCaps() {
    let b = ExponentialBackoff(base: .milliseconds(800), max: .seconds(30), factor: 2, jitter: 0.5)
    #expect(b.delay(attempt: 0, unit: 0) == .milliseconds(800))
    #expect(b.delay(attempt: 1, unit: 0) == .milliseconds(1600))
    #expect(b.delay(attempt: 10, unit: 0) == .seconds(30))
    #expect(b.delay(attempt: 1, unit: 1) == .milliseconds(800))
  }

  @Test func retryAfter() {
    #expect(parseRetryAfter("3") == .seconds(3))
    #expect(parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT") == nil)
    #expect(parseRetryAfter(nil) == nil)
  }

  @Test func redactsQueryAndUserInfo() {
    #expect(HTTPTransportError.redact("https://u:p@host/x?sig=1") == "https://host/x")
  }
}
