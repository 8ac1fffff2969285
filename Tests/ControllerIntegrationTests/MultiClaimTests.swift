import ControllerApp
import DRAPI
import Foundation
import KubeClient
import KubeCore
import Reconcilers
import Testing

extension BackupPolicyControllerTests {
  /// Many claims per policy (issue 15 §1) against the real apiserver: three claims labelled backup=yes and one
  /// unlabelled; a policy with `source.claims.selector` gets a backup CronJob per labelled claim (its claim mounted
  /// read-only at /backup/CLAIM, its snapshots tagged policy=NS/NAME and claim=CLAIM, the claim's mounted on node-b
  /// placed there) and status.claims shows each. Relabelling and deleting claims are followed without a restart:
  /// the CronJob of a claim that loses its label goes, a claim that gains it gets one, and a deleted claim's record
  /// stays in status (gone) for a restore to create it again.
  @Test func aLabelSelectedSetOfClaimsIsBackedUpClaimByClaim() async throws {
    try await withNamespace("claims") { ns in
      let nodeB = "\(ns)-node-b"
      _ = try await client.create(
        .nodes, namespace: nil,
        ["apiVersion": "v1", "kind": "Node", "metadata": ["name": .string(nodeB)]] as JSONValue)
      func deleteNodes() async {
        do { _ = try await client.delete(.nodes, namespace: nil, name: nodeB) } catch {}
      }
      try await createSecrets(ns)
      func claim(_ name: String, labels: [String: String], size: String = "1Gi") async throws {
        _ = try await client.create(
          .persistentVolumeClaims, namespace: ns,
          [
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": ["name": .string(name), "labels": .object(labels.mapValues { .string($0) })],
            "spec": [
              "accessModes": ["ReadWriteOnce"], "storageClassName": "",
              "resources": ["requests": ["storage": .string(size)]],
            ],
          ] as JSONValue)
      }
      func relabel(_ name: String, _ value: JSONValue) async throws {
        _ = try await client.patch(
          .persistentVolumeClaims, namespace: ns, name: name, .merge(["metadata": ["labels": ["backup": value]]]),
          as: JSONValue.self)
      }
      try await claim("alpha", labels: ["backup": "yes"])
      try await claim("beta", labels: ["backup": "yes"], size: "2Gi")
      try await claim("gamma", labels: ["backup": "yes", "tier": "x"])
      try await claim("delta", labels: [:])
      try await createPod(
        ns,
        [
          "apiVersion": "v1", "kind": "Pod", "metadata": ["name": "app-beta"],
          "spec": [
            "nodeName": .string(nodeB),
            "containers": [["name": "app", "image": "busybox", "volumeMounts": [["name": "d", "mountPath": "/d"]]]],
            "volumes": [["name": "d", "persistentVolumeClaim": ["claimName": "beta"]]],
          ],
        ] as JSONValue)
      let controller = try await RunningController(client, namespace: ns, backupNamespace: "\(ns)-backup")
      do {
        var p = policy(ns, name: "files")
        p.spec.dataType = .files
        p.spec.source = BackupSource(
          claims: ClaimsSource(
            selector: ClaimSelector(matchLabels: ["backup": "yes"]), subPath: "data", exclude: ["/cache"]))
        _ = try await client.create(p)
        let cronJobs = ChildResources.cronJobs(apiVersion: controller.app.settings.cronJobAPIVersion)
        func cron(_ claim: String) async throws -> CronJob? {
          do {
            let c = try await client.get(
              cronJobs, namespace: ns, name: MultiClaim.cronJob(namespace: ns, name: "files", claim: claim),
              as: JSONValue.self)
            return CronJob(json: c)
          } catch let e as KubeError where e.isNotFound {
            return nil
          }
        }
        func backupCronJobs() async throws -> [String] {
          let list = try await client.list(
            cronJobs, namespace: ns,
            options: ListOptions(labelSelector: ChildLabels.selector(namespace: ns, name: "files")),
            as: JSONValue.self)
          let items: [JSONValue] = list.items
          var out: [String] = []
          for item in items {
            let component: String? = item[path: "metadata", "labels", ChildLabels.component]?.stringValue
            guard component == "backup" else { continue }
            if let claim = item[path: "metadata", "annotations", MultiClaim.claimAnnotation]?.stringValue {
              out.append(claim)
            }
          }
          return out.sorted()
        }

        try await eventually("a backup CronJob per labelled claim") {
          try await backupCronJobs() == ["alpha", "beta", "gamma"]
        }
        // No single backup CronJob of the policy.
        let single = ChildNames(namespace: ns, name: "files").backupCronJob
        await #expect(throws: KubeError.self) {
          try await client.get(cronJobs, namespace: ns, name: single, as: JSONValue.self)
        }
        for name in ["alpha", "beta", "gamma"] {
          let c = try #require(try await cron(name))
          #expect(c.metadata.name?.count ?? 99 <= 52)
          let template = try #require(c.spec?.jobTemplate.spec?.template.spec)
          #expect(c.spec?.jobTemplate.metadata?.annotations?[MultiClaim.claimAnnotation] == name)
          let volume = template.volumes?.first { $0.persistentVolumeClaim != nil }
          #expect(volume?.persistentVolumeClaim?.claimName == name && volume?.persistentVolumeClaim?.readOnly == true)
          let engine = try #require(template.containers.first { $0.name == "backup" })
          let mount = engine.volumeMounts?.first { $0.name == volume?.name }
          #expect(mount?.mountPath == "/backup/\(name)" && mount?.readOnly == true && mount?.subPath == "data")
          let args = engine.args ?? []
          #expect(args.contains("claim=\(name)") && args.contains("policy=\(ns)/files"), "\(args)")
          #expect(args.last == "/backup/\(name)" && args.contains("--exclude=/backup/\(name)/cache"), "\(args)")
          let hosts = template.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?
            .nodeSelectorTerms.first?.matchFields?.first?.values
          #expect(hosts == (name == "beta" ? [nodeB] : nil), "\(name): \(String(describing: hosts))")
        }
        #expect(try await cron("delta") == nil)

        try await eventually("status.claims to show each claim") {
          try await getPolicy(ns, "files").status?.claims?.map(\.name) == ["alpha", "beta", "gamma"]
        }
        let st = try await getPolicy(ns, "files").status
        let beta = st?.claims?.first { $0.name == "beta" }
        #expect(beta?.placement?.node == nodeB && beta?.placement?.pod == "app-beta")
        #expect(beta?.claim?.storage == "2Gi" && beta?.claim?.accessModes == ["ReadWriteOnce"])
        #expect(beta?.claim?.noStorageClass == true)
        #expect(beta?.result == "Pending")
        #expect(beta?.cronJob == MultiClaim.cronJob(namespace: ns, name: "files", claim: "beta"))
        #expect(st?.claims?.first { $0.name == "alpha" }?.placement == nil)
        #expect(st?.sourceClaim == nil && st?.placement == nil)
        let ready = st?.conditions?.condition(BackupPolicyCondition.ready)
        #expect(ready?.status == .true, "\(String(describing: ready))")
        #expect(ready?.message.contains("The backup CronJobs of 3 claims") == true, "\(ready?.message ?? "")")

        // gamma loses its label: its CronJob goes, and its entry (the claim still exists) too.
        try await relabel("gamma", .null)
        try await eventually("gamma's CronJob to go") { try await backupCronJobs() == ["alpha", "beta"] }
        try await eventually("gamma out of status.claims") {
          try await getPolicy(ns, "files").status?.claims?.map(\.name) == ["alpha", "beta"]
        }
        // delta gains it: a CronJob of its own, without a restart.
        try await relabel("delta", "yes")
        try await eventually("delta's CronJob") { try await backupCronJobs() == ["alpha", "beta", "delta"] }
        // alpha is deleted: its CronJob goes, its record stays (gone) for a restore to create it again.
        _ = try await client.delete(.persistentVolumeClaims, namespace: ns, name: "alpha")
        try await eventually("alpha's CronJob to go") { try await backupCronJobs() == ["beta", "delta"] }
        try await eventually("alpha's record kept, marked gone") {
          let claims = try await getPolicy(ns, "files").status?.claims ?? []
          let alpha = claims.first { $0.name == "alpha" }
          return claims.map(\.name) == ["beta", "delta", "alpha"] && alpha?.gone == true
            && alpha?.claim?.storage == "1Gi" && alpha?.cronJob == nil
        }
      } catch {
        await controller.stop()
        await deleteNodes()
        throw error
      }
      await controller.stop()
      await deleteNodes()
    }
  }

  /// A PVC source's claim is read from the shared claim cache (no get per reconcile) and recorded in
  /// status.sourceClaim, as a restore with into.pvc.create needs it.
  @Test func aPVCSourcesClaimIsRecordedFromTheSharedClaimCache() async throws {
    try await withNamespace("srcclaim") { ns in
      try await createSecrets(ns)
      _ = try await client.create(
        .persistentVolumeClaims, namespace: ns,
        [
          "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": ["name": "data"],
          "spec": [
            "accessModes": ["ReadWriteMany"], "storageClassName": "fast",
            "resources": ["requests": ["storage": "3Gi"]],
          ],
        ] as JSONValue)
      let controller = try await RunningController(client, namespace: ns, backupNamespace: "\(ns)-backup")
      do {
        var p = policy(ns, name: "files")
        p.spec.dataType = .files
        p.spec.source = BackupSource(pvc: PVCSource(claimName: "data"))
        _ = try await client.create(p)
        try await eventually("status.sourceClaim to record the claim") {
          try await getPolicy(ns, "files").status?.sourceClaim?.storage == "3Gi"
        }
        let recorded = try await getPolicy(ns, "files").status?.sourceClaim
        #expect(recorded?.name == "data" && recorded?.namespace == ns)
        #expect(recorded?.accessModes == ["ReadWriteMany"] && recorded?.storageClassName == "fast")
        await controller.stop()
      } catch {
        await controller.stop()
        throw error
      }
    }
  }
}
