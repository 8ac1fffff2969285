import ControllerApp
import DRAPI
import Foundation
import KubeClient
import KubeCore
import Reconcilers
import Testing

extension BackupPolicyControllerTests {
  /// RWO placement against the real apiserver: two Node objects (no kubelet: the decision is checked on the pod
  /// template), a ReadWriteOnce claim and a pod bound to node-b (tainted; the pod tolerates it) that mounts it. The
  /// backup CronJob's pods get a required node affinity for node-b (by name: `matchFields` on `metadata.name`, so
  /// a hostname label that differs from the name does not matter and no Node is read) and the pod's tolerations;
  /// the pod replaced by one on node-a moves the CronJob there; with no pod left the affinity goes.
  @Test func rwoBackupFollowsThePodThatMountsItsClaim() async throws {
    try await withNamespace("rwo") { ns in
      let nodeA = "\(ns)-node-a"
      let nodeB = "\(ns)-node-b"
      let hostA = "\(ns)-host-a"
      let dedicated: JSONValue = ["key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"]
      func node(_ name: String, hostname: String, taints: [JSONValue]) -> JSONValue {
        [
          "apiVersion": "v1", "kind": "Node",
          "metadata": ["name": .string(name), "labels": ["kubernetes.io/hostname": .string(hostname)]],
          "spec": ["taints": .array(taints)],
        ]
      }
      _ = try await client.create(.nodes, namespace: nil, node(nodeA, hostname: hostA, taints: []))
      _ = try await client.create(.nodes, namespace: nil, node(nodeB, hostname: nodeB, taints: [dedicated]))
      func deleteNodes() async {
        for n in [nodeA, nodeB] {
          do { _ = try await client.delete(.nodes, namespace: nil, name: n) } catch {}
        }
      }
      try await createSecrets(ns)
      _ = try await client.create(
        .persistentVolumeClaims, namespace: ns,
        [
          "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": ["name": "data"],
          "spec": [
            "accessModes": ["ReadWriteOnce"], "storageClassName": "", "resources": ["requests": ["storage": "1Gi"]],
          ],
        ] as JSONValue)
      func pod(_ name: String, on node: String, tolerations: [JSONValue]) async throws -> JSONValue {
        try await createPod(
          ns,
          [
            "apiVersion": "v1", "kind": "Pod", "metadata": ["name": .string(name)],
            "spec": [
              "nodeName": .string(node), "tolerations": .array(tolerations),
              "containers": [["name": "app", "image": "busybox", "volumeMounts": [["name": "d", "mountPath": "/d"]]]],
              "volumes": [["name": "d", "persistentVolumeClaim": ["claimName": "data"]]],
            ],
          ] as JSONValue)
      }
      func deletePod(_ name: String) async throws {
        // No kubelet confirms a graceful deletion: delete at once.
        _ = try await client.delete(.pods, namespace: ns, name: name, options: DeleteOptions(gracePeriodSeconds: 0))
      }
      let controller = try await RunningController(client, namespace: ns, backupNamespace: "\(ns)-backup")
      do {
        var p = policy(ns, name: "files")
        p.spec.dataType = .files
        p.spec.source = BackupSource(pvc: PVCSource(claimName: "data"))
        _ = try await client.create(p)
        let cronJobs = ChildResources.cronJobs(apiVersion: controller.app.settings.cronJobAPIVersion)
        let cronName = ChildNames(namespace: ns, name: "files").backupCronJob
        func template() async throws -> PodSpec? {
          let c = try await client.get(cronJobs, namespace: ns, name: cronName, as: JSONValue.self)
          return CronJob(json: c)?.spec?.jobTemplate.spec?.template.spec
        }
        func hosts(_ s: PodSpec?) -> [String]? {
          s?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms.first?
            .matchFields?.first { $0.key == ClaimPlacement.nodeNameField }?.values
        }
        func tolerations(_ pod: JSONValue) -> [Toleration] {
          (pod[path: "spec", "tolerations"]?.arrayValue ?? []).compactMap(Toleration.init(json:))
        }

        // Unmounted: anywhere.
        try await eventually("the backup CronJob") { try await template() != nil }
        #expect(hosts(try await template()) == nil)

        // On node-b: its name, and the pod's tolerations (the admission adds its default ones).
        let b = try await pod("app-b", on: nodeB, tolerations: [dedicated])
        #expect(tolerations(b).contains(Toleration(json: dedicated)!))
        try await eventually("the CronJob to follow app-b to node-b") { hosts(try await template()) == [nodeB] }
        #expect(try await template()?.tolerations == tolerations(b))
        try await eventually("status.placement to name node-b") {
          try await getPolicy(ns, "files").status?.placement?.node == nodeB
        }
        let placed = try await getPolicy(ns, "files").status?.placement
        #expect(placed?.pod == "app-b")
        #expect(placed?.message?.contains("where pod app-b mounts the ReadWriteOnce claim data") == true)

        // Moved to node-a (by its name, not its differing hostname label); node-b's toleration goes.
        try await deletePod("app-b")
        let a = try await pod("app-a", on: nodeA, tolerations: [])
        try await eventually("the CronJob to follow app-a to node-a") { hosts(try await template()) == [nodeA] }
        #expect(try await template()?.tolerations == tolerations(a).nilIfEmpty)
        #expect(try await getPolicy(ns, "files").status?.placement?.pod == "app-a")

        // Gone: anywhere again.
        try await deletePod("app-a")
        // Server-side apply removes the fields the controller no longer sets but leaves their empty parents
        // (`affinity: {nodeAffinity: {}}`): no node requirement is left.
        try await eventually("the affinity to go") {
          let t = try await template()
          return t != nil && t?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution == nil
            && t?.tolerations == nil
        }
        try await eventually("status.placement to go") { try await getPolicy(ns, "files").status?.placement == nil }
      } catch {
        await controller.stop()
        await deleteNodes()
        throw error
      }
      await controller.stop()
      await deleteNodes()
    }
  }
}

extension Array {
  fileprivate var nilIfEmpty: Self? { isEmpty ? nil : self }
}
