import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// Issue 18: a drill verifies the snapshot it restored (its packs only), not the whole repository, and records the
/// bytes it read.
@Suite struct DrillVerifyScopeTests {
  /// The engine arguments of the run Job's restore and verify containers.
  func runArgs(_ spec: DrillRunSpec, drill: DRDrill, lastSnapshot: String? = nil) throws -> (
    restore: [String], verify: [String]
  ) {
    var policy = try recoveryTestPolicy()
    if let lastSnapshot {
      policy.status = BackupPolicyStatus()
      policy.status?.lastSnapshot = lastSnapshot
    }
    let job = try DrillLogic.runJob(
      drill, spec: spec, namespace: "drill-x", settings: ControllerSettings(engineImage: "e:1"),
      policies: ["db": policy], timeoutSeconds: 3600)
    let pod = try #require(job[path: "spec", "template", "spec"])
    let all = (pod["initContainers"]?.arrayValue ?? []) + (pod["containers"]?.arrayValue ?? [])
    func args(_ name: String) throws -> [String] {
      let c = try #require(all.first { $0["name"]?.stringValue == name })
      return (c["args"]?.arrayValue ?? []).compactMap(\.stringValue)
    }
    return (try args("restore"), try args("verify"))
  }

  /// The tokens that select the snapshot: `latest`/an id, and `--before`/`--require-snapshot` with their values.
  func selection(_ argv: [String]) -> [String] {
    var out: [String] = []
    var i = 0
    while i < argv.count {
      let a = argv[i]
      if a == "--before" || a == "--require-snapshot", i + 1 < argv.count {
        out += [a, argv[i + 1]]
        i += 2
        continue
      }
      if a == "latest" || a.hasPrefix("5cbf") { out.append(a) }
      i += 1
    }
    return out
  }

  /// Whether `run` appears in `argv` as consecutive words.
  func hasRun(_ argv: [String], _ run: [String]) -> Bool {
    argv.indices.contains { i in argv[i...].starts(with: run) }
  }

  @Test func theDrillsVerifyNamesTheRestoredSnapshotAndNotAll() throws {
    let d = try drillTestDrill()
    var spec = try DrillLogic.runSpec(d, plan: nil)
    let share = ["--snapshot-from", RecoveryJobs.restoreResultShare]
    let results = ["--result-file", "/dev/termination-log", "--result-file", RecoveryJobs.restoreResultShare]
    // latest, with the newest recorded snapshot required by both.
    var (restore, verify) = try runArgs(spec, drill: d, lastSnapshot: "abc123def456")
    #expect(verify.first == "verify")
    #expect(!verify.contains("--all"), "\(verify)")
    // The data is downloaded once, by the restore, which reads the restored files back (readData); the verify
    // checks the structure only.
    #expect(!verify.contains("--read-data") && restore.contains("--verify"), "\(restore) / \(verify)")
    #expect(selection(restore) == ["latest", "--require-snapshot", "abc123def456"], "\(restore)")
    // Verify checks what the restore restored, read from its result: not `latest` again.
    #expect(selection(verify) == ["--require-snapshot", "abc123def456"], "\(verify)")
    #expect(hasRun(verify, share), "\(verify)")
    #expect(hasRun(restore, results), "\(restore)")
    // A point in time, and a snapshot id: the restore selects, the verify follows.
    spec.restore.beforeTime = drillNow - 3600
    (restore, verify) = try runArgs(spec, drill: d)
    #expect(selection(restore).prefix(2) == ["latest", "--before"], "\(restore)")
    #expect(selection(verify).isEmpty && hasRun(verify, share), "\(verify)")
    spec.restore.beforeTime = nil
    spec.restore.snapshot = "5cbfd2d2151a4b37"
    (restore, verify) = try runArgs(spec, drill: d)
    #expect(selection(restore) == ["5cbfd2d2151a4b37"])
    #expect(selection(verify).isEmpty && hasRun(verify, share), "\(verify)")
    #expect(!verify.contains("--all"))
    // readData false: no read-back.
    spec.readData = false
    (restore, verify) = try runArgs(spec, drill: d)
    #expect(!restore.contains("--verify") && !verify.contains("--read-data"), "\(restore) / \(verify)")
  }

  @Test func verifyArgumentsOfEachSelection() {
    let common = EngineCommonArguments(repo: "s3:b/p", kms: "file:///k")
    func argv(_ w: EngineVerifyArguments.Which) -> [String] {
      EngineArguments.verify(EngineVerifyArguments(common: common, which: w, readData: true, requireSnapshot: nil))
        .argv.filter { $0 != "--quiet" }
    }
    #expect(argv(.latest).suffix(2) == ["--read-data", "latest"])
    #expect(
      argv(.latestBefore("2026-01-01T00:00:00Z")).suffix(4)
        == ["--read-data", "latest", "--before", "2026-01-01T00:00:00Z"])
    #expect(argv(.snapshot("abc")).suffix(2) == ["--read-data", "abc"])
    #expect(
      argv(.restoredBy(resultFile: "/tmp/r.json")).suffix(3) == ["--read-data", "--snapshot-from", "/tmp/r.json"])
    #expect(argv(.all).suffix(2) == ["--read-data", "--all"])
  }

  @Test func theBytesReadAreRecorded() throws {
    let d = try drillTestDrill()
    let start = drillNow
    var j = drillJob(start: start, verifySeconds: 100, bytes: 600_000_000)
    // What was fetched from the storage counts (compressed and encrypted), not the restored bytes (600 MB here) nor
    // verify's pack-data figure alone.
    let restoreMessage = try #require(j.containers["restore"]?.message)
    j.containers["restore"]?.message = restoreMessage.replacingOccurrences(
      of: #""ok":true"#, with: #""ok":true,"storageBytesRead":210000000"#)
    j.containers["verify"]?.message =
      #"{"command":"verify","ok":true,"snapshotId":"5cbfd2d2151a4b37","bytesDownloaded":200000000,"storageBytesRead":200100000}"#
    let o = DrillLogic.finish(
      d, job: j, runStart: start, token: nil, scratchNamespace: "drill-x", snapshotTime: start - 60, baseline: nil,
      security: allSecure, targets: try DrillLogicTests().targets(d), now: start + 100)
    #expect(o.result.bytesRead == 410_100_000)
    #expect(o.result.dataIntegrity == true)
    // An older engine reports no figure: none is recorded.
    let older = DrillLogic.finish(
      d, job: drillJob(start: start, verifySeconds: 100, bytes: 5_000), runStart: start, token: nil,
      scratchNamespace: "drill-x", snapshotTime: start - 60, baseline: nil, security: allSecure,
      targets: try DrillLogicTests().targets(d), now: start + 100)
    #expect(older.result.bytesRead == nil)
    #expect(DrillLogic.bytesRead(restore: nil, verify: nil) == nil)
  }

  @Test func aVerifyOfAnotherSnapshotFailsIntegrity() throws {
    let d = try drillTestDrill()
    let start = drillNow
    var j = drillJob(start: start, verifySeconds: 100)
    j.containers["verify"]?.message = #"{"command":"verify","ok":true,"snapshotId":"77aa77aa77aa77aa"}"#
    let o = DrillLogic.finish(
      d, job: j, runStart: start, token: nil, scratchNamespace: "drill-x", snapshotTime: start - 60, baseline: nil,
      security: allSecure, targets: try DrillLogicTests().targets(d), now: start + 100)
    #expect(o.result.dataIntegrity == false)
    #expect(o.result.passed == false)
    #expect(
      o.result.failures?.contains { $0.contains("77aa77aa77aa") && $0.contains("5cbfd2d2151a") } == true,
      "\(o.result.failures ?? [])")
  }
}
