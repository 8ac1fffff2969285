import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// The progress of a running backup across the engine → controller boundary: the backup container the controller
/// builds asks for progress lines (`--json`, `BOTRT_PROGRESS_FPS`), the real engine binary run with that setting
/// writes them, and the controller's parser (`EngineProgress.latest`, `RunProgressLogic.progress`) reads them into
/// the status value.
@Suite struct ProgressContractTests {
  /// The backup CronJob's engine container as the controller builds it: its arguments and its progress rate.
  static func backupContainer() throws -> (args: [String], fps: String?) {
    var meta = ObjectMeta(name: "prog", namespace: "shop")
    meta.uid = "uid-prog"
    let spec = BackupPolicySpec(
      tier: .standard, source: BackupSource(pvc: PVCSource(claimName: "data")),
      repository: RepositorySpec(local: LocalRepository(path: "/backups")),
      encryption: EncryptionSpec(kms: KMSSpec(localKeySecretRef: SecretReference(name: "kek", key: "key"))))
    let policy = BackupPolicy(metadata: meta, spec: spec)
    let children = try BackupPolicyChildren.build(
      ChildInputs(
        policy: policy, effective: try EffectivePolicy(spec: spec, now: Date()),
        settings: ControllerSettings(engineImage: "botrt/engine:1", cronJobAPIVersion: "batch/v1", calicoServed: false),
        secrets: ["kek": Secret(metadata: ObjectMeta(name: "kek", namespace: "shop"), data: ["key": Data(count: 32)])]))
    let names = ChildNames(namespace: "shop", name: "prog")
    let cron = try #require(children.first { $0.resource.kind == "CronJob" && $0.name == names.backupCronJob })
    let containers = try #require(
      cron.body[path: "spec", "jobTemplate", "spec", "template", "spec", "containers"]?.arrayValue)
    let backup = try #require(containers.first { $0["name"]?.stringValue == "backup" })
    let args = (backup["args"]?.arrayValue ?? []).compactMap(\.stringValue)
    let fps = (backup["env"]?.arrayValue ?? []).first { $0["name"]?.stringValue == EngineEnv.progressFPS }?["value"]?
      .stringValue
    return (args, fps)
  }

  @Test func theBackupJobsProgressLinesAreReadIntoStatus() throws {
    let built = try Self.backupContainer()
    #expect(built.args.contains("--json") && !built.args.contains("--quiet"), "\(built.args)")
    #expect(built.fps == EngineProgress.jobFramesPerSecond)

    let h = try CLIHarness()
    defer { h.cleanup() }
    let payload = Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) })
    try h.write("src/a.bin", payload)
    try h.write("src/b.txt", Data("hello\n".utf8))
    // The controller's output flags and rate on a small tree; what a Job's log would hold, stdout then stderr.
    let b = try h.run(
      ["backup", "--init-if-missing", "--json", "--repo", h.repoURL, "--kms", h.kmsURL, h.dir + "/src"],
      withRepo: false, env: [EngineEnv.progressFPS: try #require(built.fps)])
    #expect(b.code == 0, "\(b.stderr)")
    let log = String(decoding: b.stdout, as: UTF8.self) + b.stderr
    let lines = log.split(separator: "\n")
    let progress = lines.compactMap { EngineProgress.parse($0) }
    // At one line per 5 s, a run of a few seconds writes one or two; the result line is not progress.
    #expect((1...2).contains(progress.count), "\(log)")
    #expect(EngineProgress.parse(try #require(lines.last)) == nil)
    let line = try #require(EngineProgress.latest(inLog: log))
    #expect(line.phase == "backup" && line.bytesDone <= Int64(payload.count + 6) && line.files <= 2)
    #expect(line.secondsElapsed != nil)

    let start = Date(timeIntervalSince1970: 1_780_000_000)
    let status = RunProgressLogic.progress(
      job: "prog-backup-1", startTime: start, line: line, previous: nil,
      previousBackupBytes: Int64(payload.count) * 2, now: start.addingTimeInterval(3))
    #expect(status.job == "prog-backup-1" && status.phase == "backup")
    #expect(status.bytesDone == line.bytesDone && status.filesDone == line.files)
    if let total = line.bytesTotal {
      // The run's last line, with the engine's own total.
      #expect(status.totalBytes == total && status.totalBytesSource == "Engine", "\(status)")
    } else {
      #expect(status.totalBytes == Int64(payload.count) * 2 && status.totalBytesSource == "PreviousBackup")
    }
    #expect(status.percent.map { (0...99).contains($0) } ?? false, "\(status)")
  }
}
