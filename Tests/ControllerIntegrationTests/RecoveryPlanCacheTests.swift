import ControllerApp
import DRAPI
import Foundation
import KubeClient
import KubeCore
import Reconcilers
import Testing

extension BackupPolicyControllerTests {
  /// The RecoveryPlan controller reads the policies its restores name from the cache the BackupPolicy controller
  /// fills (one informer per kind, shared): a triggered plan starts its restore Job, and BackupPolicies are listed
  /// once, by that informer, however often the plan is reconciled.
  @Test func aPlanReadsItsPoliciesFromTheSharedCache() async throws {
    try await withNamespace("plan-cache") { ns in
      try await createSecrets(ns)
      try await withCountingController(ns) { _, registry in
        _ = try await client.create(policy(ns, name: "db"))
        try await eventually("db Ready=True") { try await condition(ns, "db", "Ready")?.status == .true }
        let restore = RestoreStepSpec(
          policyRef: LocalObjectReference(name: "db"),
          into: RestoreDestination(command: ContainerSpec(image: "postgres:16", command: ["pg_restore"])))
        let plan = RecoveryPlan(
          metadata: ObjectMeta(name: "restore-db", namespace: ns),
          spec: RecoveryPlanSpec(
            tier: .important,
            procedures: [
              RecoveryProcedure(name: "p", steps: [RecoveryStep(name: "restore", action: .restore, restore: restore)])
            ], trigger: "t1"))
        _ = try await client.create(plan)
        let selector = "\(RecoveryPlanLabels.planName)=restore-db,\(RecoveryPlanLabels.planNamespace)=\(ns)"
        try await eventually("the restore step's Job") {
          try await !client.list(
            ChildResources.jobs, namespace: ns, options: ListOptions(labelSelector: selector), as: JSONValue.self
          ).items.isEmpty
        }
        let stored = try await client.get(RecoveryPlan.self, namespace: ns, name: "restore-db")
        #expect(stored.status?.conditions?.condition(RecoveryPlanCondition.ready)?.reason != "InvalidSpec")
        let lists = registry.value("botrt_kube_requests_total", labels: ["list", "backuppolicies", "200"]) ?? 0
        #expect(lists == 1, "only the BackupPolicy informer lists policies; the plan reads them from its cache")
      }
    }
  }
}
