import DRAPI
import Foundation
import KubeCore

/// Restores and verifies from one of a policy's replicas instead of its primary repository (a RecoveryPlan's
/// `restore.replica` and `verify.replica`, a DRDrill's `target.replica`): for when the primary's region is down.
///
/// The Job opens the replica's repository with the replica's keys, as the replica's copies and rotations do
/// (`ReplicaKeyRotation.virtualPolicy`): `ReplicaInvocation.targetSpec` (its repository, its encryption or the
/// policy's, the policy's CAs) and the key it was last rewrapped under (status.replicas[].currentKey). The virtual
/// policy's status is the replica's: its own pins (status.replicas[].repositoryIdentity, recorded from its first
/// copy) are passed as `--expect-repository-id`/`--expect-signing-key`, so a replica replaced under the same
/// location is refused; the primary's pins (status.repositoryIdentity) never reach it.
///
/// Snapshots: `latest` (and `beforeTime`) select among the replica's own snapshots. A snapshot id is the primary's
/// id of the replica's newest copy (status.replicas[].lastCopiedSnapshot) when it is one, mapped to the copy's id
/// in the replica (status.replicas[].replicaSnapshot); any other id is taken as an id in the replica's repository.
/// The primary's newest snapshot that the replica holds no copy of is refused with a message saying so.
public enum ReplicaSource {
  /// The replica named `name` in the policy, or a SpecError under `field` naming the policy's replicas.
  public static func replica(_ policy: BackupPolicy, name: String, field: String) throws(SpecError) -> (
    index: Int, spec: ReplicaSpec, status: ReplicaStatus
  ) {
    let replicas = policy.spec.replicas ?? []
    guard let index = replicas.firstIndex(where: { $0.name == name }) else {
      let known = replicas.map { "'\($0.name)'" }.joined(separator: ", ")
      throw SpecError(
        field: field,
        message: "BackupPolicy '\(policy.name)' has no replica '\(name)': "
          + (known.isEmpty ? "its spec.replicas is empty" : "its spec.replicas names \(known)"))
    }
    let status = policy.status?.replicas?.first { $0.name == name } ?? ReplicaStatus(name: name)
    return (index, replicas[index], status)
  }

  /// The policy whose repository the Job opens: `policy` itself, or for a replica the policy the replica's
  /// repository would be as a policy of its own (with the replica's status: its pins and current key, never the
  /// primary's pins).
  public static func policy(_ policy: BackupPolicy, replica: String?, field: String) throws(SpecError)
    -> BackupPolicy
  {
    guard let name = replica else { return policy }
    let r = try Self.replica(policy, name: name, field: field)
    return ReplicaKeyRotation.virtualPolicy(policy, replica: r.spec, status: r.status)
  }

  /// The engine invocation of the repository a restore or verify opens; a replica's spec errors are named under
  /// spec.replicas[i] of the policy.
  public static func invocation(
    _ policy: BackupPolicy, replica: String?, field: String, secretName: (String) -> String
  ) throws(SpecError) -> EngineInvocation {
    guard let name = replica else { return try EngineInvocation(policy: policy, secretName: secretName) }
    let r = try Self.replica(policy, name: name, field: field)
    let v = ReplicaKeyRotation.virtualPolicy(policy, replica: r.spec, status: r.status)
    do {
      return try EngineInvocation(policy: v, secretName: secretName)
    } catch {
      throw SpecError(
        field: ReplicaInvocation.fieldName(error.field, index: r.index, ownEncryption: r.spec.encryption != nil),
        message: "BackupPolicy '\(policy.name)': \(error.message)")
    }
  }

  /// The snapshot to ask the replica's repository for: nil and `latest` unchanged; the primary's id of the replica's
  /// newest copy mapped to the copy's id; the primary's newest snapshot without a copy refused (`field`: the
  /// snapshot's field); any other id passed on as the replica's own.
  public static func snapshot(
    _ snapshot: String?, policy: BackupPolicy, replica: String?, field: String
  ) throws(SpecError) -> String? {
    guard let name = replica, let id = snapshot, !id.isEmpty, id != "latest" else { return snapshot }
    let rs = policy.status?.replicas?.first { $0.name == name }
    if let rs, let copied = rs.lastCopiedSnapshot, copied == id {
      if let mapped = rs.replicaSnapshot, !mapped.isEmpty { return mapped }
      throw SpecError(
        field: field,
        message: "replica '\(name)' holds a copy of snapshot \(id), but its id there was not recorded "
          + "(status.replicas[].replicaSnapshot is unset: the copy found it already there); give the copy's id in "
          + "the replica (botrt-engine snapshots on the replica's repository) or latest")
    }
    if let primary = policy.status?.lastSnapshot, primary == id {
      var newest = ""
      if let copied = rs?.lastCopiedSnapshot {
        let there = rs?.replicaSnapshot.map { ", \($0) in the replica" } ?? ""
        newest = " (its newest copy is of \(copied)\(there))"
      }
      throw SpecError(
        field: field,
        message: "snapshot \(id) is the primary's newest, and replica '\(name)' holds no copy of it yet\(newest); "
          + "restore latest from the replica, or a snapshot it holds")
    }
    return id
  }

  /// The snapshot a drill of `latest` requires (`--require-snapshot`): the primary's newest recorded snapshot, or for
  /// a replica the id of its newest copy in the replica (nil when unknown).
  public static func requiredLatest(_ policy: BackupPolicy, replica: String?) -> String? {
    guard let name = replica else { return policy.status?.lastSnapshot }
    return policy.status?.replicas?.first { $0.name == name }?.replicaSnapshot
  }
}
