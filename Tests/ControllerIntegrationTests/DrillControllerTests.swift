import DRAPI
import Foundation
import KubeClient
import KubeCore
import Reconcilers
import Testing

/// The DRDrill controller on the real apiserver: a drill carries a finalizer, and a drill deleted while its run is in
/// progress removes its scratch namespace (cluster-scoped, so no owner reference can) before it goes.
@Suite(.serialized) struct DrillControllerTests {
  let client: KubeClient

  init() async throws {
    client = try TestCluster.client()
    try await TestCluster.installCRDs(client)
  }

  func policy(_ ns: String) -> BackupPolicy {
    BackupPolicy(
      metadata: ObjectMeta(name: "orders-db", namespace: ns),
      spec: BackupPolicySpec(
        tier: .standard, schedule: "17 3 * * *", dataType: .database,
        source: BackupSource(command: ContainerSpec(image: "postgres:16", command: ["pg_dump"], args: ["orders"])),
        repository: RepositorySpec(
          s3: S3Repository(
            bucket: "orders", prefix: "db", region: "us-east-1", endpoint: "http://10.1.2.3:9000",
            credentialsSecretRef: SecretNameReference(name: "s3-creds"))),
        encryption: EncryptionSpec(
          kms: KMSSpec(
            vaultTransit: VaultTransitKMS(
              address: "https://vault.vault.svc:8200", key: "backup-database-key",
              authSecretRef: SecretReference(name: "vault-token"))))))
  }

  /// Removes what a test made in `ns`: the finalizers of its policies and drills (no controller runs any more to
  /// remove them), the drills' scratch namespaces, `ns` and its backup namespace.
  func cleanUp(_ ns: String) async throws {
    for p in try await client.listAll(BackupPolicy.self, namespace: ns).items {
      _ = try await client.patch(
        BackupPolicy.self, namespace: ns, name: p.name, .merge(["metadata": ["finalizers": nil]]))
    }
    for d in try await client.listAll(DRDrill.self, namespace: ns).items {
      _ = try await client.patch(DRDrill.self, namespace: ns, name: d.name, .merge(["metadata": ["finalizers": nil]]))
    }
    for s in try await scratchNamespaces(ns) {
      do { try await client.delete(Namespace.self, name: s.name) } catch let e as KubeError where e.isNotFound {}
    }
    for name in [ns, "\(ns)-backup"] {
      do { try await client.delete(Namespace.self, name: name) } catch let e as KubeError where e.isNotFound {}
    }
  }

  func scratchNamespaces(_ ns: String) async throws -> [Namespace] {
    try await client.listAll(
      Namespace.self, options: ListOptions(labelSelector: "\(DrillLogic.drillNamespaceLabel)=\(ns)")
    ).items
  }

  @Test func aDrillDeletedMidRunRemovesItsScratchNamespace() async throws {
    let ns = "drill-fin-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
    _ = try await client.create(Namespace(metadata: ObjectMeta(name: ns, labels: ["botrt.io/test": "controller"])))
    var failure: Error? = nil
    let controller = try await RunningController(client, namespace: ns, backupNamespace: "\(ns)-backup")
    do {
      for (name, data) in [
        "s3-creds": ["AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"],
        "vault-token": ["token": "t"],
      ] {
        _ = try await client.create(
          Secret(metadata: ObjectMeta(name: name, namespace: ns), data: data.mapValues { Data($0.utf8) }))
      }
      _ = try await client.create(policy(ns))
      // No node runs the Job here, so the run stays in progress until the drill is deleted.
      _ = try await client.create(
        DRDrill(
          metadata: ObjectMeta(name: "orders-drill", namespace: ns),
          spec: DRDrillSpec(
            schedule: "weekly", target: DrillTarget(backupPolicyRef: LocalObjectReference(name: "orders-db")),
            trigger: "t1")))
      var scratch = ""
      try await eventually("the drill to run in a scratch namespace") {
        let d = try await client.get(DRDrill.self, namespace: ns, name: "orders-drill")
        scratch = d.status?.currentRun?.scratchNamespace ?? ""
        return d.status?.phase == .running && !scratch.isEmpty
      }
      let drill = try await client.get(DRDrill.self, namespace: ns, name: "orders-drill")
      #expect(drill.metadata.finalizers == [DrillReconciler.finalizer])
      let live = try await client.get(Namespace.self, name: scratch)
      #expect(live.metadata.deletionTimestamp == nil)
      #expect(try await scratchNamespaces(ns).map(\.name) == [scratch])
      _ = try await client.get(ChildResources.jobs, namespace: scratch, name: DrillLogic.runJobName, as: JSONValue.self)

      try await client.delete(DRDrill.self, namespace: ns, name: "orders-drill")
      try await eventually("the deleted drill to be gone") {
        do {
          _ = try await client.get(DRDrill.self, namespace: ns, name: "orders-drill")
          return false
        } catch let e as KubeError where e.isNotFound {
          return true
        }
      }
      // The finalizer went only after the scratch namespace's deletion was requested.
      let left = try await scratchNamespaces(ns)
      #expect(left.allSatisfy { $0.metadata.deletionTimestamp != nil }, "\(left.map(\.name)) still live")
      try await eventually("the scratch namespace \(scratch) to be removed", timeout: .seconds(90)) {
        try await scratchNamespaces(ns).isEmpty
      }
    } catch {
      failure = error
    }
    await controller.stop()
    try await cleanUp(ns)
    if let failure { throw failure }
  }

  /// A run whose scratch namespace (named after the drill and its run) is still being deleted, as when an earlier
  /// attempt of the same run was removed as stale a moment before, waits until the namespace is gone and then starts
  /// in a new one. Before, it either failed every reconcile writing its objects there (403, what this test shows:
  /// 11 failed reconciles in 6 s), or, when the earlier attempt's objects were still there to apply to, started in
  /// the terminating namespace, lost its Job with it and waited until its timeout (`sigkillAtRandomPoints...` saw
  /// that once: "status names drill-drill8-…" for a namespace deleted 1.3 s before the run started).
  @Test func aRunWaitsForItsTerminatingScratchNamespace() async throws {
    let ns = "drill-term-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
    _ = try await client.create(Namespace(metadata: ObjectMeta(name: ns, labels: ["botrt.io/test": "controller"])))
    let drill = DRDrill(
      metadata: ObjectMeta(name: "orders-drill", namespace: ns),
      spec: DRDrillSpec(
        schedule: "weekly", target: DrillTarget(backupPolicyRef: LocalObjectReference(name: "orders-db")),
        trigger: "t1"))
    let scratch = DrillLogic.scratchNamespace(drill, token: "trigger:t1")
    let hold = "botrt.io/test-hold"
    // The earlier attempt's namespace: the drill's own labels, held in Terminating by a finalizer of the test.
    var labels = DrillLogic.scratchSelection(drill)
    labels[DrillLogic.scratchLabel] = "true"
    labels[ChildLabels.managedBy] = ChildLabels.controllerName
    _ = try await client.create(Namespace(metadata: ObjectMeta(name: scratch, labels: labels, finalizers: [hold])))
    try await client.delete(Namespace.self, name: scratch)
    let old = try await client.get(Namespace.self, name: scratch)
    #expect(old.metadata.deletionTimestamp != nil)
    var failure: Error? = nil
    let controller = try await RunningController(client, namespace: ns, backupNamespace: "\(ns)-backup")
    do {
      for (name, data) in [
        "s3-creds": ["AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"],
        "vault-token": ["token": "t"],
      ] {
        _ = try await client.create(
          Secret(metadata: ObjectMeta(name: name, namespace: ns), data: data.mapValues { Data($0.utf8) }))
      }
      _ = try await client.create(policy(ns))
      _ = try await client.create(drill)
      // While the namespace is terminating, the run does not start in it.
      try await Task.sleep(for: .seconds(6))
      let waiting = try await client.get(DRDrill.self, namespace: ns, name: "orders-drill")
      #expect(waiting.status?.phase != .running, "the run started in a terminating namespace")
      #expect(waiting.status?.currentRun == nil)
      // It waits, rather than failing to write its objects into the terminating namespace (403) again and again.
      let errors = controller.app.registry.value("botrt_reconcile_total", labels: ["drdrill", "error"]) ?? 0
      #expect(errors == 0, "the drill's reconciles failed while its namespace was terminating")
      // The namespace goes: the run starts in a new one of the same name, with its Job.
      _ = try await client.patch(Namespace.self, name: scratch, .merge(["metadata": ["finalizers": nil]]))
      try await eventually("the run to start once the old namespace is gone", timeout: .seconds(90)) {
        let d = try await client.get(DRDrill.self, namespace: ns, name: "orders-drill")
        return d.status?.phase == .running && d.status?.currentRun?.scratchNamespace == scratch
      }
      let fresh = try await client.get(Namespace.self, name: scratch)
      #expect(fresh.metadata.uid != old.metadata.uid)
      #expect(fresh.metadata.deletionTimestamp == nil)
      _ = try await client.get(ChildResources.jobs, namespace: scratch, name: DrillLogic.runJobName, as: JSONValue.self)
      try await client.delete(DRDrill.self, namespace: ns, name: "orders-drill")
      try await eventually("the drill to be gone") {
        do {
          _ = try await client.get(DRDrill.self, namespace: ns, name: "orders-drill")
          return false
        } catch let e as KubeError where e.isNotFound {
          return true
        }
      }
    } catch {
      failure = error
    }
    await controller.stop()
    _ = try? await client.patch(Namespace.self, name: scratch, .merge(["metadata": ["finalizers": nil]]))
    try await cleanUp(ns)
    if let failure { throw failure }
  }
}
