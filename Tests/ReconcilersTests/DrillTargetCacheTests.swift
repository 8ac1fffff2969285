import DRAPI
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Synchronization
import Testing

@testable import Reconcilers

/// A drill's target (its BackupPolicy, or its RecoveryPlan and the policy of the plan's restore) is read from the
/// caches the BackupPolicy and RecoveryPlan controllers share, once they are filled; before that it is read live.
@Suite struct DrillTargetCacheTests {
  final class Count: Sendable {
    let value = Mutex(0)
  }

  let requests = Count()

  /// A reconciler whose client counts its requests (to a closed port: each one fails).
  func reconciler(policies: Store<BackupPolicy>, plans: Store<RecoveryPlan>) -> DrillReconciler {
    let requests = self.requests
    let client = KubeClient(
      config: ClientConfig(server: "https://127.0.0.1:1"),
      transport: ObservingTransport { _ in requests.value.withLock { $0 += 1 } }, retry: RetryPolicy(maxAttempts: 1))
    return DrillReconciler(
      client: client, settings: ControllerSettings(engineImage: "e:1"), recorder: nil, metrics: nil,
      logger: Logger(label: "test"), policies: policies, plans: plans)
  }

  @Test func theTargetIsReadFromTheFilledCachesWithoutARequest() async throws {
    let policies = Store<BackupPolicy>()
    let plans = Store<RecoveryPlan>()
    policies.apply(.restarted([try recoveryTestPolicy()]))
    plans.apply(.restarted([try recoveryTestPlan()]))
    let r = reconciler(policies: policies, plans: plans)

    let direct = try await r.resolveTarget(try drillTestDrill())
    #expect(direct.0?.name == "db" && direct.1 == nil && direct.2 == nil)
    let viaPlan = try await r.resolveTarget(try drillTestDrill(plan: true))
    #expect(viaPlan.0?.name == "db" && viaPlan.1?.name == "shop-recovery" && viaPlan.2 == nil)
    // Absent from a filled cache: refused naming the field, still without a request.
    var gone = try drillTestDrill()
    gone.spec.target.backupPolicyRef = LocalObjectReference(name: "gone")
    #expect(try await r.resolveTarget(gone).2?.field == "spec.target.backupPolicyRef")
    var goneViaPlan = try drillTestDrill(plan: true)
    goneViaPlan.spec.target.recoveryPlanRef = LocalObjectReference(name: "gone")
    #expect(try await r.resolveTarget(goneViaPlan).2?.field == "spec.target.recoveryPlanRef")
    #expect(requests.value.withLock { $0 } == 0)
  }

  /// The source claim a drill sizes its scratch claim from is read from the shared claim cache once it is filled
  /// (absent there: none, without a request); a claim outside the cached namespace is read live.
  @Test func theSourceClaimIsReadFromTheFilledClaimCache() async throws {
    let requests = self.requests
    let client = KubeClient(
      config: ClientConfig(server: "https://127.0.0.1:1"),
      transport: ObservingTransport { _ in requests.value.withLock { $0 += 1 } }, retry: RetryPolicy(maxAttempts: 1))
    let claims = Store<PersistentVolumeClaim>()
    claims.apply(.restarted([try sourceClaimJSON.decode(as: PersistentVolumeClaim.self)]))
    func reconciler(_ scope: String?) -> DrillReconciler {
      DrillReconciler(
        client: client, settings: ControllerSettings(engineImage: "e:1"), recorder: nil, metrics: nil,
        logger: Logger(label: "test"), claims: claims, claimsNamespace: scope)
    }
    let drill = try drillIntoClaim()
    let spec = try DrillLogic.runSpec(drill, plan: nil)
    let read = try await reconciler(nil).readSourceClaim(drill, spec: spec, policy: try policyOfClaim())
    let claim = try #require(read)
    #expect(claim[path: "spec", "resources", "requests", "storage"] == "20Gi")
    #expect(claim[path: "spec", "storageClassName"] == "fast")
    // The drill's own claim (the policy has a dump source): not in the cache, so none.
    #expect(try await reconciler("shop").readSourceClaim(drill, spec: spec, policy: try recoveryTestPolicy()) == nil)
    #expect(requests.value.withLock { $0 } == 0)
    // Another namespace is cached: read live (the closed port fails the request).
    await #expect(throws: (any Error).self) {
      try await reconciler("elsewhere").readSourceClaim(drill, spec: spec, policy: try policyOfClaim())
    }
    #expect(requests.value.withLock { $0 } == 1)
  }

  @Test func beforeTheCachesFillTheTargetIsReadLive() async throws {
    let r = reconciler(policies: Store(), plans: Store())
    await #expect(throws: (any Error).self) { try await r.resolveTarget(try drillTestDrill()) }
    await #expect(throws: (any Error).self) { try await r.resolveTarget(try drillTestDrill(plan: true)) }
    #expect(requests.value.withLock { $0 } == 2)
  }
}
