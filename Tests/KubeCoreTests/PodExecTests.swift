import Foundation
import KubeCore
import Testing

/// The pure half of pods/exec: the v4 error channel's Status to an exit code, and the channel demultiplexer with its
/// bounded output tails.
@Suite struct PodExecTests {
  @Test func theErrorChannelStatusGivesTheExitCode() {
    #expect(PodExecOutcome.fromErrorChannel(Array(#"{"metadata":{},"status":"Success"}"#.utf8)) == .exited(0))
    let three = #"""
      {"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing \#
      command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode",\#
      "message":"3"}]}}
      """#
    #expect(PodExecOutcome.fromErrorChannel(Array(three.utf8)) == .exited(3))
    let big =
      #"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"255"}]}}"#
    #expect(PodExecOutcome.fromErrorChannel(Array(big.utf8)) == .exited(255))
    // Not an exit code: the Status message is the failure.
    let missing = #"""
      {"metadata":{},"status":"Failure","message":"OCI runtime exec failed: exec: \"/x\": no such file","reason":\#
      "InternalError","code":500}
      """#
    #expect(
      PodExecOutcome.fromErrorChannel(Array(missing.utf8))
        == .failure(#"OCI runtime exec failed: exec: "/x": no such file"#))
    // NonZeroExitCode without a readable code, and bytes that are no Status: failures, not exit codes.
    let noCode =
      #"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"x"}]}}"#
    guard case .failure = PodExecOutcome.fromErrorChannel(Array(noCode.utf8)) else {
      Issue.record("an unreadable exit code became one")
      return
    }
    guard case .failure = PodExecOutcome.fromErrorChannel([0xFF, 0x00, 0x7B]) else {
      Issue.record("garbage became an exit code")
      return
    }
    let outOfRange =
      #"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"99999999999"}]}}"#
    guard case .failure = PodExecOutcome.fromErrorChannel(Array(outOfRange.utf8)) else {
      Issue.record("an exit code out of Int32's range was accepted")
      return
    }
  }

  @Test func channelsAreSeparatedAndTheStatusEndsTheSession() throws {
    var c = PodExecCollector(outputLimit: 100)
    // The server opens every channel with an empty message.
    for ch: UInt8 in [1, 2, 3] { #expect(try !c.consume([ch])) }
    #expect(try !c.consume([1] + Array("hello ".utf8)))
    #expect(try !c.consume([2] + Array("warn".utf8)))
    #expect(try !c.consume([1] + Array("world".utf8)))
    #expect(try c.consume([3] + Array(#"{"status":"Success"}"#.utf8)))
    #expect(c.outcome == .exited(0))
    let r = c.result(exitCode: 0)
    #expect(r.stdoutText == "hello world" && r.stderrText == "warn" && !r.truncated)
    // A second Status is a violation.
    #expect(throws: PodExecCollector.Violation.self) { try c.consume([3] + Array(#"{"status":"Success"}"#.utf8)) }
  }

  @Test func outputBeyondTheLimitKeepsTheTail() throws {
    var expected: [UInt8] = []
    var c = PodExecCollector(outputLimit: 1000)
    for i in 0..<5000 {
      let piece = Array("line \(i)\n".utf8)
      expected += piece
      _ = try c.consume([1] + piece)
    }
    // One message longer than the limit on its own.
    let huge = (0..<3000).map { UInt8(truncatingIfNeeded: $0) }
    _ = try c.consume([2] + huge)
    let r = c.result(exitCode: 0)
    #expect(r.truncated)
    #expect(r.stdout == Array(expected.suffix(1000)))
    #expect(r.stderr == Array(huge.suffix(1000)))

    // Exactly at the limit is not truncated; one byte more is.
    var exact = PodExecCollector(outputLimit: 4)
    _ = try exact.consume([1, 1, 2])
    _ = try exact.consume([1, 3, 4])
    #expect(!exact.result(exitCode: 0).truncated && exact.result(exitCode: 0).stdout == [1, 2, 3, 4])
    _ = try exact.consume([1, 5])
    #expect(exact.result(exitCode: 0).truncated && exact.result(exitCode: 0).stdout == [2, 3, 4, 5])

    var none = PodExecCollector(outputLimit: 0)
    _ = try none.consume([1, 1])
    #expect(none.result(exitCode: 0).stdout.isEmpty && none.result(exitCode: 0).truncated)
  }

  @Test func malformedMessagesAreViolations() {
    var c = PodExecCollector(outputLimit: 10)
    #expect(throws: PodExecCollector.Violation.self) { try c.consume([]) }
    #expect(throws: PodExecCollector.Violation.self) { try c.consume([9, 1, 2]) }
    #expect(throws: PodExecCollector.Violation.self) {
      try c.consume([3] + [UInt8](repeating: 0x20, count: PodExecCollector.maxStatusBytes + 1))
    }
  }

  @Test func errorsNameTheNamespaceAndTheFixButNoSecret() {
    let e = PodExecError(kind: .forbidden, namespace: "db", pod: "pg-0", container: "postgres", message: "denied")
    #expect("\(e)".contains("namespace db") && "\(e)".contains("RoleBinding") && "\(e)".contains("pods/exec"))
    #expect("\(e)".contains("get and create"))
    let t = PodExecError(kind: .timeout, namespace: "db", pod: "pg-0", message: "")
    #expect("\(t)".contains("timed out") && "\(t)".contains("connection was closed"))
  }
}
