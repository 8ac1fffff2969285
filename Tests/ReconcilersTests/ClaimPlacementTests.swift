import DRAPI
import Foundation
import KubeCore
import KubeRuntime
import Testing

@testable import Reconcilers

/// RWO placement (ClaimPlacement.decide) on a cluster of two nodes: node-a and node-b (tainted
/// dedicated=db:NoSchedule). The affinity names the node by its name (`matchFields` on `metadata.name`).
@Suite struct ClaimPlacementTests {
  let dbToleration = Toleration(key: "dedicated", operator: "Equal", value: "db", effect: "NoSchedule")
  let rwo = ["ReadWriteOnce"]

  func pod(
    _ name: String, on node: String?, claims: [String] = ["uploads"], phase: String? = "Running",
    tolerations: [Toleration] = [], namespace: String = "shop", managed: Bool = false, terminating: Bool = false
  ) -> ClaimUserPod {
    ClaimUserPod(
      name: name, namespace: namespace, resourceVersion: "1", nodeName: node, tolerations: tolerations,
      claimNames: claims, phase: phase, terminating: terminating, managed: managed)
  }

  func decide(_ modes: [String]?, _ pods: [ClaimUserPod]) -> ClaimPlacement.Decision {
    ClaimPlacement.decide(claim: "uploads", namespace: "shop", accessModes: modes, pods: pods)
  }

  /// The node names of the required node affinity, or nil without one.
  func hosts(_ d: ClaimPlacement.Decision) -> [String]? {
    guard let terms = d.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms
    else { return nil }
    #expect(terms.count == 1)
    #expect(terms.first?.matchExpressions == nil)
    #expect(terms.first?.matchFields?.map(\.key) == [ClaimPlacement.nodeNameField])
    #expect(terms.first?.matchFields?.map(\.operator) == ["In"])
    return terms.first?.matchFields?.first?.values
  }

  @Test func aPodOnNodeAPinsTheBackupToNodeAByItsName() {
    let d = decide(rwo, [pod("app-1", on: "node-a")])
    #expect(hosts(d) == ["node-a"])
    #expect(d.tolerations == nil)
    #expect(d.status == BackupPlacementStatus(node: "node-a", pod: "app-1", message: d.status?.message))
    #expect(
      d.status?.message == "The backup runs on node node-a, where pod app-1 mounts the ReadWriteOnce claim uploads.")
  }

  @Test func aPodOnTheTaintedNodeBGivesItsTolerations() {
    let d = decide(rwo, [pod("app-1", on: "node-b", tolerations: [dbToleration])])
    #expect(hosts(d) == ["node-b"])
    #expect(d.tolerations == [dbToleration])
    #expect(d.status?.node == "node-b")
  }

  @Test func noPodMeansAnywhere() {
    #expect(decide(rwo, []) == .anywhere)
    // Pods of other claims, of other namespaces, not scheduled yet, and the controller's own backup pods.
    let others = [
      pod("other", on: "node-a", claims: ["logs"]), pod("elsewhere", on: "node-a", namespace: "bank"),
      pod("pending", on: nil, phase: "Pending"), pod("botrt-backup", on: "node-b", managed: true),
    ]
    #expect(decide(rwo, others) == .anywhere)
  }

  @Test func aFinishedPodMeansAnywhere() {
    #expect(decide(rwo, [pod("job-1", on: "node-a", phase: "Succeeded")]) == .anywhere)
    #expect(decide(rwo, [pod("job-2", on: "node-b", phase: "Failed", tolerations: [dbToleration])]) == .anywhere)
  }

  @Test func aReadWriteManyClaimRunsAnywhereEvenWithPodsOnTwoNodes() {
    let pods = [pod("web-1", on: "node-a"), pod("web-2", on: "node-b", tolerations: [dbToleration])]
    #expect(decide(["ReadWriteMany"], pods) == .anywhere)
    #expect(decide(["ReadOnlyMany"], pods) == .anywhere)
    #expect(decide(["ReadWriteOnce", "ReadWriteMany"], pods) == .anywhere)
  }

  @Test func aReadWriteOncePodClaimIsPinnedAndSaysItWaits() {
    let d = decide(["ReadWriteOncePod"], [pod("db-0", on: "node-b", tolerations: [dbToleration])])
    #expect(hosts(d) == ["node-b"])
    #expect(d.tolerations == [dbToleration])
    #expect(d.status?.message?.contains("mounts the ReadWriteOncePod claim uploads") == true)
    #expect(d.status?.message?.contains("waits until db-0 releases it") == true)
  }

  @Test func unknownAccessModesFollowThePod() {
    #expect(hosts(decide(nil, [pod("app-1", on: "node-a")])) == ["node-a"])
    #expect(hosts(decide([], [pod("app-1", on: "node-a")])) == ["node-a"])
  }

  @Test func whileAPodMovesTheRunningOneIsFollowed() {
    // The new pod is Pending on node-b (Multi-Attach) while the old one terminates on node-a: the volume is still
    // on node-a. Once the old one is gone, node-b.
    let old = pod("app-old", on: "node-a", terminating: true)
    let new = pod("app-new", on: "node-b", phase: "Pending", tolerations: [dbToleration])
    #expect(hosts(decide(rwo, [new, old])) == ["node-a"])
    #expect(hosts(decide(rwo, [new])) == ["node-b"])
    // Two running pods (one terminating): the one that is not.
    let running = pod("app-new", on: "node-b", tolerations: [dbToleration])
    #expect(hosts(decide(rwo, [old, running])) == ["node-b"])
  }

  @Test func theTemplateGetsTheAffinityAndTolerationsAndLosesThemAgain() throws {
    var p = try filesPolicy()
    p.metadata.generation = 1
    let eff = try EffectivePolicy(spec: p.spec, now: testNow)
    let pinned = decide(rwo, [pod("app-1", on: "node-b", tolerations: [dbToleration])])
    func templates(_ placement: ClaimPlacement.Decision) throws -> [PodSpec] {
      let cs = try BackupPolicyChildren.build(
        ChildInputs(
          policy: p, effective: eff, settings: settings(), secrets: allSecrets,
          runToken: "trigger:now", placement: placement))
      let names = ChildNames(namespace: "shop", name: p.name)
      let cron = try #require(child(cs, "CronJob", names.backupCronJob))
      let job = try #require(child(cs, "Job", names.runJob(token: "trigger:now")))
      let prune = try #require(child(cs, "CronJob", names.pruneCronJob))
      return try [
        #require(CronJob(json: cron.body)?.spec?.jobTemplate.spec?.template.spec),
        #require(Job(json: job.body)?.spec?.template.spec),
        #require(CronJob(json: prune.body)?.spec?.jobTemplate.spec?.template.spec),
      ]
    }
    let on = try templates(pinned)
    for spec in on.prefix(2) {
      #expect(spec.affinity == pinned.affinity)
      #expect(spec.tolerations == [dbToleration])
    }
    // The prune CronJob does not mount the claim: it runs anywhere.
    #expect(on[2].affinity == nil && on[2].tolerations == nil)
    for spec in try templates(.anywhere) {
      #expect(spec.affinity == nil && spec.tolerations == nil)
    }
  }

  @Test func onlyPolicyRelevantPodChangesWakePolicies() throws {
    let policy = try filesPolicy()
    var other = try filesPolicy()
    other.metadata.name = "logs"
    other.spec.source = BackupSource(pvc: PVCSource(claimName: "logs"))
    let p = pod("app-1", on: "node-a")
    #expect(ClaimPlacement.policies(mountedBy: p, among: [policy, other]) == [ObjectKey(policy)])
    #expect(ClaimPlacement.policies(mountedBy: pod("x", on: "node-a", managed: true), among: [policy]).isEmpty)
    #expect(ClaimPlacement.policies(mountedBy: pod("x", on: "node-a", namespace: "bank"), among: [policy]).isEmpty)
    // A status-only change (a new resourceVersion) is no change; a move or a finish is.
    var same = p
    same.metadata.resourceVersion = "2"
    #expect(!ClaimUserPod.placementChanged(same, old: p))
    #expect(ClaimUserPod.placementChanged(pod("app-1", on: "node-b"), old: p))
    #expect(ClaimUserPod.placementChanged(pod("app-1", on: "node-a", phase: "Succeeded"), old: p))
    #expect(ClaimUserPod.placementChanged(p, old: nil))
  }

  @Test func aPodIsDecodedToTheFewFieldsPlacementReads() throws {
    let json = """
      {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "app-1", "namespace": "shop", "resourceVersion": "42", "uid": "u1",
                    "labels": {"app": "web"}, "annotations": {"big": "\(String(repeating: "x", count: 500))"},
                    "managedFields": [{"manager": "kubectl"}]},
       "spec": {"nodeName": "node-b", "containers": [{"name": "web", "image": "nginx", "env": [{"name": "A"}]}],
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "uploads"}},
                            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                            {"name": "cfg", "configMap": {"name": "c"}}]},
       "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
      """
    let p = try JSONDecoder().decode(ClaimUserPod.self, from: Data(json.utf8))
    #expect(p.name == "app-1" && p.metadata.namespace == "shop" && p.metadata.resourceVersion == "42")
    #expect(p.metadata.uid == nil && p.metadata.labels == nil && p.metadata.annotations == nil)
    #expect(p.metadata.managedFields == nil)
    #expect(p.nodeName == "node-b" && p.phase == "Running" && !p.terminating && !p.managed)
    #expect(p.claimNames == ["uploads", "app-1-scratch"])
    #expect(p.tolerations == [dbToleration])
    // Encoding gives the same value back.
    #expect(try JSONDecoder().decode(ClaimUserPod.self, from: JSONEncoder().encode(p)) == p)
    // A pod without claims keeps only its name: no node, no tolerations.
    let bare = try JSONDecoder().decode(
      ClaimUserPod.self,
      from: Data(
        #"{"metadata": {"name": "b", "namespace": "shop", "deletionTimestamp": "2026-01-01T00:00:00Z", "labels": {"app.kubernetes.io/managed-by": "botrt-controller"}}, "spec": {"nodeName": "node-a", "tolerations": [{"operator": "Exists"}]}}"#
          .utf8))
    #expect(bare.nodeName == nil && bare.tolerations.isEmpty && bare.claimNames.isEmpty && bare.terminating)
    #expect(try JSONDecoder().decode(ClaimUserPod.self, from: JSONEncoder().encode(bare)) == bare)
  }
}
