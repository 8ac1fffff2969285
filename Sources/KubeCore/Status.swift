import Foundation

/// The apiserver's error object (metav1.Status), returned with non-2xx responses and in ERROR watch events.
public struct Status: Codable, Sendable, Hashable, Error {
  public var apiVersion: String?
  public var kind: String?
  /// "Success" or "Failure".
  public var status: String?
  public var message: String?
  /// A machine-readable reason such as NotFound, AlreadyExists, Conflict, Invalid, Expired, Gone.
  public var reason: String?
  public var details: StatusDetails?
  public var code: Int?

  public init(
    status: String? = "Failure", message: String? = nil, reason: String? = nil, details: StatusDetails? = nil,
    code: Int? = nil
  ) {
    self.apiVersion = "v1"
    self.kind = "Status"
    self.status = status
    self.message = message
    self.reason = reason
    self.details = details
    self.code = code
  }

  /// The reason as a typed value.
  public var typedReason: StatusReason { StatusReason(reason: reason, code: code) }
}

/// Details of a Status: which object, and per-field causes.
public struct StatusDetails: Codable, Sendable, Hashable {
  public var name: String?
  public var group: String?
  public var kind: String?
  public var uid: String?
  public var causes: [StatusCause]?
  public var retryAfterSeconds: Int?

  public init(
    name: String? = nil, group: String? = nil, kind: String? = nil, uid: String? = nil, causes: [StatusCause]? = nil,
    retryAfterSeconds: Int? = nil
  ) {
    self.name = name
    self.group = group
    self.kind = kind
    self.uid = uid
    self.causes = causes
    self.retryAfterSeconds = retryAfterSeconds
  }
}

/// One cause of a failure; `field` names the offending field (e.g. `.data.key` or `spec.schedule`).
public struct StatusCause: Codable, Sendable, Hashable {
  public var reason: String?
  public var message: String?
  public var field: String?

  public init(reason: String? = nil, message: String? = nil, field: String? = nil) {
    self.reason = reason
    self.message = message
    self.field = field
  }
}

/// The apiserver's status reasons, with the HTTP code as a fallback when the reason is absent.
public enum StatusReason: String, Sendable, Hashable {
  case badRequest = "BadRequest"
  case unauthorized = "Unauthorized"
  case forbidden = "Forbidden"
  case notFound = "NotFound"
  case alreadyExists = "AlreadyExists"
  case conflict = "Conflict"
  case gone = "Gone"
  case expired = "Expired"
  case invalid = "Invalid"
  case serverTimeout = "ServerTimeout"
  case timeout = "Timeout"
  case tooManyRequests = "TooManyRequests"
  case methodNotAllowed = "MethodNotAllowed"
  case notAcceptable = "NotAcceptable"
  case requestEntityTooLarge = "RequestEntityTooLarge"
  case unsupportedMediaType = "UnsupportedMediaType"
  case internalError = "InternalError"
  case serviceUnavailable = "ServiceUnavailable"
  case unknown = "Unknown"

  /// The reason from a Status, falling back to the HTTP code.
  public init(reason: String?, code: Int?) {
    if let r = reason, let v = StatusReason(rawValue: r) {
      self = v
      return
    }
    switch code ?? 0 {
    case 400: self = .badRequest
    case 401: self = .unauthorized
    case 403: self = .forbidden
    case 404: self = .notFound
    case 405: self = .methodNotAllowed
    case 406: self = .notAcceptable
    case 409: self = .conflict
    case 410: self = .gone
    case 413: self = .requestEntityTooLarge
    case 415: self = .unsupportedMediaType
    case 422: self = .invalid
    case 429: self = .tooManyRequests
    case 500: self = .internalError
    case 503: self = .serviceUnavailable
    case 504: self = .timeout
    default: self = .unknown
    }
  }
}
