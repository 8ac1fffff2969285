import DRAPI
import EngineContract
import Foundation
import KubeCore
import KubeRuntime
import Testing

@testable import Reconcilers

/// The periodic verify across the boundary: the real engine's `verify --all --read-data-subset` result files, on an
/// intact repository and on one with a damaged and one with a missing pack, as the verify Pods' termination
/// messages, read by the controller (BackupRun.observe from the verify container, VerifyOutcome) into
/// status.lastVerify, RepositoryVerified and the verify metrics.
@Suite struct VerifyStatusTests {
  /// The verify command the CronJob runs (spec.verify with readDataSubset 100%, so the damaged pack is read), with
  /// the harness's repository, and its result file's text.
  static func verify(_ h: CLIHarness, name: String) throws -> (code: Int32, message: String) {
    let file = h.dir + "/\(name).result"
    let out = try h.run(["verify", "--all", "--read-data-subset", "100%", "--result-file", file])
    return (out.code, try String(contentsOfFile: file, encoding: .utf8))
  }

  /// A finished verify Job and its Pod whose `verify` container terminated with `code` and `message`, as the API
  /// returns them (a failed Job has the Failed condition, backoffLimit 0).
  static func observed(_ name: String, finished: String, code: Int32, message: String) -> BackupRun {
    let condition: JSONValue =
      code == 0
      ? ["type": "Complete", "status": "True", "lastTransitionTime": .string(finished)]
      : [
        "type": "Failed", "status": "True", "lastTransitionTime": .string(finished),
        "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit",
      ]
    var status: [String: JSONValue] = ["startTime": .string(finished), "conditions": [condition]]
    if code == 0 {
      status["completionTime"] = .string(finished)
      status["succeeded"] = 1
    } else {
      status["failed"] = 1
    }
    let job: JSONValue = [
      "metadata": [
        "name": .string(name), "labels": [ChildLabels.component: .string(VerifyOutcome.component)],
      ],
      "status": .object(status),
    ]
    let pod: JSONValue = [
      "metadata": ["labels": ["job-name": .string(name)]],
      "status": [
        "containerStatuses": [
          [
            "name": .string(VerifyOutcome.container),
            "state": [
              "terminated": [
                "exitCode": .int(Int64(code)), "reason": .string(code == 0 ? "Completed" : "Error"),
                "finishedAt": .string(finished), "message": .string(message),
              ]
            ],
          ]
        ]
      ],
    ]
    let split = BackupPolicyReconciler.runsByComponent(
      [(job, [pod])], containers: ["prune": "prune", VerifyOutcome.component: VerifyOutcome.container])
    return split[VerifyOutcome.component]?.first ?? BackupRun(jobName: "not observed", state: .running)
  }

  @Test func theControllerReadsTheEnginesVerifyResultsIntoStatusAndMetrics() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    #expect(try h.run(["init"]).code == 0)
    try h.write("a/one.bin", sampleData(512 << 10))
    #expect(try h.run(["backup", h.dir + "/a"]).code == 0)
    let before = Set(try h.objects("data"))
    try h.write("b/two.bin", sampleData(768 << 10))
    #expect(try h.run(["backup", h.dir + "/b"]).code == 0)
    let packs = try h.objects("data")
    let second = try #require(packs.first { !before.contains($0) })

    // Intact: passed, with what it checked.
    let ok = try Self.verify(h, name: "ok")
    #expect(ok.code == 0, "\(ok.message)")
    let passed = VerifyOutcome.evaluate(
      [Self.observed("db-verify-1", finished: "2026-05-24T04:00:00Z", code: ok.code, message: ok.message)],
      previous: nil)
    #expect(passed.status == .true && passed.reason == "VerifyPassed")
    let okRecord = try #require(passed.lastVerify)
    #expect(okRecord.succeeded && okRecord.job == "db-verify-1" && okRecord.errors == 0)
    #expect(okRecord.snapshots == 2)
    #expect((okRecord.bytesDownloaded ?? 0) > 0, "100% reads every pack")
    #expect(okRecord.time == KubeJSON.parseDate("2026-05-24T04:00:00Z"))

    // A damaged pack: failed, naming the pack.
    try h.flipByte(second, at: -40)
    let bad = try Self.verify(h, name: "bad")
    #expect(bad.code == 5, "integrity exit code: \(bad.message)")
    let failed = VerifyOutcome.evaluate(
      [
        Self.observed("db-verify-1", finished: "2026-05-24T04:00:00Z", code: ok.code, message: ok.message),
        Self.observed("db-verify-2", finished: "2026-05-31T04:00:00Z", code: bad.code, message: bad.message),
      ], previous: okRecord)
    #expect(failed.status == .false && failed.reason == "VerifyFailed" && failed.failing)
    let badRecord = try #require(failed.lastVerify)
    #expect(!badRecord.succeeded && badRecord.job == "db-verify-2")
    let damaged = String(second.split(separator: "/").last ?? "")
    #expect(badRecord.message?.contains(damaged) == true, "first problem names the pack: \(badRecord)")
    let result = try #require(EngineResult.parse(bad.message))
    // The engine lists each problem and then its summary; the count is the problems'.
    #expect(badRecord.errors == (result.errors?.count ?? 0) - 1)
    #expect((badRecord.errors ?? 0) >= 1)
    #expect(failed.message.contains("db-verify-2") && failed.message.contains(badRecord.message ?? "?"))
    #expect(failed.lastSuccess == KubeJSON.parseDate("2026-05-24T04:00:00Z"))

    // Into status and the metrics the alert reads.
    var status = BackupPolicyStatus()
    let event = failed.apply(to: &status, generation: 1, now: Date())
    #expect(event?.reason == "VerifyFailed")
    #expect(status.lastVerify == badRecord)
    #expect(status.conditions?.condition(BackupPolicyCondition.repositoryVerified)?.status == .false)
    let registry = MetricsRegistry()
    let metrics = BackupPolicyMetrics(registry)
    metrics.recordVerify(failed, ["shop", "db", "standard"], policy: ["namespace": "shop", "policy": "db"])
    let scraped = registry.render()
    #expect(scraped.contains(#"botrt_verify_failing{namespace="shop",policy="db",tier="standard"} 1"#), "\(scraped)")
    #expect(scraped.contains("# TYPE botrt_verify_last_success_timestamp_seconds gauge"))

    // The kubelet keeps the last 4 KiB of a termination message: a result cut there is not readable, and the run
    // is still a failure, from the container's exit.
    let cut = String(decoding: Data(bad.message.utf8).suffix(64), as: UTF8.self)
    let unreadable = VerifyOutcome.evaluate(
      [Self.observed("db-verify-2", finished: "2026-05-31T04:00:00Z", code: bad.code, message: cut)], previous: nil)
    #expect(unreadable.status == .false && unreadable.lastVerify?.errors == nil)
    #expect(unreadable.lastVerify?.message == "container exited with code 5 (Error)")

    // A missing pack (deleted from the storage): failed too, by the structure check alone.
    try FileManager.default.removeItem(atPath: h.repo + "/" + second)
    let gone = try Self.verify(h, name: "gone")
    #expect(gone.code == 5, "\(gone.message)")
    let missing = VerifyOutcome.evaluate(
      [Self.observed("db-verify-3", finished: "2026-06-07T04:00:00Z", code: gone.code, message: gone.message)],
      previous: badRecord)
    #expect(missing.status == .false && missing.lastVerify?.job == "db-verify-3")
    #expect((missing.lastVerify?.errors ?? 0) >= 1 && missing.lastVerify?.message?.isEmpty == false)
  }
}
