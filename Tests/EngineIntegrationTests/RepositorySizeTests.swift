import DRAPI
import EngineContract
import Foundation
import KubeCore
import KubeRuntime
import Testing

@testable import Reconcilers

/// The storage figures of issue 16: what a backup adds to the repository (`bytesStored`) and the repository's stored
/// bytes after a backup or prune (`repositoryStoredBytes`), from the real engine on a local repository, checked
/// against the pack files on disk; and the same result files, as termination messages, read by the controller into
/// status and its metrics.
@Suite struct RepositorySizeTests {
  /// The bytes of the pack files under data/, as the disk has them.
  static func packBytesOnDisk(_ h: CLIHarness) throws -> Int {
    try h.objects("data").reduce(0) { sum, key in
      let attrs = try FileManager.default.attributesOfItem(atPath: h.repo + "/" + key)
      return sum + ((attrs[.size] as? NSNumber)?.intValue ?? 0)
    }
  }

  /// Runs an engine command with `--result-file` and returns that file's text (what the Pod's termination message
  /// holds) and the result decoded.
  static func run(_ h: CLIHarness, _ args: [String], name: String) throws -> (message: String, result: [String: Any]) {
    let file = h.dir + "/\(name).result"
    let out = try h.run(args + ["--result-file", file])
    #expect(out.code == 0, "\(args): \(out.stderr)")
    let message = try String(contentsOfFile: file, encoding: .utf8)
    let result = try JSONSerialization.jsonObject(with: Data(message.utf8)) as? [String: Any] ?? [:]
    return (message, result)
  }

  /// A finished Job and its Pod whose container terminated with `message`, as the API returns them.
  static func observed(_ name: String, container: String, finished: String, message: String) -> BackupRun {
    let job: JSONValue = [
      "metadata": ["name": .string(name)],
      "status": [
        "startTime": .string(finished), "completionTime": .string(finished), "succeeded": 1,
        "conditions": [["type": "Complete", "status": "True", "lastTransitionTime": .string(finished)]],
      ],
    ]
    let pod: JSONValue = [
      "status": [
        "containerStatuses": [
          [
            "name": .string(container),
            "state": ["terminated": ["exitCode": 0, "finishedAt": .string(finished), "message": .string(message)]],
          ]
        ]
      ]
    ]
    return BackupRun.observe(job: job, pods: [pod], container: container)
  }

  @Test func backupsAndPruneReportWhatTheyAddedAndTheRepositorySize() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/a.bin", sampleData(3 << 20))
    #expect(try h.run(["init"]).code == 0)

    // The first backup stores everything: what it added is every pack there is.
    let b1 = try Self.run(h, ["backup", h.dir + "/src"], name: "b1").result
    let disk1 = try Self.packBytesOnDisk(h)
    #expect(disk1 > 1 << 20)
    #expect(b1["bytesStored"] as? Int == disk1)
    #expect(b1["repositoryStoredBytes"] as? Int == disk1)

    // The same data again: nothing added, the same total.
    let b2 = try Self.run(h, ["backup", h.dir + "/src"], name: "b2").result
    #expect(b2["bytesStored"] as? Int == 0)
    #expect(b2["repositoryStoredBytes"] as? Int == disk1)
    #expect(try Self.packBytesOnDisk(h) == disk1)

    // Other data: the total grows by exactly what the backup added.
    try FileManager.default.removeItem(atPath: h.dir + "/src/a.bin")
    try h.write("src/b.bin", sampleData(2 << 20))
    let b3 = try Self.run(h, ["backup", h.dir + "/src"], name: "b3").result
    let added3 = try #require(b3["bytesStored"] as? Int)
    let disk3 = try Self.packBytesOnDisk(h)
    #expect(added3 > 1 << 20)
    #expect(disk3 == disk1 + added3)
    #expect(b3["repositoryStoredBytes"] as? Int == disk3)

    // forget without --prune lists no packs and reports no total; with it, the total after the deletions.
    let f = try Self.run(h, ["forget", "--keep-last", "2"], name: "f").result
    #expect(f["repositoryStoredBytes"] == nil)
    let p = try Self.run(h, ["forget", "--keep-last", "1", "--prune"], name: "p").result
    let diskAfter = try Self.packBytesOnDisk(h)
    #expect(diskAfter < disk3 && diskAfter >= added3)
    #expect(p["repositoryStoredBytes"] as? Int == diskAfter)
  }

  /// The cross-boundary check: the engine's real result files, as the Pods' termination messages, read by the
  /// controller's reader (BackupRun.observe), turned into status (BackupPolicyStatusLogic, RetentionOutcome) and
  /// exported as the metrics the dashboard and the RepositoryGrowthUnusual alert read.
  @Test func theControllerReadsTheEngineFiguresIntoStatusAndMetrics() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/a.bin", sampleData(2 << 20))
    #expect(try h.run(["init"]).code == 0)
    let m1 = try Self.run(h, ["backup", h.dir + "/src"], name: "b1").message
    let disk1 = try Self.packBytesOnDisk(h)
    let m2 = try Self.run(h, ["backup", h.dir + "/src"], name: "b2").message
    try FileManager.default.removeItem(atPath: h.dir + "/src/a.bin")
    try h.write("src/b.bin", sampleData(1 << 20))
    let m3 = try Self.run(h, ["backup", h.dir + "/src"], name: "b3").message
    let disk3 = try Self.packBytesOnDisk(h)
    let mp = try Self.run(h, ["forget", "--keep-last", "1", "--prune"], name: "p").message
    let diskAfter = try Self.packBytesOnDisk(h)

    var meta = ObjectMeta(name: "db", namespace: "shop")
    meta.uid = "uid-db"
    meta.generation = 1
    let spec = BackupPolicySpec(
      tier: .standard, source: BackupSource(pvc: PVCSource(claimName: "data")),
      repository: RepositorySpec(local: LocalRepository(path: "/backups", claimName: "backups")),
      encryption: EncryptionSpec(kms: KMSSpec(localKeySecretRef: SecretReference(name: "kek", key: "key"))))
    var policy = BackupPolicy(metadata: meta, spec: spec)
    let now = KubeJSON.parseDate("2026-05-28T23:00:00Z")!
    let effective = try EffectivePolicy(spec: spec, now: now)
    func status(_ runs: [BackupRun]) -> BackupPolicyStatus {
      BackupPolicyStatusLogic.compute(
        policy: policy, effective: effective, problem: nil, runs: runs, backupNamespace: "botrt-backup",
        handledTrigger: nil, childSummary: "", now: now
      ).status
    }
    let r1 = Self.observed("b1", container: "backup", finished: "2026-05-28T20:00:00Z", message: m1)
    let r2 = Self.observed("b2", container: "backup", finished: "2026-05-28T21:00:00Z", message: m2)
    let r3 = Self.observed("b3", container: "backup", finished: "2026-05-28T22:00:00Z", message: m3)

    policy.status = status([r1])
    #expect(policy.status?.repositoryStoredBytes == Int64(disk1))
    #expect(policy.status?.lastBackupStoredBytes == Int64(disk1))
    policy.status = status([r1, r2])
    #expect(policy.status?.repositoryStoredBytes == Int64(disk1))
    #expect(policy.status?.lastBackupStoredBytes == 0)
    policy.status = status([r1, r2, r3])
    #expect(policy.status?.repositoryStoredBytes == Int64(disk3))
    let added3 = try #require(policy.status?.lastBackupStoredBytes)
    #expect(Int64(disk3) == Int64(disk1) + added3)

    // The prune finished after the newest backup: its total (smaller) replaces the backup's.
    let pruned = Self.observed("p1", container: "prune", finished: "2026-05-28T22:30:00Z", message: mp)
    let retention = try #require(RetentionOutcome.evaluate([pruned]))
    #expect(retention.status == .true)
    var s = try #require(policy.status)
    retention.applyStoredBytes(to: &s)
    #expect(s.repositoryStoredBytes == Int64(diskAfter))
    // A prune older than the newest backup does not: the backup's total is newer.
    var older = try #require(policy.status)
    let stale = Self.observed("p0", container: "prune", finished: "2026-05-28T21:30:00Z", message: mp)
    try #require(RetentionOutcome.evaluate([stale])).applyStoredBytes(to: &older)
    #expect(older.repositoryStoredBytes == Int64(disk3))

    // The metrics, as a scrape of the controller shows them.
    let registry = MetricsRegistry()
    let metrics = BackupPolicyMetrics(registry)
    metrics.record(policy, s)
    let labels = ["shop", "db", "standard"]
    #expect(registry.value("botrt_repository_stored_bytes", labels: labels) == Double(diskAfter))
    #expect(registry.value("botrt_backup_added_bytes", labels: labels) == Double(added3))
    let scraped = registry.render()
    #expect(scraped.contains("# TYPE botrt_repository_stored_bytes gauge"))
    #expect(scraped.contains("# TYPE botrt_backup_added_bytes gauge"))
  }
}
