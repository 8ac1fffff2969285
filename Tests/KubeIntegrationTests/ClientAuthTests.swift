import CurlHTTP
import Foundation
import KubeClient
import KubeCore
import Testing

@Suite struct ClientAuthTests {
  @Test func tokenAndClientCertificateBothWork() async throws {
    let token = try ClientEnv.client(context: "botrt-token")
    guard case .token = token.config.auth else {
      Issue.record("context botrt-token should use a bearer token, got \(token.config.auth)")
      return
    }
    let cert = try ClientEnv.client(context: "botrt-cert")
    guard case .clientCertificate = cert.config.auth else {
      Issue.record("context botrt-cert should use a client certificate, got \(cert.config.auth)")
      return
    }
    for client in [token, cert] {
      let ns = try await client.get(Namespace.self, name: "default")
      #expect(ns.name == "default")
      #expect(ns.status?.phase == "Active")
      let groups = try await client.serverGroups()
      #expect(groups.first?.name == "")
      #expect(groups.contains { $0.name == "coordination.k8s.io" })
    }
  }

  /// A kubeconfig user with an exec credential plugin (as EKS, GKE and AKS use), against the real apiserver: the
  /// plugin's token is accepted, and a plugin handing out a bad token gets the apiserver's 401 without the token.
  @Test func execCredentialPluginAuthenticates() async throws {
    let real = try ClientEnv.config(context: "botrt-token")
    guard case .token(let good) = real.auth,
      let ca = real.tls.caPEM ?? real.tls.caFile.flatMap({ FileManager.default.contents(atPath: $0) })
    else {
      Issue.record("context botrt-token should use a bearer token and a CA")
      return
    }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kc-exec-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let plugin = dir.appendingPathComponent("token-plugin").path
    try """
    #!/bin/sh
    printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' "$TOKEN"
    """.write(toFile: plugin, atomically: true, encoding: .utf8)
    chmod(plugin, 0o755)
    func kubeconfig(_ token: String) throws -> String {
      let path = dir.appendingPathComponent("kubeconfig-\(token.count)").path
      try """
      clusters: [{name: local, cluster: {server: "\(real.server)", certificate-authority-data: "\(ca.base64EncodedString())"}}]
      users: [{name: plugin, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: ./token-plugin,
               env: [{name: TOKEN, value: "\(token)"}]}}}]
      contexts: [{name: x, context: {cluster: local, user: plugin}}]
      current-context: x
      """.write(toFile: path, atomically: true, encoding: .utf8)
      return path
    }
    let client = KubeClient(config: try Kubeconfig.load(paths: [try kubeconfig(good)]).clientConfig())
    let ns = try await client.get(Namespace.self, name: "default")
    #expect(ns.name == "default")
    let bad = KubeClient(config: try Kubeconfig.load(paths: [try kubeconfig("not-a-valid-token")]).clientConfig())
    do {
      _ = try await bad.get(Namespace.self, name: "default")
      Issue.record("expected Unauthorized")
    } catch let e as KubeError {
      #expect(e.isUnauthorized)
      #expect(e.description.contains("exec plugin ./token-plugin"), "\(e)")
      #expect(!e.description.contains("not-a-valid-token"))
    }
  }

  @Test func rbacDenialIsForbidden() async throws {
    let admin = try ClientEnv.config()
    let limitedToken = try ClientEnv.env("BOTRT_LIMITED_TOKEN")
    var cfg = admin
    cfg.auth = .token(limitedToken)
    cfg.userDescription = "user botrt-limited (bearer token from BOTRT_LIMITED_TOKEN)"
    cfg.tls.clientCertPEM = nil
    cfg.tls.clientKeyPEM = nil
    let limited = KubeClient(config: cfg)
    do {
      _ = try await limited.list(ConfigMap.self, namespace: "default")
      Issue.record("expected Forbidden")
    } catch let e as KubeError {
      #expect(e.isForbidden)
      #expect(e.code == 403)
      #expect(!e.isRetryable)
      #expect(e.description.contains("botrt-limited"))
      #expect(!e.description.contains(limitedToken))
    }
  }

  @Test func invalidTokenIsUnauthorizedWithoutLeakingIt() async throws {
    var cfg = try ClientEnv.config(context: "botrt-token")
    cfg.auth = .token("definitely-not-a-valid-token")
    cfg.userDescription = "user \"admin-token\" (bearer token, context \"botrt-token\")"
    do {
      _ = try await KubeClient(config: cfg).get(Namespace.self, name: "default")
      Issue.record("expected Unauthorized")
    } catch let e as KubeError {
      #expect(e.isUnauthorized)
      #expect(e.description.contains("admin-token"))
      #expect(!e.description.contains("definitely-not-a-valid-token"))
    }
  }

  @Test func rotatedTokenFileIsReReadAfter401() async throws {
    let real = try ClientEnv.config(context: "botrt-token")
    guard case .token(let good) = real.auth else {
      Issue.record("context botrt-token should use a bearer token")
      return
    }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kc-token-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let tokenFile = dir.appendingPathComponent("token").path
    try "stale-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
    var cfg = real
    cfg.auth = .tokenFile(tokenFile)
    cfg.userDescription = "the test's token file \(tokenFile)"
    let client = KubeClient(config: cfg)
    do {
      _ = try await client.get(Namespace.self, name: "default")
      Issue.record("a stale token must be rejected")
    } catch let e as KubeError {
      #expect(e.isUnauthorized)
      #expect(e.description.contains(tokenFile))
    }
    // The token "rotates"; the client still caches the old one, gets a 401, re-reads the file once and succeeds.
    try "\(good)\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
    let ns = try await client.get(Namespace.self, name: "default")
    #expect(ns.name == "default")
  }

  @Test func wrongCAIsAClearTLSError() async throws {
    let real = try ClientEnv.config()
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kc-wrongca-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    try wrongCAPEM.write(to: dir.appendingPathComponent("wrong-ca.crt"), atomically: true, encoding: .utf8)
    let kubeconfig = dir.appendingPathComponent("config").path
    try """
    clusters:
    - name: c
      cluster: {server: "\(real.server)", certificate-authority: wrong-ca.crt}
    users:
    - name: u
      user: {token: whatever}
    contexts:
    - name: x
      context: {cluster: c, user: u}
    current-context: x
    """.write(toFile: kubeconfig, atomically: true, encoding: .utf8)
    let client = KubeClient(config: try Kubeconfig.load(paths: [kubeconfig]).clientConfig())
    do {
      _ = try await client.get(Namespace.self, name: "default")
      Issue.record("expected a TLS error")
    } catch let e as KubeError {
      guard case .transport(let te, _) = e else {
        Issue.record("expected a transport error, got \(e)")
        return
      }
      #expect(te.kind == .tls)
      #expect(e.description.contains("could not be verified against the CA from \(dir.path)/wrong-ca.crt"))
      #expect(e.description.contains(kubeconfig))
      #expect(!e.isRetryable)
    }
  }

  @Test func unreachableServerNamesTheURL() async throws {
    let cfg = ClientConfig(server: "https://127.0.0.1:1", auth: .token("x"))
    let client = KubeClient(
      config: cfg, retry: RetryPolicy(maxAttempts: 2, backoff: ExponentialBackoff(base: .milliseconds(10))))
    do {
      _ = try await client.get(Namespace.self, name: "default")
      Issue.record("expected a connection error")
    } catch let e as KubeError {
      guard case .transport(let te, _) = e else {
        Issue.record("expected a transport error, got \(e)")
        return
      }
      #expect(te.kind == .connection)
      #expect(e.isRetryable)
      #expect(e.description.contains("https://127.0.0.1:1/api/v1/namespaces/default"))
    }
  }

  @Test func missingContextInTheRealKubeconfig() throws {
    let paths = try ClientEnv.kubeconfigPaths()
    do {
      _ = try Kubeconfig.load(paths: paths).clientConfig(context: "no-such-context")
      Issue.record("expected an error")
    } catch let e as ConfigError {
      #expect(e.message.contains("\"no-such-context\" is not defined"))
      #expect(e.message.contains("botrt-cert"))
    }
  }
}
