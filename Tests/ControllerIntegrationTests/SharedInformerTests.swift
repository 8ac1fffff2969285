import ControllerApp
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Reconcilers
import Testing

extension BackupPolicyControllerTests {
  /// At steady state the controller holds one watch per kind, counted by its own `botrt_kube_requests_total`. Jobs,
  /// Pods, Secrets and Namespaces have several readers (the controller's own objects everywhere, everything of the
  /// backup namespace for the run auditor, every Pod's placement fields, referenced Secrets, every Namespace's
  /// opt-in): each is a view of the kind's one watch (`InformerRegistry.all`). Before the informers were shared
  /// there were 2 BackupPolicy, 6 Job and 3 Pod watches; before the views, 2 Job, 3 Pod, 2 Secret and 2 Namespace
  /// watches.
  @Test func oneWatchPerCollectionAtSteadyState() async throws {
    try await withNamespace("shared-watch") { ns in
      try await withCountingController(ns) { app, registry in
        func watches(_ resource: String) -> Int {
          Int(registry.value("botrt_kube_requests_total", labels: ["watch", resource, "200"]) ?? 0)
        }
        // CronJobs, Roles, RoleBindings and ServiceAccounts: the metadata caches of the controller's own objects
        // (ManagedCaches). PersistentVolumeClaims: the claims of the watched namespaces, which multi-claim sources
        // select from.
        var want = [
          "backuppolicies": 1, "recoveryplans": 1, "drdrills": 1, "jobs": 1, "pods": 1, "networkpolicies": 1,
          "secrets": 1, "customresourcedefinitions": 1, "cronjobs": 1, "roles": 1, "rolebindings": 1,
          "serviceaccounts": 1, "namespaces": 1, "persistentvolumeclaims": 1,
        ]
        // Calico's policies are watched only while its CRD is served (another test may have installed it).
        if app.settings.calicoServed { want["globalnetworkpolicies"] = 1 }
        try await eventually("every watch to be open") { want.keys.allSatisfy { watches($0) >= 1 } }
        // Long enough for a second watch of any collection to open, far below the watches' 290 s timeout.
        try await Task.sleep(for: .seconds(5))
        let got = Dictionary(
          uniqueKeysWithValues: (want.keys.sorted() + ["globalnetworkpolicies"]).map { ($0, watches($0)) }
        )
        .filter { $0.value > 0 }
        #expect(got == want)
        #expect(app.informers.keys.count == want.values.reduce(0, +) + (app.settings.calicoServed ? 0 : 1))
      }
    }
  }
}

extension BackupPolicyControllerTests {
  /// The one Pod watch keeps what its readers read, on a real apiserver: the controller's own Pods whole (with the
  /// managedFields the run auditor reads) in any namespace, every Pod of the backup namespace whole, the placement
  /// fields of the watched namespace's Pods (no containers, no managedFields), and nothing of other namespaces'.
  @Test func theOnePodWatchKeepsWhatItsReadersRead() async throws {
    try await withNamespace("shared-keep") { ns in
      let elsewhere = "\(ns)-elsewhere"
      let backupNS = "\(ns)-backup"
      for name in [elsewhere, backupNS] {
        _ = try await client.create(
          Namespace(metadata: ObjectMeta(name: name, labels: ["botrt.io/test": "controller"])))
      }
      do {
        try await keptPods(ns, elsewhere: elsewhere, backupNS: backupNS)
      } catch {
        _ = try? await client.delete(Namespace.self, name: elsewhere)
        throw error
      }
      try await client.delete(Namespace.self, name: elsewhere)
    }
  }

  /// A Pod manifest of one container, with a claim volume if `claim` is given.
  func keptPod(_ name: String, _ namespace: String, labels: [String: String], claim: String?) -> JSONValue {
    var spec: [String: JSONValue] = [
      "containers": [["name": "app", "image": "busybox"]], "automountServiceAccountToken": false,
    ]
    if let claim {
      spec["volumes"] = [["name": "data", "persistentVolumeClaim": ["claimName": .string(claim)]]]
    }
    return .object([
      "apiVersion": "v1", "kind": "Pod",
      "metadata": [
        "name": .string(name), "namespace": .string(namespace), "labels": .object(labels.mapValues { .string($0) }),
      ],
      "spec": .object(spec),
    ])
  }

  /// `theOnePodWatchKeepsWhatItsReadersRead`'s Pods, controller and checks.
  func keptPods(_ ns: String, elsewhere: String, backupNS: String) async throws {
    let managed = [ChildLabels.managedBy: ChildLabels.controllerName]
    let pods: [(String, String, [String: String], String?)] = [
      ("app", ns, [:], "data"), ("plain", elsewhere, [:], "data"), ("run", elsewhere, managed, nil),
      ("lurker", backupNS, [:], nil),
    ]
    for (name, namespace, labels, claim) in pods {
      try await createPod(namespace, keptPod(name, namespace, labels: labels, claim: claim))
    }
    try await withCountingController(ns) { app, registry in
      let store = app.informers.all(ChildResources.pods).store
      try await eventually("the Pod watch to list") { store.isReady }
      func kept(_ namespace: String, _ name: String) -> JSONValue? {
        store.get(ObjectKey(namespace: namespace, name: name))?.body
      }
      #expect(kept(elsewhere, "plain") == nil, "a Pod no reader reads is kept")
      let user = try #require(kept(ns, "app"))
      #expect(user[path: "spec", "containers"] == nil)
      #expect(user[path: "metadata", "managedFields"] == nil)
      let claim = user[path: "spec", "volumes"]?.arrayValue?.first?[path: "persistentVolumeClaim", "claimName"]
      #expect(claim?.stringValue == "data")
      for (namespace, name) in [(elsewhere, "run"), (backupNS, "lurker")] {
        let whole = try #require(kept(namespace, name), "\(namespace)/\(name) is not kept")
        #expect(whole[path: "spec", "containers"]?.arrayValue?.first?["image"]?.stringValue == "busybox")
        #expect(whole[path: "metadata", "managedFields"] != nil)
      }
      #expect(registry.value("botrt_kube_requests_total", labels: ["watch", "pods", "200"]) ?? 0 <= 1)
    }
  }
}
