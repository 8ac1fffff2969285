import ControllerApp
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Testing

extension BackupPolicyControllerTests {
  /// At steady state the controller holds one watch per collection, counted by its own `botrt_kube_requests_total`:
  /// one per kind, except Jobs and Pods, which have the controller's own (all namespaces, labelled managed-by) and
  /// everything of the backup namespace (the run auditor's unlabelled Jobs, all Pods), and Pods a third time: every
  /// Pod of the watched namespaces, kept as the few fields RWO placement reads (ClaimUserPod). Before the informers
  /// were shared there were 2 BackupPolicy, 6 Job and 3 Pod watches.
  @Test func oneWatchPerCollectionAtSteadyState() async throws {
    try await withNamespace("shared-watch") { ns in
      try await withCountingController(ns) { app, registry in
        func watches(_ resource: String) -> Int {
          Int(registry.value("botrt_kube_requests_total", labels: ["watch", resource, "200"]) ?? 0)
        }
        // Secrets twice: the referenced ones (metadata, all Secrets of the watched namespace) and the controller's
        // copies (metadata, labelled, every namespace). CronJobs, Roles, RoleBindings, ServiceAccounts and Namespaces:
        // the metadata caches of the controller's own objects (ManagedCaches). Namespaces twice: the controller's own
        // (labelled) and every Namespace's metadata, which wakes a RecoveryPlan when a target namespace opts in.
        // PersistentVolumeClaims: the claims of the watched namespaces, which multi-claim sources select from.
        var want = [
          "backuppolicies": 1, "recoveryplans": 1, "drdrills": 1, "jobs": 2, "pods": 3, "networkpolicies": 1,
          "secrets": 2, "customresourcedefinitions": 1, "cronjobs": 1, "roles": 1, "rolebindings": 1,
          "serviceaccounts": 1, "namespaces": 2, "persistentvolumeclaims": 1,
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
