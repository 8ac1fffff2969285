import CurlHTTP
import Foundation

/// One request as seen by an `ObservingTransport`: what was asked of the apiserver and its answer.
public struct ObservedRequest: Sendable, Hashable {
  /// get, list, watch, create, update, patch, delete, or the HTTP method in lower case for anything else.
  public var verb: String
  /// The resource (e.g. "pods", "backuppolicies", "cronjobs/status"); "discovery" for /api, /apis and /version.
  public var resource: String
  /// The HTTP status, or 0 when no answer arrived (a connection error).
  public var status: Int

  public init(verb: String, resource: String, status: Int) {
    self.verb = verb
    self.resource = resource
    self.status = status
  }

  /// Classifies a request to the Kubernetes API by its method and URL.
  public static func classify(method: String, url: String, status: Int) -> ObservedRequest {
    var path = url
    var query = ""
    if let scheme = path.range(of: "://"), let slash = path[scheme.upperBound...].firstIndex(of: "/") {
      path = String(path[slash...])
    }
    if let q = path.firstIndex(of: "?") {
      query = String(path[path.index(after: q)...])
      path = String(path[..<q])
    }
    var parts = path.split(separator: "/").map(String.init)
    var resource = "discovery"
    var named = false
    if parts.first == "api", parts.count >= 2 {
      parts.removeFirst(2)
    } else if parts.first == "apis", parts.count >= 3 {
      parts.removeFirst(3)
    } else {
      parts = []
    }
    if parts.first == "namespaces", parts.count >= 3 { parts.removeFirst(2) }
    if let r = parts.first {
      resource = r
      named = parts.count >= 2
      if parts.count >= 3 { resource += "/" + parts[2] }
    }
    let watch = query.split(separator: "&").contains { $0 == "watch=true" || $0 == "watch=1" }
    let verb: String
    switch method.uppercased() {
    case "GET": verb = resource == "discovery" ? "get" : (watch ? "watch" : (named ? "get" : "list"))
    case "POST": verb = "create"
    case "PUT": verb = "update"
    case "PATCH": verb = "patch"
    case "DELETE": verb = named ? "delete" : "deletecollection"
    default: verb = method.lowercased()
    }
    return ObservedRequest(verb: verb, resource: resource, status: status)
  }
}

/// A transport that reports every request it passes on (for a request counter), then returns the inner answer.
///
/// The observer gets the method, the resource and the status only: never headers (which carry the bearer token) or
/// bodies (which may carry Secret data).
public struct ObservingTransport: HTTPTransport {
  let inner: any HTTPTransport
  let observe: @Sendable (ObservedRequest) -> Void

  public init(_ inner: any HTTPTransport = CurlClient(), observe: @escaping @Sendable (ObservedRequest) -> Void) {
    self.inner = inner
    self.observe = observe
  }

  public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
    do {
      let r = try await inner.send(request)
      observe(.classify(method: request.method, url: request.url, status: r.status))
      return r
    } catch {
      observe(.classify(method: request.method, url: request.url, status: 0))
      throw error
    }
  }

  public func openStream(_ request: HTTPRequest) async throws -> StreamingResponse {
    do {
      let r = try await inner.openStream(request)
      observe(.classify(method: request.method, url: request.url, status: r.status))
      return r
    } catch {
      observe(.classify(method: request.method, url: request.url, status: 0))
      throw error
    }
  }

  public func webSocket(
    _ request: WebSocketRequest, timeout: Duration,
    onMessage: @escaping @Sendable (WebSocketOpcode, [UInt8]) throws -> WebSocketAction
  ) async throws -> WebSocketOutcome {
    do {
      let r = try await inner.webSocket(request, timeout: timeout, onMessage: onMessage)
      var status = 101
      if case .refused(let response) = r { status = response.status }
      observe(.classify(method: "GET", url: request.url, status: status))
      return r
    } catch {
      observe(.classify(method: "GET", url: request.url, status: 0))
      throw error
    }
  }
}
