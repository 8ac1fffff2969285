import CurlHTTP
import Foundation
import Synchronization

/// The HTTP seam of the client: libcurl in production, a scripted fake in tests.
public protocol HTTPTransport: Sendable {
  /// Sends a request and returns the whole response; HTTP error statuses are returned, not thrown.
  func send(_ request: HTTPRequest) async throws -> HTTPResponse
  /// Sends a request and returns once the response head arrives; the body streams in chunks.
  func openStream(_ request: HTTPRequest) async throws -> StreamingResponse
  /// Runs a WebSocket session (`CurlClient.webSocket`): each text or binary message goes to `onMessage`.
  func webSocket(
    _ request: WebSocketRequest, timeout: Duration,
    onMessage: @escaping @Sendable (WebSocketOpcode, [UInt8]) throws -> WebSocketAction
  ) async throws -> WebSocketOutcome
}

extension HTTPTransport {
  /// Transports without WebSocket support (test fakes) refuse.
  public func webSocket(
    _ request: WebSocketRequest, timeout: Duration,
    onMessage: @escaping @Sendable (WebSocketOpcode, [UInt8]) throws -> WebSocketAction
  ) async throws -> WebSocketOutcome {
    throw HTTPTransportError(
      kind: .invalidRequest, url: request.url, message: "\(type(of: self)) does not support WebSocket sessions")
  }
}

/// A response whose body is pulled chunk by chunk (so a slow reader slows the transfer down).
public struct StreamingResponse: Sendable {
  public var status: Int
  /// Header fields with lower-cased names.
  public var headers: [String: String]
  /// The next chunk, or nil at the end of the body.
  public var next: @Sendable () async throws -> Data?
  /// Aborts the transfer.
  public var cancel: @Sendable () -> Void

  public init(
    status: Int, headers: [String: String], next: @escaping @Sendable () async throws -> Data?,
    cancel: @escaping @Sendable () -> Void
  ) {
    self.status = status
    self.headers = headers
    self.next = next
    self.cancel = cancel
  }

  /// Reads the rest of the body, up to `limit` bytes.
  public func collect(limit: Int = 4 << 20) async throws -> Data {
    var out = Data()
    while let chunk = try await next() {
      out.append(chunk)
      if out.count >= limit {
        cancel()
        break
      }
    }
    return out
  }
}

/// Holds the iterator of a libcurl body stream; one consumer pulls at a time.
final class BodyIteratorBox: @unchecked Sendable {
  private var iterator: HTTPBodyStream.AsyncIterator
  private let response: HTTPStreamingResponse

  init(_ response: HTTPStreamingResponse) {
    self.response = response
    iterator = response.body.makeAsyncIterator()
  }

  func next() async throws -> Data? { try await iterator.next() }

  func cancel() { response.cancel() }

  deinit { response.cancel() }
}

extension CurlClient: HTTPTransport {
  public func openStream(_ request: HTTPRequest) async throws -> StreamingResponse {
    let response = try await stream(request)
    let box = BodyIteratorBox(response)
    return StreamingResponse(
      status: response.status, headers: response.headers, next: { try await box.next() }, cancel: { box.cancel() })
  }
}
