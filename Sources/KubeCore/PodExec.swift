import Foundation

/// What a command run in a container through `pods/exec` produced.
public struct PodExecResult: Sendable, Hashable {
  /// The command's standard output: at most the last `outputLimit` bytes of it (see `truncated`).
  public var stdout: [UInt8]
  /// The command's standard error: at most the last `outputLimit` bytes of it (see `truncated`).
  public var stderr: [UInt8]
  /// The command's exit code: 0 on success, else the code from the error channel's Status (cause reason ExitCode).
  public var exitCode: Int32
  /// True when stdout or stderr was longer than `outputLimit` and only its tail is kept.
  public var truncated: Bool

  public init(stdout: [UInt8] = [], stderr: [UInt8] = [], exitCode: Int32 = 0, truncated: Bool = false) {
    self.stdout = stdout
    self.stderr = stderr
    self.exitCode = exitCode
    self.truncated = truncated
  }

  /// stdout decoded as UTF-8 (invalid sequences replaced).
  public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
  /// stderr decoded as UTF-8 (invalid sequences replaced).
  public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
}

/// Why a `pods/exec` call did not produce a result. Never carries a credential or the command's environment.
public struct PodExecError: Error, Sendable, Hashable, CustomStringConvertible {
  public enum Kind: String, Sendable, Hashable {
    /// 403: the caller may not use `pods/exec` in the namespace (verb `get` before Kubernetes 1.30, `create` from it).
    case forbidden
    /// 404, or the container is not in the pod: the pod or the container does not exist.
    case notFound
    /// The command did not finish within the timeout; the connection was closed.
    case timeout
    /// The exec could not start or run: the apiserver refused it (e.g. 400, the pod is not running) or the error
    /// channel reported a failure that is not an exit code (e.g. the executable is missing in the container).
    case failed
    /// The server's answer broke the WebSocket or the channel protocol.
    case protocolError
  }

  public var kind: Kind
  public var namespace: String
  public var pod: String
  public var container: String?
  /// The server's message, or what went wrong.
  public var message: String
  /// The HTTP status of a refused upgrade, if that is where it failed.
  public var httpStatus: Int?

  public init(
    kind: Kind, namespace: String, pod: String, container: String? = nil, message: String, httpStatus: Int? = nil
  ) {
    self.kind = kind
    self.namespace = namespace
    self.pod = pod
    self.container = container
    self.message = message
    self.httpStatus = httpStatus
  }

  private var target: String {
    "pod \(namespace)/\(pod)" + (container.map { " container \($0)" } ?? "")
  }

  public var description: String {
    let suffix = message.isEmpty ? "" : ": \(message)"
    switch kind {
    case .forbidden:
      return
        "exec in \(target) forbidden\(suffix). The caller lacks permission for pods/exec in namespace"
        + " \(namespace); grant it with a Role allowing get and create on pods/exec (a WebSocket exec is authorized as"
        + " get before Kubernetes 1.30, as create from 1.30) and a RoleBinding in that namespace"
    case .notFound:
      return "exec in \(target): not found\(suffix)"
    case .timeout:
      return "exec in \(target) timed out\(suffix); the connection was closed (the command may still be running)"
    case .failed:
      return "exec in \(target) failed\(suffix)"
    case .protocolError:
      return "exec in \(target): protocol error\(suffix)"
    }
  }
}

/// How the v4 exec protocol's error channel (a metav1.Status) ends a command.
public enum PodExecOutcome: Sendable, Hashable {
  /// The command ran and exited with this code.
  case exited(Int32)
  /// The command could not run or failed for another reason; the Status message.
  case failure(String)

  /// Reads the error channel's Status JSON: `Success` is exit 0, `Failure` with reason `NonZeroExitCode` and a cause
  /// `ExitCode` is that exit code; anything else is a failure carrying the Status message (or a description of the
  /// malformed bytes).
  public static func fromErrorChannel(_ bytes: [UInt8]) -> PodExecOutcome {
    guard let status = try? JSONDecoder().decode(Status.self, from: Data(bytes)) else {
      return .failure("the error channel carried no valid Status (\(bytes.count) bytes)")
    }
    return from(status)
  }

  public static func from(_ status: Status) -> PodExecOutcome {
    if status.status == "Success" { return .exited(0) }
    if status.reason == "NonZeroExitCode" {
      for cause in status.details?.causes ?? [] where cause.reason == "ExitCode" {
        if let m = cause.message, let code = Int32(m.trimmingCharacters(in: .whitespaces)) { return .exited(code) }
      }
      return .failure("NonZeroExitCode without a readable ExitCode cause: \(status.message ?? "")")
    }
    return .failure(status.message ?? status.reason ?? "the command failed (no message)")
  }
}

/// Demultiplexes the messages of a `v4.channel.k8s.io` exec session: each binary message's first byte is its channel
/// (1 stdout, 2 stderr, 3 error: the Status that ends the command). Keeps at most the last `outputLimit` bytes of each
/// output stream, so memory stays bounded whatever the command writes.
public struct PodExecCollector: Sendable {
  /// A message that breaks the channel protocol.
  public struct Violation: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
  }

  public static let stdoutChannel: UInt8 = 1
  public static let stderrChannel: UInt8 = 2
  public static let errorChannel: UInt8 = 3
  /// The longest error-channel Status accepted.
  public static let maxStatusBytes = 64 * 1024

  public let outputLimit: Int
  private var stdout: [UInt8] = []
  private var stderr: [UInt8] = []
  public private(set) var truncated = false
  /// Set once the error channel's Status arrived.
  public private(set) var outcome: PodExecOutcome?
  /// The error channel's Status, when it decoded as one.
  public private(set) var status: Status?

  public init(outputLimit: Int) { self.outputLimit = max(0, outputLimit) }

  /// Takes one binary message; returns true once the error channel has ended the command.
  public mutating func consume(_ message: [UInt8]) throws -> Bool {
    guard let channel = message.first else { throw Violation(message: "an empty message (no channel byte)") }
    let data = message.dropFirst()
    switch channel {
    case Self.stdoutChannel: if Self.keepTail(&stdout, data, limit: outputLimit) { truncated = true }
    case Self.stderrChannel: if Self.keepTail(&stderr, data, limit: outputLimit) { truncated = true }
    case Self.errorChannel:
      // The server opens each channel with an empty message; only a non-empty one is the Status.
      if data.isEmpty { return false }
      guard outcome == nil else { throw Violation(message: "a second message on the error channel") }
      guard data.count <= Self.maxStatusBytes else {
        throw Violation(message: "an error-channel Status of \(data.count) bytes (at most \(Self.maxStatusBytes))")
      }
      status = try? JSONDecoder().decode(Status.self, from: Data(data))
      outcome = PodExecOutcome.fromErrorChannel(Array(data))
      return true
    case 0, 4:
      break  // stdin and resize: nothing the server should send, and nothing to keep
    default:
      throw Violation(message: "a message on unknown channel \(channel)")
    }
    return false
  }

  /// Appends `data`, keeping the tail: the buffer may grow to twice the limit before its head is dropped (so a long
  /// output costs amortised constant work per byte); `result` cuts it to the limit. Returns whether bytes were dropped.
  private static func keepTail(_ buffer: inout [UInt8], _ data: ArraySlice<UInt8>, limit: Int) -> Bool {
    buffer.append(contentsOf: data.suffix(limit))
    guard data.count > limit || buffer.count > limit else { return false }
    if buffer.count >= 2 * limit { buffer.removeFirst(buffer.count - limit) }
    return true
  }

  /// The output kept so far, with `exitCode`.
  public func result(exitCode: Int32) -> PodExecResult {
    PodExecResult(
      stdout: Array(stdout.suffix(outputLimit)), stderr: Array(stderr.suffix(outputLimit)), exitCode: exitCode,
      truncated: truncated)
  }
}
