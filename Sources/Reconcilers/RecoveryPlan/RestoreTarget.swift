import DRAPI
import Foundation
import KubeCore

/// Where a restore step's claim is: its namespace (`into.pvc.namespace`, else the plan's spec.targetNamespace, else
/// the plan's namespace), and whether that is another namespace than the plan's.
///
/// A restore into another namespace runs its Job there (a Pod mounts only claims of its own namespace), which an
/// owner reference cannot follow across namespaces: the Job carries the plan's labels and `ttlSecondsAfterFinished`,
/// and the copies of the policy's Secrets it reads (named after the Job, `secretCopyName`) are owned by the Job, so
/// the garbage collector removes them with it. A claim the step creates (`into.pvc.create`) is the user's restored
/// data: labelled as BotRT's, never deleted; an existing claim is never changed.
public struct RestoreTarget: Sendable, Hashable {
  /// The claim's namespace, where the Job runs.
  public var namespace: String
  /// The claim.
  public var claimName: String
  /// Not the plan's namespace.
  public var foreign: Bool
  /// Create the claim when it is missing, with these overrides.
  public var create: RestoreClaimCreate?
  /// The claim of a multi-claim policy the step restores (`restore.claim`): a missing claim is created from its
  /// record in the policy's status.claims.
  public var sourceClaim: String? = nil

  /// "namespace/claim", the key of `PlanWorld.claims`.
  public var key: String { "\(namespace)/\(claimName)" }

  /// A restore of Kubernetes objects (into.objects): no claim, only the namespace they are created in, where the
  /// Job runs.
  public var objects: Bool = false

  /// The target of a restore into a claim, or of Kubernetes objects into a namespace (nil for a command restore or
  /// none).
  public static func of(_ r: RestoreStepSpec, planNamespace: String, targetNamespace: String?) -> RestoreTarget? {
    if let o = r.into.objects {
      let ns = o.namespace ?? targetNamespace ?? planNamespace
      return RestoreTarget(
        namespace: ns, claimName: "", foreign: ns != planNamespace, create: nil, sourceClaim: r.claim, objects: true)
    }
    guard let pvc = r.into.pvc else { return nil }
    let ns = pvc.namespace ?? targetNamespace ?? planNamespace
    return RestoreTarget(
      namespace: ns, claimName: pvc.claimName, foreign: ns != planNamespace, create: pvc.create, sourceClaim: r.claim)
  }

  /// The target of a plan's restore step (nil for other steps and command restores).
  public static func of(_ step: RecoveryStep, plan: RecoveryPlan) -> RestoreTarget? {
    guard step.action == .restore, let r = step.restore else { return nil }
    return of(r, planNamespace: plan.metadata.namespace ?? "default", targetNamespace: plan.spec.targetNamespace)
  }

  /// How long a finished Job in another namespace (and its Secret copies) stays for its logs: an hour.
  public static let ttlSecondsAfterFinished: Int64 = 3_600

  /// The name of the copy of Secret `source` that the Job `jobName` reads in the target namespace: named after the
  /// Job, so it never takes the name of a Secret of the target namespace's own, and each attempt has its own.
  public static func secretCopyName(_ source: String, jobName: String) -> String {
    let n = "\(jobName)-\(source)"
    return n.count <= 253 ? n : "\(jobName)-\(shortHash(source))"
  }

  /// Labels of a claim the restore created: BotRT's, naming the plan that restored into it (no plan-name label, so
  /// nothing that follows a plan's children ever finds it).
  public static func claimLabels(planNamespace: String, planName: String) -> [String: String] {
    [
      ChildLabels.managedBy: ChildLabels.controllerName, "component": "disaster-recovery",
      restoredByLabel: String("\(planNamespace).\(planName)".prefix(63)).trimmingCharacters(
        in: CharacterSet(charactersIn: "-._")),
    ]
  }

  /// The label of a created claim naming the plan ("NAMESPACE.NAME", cut to 63 characters).
  public static let restoredByLabel = "dr.botrt.io/restored-by"

  /// The claim to create when it is missing: the policy's recorded source claim (`status.sourceClaim`) with the
  /// overrides of `into.pvc.create`. Throws naming FIELD.into.pvc.create.size when neither gives a size.
  public func claim(policy: BackupPolicy, labels: [String: String], field: String) throws(SpecError)
    -> PersistentVolumeClaim
  {
    let create = self.create ?? RestoreClaimCreate()
    let recorded =
      policy.spec.source.claims != nil
      ? policy.status?.claims?.first { $0.name == sourceClaim }?.claim : policy.status?.sourceClaim
    guard let size = create.size ?? recorded?.storage, !size.isEmpty else {
      let why =
        policy.spec.source.claims != nil
        ? "has recorded no claim '\(sourceClaim ?? "")' (status.claims[].claim: the controller records each claim it "
          + "selects once it has read it)"
        : policy.spec.source.pvc == nil
          ? "backs up a command, not a claim, so it recorded no claim to copy"
          : "has recorded no source claim yet (status.sourceClaim: the controller records it once it has read claim "
            + "'\(policy.spec.source.pvc?.claimName ?? "")')"
      throw SpecError(
        field: "\(field).into.pvc.create.size",
        message: "claim \(namespace)/\(claimName) does not exist and BackupPolicy '\(policy.name)' \(why); set "
          + "into.pvc.create.size (e.g. 10Gi), or create the claim yourself")
    }
    let modes = create.accessModes ?? recorded?.accessModes
    return PersistentVolumeClaim(
      metadata: ObjectMeta(name: claimName, namespace: namespace, labels: labels),
      spec: PersistentVolumeClaimSpec(
        accessModes: (modes?.isEmpty ?? true) ? ["ReadWriteOnce"] : modes,
        storageClassName: create.storageClassName ?? recorded?.storageClassName
          ?? (recorded?.noStorageClass == true ? "" : nil),
        volumeMode: recorded?.volumeMode, resources: ContainerResources(requests: ["storage": size])))
  }

  /// Why a restore Job in this target cannot open the policy's repository, or nil: a local repository on a claim
  /// is mounted by the Job, and a claim of the plan's namespace cannot be mounted in another.
  public func repositoryProblem(policy: BackupPolicy, field: String) -> SpecError? {
    guard foreign, let claim = policy.spec.repository.local?.claimName else { return nil }
    return SpecError(
      field: "\(field).into.\(objects ? "objects" : "pvc").namespace",
      message: "BackupPolicy '\(policy.name)' keeps its repository on claim '\(claim)' of namespace "
        + "\(policy.metadata.namespace ?? ""), which a restore Job in namespace \(namespace) cannot mount; restore "
        + "in the policy's namespace, or keep the repository in object storage")
  }
}

/// The copies of the policy's Secrets a restore Job in another namespace reads: named after the Job
/// (`RestoreTarget.secretCopyName`), labelled as the plan's, and owned by the Job (`owner`, once it exists) so they
/// go with it.
public enum RestoreSecretCopies {
  /// Throws naming `field` when a Secret the restore needs does not exist in the plan's namespace.
  public static func build(
    names: [String], secrets: [String: Secret], namespace: String, jobName: String, labels: [String: String],
    owner: OwnerReference?, field: String, planNamespace: String
  ) throws(SpecError) -> [Secret] {
    var out: [Secret] = []
    for name in names {
      guard let s = secrets[name] else {
        throw SpecError(
          field: field,
          message: "Secret '\(name)' that the restore needs does not exist in namespace \(planNamespace)")
      }
      var meta = ObjectMeta(
        name: RestoreTarget.secretCopyName(name, jobName: jobName), namespace: namespace, labels: labels)
      if let owner { meta.ownerReferences = [owner] }
      out.append(Secret(metadata: meta, data: s.data ?? [:], type: s.type ?? "Opaque"))
    }
    return out
  }
}

extension RestoreTarget {
  /// The condition reason of a plan whose restore cannot create its claim.
  public static let claimProblemReason = "CannotCreateClaim"

  /// The first restore step that would create its claim (`into.pvc.create`, the claim observed missing in
  /// `claims`) but cannot build it, as the error naming the field; nil when every such claim can be created.
  public static func claimProblem(
    _ plan: RecoveryPlan, steps: [PlannedStep], policies: [String: BackupPolicy], claims: [String: Bool]
  ) -> SpecError? {
    for step in steps {
      guard let t = of(step.step, plan: plan), t.create != nil, claims[t.key] == false,
        let r = step.step.restore, let p = policies[r.policyRef.name]
      else { continue }
      do {
        _ = try t.claim(policy: p, labels: [:], field: "\(step.field).restore")
      } catch {
        return error
      }
    }
    return nil
  }
}
