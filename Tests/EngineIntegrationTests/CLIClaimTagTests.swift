import DRAPI
import EngineContract
import Foundation
import KubeCore
import Reconcilers
import Testing

/// One claim of a multi-claim policy (spec.source.claims): its backups are tagged claim=NAME, and a restore or verify
/// of that claim's `latest` (`--tag claim=NAME`, as `RecoveryJobs.claimTags` gives it) picks among that claim's
/// snapshots only, never the newer snapshot of another claim of the same repository.
@Suite(.serialized) struct CLIClaimTagTests {
  /// A backup of `dir` as a claim's backup pod runs it: the typed arguments with the policy and claim tags.
  func backup(_ h: CLIHarness, claim: String, dir: String) throws -> String {
    let a = EngineBackupArguments(
      common: EngineCommonArguments(repo: h.repoURL, kms: h.kmsURL), dataType: "files",
      tags: ["policy=shop/files", MultiClaim.tag(claim)], initIfMissing: true, objectLock: nil, compression: nil,
      source: .paths([dir]))
    let r = try h.run(EngineArguments.backup(a).argv, withRepo: false)
    #expect(r.code == 0, "\(r.stderr)")
    return try #require(r.result["snapshotId"] as? String, "\(r.text)")
  }

  @Test func latestOfOneClaimIsThatClaimsNewestSnapshot() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("a/v.txt", Data("a-one\n".utf8))
    try h.write("b/v.txt", Data("b-one\n".utf8))
    let a1 = try backup(h, claim: "a", dir: h.dir + "/a")
    Thread.sleep(forTimeInterval: 1.1)
    let b1 = try backup(h, claim: "b", dir: h.dir + "/b")
    Thread.sleep(forTimeInterval: 1.1)
    try h.write("a/v.txt", Data("a-two\n".utf8))
    let a2 = try backup(h, claim: "a", dir: h.dir + "/a")
    #expect(Set([a1, b1, a2]).count == 3)

    // The policy and the plan's restore step of claim b, as the controller builds them.
    var policy = BackupPolicy(
      metadata: ObjectMeta(name: "files", namespace: "shop"),
      spec: BackupPolicySpec(
        tier: .standard, source: BackupSource(claims: ClaimsSource(selector: ClaimSelector())),
        repository: RepositorySpec(local: LocalRepository(path: "/r")),
        encryption: EncryptionSpec(kms: KMSSpec(localKeySecretRef: SecretReference(name: "k")))))
    policy.status = BackupPolicyStatus()
    let step = RestoreStepSpec(
      policyRef: LocalObjectReference(name: "files"), into: RestoreDestination(pvc: RestorePVC(claimName: "b")),
      claim: "b")
    let tags = try RecoveryJobs.claimTags(step, policy: policy, snapshot: .latest, field: "restore")
    #expect(tags == ["claim=b"])
    let common = EngineCommonArguments(repo: h.repoURL, kms: h.kmsURL)
    let restore = EngineArguments.restore(
      EngineRestoreArguments(
        common: common, snapshot: .latest, requireSnapshot: nil, output: .target(h.dir + "/out"), stripComponents: 0,
        tags: tags))
    let r = try h.run(restore.argv + ["--quiet"], withRepo: false)
    #expect(r.code == 0, "\(r.stderr)")
    #expect(r.result["snapshotId"] as? String == b1, "claim b's latest is b1, not the newer a2: \(r.text)")
    let restored = try FileManager.default.subpathsOfDirectory(atPath: h.dir + "/out").filter {
      $0.hasSuffix("v.txt")
    }
    #expect(restored.count == 1, "\(restored)")
    #expect(try String(contentsOfFile: h.dir + "/out/" + restored[0], encoding: .utf8) == "b-one\n")

    // Without the tag, latest is the repository's newest (claim a's); with claim a's tag, a2.
    let any = try h.run(["restore", "latest", "--target", h.dir + "/any"])
    #expect(any.result["snapshotId"] as? String == a2, "\(any.text)")
    let ofA = try h.run(["restore", "latest", "--tag", "claim=a", "--target", h.dir + "/outa"])
    #expect(ofA.result["snapshotId"] as? String == a2, "\(ofA.text)")
    // Before a2: claim a's latest is a1.
    let list = try #require(try h.run(["snapshots", "--json"]).result["snapshots"] as? [[String: Any]])
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    let text = try #require(list.first { $0["id"] as? String == a2 }?["time"] as? String)
    let t2 = try #require(f.date(from: text) ?? ISO8601DateFormatter().date(from: text), "\(text)")
    let before = try h.run([
      "restore", "latest", "--tag", "claim=a", "--before", f.string(from: t2.addingTimeInterval(-0.5)),
      "--target", h.dir + "/outa1",
    ])
    #expect(before.result["snapshotId"] as? String == a1, "\(before.text)")

    // verify latest of claim b (a drill's verify) chooses the same snapshot.
    var v = EngineVerifyArguments(common: common, which: .latest, readData: true, requireSnapshot: b1)
    v.tags = tags
    let checked = try h.run(EngineArguments.verify(v).argv + ["--quiet"], withRepo: false)
    #expect(checked.code == 0, "\(checked.stderr)")
    #expect(checked.result["snapshotId"] as? String == b1, "\(checked.text)")

    // A claim with no snapshot: not found (exit 2), naming the tag.
    let none = try h.run(["restore", "latest", "--tag", "claim=c", "--target", h.dir + "/outc"])
    #expect(none.code == 2, "\(none.text)")
    #expect(none.stderr.contains("--tag claim=c"), "\(none.stderr)")
  }
}
