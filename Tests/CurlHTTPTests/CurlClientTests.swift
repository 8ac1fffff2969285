import Foundation
import Testing

@testable import CurlHTTP

/// Smoke tests of the libcurl transport against a real loopback HTTP server.
@Suite struct CurlClientTests {
  let client = CurlClient()

  @Test func getReturnsStatusBodyAndHeaders() async throws {
    let server = try await FixtureServer.start()
    defer { server.stop() }
    let response = try await client.send(HTTPRequest(url: server.url("/hello"), headers: [("X-Custom", "abc 1")]))
    #expect(response.status == 200)
    #expect(String(decoding: response.body, as: UTF8.self) == "hello")
    #expect(response.header("X-Test") == "yes")
    #expect(response.header("x-echo-custom") == "abc 1")
  }

  @Test func putSendsTheBodyAndItsContentType() async throws {
    let server = try await FixtureServer.start()
    defer { server.stop() }
    let body = Data((0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
    let response = try await client.send(
      HTTPRequest(
        method: "PUT", url: server.url("/objects/a"), headers: [("Content-Type", "application/octet-stream")],
        body: body))
    #expect(response.status == 201)
    #expect(response.header("x-received-method") == "PUT")
    #expect(response.header("x-received-length") == "200000")
    #expect(response.header("x-received-type") == "application/octet-stream")
    #expect(response.body == body)
  }

  @Test func postWithoutContentTypeSendsNoFormType() async throws {
    let server = try await FixtureServer.start()
    defer { server.stop() }
    let response = try await client.send(HTTPRequest(method: "POST", url: server.url("/x"), body: Data("{}".utf8)))
    #expect(response.status == 201)
    #expect(response.header("x-received-method") == "POST")
    // libcurl would otherwise label the body application/x-www-form-urlencoded.
    #expect(response.header("x-received-type") == "")
    #expect(response.body == Data("{}".utf8))
  }

  @Test(arguments: [404, 409, 429, 500, 503])
  func errorStatusesAreReturnedNotThrown(status: Int) async throws {
    let server = try await FixtureServer.start()
    defer { server.stop() }
    let response = try await client.send(HTTPRequest(url: server.url("/status/\(status)")))
    #expect(response.status == status)
    #expect(String(decoding: response.body, as: UTF8.self) == "status \(status)")
    #expect(parseRetryAfter(response.header("Retry-After")) == .seconds(7))
  }

  @Test func headReturnsHeadersWithoutBody() async throws {
    let server = try await FixtureServer.start()
    defer { server.stop() }
    let response = try await client.send(HTTPRequest(method: "HEAD", url: server.url("/hello")))
    #expect(response.status == 200)
    #expect(response.header("content-length") == "5")
    #expect(response.body.isEmpty)
  }

  @Test func refusedConnectionIsAConnectionError() async throws {
    // Port 1 on loopback: nothing listens there, so the kernel refuses at once.
    let url = "http://127.0.0.1:1/objects?sig=secret"
    let error = try await #require(throws: HTTPTransportError.self) {
      try await client.send(HTTPRequest(url: url, timeout: .seconds(5)))
    }
    #expect(error.kind == .connection)
    #expect(error.isRetryable)
    #expect(error.url == "http://127.0.0.1:1/objects")
    #expect(!error.description.contains("secret"))
  }

  @Test func overallDeadlineIsATimeoutError() async throws {
    let server = try await FixtureServer.start()
    defer { server.stop() }
    let clock = ContinuousClock()
    let start = clock.now
    let error = try await #require(throws: HTTPTransportError.self) {
      try await client.send(HTTPRequest(url: server.url("/slow?delay=5"), timeout: .milliseconds(400)))
    }
    #expect(error.kind == .timeout)
    #expect(error.isRetryable)
    #expect(clock.now - start < .seconds(3))
  }

  @Test func subSecondDurationsBecomeMilliseconds() {
    #expect(curlMilliseconds(.milliseconds(500)) == 500)
    #expect(curlMilliseconds(.milliseconds(1500)) == 1500)
    #expect(curlMilliseconds(.seconds(2)) == 2000)
    #expect(curlMilliseconds(.microseconds(10)) == 1)
    #expect(curlMilliseconds(.zero) == 1)
  }

  @Test func cancellingTheTaskCancelsTheRequest() async throws {
    let server = try await FixtureServer.start()
    defer { server.stop() }
    let clock = ContinuousClock()
    let start = clock.now
    let url = server.url("/slow?delay=10")
    let task = Task { [client] in
      try await client.send(HTTPRequest(url: url, timeout: .seconds(30)))
    }
    try await Task.sleep(for: .milliseconds(300))
    task.cancel()
    let error = try await #require(throws: HTTPTransportError.self) { try await task.value }
    #expect(error.kind == .cancelled)
    #expect(clock.now - start < .seconds(5))
  }

  @Test func streamDeliversEveryByteInOrder() async throws {
    let server = try await FixtureServer.start()
    defer { server.stop() }
    let chunks = 64
    let size = 100_000
    let response = try await client.stream(
      HTTPRequest(url: server.url("/stream?chunks=\(chunks)&size=\(size)"), timeout: .seconds(60)))
    #expect(response.status == 200)
    #expect(response.header("content-type") == "application/octet-stream")
    var offset = 0
    var pieces = 0
    var mismatches = 0
    for try await piece in response.body {
      pieces += 1
      for byte in piece {
        if byte != UInt8((offset / size) % 256) { mismatches += 1 }
        offset += 1
      }
    }
    #expect(offset == chunks * size)
    #expect(mismatches == 0)
    #expect(pieces > 1)
  }

  @Test func streamAppliesBackPressureToASlowReader() async throws {
    let server = try await FixtureServer.start()
    defer { server.stop() }
    let chunks = 256
    let size = 256 * 1024  // 64 MiB in all: far more than the loopback socket buffers hold
    let response = try await client.stream(
      HTTPRequest(url: server.url("/stream?name=bp&chunks=\(chunks)&size=\(size)"), timeout: .seconds(120)),
      bufferedChunks: 2)
    var iterator = response.body.makeAsyncIterator()
    var received = try #require(try await iterator.next()).count
    // The reader now stalls; the server may only get as far as the socket buffers let it.
    try await Task.sleep(for: .seconds(1))
    let sentWhileStalled = try await sentChunks(server, "bp")
    #expect(sentWhileStalled > 0)
    #expect(sentWhileStalled < chunks / 2, "the server wrote \(sentWhileStalled) chunks while the reader stalled")
    while let piece = try await iterator.next() { received += piece.count }
    #expect(received == chunks * size)
    #expect(try await sentChunks(server, "bp") == chunks)
  }

  @Test func streamReturnsTheHeadBeforeTheBodyStarts() async throws {
    let server = try await FixtureServer.start()
    defer { server.stop() }
    let clock = ContinuousClock()
    let start = clock.now
    // The server sends its head at once and the first body byte after 3 s, like a quiet watch.
    let response = try await client.stream(
      HTTPRequest(url: server.url("/stream?chunks=1&size=10&headdelay=3"), timeout: .seconds(30)))
    #expect(clock.now - start < .seconds(2))
    #expect(response.status == 200)
    let body = try await response.collect()
    #expect(body == Data(repeating: 0, count: 10))
    #expect(clock.now - start >= .seconds(3))
  }

  @Test func endingIterationEarlyAbortsTheTransfer() async throws {
    let server = try await FixtureServer.start()
    defer { server.stop() }
    let chunks = 4000
    let size = 256 * 1024  // 1 GiB if it ran to the end
    do {
      let response = try await client.stream(
        HTTPRequest(url: server.url("/stream?name=early&chunks=\(chunks)&size=\(size)"), timeout: .seconds(120)),
        bufferedChunks: 2)
      for try await piece in response.body {
        #expect(!piece.isEmpty)
        break
      }
    }
    // Once the transfer is aborted the server's writes fail and its count stops growing.
    try await Task.sleep(for: .milliseconds(1500))
    let first = try await sentChunks(server, "early")
    try await Task.sleep(for: .seconds(1))
    let second = try await sentChunks(server, "early")
    #expect(first == second)
    #expect(second < chunks / 4)
    // The client is still usable afterwards.
    let again = try await client.send(HTTPRequest(url: server.url("/hello")))
    #expect(again.status == 200)
  }

  @Test func droppingAnUnreadResponseAbortsTheTransfer() async throws {
    let server = try await FixtureServer.start()
    defer { server.stop() }
    do {
      let response = try await client.stream(
        HTTPRequest(url: server.url("/stream?name=drop&chunks=4000&size=262144"), timeout: .seconds(120)),
        bufferedChunks: 2)
      #expect(response.status == 200)
    }
    // Nobody can read the body any more: the transfer must end, not wait for a reader forever.
    let deadline = ContinuousClock.now + .seconds(10)
    var state = ""
    while ContinuousClock.now < deadline {
      state = try await fixtureText(server, "/state?name=drop")
      if state != "running" { break }
      try await Task.sleep(for: .milliseconds(100))
    }
    #expect(state == "aborted")
  }

  @Test func anIteratorOutlivingItsResponseStillReadsTheBody() async throws {
    let server = try await FixtureServer.start()
    defer { server.stop() }
    var iterator = try await client.stream(
      HTTPRequest(url: server.url("/stream?chunks=20&size=50000"), timeout: .seconds(60))
    ).body.makeAsyncIterator()
    var received = 0
    while let piece = try await iterator.next() { received += piece.count }
    #expect(received == 20 * 50000)
  }

  @Test func aStreamingErrorStatusIsReturnedWithItsBody() async throws {
    let server = try await FixtureServer.start()
    defer { server.stop() }
    let response = try await client.stream(HTTPRequest(url: server.url("/status/410")))
    #expect(response.status == 410)
    #expect(try await response.collect() == Data("status 410".utf8))
  }

  private func sentChunks(_ server: FixtureServer, _ name: String) async throws -> Int {
    let text = try await fixtureText(server, "/sent?name=\(name)")
    return try #require(Int(text), "fixture /sent?name=\(name) answered \(text)")
  }

  private func fixtureText(_ server: FixtureServer, _ path: String) async throws -> String {
    let response = try await client.send(HTTPRequest(url: server.url(path), timeout: .seconds(10)))
    try #require(response.status == 200, "fixture \(path) answered \(response.status)")
    return String(decoding: response.body, as: UTF8.self)
  }
}
