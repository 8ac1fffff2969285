import CurlHTTP
import Foundation
import Synchronization

@testable import KubeClient

/// A scripted transport: answers requests in order from a list of steps and records what was sent.
final class FakeTransport: HTTPTransport {
  enum Step: Sendable {
    case respond(Int, headers: [String: String] = [:], body: String = "")
    case fail(HTTPTransportError.Kind, code: Int32 = 7)
    case stream(Int, chunks: [Data])
  }

  private let steps: Mutex<[Step]>
  let sent = Mutex<[HTTPRequest]>([])

  init(_ steps: [Step]) { self.steps = Mutex(steps) }

  var requests: [HTTPRequest] { sent.withLock { $0 } }
  var remaining: Int { steps.withLock { $0.count } }

  private func nextStep(_ request: HTTPRequest) throws -> Step {
    sent.withLock { $0.append(request) }
    guard let step = steps.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else {
      throw HTTPTransportError(kind: .other, url: request.url, message: "fake transport: no scripted answer left")
    }
    return step
  }

  func send(_ request: HTTPRequest) async throws -> HTTPResponse {
    switch try nextStep(request) {
    case .respond(let status, let headers, let body):
      return HTTPResponse(status: status, headers: headers, body: Data(body.utf8))
    case .fail(let kind, let code):
      throw HTTPTransportError(kind: kind, url: request.url, message: "scripted failure", curlCode: code)
    case .stream(let status, let chunks):
      return HTTPResponse(status: status, body: chunks.reduce(Data(), +))
    }
  }

  func openStream(_ request: HTTPRequest) async throws -> StreamingResponse {
    switch try nextStep(request) {
    case .respond(let status, let headers, let body):
      let chunks = Mutex([Data(body.utf8)])
      return StreamingResponse(
        status: status, headers: headers, next: { chunks.withLock { $0.isEmpty ? nil : $0.removeFirst() } },
        cancel: {})
    case .fail(let kind, let code):
      throw HTTPTransportError(kind: kind, url: request.url, message: "scripted failure", curlCode: code)
    case .stream(let status, let chunks):
      let queue = Mutex(chunks)
      return StreamingResponse(
        status: status, headers: [:], next: { queue.withLock { $0.isEmpty ? nil : $0.removeFirst() } }, cancel: {})
    }
  }
}

/// Records the delays the client asked for instead of sleeping.
final class SleepRecorder: Sendable {
  let delays = Mutex<[Duration]>([])
  var sleep: @Sendable (Duration) async throws -> Void { { d in self.delays.withLock { $0.append(d) } } }
  var recorded: [Duration] { delays.withLock { $0 } }
}

func makeClient(
  _ transport: FakeTransport, auth: KubeAuth = .token("s3cr3t-token"), sleeper: SleepRecorder = SleepRecorder(),
  maxAttempts: Int = 4
) -> KubeClient {
  let config = ClientConfig(
    server: "https://127.0.0.1:6443/", auth: auth, userDescription: "user \"tester\" (bearer token)",
    caDescription: "/x/ca.crt (clusters[name=c].cluster.certificate-authority in /x/kubeconfig)")
  return KubeClient(
    config: config, transport: transport, retry: RetryPolicy(maxAttempts: maxAttempts), sleep: sleeper.sleep)
}
