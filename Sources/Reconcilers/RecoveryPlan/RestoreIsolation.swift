import DRAPI
import KubeCore

/// The NetworkPolicy of a RecoveryPlan's restore or verify Job.
///
/// Those Jobs run the engine with the policy's storage and key-service credentials in the plan's namespace, or in the
/// namespace of the claim they restore into: namespaces of the tenant, which no backup-namespace policy covers. Each
/// such Job gets its own NetworkPolicy, selecting its pods by `job-name` (set by the Job controller): they accept no
/// connection, and reach only what the backup pods of the same policy reach (`NetworkIsolation`): DNS, the declared
/// key services, and the source's storage, cloud KMS and Vault endpoints; a restore into a command or a verify with a
/// database query also reaches the pods of the Job's namespace and the declared `database` destinations, as a dump
/// command does; a restore of Kubernetes objects (into.objects) reaches the apiserver (`NetworkIsolation.apiserverRules`). A `job` step runs the plan author's own container, which the controller does not restrict.
///
/// Its lifetime follows the Job's. A Job in the plan's namespace: the policy is applied before the Job, owned by the
/// plan. A Job in another namespace: applied right after the Job, owned by it, and before the Job's Secret copies,
/// which its pod waits for, so no container runs without the policy.
public enum RestoreIsolation {
  /// The NetworkPolicy's name for a Job.
  public static func name(jobName: String) -> String { "\(jobName)-isolation" }

  /// The pod label the Job controller sets to the Job's name.
  public static let jobNameLabel = "job-name"

  /// The policy of a step's Job in `namespace`, or nil for steps that run no engine (job, scale, waitReady).
  public static func networkPolicy(
    _ step: PlannedStep, jobName: String, namespace: String, ctx: RecoveryJobContext, owner: OwnerReference?
  ) throws(SpecError) -> NetworkPolicy? {
    let s = step.step
    var source: BackupPolicy? = nil
    var database = false
    var apiserver = false
    switch s.action {
    case .restore:
      guard let r = s.restore else { return nil }
      let p = try RecoveryJobs.policy(r.policyRef, ctx, field: "\(step.field).restore.policyRef")
      source = try ReplicaSource.policy(p, replica: r.replica, field: "\(step.field).restore.replica")
      database = r.into.command != nil
      apiserver = r.into.objects != nil
    case .verify:
      let v = s.verify ?? VerifyStepSpec()
      if let ref = v.policyRef {
        let p = try RecoveryJobs.policy(ref, ctx, field: "\(step.field).verify.policyRef")
        source = try ReplicaSource.policy(p, replica: v.replica, field: "\(step.field).verify.replica")
      }
      database = v.databaseQuery != nil
    case .job, .scaleDown, .scaleUp, .waitReady:
      return nil
    }
    let settings = ctx.settings
    var egress = NetworkIsolation.sharedEgressRules(settings)
    func add(_ rules: [NetworkPolicyEgressRule]) {
      for r in rules where !egress.contains(r) { egress.append(r) }
    }
    if let source { add(NetworkIsolation.windowRules(source.spec, settings: settings)) }
    if database { add(NetworkIsolation.databaseRules(policyNamespace: namespace, settings: settings)) }
    if apiserver { add(NetworkIsolation.apiserverRules(settings)) }
    var meta = ObjectMeta(name: name(jobName: jobName), namespace: namespace, labels: ctx.labels)
    if let owner { meta.ownerReferences = [owner] }
    return NetworkPolicy(
      metadata: meta,
      spec: NetworkPolicySpec(
        podSelector: LabelSelector(matchLabels: [jobNameLabel: jobName]), policyTypes: ["Ingress", "Egress"],
        egress: egress))
  }
}
