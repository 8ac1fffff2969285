import CurlHTTP
import Foundation
import KubeCore
import Synchronization

extension KubeClient {
  /// The exec subprotocol spoken: binary messages whose first byte is the channel, the exit status as a Status on
  /// channel 3.
  public static let execSubprotocol = "v4.channel.k8s.io"

  /// Runs `command` in a container of a Pod through `pods/exec` over a WebSocket (`v4.channel.k8s.io`), without stdin
  /// or a terminal, and returns its output and exit code. A non-zero exit code is a result, not an error.
  ///
  /// - Parameters:
  ///   - container: the container; nil lets the apiserver choose (allowed only for a Pod with one container).
  ///   - timeout: the deadline of the whole call, connecting included; when it passes the connection is closed and
  ///     `PodExecError` `.timeout` thrown (the process in the container is not killed by that).
  ///   - outputLimit: the most bytes kept of stdout and of stderr each: the tail; `truncated` says when more came.
  /// - Throws: `PodExecError` (`.forbidden`: the caller may not create pods/exec in the namespace; `.notFound`: no such
  ///   Pod or container; `.timeout`; `.failed`: the apiserver or the kubelet refused or could not run the command;
  ///   `.protocolError`), `KubeError` `.request`, `.config` or `.transport` (the apiserver is unreachable, TLS), or
  ///   `CancellationError`. No message carries the bearer token or the command.
  public func exec(
    namespace: String, pod: String, container: String?, command: [String], timeout: Duration,
    outputLimit: Int = 64 * 1024
  ) async throws -> PodExecResult {
    guard !command.isEmpty else { throw KubeError.request(RequestBuildError("exec needs a command")) }
    guard outputLimit >= 0 else {
      throw KubeError.request(RequestBuildError("exec's outputLimit \(outputLimit) is negative"))
    }
    var req = try build { try builder(.pods).get(namespace: namespace, name: pod, subresource: "exec") }
    req.query = command.map { QueryItem("command", $0) }
    if let container { req.query.append(QueryItem("container", container)) }
    req.query += [QueryItem("stdout", "true"), QueryItem("stderr", "true")]

    var headers: [(name: String, value: String)] = [("User-Agent", "botrt/0.1")]
    if let t = try tokens.token() { headers.append(("Authorization", "Bearer \(t)")) }
    let ws = WebSocketRequest(
      url: config.server + req.pathAndQuery, headers: headers, subprotocols: [Self.execSubprotocol], tls: config.tls,
      maxMessageBytes: 4 << 20)

    func failure(_ kind: PodExecError.Kind, _ message: String, httpStatus: Int? = nil) -> PodExecError {
      PodExecError(
        kind: kind, namespace: namespace, pod: pod, container: container, message: message, httpStatus: httpStatus)
    }

    let collector = Mutex(PodExecCollector(outputLimit: outputLimit))
    let outcome: WebSocketOutcome
    let started = ContinuousClock.now
    do {
      outcome = try await transport.webSocket(ws, timeout: timeout) { opcode, payload in
        guard opcode == .binary else {
          throw PodExecCollector.Violation(message: "a text message (\(Self.execSubprotocol) sends binary ones)")
        }
        return try collector.withLock { try $0.consume(payload) } ? .close : .continue
      }
    } catch let e as HTTPTransportError {
      switch e.kind {
      case .timeout:
        throw failure(
          .timeout, "the command did not finish within \(timeout) (\(ContinuousClock.now - started) elapsed)")
      case .cancelled: throw CancellationError()
      default: throw KubeError.transport(e, hint: hint(for: e))
      }
    } catch let e as WebSocketProtocolError {
      throw failure(.protocolError, e.message)
    } catch let e as PodExecCollector.Violation {
      throw failure(.protocolError, e.message)
    }
    logger.debug(
      "pods/exec ended",
      metadata: ["namespace": "\(namespace)", "pod": "\(pod)", "container": "\(container ?? "-")"])

    switch outcome {
    case .refused(let response):
      throw refusal(response, failure)
    case .closed(let subprotocol, let code, let reason, _):
      let c = collector.withLock { $0 }
      guard let end = c.outcome else {
        if subprotocol != Self.execSubprotocol {
          throw failure(.protocolError, "the server chose the subprotocol \(subprotocol ?? "none")")
        }
        let how = code.map { "close code \($0)" + (reason.isEmpty ? "" : ": \(reason)") } ?? reason
        throw failure(.protocolError, "the session ended without the command's exit status (\(how))")
      }
      switch end {
      case .exited(let exitCode):
        return c.result(exitCode: exitCode)
      case .failure(let message):
        if let st = c.status, st.code == 404 || st.reason == "NotFound" { throw failure(.notFound, message) }
        throw failure(.failed, message)
      }
    }
  }

  /// The error for a refused upgrade: the Status the apiserver (or the kubelet) answered with.
  private func refusal(
    _ response: HTTPResponse, _ failure: (PodExecError.Kind, String, Int?) -> PodExecError
  ) -> Error {
    let status = try? KubeJSON.decoder().decode(Status.self, from: response.body)
    let text = String(decoding: response.body.prefix(500), as: UTF8.self)
      .trimmingCharacters(in: .whitespacesAndNewlines)
    let message = status?.message ?? (text.isEmpty ? "HTTP \(response.status) without a body" : text)
    switch response.status {
    case 403 where status != nil:
      return failure(.forbidden, message, 403)
    case 403:
      // No Status: not the apiserver's authorizer but the kubelet's streaming server, which answers so when it
      // speaks none of the offered subprotocols.
      return failure(
        .protocolError,
        "the upgrade was refused (403 without a Status): the kubelet may not speak \(Self.execSubprotocol)", 403)
    case 404:
      return failure(.notFound, message, 404)
    case 400 where message.contains("is not valid for pod") || message.contains("not found"):
      // 1.20: "container X is not valid for pod Y"; later: "container X not found in pod Y".
      return failure(.notFound, message, 400)
    case 401:
      return failure(
        .failed, "\(message). The apiserver did not accept the credentials of \(config.userDescription)", 401)
    default:
      return failure(.failed, message, response.status)
    }
  }
}
