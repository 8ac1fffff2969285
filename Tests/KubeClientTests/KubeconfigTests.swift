import CurlHTTP
import Foundation
import Testing

@testable import KubeClient

/// A temporary directory removed at the end of each test.
final class TempDir {
  let url: URL
  init() throws {
    url = FileManager.default.temporaryDirectory.appendingPathComponent("kubeconfig-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  }
  deinit { try? FileManager.default.removeItem(at: url) }

  @discardableResult
  func write(_ name: String, _ text: String) throws -> String {
    let p = url.appendingPathComponent(name)
    try FileManager.default.createDirectory(at: p.deletingLastPathComponent(), withIntermediateDirectories: true)
    try text.write(to: p, atomically: true, encoding: .utf8)
    return p.path
  }
}

@Suite struct KubeconfigTests {
  let caPEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

  @Test func tokenContextWithRelativeCAFile() throws {
    let dir = try TempDir()
    try dir.write("pki/ca.crt", caPEM)
    let path = try dir.write(
      "config",
      """
      apiVersion: v1
      kind: Config
      clusters:
      - name: local
        cluster:
          server: https://127.0.0.1:6443/
          certificate-authority: pki/ca.crt
      users:
      - name: admin
        user:
          token: abc
      contexts:
      - name: ctx
        context: {cluster: local, user: admin, namespace: team}
      current-context: ctx
      """)
    let cfg = try Kubeconfig.load(paths: [path]).clientConfig()
    #expect(cfg.server == "https://127.0.0.1:6443")
    #expect(cfg.tls.caPEM == Data(caPEM.utf8))
    #expect(cfg.namespace == "team")
    guard case .token(let t) = cfg.auth else {
      Issue.record("expected token auth")
      return
    }
    #expect(t == "abc")
    #expect(cfg.caDescription.contains(dir.url.path + "/pki/ca.crt"))
    #expect(cfg.userDescription.contains("user \"admin\""))
    #expect(!cfg.userDescription.contains("abc"))
  }

  @Test func inlineDataAndClientCertificate() throws {
    let dir = try TempDir()
    let b64 = Data(caPEM.utf8).base64EncodedString()
    let path = try dir.write(
      "config",
      """
      clusters:
      - name: c
        cluster:
          server: https://10.0.0.1
          certificate-authority-data: \(b64)
          insecure-skip-tls-verify: true
      users:
      - name: u
        user:
          client-certificate-data: \(b64)
          client-key-data: \(b64)
      contexts:
      - name: x
        context: {cluster: c, user: u}
      current-context: x
      """)
    let cfg = try Kubeconfig.load(paths: [path]).clientConfig()
    #expect(cfg.tls.insecureSkipVerify)
    #expect(cfg.tls.clientCertPEM == Data(caPEM.utf8))
    #expect(cfg.tls.clientKeyPEM == Data(caPEM.utf8))
    guard case .clientCertificate = cfg.auth else {
      Issue.record("expected client certificate auth, got \(cfg.auth)")
      return
    }
    #expect(cfg.namespace == "default")
  }

  @Test func mergesLikeKubectl() throws {
    let dir = try TempDir()
    let first = try dir.write(
      "a",
      """
      clusters:
      - name: c
        cluster: {server: https://first}
      users:
      - name: u
        user: {token: first-token}
      contexts:
      - name: one
        context: {cluster: c, user: u}
      """)
    let second = try dir.write(
      "b",
      """
      clusters:
      - name: c
        cluster: {server: https://second}
      - name: d
        cluster: {server: https://d}
      users:
      - name: u
        user: {token: second-token}
      contexts:
      - name: two
        context: {cluster: d, user: u}
      current-context: two
      """)
    let third = try dir.write("c", "current-context: one\n")
    let merged = try Kubeconfig.load(paths: Kubeconfig.paths(fromEnvironmentValue: "\(first)::\(second):\(third)"))
    #expect(merged.currentContext == "two")
    #expect(merged.currentContextFile == second)
    let two = try merged.clientConfig()
    #expect(two.server == "https://d")
    guard case .token(let t) = two.auth else {
      Issue.record("expected token")
      return
    }
    #expect(t == "first-token")
    #expect(try merged.clientConfig(context: "one").server == "https://first")
  }

  @Test func missingFileInAListIsSkippedButAloneIsAnError() throws {
    let dir = try TempDir()
    let good = try dir.write("good", "current-context: x\n")
    let merged = try Kubeconfig.load(paths: [dir.url.path + "/nope", good])
    #expect(merged.currentContext == "x")
    do {
      _ = try Kubeconfig.load(paths: [dir.url.path + "/nope"])
      Issue.record("expected an error")
    } catch let e as ConfigError {
      #expect(e.file == dir.url.path + "/nope")
    }
  }

  @Test func malformedYAMLNamesFileAndLine() throws {
    let dir = try TempDir()
    let path = try dir.write("bad", "clusters:\n- name: c\n  cluster: {server: https://x\nusers: []\n")
    do {
      _ = try Kubeconfig.load(paths: [path])
      Issue.record("expected an error")
    } catch let e as ConfigError {
      #expect(e.file == path)
      #expect(e.field.hasPrefix("line "))
      #expect(e.description.contains("malformed YAML"))
    }
  }

  @Test func missingContextNamesFileAndField() throws {
    let dir = try TempDir()
    let path = try dir.write("cfg", "contexts:\n- name: a\n  context: {cluster: c, user: u}\ncurrent-context: gone\n")
    do {
      _ = try Kubeconfig.load(paths: [path]).clientConfig()
      Issue.record("expected an error")
    } catch let e as ConfigError {
      #expect(e.file == path)
      #expect(e.field == "current-context")
      #expect(e.message.contains("\"gone\" is not defined"))
      #expect(e.message.contains("defined: a"))
    }
    do {
      _ = try Kubeconfig.load(paths: [path]).clientConfig(context: "a")
      Issue.record("expected an error")
    } catch let e as ConfigError {
      #expect(e.field == "contexts[name=a].context.cluster")
      #expect(e.message.contains("cluster \"c\" is not defined"))
    }
  }

  @Test func missingUserAndUnreadableCertificate() throws {
    let dir = try TempDir()
    let path = try dir.write(
      "cfg",
      """
      clusters:
      - {name: c, cluster: {server: "https://x"}}
      users:
      - name: u
        user: {client-certificate: certs/missing.crt, client-key: certs/missing.key}
      contexts:
      - {name: a, context: {cluster: c, user: nobody}}
      - {name: b, context: {cluster: c, user: u}}
      """)
    let kc = try Kubeconfig.load(paths: [path])
    do {
      _ = try kc.clientConfig(context: "a")
      Issue.record("expected an error")
    } catch let e as ConfigError {
      #expect(e.field == "contexts[name=a].context.user")
      #expect(e.message.contains("\"nobody\""))
    }
    do {
      _ = try kc.clientConfig(context: "b")
      Issue.record("expected an error")
    } catch let e as ConfigError {
      #expect(e.file == path)
      #expect(e.field == "users[name=u].user.client-certificate")
      #expect(e.message.contains(dir.url.path + "/certs/missing.crt"))
    }
  }

  @Test func badBase64AndUnsupportedAuth() throws {
    do {
      _ = try Kubeconfig.parse(
        "clusters:\n- name: c\n  cluster: {server: https://x, certificate-authority-data: '!!'}\n", file: "f")
      Issue.record("expected an error")
    } catch let e as ConfigError {
      #expect(e.field == "clusters[name=c].cluster.certificate-authority-data")
    }
    let kc = try Kubeconfig.parse(
      """
      clusters: [{name: c, cluster: {server: "https://x"}}]
      users: [{name: u, user: {auth-provider: {name: gcp}}}]
      contexts: [{name: a, context: {cluster: c, user: u}}]
      current-context: a
      """, file: "f")
    #expect(throws: ConfigError.self) { try kc.clientConfig() }
  }

  @Test func inClusterConfig() throws {
    let dir = try TempDir()
    let token = try dir.write("sa/token", "sa-token\n")
    let ca = try dir.write("sa/ca.crt", caPEM)
    let ns = try dir.write("sa/namespace", "botrt-system\n")
    let paths = ClientConfig.InClusterPaths(token: token, caCert: ca, namespace: ns)
    let cfg = try ClientConfig.inCluster(
      paths: paths, environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"])
    #expect(cfg.server == "https://10.96.0.1:443")
    #expect(cfg.namespace == "botrt-system")
    #expect(cfg.tls.caFile == ca)
    guard case .tokenFile(let f) = cfg.auth else {
      Issue.record("expected a token file")
      return
    }
    #expect(f == token)
    #expect(throws: ConfigError.self) { try ClientConfig.inCluster(paths: paths, environment: [:]) }
  }

  @Test func tokenFileIsCachedForAMinute() throws {
    let dir = try TempDir()
    let token = try dir.write("token", "one")
    let source = TokenSource(auth: .tokenFile(token))
    let t0 = ContinuousClock.now
    #expect(try source.token(now: t0) == "one")
    try dir.write("token", "two")
    #expect(try source.token(now: t0 + .seconds(30)) == "one")
    #expect(try source.token(now: t0 + .seconds(61)) == "two")
  }
}
