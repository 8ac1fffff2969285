import Foundation
import KubeClient
import KubeCore
import Testing

/// `KubeClient.exec` (pods/exec over a WebSocket, v4.channel.k8s.io) against the node cluster: a real apiserver, a
/// real kubelet and containerd running the app image. Needs the node (hack/test.sh runs this suite after node-up, with
/// the cluster's env); without one every test fails, none skips.
@Suite struct PodExecNodeTests {
  @Test func outputStreamsAndANonZeroExitCode() async throws {
    try await withExecPod("exec-codes") { client, ns in
      let r = try await client.exec(
        namespace: ns, pod: "shell", container: "app", command: ["sh", "-c", "printf out; printf err >&2; exit 3"],
        timeout: .seconds(30))
      #expect(r.stdoutText == "out")
      #expect(r.stderrText == "err")
      #expect(r.exitCode == 3)
      #expect(!r.truncated)
      // Exit 0, the container chosen by the apiserver (the Pod has one), an argument that needs percent-encoding.
      let ok = try await client.exec(
        namespace: ns, pod: "shell", container: nil, command: ["printf", "%s", "a b&c=d/é?#"], timeout: .seconds(30))
      #expect(ok.stdoutText == "a b&c=d/é?#")
      #expect(ok.exitCode == 0)
    }
  }

  @Test func oneMebibyteOfBinaryOutputArrivesIntact() async throws {
    try await withExecPod("exec-big") { client, ns in
      let r = try await client.exec(
        namespace: ns, pod: "shell", container: "app",
        command: [
          "sh", "-c", "head -c 1048576 /dev/urandom > /tmp/blob && sha256sum /tmp/blob >&2 && cat /tmp/blob",
        ], timeout: .seconds(60), outputLimit: 2 << 20)
      #expect(r.exitCode == 0)
      #expect(!r.truncated)
      #expect(r.stdout.count == 1 << 20)
      let podSum = r.stderrText.split(separator: " ").first.map(String.init)
      let localSum = try sha256(r.stdout)
      #expect(podSum == localSum, "stderr: \(r.stderrText)")
    }
  }

  @Test func anOutputLongerThanTheLimitKeepsItsTail() async throws {
    try await withExecPod("exec-tail") { client, ns in
      let r = try await client.exec(
        namespace: ns, pod: "shell", container: "app", command: ["sh", "-c", "seq 1 100000; echo done >&2"],
        timeout: .seconds(60), outputLimit: 1000)
      let full = Array((1...100_000).map { "\($0)\n" }.joined().utf8)
      #expect(r.exitCode == 0)
      #expect(r.truncated)
      #expect(r.stdout == Array(full.suffix(1000)))
      #expect(r.stderrText == "done\n")
    }
  }

  @Test func aCommandThatOutlivesTheTimeoutFailsSoon() async throws {
    try await withExecPod("exec-timeout") { client, ns in
      let t0 = ContinuousClock.now
      do {
        let r = try await client.exec(
          namespace: ns, pod: "shell", container: "app", command: ["sleep", "100"], timeout: .seconds(2))
        Issue.record("sleep 100 returned within a 2 s timeout: \(r)")
      } catch let e as PodExecError {
        #expect(e.kind == .timeout, "\(e)")
        #expect("\(e)".contains("timed out"), "\(e)")
      }
      let took = ContinuousClock.now - t0
      #expect(took >= .seconds(2) && took < .seconds(8), "took \(took)")
    }
  }

  @Test func aMissingPodOrContainerIsNotFound() async throws {
    try await withExecPod("exec-missing") { client, ns in
      do {
        _ = try await client.exec(
          namespace: ns, pod: "no-such-pod", container: "app", command: ["true"], timeout: .seconds(30))
        Issue.record("exec in a missing Pod succeeded")
      } catch let e as PodExecError {
        #expect(e.kind == .notFound, "\(e)")
        #expect(e.httpStatus == 404, "\(e)")
      }
      do {
        _ = try await client.exec(
          namespace: ns, pod: "shell", container: "no-such-container", command: ["true"], timeout: .seconds(30))
        Issue.record("exec in a missing container succeeded")
      } catch let e as PodExecError {
        #expect(e.kind == .notFound, "\(e)")
        #expect("\(e)".contains("no-such-container"), "\(e)")
      }
      // A command the container does not have: the error channel's Status is a failure, not an exit code.
      do {
        let r = try await client.exec(
          namespace: ns, pod: "shell", container: "app", command: ["/no/such/binary"], timeout: .seconds(30))
        Issue.record("a missing executable gave a result: \(r)")
      } catch let e as PodExecError {
        #expect(e.kind == .failed, "\(e)")
        #expect("\(e)".contains("/no/such/binary"), "\(e)")
      }
    }
  }

  /// The WebSocket's connection uses the TLS settings of every other request: a client certificate authenticates, and
  /// a CA that did not sign the apiserver's certificate is a TLS error.
  @Test func theClientCertificateAndTheCAApplyToTheWebSocket() async throws {
    try await withExecPod("exec-tls") { admin, ns in
      let kc = try #require(ProcessInfo.processInfo.environment["KUBECONFIG"])
      let certConfig = try Kubeconfig.load(paths: Kubeconfig.paths(fromEnvironmentValue: kc)).clientConfig(
        context: "botrt-cert")
      #expect(certConfig.tls.clientCertFile != nil || certConfig.tls.clientCertPEM != nil)
      let r = try await KubeClient(config: certConfig).exec(
        namespace: ns, pod: "shell", container: "app", command: ["printf", "cert"], timeout: .seconds(30))
      #expect(r.stdoutText == "cert" && r.exitCode == 0)

      let clusterDir = try #require(ProcessInfo.processInfo.environment["BOTRT_CLUSTER_DIR"])
      var wrongCA = admin.config
      wrongCA.tls.caPEM = nil
      wrongCA.tls.caFile = clusterDir + "/pki/front-proxy-ca.crt"  // a CA of the cluster that signed no server cert
      do {
        let r = try await KubeClient(config: wrongCA).exec(
          namespace: ns, pod: "shell", container: "app", command: ["true"], timeout: .seconds(30))
        Issue.record("exec trusted a server its CA did not sign: \(r)")
      } catch let e as KubeError {
        guard case .transport(let te, _) = e else {
          Issue.record("expected a transport error, got \(e)")
          return
        }
        #expect(te.kind == .tls, "\(e)")
      }
    }
  }

  @Test func aServiceAccountWithoutPodsExecIsForbidden() async throws {
    try await withExecPod("exec-rbac") { admin, ns in
      // A ServiceAccount that may read Pods (so the refusal is about pods/exec, not about the Pod).
      for doc in try YAML.parseDocuments(
        """
        apiVersion: v1
        kind: ServiceAccount
        metadata: {name: no-exec, namespace: \(ns)}
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: Role
        metadata: {name: pod-reader, namespace: \(ns)}
        rules: [{apiGroups: [""], resources: [pods, pods/log], verbs: [get, list, watch]}]
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: RoleBinding
        metadata: {name: no-exec-reads-pods, namespace: \(ns)}
        roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
        subjects: [{kind: ServiceAccount, name: no-exec, namespace: \(ns)}]
        """, file: "rbac.yaml")
      {
        let u = Unstructured(doc)
        let resource: ResourceDescriptor =
          switch u.kind {
          case "ServiceAccount": .serviceAccounts
          case "Role":
            ResourceDescriptor(
              group: "rbac.authorization.k8s.io", version: "v1", plural: "roles", kind: "Role", namespaced: true)
          default:
            ResourceDescriptor(
              group: "rbac.authorization.k8s.io", version: "v1", plural: "rolebindings", kind: "RoleBinding",
              namespaced: true)
          }
        _ = try await admin.create(resource, namespace: ns, u)
      }
      let tokenRequest = try await admin.send(
        KubeRequest(
          method: "POST", path: "/api/v1/namespaces/\(ns)/serviceaccounts/no-exec/token",
          contentType: "application/json",
          body: Data(#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}"#.utf8)),
        decoding: JSONValue.self)
      guard case .string(let token)? = tokenRequest["status"]?["token"] else {
        Issue.record("no token in the TokenRequest answer")
        return
      }
      var config = admin.config
      config.auth = .token(token)
      config.tls.clientCertFile = nil
      config.tls.clientKeyFile = nil
      config.tls.clientCertPEM = nil
      config.tls.clientKeyPEM = nil
      let sa = KubeClient(config: config)
      // The Pod is readable with this token: the refusal below is about pods/exec only.
      _ = try await sa.get(Pod.self, namespace: ns, name: "shell")
      do {
        _ = try await sa.exec(namespace: ns, pod: "shell", container: "app", command: ["true"], timeout: .seconds(30))
        Issue.record("exec without pods/exec succeeded")
      } catch let e as PodExecError {
        #expect(e.kind == .forbidden, "\(e)")
        #expect(e.httpStatus == 403, "\(e)")
        let text = "\(e)"
        #expect(text.contains("namespace \(ns)"), "\(text)")
        #expect(text.contains("RoleBinding"), "\(text)")
        #expect(!text.contains(token), "the token leaked into the error")
      }
      // Granted what the error asks for (get and create on pods/exec), the same ServiceAccount runs the command.
      for doc in try YAML.parseDocuments(
        """
        apiVersion: rbac.authorization.k8s.io/v1
        kind: Role
        metadata: {name: pod-exec, namespace: \(ns)}
        rules: [{apiGroups: [""], resources: [pods/exec], verbs: [get, create]}]
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: RoleBinding
        metadata: {name: no-exec-execs, namespace: \(ns)}
        roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-exec}
        subjects: [{kind: ServiceAccount, name: no-exec, namespace: \(ns)}]
        """, file: "rbac-exec.yaml")
      {
        let u = Unstructured(doc)
        let plural = u.kind == "Role" ? "roles" : "rolebindings"
        _ = try await admin.create(
          ResourceDescriptor(
            group: "rbac.authorization.k8s.io", version: "v1", plural: plural, kind: u.kind, namespaced: true),
          namespace: ns, u)
      }
      // RBAC changes reach the authorizer's cache within a moment.
      let deadline = ContinuousClock.now + .seconds(20)
      while true {
        do {
          let r = try await sa.exec(
            namespace: ns, pod: "shell", container: "app", command: ["printf", "granted"], timeout: .seconds(30))
          #expect(r.stdoutText == "granted" && r.exitCode == 0)
          break
        } catch let e as PodExecError where e.kind == .forbidden && ContinuousClock.now < deadline {
          try await Task.sleep(for: .milliseconds(300))
        }
      }
    }
  }
}

// MARK: - Fixture

struct NodeTestEnvironmentError: Error, CustomStringConvertible {
  var description: String
}

/// The node cluster's client: fails (never skips) when KUBECONFIG is unset or no node is Ready.
func nodeClient() async throws -> KubeClient {
  guard let kc = ProcessInfo.processInfo.environment["KUBECONFIG"], !kc.isEmpty else {
    throw NodeTestEnvironmentError(
      description: "KUBECONFIG is not set: PodExecNodeTests need the node cluster (hack/test.sh runs them after"
        + " node-up; by hand: source <(hack/cluster.sh env))")
  }
  let client = KubeClient(config: try Kubeconfig.load(paths: Kubeconfig.paths(fromEnvironmentValue: kc)).clientConfig())
  let nodes = try await client.list(.nodes, namespace: nil, as: JSONValue.self)
  let ready = nodes.items.contains { node in
    guard case .array(let conditions)? = node["status"]?["conditions"] else { return false }
    return conditions.contains { $0["type"] == "Ready" && $0["status"] == "True" }
  }
  guard ready else {
    throw NodeTestEnvironmentError(
      description: "no Ready node in the cluster of \(kc): PodExecNodeTests need a kubelet (hack/cluster.sh node-up)")
  }
  return client
}

/// A fresh namespace with a running Pod `shell` (container `app`, the app image, restricted like the flows' Pods, an
/// emptyDir on /tmp), deleted afterwards whatever happens.
func withExecPod(_ prefix: String, _ body: (KubeClient, String) async throws -> Void) async throws {
  let client = try await nodeClient()
  let ns = "\(prefix)-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
  _ = try await client.create(Namespace(metadata: ObjectMeta(name: ns, labels: ["botrt.io/test": "podexec"])))
  do {
    let pod = try YAML.parseDocuments(
      """
      apiVersion: v1
      kind: Pod
      metadata: {name: shell, namespace: \(ns)}
      spec:
        restartPolicy: Never
        terminationGracePeriodSeconds: 1
        automountServiceAccountToken: false
        securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
        containers:
        - name: app
          image: botrt.local/postgres:15
          imagePullPolicy: Never
          command: [sh, -c, 'exec sleep 100000']
          securityContext: {runAsUser: 1001, runAsGroup: 1001, allowPrivilegeEscalation: false,
                            readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
          volumeMounts: [{name: tmp, mountPath: /tmp}]
        volumes: [{name: tmp, emptyDir: {}}]
      """, file: "pod.yaml")[0]
    // The ServiceAccount admission refuses Pods until the namespace's default ServiceAccount exists.
    let deadline = ContinuousClock.now + .seconds(30)
    while true {
      do {
        _ = try await client.create(.pods, namespace: ns, Unstructured(pod))
        break
      } catch let e as KubeError where e.isForbidden && ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(300))
      }
    }
    let readyBy = ContinuousClock.now + .seconds(90)
    while true {
      let p = try await client.get(.pods, namespace: ns, name: "shell", as: JSONValue.self)
      if case .array(let cs)? = p["status"]?["conditions"],
        cs.contains(where: { $0["type"] == "Ready" && $0["status"] == "True" })
      {
        break
      }
      guard ContinuousClock.now < readyBy else {
        throw NodeTestEnvironmentError(
          description: "the Pod \(ns)/shell was not Ready within 90 s: \(p["status"] ?? nil)")
      }
      try await Task.sleep(for: .milliseconds(300))
    }
    try await body(client, ns)
  } catch {
    _ = try? await client.delete(Namespace.self, name: ns, options: DeleteOptions(propagationPolicy: .background))
    throw error
  }
  _ = try await client.delete(Namespace.self, name: ns, options: DeleteOptions(propagationPolicy: .background))
}

/// The SHA-256 of `bytes` in hex, by sha256sum.
func sha256(_ bytes: [UInt8]) throws -> String {
  let file = FileManager.default.temporaryDirectory.appendingPathComponent("podexec-\(UUID().uuidString)")
  try Data(bytes).write(to: file)
  defer { try? FileManager.default.removeItem(at: file) }
  let p = Process()
  p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
  p.arguments = [file.path]
  let out = Pipe()
  p.standardOutput = out
  try p.run()
  let data = out.fileHandleForReading.readDataToEndOfFile()
  p.waitUntilExit()
  return String(decoding: data, as: UTF8.self).split(separator: " ").first.map(String.init) ?? ""
}
