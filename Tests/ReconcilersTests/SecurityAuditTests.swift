import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

@Suite struct SecurityAuditTests {
  func entry(_ manager: String, _ operation: String = "Update", _ fields: JSONValue) -> JSONValue {
    [
      "manager": .string(manager), "operation": .string(operation), "apiVersion": "batch/v1",
      "time": "2026-11-27T05:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields,
    ]
  }

  func job(
    owner: (kind: String, uid: String)? = nil, annotations: [String: String] = [:], labels: [String: String] = [:],
    managers: [JSONValue], ownerAPIVersion: String = "batch/v1"
  ) -> JSONValue {
    var meta: [String: JSONValue] = [
      "name": "j", "namespace": "botrt-backup", "managedFields": .array(managers),
      "annotations": .object(annotations.mapValues { .string($0) }),
      "labels": .object(labels.mapValues { .string($0) }),
    ]
    if let owner {
      meta["ownerReferences"] = [
        [
          "apiVersion": .string(ownerAPIVersion), "kind": .string(owner.kind), "name": "c", "uid": .string(owner.uid),
          "controller": true,
        ]
      ]
    }
    return ["metadata": .object(meta), "spec": [:]]
  }

  let specFields: JSONValue = ["f:spec": ["f:template": [:]], "f:metadata": ["f:labels": ["f:a": [:]]]]
  let statusFields: JSONValue = ["f:status": ["f:active": [:]]]

  @Test func jobsAreClassifiedByOwnerAnnotationsAndFieldManagers() {
    let cron: Set<String> = ["cron-uid"]
    // The CronJob controller's Job: content written by kube-controller-manager only.
    let scheduled = job(
      owner: ("CronJob", "cron-uid"),
      managers: [
        entry("kube-controller-manager", "Update", specFields),
        entry("kube-controller-manager", "Update", statusFields),
      ])
    #expect(SecurityAudit.origin(job: scheduled, managedCronJobUIDs: cron) == .scheduled)
    // The controller's audit annotation (metadata only) does not change that.
    let audited = job(
      owner: ("CronJob", "cron-uid"),
      managers: [
        entry("kube-controller-manager", "Update", specFields),
        entry("botrt-controller", "Update", ["f:metadata": ["f:annotations": ["f:dr.botrt.io/audited": [:]]]]),
      ])
    #expect(SecurityAudit.origin(job: audited, managedCronJobUIDs: cron) == .scheduled)
    // kubectl create job --from=cronjob/...
    let manual = job(
      owner: ("CronJob", "cron-uid"), annotations: ["cronjob.kubernetes.io/instantiate": "manual"],
      managers: [entry("kubectl-create", "Update", specFields)])
    #expect(SecurityAudit.origin(job: manual, managedCronJobUIDs: cron) == .manual)
    // A forged owner reference to the controller's CronJob, written by someone else.
    let forged = job(
      owner: ("CronJob", "cron-uid"), managers: [entry("kubectl-client-side-apply", "Update", specFields)])
    #expect(SecurityAudit.origin(job: forged, managedCronJobUIDs: cron) == .foreign)
    // A CronJob that is not the controller's.
    let other = job(owner: ("CronJob", "other"), managers: [entry("kube-controller-manager", "Update", specFields)])
    #expect(SecurityAudit.origin(job: other, managedCronJobUIDs: cron) == .foreign)
    // On-demand: applied by the controller, with the run-token annotation.
    let onDemand = job(
      annotations: [ChildLabels.runToken: "trigger:x"], managers: [entry("botrt-controller", "Apply", specFields)])
    #expect(SecurityAudit.origin(job: onDemand, managedCronJobUIDs: cron) == .onDemand)
    // A PVC source's run Job lives in the policy's namespace, owned by its BackupPolicy: still the controller's.
    func ownedBy(_ kind: String, _ apiVersion: String, _ writer: String) -> JSONValue {
      job(
        owner: (kind, "bp-uid"), annotations: [ChildLabels.runToken: "trigger:x"],
        managers: [entry(writer, "Apply", specFields)], ownerAPIVersion: apiVersion)
    }
    #expect(
      SecurityAudit.origin(
        job: ownedBy("BackupPolicy", "dr.botrt.io/v1alpha1", "botrt-controller"), managedCronJobUIDs: cron)
        == .onDemand)
    // Owned by anything else, or written by someone else, it is not.
    #expect(
      SecurityAudit.origin(job: ownedBy("BackupPolicy", "example.com/v1", "botrt-controller"), managedCronJobUIDs: cron)
        == .foreign)
    #expect(
      SecurityAudit.origin(job: ownedBy("Deployment", "apps/v1", "botrt-controller"), managedCronJobUIDs: cron)
        == .foreign)
    #expect(
      SecurityAudit.origin(
        job: ownedBy("BackupPolicy", "dr.botrt.io/v1alpha1", "kubectl-create"), managedCronJobUIDs: cron)
        == .foreign)
    // The same annotation written by kubectl is not on-demand.
    let fakeOnDemand = job(
      annotations: [ChildLabels.runToken: "trigger:x"], managers: [entry("kubectl-create", "Update", specFields)])
    #expect(SecurityAudit.origin(job: fakeOnDemand, managedCronJobUIDs: cron) == .foreign)
    let bare = job(managers: [entry("kubectl-create", "Update", specFields)])
    #expect(SecurityAudit.origin(job: bare, managedCronJobUIDs: cron) == .foreign)
    // The controller's key rotation, repository deletion and replica copy Jobs are maintenance; the same labels on
    // a Job someone else wrote, or another component label, are not.
    for component in ["rotate-keys", "delete-repository", "replica-copy"] {
      let m = job(
        labels: [ChildLabels.component: component], managers: [entry("botrt-controller", "Apply", specFields)])
      #expect(SecurityAudit.origin(job: m, managedCronJobUIDs: cron) == .maintenance, "\(component)")
      let forgedMaintenance = job(
        labels: [ChildLabels.component: component], managers: [entry("kubectl-create", "Update", specFields)])
      #expect(SecurityAudit.origin(job: forgedMaintenance, managedCronJobUIDs: cron) == .foreign)
    }
    let unlabelled = job(
      labels: [ChildLabels.component: "backup"], managers: [entry("botrt-controller", "Apply", specFields)])
    #expect(SecurityAudit.origin(job: unlabelled, managedCronJobUIDs: cron) == .foreign)
    #expect(RunOrigin.scheduled.expected && RunOrigin.onDemand.expected && RunOrigin.maintenance.expected)
    #expect(!RunOrigin.manual.expected && !RunOrigin.foreign.expected)
  }

  @Test func foreignManagersAreThoseOwningContentOrLabels() {
    let np: JSONValue = [
      "metadata": [
        "managedFields": [
          entry("botrt-controller", "Apply", specFields),
          entry("kubectl-edit", "Update", ["f:spec": ["f:egress": [:]]]),
          entry("kubectl-label", "Update", ["f:metadata": ["f:labels": ["f:x": [:]]]]),
          entry("kubectl-annotate", "Update", ["f:metadata": ["f:annotations": ["f:x": [:]]]]),
        ]
      ]
    ]
    #expect(SecurityAudit.foreignManagers(np) == ["kubectl-edit", "kubectl-label"])
    #expect(SecurityAudit.contentOwners(np) == ["botrt-controller", "kubectl-edit"])
  }

  @Test func refusalsAreKeyIntegrityAndAccessDeniedOnly() {
    #expect(SecurityAudit.refusal(exitCode: 12, errors: ["unwrap failed"]) == "key")
    #expect(SecurityAudit.refusal(exitCode: 13, errors: ["KMS unreachable"]) == "key")
    #expect(SecurityAudit.refusal(exitCode: 3, errors: ["partial backup"]) == nil)
    #expect(SecurityAudit.refusal(exitCode: 5, errors: []) == "integrity")
    #expect(
      SecurityAudit.refusal(exitCode: 4, errors: ["s3 PUT data/x: HTTP 403 AccessDenied: Access Denied"])
        == "access-denied")
    #expect(SecurityAudit.refusal(exitCode: 4, errors: ["no space left on device"]) == nil)
    #expect(SecurityAudit.refusal(exitCode: 1, errors: ["repository is locked"]) == nil)
    #expect(SecurityAudit.refusal(exitCode: 0, errors: []) == nil)
    #expect(SecurityAudit.refusal(exitCode: nil, errors: []) == nil)
  }

  @Test func keyUnwrapsDecodeAsListOrOlderCountOrAbsent() throws {
    let list = try #require(
      EngineResult.parse(
        #"{"command":"backup","ok":true,"exitCode":0,"keyUnwraps":[{"key":"vault-transit://v:8200/transit/k","count":3}],"storageRequests":42}"#
      ))
    #expect(list.keyUnwraps == [EngineResult.KeyUnwrap(key: "vault-transit://v:8200/transit/k", count: 3)])
    #expect(list.storageRequests == 42)
    let old = try #require(EngineResult.parse(#"{"command":"backup","ok":true,"keyUnwraps":2,"keyWraps":1}"#))
    #expect(old.keyUnwraps == [EngineResult.KeyUnwrap(key: "", count: 2)])
    let none = try #require(EngineResult.parse(#"{"command":"backup","ok":true}"#))
    #expect(none.keyUnwraps == nil)
    #expect(none.storageRequests == nil)
    #expect(none.ok == true)
  }

  @Test func newestResultPrefersAContainerThatWroteOne() {
    func pod(_ statuses: [JSONValue]) -> JSONValue { ["status": ["containerStatuses": .array(statuses)]] }
    func terminated(_ name: String, _ at: String, _ code: Int64, _ message: String?) -> JSONValue {
      var t: [String: JSONValue] = ["exitCode": .int(code), "finishedAt": .string(at)]
      if let message { t["message"] = .string(message) }
      return ["name": .string(name), "state": ["terminated": .object(t)]]
    }
    let r = SecurityAudit.newestResult(pods: [
      pod([terminated("backup", "2026-11-27T05:00:00Z", 3, #"{"command":"backup","ok":false,"exitCode":3}"#)]),
      pod([terminated("sidecar", "2026-11-27T05:00:10Z", 0, "done")]),
    ])
    #expect(r?.result?.exitCode == 3)
    #expect(r?.exitCode == 3)
    let none = SecurityAudit.newestResult(pods: [pod([terminated("x", "2026-11-27T05:00:00Z", 137, nil)])])
    #expect(none?.result == nil)
    #expect(none?.exitCode == 137)
    #expect(SecurityAudit.newestResult(pods: []) == nil)
  }

  @Test func isolationGuardComparesContentAndLabels() {
    let want = BackupPolicyChildren.sharedNetworkPolicies(namespace: "b", settings: settings())[0].body
    var live = want
    live["metadata"]?["resourceVersion"] = "7"
    #expect(IsolationGuard.matches(live, want))
    var widened = live
    widened["spec"]?["egress"] = [[:]]
    #expect(!IsolationGuard.matches(widened, want))
    var relabelled = live
    relabelled["metadata"]?["labels"]?[ChildLabels.managedBy] = "someone"
    #expect(!IsolationGuard.matches(relabelled, want))
  }

  @Test func intentRecordsOnlyIsolationObjectsAndForgets() {
    let intent = IsolationIntent()
    for c in BackupPolicyChildren.sharedNetworkPolicies(namespace: "b", settings: settings()) { intent.record(c) }
    intent.record(DesiredChild(resource: ChildResources.secrets, namespace: "b", name: "s", body: [:]))
    #expect(intent.wanted(ChildResources.networkPolicies, namespace: "b", name: SharedChildNames.defaultDeny) != nil)
    #expect(intent.wanted(ChildResources.secrets, namespace: "b", name: "s") == nil)
    intent.forget(ChildResources.networkPolicies, namespace: "b", name: SharedChildNames.defaultDeny)
    #expect(intent.wanted(ChildResources.networkPolicies, namespace: "b", name: SharedChildNames.defaultDeny) == nil)
    intent.forget(namespace: "b")
    #expect(intent.wanted(ChildResources.networkPolicies, namespace: "b", name: SharedChildNames.allowIngress) == nil)
  }
}
