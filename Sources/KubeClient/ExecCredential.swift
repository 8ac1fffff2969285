import Foundation
import KubeCore

#if canImport(Glibc)
  import Glibc
#endif

/// A kubeconfig user's `exec` credential plugin (`client.authentication.k8s.io/v1` or `v1beta1`): how EKS
/// (`aws eks get-token`), GKE (`gke-gcloud-auth-plugin`) and AKS (`kubelogin`) hand out bearer tokens. The plugin
/// is run without a terminal; its `ExecCredential` answer's token is used until its `expirationTimestamp` (or until
/// the apiserver answers 401, when there is none), then the plugin runs again.
public struct ExecCredentialPlugin: Sendable, Hashable {
  public struct EnvVar: Sendable, Hashable {
    public var name: String
    public var value: String
  }
  public static let supportedVersions = ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"]

  public var apiVersion: String
  /// As written in the kubeconfig; a path with a slash is resolved against the kubeconfig's directory.
  public var command: String
  public var args: [String]
  public var env: [EnvVar]
  public var installHint: String?
  public var provideClusterInfo: Bool
  /// The kubeconfig file and the field (`users[name=X].user.exec`), for errors.
  public var file: String
  public var field: String

  public init(
    apiVersion: String, command: String, args: [String] = [], env: [EnvVar] = [], installHint: String? = nil,
    provideClusterInfo: Bool = false, file: String, field: String
  ) {
    self.apiVersion = apiVersion
    self.command = command
    self.args = args
    self.env = env
    self.installHint = installHint
    self.provideClusterInfo = provideClusterInfo
    self.file = file
    self.field = field
  }

  /// The cluster the plugin is told about when `provideClusterInfo` is set.
  public struct ClusterInfo: Sendable, Hashable {
    public var server: String
    public var certificateAuthorityData: Data?
    public var insecureSkipTLSVerify: Bool
  }

  /// A token and when it stops being valid (nil: until the apiserver refuses it).
  public struct Credential: Sendable, Hashable {
    public var token: String
    public var expiration: Date?
  }

  func error(_ message: String) -> KubeError {
    .config(ConfigError(file: file, field: field, message: message))
  }

  /// The executable to run: an absolute path, a path relative to the kubeconfig's directory, or a name on PATH.
  func executable(path: String?) throws -> String {
    let fm = FileManager.default
    if command.contains("/") {
      let dir = file.lastIndex(of: "/").map { String(file[..<$0]) } ?? "."
      let p = command.hasPrefix("/") ? command : dir + "/" + command
      guard fm.isExecutableFile(atPath: p) else { throw notFound("\(p) is not an executable file") }
      return p
    }
    for d in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") where !d.isEmpty {
      let p = "\(d)/\(command)"
      if fm.isExecutableFile(atPath: p) { return p }
    }
    throw notFound("\(command) was not found on PATH")
  }

  func notFound(_ what: String) -> KubeError {
    error(
      "the credential plugin cannot run: \(what)"
        + (installHint.map { ". \($0.trimmingCharacters(in: .whitespacesAndNewlines))" } ?? ""))
  }

  /// Runs the plugin and reads its answer. Blocks the calling thread for the plugin's run (at most `timeout`).
  public func run(
    cluster: ClusterInfo?, environment: [String: String] = ProcessInfo.processInfo.environment,
    timeout: Duration = .seconds(60)
  ) throws -> Credential {
    let exe = try executable(path: environment["PATH"])
    var spec: [String: JSONValue] = ["interactive": false]
    if provideClusterInfo, let c = cluster {
      var info: [String: JSONValue] = ["server": .string(c.server)]
      if let ca = c.certificateAuthorityData { info["certificate-authority-data"] = .string(ca.base64EncodedString()) }
      if c.insecureSkipTLSVerify { info["insecure-skip-tls-verify"] = true }
      spec["cluster"] = .object(info)
    }
    let execInfo: JSONValue = ["apiVersion": .string(apiVersion), "kind": "ExecCredential", "spec": .object(spec)]
    var env = environment
    for e in self.env { env[e.name] = e.value }
    env["KUBERNETES_EXEC_INFO"] = String(decoding: try KubeJSON.encoder().encode(execInfo), as: UTF8.self)

    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    p.environment = env
    p.standardInput = FileHandle.nullDevice
    let out = Pipe()
    let err = Pipe()
    p.standardOutput = out
    p.standardError = err
    do {
      try p.run()
    } catch {
      throw notFound("\(exe) could not be started (\(error.localizedDescription))")
    }
    // Read both pipes to their end on other threads (a plugin that writes much to stderr must not block), with a
    // deadline for the whole run.
    let box = OutputBox()
    let done = DispatchGroup()
    for (pipe, isOut) in [(out, true), (err, false)] {
      done.enter()
      DispatchQueue.global().async {
        let d = pipe.fileHandleForReading.readDataToEndOfFile()
        box.set(d, stdout: isOut)
        done.leave()
      }
    }
    let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
    if done.wait(timeout: .now() + seconds) == .timedOut {
      kill(p.processIdentifier, SIGKILL)
      p.waitUntilExit()
      throw error("the credential plugin \(command) did not answer within \(timeout)")
    }
    p.waitUntilExit()
    let (stdout, stderr) = box.get()
    let errText = String(decoding: stderr.prefix(400), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    guard p.terminationStatus == 0 else {
      throw error(
        "the credential plugin \(command) exited with status \(p.terminationStatus)"
          + (errText.isEmpty ? "" : ": \(errText)"))
    }
    return try parse(stdout)
  }

  /// Reads an ExecCredential answer. Messages never contain the token.
  public func parse(_ data: Data) throws -> Credential {
    guard let doc = try? KubeJSON.decoder().decode(JSONValue.self, from: data), case .object = doc else {
      throw error("the credential plugin \(command) did not print an ExecCredential JSON object on stdout")
    }
    guard doc["kind"]?.stringValue == "ExecCredential" else {
      throw error("the credential plugin's answer has kind \(doc["kind"]?.stringValue ?? "none"), not ExecCredential")
    }
    guard doc["apiVersion"]?.stringValue == apiVersion else {
      throw error(
        "the credential plugin answered with apiVersion \(doc["apiVersion"]?.stringValue ?? "none"), but the "
          + "kubeconfig asks for \(apiVersion)")
    }
    let status = doc["status"]
    guard let token = status?["token"]?.stringValue, !token.isEmpty else {
      if status?["clientCertificateData"]?.stringValue != nil {
        throw error(
          "the credential plugin returned a client certificate; this client takes bearer tokens from plugins only")
      }
      throw error("the credential plugin's answer has no status.token")
    }
    var expiration: Date?
    if let t = status?["expirationTimestamp"]?.stringValue {
      guard let d = KubeJSON.parseDate(t) else {
        throw error("the credential plugin's status.expirationTimestamp \"\(t)\" is not an RFC 3339 time")
      }
      expiration = d
    }
    return Credential(token: token, expiration: expiration)
  }
}

private final class OutputBox: @unchecked Sendable {
  private let lock = NSLock()
  private var out = Data()
  private var err = Data()
  func set(_ d: Data, stdout: Bool) { lock.withLock { if stdout { out = d } else { err = d } } }
  func get() -> (Data, Data) { lock.withLock { (out, err) } }
}
