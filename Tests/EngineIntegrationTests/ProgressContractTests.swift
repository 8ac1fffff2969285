import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// The progress of a running backup across the engine → controller boundary: the backup container the controller
/// builds asks for progress lines (`--json`, `BOTRT_PROGRESS_FPS`), the real engine binary run with its arguments and
/// that setting writes them, and the controller's parser (`EngineProgress.latest`, `RunProgressLogic.progress`) reads
/// them into the status value.
@Suite struct ProgressContractTests {
  @Test func theBackupJobsProgressLinesAreReadIntoStatus() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    let spec = BackupPolicySpec(
      tier: .standard, source: BackupSource(pvc: PVCSource(claimName: "data")),
      repository: RepositorySpec(local: LocalRepository(path: h.repo, claimName: "backups")),
      encryption: EncryptionSpec(kms: KMSSpec(localKeySecretRef: SecretReference(name: "kek", key: "key"))))
    let container = try builtBackupContainer(name: "prog", spec: spec)
    // The claim is where the Pod mounts it: here, the test's tree; the key is the harness's.
    var args = (container["args"]?.arrayValue ?? []).compactMap(\.stringValue).map {
      $0.replacingOccurrences(of: "/backup/data", with: h.dir + "/src")
    }
    #expect(args.contains("--json") && !args.contains("--quiet"), "\(args)")
    if let i = args.firstIndex(of: EngineFlag.long(EngineFlag.kms)) { args[i + 1] = h.kmsURL }
    let fps = (container["env"]?.arrayValue ?? []).first { $0["name"]?.stringValue == EngineEnv.progressFPS }?[
      "value"]?.stringValue
    #expect(fps == EngineProgress.jobFramesPerSecond)

    let payload = Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) })
    try h.write("src/a.bin", payload)
    try h.write("src/b.txt", Data("hello\n".utf8))
    // The controller's arguments and rate on a small tree; what a Job's log would hold, stdout then stderr.
    let b = try h.run(args, withRepo: false, env: [EngineEnv.progressFPS: try #require(fps)])
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
