import CurlHTTP
import Foundation
import KubeCore

/// An error answer from the apiserver, decoded from its Status object.
public struct APIError: Sendable, CustomStringConvertible {
  public var status: Status
  /// The HTTP status code.
  public var code: Int
  public var method: String
  /// The request URL without its query.
  public var url: String
  /// Server-requested delay (Retry-After or details.retryAfterSeconds).
  public var retryAfter: Duration?
  /// Who the client acted as (for 401/403); never the credential itself.
  public var userDescription: String?

  public init(
    status: Status, code: Int, method: String, url: String, retryAfter: Duration? = nil,
    userDescription: String? = nil
  ) {
    self.status = status
    self.code = code
    self.method = method
    self.url = url
    self.retryAfter = retryAfter
    self.userDescription = userDescription
  }

  /// The error carried by an ERROR watch event (e.g. 410 Expired) of the watch at `url`.
  public init(watchError status: Status, url: String) {
    self.init(status: status, code: status.code ?? 500, method: "WATCH", url: url)
  }

  public var reason: StatusReason { StatusReason(reason: status.reason, code: code) }
  public var message: String { status.message ?? "" }
  public var causes: [StatusCause] { status.details?.causes ?? [] }
  /// A 403 because the namespace is being deleted (cause NamespaceTerminating): not a missing permission, and nothing
  /// new can be created there until it is gone.
  public var isNamespaceTerminating: Bool {
    code == 403 && causes.contains { $0.reason == "NamespaceTerminating" }
  }

  public var description: String {
    var s = "\(method) \(url): \(code) \(reason.rawValue)"
    if !message.isEmpty { s += ": \(message)" }
    let fieldCauses = causes.filter { $0.field != nil || $0.message != nil }
    if !fieldCauses.isEmpty {
      s += " [causes: "
      s += fieldCauses.map { "\($0.field ?? "-"): \($0.message ?? $0.reason ?? "")" }.joined(separator: "; ")
      s += "]"
    }
    switch reason {
    case .unauthorized:
      s +=
        ". The apiserver did not accept the credentials of \(userDescription ?? "the client")"
        + " (expired or invalid token, or an untrusted client certificate); refresh them in the kubeconfig"
    case .forbidden where isNamespaceTerminating:
      s += ". The namespace is being deleted; nothing new can be created in it"
    case .forbidden:
      s += ". \(userDescription ?? "The client") lacks the RBAC permission; grant it with a Role/ClusterRole binding"
    default: break
    }
    return s
  }
}

/// A response body that did not decode into the expected type.
public struct DecodeFailure: Sendable, CustomStringConvertible {
  public var typeName: String
  public var method: String
  public var url: String
  /// What failed and where (the coding path).
  public var detail: String

  public var description: String { "cannot decode \(typeName) from \(method) \(url): \(detail)" }
}

/// Every failure of a Kubernetes client call.
public enum KubeError: Error, Sendable, CustomStringConvertible {
  /// The apiserver answered with an error Status.
  case api(APIError)
  /// No HTTP answer: connection, TLS, timeout. `hint` says what to check.
  case transport(HTTPTransportError, hint: String?)
  /// The answer did not decode.
  case decode(DecodeFailure)
  /// The configuration (kubeconfig, in-cluster files) is unusable.
  case config(ConfigError)
  /// The call's arguments cannot form a request.
  case request(RequestBuildError)
  /// A watch stream ended with a malformed or oversized line.
  case watchStream(String)

  public var description: String {
    switch self {
    case .api(let e): return e.description
    case .transport(let e, let hint): return hint.map { "\(e.description). \($0)" } ?? e.description
    case .decode(let e): return e.description
    case .config(let e): return e.description
    case .request(let e): return "invalid request: \(e.message)"
    case .watchStream(let s): return "watch stream failed: \(s)"
    }
  }

  /// The apiserver's error, if this is one.
  public var apiError: APIError? {
    if case .api(let e) = self { return e }
    return nil
  }

  /// The typed reason of an apiserver error.
  public var reason: StatusReason? { apiError?.reason }
  /// The HTTP code of an apiserver error.
  public var code: Int? { apiError?.code }

  public var isNotFound: Bool { reason == .notFound }
  public var isAlreadyExists: Bool { reason == .alreadyExists }
  public var isConflict: Bool { reason == .conflict }
  public var isForbidden: Bool { reason == .forbidden }
  public var isUnauthorized: Bool { reason == .unauthorized }
  public var isInvalid: Bool { reason == .invalid }
  /// 410: the resourceVersion is too old (Gone or Expired); relist.
  public var isGone: Bool { code == 410 || reason == .gone || reason == .expired }

  /// Whether repeating the call later may succeed: 429, 5xx, timeouts and connection failures.
  public var isRetryable: Bool {
    switch self {
    case .api(let e): return e.code == 429 || (500...599).contains(e.code) && e.code != 501
    case .transport(let e, _): return e.isRetryable
    case .watchStream: return true
    case .decode, .config, .request: return false
    }
  }
}
