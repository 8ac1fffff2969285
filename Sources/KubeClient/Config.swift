import CurlHTTP
import Foundation
import Synchronization

/// How the client authenticates.
public enum KubeAuth: Sendable, CustomStringConvertible {
  case none
  /// A fixed bearer token.
  case token(String)
  /// A bearer token read from a file and re-read when it may have rotated.
  case tokenFile(String)
  /// A client certificate (carried in the TLS options).
  case clientCertificate
  /// A bearer token from a kubeconfig `exec` credential plugin, told about `cluster` when it asks.
  case exec(ExecCredentialPlugin, cluster: ExecCredentialPlugin.ClusterInfo?)

  public var description: String {
    switch self {
    case .none: return "no credentials"
    case .token: return "bearer token"
    case .tokenFile(let p): return "bearer token from file \(p)"
    case .clientCertificate: return "client certificate"
    case .exec(let plugin, _): return "bearer token from the exec plugin \(plugin.command)"
    }
  }
}

/// Everything the client needs to reach one apiserver: URL, TLS, credentials and the default namespace.
public struct ClientConfig: Sendable {
  /// The apiserver's base URL, e.g. `https://127.0.0.1:6443` (no trailing slash).
  public var server: String
  public var tls: TLSOptions
  public var auth: KubeAuth
  /// The namespace of the context (or of the service account), "default" when unset.
  public var namespace: String
  /// Who the client acts as, for errors, e.g. `user "admin" (bearer token) of kubeconfig /x`. Never the secret.
  public var userDescription: String
  /// Where the trusted CA comes from, for TLS errors, e.g. `clusters[local].certificate-authority in /x`.
  public var caDescription: String

  public init(
    server: String, tls: TLSOptions = TLSOptions(), auth: KubeAuth = .none, namespace: String = "default",
    userDescription: String? = nil, caDescription: String? = nil
  ) {
    var s = server
    while s.hasSuffix("/") { s.removeLast() }
    self.server = s
    self.tls = tls
    self.auth = auth
    self.namespace = namespace
    self.userDescription = userDescription ?? "the client (\(auth))"
    self.caDescription =
      caDescription ?? (tls.caFile ?? (tls.caPEM != nil ? "the configured CA data" : "the system trust store"))
  }

  /// The environment variables `fromEnvironment` reads, in the order it tries them, with what each does (for the
  /// help of the programs that use it).
  public static let environmentVariables: [(name: String, meaning: String)] = [
    ("KUBECONFIG", "kubeconfig files, ':'-separated, as kubectl reads them (--kubeconfig)"),
    ("KUBERNETES_SERVICE_HOST", "set in a pod: the in-cluster service account is used"),
    ("KUBERNETES_SERVICE_PORT", "the in-cluster apiserver's port (default 443)"),
    ("HOME", "~/.kube/config is read when neither of the above is set"),
    ("PATH", "where a kubeconfig user's exec credential plugin is looked up"),
  ]

  /// Loads `$KUBECONFIG` (or ~/.kube/config) when set or present, otherwise the in-cluster service account.
  public static func fromEnvironment(
    context: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment
  ) throws -> ClientConfig {
    if let kc = environment["KUBECONFIG"], !kc.isEmpty {
      return try Kubeconfig.load(paths: Kubeconfig.paths(fromEnvironmentValue: kc)).clientConfig(context: context)
    }
    if environment["KUBERNETES_SERVICE_HOST"] != nil {
      return try inCluster(environment: environment)
    }
    let home = environment["HOME"] ?? NSHomeDirectory()
    let path = home + "/.kube/config"
    if FileManager.default.fileExists(atPath: path) {
      return try Kubeconfig.load(paths: [path]).clientConfig(context: context)
    }
    throw ConfigError(
      file: "$KUBECONFIG", field: "KUBECONFIG",
      message: "no cluster configured: KUBECONFIG is unset, \(path) does not exist, and KUBERNETES_SERVICE_HOST is"
        + " unset (not in a cluster); set KUBECONFIG to a kubeconfig file")
  }

  /// Where an in-cluster pod finds its service account.
  public struct InClusterPaths: Sendable {
    public var token: String
    public var caCert: String
    public var namespace: String

    public init(
      token: String = "/var/run/secrets/kubernetes.io/serviceaccount/token",
      caCert: String = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
      namespace: String = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    ) {
      self.token = token
      self.caCert = caCert
      self.namespace = namespace
    }
  }

  /// The in-cluster config: KUBERNETES_SERVICE_HOST/PORT, the service account's token (re-read as it rotates),
  /// CA and namespace.
  public static func inCluster(
    paths: InClusterPaths = InClusterPaths(), environment: [String: String] = ProcessInfo.processInfo.environment
  ) throws -> ClientConfig {
    guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty else {
      throw ConfigError(
        file: "environment", field: "KUBERNETES_SERVICE_HOST",
        message: "is unset: not running in a cluster (set KUBECONFIG to use a kubeconfig instead)")
    }
    let port = environment["KUBERNETES_SERVICE_PORT"] ?? "443"
    guard Int(port) != nil else {
      throw ConfigError(file: "environment", field: "KUBERNETES_SERVICE_PORT", message: "\"\(port)\" is not a port")
    }
    let hostPart = host.contains(":") ? "[\(host)]" : host
    guard FileManager.default.isReadableFile(atPath: paths.token) else {
      throw ConfigError(file: paths.token, field: "token", message: "the service account token is not readable")
    }
    guard FileManager.default.isReadableFile(atPath: paths.caCert) else {
      throw ConfigError(file: paths.caCert, field: "ca.crt", message: "the service account CA is not readable")
    }
    var namespace = "default"
    if FileManager.default.fileExists(atPath: paths.namespace) {
      do {
        namespace = try String(contentsOfFile: paths.namespace, encoding: .utf8)
          .trimmingCharacters(in: .whitespacesAndNewlines)
      } catch {
        throw ConfigError(
          file: paths.namespace, field: "namespace", message: "cannot read: \(Kubeconfig.reason(error))")
      }
    }
    return ClientConfig(
      server: "https://\(hostPart):\(port)", tls: TLSOptions(caFile: paths.caCert), auth: .tokenFile(paths.token),
      namespace: namespace, userDescription: "the pod's service account (token file \(paths.token))",
      caDescription: "the service account CA \(paths.caCert)")
  }
}

/// A configuration problem: names the file and the field at fault.
public struct ConfigError: Error, Sendable, Hashable, CustomStringConvertible {
  public var file: String
  public var field: String
  public var message: String

  public init(file: String, field: String, message: String) {
    self.file = file
    self.field = field
    self.message = message
  }

  public var description: String { "\(file): \(field): \(message)" }
}

/// Supplies the bearer token; re-reads a token file at most once a minute, or at once after a 401; runs an exec
/// plugin again when its token expires (10 s early) or after a 401.
final class TokenSource: Sendable {
  private struct State {
    var token: String?
    var readAt: ContinuousClock.Instant?
    var expiresAt: Date?
  }
  private let auth: KubeAuth
  private let state = Mutex(State())
  private let refreshInterval: Duration
  private let wallClock: @Sendable () -> Date

  init(auth: KubeAuth, refreshInterval: Duration = .seconds(60), wallClock: @escaping @Sendable () -> Date = Date.init)
  {
    self.auth = auth
    self.refreshInterval = refreshInterval
    self.wallClock = wallClock
  }

  /// Whether a 401 may be cured by reading the token again.
  var canRefresh: Bool {
    switch auth {
    case .tokenFile, .exec: return true
    default: return false
    }
  }

  /// The token to send, if any.
  func token(now: ContinuousClock.Instant = .now) throws -> String? {
    switch auth {
    case .none, .clientCertificate: return nil
    case .token(let t): return t
    case .exec(let plugin, let cluster):
      // One run at a time: concurrent requests wait for the run in progress instead of starting their own.
      return try state.withLock { s in
        if let t = s.token, s.expiresAt.map({ wallClock().addingTimeInterval(10) < $0 }) ?? true { return t }
        let c = try plugin.run(cluster: cluster)
        s.token = c.token
        s.expiresAt = c.expiration
        return c.token
      }
    case .tokenFile(let path):
      if let cached = state.withLock({ s -> String? in
        guard let t = s.token, let at = s.readAt, now - at < refreshInterval else { return nil }
        return t
      }) {
        return cached
      }
      let text: String
      do {
        text = try String(contentsOfFile: path, encoding: .utf8)
      } catch {
        throw KubeError.config(
          ConfigError(
            file: path, field: "tokenFile", message: "cannot read the bearer token file: \(Kubeconfig.reason(error))"))
      }
      let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
      state.withLock {
        $0.token = t
        $0.readAt = now
      }
      return t
    }
  }

  /// Forgets the cached token so the next call reads the file again.
  func invalidate() {
    state.withLock { $0 = State() }
  }
}
