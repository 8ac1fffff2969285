import DRAPI
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// The `backup` container of the backup CronJob the controller builds for a policy `name` in namespace shop with
/// `spec` (its local key Secret `kek` present): what a backup Pod runs.
func builtBackupContainer(name: String, spec: BackupPolicySpec, claim: String? = nil) throws -> JSONValue {
  var meta = ObjectMeta(name: name, namespace: "shop")
  meta.uid = "uid-\(name)"
  let policy = BackupPolicy(metadata: meta, spec: spec)
  let children = try BackupPolicyChildren.build(
    ChildInputs(
      policy: policy, effective: try EffectivePolicy(spec: spec, now: Date()),
      settings: ControllerSettings(engineImage: "botrt/engine:1", cronJobAPIVersion: "batch/v1", calicoServed: false),
      secrets: ["kek": Secret(metadata: ObjectMeta(name: "kek", namespace: "shop"), data: ["key": Data(count: 32)])],
      claims: claim.map { ClaimSelection(names: [$0]) }))
  // A multi-claim policy has one backup CronJob per selected claim (here the one claim).
  let cron = try #require(
    children.first {
      $0.resource.kind == "CronJob" && $0.body[path: "metadata", "labels", ChildLabels.component] == "backup"
    })
  return try #require(
    cron.body[path: "spec", "jobTemplate", "spec", "template", "spec", "containers"]?.arrayValue?.first {
      $0["name"]?.stringValue == "backup"
    })
}
