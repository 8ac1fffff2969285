import Foundation
import Testing

/// hack/rbac-audit.py, which the test suite runs over the apiserver's audit log after every flow's controller ran as
/// the shipped ServiceAccount (issue 14 item 4): fed a fixture log and manifest here, so its verdicts can fail.
@Suite struct RBACAuditTests {
  static let user = "system:serviceaccount:botrt-system:botrt-controller"

  func event(_ verb: String, _ group: String, _ resource: String, code: Int = 200, user: String = user) -> String {
    let o: [String: Any] = [
      "kind": "Event", "level": "Metadata", "stage": "ResponseComplete", "verb": verb, "user": ["username": user],
      "objectRef": ["apiGroup": group, "resource": resource, "namespace": "x"], "responseStatus": ["code": code],
      "annotations": ["authorization.k8s.io/decision": code == 403 ? "forbid" : "allow"],
    ]
    return String(decoding: try! JSONSerialization.data(withJSONObject: o), as: UTF8.self)
  }

  func audit(_ manifest: String, _ events: [String]) throws -> (code: Int32, output: String) {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("rbac-audit-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    try manifest.write(to: dir.appendingPathComponent("role.yaml"), atomically: true, encoding: .utf8)
    try events.joined(separator: "\n").write(
      to: dir.appendingPathComponent("audit.log"), atomically: true, encoding: .utf8)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [
      "python3", repoRoot.appendingPathComponent("hack/rbac-audit.py").path,
      dir.appendingPathComponent("audit.log").path,
      dir.appendingPathComponent("role.yaml").path,
    ]
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
  }

  let role = """
    kind: ClusterRole
    apiVersion: rbac.authorization.k8s.io/v1
    metadata: {name: r}
    rules:
      - apiGroups: [""]
        resources: ["pods"]
        verbs: ["get", "list"]
    """

  @Test func everyGrantUsedPasses() throws {
    let r = try audit(
      role, [event("get", "", "pods"), event("list", "", "pods"), event("delete", "", "pods", user: "admin")])
    #expect(r.code == 0, "\(r.output)")
  }

  @Test func anUnusedGrantFailsUnlessTheManifestSaysWhy() throws {
    let unused = try audit(role, [event("get", "", "pods")])
    #expect(unused.code == 1)
    #expect(unused.output.contains("UNUSED   core/pods list"), "\(unused.output)")
    let kept = try audit(
      role + "\n# unexercised: core/pods list: only a cluster with many pods needs it\n", [event("get", "", "pods")])
    #expect(kept.code == 0, "\(kept.output)")
    // A reason for a grant that was used is stale.
    let stale = try audit(
      role + "\n# unexercised: core/pods list: stale\n", [event("get", "", "pods"), event("list", "", "pods")])
    #expect(stale.code == 1 && stale.output.contains("stale"), "\(stale.output)")
  }

  @Test func aDeniedRequestFails() throws {
    let r = try audit(
      role, [event("get", "", "pods"), event("list", "", "pods"), event("create", "", "pods", code: 403)])
    #expect(r.code == 1)
    #expect(r.output.contains("DENIED   core/pods create"), "\(r.output)")
    let none = try audit(role, [event("get", "", "pods", user: "admin")])
    #expect(none.code != 0 && none.output.contains("no request"), "\(none.output)")
  }

  /// The shipped ClusterRole: no wildcard, and no `bind` or `escalate` (so the controller cannot grant itself, or a
  /// Pod, more than it holds, e.g. pods/exec), nor pods/exec itself.
  @Test func theShippedClusterRoleCannotEscalate() throws {
    let text = try String(
      contentsOf: repoRoot.appendingPathComponent("manifests/rbac/clusterrole.yaml"), encoding: .utf8)
    let rules = text.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }
      .joined(separator: "\n")
    // One exception: `bind` of exactly the two ClusterRoles of Kubernetes objects (manifests/rbac/objects.yaml),
    // whose rules `theObjectsRolesTheControllerBindsCannotEscalate` checks.
    let bindRule = """
        - apiGroups: ["rbac.authorization.k8s.io"]
          resources: ["clusterroles"]
          verbs: ["bind"]
          resourceNames: ["botrt-objects-reader", "botrt-objects-restorer"]
      """
    #expect(rules.contains(bindRule), "the objects bind rule changed")
    let rest = rules.replacingOccurrences(of: bindRule, with: "")
    for word in ["\"bind\"", "\"escalate\"", "\"impersonate\"", "\"*\"", "pods/exec", "pods/attach"] {
      #expect(!rest.contains(word), "clusterrole.yaml grants \(word)")
    }
  }

  /// The two ClusterRoles the controller may bind (to a backup run's or an objects restore's ServiceAccount) grant
  /// no RBAC power, exec or wildcard: binding them cannot give anyone more than reading and creating the
  /// application's own kinds. Restoring Roles and RoleBindings is `botrt-objects-rbac-restorer`, which the
  /// controller may not bind.
  @Test func theObjectsRolesTheControllerBindsCannotEscalate() throws {
    let text = try String(
      contentsOf: repoRoot.appendingPathComponent("manifests/rbac/objects.yaml"), encoding: .utf8)
    let docs = text.components(separatedBy: "\n---\n")
    func doc(_ name: String) -> String? { docs.first { $0.contains("\n  name: \(name)\n") } }
    for name in ["botrt-objects-reader-standard", "botrt-objects-restorer-standard"] {
      let d = try #require(doc(name), "objects.yaml has no \(name)")
      let rules = d.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }
        .joined(separator: "\n")
      for word in [
        "\"bind\"", "\"escalate\"", "\"impersonate\"", "\"*\"", "pods/exec", "pods/attach", "\"pods\"",
        "clusterroles", "\"update\"", "\"patch\"", "\"delete\"",
      ] {
        #expect(!rules.contains(word), "\(name) grants \(word)")
      }
    }
    #expect(
      try #require(doc("botrt-objects-restorer-standard")).contains("apiGroups: [\"rbac.authorization.k8s.io\"]")
        == false)
    // The aggregating roles take only what is labelled for them.
    #expect(doc("botrt-objects-reader")?.contains("dr.botrt.io/aggregate-to-objects-reader: \"true\"") == true)
    #expect(doc("botrt-objects-restorer")?.contains("dr.botrt.io/aggregate-to-objects-restorer: \"true\"") == true)
    #expect(doc("botrt-objects-rbac-restorer")?.contains("escalate") == true)
  }
}
