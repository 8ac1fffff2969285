import EngineContract
import Foundation
import KubeCore
import ObjectsCLI
import Testing

/// The apply transform and order, without an apiserver.
@Suite struct ObjectsApplyTransformTests {
  static let rbac = "rbac.authorization.k8s.io"

  func created(_ o: JSONValue, _ kind: ObjectsKind, source: String = "src", target: String = "dst") -> JSONValue? {
    if case .create(let c) = ApplyTransform.prepare(o, kind: kind, sourceNamespace: source, targetNamespace: target) {
      return c
    }
    Issue.record("expected \(kind) to be created")
    return nil
  }

  func skipReason(_ o: JSONValue, _ kind: ObjectsKind) -> String? {
    if case .skip(let r) = ApplyTransform.prepare(o, kind: kind, sourceNamespace: "src", targetNamespace: "dst") {
      return r
    }
    return nil
  }

  static let fullMetadata: JSONValue = [
    "name": "web", "namespace": "src", "uid": "1234", "resourceVersion": "77", "generation": 3,
    "creationTimestamp": "2026-12-07T10:00:00Z", "selfLink": "/api/v1/x",
    "managedFields": [["manager": "kubectl"]], "ownerReferences": [["kind": "Thing", "name": "t", "uid": "9"]],
    "deletionTimestamp": "2026-12-07T10:00:00Z", "deletionGracePeriodSeconds": 30,
    "labels": ["app": "web"],
    "annotations": ["kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "me"],
  ]

  @Test func stripsEveryServerSetMetadataFieldAndStatus() throws {
    let o: JSONValue = [
      "apiVersion": "apps/v1", "kind": "Deployment", "metadata": Self.fullMetadata,
      "spec": ["replicas": 1], "status": ["readyReplicas": 1],
    ]
    let c = try #require(created(o, ObjectsKind(kind: "Deployment", group: "apps")))
    let meta = try #require(c["metadata"]?.objectValue)
    for f in [
      "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink", "ownerReferences",
      "deletionTimestamp", "deletionGracePeriodSeconds",
    ] {
      #expect(meta[f] == nil, "metadata.\(f) kept")
    }
    #expect(meta["namespace"] == "dst")
    #expect(meta["name"] == "web")
    #expect(meta["labels"] == ["app": "web"])
    #expect(meta["annotations"] == ["keep": "me"])
    #expect(c["status"] == nil)
    #expect(c[path: "spec", "replicas"] == 1)
    #expect(c["apiVersion"] == "apps/v1")
  }

  @Test func emptyAnnotationsAreDropped() throws {
    let o: JSONValue = [
      "metadata": ["name": "a", "annotations": ["kubectl.kubernetes.io/last-applied-configuration": "{}"]]
    ]
    let c = try #require(created(o, ObjectsKind(kind: "ConfigMap")))
    #expect(c[path: "metadata", "annotations"] == nil)
  }

  @Test func serviceLosesClusterIPsAndNodePortsButHeadlessStaysHeadless() throws {
    let svc: JSONValue = [
      "metadata": ["name": "web"],
      "spec": [
        "type": "NodePort", "clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"], "healthCheckNodePort": 31000,
        "ports": [["port": 80, "nodePort": 30080, "targetPort": 8080]],
      ],
    ]
    let c = try #require(created(svc, ObjectsKind(kind: "Service")))
    #expect(c[path: "spec", "clusterIP"] == nil)
    #expect(c[path: "spec", "clusterIPs"] == nil)
    #expect(c[path: "spec", "healthCheckNodePort"] == nil)
    #expect(c[path: "spec", "ports"] == [["port": 80, "targetPort": 8080]])
    #expect(c[path: "spec", "type"] == "NodePort")

    let headless: JSONValue = [
      "metadata": ["name": "db"], "spec": ["clusterIP": "None", "clusterIPs": ["None"], "ports": [["port": 5432]]],
    ]
    let h = try #require(created(headless, ObjectsKind(kind: "Service")))
    #expect(h[path: "spec", "clusterIP"] == "None")
    #expect(h[path: "spec", "clusterIPs"] == ["None"])
  }

  @Test func claimLosesVolumeNameAndBindingAnnotations() throws {
    let pvc: JSONValue = [
      "metadata": [
        "name": "data",
        "annotations": [
          "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes",
          "volume.beta.kubernetes.io/storage-provisioner": "x", "volume.kubernetes.io/storage-provisioner": "x",
          "volume.kubernetes.io/selected-node": "n1", "team": "a",
        ],
      ],
      "spec": ["volumeName": "pvc-123", "storageClassName": "fast", "resources": ["requests": ["storage": "1Gi"]]],
      "status": ["phase": "Bound"],
    ]
    let c = try #require(created(pvc, ObjectsKind(kind: "PersistentVolumeClaim")))
    #expect(c[path: "spec", "volumeName"] == nil)
    #expect(c[path: "spec", "storageClassName"] == "fast")
    #expect(c[path: "metadata", "annotations"] == ["team": "a"])
    #expect(c["status"] == nil)
    // Another kind keeps such annotations (only a claim's binding is the server's).
    let cm: JSONValue = ["metadata": ["name": "c", "annotations": ["pv.kubernetes.io/bind-completed": "yes"]]]
    let k = try #require(created(cm, ObjectsKind(kind: "ConfigMap")))
    #expect(k[path: "metadata", "annotations"] == ["pv.kubernetes.io/bind-completed": "yes"])
  }

  @Test func podTemplatesLoseNodeName() throws {
    let d: JSONValue = [
      "metadata": ["name": "web"],
      "spec": ["template": ["spec": ["nodeName": "node-1", "containers": [["name": "c", "image": "i"]]]]],
    ]
    let c = try #require(created(d, ObjectsKind(kind: "Deployment", group: "apps")))
    #expect(c[path: "spec", "template", "spec", "nodeName"] == nil)
    #expect(c[path: "spec", "template", "spec", "containers"] == [["name": "c", "image": "i"]])
    let cj: JSONValue = [
      "metadata": ["name": "job"],
      "spec": ["jobTemplate": ["spec": ["template": ["spec": ["nodeName": "node-1", "restartPolicy": "Never"]]]]],
    ]
    let j = try #require(created(cj, ObjectsKind(kind: "CronJob", group: "batch")))
    #expect(j[path: "spec", "jobTemplate", "spec", "template", "spec", "nodeName"] == nil)
    #expect(j[path: "spec", "jobTemplate", "spec", "template", "spec", "restartPolicy"] == "Never")
    let pod: JSONValue = ["metadata": ["name": "p"], "spec": ["nodeName": "node-1"]]
    let p = try #require(created(pod, ObjectsKind(kind: "Pod")))
    #expect(p[path: "spec", "nodeName"] == nil)
  }

  @Test func roleBindingSubjectsOfTheSourceNamespaceAreMapped() throws {
    let rb: JSONValue = [
      "metadata": ["name": "rb"],
      "roleRef": ["apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"],
      "subjects": [
        ["kind": "ServiceAccount", "name": "app", "namespace": "src"],
        ["kind": "ServiceAccount", "name": "other", "namespace": "elsewhere"],
        ["kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"],
      ],
    ]
    let c = try #require(created(rb, ObjectsKind(kind: "RoleBinding", group: Self.rbac)))
    #expect(
      c["subjects"] == [
        ["kind": "ServiceAccount", "name": "app", "namespace": "dst"],
        ["kind": "ServiceAccount", "name": "other", "namespace": "elsewhere"],
        ["kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"],
      ])
    #expect(c["roleRef"] == rb["roleRef"])
  }

  @Test func serviceAccountDropsItsSourceTokenSecrets() throws {
    let sa: JSONValue = [
      "metadata": ["name": "app"], "secrets": [["name": "app-token-abcde"], ["name": "registry-creds"]],
    ]
    let c = try #require(created(sa, ObjectsKind(kind: "ServiceAccount")))
    #expect(c["secrets"] == [["name": "registry-creds"]])
    let only: JSONValue = ["metadata": ["name": "default"], "secrets": [["name": "default-token-x1"]]]
    let d = try #require(created(only, ObjectsKind(kind: "ServiceAccount")))
    #expect(d["secrets"] == nil)
  }

  @Test func skipRules() {
    let owned: JSONValue = [
      "metadata": [
        "name": "web-5d8f", "ownerReferences": [["kind": "Deployment", "name": "web", "controller": true, "uid": "1"]],
      ]
    ]
    #expect(skipReason(owned, ObjectsKind(kind: "ReplicaSet", group: "apps"))?.contains("Deployment/web") == true)
    let token: JSONValue = ["metadata": ["name": "app-token-x"], "type": "kubernetes.io/service-account-token"]
    #expect(skipReason(token, ObjectsKind(kind: "Secret")) != nil)
    let opaque: JSONValue = ["metadata": ["name": "creds"], "type": "Opaque", "data": ["k": "dg=="]]
    #expect(skipReason(opaque, ObjectsKind(kind: "Secret")) == nil)
    let ca: JSONValue = ["metadata": ["name": "kube-root-ca.crt"], "data": ["ca.crt": "x"]]
    #expect(skipReason(ca, ObjectsKind(kind: "ConfigMap")) != nil)
    // The same name of another kind is re-created; a non-controller owner does not make an object skipped.
    #expect(skipReason(ca, ObjectsKind(kind: "Secret")) == nil)
    let notController: JSONValue = [
      "metadata": ["name": "x", "ownerReferences": [["kind": "Thing", "name": "t", "controller": false]]]
    ]
    #expect(skipReason(notController, ObjectsKind(kind: "ConfigMap")) == nil)
  }

  @Test func secretDataIsKeptUnchanged() throws {
    let s: JSONValue = [
      "metadata": ["name": "creds"], "type": "Opaque", "data": ["password": "c2VjcmV0"], "immutable": true,
    ]
    let c = try #require(created(s, ObjectsKind(kind: "Secret")))
    #expect(c["data"] == ["password": "c2VjcmV0"])
    #expect(c["type"] == "Opaque")
    #expect(c["immutable"] == true)
  }

  @Test func applyOrder() {
    func e(_ kind: String, _ name: String) -> ObjectsIndex.Entry {
      ObjectsIndex.Entry(kind: kind, apiVersion: "v1", name: name, file: "\(kind)/\(name).json")
    }
    // Listed in the opposite order of the apply order, with two of one kind to check the index order is kept.
    let index = ObjectsIndex(
      namespace: "src",
      objects: [
        e("Ingress.networking.k8s.io", "ing"), e("Deployment.apps", "web"), e("Widget.example.io", "w1"),
        e("Service", "svc"), e("PersistentVolumeClaim", "data"), e("RoleBinding.\(Self.rbac)", "rb"),
        e("Role.\(Self.rbac)", "r"), e("ConfigMap", "cm-b"), e("ConfigMap", "cm-a"), e("Secret", "s"),
        e("ServiceAccount", "sa"), e("DaemonSet.apps", "ds"), e("StatefulSet.apps", "st"), e("not a kind", "x"),
      ])
    let (planned, bad) = ApplyTransform.plan(index, kinds: [])
    #expect(
      planned.map { "\($0.kind)/\($0.entry.name)" } == [
        "ServiceAccount/sa", "Secret/s", "ConfigMap/cm-b", "ConfigMap/cm-a", "Role.\(Self.rbac)/r",
        "RoleBinding.\(Self.rbac)/rb", "PersistentVolumeClaim/data", "Service/svc", "Widget.example.io/w1",
        "Deployment.apps/web", "StatefulSet.apps/st", "DaemonSet.apps/ds", "Ingress.networking.k8s.io/ing",
      ])
    #expect(bad.map(\.name) == ["x"])
    let only = ApplyTransform.plan(index, kinds: [ObjectsKind(kind: "ConfigMap"), ObjectsKind("Widget.example.io")!])
    #expect(only.planned.map(\.entry.name) == ["cm-b", "cm-a", "w1"])
  }

  @Test func kindParsing() {
    #expect(ObjectsKind("ConfigMap") == ObjectsKind(kind: "ConfigMap"))
    #expect(ObjectsKind("Deployment.apps") == ObjectsKind(kind: "Deployment", group: "apps"))
    #expect(ObjectsKind("Nope.example.io") == ObjectsKind(kind: "Nope", group: "example.io"))
    #expect(ObjectsKind("Nope.example.io")?.description == "Nope.example.io")
    for bad in ["", "configMap", "Config-Map", "Deployment.", ".apps", "1Kind"] {
      #expect(ObjectsKind(bad) == nil, "\(bad) parsed")
    }
    #expect(ObjectsKind("Deployment.apps")!.applyRank > ObjectsKind("Widget.example.io")!.applyRank)
    #expect(ObjectsKind("Widget.example.io")!.applyRank > ObjectsKind("Service")!.applyRank)
  }

  @Test func indexFilePathsStayInsideTheDirectory() {
    #expect(ApplyTransform.isSafeRelativePath("core/Secret/creds.json"))
    for bad in ["", "/etc/passwd", "../x.json", "core/../../x", "core//x.json", "core/Secret/"] {
      #expect(!ApplyTransform.isSafeRelativePath(bad), "\(bad) accepted")
    }
  }
}

/// The result file is the container's termination message, of which the kubelet keeps 4096 bytes.
@Suite struct ObjectsResultLineTests {
  @Test func aLongResultIsCutToFitTheTerminationMessage() throws {
    let failures = (0..<300).map {
      ObjectsResult.Failure(
        object: "ConfigMap/cm-\($0)", message: "422 Invalid: " + String(repeating: "x", count: $0 == 0 ? 1000 : 80))
    }
    let skipped = (0..<100).map { "Secret/app-token-\($0)" }
    let r = ObjectsResult(command: "apply", objects: 7, existing: 2, skipped: skipped, failures: failures)
    #expect(ObjectsMain.resultLine(r).utf8.count > 4096)
    let line = ObjectsMain.fittedLine(r)
    #expect(line.utf8.count <= 4096)
    let back = try JSONDecoder().decode(ObjectsResult.self, from: Data(line.utf8))
    #expect(back.objects == 7 && back.existing == 2)
    #expect(back.skipped.last?.hasPrefix("and ") == true && back.skipped.last?.hasSuffix(" more") == true)
    #expect(back.failures.first?.object == "ConfigMap/cm-0")
    #expect(back.failures.first.map { $0.message.count <= 203 } == true)
    let last = try #require(back.failures.last)
    #expect(last.object == "" && last.message.hasSuffix("more failures"))
    let more = Int(last.message.split(separator: " ")[1]) ?? -1
    #expect(back.failures.count - 1 + more == 300)
    // A short result is written as it is.
    let short = ObjectsResult(command: "export", objects: 3)
    #expect(ObjectsMain.fittedLine(short) == ObjectsMain.resultLine(short))
  }
}
