import EngineContract
import Foundation
import KubeClient
import KubeCore
import Testing

struct ObjectsTestError: Error, CustomStringConvertible {
  var description: String
  init(_ d: String) { description = d }
}

/// The real botrt-objects binary: `BOTRT_OBJECTS_BIN`, else the debug build of this package; missing is a failure.
enum ObjectsBinary {
  static func path() throws -> String {
    let env = ProcessInfo.processInfo.environment["BOTRT_OBJECTS_BIN"] ?? ""
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    let b = env.isEmpty ? root.appendingPathComponent(".build/debug/botrt-objects").path : env
    guard FileManager.default.isExecutableFile(atPath: b) else {
      throw ObjectsTestError(
        "botrt-objects is not built at \(b): run `swift build`, or export BOTRT_OBJECTS_BIN (hack/test.sh does)")
    }
    return b
  }

  struct Run {
    var code: Int32
    var stdout: String
    var stderr: String
    func result() throws -> ObjectsResult {
      let lines = stdout.split(separator: "\n")
      guard lines.count == 1, let line = lines.first else {
        throw ObjectsTestError("want one result line on stdout, got: \(stdout) (stderr: \(stderr))")
      }
      return try JSONDecoder().decode(ObjectsResult.self, from: Data(line.utf8))
    }
  }

  static func run(_ argv: [String]) throws -> Run {
    let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("objrun-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: tmp) }
    let out = tmp.appendingPathComponent("out")
    let err = tmp.appendingPathComponent("err")
    _ = FileManager.default.createFile(atPath: out.path, contents: nil)
    _ = FileManager.default.createFile(atPath: err.path, contents: nil)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: try path())
    p.arguments = argv
    p.standardOutput = try FileHandle(forWritingTo: out)
    p.standardError = try FileHandle(forWritingTo: err)
    try p.run()
    p.waitUntilExit()
    return Run(
      code: p.terminationStatus, stdout: try String(contentsOf: out, encoding: .utf8),
      stderr: try String(contentsOf: err, encoding: .utf8))
  }
}

/// `botrt-objects export` and `apply`, the built binary against the local control plane.
@Suite(.serialized) struct ObjectsCLIIntegrationTests {
  static let group = "objtest.botrt.example.io"
  static let rbac = "rbac.authorization.k8s.io"
  static let widgets = ResourceDescriptor(
    group: group, version: "v1", plural: "widgets", kind: "Widget", namespaced: true)
  static let crds = ResourceDescriptor(
    group: "apiextensions.k8s.io", version: "v1", plural: "customresourcedefinitions",
    kind: "CustomResourceDefinition", namespaced: false)
  static func core(_ plural: String, _ kind: String) -> ResourceDescriptor {
    ResourceDescriptor(group: "", version: "v1", plural: plural, kind: kind, namespaced: true)
  }
  static let configMaps = core("configmaps", "ConfigMap")
  static let secrets = core("secrets", "Secret")
  static let serviceAccounts = core("serviceaccounts", "ServiceAccount")
  static let services = core("services", "Service")
  static let claims = core("persistentvolumeclaims", "PersistentVolumeClaim")
  static let namespaces = ResourceDescriptor(
    group: "", version: "v1", plural: "namespaces", kind: "Namespace", namespaced: false)
  static let roles = ResourceDescriptor(group: rbac, version: "v1", plural: "roles", kind: "Role", namespaced: true)
  static let roleBindings = ResourceDescriptor(
    group: rbac, version: "v1", plural: "rolebindings", kind: "RoleBinding", namespaced: true)
  static let deployments = ResourceDescriptor(
    group: "apps", version: "v1", plural: "deployments", kind: "Deployment", namespaced: true)

  static let secretPlain = "s3cr3t-objects-pa55"

  func client() throws -> KubeClient {
    guard let kc = ProcessInfo.processInfo.environment["KUBECONFIG"], !kc.isEmpty else {
      throw ObjectsTestError(
        "KUBECONFIG is not set: this test needs the local control plane (`hack/cluster.sh up`, then"
          + " `source <(hack/cluster.sh env)`, or hack/test.sh)")
    }
    return KubeClient(config: try Kubeconfig.load(paths: Kubeconfig.paths(fromEnvironmentValue: kc)).clientConfig())
  }

  func ensureCRD(_ c: KubeClient) async throws {
    let crd: JSONValue = [
      "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
      "metadata": ["name": .string("widgets.\(Self.group)")],
      "spec": [
        "group": .string(Self.group), "scope": "Namespaced",
        "names": ["plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"],
        "versions": [
          [
            "name": "v1", "served": true, "storage": true,
            "schema": ["openAPIV3Schema": ["type": "object", "x-kubernetes-preserve-unknown-fields": true]],
          ]
        ],
      ],
    ]
    do { _ = try await c.create(Self.crds, namespace: nil, crd) } catch let e as KubeError where e.isAlreadyExists {}
    for _ in 0..<100 {
      c.invalidateDiscovery()
      if try await c.isServed(group: Self.group, version: "v1", resource: "widgets") {
        // Served in discovery; the first writes may still 404 for a moment.
        do {
          _ = try await c.list(Self.widgets, namespace: "default", as: JSONValue.self)
          return
        } catch let e as KubeError where e.isNotFound {}
      }
      try await Task.sleep(for: .milliseconds(200))
    }
    throw ObjectsTestError("the Widget CRD was not served within 20 s")
  }

  func makeNamespace(_ c: KubeClient, _ prefix: String) async throws -> String {
    let name = "\(prefix)-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
    _ = try await c.create(
      Self.namespaces, namespace: nil,
      [
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": ["name": .string(name), "labels": ["botrt.io/test": "objects"]],
      ]
        as JSONValue)
    return name
  }

  func deleteNamespace(_ c: KubeClient, _ name: String) async {
    _ = try? await c.delete(Self.namespaces, namespace: nil, name: name)
  }

  func meta(_ name: String, labels: [String: JSONValue] = ["app": "web"]) -> JSONValue {
    ["name": .string(name), "labels": .object(labels)]
  }

  /// The source namespace's objects.
  func populate(_ c: KubeClient, _ ns: String) async throws {
    let password = Data(Self.secretPlain.utf8).base64EncodedString()
    let objects: [(ResourceDescriptor, JSONValue)] = [
      (Self.configMaps, ["metadata": meta("app-config"), "data": ["greeting": "hello"]]),
      (Self.secrets, ["metadata": meta("app-secret"), "type": "Opaque", "data": ["password": .string(password)]]),
      (Self.serviceAccounts, ["metadata": meta("app-sa")]),
      (
        Self.roles,
        [
          "metadata": meta("app-role"),
          "rules": [["apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]]],
        ]
      ),
      (
        Self.roleBindings,
        [
          "metadata": meta("app-rb"),
          "roleRef": ["apiGroup": .string(Self.rbac), "kind": "Role", "name": "app-role"],
          "subjects": [["kind": "ServiceAccount", "name": "app-sa", "namespace": .string(ns)]],
        ]
      ),
      (
        Self.services,
        [
          "metadata": meta("web"),
          "spec": ["type": "ClusterIP", "selector": ["app": "web"], "ports": [["port": 80, "targetPort": 8080]]],
        ]
      ),
      (
        Self.deployments,
        [
          "metadata": meta("web"),
          "spec": [
            "replicas": 1, "selector": ["matchLabels": ["app": "web"]],
            "template": [
              "metadata": ["labels": ["app": "web"]],
              "spec": [
                "serviceAccountName": "app-sa", "containers": [["name": "web", "image": "botrt.local/pause:1.20.2"]],
              ],
            ],
          ],
        ]
      ),
      (
        Self.claims,
        [
          "metadata": meta("data"),
          "spec": ["accessModes": ["ReadWriteOnce"], "resources": ["requests": ["storage": "1Gi"]]],
        ]
      ),
      (
        Self.configMaps,
        [
          "metadata": meta("excluded", labels: ["app": "web", ObjectsLabels.excludeFromBackup: "true"]),
          "data": ["x": "y"],
        ]
      ),
      (Self.configMaps, ["metadata": meta("other", labels: ["app": "other"]), "data": ["x": "z"]]),
      (
        Self.widgets,
        [
          "apiVersion": .string("\(Self.group)/v1"), "kind": "Widget", "metadata": meta("w1"),
          "spec": ["size": 3],
        ]
      ),
    ]
    for (r, o) in objects {
      var body = o
      if body["apiVersion"] == nil { body["apiVersion"] = .string(r.apiVersion) }
      if body["kind"] == nil { body["kind"] = .string(r.kind) }
      _ = try await c.create(r, namespace: ns, body)
    }
  }

  func tempDir(_ name: String) throws -> String {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("objects-\(name)-\(UUID().uuidString)")
    return d.path
  }

  func mode(_ path: String) throws -> Int {
    let attrs = try FileManager.default.attributesOfItem(atPath: path)
    return (attrs[.posixPermissions] as? NSNumber)?.intValue ?? -1
  }

  func readIndex(_ dir: String) throws -> ObjectsIndex {
    try JSONDecoder().decode(
      ObjectsIndex.self, from: try Data(contentsOf: URL(fileURLWithPath: dir + "/" + ObjectsLayout.indexFile)))
  }

  @Test func exportThenApplyIntoAnotherNamespace() async throws {
    let c = try client()
    _ = try ObjectsBinary.path()
    try await ensureCRD(c)
    let src = try await makeNamespace(c, "objsrc")
    let dst = try await makeNamespace(c, "objdst")
    let dir = try tempDir("all")
    let dirSel = try tempDir("sel")
    defer {
      try? FileManager.default.removeItem(atPath: dir)
      try? FileManager.default.removeItem(atPath: dirSel)
    }
    do {
      try await populate(c, src)
      try await scenario(c, src: src, dst: dst, dir: dir, dirSel: dirSel)
    } catch {
      await deleteNamespace(c, src)
      await deleteNamespace(c, dst)
      throw error
    }
    await deleteNamespace(c, src)
    await deleteNamespace(c, dst)
  }

  func scenario(_ c: KubeClient, src: String, dst: String, dir: String, dirSel: String) async throws {
    let widgetKind = ObjectsKind(kind: "Widget", group: Self.group)
    let nope = ObjectsKind(kind: "Nope", group: "example.io")
    let resultFile = dir + ".result"
    defer { try? FileManager.default.removeItem(atPath: resultFile) }

    // 1. Export the standard kinds, the custom kind and a kind nobody serves.
    let export = try ObjectsBinary.run(
      ObjectsExportArguments(
        namespace: src, directory: dir, kinds: ObjectsKind.standard + [widgetKind, nope], resultFile: resultFile
      ).argv)
    #expect(export.code == ObjectsExitCode.ok, "export: \(export.stderr)")
    let er = try export.result()
    #expect(er.command == "export")
    #expect(er.unservedKinds == ["Nope.example.io"])
    #expect(er.failures.isEmpty, "\(er.failures)")
    #expect(try String(contentsOfFile: resultFile, encoding: .utf8) == export.stdout.trimmingCharacters(in: .newlines))
    // Never the Secret's content in output or logs.
    let password = Data(Self.secretPlain.utf8).base64EncodedString()
    for text in [export.stdout, export.stderr] {
      #expect(!text.contains(password) && !text.contains(Self.secretPlain))
    }
    let index = try readIndex(dir)
    #expect(index.namespace == src)
    #expect(index.unservedKinds == ["Nope.example.io"])
    #expect(er.objects == index.objects.count)
    let names = Set(index.objects.map { "\($0.kind)/\($0.name)" })
    let want = [
      "ConfigMap/app-config", "ConfigMap/other", "Secret/app-secret", "ServiceAccount/app-sa",
      "Role.\(Self.rbac)/app-role", "RoleBinding.\(Self.rbac)/app-rb", "Service/web", "Deployment.apps/web",
      "PersistentVolumeClaim/data", "Widget.\(Self.group)/w1",
    ]
    for w in want { #expect(names.contains(w), "\(w) not exported: \(names.sorted())") }
    #expect(!names.contains("ConfigMap/excluded"), "the excluded object was exported")
    #expect(try mode(dir) == 0o700)
    #expect(try mode(dir + "/" + ObjectsLayout.indexFile) == 0o600)
    for e in index.objects {
      #expect(e.file == ObjectsLayout.file(kind: ObjectsKind(e.kind)!, name: e.name))
      let path = dir + "/" + e.file
      #expect(try mode(path) == 0o600, "\(e.file)")
      let o = try JSONValue(jsonData: try Data(contentsOf: URL(fileURLWithPath: path)))
      #expect(o[path: "metadata", "name"]?.stringValue == e.name)
      #expect(o[path: "metadata", "managedFields"] == nil, "\(e.file) has managedFields")
      #expect(o["apiVersion"]?.stringValue == e.apiVersion)
      #expect(o["kind"]?.stringValue == ObjectsKind(e.kind)?.kind)
    }
    #expect(index.objects.first { $0.kind == "Deployment.apps" }?.apiVersion == "apps/v1")
    #expect(index.objects.first { $0.kind == "Widget.\(Self.group)" }?.apiVersion == "\(Self.group)/v1")

    // 2. With a selector: the other app's object is left out, and still the excluded one.
    let sel = try ObjectsBinary.run(
      ObjectsExportArguments(
        namespace: src, directory: dirSel, kinds: [ObjectsKind(kind: "ConfigMap")], selector: "app=web"
      ).argv)
    #expect(sel.code == ObjectsExitCode.ok, "export --selector: \(sel.stderr)")
    let selNames = try readIndex(dirSel).objects.map(\.name)
    #expect(selNames == ["app-config"])
    #expect(try sel.result().objects == 1)

    // 3. Apply into the new namespace.
    let apply = try ObjectsBinary.run(ObjectsApplyArguments(directory: dir, namespace: dst).argv)
    #expect(apply.code == ObjectsExitCode.ok, "apply: \(apply.stdout) \(apply.stderr)")
    let ar = try apply.result()
    #expect(ar.failures.isEmpty, "\(ar.failures)")
    #expect(ar.command == "apply")
    for text in [apply.stdout, apply.stderr] {
      #expect(!text.contains(password) && !text.contains(Self.secretPlain))
    }
    // Rule-skipped: the CA ConfigMap and token Secrets, when the controller-manager made them in the source.
    let ruleSkipped = index.objects.filter {
      ($0.kind == "ConfigMap" && $0.name == "kube-root-ca.crt") || ($0.kind == "Secret" && $0.name.contains("-token-"))
    }.map { "\($0.kind)/\($0.name)" }
    for s in ruleSkipped { #expect(ar.skipped.contains(s), "\(s) not skipped: \(ar.skipped)") }
    for s in ar.skipped {
      #expect(s == "ConfigMap/kube-root-ca.crt" || s.hasPrefix("Secret/"), "unexpected skip \(s)")
    }
    #expect(ar.objects + ar.existing + ar.skipped.count == index.objects.count)

    let pairs: [(ResourceDescriptor, String)] = [
      (Self.configMaps, "app-config"), (Self.configMaps, "other"), (Self.secrets, "app-secret"),
      (Self.serviceAccounts, "app-sa"), (Self.roles, "app-role"), (Self.roleBindings, "app-rb"),
      (Self.services, "web"), (Self.deployments, "web"), (Self.claims, "data"), (Self.widgets, "w1"),
    ]
    for (r, name) in pairs {
      let a = try await c.get(r, namespace: src, name: name, as: JSONValue.self)
      let b = try await c.get(r, namespace: dst, name: name, as: JSONValue.self)
      #expect(b[path: "metadata", "namespace"]?.stringValue == dst, "\(r.kind)/\(name)")
      #expect(b[path: "metadata", "uid"] != a[path: "metadata", "uid"], "\(r.kind)/\(name) kept the uid")
      #expect(
        b[path: "metadata", "resourceVersion"] != a[path: "metadata", "resourceVersion"],
        "\(r.kind)/\(name) kept the resourceVersion")
      #expect(b[path: "metadata", "labels", "app"] == a[path: "metadata", "labels", "app"])
    }
    let cm = try await c.get(Self.configMaps, namespace: dst, name: "app-config", as: JSONValue.self)
    #expect(cm["data"] == ["greeting": "hello"])
    let secret = try await c.get(Self.secrets, namespace: dst, name: "app-secret", as: JSONValue.self)
    #expect(secret["data"] == ["password": .string(password)])
    let rb = try await c.get(Self.roleBindings, namespace: dst, name: "app-rb", as: JSONValue.self)
    #expect(rb["subjects"] == [["kind": "ServiceAccount", "name": "app-sa", "namespace": .string(dst)]])
    let srcSvc = try await c.get(Self.services, namespace: src, name: "web", as: JSONValue.self)
    let dstSvc = try await c.get(Self.services, namespace: dst, name: "web", as: JSONValue.self)
    let srcIP = srcSvc[path: "spec", "clusterIP"]?.stringValue ?? ""
    let dstIP = dstSvc[path: "spec", "clusterIP"]?.stringValue ?? ""
    #expect(!srcIP.isEmpty && !dstIP.isEmpty && srcIP != dstIP, "clusterIP \(srcIP) -> \(dstIP)")
    let w = try await c.get(Self.widgets, namespace: dst, name: "w1", as: JSONValue.self)
    #expect(w[path: "spec", "size"] == 3)
    do {
      _ = try await c.get(Self.configMaps, namespace: dst, name: "excluded", as: JSONValue.self)
      Issue.record("the excluded ConfigMap was re-created")
    } catch let e as KubeError where e.isNotFound {}

    // 4. Again: everything exists and is left as it is.
    let again = try ObjectsBinary.run(ObjectsApplyArguments(directory: dir, namespace: dst).argv)
    #expect(again.code == ObjectsExitCode.ok, "second apply: \(again.stderr)")
    let ag = try again.result()
    #expect(ag.objects == 0)
    #expect(ag.existing == ar.objects + ar.existing)
    #expect(ag.failures.isEmpty)

    // 5. Only some kinds.
    let dst2 = try await makeNamespace(c, "objdst2")
    defer { Task { [c] in _ = try? await c.delete(Self.namespaces, namespace: nil, name: dst2) } }
    let some = try ObjectsBinary.run(
      ObjectsApplyArguments(directory: dir, namespace: dst2, kinds: [ObjectsKind(kind: "Secret"), widgetKind]).argv)
    #expect(some.code == ObjectsExitCode.ok, "apply --kind: \(some.stderr)")
    #expect(try some.result().objects == 2)
    _ = try await c.get(Self.widgets, namespace: dst2, name: "w1", as: JSONValue.self)
    do {
      _ = try await c.get(Self.configMaps, namespace: dst2, name: "app-config", as: JSONValue.self)
      Issue.record("apply --kind Secret created a ConfigMap")
    } catch let e as KubeError where e.isNotFound {}
  }

  /// The backup pod's export runs with the backup ServiceAccount's token, whose RoleBinding the controller applies
  /// when it sees the Job: a list refused with 403 is retried until the grant arrives, then the export succeeds.
  @Test func exportWaitsForItsGrant() async throws {
    let c = try client()
    let binary = try ObjectsBinary.path()
    let ns = try await makeNamespace(c, "objgrant")
    let dir = try tempDir("grant")
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    do {
      _ = try await c.create(
        Self.serviceAccounts, namespace: ns,
        ["apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("exporter")])
      _ = try await c.create(
        Self.configMaps, namespace: ns, ["apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("app-config")])
      let answer = try await c.send(
        KubeRequest(
          method: "POST", path: "/api/v1/namespaces/\(ns)/serviceaccounts/exporter/token",
          contentType: "application/json",
          body: Data(#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}"#.utf8)),
        decoding: JSONValue.self)
      let token = try #require(answer["status"]?["token"]?.stringValue)
      var ca = ""
      if let f = c.config.tls.caFile {
        ca = "certificate-authority: \(f)"
      } else if let pem = c.config.tls.caPEM {
        ca = "certificate-authority-data: \(pem.base64EncodedString())"
      }
      let kubeconfig = dir + "/kubeconfig"
      try """
      apiVersion: v1
      kind: Config
      clusters: [{name: c, cluster: {server: "\(c.config.server)", \(ca.isEmpty ? "insecure-skip-tls-verify: true" : ca)}}]
      users: [{name: u, user: {token: "\(token)"}}]
      contexts: [{name: x, context: {cluster: c, user: u}}]
      current-context: x
      """.write(toFile: kubeconfig, atomically: true, encoding: .utf8)
      let p = Process()
      p.executableURL = URL(fileURLWithPath: binary)
      p.arguments =
        ObjectsExportArguments(namespace: ns, directory: dir + "/out", kinds: [ObjectsKind(kind: "ConfigMap")])
        .argv
      p.environment = ["KUBECONFIG": kubeconfig, "HOME": dir]
      let out = Pipe()
      let err = Pipe()
      p.standardOutput = out
      p.standardError = err
      try p.run()
      // Refused for a while: no Role yet.
      try await Task.sleep(for: .seconds(3))
      #expect(p.isRunning, "the export did not wait for its grant")
      _ = try await c.create(
        Self.roles, namespace: ns,
        [
          "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta("lister"),
          "rules": [["apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]]],
        ])
      _ = try await c.create(
        Self.roleBindings, namespace: ns,
        [
          "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta("lister"),
          "roleRef": ["apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lister"],
          "subjects": [["kind": "ServiceAccount", "name": "exporter", "namespace": .string(ns)]],
        ])
      let stdout = out.fileHandleForReading.readDataToEndOfFile()
      let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
      p.waitUntilExit()
      #expect(p.terminationStatus == 0, "\(stderr)")
      #expect(stderr.contains("forbidden; waiting for the run's RoleBinding"), "\(stderr)")
      #expect(!stderr.contains(token), "the token is in the log")
      let result = try JSONDecoder().decode(ObjectsResult.self, from: stdout)
      #expect(result.objects >= 1 && result.failures.isEmpty, "\(result)")
      #expect(try readIndex(dir + "/out").objects.contains { $0.name == "app-config" })
    } catch {
      await deleteNamespace(c, ns)
      throw error
    }
    await deleteNamespace(c, ns)
  }

  @Test func applyOfABrokenOrMissingIndexIsAUsageErrorNamingTheFile() throws {
    let dir = try tempDir("broken")
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let missing = try ObjectsBinary.run(ObjectsApplyArguments(directory: dir, namespace: "default").argv)
    #expect(missing.code == ObjectsExitCode.usage)
    #expect(missing.stderr.contains(dir + "/index.json"), "\(missing.stderr)")
    try Data("{\"version\": 1, \"namespace\": \"x\", \"objects\": [ {".utf8).write(
      to: URL(fileURLWithPath: dir + "/index.json"))
    let broken = try ObjectsBinary.run(ObjectsApplyArguments(directory: dir, namespace: "default").argv)
    #expect(broken.code == ObjectsExitCode.usage)
    #expect(broken.stderr.contains(dir + "/index.json"), "\(broken.stderr)")
    #expect(broken.stderr.contains("malformed"), "\(broken.stderr)")
  }

  @Test func aBadKindIsAUsageError() throws {
    let r = try ObjectsBinary.run(["export", "--namespace", "default", "--dir", "/tmp/x-unused", "--kind", "configmap"])
    #expect(r.code == ObjectsExitCode.usage)
    #expect(r.stderr.contains("--kind configmap"), "\(r.stderr)")
  }
}
