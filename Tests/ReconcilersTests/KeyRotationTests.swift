import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// Key rotation under an injected clock, and the Jobs it builds.
@Suite struct KeyRotationTests {
  let day: TimeInterval = 86_400

  /// A policy whose first backup created its repository.
  func vaultPolicy(days: Int = 30) -> BackupPolicy {
    var p = dumpPolicy()
    p.spec.encryption.keyRotationDays = days
    p.status = BackupPolicyStatus(lastSuccessfulBackup: p.metadata.creationTimestamp)
    return p
  }

  func localPolicy(rotation: Bool = true, current: String? = nil) -> BackupPolicy {
    var p = dumpPolicy()
    p.spec.encryption = EncryptionSpec(
      kms: KMSSpec(localKeySecretRef: SecretReference(name: "master-key")), keyRotationDays: 30,
      rotationKeysSecretRef: rotation ? SecretNameReference(name: "rotation-keys") : nil)
    p.status = BackupPolicyStatus(lastSuccessfulBackup: p.metadata.creationTimestamp, currentKey: current)
    return p
  }

  func run(
    _ name: String, _ state: BackupRun.State, finished: Date?, token: String, newKey: String? = nil,
    result: EngineResult? = nil
  ) -> BackupRun {
    var r = BackupRun(jobName: name, state: state, startTime: finished?.addingTimeInterval(-5), finishTime: finished)
    r.annotations[KeyRotationLogic.tokenAnnotation] = token
    if let newKey { r.annotations[KeyRotationLogic.newKeyAnnotation] = newKey }
    r.result = result
    return r
  }

  @Test func notDueUntilTheDaysHavePassedSinceCreation() {
    let p = vaultPolicy()
    let created = try! #require(p.metadata.creationTimestamp)
    let o = KeyRotationLogic.plan(policy: p, runs: [], rotationKeys: nil, now: testNow)
    #expect(o.due == .false)
    #expect(o.reason == "NotDue")
    #expect(o.start == nil)
    #expect(o.nextKeyRotation == created.addingTimeInterval(30 * day))
    #expect(o.requeueAt == created.addingTimeInterval(30 * day + 1))
    #expect(o.keyAgeSeconds == 30)
    #expect(o.limitSeconds == 30 * day)
    #expect(o.message.contains("every 30 days"))
  }

  @Test func noRotationBeforeTheFirstBackupCreatedTheRepository() {
    var p = vaultPolicy()
    p.status = nil
    let o = KeyRotationLogic.plan(policy: p, runs: [], rotationKeys: nil, now: testNow.addingTimeInterval(31 * day))
    #expect(o.due == .true)
    #expect(o.reason == "AwaitingFirstBackup")
    #expect(o.start == nil)
    #expect(o.events.isEmpty)
  }

  @Test func dueStartsOneJobPerDueMomentAndHour() {
    let p = vaultPolicy()
    let created = p.metadata.creationTimestamp!
    let due = created.addingTimeInterval(30 * day)
    let now = due.addingTimeInterval(60)
    let o = KeyRotationLogic.plan(policy: p, runs: [], rotationKeys: nil, now: now)
    #expect(o.due == .true)
    #expect(o.reason == "RotationStarted")
    let start = try! #require(o.start)
    #expect(start.token == "rotate:\(KubeJSON.formatDate(due)):0")
    #expect(start.newKey == nil)
    #expect(o.events.map(\.reason) == ["KeyRotationStarted"])
    // The same moment gives the same token: a repeated reconcile applies the same Job.
    #expect(
      KeyRotationLogic.plan(policy: p, runs: [], rotationKeys: nil, now: now.addingTimeInterval(5)).start == start)

    // While it runs nothing new starts.
    let running = run("j0", .running, finished: nil, token: start.token)
    let r = KeyRotationLogic.plan(policy: p, runs: [running], rotationKeys: nil, now: now)
    #expect(r.reason == "RotationRunning")
    #expect(r.start == nil)

    // It failed: reported with the engine's error, tried again an hour later under a new token.
    let failed = run(
      "j0", .failed, finished: now.addingTimeInterval(10), token: start.token,
      result: EngineResult(ok: false, exitCode: 13, errors: ["KMS vault denied access"]))
    let f = KeyRotationLogic.plan(policy: p, runs: [failed], rotationKeys: nil, now: now.addingTimeInterval(20))
    #expect(f.reason == "RotationFailed")
    #expect(f.start == nil)
    #expect(f.message.contains("KMS vault denied access"))
    #expect(f.events.first?.reason == "KeyRotationFailed")
    #expect(f.events.first?.warning == true)
    #expect(f.requeueAt == due.addingTimeInterval(3_601))
    let later = KeyRotationLogic.plan(policy: p, runs: [failed], rotationKeys: nil, now: due.addingTimeInterval(3_700))
    #expect(later.start?.token == "rotate:\(KubeJSON.formatDate(due)):1")
    #expect(later.obsoleteJobs == ["j0"])
  }

  @Test func aSuccessfulRotationMovesTheClockOn() {
    var p = vaultPolicy()
    let due = p.metadata.creationTimestamp!.addingTimeInterval(30 * day)
    let done = due.addingTimeInterval(120)
    let ok = run(
      "j1", .succeeded, finished: done, token: "rotate:x:0",
      result: EngineResult(ok: true, kms: "vault-transit://vault:8200/transit/k", keyVersion: "2"))
    let o = KeyRotationLogic.plan(policy: p, runs: [ok], rotationKeys: nil, now: done.addingTimeInterval(5))
    #expect(o.lastKeyRotation == done)
    #expect(o.nextKeyRotation == done.addingTimeInterval(30 * day))
    #expect(o.due == .false)
    #expect(o.currentKey == nil)
    #expect(o.events.map(\.reason) == ["KeyRotated"])
    #expect(o.events.first?.message.contains("key version 2") == true)
    #expect(o.keyAgeSeconds == 5)
    // Once recorded, the same run is neither reported again nor kept.
    p.status?.lastKeyRotation = done
    let again = KeyRotationLogic.plan(policy: p, runs: [ok], rotationKeys: nil, now: done.addingTimeInterval(60))
    #expect(again.events.isEmpty)
    #expect(again.obsoleteJobs == ["j1"])
  }

  @Test func awsKmsRecordsTheNewKeyId() {
    var p = vaultPolicy()
    p.spec.encryption.kms = KMSSpec(awsKms: AWSKMS(keyId: "alias/backups", region: "eu-west-1"))
    let ok = run(
      "j1", .succeeded, finished: testNow, token: "rotate:x:0",
      result: EngineResult(ok: true, kms: "awskms://1234abcd-0000-4000-8000-1234567890ab?region=eu-west-1"))
    let o = KeyRotationLogic.plan(policy: p, runs: [ok], rotationKeys: nil, now: testNow)
    #expect(o.currentKey == "1234abcd-0000-4000-8000-1234567890ab")
    #expect(
      KeyRotationLogic.awsKeyId(fromKMS: "awskms:///arn:aws:kms:us-east-1:1:key/k") == "arn:aws:kms:us-east-1:1:key/k")
    // Backups then name the new key.
    p.status?.currentKey = o.currentKey
    let inv = try! EngineInvocation(spec: p.spec, currentKey: p.status?.currentKey) { $0 }
    #expect(inv.kmsURL == "awskms://1234abcd-0000-4000-8000-1234567890ab?region=eu-west-1")
  }

  @Test func localKeysComeFromTheRotationSecretInNameOrder() {
    let now = testNow.addingTimeInterval(31 * day)
    let none = KeyRotationLogic.plan(policy: localPolicy(rotation: false), runs: [], rotationKeys: nil, now: now)
    #expect(none.reason == "NoNewKey")
    #expect(none.start == nil)
    #expect(none.events.first?.reason == "KeyRotationNoNewKey")
    let empty = KeyRotationLogic.plan(policy: localPolicy(), runs: [], rotationKeys: [], now: now)
    #expect(empty.reason == "NoNewKey")
    #expect(empty.message.contains("rotation-keys"))
    let first = KeyRotationLogic.plan(
      policy: localPolicy(), runs: [], rotationKeys: ["key-2027-02", "key-2026-11"], now: now)
    #expect(first.start?.newKey == "key-2026-11")
    let second = KeyRotationLogic.plan(
      policy: localPolicy(current: "key-2026-11"), runs: [], rotationKeys: ["key-2027-02", "key-2026-11"], now: now)
    #expect(second.start?.newKey == "key-2027-02")
    let exhausted = KeyRotationLogic.plan(
      policy: localPolicy(current: "key-2027-02"), runs: [], rotationKeys: ["key-2027-02", "key-2026-11"], now: now)
    #expect(exhausted.reason == "NoNewKey")
    // A finished local rotation records the entry it moved to.
    let ok = run("j", .succeeded, finished: now, token: "t", newKey: "key-2026-11")
    #expect(
      KeyRotationLogic.plan(policy: localPolicy(), runs: [ok], rotationKeys: ["key-2026-11"], now: now).currentKey
        == "key-2026-11")
  }

  @Test func theAnnotationAsksForARotationOnce() {
    var p = vaultPolicy()
    p.metadata.annotations = [KeyRotationLogic.requestAnnotation: "compromise-1"]
    let o = KeyRotationLogic.plan(policy: p, runs: [], rotationKeys: nil, now: testNow)
    #expect(o.due == .true)
    #expect(o.start?.token == "request:compromise-1")
    let ok = run("j", .succeeded, finished: testNow, token: "request:compromise-1")
    let done = KeyRotationLogic.plan(policy: p, runs: [ok], rotationKeys: nil, now: testNow.addingTimeInterval(1))
    #expect(done.lastHandledRequest == "request:compromise-1")
    p.status?.lastKeyRotation = testNow
    p.status?.lastHandledKeyRotationRequest = done.lastHandledRequest
    let after = KeyRotationLogic.plan(policy: p, runs: [], rotationKeys: nil, now: testNow.addingTimeInterval(2))
    #expect(after.due == .false)
    #expect(after.start == nil)
  }

  @Test func rotationJobsRunTheEngineWithTheRightKeys() throws {
    // Vault: the key service makes the new key version.
    let vault = vaultPolicy()
    let eff = try EffectivePolicy(spec: vault.spec, now: testNow)
    let job = try BackupPolicyChildren.keyRotationJob(
      ChildInputs(policy: vault, effective: eff, settings: settings(), secrets: allSecrets),
      KeyRotationJob(token: "rotate:x:0", newKey: nil))
    let names = ChildNames(namespace: "shop", name: "payments-db")
    #expect(job.name == names.rotateJob(token: "rotate:x:0"))
    #expect(job.namespace == "botrt-backup")
    let c = try #require(job.body[path: "spec", "template", "spec", "containers"]?.arrayValue?.first)
    let args = (c["args"]?.arrayValue ?? []).compactMap(\.stringValue)
    #expect(args.first == "rotate-keys")
    #expect(args.contains("--new-kek"))
    #expect(c["name"] == "engine")
    #expect(job.body[path: "metadata", "labels", ChildLabels.component] == "rotate-keys")
    #expect(job.body[path: "spec", "template", "spec", "automountServiceAccountToken"] == false)

    // Local: the next entry of the rotation keys Secret, mounted with the current key.
    let local = localPolicy(current: "key-1")
    let secrets = allSecrets.merging([
      "rotation-keys": secret("rotation-keys", ["key-1": String(repeating: "a", count: 64), "key-2": "b"])
    ]) { $1 }
    let leff = try EffectivePolicy(spec: local.spec, now: testNow)
    let ljob = try BackupPolicyChildren.keyRotationJob(
      ChildInputs(policy: local, effective: leff, settings: settings(), secrets: secrets),
      KeyRotationJob(token: "t", newKey: "key-2"))
    let lc = try #require(ljob.body[path: "spec", "template", "spec", "containers"]?.arrayValue?.first)
    let largs = (lc["args"]?.arrayValue ?? []).compactMap(\.stringValue)
    let kms = try #require(largs.firstIndex(of: "--kms"))
    #expect(largs[kms + 1] == "file://\(EngineInvocation.rotationKeysPath)/key-1")
    let newKms = try #require(largs.firstIndex(of: "--new-kms"))
    #expect(largs[newKms + 1] == "file://\(EngineInvocation.rotationKeysPath)/key-2")
    #expect(ljob.body[path: "metadata", "annotations", KeyRotationLogic.newKeyAnnotation] == "key-2")
    // After a rotation the spec's key is no longer needed.
    let inv = try EngineInvocation(spec: local.spec, currentKey: "key-1") { $0 }
    #expect(!inv.secrets.contains { $0.sourceName == "master-key" })
    #expect(inv.secrets.first { $0.sourceName == "rotation-keys" }?.requiredKeys == ["key-1"])
    // The rotation Secret is only for local keys.
    var wrong = vaultPolicy()
    wrong.spec.encryption.rotationKeysSecretRef = SecretNameReference(name: "rotation-keys")
    #expect(throws: SpecError.self) { try EngineInvocation(spec: wrong.spec) { $0 } }
  }

  @Test func deletionEventsSayWhatWasDeletedAndWhatWasKept() {
    let ok = BackupRun(
      jobName: "d", state: .succeeded, finishTime: testNow,
      result: EngineResult(ok: true, objectsDeleted: 12, objectsRetained: 0))
    let e = BackupDeletion.event(run: ok, repository: "s3://b/p")
    #expect(e.reason == "BackupsDeleted")
    #expect(!e.warning)
    #expect(e.message.contains("12 objects"))
    let locked = BackupRun(
      jobName: "d", state: .succeeded, finishTime: testNow,
      result: EngineResult(
        ok: true, warnings: ["retained by Object Lock, not deleted: data/ab: locked"], objectsDeleted: 4,
        objectsRetained: 3))
    let l = BackupDeletion.event(run: locked, repository: "s3://b/p")
    #expect(l.reason == "BackupsRetained")
    #expect(l.warning)
    #expect(l.message.contains("3 objects are retained by Object Lock"))
    #expect(!l.message.contains("deleted the repository"))
    let failed = BackupRun(
      jobName: "d", state: .failed, finishTime: testNow,
      result: EngineResult(ok: false, exitCode: 4, errors: ["access denied to config"]))
    let f = BackupDeletion.event(run: failed, repository: "s3://b/p")
    #expect(f.reason == "BackupsNotDeleted")
    #expect(f.message.contains("access denied"))
    #expect(f.message.contains("were kept"))
  }
}
