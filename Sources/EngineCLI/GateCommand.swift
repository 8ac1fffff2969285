import ArgumentParser
import EngineContract
import Foundation

/// The outcome of `gate`: its exit code and what it says about it.
struct GateOutcome: Error, CustomStringConvertible {
  var code: Int32
  var message: String
  var description: String { message }
}

/// `botrt-engine gate`: waits until a key of an annotations file says done (exit 0) or failed (exit 20, the
/// message as the termination message), or the timeout passes (exit 21). The init container of a backup Pod with
/// hooks: the file is the Pod's annotations through a downward API volume (`EngineGateArguments`).
public struct GateCommand: AsyncParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: EngineCommandName.gate,
    abstract: "Wait until a key of an annotations file says done or failed (a backup Pod's hooks gate).",
    discussion: """
      The file holds key="value" lines, as a Kubernetes downward API volume writes metadata.annotations. Exits 0 \
      when the key's value is done, \(EngineExitCode.gateFailed) when it is failed (the value of --message-key, if \
      set, is printed and written to --message-file), \(EngineExitCode.gateTimeout) when neither comes within \
      --timeout. A missing or unreadable file is waited for.
      """)

  @Option(name: .customLong(EngineFlag.file), help: "The annotations file.")
  var file: String
  @Option(name: .customLong(EngineFlag.key), help: "The key whose value is waited for.")
  var key: String
  @Option(name: .customLong(EngineFlag.messageKey), help: "The key holding why the gate failed.")
  var messageKey: String?
  @Option(name: .customLong(EngineFlag.timeout), help: "How long to wait (a duration: 600s, 10m, 1h).")
  var timeout: String = "600s"
  @Option(help: "An existing file the failure message is written to as well (the kubelet's termination message).")
  var messageFile: String = "/dev/termination-log"
  @Option(help: .hidden)
  var pollMilliseconds: Int = 250

  public init() {}

  public func validate() throws {
    let s: Int64
    do { s = try EngineDuration.parseSeconds(timeout) } catch { throw ValidationError("--timeout: \(error)") }
    guard (1...EngineGate.maxTimeoutSeconds).contains(s) else {
      throw ValidationError("--timeout must be between 1s and 24h, not \(timeout)")
    }
    guard (10...10_000).contains(pollMilliseconds) else {
      throw ValidationError("--poll-milliseconds must be between 10 and 10000")
    }
  }

  /// Waits; returns the exit code.
  func wait() async -> Int32 {
    let seconds = (try? EngineDuration.parseSeconds(timeout)) ?? 600
    let deadline = ContinuousClock.now + .seconds(seconds)
    var last: String? = nil
    while true {
      let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
      let value = EngineGate.value(of: key, inAnnotations: text)
      if value != last {
        FileHandle.standardError.write(Data("gate: \(key)=\(value ?? "(unset)")\n".utf8))
        last = value
      }
      if value == EngineGate.done { return EngineExitCode.success }
      if value == EngineGate.failed {
        let why = messageKey.flatMap { EngineGate.value(of: $0, inAnnotations: text) } ?? "the pre hooks failed"
        report("gate: \(key) is failed: \(why)")
        return EngineExitCode.gateFailed
      }
      if ContinuousClock.now >= deadline {
        report(
          "gate: \(key) was not marked done or failed within \(timeout) (last value: \(value ?? "unset")); the "
            + "controller did not run the pre hooks in time")
        return EngineExitCode.gateTimeout
      }
      try? await Task.sleep(for: .milliseconds(pollMilliseconds))
    }
  }

  func report(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
    // The termination message the controller and `kubectl describe` show (at most 4096 bytes are kept); only into
    // a file that exists (the kubelet makes /dev/termination-log), never a new one.
    if FileManager.default.fileExists(atPath: messageFile) {
      _ = writeResult(Data(message.utf8.prefix(4000)), to: messageFile)
    }
  }

  public func run() async throws {
    let code = await wait()
    if code != 0 { throw GateOutcome(code: code, message: "") }
  }
}
