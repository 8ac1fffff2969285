import DRAPI
import EngineContract
import Foundation
import KubeCore

/// Backup and restore of a namespace's Kubernetes objects (BackupPolicy spec.objects, a RecoveryPlan restore step's
/// into.objects): the containers that run `botrt-objects` (the job image's second executable), their volumes, and the
/// grants that let them reach the apiserver.
///
/// Least privilege, as for the engine's credentials: only the `botrt-objects` container mounts a ServiceAccount token
/// (a projected volume; the pod itself has automountServiceAccountToken false), the engine container never does. The
/// objects go through a memory-backed emptyDir, so Secrets never touch the node's disk. What the token may do is
/// one of two ClusterRoles (manifests/rbac/objects.yaml), bound in one namespace only while it is needed:
/// - `botrt-objects-reader` (get, list of the standard kinds, and of custom resources through aggregation), bound
///   in the policy's namespace to the backup ServiceAccount during a backup run (`BackupPolicyChildren.runAccess`);
/// - `botrt-objects-restorer` (create of the standard kinds but Roles and RoleBindings), bound in the target
///   namespace to its ServiceAccount `botrt-objects-restore` by a RoleBinding named after the restore Job and owned by
///   it. Restoring Roles and RoleBindings grants rights, so the controller cannot bind that
///   (`botrt-objects-rbac-restorer`): a target namespace's admin opts in by binding it to the same ServiceAccount.
public enum KubeObjects {
  /// The ClusterRole a backup run's ServiceAccount reads the policy's namespace with.
  public static let readerClusterRole = "botrt-objects-reader"
  /// The ClusterRole a restore Job's ServiceAccount creates objects with.
  public static let restorerClusterRole = "botrt-objects-restorer"
  /// The ClusterRole that lets the restore ServiceAccount create Roles and RoleBindings: bound by a target
  /// namespace's admin, never by the controller.
  public static let rbacRestorerClusterRole = "botrt-objects-rbac-restorer"
  /// The ServiceAccount objects restores run as in a target namespace (kept; what it may do is bound per Job).
  public static let restoreServiceAccount = "botrt-objects-restore"
  /// The label that aggregates a ClusterRole's rules (custom resources) into the reader.
  public static let aggregateToReaderLabel = "dr.botrt.io/aggregate-to-objects-reader"
  /// The label that aggregates a ClusterRole's rules (custom resources) into the restorer.
  public static let aggregateToRestorerLabel = "dr.botrt.io/aggregate-to-objects-restorer"
  /// The container that runs `botrt-objects` (export in a backup pod, apply in a restore Job).
  public static let container = "objects"
  /// The emptyDir of the objects.
  public static let volume = "objects"
  /// The projected ServiceAccount token volume, mounted only by the objects container.
  public static let tokenVolume = "kube-api-access"
  /// Where a pod's ServiceAccount credentials are looked for (KubeClient's in-cluster config).
  public static let tokenDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"
  /// The token's lifetime: an hour (the kubelet rotates it before).
  public static let tokenSeconds: Int64 = 3_600

  /// The memory-backed emptyDir the objects pass through (bounded: 256 MiB counts against the pod's memory).
  public static let objectsVolume: Volume = {
    var e = EmptyDirVolumeSource()
    e.medium = "Memory"
    e.sizeLimit = "256Mi"
    return Volume(name: volume, emptyDir: e)
  }()

  /// The ServiceAccount token, the cluster's CA and the namespace, as the kubelet mounts them by default (but in one
  /// container only).
  public static let tokenVolumeSource: Volume =
    Volume(
      json: [
        "name": .string(tokenVolume),
        "projected": [
          "defaultMode": 0o444,
          "sources": [
            ["serviceAccountToken": ["path": "token", "expirationSeconds": .int(tokenSeconds)]],
            ["configMap": ["name": "kube-root-ca.crt", "items": [["key": "ca.crt", "path": "ca.crt"]]]],
            [
              "downwardAPI": [
                "items": [["path": "namespace", "fieldRef": ["apiVersion": "v1", "fieldPath": "metadata.namespace"]]]
              ]
            ],
          ],
        ],
      ]) ?? Volume(name: tokenVolume)

  static let tokenMount = VolumeMount(name: tokenVolume, mountPath: tokenDirectory, readOnly: true)

  /// The objects container's resources: a list of a namespace's objects, held one kind at a time.
  static let resources = ContainerResources(requests: ["cpu": "50m", "memory": "64Mi"], limits: ["memory": "256Mi"])

  /// The init container of a backup pod: `botrt-objects export` of the policy's namespace into the objects volume,
  /// mounted at `ObjectsLayout.backupMount` (whose last component is the snapshot's entry).
  public static func exportContainer(
    _ spec: ObjectsBackupSpec, namespace: String, settings s: ControllerSettings
  ) -> Container {
    let args = ObjectsExportArguments(
      namespace: namespace, directory: ObjectsLayout.backupMount, kinds: spec.effectiveKinds,
      selector: spec.selector?.labelSelectorString, resultFile: "/dev/termination-log")
    return Container(
      name: container, image: s.engineImage, command: [s.objectsPath], args: args.argv,
      env: BackupPolicyChildren.baseEnv,
      volumeMounts: [
        BackupPolicyChildren.tmpMount, VolumeMount(name: volume, mountPath: ObjectsLayout.backupMount), tokenMount,
      ],
      resources: resources, securityContext: BackupPolicyChildren.containerSecurity(s),
      terminationMessagePolicy: "File")
  }

  /// The container of a restore Job that creates the restored objects: `botrt-objects apply` of the objects volume's
  /// `ObjectsLayout.snapshotEntry` (restored there by the engine) in `namespace`.
  public static func applyContainer(
    _ restore: RestoreObjects, namespace: String, settings s: ControllerSettings
  ) -> Container {
    let args = ObjectsApplyArguments(
      directory: "\(ObjectsLayout.restoreRoot)/\(ObjectsLayout.snapshotEntry)", namespace: namespace,
      kinds: (restore.kinds ?? []).compactMap(ObjectsKind.init), resultFile: "/dev/termination-log")
    return Container(
      name: container, image: s.engineImage, command: [s.objectsPath], args: args.argv,
      env: BackupPolicyChildren.baseEnv,
      volumeMounts: [
        BackupPolicyChildren.tmpMount,
        VolumeMount(name: volume, mountPath: ObjectsLayout.restoreRoot, readOnly: true), tokenMount,
      ],
      resources: resources, securityContext: BackupPolicyChildren.containerSecurity(s),
      terminationMessagePolicy: "File")
  }

  /// The RoleBinding of a backup run: the reader ClusterRole, in the policy's namespace, to the backup
  /// ServiceAccount of the workload namespace.
  public static func backupBinding(
    _ policy: BackupPolicy, names: ChildNames, workNamespace: String, labels: [String: String]
  ) -> RoleBinding {
    let ns = policy.metadata.namespace ?? "default"
    return RoleBinding(
      metadata: BackupPolicyChildren.objectMeta(
        name: names.objectsBinding, namespace: ns, labels: labels, owner: policy.ownerReference()),
      roleRef: RoleRef(kind: "ClusterRole", name: readerClusterRole),
      subjects: [.serviceAccount(names.serviceAccount, namespace: workNamespace)])
  }

  /// The restore ServiceAccount of a target namespace (kept between restores: an admin's opt-in for Roles and
  /// RoleBindings names it), and the RoleBinding of the restorer ClusterRole to it, named after the Job (`owner`: the
  /// Job, once it exists, so that the grant goes with it).
  public static func restoreAccess(
    jobName: String, namespace: String, labels: [String: String], owner: OwnerReference?
  ) -> (ServiceAccount, RoleBinding) {
    let account = ServiceAccount(
      metadata: ObjectMeta(
        name: restoreServiceAccount, namespace: namespace,
        labels: [ChildLabels.managedBy: ChildLabels.controllerName]),
      automountServiceAccountToken: false)
    var meta = ObjectMeta(name: jobName, namespace: namespace, labels: labels)
    if let owner { meta.ownerReferences = [owner] }
    let binding = RoleBinding(
      metadata: meta, roleRef: RoleRef(kind: "ClusterRole", name: restorerClusterRole),
      subjects: [.serviceAccount(restoreServiceAccount, namespace: namespace)])
    return (account, binding)
  }
}

extension ControllerSettings {
  /// `botrt-objects` in the job image: next to the engine.
  public var objectsPath: String {
    (enginePath as NSString).deletingLastPathComponent + "/botrt-objects"
  }
}

extension ChildNames {
  /// The RoleBinding of a backup run's object reads, in the policy's namespace.
  public var objectsBinding: String { "\(base)-objects" }
  /// The run window's egress of an objects export to the apiserver.
  public var apiserverEgress: String { "\(base)-apiserver-egress" }
}
