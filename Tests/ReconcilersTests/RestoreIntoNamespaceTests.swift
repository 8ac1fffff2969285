import DRAPI
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// Policy "files" backing up claim "uploads" of namespace "shop", with its claim recorded as `recorded`.
func filesPolicy(recorded: SourceClaimStatus? = nil) throws -> BackupPolicy {
  var p = try recoveryTestPolicy(name: "files")
  p.spec.source = BackupSource(pvc: PVCSource(claimName: "uploads"))
  if let recorded { p.status = BackupPolicyStatus(); p.status?.sourceClaim = recorded }
  return p
}

let recordedUploads = SourceClaimStatus(
  name: "uploads", namespace: "shop", accessModes: ["ReadWriteMany"], storageClassName: "fast",
  volumeMode: "Filesystem", storage: "20Gi", observedTime: drillNow)

/// A plan of namespace "shop" restoring policy "files" into claim "uploads" of `into` (RestorePVC).
func planRestoring(_ into: RestorePVC, targetNamespace: String? = nil) throws -> RecoveryPlan {
  var plan = try recoveryTestPlan()
  plan.spec.targetNamespace = targetNamespace
  plan.spec.procedures = [
    RecoveryProcedure(
      name: "restore",
      steps: [
        RecoveryStep(
          name: "files", action: .restore,
          restore: RestoreStepSpec(policyRef: LocalObjectReference(name: "files"), into: RestoreDestination(pvc: into)))
      ])
  ]
  return plan
}

func planContext(_ plan: RecoveryPlan, policy: BackupPolicy) -> RecoveryJobContext {
  var ctx = RecoveryJobContext(
    settings: ControllerSettings(engineImage: "e:1"), policies: [policy.name: policy], namespace: "shop",
    labels: ["dr.botrt.io/plan-name": plan.name], owner: plan.ownerReference())
  ctx.targetNamespace = plan.spec.targetNamespace
  return ctx
}

@Suite struct RestoreIntoNamespaceTests {
  // MARK: The policy's record of its claim

  @Test func aPolicyRecordsItsSourceClaimAndKeepsItWhenTheClaimIsGone() throws {
    let p = try filesPolicy()
    let claim = try #require(PersistentVolumeClaim(json: sourceClaimJSON))
    let first = try #require(SourceClaimRecord.record(p, claim: claim, previous: nil, now: drillNow))
    #expect(first.name == "uploads" && first.namespace == "shop")
    #expect(first.accessModes == ["ReadWriteMany"] && first.storageClassName == "fast" && first.storage == "20Gi")
    #expect(first.volumeMode == nil && first.observedTime == drillNow)
    // Unchanged: the same record (no status write); the time is when this spec was first seen.
    let later = drillNow.addingTimeInterval(600)
    #expect(SourceClaimRecord.record(p, claim: claim, previous: first, now: later) == first)
    // Resized: a new record.
    var bigger = claim
    bigger.spec?.resources?.requests?["storage"] = "40Gi"
    let resized = SourceClaimRecord.record(p, claim: bigger, previous: first, now: later)
    #expect(resized?.storage == "40Gi" && resized?.observedTime == later)
    // Gone (or unreadable): the last record stays, which is what a restore into a new namespace needs.
    #expect(SourceClaimRecord.record(p, claim: nil, previous: first, now: later) == first)
    // Another claim named: the old record does not describe it.
    var other = p
    other.spec.source.pvc?.claimName = "media"
    #expect(SourceClaimRecord.record(other, claim: nil, previous: first, now: later) == nil)
    // A command source records nothing.
    #expect(SourceClaimRecord.record(try recoveryTestPolicy(), claim: claim, previous: first, now: later) == nil)
  }

  // MARK: Where the claim is

  @Test func theClaimsNamespaceIsTheStepsElseThePlansTargetElseThePlans() throws {
    let own = try planRestoring(RestorePVC(claimName: "uploads"))
    let t0 = try #require(RestoreTarget.of(own.spec.procedures[0].steps[0], plan: own))
    #expect(t0.namespace == "shop" && !t0.foreign)
    let target = try planRestoring(RestorePVC(claimName: "uploads"), targetNamespace: "shop-dr")
    let t1 = try #require(RestoreTarget.of(target.spec.procedures[0].steps[0], plan: target))
    #expect(t1.namespace == "shop-dr" && t1.foreign)
    let step = try planRestoring(RestorePVC(claimName: "uploads", namespace: "shop-b"), targetNamespace: "shop-dr")
    #expect(RestoreTarget.of(step.spec.procedures[0].steps[0], plan: step)?.namespace == "shop-b")
    #expect(RecoveryTargetAccess.foreignNamespaces(step) == ["shop-b", "shop-dr"])
  }

  @Test func aForeignNamespaceMustOptInAsForScaling() throws {
    let plan = try planRestoring(RestorePVC(claimName: "uploads", namespace: "shop-b"))
    let refused = RecoveryPlanLogic.advance(
      plan: plan, world: PlanWorld(targetNamespaces: ["shop-b": [:]]), now: drillNow)
    let ready = refused.status.conditions?.condition(RecoveryPlanCondition.ready)
    #expect(ready?.status == .false && ready?.reason == RecoveryTargetAccess.reason)
    #expect(ready?.message.contains("kubectl annotate namespace shop-b") == true)
    #expect(refused.actions.isEmpty)
    let allowed = RecoveryPlanLogic.advance(
      plan: plan, world: PlanWorld(targetNamespaces: ["shop-b": [RecoveryTargetAccess.annotation: "shop"]]),
      now: drillNow)
    #expect(allowed.actions.count == 1)
    guard case .createJob? = allowed.actions.first else {
      Issue.record("expected the restore Job")
      return
    }
    // The Namespace's change (the annotation set) is what wakes the refused plan: it touches shop-b, not its own.
    let other = try planRestoring(RestorePVC(claimName: "uploads"))
    #expect(RecoveryTargetAccess.plans(touching: "shop-b", among: [plan, other]).map(\.name) == [plan.name])
    #expect(RecoveryTargetAccess.plans(touching: "shop", among: [plan, other]).isEmpty)
  }

  // MARK: The claim created

  @Test func aMissingClaimIsCreatedFromTheRecordWithTheOverrides() throws {
    let t = RestoreTarget(namespace: "shop-b", claimName: "uploads", foreign: true, create: RestoreClaimCreate())
    let labels = RestoreTarget.claimLabels(planNamespace: "shop", planName: "shop-recovery")
    let claim = try t.claim(policy: try filesPolicy(recorded: recordedUploads), labels: labels, field: "f")
    #expect(claim.metadata.namespace == "shop-b" && claim.metadata.name == "uploads")
    #expect(claim.metadata.labels?[ChildLabels.managedBy] == ChildLabels.controllerName)
    #expect(claim.metadata.labels?[RestoreTarget.restoredByLabel] == "shop.shop-recovery")
    #expect(claim.metadata.labels?[RecoveryPlanLabels.planName] == nil, "nothing that follows a plan finds it")
    #expect(claim.metadata.ownerReferences == nil, "the restored data outlives the plan")
    #expect(claim.spec?.accessModes == ["ReadWriteMany"] && claim.spec?.storageClassName == "fast")
    #expect(claim.spec?.volumeMode == "Filesystem" && claim.spec?.resources?.requests == ["storage": "20Gi"])
    #expect(claim.json[path: "spec", "resources", "requests", "storage"] == "20Gi")

    var o = t
    o.create = RestoreClaimCreate(storageClassName: "standard", size: "50Gi", accessModes: ["ReadWriteOnce"])
    let over = try o.claim(policy: try filesPolicy(recorded: recordedUploads), labels: labels, field: "f")
    #expect(over.spec?.accessModes == ["ReadWriteOnce"] && over.spec?.storageClassName == "standard")
    #expect(over.spec?.resources?.requests == ["storage": "50Gi"])
    // Nothing recorded: the size override alone makes a ReadWriteOnce claim of the cluster's default class.
    var sized = t
    sized.create = RestoreClaimCreate(size: "5Gi")
    let bare = try sized.claim(policy: try filesPolicy(), labels: labels, field: "f")
    #expect(bare.spec?.accessModes == ["ReadWriteOnce"] && bare.spec?.storageClassName == nil)
  }

  @Test func noRecordAndNoSizeNamesTheFieldAndWhatToDo() throws {
    let plan = try planRestoring(
      RestorePVC(claimName: "uploads", namespace: "shop-b", create: RestoreClaimCreate(storageClassName: "x")))
    let steps = try RecoveryPlanLogic.steps(plan.spec)
    let policies = ["files": try filesPolicy()]
    // The claim exists (or was not observed): nothing to create, no problem.
    #expect(RestoreTarget.claimProblem(plan, steps: steps, policies: policies, claims: ["shop-b/uploads": true]) == nil)
    #expect(RestoreTarget.claimProblem(plan, steps: steps, policies: policies, claims: [:]) == nil)
    let e = try #require(
      RestoreTarget.claimProblem(plan, steps: steps, policies: policies, claims: ["shop-b/uploads": false]))
    #expect(e.field == "spec.procedures[0].steps[0].restore.into.pvc.create.size")
    #expect(e.message.contains("claim shop-b/uploads does not exist"))
    #expect(e.message.contains("has recorded no source claim yet") && e.message.contains("set into.pvc.create.size"))
    // A command source cannot record one at all.
    let dump = ["files": try recoveryTestPolicy(name: "files")]
    let d = try #require(
      RestoreTarget.claimProblem(plan, steps: steps, policies: dump, claims: ["shop-b/uploads": false]))
    #expect(d.message.contains("backs up a command"))
    // Recorded: fine.
    #expect(
      RestoreTarget.claimProblem(
        plan, steps: steps, policies: ["files": try filesPolicy(recorded: recordedUploads)],
        claims: ["shop-b/uploads": false]) == nil)
  }

  // MARK: The Job where the claim is

  @Test func theRestoreJobRunsInTheClaimsNamespaceWithoutOwnerAndWithSecretCopies() throws {
    let plan = try planRestoring(
      RestorePVC(claimName: "uploads", runAsUser: 0, namespace: "shop-b", create: RestoreClaimCreate()))
    let ctx = planContext(plan, policy: try filesPolicy(recorded: recordedUploads))
    let step = try RecoveryPlanLogic.steps(plan.spec)[0]
    #expect(RecoveryJobs.jobNamespace(step, ctx: ctx) == "shop-b")
    let name = "rp-shop-recovery-abc-0-1"
    let job = try #require(Job(json: try RecoveryJobs.stepJob(step, jobName: name, ctx: ctx)))
    #expect(job.metadata.namespace == "shop-b")
    #expect(job.metadata.ownerReferences == nil, "no owner reference across namespaces")
    #expect(job.metadata.labels?["dr.botrt.io/plan-name"] == plan.name)
    #expect(job.spec?.ttlSecondsAfterFinished == RestoreTarget.ttlSecondsAfterFinished)
    let pod = try #require(job.spec?.template.spec)
    #expect(pod.volumes?.first { $0.name == "restore" }?.persistentVolumeClaim?.claimName == "uploads")
    // Ownership comes back as recorded: root with CHOWN and friends, no fsGroup.
    let c = try #require(pod.containers.first)
    #expect(c.securityContext?.runAsUser == 0 && pod.securityContext?.fsGroup == nil)
    // Set-id bits included (`--keep-setid`), as the CRD says of runAsUser 0; FSETID is among the capabilities.
    #expect(
      c.args?.contains("--keep-setid") == true && c.securityContext?.capabilities?.add?.contains("FSETID") == true)
    // The Secrets it reads are the copies named after the Job, never the target namespace's own names.
    let json = try RecoveryJobs.stepJob(step, jobName: name, ctx: ctx)
    let text = String(decoding: try KubeJSON.encoder().encode(json), as: UTF8.self)
    #expect(text.contains("\"\(name)-s3-creds\"") && text.contains("\"\(name)-vault-token\""))
    #expect(!text.contains("\"s3-creds\""))

    // In the plan's own namespace nothing changes: the plan's Secrets, owned by the plan, no TTL.
    let home = try planRestoring(RestorePVC(claimName: "uploads"))
    let homeJob = try #require(
      Job(
        json: try RecoveryJobs.stepJob(
          try RecoveryPlanLogic.steps(home.spec)[0], jobName: name,
          ctx: planContext(home, policy: try filesPolicy()))))
    #expect(homeJob.metadata.namespace == "shop" && homeJob.metadata.ownerReferences?.first?.kind == "RecoveryPlan")
    #expect(homeJob.spec?.ttlSecondsAfterFinished == nil)
    // Not as root: the engine's user cannot keep set-id bits, and is not asked to.
    #expect(homeJob.spec?.template.spec?.containers.first?.args?.contains("--keep-setid") == false)
  }

  @Test func theSecretCopiesAreOwnedByTheJobAndNameAMissingSecret() throws {
    let owner = OwnerReference(apiVersion: "batch/v1", kind: "Job", name: "rp-x-1", uid: "j", controller: true)
    let secret = Secret(metadata: ObjectMeta(name: "s3-creds", namespace: "shop"), data: ["k": Data("v".utf8)])
    let copies = try RestoreSecretCopies.build(
      names: ["s3-creds"], secrets: ["s3-creds": secret], namespace: "shop-b", jobName: "rp-x-1",
      labels: ["l": "v"], owner: owner, field: "f.policyRef", planNamespace: "shop")
    #expect(copies.count == 1)
    #expect(copies[0].metadata.name == "rp-x-1-s3-creds" && copies[0].metadata.namespace == "shop-b")
    #expect(copies[0].metadata.ownerReferences == [owner] && copies[0].data == ["k": Data("v".utf8)])
    #expect(throws: SpecError.self) {
      try RestoreSecretCopies.build(
        names: ["vault-token"], secrets: [:], namespace: "shop-b", jobName: "rp-x-1", labels: [:], owner: owner,
        field: "f.policyRef", planNamespace: "shop")
    }
    #expect(RestoreTarget.secretCopyName(String(repeating: "s", count: 250), jobName: "rp-x-1").count <= 253)
  }

  @Test func aRepositoryOnAClaimCannotBeOpenedFromAnotherNamespace() throws {
    var p = try recoveryTestPolicy(name: "files", local: true)
    p.spec.source = BackupSource(pvc: PVCSource(claimName: "uploads"))
    let plan = try planRestoring(RestorePVC(claimName: "uploads", namespace: "shop-b"))
    let step = try RecoveryPlanLogic.steps(plan.spec)[0]
    do {
      _ = try RecoveryJobs.stepJob(step, jobName: "j", ctx: planContext(plan, policy: p))
      Issue.record("expected a refusal")
    } catch {
      #expect(error.field == "spec.procedures[0].steps[0].restore.into.pvc.namespace")
      #expect(error.message.contains("repo-pvc"))
    }
  }

  @Test func aDrillRefusesTheNamespaceAndCreateFields() throws {
    var drill = try drillIntoClaim()
    drill.spec.restore?.pvc?.namespace = "elsewhere"
    drill.spec.restore?.pvc?.create = RestoreClaimCreate()
    let fields = SpecValidation.validate(drill.spec).map(\.field)
    #expect(fields.contains("spec.restore.pvc.namespace") && fields.contains("spec.restore.pvc.create"))
  }
}

/// The record of a claim as the apiserver returns it, written as status: no JSON null in the patch (the apiserver
/// refuses a null where the schema says string, e.g. `storageClassName: ""`, a claim bound to a pre-made volume).
@Suite struct SourceClaimStatusPatchTests {
  @Test func aClaimWithoutAClassIsRecordedAsItIs() throws {
    let json = """
      {"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"uploads","namespace":"shop"},
       "spec":{"accessModes":["ReadWriteOnce"],"storageClassName":"","volumeMode":"Filesystem","volumeName":"pv1",
               "resources":{"requests":{"storage":"1Gi"}}},
       "status":{"phase":"Bound","capacity":{"storage":"1Gi"}}}
      """
    let claim = try KubeJSON.decoder().decode(PersistentVolumeClaim.self, from: Data(json.utf8))
    let p = try filesPolicy()
    let record = try #require(SourceClaimRecord.record(p, claim: claim, previous: nil, now: drillNow))
    #expect(record.storageClassName == nil && record.noStorageClass == true)
    #expect(record.volumeMode == "Filesystem" && record.storage == "1Gi")
    var before = BackupPolicyStatus()
    before.lastSnapshot = "s"
    var after = before
    after.sourceClaim = record
    let patch = mergePatch(from: try JSONValue(encoding: before), to: try JSONValue(encoding: after))
    func nulls(_ v: JSONValue, _ path: String) -> [String] {
      switch v {
      case .null: return [path]
      case .object(let o): return o.flatMap { nulls($0.value, path + "." + $0.key) }
      case .array(let a): return a.enumerated().flatMap { nulls($0.element, path + "[\($0.offset)]") }
      default: return []
      }
    }
    #expect(nulls(patch, "status") == [])
    // No empty string either: the 1.20 apiserver reads "" in a new object of a merge patch as null.
    func empties(_ v: JSONValue) -> Bool {
      switch v {
      case .string(let s): return s.isEmpty
      case .object(let o): return o.values.contains(where: empties)
      case .array(let a): return a.contains(where: empties)
      default: return false
      }
    }
    #expect(!empties(patch))
    // A claim created from the record gets the empty class back; an override still wins.
    var t = RestoreTarget(namespace: "shop-b", claimName: "uploads", foreign: true, create: RestoreClaimCreate())
    let labels = RestoreTarget.claimLabels(planNamespace: "shop", planName: "p")
    let created = try t.claim(policy: try filesPolicy(recorded: record), labels: labels, field: "f")
    #expect(created.spec?.storageClassName == "" && created.spec?.volumeMode == "Filesystem")
    t.create = RestoreClaimCreate(storageClassName: "fast")
    #expect(
      try t.claim(policy: try filesPolicy(recorded: record), labels: labels, field: "f").spec?.storageClassName
        == "fast")
  }
}
