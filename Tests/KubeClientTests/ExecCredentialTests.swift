import CurlHTTP
import Foundation
import KubeCore
import Testing

@testable import KubeClient

/// Kubeconfig users with an `exec` credential plugin, run for real (a shell script), read through a client whose
/// requests go to a fake transport: the token it sends, when the plugin runs again, and what its errors say.
@Suite struct ExecCredentialTests {
  /// A plugin that counts its runs in `runs`, saves KUBERNETES_EXEC_INFO in `info.json` and answers with the
  /// token `tok-N` (N = the run), an expiration `EXPIRY` (none when empty) and the apiVersion `ANSWER_VERSION`.
  func plugin(_ dir: TempDir) throws -> String {
    let path = try dir.write(
      "bin/get-token",
      """
      #!/bin/sh
      d="$(dirname "$0")"
      n=$(( $(cat "$d/runs" 2>/dev/null || echo 0) + 1 ))
      echo "$n" > "$d/runs"
      printf '%s' "$KUBERNETES_EXEC_INFO" > "$d/info.json"
      if [ -n "$FAIL" ]; then echo "token service says: $FAIL" >&2; exit 3; fi
      exp=""
      if [ -n "$EXPIRY" ]; then exp=",\\"expirationTimestamp\\":\\"$EXPIRY\\""; fi
      printf '{"apiVersion":"%s","kind":"ExecCredential","status":{"token":"tok-%s"%s}}' "$ANSWER_VERSION" "$n" "$exp"
      """)
    chmod(path, 0o755)
    return path
  }

  func kubeconfig(_ dir: TempDir, env: [String: String], version: String = "client.authentication.k8s.io/v1")
    throws -> String
  {
    let envYAML = env.sorted { $0.key < $1.key }.map { "{name: \($0.key), value: \"\($0.value)\"}" }
      .joined(separator: ", ")
    return try dir.write(
      "kubeconfig",
      """
      clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443", certificate-authority-data: "\(Data("ca".utf8).base64EncodedString())"}}]
      users:
      - name: eks
        user:
          exec:
            apiVersion: \(version)
            command: bin/get-token
            args: [--cluster, prod]
            env: [\(envYAML)]
            provideClusterInfo: true
            installHint: install get-token from your cloud's CLI
      contexts: [{name: a, context: {cluster: c, user: eks}}]
      current-context: a
      """)
  }

  func client(_ path: String, _ t: FakeTransport) throws -> KubeClient {
    let cfg = try Kubeconfig.load(paths: [path]).clientConfig()
    return KubeClient(config: cfg, transport: t, retry: RetryPolicy(maxAttempts: 1), sleep: SleepRecorder().sleep)
  }

  func runs(_ dir: TempDir) -> Int {
    Int(
      (try? String(contentsOfFile: dir.url.path + "/bin/runs", encoding: .utf8))?.trimmingCharacters(
        in: .whitespacesAndNewlines) ?? "") ?? 0
  }

  let ok = #"{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"default"}}"#

  @Test func tokenIsCachedUntilItExpiresAndRefreshedAfter401() async throws {
    let dir = try TempDir()
    _ = try plugin(dir)
    let future = ISO8601DateFormatter().string(from: Date().addingTimeInterval(3600))
    let path = try kubeconfig(
      dir, env: ["EXPIRY": future, "ANSWER_VERSION": "client.authentication.k8s.io/v1"])
    let cfg = try Kubeconfig.load(paths: [path]).clientConfig()
    guard case .exec(let p, let cluster) = cfg.auth else {
      Issue.record("want exec auth, got \(cfg.auth)")
      return
    }
    #expect(
      p.args == ["--cluster", "prod"] && p.command == "bin/get-token" && cluster?.server == "https://127.0.0.1:6443")
    #expect(cfg.userDescription.contains("exec plugin bin/get-token"))
    let t = FakeTransport([
      .respond(200, body: ok), .respond(200, body: ok),
      .respond(401, body: statusJSON(401, "Unauthorized", "expired")), .respond(200, body: ok),
    ])
    let c = try client(path, t)
    _ = try await c.get(Namespace.self, name: "default")
    _ = try await c.get(Namespace.self, name: "default")
    _ = try await c.get(Namespace.self, name: "default")  // 401, then the plugin again and a retry
    #expect(
      t.requests.map { $0.header("Authorization") } == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-1", "Bearer tok-2"])
    #expect(runs(dir) == 2)
    // The plugin was told it has no terminal, and which cluster it is for (provideClusterInfo).
    let info =
      try JSONSerialization.jsonObject(with: Data(contentsOf: dir.url.appendingPathComponent("bin/info.json")))
      as? [String: Any]
    #expect(info?["kind"] as? String == "ExecCredential")
    #expect(info?["apiVersion"] as? String == "client.authentication.k8s.io/v1")
    let spec = info?["spec"] as? [String: Any]
    #expect(spec?["interactive"] as? Bool == false)
    #expect((spec?["cluster"] as? [String: Any])?["server"] as? String == "https://127.0.0.1:6443")
    #expect(
      (spec?["cluster"] as? [String: Any])?["certificate-authority-data"] as? String
        == Data("ca".utf8).base64EncodedString())
  }

  @Test func anExpiredOrAlmostExpiredTokenRunsThePluginAgain() async throws {
    let dir = try TempDir()
    _ = try plugin(dir)
    // Valid for 5 more seconds: inside the 10 s margin, so every request asks again (v1beta1 plugins work too).
    let soon = ISO8601DateFormatter().string(from: Date().addingTimeInterval(5))
    let path = try kubeconfig(
      dir, env: ["EXPIRY": soon, "ANSWER_VERSION": "client.authentication.k8s.io/v1beta1"],
      version: "client.authentication.k8s.io/v1beta1")
    let t = FakeTransport([.respond(200, body: ok), .respond(200, body: ok)])
    let c = try client(path, t)
    _ = try await c.get(Namespace.self, name: "default")
    _ = try await c.get(Namespace.self, name: "default")
    #expect(t.requests.map { $0.header("Authorization") } == ["Bearer tok-1", "Bearer tok-2"])
  }

  @Test func pluginFailuresNameTheKubeconfigFieldAndNeverTheToken() async throws {
    let dir = try TempDir()
    _ = try plugin(dir)
    func failure(_ env: [String: String], version: String = "client.authentication.k8s.io/v1") async throws -> String {
      let path = try kubeconfig(dir, env: env, version: version)
      do {
        _ = try await client(path, FakeTransport([.respond(200, body: ok)])).get(Namespace.self, name: "default")
        Issue.record("expected the plugin to fail with \(env)")
        return ""
      } catch let e as KubeError {
        #expect(e.description.contains("users[name=eks].user.exec"), "\(e)")
        return e.description
      }
    }
    let exit = try await failure(["FAIL": "no session", "ANSWER_VERSION": "client.authentication.k8s.io/v1"])
    #expect(exit.contains("exited with status 3") && exit.contains("token service says: no session"))
    let wrongVersion = try await failure(["ANSWER_VERSION": "client.authentication.k8s.io/v1beta1"])
    #expect(wrongVersion.contains("answered with apiVersion client.authentication.k8s.io/v1beta1"))
    #expect(!wrongVersion.contains("tok-"))
    // A missing plugin says how to install it.
    try FileManager.default.removeItem(atPath: dir.url.path + "/bin/get-token")
    let missing = try await failure(["ANSWER_VERSION": "client.authentication.k8s.io/v1"])
    #expect(
      missing.contains("is not an executable file") && missing.contains("install get-token from your cloud's CLI"))
  }

  @Test func answersAndSettingsThisClientCannotUseAreRefused() throws {
    let p = ExecCredentialPlugin(
      apiVersion: "client.authentication.k8s.io/v1", command: "x", file: "f", field: "u.exec")
    let cert =
      #"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"clientCertificateData":"a","clientKeyData":"b"}}"#
    #expect { try p.parse(Data(cert.utf8)) } throws: { "\($0)".contains("client certificate") }
    #expect { try p.parse(Data("not json".utf8)) } throws: { "\($0)".contains("did not print an ExecCredential") }
    let badTime =
      #"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t","expirationTimestamp":"soon"}}"#
    #expect { try p.parse(Data(badTime.utf8)) } throws: {
      "\($0)".contains("expirationTimestamp") && !"\($0)".contains("\"t\"")
    }
    let good = try p.parse(
      Data(
        #"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"abc","expirationTimestamp":"2030-01-02T03:04:05Z"}}"#
          .utf8))
    #expect(good.token == "abc" && good.expiration == ISO8601DateFormatter().date(from: "2030-01-02T03:04:05Z"))
    // v1alpha1 and interactive-only plugins are refused when the kubeconfig is read, naming the field.
    for (exec, field) in [
      ("{apiVersion: client.authentication.k8s.io/v1alpha1, command: x}", "apiVersion"),
      ("{apiVersion: client.authentication.k8s.io/v1, command: x, interactiveMode: Always}", "interactiveMode"),
      ("{apiVersion: client.authentication.k8s.io/v1}", "command"),
    ] {
      do {
        _ = try Kubeconfig.parse("users: [{name: u, user: {exec: \(exec)}}]", file: "kc")
        Issue.record("expected \(exec) to be refused")
      } catch let e as ConfigError {
        #expect(e.field == "users[name=u].user.exec.\(field)", "\(e)")
      }
    }
  }
}
