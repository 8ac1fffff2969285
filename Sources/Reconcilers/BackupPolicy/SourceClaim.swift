import DRAPI
import Foundation
import KubeCore

/// The source claim a PVC-source policy records in `status.sourceClaim`, so that a RecoveryPlan restore
/// (`into.pvc.create`) can create the claim again where it is missing, even once the original is gone.
public enum SourceClaimRecord {
  /// The claim the policy backs up, or nil for a command source.
  public static func claimName(_ policy: BackupPolicy) -> String? {
    guard let name = policy.spec.source.pvc?.claimName, !name.isEmpty else { return nil }
    return name
  }

  /// The new `status.sourceClaim` from the claim as read (`claim`: nil when it does not exist or cannot be read).
  /// A claim that cannot be read keeps the previous record of the same claim (a lost namespace is what the record
  /// is for); the record's time changes only when the claim's spec does, so an unchanged claim writes no status.
  public static func record(
    _ policy: BackupPolicy, claim: PersistentVolumeClaim?, previous: SourceClaimStatus?, now: Date
  ) -> SourceClaimStatus? {
    guard let name = claimName(policy) else { return nil }
    return record(
      name: name, namespace: policy.metadata.namespace ?? "default", claim: claim, previous: previous, now: now)
  }

  /// The record of claim `name` in `ns` (one claim of a multi-claim source, status.claims[].claim), as `record`.
  public static func record(
    name: String, namespace ns: String, claim: PersistentVolumeClaim?, previous: SourceClaimStatus?, now: Date
  ) -> SourceClaimStatus? {
    let kept = previous.flatMap { $0.name == name && $0.namespace == ns ? $0 : nil }
    guard let claim, let spec = claim.spec else { return kept }
    var seen = SourceClaimStatus(
      name: name, namespace: ns, accessModes: spec.accessModes.flatMap { $0.isEmpty ? nil : $0 },
      storageClassName: spec.storageClassName.flatMap { $0.isEmpty ? nil : $0 },
      noStorageClass: spec.storageClassName == "" ? true : nil,
      volumeMode: spec.volumeMode.flatMap { $0.isEmpty ? nil : $0 },
      storage: spec.resources?.requests?["storage"])
    seen.observedTime = kept?.observedTime
    if seen == kept { return kept }
    seen.observedTime = now
    return seen
  }
}
