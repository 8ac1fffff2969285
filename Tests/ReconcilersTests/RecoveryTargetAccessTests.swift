import DRAPI
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

@Suite struct RecoveryTargetAccessTests {
  /// The attacker's plan in `shop`: scale kube-system/coredns to 0.
  func coreDNSPlan(targetNamespace: String? = "kube-system", stepNamespace: String? = nil) throws -> RecoveryPlan {
    var plan = try recoveryTestPlan()
    plan.spec.targetNamespace = targetNamespace
    plan.spec.procedures[0].steps[0].targets = [
      WorkloadReference(kind: .deployment, name: "coredns", namespace: stepNamespace)
    ]
    return plan
  }

  /// The plan's workload as observed (scaling a missing one fails the step).
  func up(_ ns: String, _ name: String) -> [String: WorkloadState] {
    [WorkloadState.key("Deployment", ns, name): WorkloadState(replicas: 2, readyReplicas: 2)]
  }

  func ready(_ a: PlanAdvance) -> Condition? { a.status.conditions?.condition(RecoveryPlanCondition.ready) }

  @Test func aPlanMayScaleInItsOwnNamespace() throws {
    let plan = try recoveryTestPlan()
    #expect(RecoveryTargetAccess.foreignNamespaces(plan).isEmpty)
    #expect(RecoveryTargetAccess.problem(plan, namespaces: [:]) == nil)
    let a = RecoveryPlanLogic.advance(plan: plan, world: PlanWorld(workloads: up("shop", "web")), now: drillNow)
    #expect(ready(a)?.status == .true)
    #expect(a.actions.contains(.scale(kind: "Deployment", namespace: "shop", name: "web", replicas: 0)))
  }

  @Test func aPlanMayNotScaleAnotherNamespaceThatDidNotOptIn() throws {
    for plan in [try coreDNSPlan(), try coreDNSPlan(targetNamespace: nil, stepNamespace: "kube-system")] {
      let world = PlanWorld(workloads: up("kube-system", "coredns"), targetNamespaces: ["kube-system": [:]])
      let a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow)
      #expect(a.actions.isEmpty)
      #expect(!a.actions.contains { if case .scale = $0 { true } else { false } })
      #expect(a.status.phase == .idle)
      let r = try #require(ready(a))
      #expect(r.status == .false)
      #expect(r.reason == "TargetNamespaceNotAllowed")
      #expect(r.message.contains("dr.botrt.io/recovery-allowed-from"))
      #expect(r.message.contains("kube-system"))
      #expect(a.events.contains { $0.warning && $0.reason == "TargetNamespaceNotAllowed" })
      // The trigger is not handled: the run starts once the namespace allows it.
      #expect(a.status.lastHandledTrigger == nil)
    }
    // A namespace that does not exist is refused too.
    let gone = RecoveryPlanLogic.advance(plan: try coreDNSPlan(), world: PlanWorld(), now: drillNow)
    #expect(ready(gone)?.reason == "TargetNamespaceNotAllowed")
    #expect(gone.actions.isEmpty)
  }

  @Test func theAnnotationMustNameThePlansNamespace() throws {
    let plan = try coreDNSPlan(targetNamespace: "shop-prod")
    func advance(_ value: String) -> PlanAdvance {
      RecoveryPlanLogic.advance(
        plan: plan,
        world: PlanWorld(
          workloads: up("shop-prod", "coredns"),
          targetNamespaces: ["shop-prod": [RecoveryTargetAccess.annotation: value]]),
        now: drillNow)
    }
    let allowed = advance("ops, shop")
    #expect(ready(allowed)?.status == .true)
    #expect(allowed.actions.contains(.scale(kind: "Deployment", namespace: "shop-prod", name: "coredns", replicas: 0)))
    for other in ["ops", "shop-dev,shopx", "", "*"] {
      let refused = advance(other)
      #expect(ready(refused)?.reason == "TargetNamespaceNotAllowed")
      #expect(refused.actions.isEmpty)
    }
    #expect(RecoveryTargetAccess.allows(planNamespace: "shop", annotations: [RecoveryTargetAccess.annotation: "shop"]))
    #expect(!RecoveryTargetAccess.allows(planNamespace: "shop", annotations: ["other": "shop"]))
  }

  @Test func aRunningPlanWhoseTargetRevokesItStopsBeforeScaling() throws {
    let plan = try coreDNSPlan(targetNamespace: "shop-prod")
    let allowed = PlanWorld(
      workloads: up("shop-prod", "coredns"),
      targetNamespaces: ["shop-prod": [RecoveryTargetAccess.annotation: "shop"]])
    var running = plan
    running.status = RecoveryPlanLogic.advance(plan: plan, world: allowed, now: drillNow).status
    #expect(running.status?.phase == .running)
    let a = RecoveryPlanLogic.advance(
      plan: running, world: PlanWorld(workloads: up("shop-prod", "coredns"), targetNamespaces: ["shop-prod": [:]]),
      now: drillNow.addingTimeInterval(5))
    #expect(a.status.phase == .failed)
    #expect(a.actions.isEmpty)
    #expect(a.status.conditions?.condition(RecoveryPlanCondition.succeeded)?.reason == "TargetNamespaceNotAllowed")
  }
}
