import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// Security checks and compliance that are measured, not assumed (issue 13 B).
@Suite struct MeasuredSecurityTests {
  let now = Date(timeIntervalSince1970: 1_800_000_000)

  func binding(_ name: String, kind: String = "Role", role: String, sa: String, ns: String) -> JSONValue {
    [
      "metadata": ["name": .string(name), "namespace": .string(ns)],
      "roleRef": ["apiGroup": "rbac.authorization.k8s.io", "kind": .string(kind), "name": .string(role)],
      "subjects": [["kind": "ServiceAccount", "name": .string(sa), "namespace": .string(ns)]],
    ]
  }

  @Test func rbacIsComparedWithWhatTheBuildersDeclare() throws {
    let policy = try recoveryTestPolicy()
    let settings = ControllerSettings(engineImage: "e:1")
    let d = try BackupPolicyChildren.declaredRBAC(policy, settings: settings)
    // The declared Role is the one `build` returns, and the declared binding the one `runAccess` returns.
    let built = try BackupPolicyChildren.build(
      ChildInputs(
        policy: policy, effective: try EffectivePolicy(spec: policy.spec, now: now), settings: settings,
        secrets: allSecrets))
    let role = try #require(built.first { $0.resource == ChildResources.roles })
    #expect(role.name == d.role && role.namespace == d.namespace)
    #expect(role.body["rules"]?.arrayValue == d.rules)
    let rb = try #require(
      BackupPolicyChildren.runAccess(policy, settings: settings).first {
        $0.resource == ChildResources.roleBindings
      })
    #expect(rb.name == d.roleBinding)

    // As declared: within, with or without the run's binding.
    #expect(d.widerThanDeclared(role: role.body, bindings: []) == nil)
    #expect(d.widerThanDeclared(role: role.body, bindings: [rb.body]) == nil)
    // A rule added to the Role.
    var wider = role.body
    wider["rules"] = .array(d.rules + [["apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]]])
    #expect(d.widerThanDeclared(role: wider, bindings: [rb.body])?.contains("rules") == true)
    // Another binding naming the ServiceAccount, to a ClusterRole.
    let extra = binding("extra", kind: "ClusterRole", role: "cluster-admin", sa: d.serviceAccount, ns: d.namespace)
    #expect(d.widerThanDeclared(role: role.body, bindings: [rb.body, extra])?.contains("cluster-admin") == true)
    // The declared binding pointed at another Role.
    let moved = binding(d.roleBinding, role: "edit", sa: d.serviceAccount, ns: d.namespace)
    #expect(d.widerThanDeclared(role: role.body, bindings: [moved]) != nil)
    // Bindings of other subjects do not matter.
    let other = binding("other", kind: "ClusterRole", role: "cluster-admin", sa: "someone-else", ns: d.namespace)
    #expect(d.widerThanDeclared(role: role.body, bindings: [other]) == nil)
  }

  @Test func encryptionAndSignaturesAreToldApartFromTheRun() {
    let start = now
    #expect(DrillLogic.runEvidence(nil) == (nil, nil))
    // A restore that read data and a verify that passed: both.
    let ok = DrillLogic.runEvidence(drillJob(start: start, verifySeconds: 60))
    #expect(ok == (true, true))
    // A verify that found a damaged pack: the manifests verified, the data did not decrypt.
    let damaged = DrillLogic.runEvidence(drillJob(start: start, verifySeconds: 60, verifyExit: 1))
    #expect(damaged == (false, true))
    // An empty snapshot: signatures verified, nothing decrypted.
    let empty = DrillLogic.runEvidence(drillJob(start: start, verifySeconds: 60, bytes: 0))
    #expect(empty == (false, true))
    // A failed restore: neither.
    var failed = drillJob(start: start, verifySeconds: 60)
    failed.containers["restore"] = .init(exitCode: 1, message: #"{"command":"restore","ok":false}"#, finishedAt: start)
    #expect(DrillLogic.runEvidence(failed) == (false, false))
  }

  @Test func byDesignTargetsAreNotCountedAsMet() throws {
    var p = try recoveryTestPolicy()
    p.spec.compliance = [.hipaa]
    p.status = BackupPolicyStatus(lastSuccessfulBackup: now.addingTimeInterval(-60))
    let results = ComplianceEvaluation.policy(p, drills: nil, now: now)
    let logging = try #require(results.first { $0.id == "hipaa.access-logging" })
    #expect(logging.outcome == .byDesign)
    #expect(logging.sentence.contains("by design, not measured"))
    #expect(logging.evidence.contains("RecoveryPlans and DRDrills is not counted"))
    let (status, _, message) = ComplianceEvaluation.summary(results)
    #expect(status == .true)
    #expect(message.contains("All 1 measured targets met (of 2)"))
    #expect(message.contains("1 by design, not measured, and not counted as met"))
    // Only by-design results: nothing is measured, so not met.
    let (only, reason, _) = ComplianceEvaluation.summary([logging])
    #expect(only == .unknown && reason == "NothingMeasured")
  }

  @Test func gdprErasureStatesItsConflictWithRetention() throws {
    var p = try recoveryTestPolicy()
    p.spec.compliance = [.gdpr]
    let results = ComplianceEvaluation.policy(p, drills: nil, now: now)
    let erasure = try #require(results.first { $0.id == "gdpr.erasure" })
    #expect(erasure.outcome == .byDesign)
    #expect(erasure.evidence.contains("conflict with the retention"))
    let report = ComplianceReport.targetLine(erasure)
    #expect(report.contains("by design, not measured"))
  }
}
