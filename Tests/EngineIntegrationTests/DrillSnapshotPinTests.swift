import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// A drill's run Pod restores `latest`, then verifies what it restored. A backup that lands between the two
/// containers must not make the verify check another snapshot (which failed a drill's integrity check with "verify
/// checked snapshot X, not the restored snapshot Y"): the restore writes its result to the Pod's shared /tmp as
/// well as its termination message, and the verify reads the snapshot from there (`--snapshot-from`). The restore and
/// verify arguments are the ones the controller builds, run by the real engine in the Pod's order.
@Suite struct DrillSnapshotPinTests {
  /// The drill's run Job for a files policy with the local repository of `h`, whose newest recorded snapshot is
  /// `recorded`: the restore and verify containers' arguments, with the Pod's paths moved into the test's directory.
  func runContainers(_ h: CLIHarness, recorded: String) throws -> (restore: [String], verify: [String]) {
    let spec = BackupPolicySpec(
      tier: .standard, source: BackupSource(pvc: PVCSource(claimName: "data")),
      repository: RepositorySpec(local: LocalRepository(path: h.repo, claimName: "backups")),
      encryption: EncryptionSpec(kms: KMSSpec(localKeySecretRef: SecretReference(name: "kek", key: "key"))))
    var policy = BackupPolicy(metadata: ObjectMeta(name: "files", namespace: "shop", uid: "uid-files"), spec: spec)
    policy.status = BackupPolicyStatus()
    policy.status?.lastSnapshot = recorded
    let drill = try JSONDecoder().decode(
      DRDrill.self,
      from: Data(
        #"""
        {"apiVersion": "dr.botrt.io/v1alpha1", "kind": "DRDrill",
         "metadata": {"name": "weekly", "namespace": "shop", "uid": "u-drill"},
         "spec": {"schedule": "weekly", "target": {"backupPolicyRef": {"name": "files"}},
                  "verification": {"readData": true}}}
        """#.utf8))
    let job = try DrillLogic.runJob(
      drill, spec: try DrillLogic.runSpec(drill, plan: nil), namespace: "drill-x",
      settings: ControllerSettings(engineImage: "e:1"), policies: ["files": policy], timeoutSeconds: 3600)
    let pod = try #require(job[path: "spec", "template", "spec"])
    let all = (pod["initContainers"]?.arrayValue ?? []) + (pod["containers"]?.arrayValue ?? [])
    #expect(all.compactMap { $0["name"]?.stringValue } == ["restore", "verify"])
    // Both containers mount the Pod's /tmp, where the restore leaves its result for the verify.
    for c in all {
      let mounts = (c["volumeMounts"]?.arrayValue ?? []).compactMap { $0["mountPath"]?.stringValue }
      #expect(mounts.contains("/tmp"), "\(c["name"]?.stringValue ?? "?") mounts \(mounts)")
    }
    func args(_ name: String) throws -> [String] {
      let c = try #require(all.first { $0["name"]?.stringValue == name })
      var a = (c["args"]?.arrayValue ?? []).compactMap(\.stringValue).map {
        $0 == RecoveryJobs.restoreResultShare
          ? h.dir + "/pod-tmp/botrt-restore-result.json"
          : $0.replacingOccurrences(of: "/dev/termination-log", with: h.dir + "/termination-log-\(name)")
      }
      if let i = a.firstIndex(of: "--target") { a[i + 1] = h.dir + "/restore" }
      if let i = a.firstIndex(of: EngineFlag.long(EngineFlag.kms)) { a[i + 1] = h.kmsURL }
      return a
    }
    try FileManager.default.createDirectory(atPath: h.dir + "/pod-tmp", withIntermediateDirectories: true)
    return (try args("restore"), try args("verify"))
  }

  @Test func aBackupBetweenTheRestoreAndTheVerifyDoesNotChangeTheSnapshotVerified() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    #expect(try h.run(["init"]).code == 0)
    try h.write("data/a.txt", Data("first".utf8))
    let first = try h.run(["backup", h.dir + "/data"])
    let s1 = try #require(first.result["snapshotId"] as? String, "\(first.stderr)")
    let (restore, verify) = try runContainers(h, recorded: s1)
    #expect(restore.contains("latest"), "\(restore)")
    #expect(!verify.contains("latest") && verify.contains(EngineFlag.long(EngineFlag.snapshotFrom)), "\(verify)")

    let r = try h.run(restore, withRepo: false)
    #expect(r.code == 0, "\(r.stderr)")
    // The result is in the termination message and on the shared /tmp.
    let shared = try #require(FileManager.default.contents(atPath: h.dir + "/pod-tmp/botrt-restore-result.json"))
    let message = try #require(FileManager.default.contents(atPath: h.dir + "/termination-log-restore"))
    for line in [shared, message] {
      let o = try JSONSerialization.jsonObject(with: line) as? [String: Any]
      #expect(o?["command"] as? String == "restore" && o?["snapshotId"] as? String == s1)
      // readData (the default): the restored file was read back and checked (restore --verify).
      #expect(o?["filesVerified"] as? Int == 1 && o?["bytesVerified"] as? Int == 5, "\(o ?? [:])")
    }

    // A scheduled backup lands between the two containers.
    try h.write("data/b.txt", Data("second".utf8))
    let second = try h.run(["backup", h.dir + "/data"])
    let s2 = try #require(second.result["snapshotId"] as? String)
    #expect(s2 != s1)

    let v = try h.run(verify, withRepo: false)
    #expect(v.code == 0, "\(v.stderr)")
    // The verify writes its result where the kubelet reads it when it exists (not here): its log line has it.
    #expect(v.result["snapshotId"] as? String == s1, "verify checked \(v.result["snapshotId"] ?? "?"), restored \(s1)")
    // `latest` would have meant the new snapshot: the race this closes.
    let latest = try h.run(["verify", "latest"])
    #expect(latest.result["snapshotId"] as? String == s2)
  }

  @Test func aVerifyWithoutTheRestoresResultFailsNamingTheFile() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    #expect(try h.run(["init"]).code == 0)
    try h.write("data/a.txt", Data("first".utf8))
    let s1 = try #require(try h.run(["backup", h.dir + "/data"]).result["snapshotId"] as? String)
    let (_, verify) = try runContainers(h, recorded: s1)
    let shared = h.dir + "/pod-tmp/botrt-restore-result.json"
    // No restore ran: no file.
    var v = try h.run(verify, withRepo: false)
    #expect(v.code != 0)
    #expect(v.stderr.contains("--snapshot-from \(shared)") && v.stderr.contains("no such file"), "\(v.stderr)")
    // Another command's result (or a failed restore's) names no restored snapshot: no fallback to another one.
    #expect(try h.run(["snapshots", "--result-file", shared]).code == 0)
    v = try h.run(verify, withRepo: false)
    #expect(v.code != 0)
    #expect(v.stderr.contains("names no restored snapshot"), "\(v.stderr)")
    // Hostile bytes in the file: a clear error, not a crash.
    #expect(FileManager.default.createFile(atPath: shared, contents: Data([0xff, 0x00, 0x7b])))
    v = try h.run(verify, withRepo: false)
    #expect(v.code != 0 && v.code < 128, "exit \(v.code)")
    #expect(v.stderr.contains("not an engine result line"), "\(v.stderr)")
  }

  @Test func snapshotFromExcludesAnotherSelection() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    #expect(try h.run(["init"]).code == 0)
    for extra in [["latest"], ["--all"], ["--read-data-subset", "10%"]] {
      let v = try h.run(["verify", "--snapshot-from", h.dir + "/r.json"] + extra)
      #expect(v.code != 0)
      #expect(v.stderr.contains("--snapshot-from names the one snapshot"), "\(extra): \(v.stderr)")
    }
  }
}
