import CurlHTTP
import Foundation
import KubeCore

/// A kubeconfig: clusters, users and contexts, possibly merged from several files as kubectl merges them.
public struct Kubeconfig: Sendable {
  /// A named entry and the file it came from.
  public struct Entry<T: Sendable>: Sendable {
    public var value: T
    public var file: String
  }

  /// One `clusters[].cluster`.
  public struct Cluster: Sendable, Hashable {
    public var server: String?
    public var certificateAuthority: String?
    public var certificateAuthorityData: Data?
    public var insecureSkipTLSVerify: Bool = false
  }

  /// One `users[].user`.
  public struct User: Sendable, Hashable {
    public var token: String?
    public var tokenFile: String?
    public var clientCertificate: String?
    public var clientCertificateData: Data?
    public var clientKey: String?
    public var clientKeyData: Data?
    /// An exec credential plugin.
    public var exec: ExecCredentialPlugin?
    /// Set when the user uses an auth mechanism this client does not implement (auth-provider, basic).
    public var unsupported: String?
  }

  /// One `contexts[].context`.
  public struct Context: Sendable, Hashable {
    public var cluster: String
    public var user: String
    public var namespace: String?
  }

  public var clusters: [String: Entry<Cluster>] = [:]
  public var users: [String: Entry<User>] = [:]
  public var contexts: [String: Entry<Context>] = [:]
  public var currentContext: String?
  /// The file that set current-context.
  public var currentContextFile: String?
  /// The files merged, in order.
  public var files: [String] = []

  public init() {}

  /// Splits a `$KUBECONFIG` value on ':' (empty parts dropped).
  public static func paths(fromEnvironmentValue value: String) -> [String] {
    value.split(separator: ":", omittingEmptySubsequences: true).map(String.init)
  }

  /// Loads and merges files: the first file to define a name wins, and current-context comes from the first
  /// file that sets it. A missing file in a list of several is skipped, as kubectl does.
  public static func load(paths: [String]) throws -> Kubeconfig {
    var merged = Kubeconfig()
    var loaded = 0
    for path in paths {
      let text: String
      do {
        text = try String(contentsOfFile: path, encoding: .utf8)
      } catch {
        if paths.count > 1 && !FileManager.default.fileExists(atPath: path) { continue }
        throw ConfigError(file: path, field: "KUBECONFIG", message: "cannot read the kubeconfig file: \(reason(error))")
      }
      loaded += 1
      merged.merge(try parse(text, file: path))
    }
    if loaded == 0 {
      throw ConfigError(
        file: paths.joined(separator: ":"), field: "KUBECONFIG", message: "none of the kubeconfig files exists")
    }
    return merged
  }

  /// Adds another file's entries without overriding existing ones.
  public mutating func merge(_ other: Kubeconfig) {
    for (k, v) in other.clusters where clusters[k] == nil { clusters[k] = v }
    for (k, v) in other.users where users[k] == nil { users[k] = v }
    for (k, v) in other.contexts where contexts[k] == nil { contexts[k] = v }
    if (currentContext ?? "").isEmpty, let c = other.currentContext, !c.isEmpty {
      currentContext = c
      currentContextFile = other.currentContextFile
    }
    files += other.files
  }

  /// Parses one kubeconfig file; relative paths are resolved against the file's directory.
  public static func parse(_ text: String, file: String) throws -> Kubeconfig {
    let doc: JSONValue
    do {
      doc = try YAML.parse(text, file: file)
    } catch let e as YAMLError {
      throw ConfigError(
        file: file, field: "line \(e.line), column \(e.column)", message: "malformed YAML: \(e.message)")
    }
    var kc = Kubeconfig()
    kc.files = [file]
    if doc == .null { return kc }
    guard case .object = doc else {
      throw ConfigError(file: file, field: "<root>", message: "a kubeconfig must be a mapping")
    }
    let dir = file.lastIndex(of: "/").map { String(file[..<$0]) } ?? ""
    func resolve(_ p: String) -> String {
      if p.isEmpty || p.hasPrefix("/") { return p }
      if p.hasPrefix("~/") { return NSHomeDirectory() + String(p.dropFirst(1)) }
      return dir.isEmpty ? p : dir + "/" + p
    }
    func string(_ v: JSONValue?, _ field: String) throws -> String? {
      switch v {
      case nil, .null?: return nil
      case .string(let s)?: return s
      case .int(let i)?: return String(i)
      case .bool(let b)?: return String(b)
      default: throw ConfigError(file: file, field: field, message: "must be a string")
      }
    }
    func base64(_ v: JSONValue?, _ field: String) throws -> Data? {
      guard let s = try string(v, field) else { return nil }
      guard let d = Data(base64Encoded: s.filter { !$0.isWhitespace }) else {
        throw ConfigError(file: file, field: field, message: "is not valid base64")
      }
      return d
    }
    func execPlugin(_ e: JSONValue, field: String) throws -> ExecCredentialPlugin {
      guard case .object = e else { throw ConfigError(file: file, field: field, message: "must be a mapping") }
      guard let command = try string(e["command"], "\(field).command"), !command.isEmpty else {
        throw ConfigError(file: file, field: "\(field).command", message: "is missing")
      }
      let version = try string(e["apiVersion"], "\(field).apiVersion") ?? ""
      guard ExecCredentialPlugin.supportedVersions.contains(version) else {
        throw ConfigError(
          file: file, field: "\(field).apiVersion",
          message:
            "\"\(version)\" is not supported; use one of \(ExecCredentialPlugin.supportedVersions.joined(separator: ", "))"
            + " (v1alpha1 plugins must be upgraded)")
      }
      var args: [String] = []
      if let a = e["args"], a != .null {
        guard case .array(let items) = a else {
          throw ConfigError(file: file, field: "\(field).args", message: "must be a list of strings")
        }
        for (i, item) in items.enumerated() {
          guard let s = try string(item, "\(field).args[\(i)]") else {
            throw ConfigError(file: file, field: "\(field).args[\(i)]", message: "must be a string")
          }
          args.append(s)
        }
      }
      var env: [ExecCredentialPlugin.EnvVar] = []
      if let list = e["env"], list != .null {
        guard case .array(let items) = list else {
          throw ConfigError(file: file, field: "\(field).env", message: "must be a list of {name, value}")
        }
        for (i, item) in items.enumerated() {
          guard let n = try string(item["name"], "\(field).env[\(i)].name"), !n.isEmpty else {
            throw ConfigError(file: file, field: "\(field).env[\(i)].name", message: "is missing")
          }
          env.append(.init(name: n, value: try string(item["value"], "\(field).env[\(i)].value") ?? ""))
        }
      }
      if let mode = try string(e["interactiveMode"], "\(field).interactiveMode"), mode == "Always" {
        throw ConfigError(
          file: file, field: "\(field).interactiveMode",
          message: "is Always, but this client never has a terminal; use IfAvailable or Never")
      }
      return ExecCredentialPlugin(
        apiVersion: version, command: command, args: args, env: env,
        installHint: try string(e["installHint"], "\(field).installHint"),
        provideClusterInfo: e["provideClusterInfo"]?.boolValue ?? false, file: file, field: field)
    }
    func namedList(_ key: String, inner: String, _ body: (String, JSONValue, String) throws -> Void) throws {
      guard let list = doc[key], list != .null else { return }
      guard case .array(let items) = list else {
        throw ConfigError(file: file, field: key, message: "must be a list")
      }
      for (i, item) in items.enumerated() {
        guard let name = try string(item["name"], "\(key)[\(i)].name"), !name.isEmpty else {
          throw ConfigError(file: file, field: "\(key)[\(i)].name", message: "is missing")
        }
        let field = "\(key)[name=\(name)].\(inner)"
        let value = item[inner] ?? .object([:])
        guard case .object = value else {
          throw ConfigError(file: file, field: field, message: "must be a mapping")
        }
        try body(name, value, field)
      }
    }
    try namedList("clusters", inner: "cluster") { name, c, f in
      var cl = Cluster()
      cl.server = try string(c["server"], "\(f).server")
      cl.certificateAuthority = try string(c["certificate-authority"], "\(f).certificate-authority").map(resolve)
      cl.certificateAuthorityData = try base64(c["certificate-authority-data"], "\(f).certificate-authority-data")
      if let v = c["insecure-skip-tls-verify"], v != .null {
        guard let b = v.boolValue else {
          throw ConfigError(file: file, field: "\(f).insecure-skip-tls-verify", message: "must be true or false")
        }
        cl.insecureSkipTLSVerify = b
      }
      if kc.clusters[name] == nil { kc.clusters[name] = Entry(value: cl, file: file) }
    }
    try namedList("users", inner: "user") { name, u, f in
      var us = User()
      us.token = try string(u["token"], "\(f).token")
      us.tokenFile = try string(u["tokenFile"], "\(f).tokenFile").map(resolve)
      us.clientCertificate = try string(u["client-certificate"], "\(f).client-certificate").map(resolve)
      us.clientCertificateData = try base64(u["client-certificate-data"], "\(f).client-certificate-data")
      us.clientKey = try string(u["client-key"], "\(f).client-key").map(resolve)
      us.clientKeyData = try base64(u["client-key-data"], "\(f).client-key-data")
      if let e = u["exec"], e != .null {
        us.exec = try execPlugin(e, field: "\(f).exec")
      }
      for key in ["auth-provider", "username"] where u[key] != nil && u[key] != .null {
        us.unsupported = key
      }
      if kc.users[name] == nil { kc.users[name] = Entry(value: us, file: file) }
    }
    try namedList("contexts", inner: "context") { name, c, f in
      let cluster = try string(c["cluster"], "\(f).cluster") ?? ""
      let user = try string(c["user"], "\(f).user") ?? ""
      let ns = try string(c["namespace"], "\(f).namespace")
      if kc.contexts[name] == nil {
        kc.contexts[name] = Entry(value: Context(cluster: cluster, user: user, namespace: ns), file: file)
      }
    }
    if let cc = try string(doc["current-context"], "current-context"), !cc.isEmpty {
      kc.currentContext = cc
      kc.currentContextFile = file
    }
    return kc
  }

  /// The client configuration of a context (the current one by default). Reads certificate files now, so a
  /// missing or unreadable one fails here with the file and field named.
  public func clientConfig(context name: String? = nil) throws -> ClientConfig {
    let where_ = files.joined(separator: ":")
    guard let ctxName = name ?? currentContext, !ctxName.isEmpty else {
      throw ConfigError(
        file: where_, field: "current-context",
        message: "is not set and no context was chosen; set one with"
          + " `kubectl config use-context NAME` (contexts: \(contexts.keys.sorted().joined(separator: ", ")))")
    }
    guard let ctx = contexts[ctxName] else {
      let origin = name == nil ? (currentContextFile ?? where_) : where_
      throw ConfigError(
        file: origin, field: name == nil ? "current-context" : "contexts",
        message: "context \"\(ctxName)\" is not defined (defined: \(contexts.keys.sorted().joined(separator: ", ")))")
    }
    let cf = "contexts[name=\(ctxName)].context"
    guard let cluster = contexts[ctxName].flatMap({ clusters[$0.value.cluster] }) else {
      throw ConfigError(
        file: ctx.file, field: "\(cf).cluster", message: "cluster \"\(ctx.value.cluster)\" is not defined")
    }
    let user: Entry<User>?
    if ctx.value.user.isEmpty {
      user = nil
    } else {
      guard let u = users[ctx.value.user] else {
        throw ConfigError(file: ctx.file, field: "\(cf).user", message: "user \"\(ctx.value.user)\" is not defined")
      }
      user = u
    }
    let clf = "clusters[name=\(ctx.value.cluster)].cluster"
    guard let server = cluster.value.server, !server.isEmpty else {
      throw ConfigError(file: cluster.file, field: "\(clf).server", message: "is missing")
    }
    guard server.hasPrefix("https://") || server.hasPrefix("http://") else {
      throw ConfigError(file: cluster.file, field: "\(clf).server", message: "\"\(server)\" is not an http(s) URL")
    }
    var tls = TLSOptions(insecureSkipVerify: cluster.value.insecureSkipTLSVerify)
    var caDescription = "the system trust store"
    func readFile(_ path: String, _ file: String, _ field: String) throws -> Data {
      do {
        return try Data(contentsOf: URL(fileURLWithPath: path))
      } catch {
        throw ConfigError(file: file, field: field, message: "cannot read \(path): \(Self.reason(error))")
      }
    }
    if let d = cluster.value.certificateAuthorityData {
      tls.caPEM = d
      caDescription = "\(clf).certificate-authority-data in \(cluster.file)"
    } else if let p = cluster.value.certificateAuthority {
      tls.caPEM = try readFile(p, cluster.file, "\(clf).certificate-authority")
      caDescription = "\(p) (\(clf).certificate-authority in \(cluster.file))"
    }
    var auth = KubeAuth.none
    var userDescription = "anonymous (context \"\(ctxName)\" names no user)"
    if let user {
      let uf = "users[name=\(ctx.value.user)].user"
      if let unsupported = user.value.unsupported {
        throw ConfigError(
          file: user.file, field: "\(uf).\(unsupported)",
          message: "is not supported by this client; use token, tokenFile, exec or a client certificate")
      }
      if let d = user.value.clientCertificateData {
        tls.clientCertPEM = d
      } else if let p = user.value.clientCertificate {
        tls.clientCertPEM = try readFile(p, user.file, "\(uf).client-certificate")
      }
      if let d = user.value.clientKeyData {
        tls.clientKeyPEM = d
      } else if let p = user.value.clientKey {
        tls.clientKeyPEM = try readFile(p, user.file, "\(uf).client-key")
      }
      if (tls.clientCertPEM == nil) != (tls.clientKeyPEM == nil) {
        throw ConfigError(
          file: user.file, field: uf, message: "a client certificate needs both client-certificate and client-key")
      }
      if let t = user.value.token, !t.isEmpty {
        auth = .token(t)
      } else if let f = user.value.tokenFile, !f.isEmpty {
        guard FileManager.default.isReadableFile(atPath: f) else {
          throw ConfigError(file: user.file, field: "\(uf).tokenFile", message: "cannot read \(f)")
        }
        auth = .tokenFile(f)
      } else if let plugin = user.value.exec {
        auth = .exec(
          plugin,
          cluster: ExecCredentialPlugin.ClusterInfo(
            server: server, certificateAuthorityData: tls.caPEM,
            insecureSkipTLSVerify: cluster.value.insecureSkipTLSVerify))
      } else if tls.clientCertPEM != nil {
        auth = .clientCertificate
      }
      userDescription = "user \"\(ctx.value.user)\" (\(auth), context \"\(ctxName)\" of \(user.file))"
    }
    return ClientConfig(
      server: server, tls: tls, auth: auth, namespace: ctx.value.namespace ?? "default",
      userDescription: userDescription, caDescription: caDescription)
  }

  /// A short reason for a file error (Foundation's descriptions of file errors are long or crash on Linux).
  static func reason(_ error: Error) -> String {
    if let e = error as? CocoaError {
      switch e.code {
      case .fileReadNoSuchFile, .fileNoSuchFile: return "no such file"
      case .fileReadNoPermission: return "permission denied"
      case .fileReadInapplicableStringEncoding: return "not UTF-8 text"
      default: return "error \(e.code.rawValue)"
      }
    }
    return String(describing: type(of: error))
  }
}
