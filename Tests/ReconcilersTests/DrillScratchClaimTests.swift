import DRAPI
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// A drill of policy "db" that restores into the claim "drill-scratch" (spec.restore.pvc).
func drillIntoClaim() throws -> DRDrill {
  try decodeResource(
    """
    {"apiVersion": "dr.botrt.io/v1alpha1", "kind": "DRDrill",
     "metadata": {"name": "files-quarterly", "namespace": "shop", "uid": "u-d", "generation": 1},
     "spec": {"schedule": "quarterly", "target": {"backupPolicyRef": {"name": "db"}},
              "restore": {"pvc": {"claimName": "drill-scratch"}}, "verification": {"readData": true}}}
    """)
}

/// Policy "db" with spec.source.pvc.claimName "uploads" instead of its dump command.
func policyOfClaim() throws -> BackupPolicy {
  var p = try recoveryTestPolicy()
  p.spec.source = BackupSource(pvc: PVCSource(claimName: "uploads"))
  return p
}

let sourceClaimJSON: JSONValue = [
  "apiVersion": "v1", "kind": "PersistentVolumeClaim",
  "metadata": ["name": "uploads", "namespace": "shop", "uid": "x", "resourceVersion": "7"],
  "spec": [
    "accessModes": ["ReadWriteMany"], "storageClassName": "fast", "volumeName": "pv-123",
    "resources": ["requests": ["storage": "20Gi"]],
  ],
  "status": ["phase": "Bound"],
]

@Suite struct DrillScratchClaimTests {
  @Test func theSourceClaimIsThePolicysSourceElseTheDrillsClaim() throws {
    let drill = try drillIntoClaim()
    let spec = try DrillLogic.runSpec(drill, plan: nil)
    let fromPolicy = DrillLogic.sourceClaimReference(drill, spec: spec, policy: try policyOfClaim())
    #expect(fromPolicy?.namespace == "shop" && fromPolicy?.name == "uploads")
    let fromDrill = DrillLogic.sourceClaimReference(drill, spec: spec, policy: try recoveryTestPolicy())
    #expect(fromDrill?.name == "drill-scratch")
    // No claim destination: no claim at all.
    let plain = try DrillLogic.runSpec(try drillTestDrill(), plan: nil)
    #expect(DrillLogic.sourceClaimReference(try drillTestDrill(), spec: plain, policy: try policyOfClaim()) == nil)
    #expect(
      try DrillLogic.scratchClaim(
        try drillTestDrill(), spec: plain, namespace: "drill-x", policy: try policyOfClaim(), source: nil) == nil)
  }

  @Test func theScratchClaimIsSizedFromTheSourceClaimAndLabelledAsTheDrills() throws {
    let drill = try drillIntoClaim()
    let spec = try DrillLogic.runSpec(drill, plan: nil)
    let claim = try #require(
      try DrillLogic.scratchClaim(
        drill, spec: spec, namespace: "drill-files-1", policy: try policyOfClaim(), source: sourceClaimJSON))
    #expect(claim.resource == ChildResources.persistentVolumeClaims)
    #expect(claim.namespace == "drill-files-1" && claim.name == "drill-scratch")
    #expect(claim.body[path: "spec", "resources", "requests", "storage"] == "20Gi")
    #expect(claim.body[path: "spec", "accessModes"] == ["ReadWriteMany"])
    #expect(claim.body[path: "spec", "storageClassName"] == "fast")
    // Not bound to the source's volume, and none of its identity is copied.
    #expect(claim.body[path: "spec", "volumeName"] == nil)
    #expect(claim.body[path: "metadata", "uid"] == nil && claim.body["status"] == nil)
    let labels = claim.body[path: "metadata", "labels"]
    #expect(labels?[DrillLogic.drillNameLabel] == "files-quarterly")
    #expect(labels?[DrillLogic.drillNamespaceLabel] == "shop")
    // The run Job mounts the claim of that name, in the same namespace.
    let job = try DrillLogic.runJob(
      drill, spec: spec, namespace: "drill-files-1", settings: ControllerSettings(engineImage: "e:1"),
      policies: ["db": try policyOfClaim()], timeoutSeconds: 600)
    let volumes = job[path: "spec", "template", "spec", "volumes"]?.arrayValue ?? []
    #expect(volumes.contains { $0[path: "persistentVolumeClaim", "claimName"] == "drill-scratch" })
  }

  @Test func withoutAReadableSourceClaimTheSpecIsRefusedNamingTheField() throws {
    let drill = try drillIntoClaim()
    let spec = try DrillLogic.runSpec(drill, plan: nil)
    #expect(throws: SpecError.self) {
      try DrillLogic.scratchClaim(drill, spec: spec, namespace: "d", policy: try policyOfClaim(), source: nil)
    }
    let policy = try policyOfClaim()
    do {
      _ = try DrillLogic.scratchClaim(drill, spec: spec, namespace: "d", policy: policy, source: nil)
      Issue.record("no source claim, yet a scratch claim")
    } catch {
      #expect(error.field == "spec.restore.pvc.claimName")
      #expect(error.message.contains("'uploads'"))
    }
    var unsized = sourceClaimJSON
    unsized["spec"] = ["accessModes": ["ReadWriteOnce"]]
    #expect(throws: SpecError.self) {
      try DrillLogic.scratchClaim(drill, spec: spec, namespace: "d", policy: try policyOfClaim(), source: unsized)
    }
  }
}
