import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// The dump policy of BackupPolicyChildrenTests with a GCS replica under its own Vault key and Secrets.
func replicatedPolicy(countsForRPO: Bool = false, second: Bool = false) -> BackupPolicy {
  var p = dumpPolicy()
  p.spec.compliance = nil  // the critical tier's RPO of 5m
  var replicas = [
    ReplicaSpec(
      name: "dr-gcs",
      repository: RepositorySpec(
        gcs: GCSRepository(
          bucket: "dr-bucket", prefix: "payments", endpoint: "http://10.0.0.9:4443",
          credentialsSecretRef: SecretReference(name: "gcs-sa"))),
      encryption: EncryptionSpec(
        kms: KMSSpec(
          vaultTransit: VaultTransitKMS(
            address: "https://vault-dr.vault.svc:8200", key: "dr-key",
            authSecretRef: SecretReference(name: "vault-dr-token")))),
      countsForRPO: countsForRPO)
  ]
  if second {
    replicas.append(
      ReplicaSpec(
        name: "other-region",
        repository: RepositorySpec(
          s3: S3Repository(
            bucket: "backups-eu", region: "eu-west-1", endpoint: "http://10.0.0.7:9000", forcePathStyle: true,
            credentialsSecretRef: SecretNameReference(name: "s3-creds")))))
  }
  p.spec.replicas = replicas
  return p
}

let replicaSecrets: [String: Secret] = allSecrets.merging([
  "gcs-sa": secret("gcs-sa", ["service-account.json": "{}"]),
  "vault-dr-token": secret("vault-dr-token", ["token": "dr-t0k"]),
]) { $1 }

@Suite struct ReplicationChildrenTests {
  let names = ChildNames(namespace: "shop", name: "payments-db")

  func inputs(_ p: BackupPolicy, secrets: [String: Secret] = replicaSecrets) throws -> ChildInputs {
    ChildInputs(
      policy: p, effective: try EffectivePolicy(spec: p.spec, now: testNow), settings: settings(), secrets: secrets)
  }

  @Test func copyJobRunsTheEngineCopyWithTheTargetsOwnSettingsHardened() throws {
    let p = replicatedPolicy()
    let job = try ReplicationChildren.copyJob(
      try inputs(p), index: 0, snapshot: "abc123", backupTime: testNow.addingTimeInterval(-60))
    #expect(job.name == names.copyJob(replica: "dr-gcs", snapshot: "abc123"))
    #expect(job.name.count <= 63)
    #expect(job.name != names.copyJob(replica: "dr-gcs", snapshot: "abc124"))
    #expect(job.namespace == "botrt-backup")
    #expect(job.body[path: "metadata", "labels", ChildLabels.component]?.stringValue == "replica-copy")
    #expect(job.body[path: "metadata", "labels", ReplicaLabels.replica]?.stringValue == "dr-gcs")
    #expect(job.body[path: "metadata", "annotations", ReplicaLabels.sourceSnapshot]?.stringValue == "abc123")
    #expect(
      job.body[path: "metadata", "annotations", ReplicaLabels.sourceBackupTime]?.stringValue
        == KubeJSON.formatDate(testNow.addingTimeInterval(-60)))
    let pod = try #require(job.body[path: "spec", "template", "spec"])
    #expect(pod["serviceAccountName"]?.stringValue == names.serviceAccount)
    #expect(pod["automountServiceAccountToken"] == false)
    #expect(pod[path: "securityContext", "runAsNonRoot"] == true)
    let c = try #require(pod["containers"]?.arrayValue?.first)
    #expect(c["name"]?.stringValue == "copy")
    #expect(c[path: "securityContext", "readOnlyRootFilesystem"] == true)
    #expect(c[path: "securityContext", "allowPrivilegeEscalation"] == false)
    #expect(c[path: "securityContext", "capabilities", "drop"] == ["ALL"])
    let args = c["args"]?.arrayValue?.compactMap(\.stringValue) ?? []
    // The replica keeps what the primary keeps: the policy's effective retention, pruned.
    let retention = EngineInvocation.retentionFlags(try inputs(p).effective.retention.value)
    #expect(retention.contains("--prune") && retention.count > 2)
    #expect(
      args == [
        "copy", "--repo", "s3://backups/payments", "--kms",
        "vault-transit://vault.vault.svc:8200/transit/backup-database-key?tls=true", "--retry-lock", "11m",
        "--s3-endpoint", "http://10.0.0.5:9000", "--s3-region", "us-east-1", "--s3-path-style", "--vault-token-file",
        "/var/run/botrt/secrets/vault-token/token", "--to", "gs://dr-bucket/payments", "--to-kms",
        "vault-transit://vault-dr.vault.svc:8200/transit/dr-key?tls=true", "--to-vault-token-file",
        "/var/run/botrt/secrets/to-vault-token/token", "--init-if-missing",
      ] + retention + ["--quiet"])
    // The target's credentials and endpoint reach only the target (BOTRT_TO_ENV_*), from the Secret copies.
    let env = c["env"]?.arrayValue ?? []
    func envValue(_ n: String) -> JSONValue? { env.first { $0["name"]?.stringValue == n } }
    #expect(envValue("BOTRT_TO_ENV_BOTRT_GCS_ENDPOINT")?["value"]?.stringValue == "http://10.0.0.9:4443")
    #expect(
      envValue("BOTRT_TO_ENV_GOOGLE_APPLICATION_CREDENTIALS")?["value"]?.stringValue
        == "/var/run/botrt/secrets/to-gcs-credentials/service-account.json")
    #expect(
      envValue("AWS_ACCESS_KEY_ID")?[path: "valueFrom", "secretKeyRef", "name"]?.stringValue
        == names.secretCopy("s3-creds"))
    #expect(envValue("PGPASSWORD") == nil)  // the dump command's Secret is not the copy's business
    let volumes = pod["volumes"]?.arrayValue ?? []
    #expect(
      volumes.first { $0["name"]?.stringValue == "to-vault-token" }?[path: "secret", "secretName"]?.stringValue
        == names.secretCopy("vault-dr-token"))
    #expect(volumes.first { $0["name"]?.stringValue == "vault-token" } != nil)
    let mounts = c["volumeMounts"]?.arrayValue ?? []
    #expect(
      mounts.first { $0["name"]?.stringValue == "to-vault-token" }?["mountPath"]?.stringValue
        == "/var/run/botrt/secrets/to-vault-token")
    // Sorted, de-duplicated volume names: no collision between the source's and the target's.
    let vnames = volumes.compactMap { $0["name"]?.stringValue }
    #expect(Set(vnames).count == vnames.count)
  }

  @Test func standingChildrenCopyTheReplicaSecretsAndTheCopyWindowLimitsEgress() throws {
    let p = replicatedPolicy(second: true)
    let inp = try inputs(p)
    let primary = try BackupPolicyChildren.build(inp)
    let children = try ReplicationChildren.build(inp, existing: primary)
    // The replica's own Secrets are copied; the primary's (s3-creds, shared with other-region) are not repeated.
    let secretNames = children.filter { $0.resource.kind == "Secret" }.map(\.name).sorted()
    #expect(secretNames == [names.secretCopy("gcs-sa"), names.secretCopy("vault-dr-token")].sorted())
    let role = try #require(child(children, "Role", names.replicaRole))
    let allowed = Set(
      role.body["rules"]?.arrayValue?.first?["resourceNames"]?.arrayValue?.compactMap(\.stringValue) ?? [])
    #expect(
      allowed == Set(["s3-creds", "vault-token", "gcs-sa", "vault-dr-token"].map { names.secretCopy($0) }))
    #expect(!allowed.contains(names.secretCopy("db-creds")))
    // The binding and the egress are not standing: they exist only while a copy runs (BackupAccess).
    #expect(child(children, "RoleBinding", names.replicaRole) == nil)
    #expect(child(children, "NetworkPolicy", names.replicaEgress) == nil)
    let window = ReplicationChildren.runAccess(p, settings: inp.settings)
    #expect(window.map(\.resource.kind).sorted() == ["NetworkPolicy", "RoleBinding"])
    let binding = try #require(child(window, "RoleBinding", names.replicaRole))
    #expect(binding.body["subjects"]?.arrayValue?.first?["name"]?.stringValue == names.serviceAccount)
    #expect(binding.body[path: "roleRef", "name"]?.stringValue == names.replicaRole)
    let np = try #require(child(window, "NetworkPolicy", names.replicaEgress))
    #expect(
      np.body[path: "spec", "podSelector", "matchExpressions"]?.arrayValue?.first?["values"]
        == ["replica-copy", "replica-rotate-keys"])
    let cidrs = np.body[path: "spec", "egress"]?.arrayValue?.compactMap {
      $0["to"]?.arrayValue?.first?[path: "ipBlock", "cidr"]?.stringValue
    }
    #expect(Set(cidrs ?? []) == ["10.0.0.5/32", "10.0.0.9/32", "10.0.0.7/32"])
    // No replicas, no children and no copy window.
    #expect(try ReplicationChildren.build(try inputs(dumpPolicy()), existing: primary).isEmpty)
    #expect(ReplicationChildren.runAccess(dumpPolicy(), settings: inp.settings).isEmpty)
  }

  @Test func missingReplicaSecretNamesTheReplicaField() throws {
    var s = replicaSecrets
    s["vault-dr-token"] = nil
    let p = replicatedPolicy()
    #expect {
      try ReplicationChildren.build(try inputs(p, secrets: s))
    } throws: { e in
      let e = e as? SpecError
      return e?.field == "spec.replicas[0].encryption.kms.vaultTransit.authSecretRef"
        && e?.message.contains("vault-dr-token") == true
    }
    #expect(
      try ReplicationChildren.secretUses(p.spec).map(\.field) == [
        "spec.replicas[0].repository.gcs.credentialsSecretRef",
        "spec.replicas[0].encryption.kms.vaultTransit.authSecretRef",
      ])
  }

  @Test func copyResultAndRunAreObserved() {
    let job: JSONValue = [
      "metadata": [
        "name": "c1", "labels": [ReplicaLabels.replica: "dr-gcs"],
        "annotations": [ReplicaLabels.sourceSnapshot: "abc", ReplicaLabels.sourceBackupTime: "2026-05-28T20:00:00Z"],
      ],
      "status": ["startTime": "2026-05-28T20:01:00Z", "conditions": [["type": "Failed", "status": "True"]]],
    ]
    let pod: JSONValue = [
      "status": [
        "containerStatuses": [
          [
            "name": "copy",
            "state": [
              "terminated": [
                "exitCode": 4, "finishedAt": "2026-05-28T20:01:05Z",
                "message": #"{"command":"copy","ok":false,"errors":["target: access denied"]}"#,
              ]
            ],
          ]
        ]
      ]
    ]
    let run = CopyRun.observe(job: job, pods: [pod])
    #expect(run.replica == "dr-gcs")
    #expect(run.sourceSnapshot == "abc")
    #expect(run.sourceBackupTime == KubeJSON.parseDate("2026-05-28T20:00:00Z"))
    #expect(run.state == .failed)
    #expect(run.failureMessage == "target: access denied")
    let ok = CopyResult.parse(#"{"ok":true,"copied":[{"source":"abc","target":"def"}],"skipped":["0ld"]}"#)
    #expect(ok?.copied == [CopyResult.Copied(source: "abc", target: "def")])
    #expect(ok?.skipped == ["0ld"])
  }
}

@Suite struct ReplicationStatusTests {
  /// The primary's status after a successful backup that finished at `backupAt` with snapshot `snapshot`.
  func primary(_ p: BackupPolicy, snapshot: String, backupAt: Date, now: Date) throws -> StatusOutcome {
    // The engine reports the snapshot's point in time: backupAt (ages and copies count from it).
    var result = EngineResult(ok: true, snapshotId: snapshot)
    result.snapshotTime = ISO8601DateFormatter().string(from: backupAt)
    let run = BackupRun(
      jobName: "b-\(snapshot)", state: .succeeded, startTime: backupAt.addingTimeInterval(-5), finishTime: backupAt,
      result: result)
    return BackupPolicyStatusLogic.compute(
      policy: p, effective: try EffectivePolicy(spec: p.spec, now: now), problem: nil, runs: [run],
      backupNamespace: "botrt-backup", handledTrigger: nil, childSummary: "ok", now: now)
  }

  func copyRun(
    _ snapshot: String, _ state: BackupRun.State, backupAt: Date, finished: Date?, target: String? = nil,
    replica: String = "dr-gcs"
  ) -> CopyRun {
    CopyRun(
      jobName: "copy-\(replica)-\(snapshot)", replica: replica, sourceSnapshot: snapshot, sourceBackupTime: backupAt,
      state: state, startTime: backupAt.addingTimeInterval(1), finishTime: finished,
      result: target.map { CopyResult(ok: true, copied: [CopyResult.Copied(source: snapshot, target: $0)]) },
      failureMessage: state == .failed ? "target: access denied" : nil)
  }

  @Test func aNewSnapshotStartsOneCopyPerReplicaAndNeverTwoAtOnce() throws {
    let p = replicatedPolicy(second: true)
    let t0 = testNow.addingTimeInterval(-20)
    var o = try primary(p, snapshot: "s1", backupAt: t0, now: testNow)
    let r = ReplicationLogic.apply(policy: p, copies: [], canCopy: true, now: testNow, outcome: &o)
    #expect(r.create.map(\.replica) == ["dr-gcs", "other-region"])
    #expect(r.create.allSatisfy { $0.snapshot == "s1" && $0.backupTime == t0 })
    #expect(o.status.replicas?.map(\.state) == ["Copying", "Copying"])
    #expect(o.status.replicas?.first?.lagSeconds == nil)
    #expect(o.status.conditions?.condition(BackupPolicyCondition.replicasInSync)?.reason == "Copying")

    // s2 arrives while dr-gcs still copies s1: only other-region (whose copy finished) gets a new Job.
    var p2 = p
    p2.status = o.status
    let t1 = testNow.addingTimeInterval(40)
    var o2 = try primary(p2, snapshot: "s2", backupAt: t1, now: t1.addingTimeInterval(1))
    let copies = [
      copyRun("s1", .running, backupAt: t0, finished: nil),
      copyRun(
        "s1", .succeeded, backupAt: t0, finished: t0.addingTimeInterval(10), target: "x1", replica: "other-region"),
    ]
    let r2 = ReplicationLogic.apply(
      policy: p2, copies: copies, canCopy: true, now: t1.addingTimeInterval(1), outcome: &o2)
    #expect(r2.create.map(\.replica) == ["other-region"])
    #expect(r2.create.first?.snapshot == "s2")
    #expect(o2.status.replicas?[0].state == "Copying")
    #expect(o2.status.replicas?[0].copyJob == "copy-dr-gcs-s1")
    let other = try #require(o2.status.replicas?[1])
    #expect(other.lastCopiedSnapshot == "s1")
    #expect(other.replicaSnapshot == "x1")
    #expect(other.lagSeconds == 60)  // s2 at t1, the replica holds s1 of t0
    #expect(r2.events.contains { $0.reason == "ReplicaCopied" && $0.message.contains("other-region") })
    // Not allowed to copy (policy not Ready): nothing is created.
    var o3 = try primary(p2, snapshot: "s2", backupAt: t1, now: t1.addingTimeInterval(1))
    #expect(ReplicationLogic.apply(policy: p2, copies: [], canCopy: false, now: t1, outcome: &o3).create.isEmpty)
  }

  @Test func aFinishedCopyIsInSyncWithZeroLagAndAFailedOneIsNotRetriedForTheSameSnapshot() throws {
    let p = replicatedPolicy()
    let t0 = testNow.addingTimeInterval(-20)
    var o = try primary(p, snapshot: "s1", backupAt: t0, now: testNow)
    let done = copyRun("s1", .succeeded, backupAt: t0, finished: t0.addingTimeInterval(8), target: "r1")
    let r = ReplicationLogic.apply(policy: p, copies: [done], canCopy: true, now: testNow, outcome: &o)
    #expect(r.create.isEmpty)
    let st = try #require(o.status.replicas?.first)
    #expect(st.state == "InSync")
    #expect(st.lagSeconds == 0)
    #expect(st.lastCopyTime == t0.addingTimeInterval(8))
    #expect(st.lastCopiedBackupTime == t0)
    #expect(st.replicaSnapshot == "r1")
    let c = try #require(o.status.conditions?.condition(BackupPolicyCondition.replicasInSync))
    #expect(c.status == .true)
    #expect(c.message.contains("s1"))

    // The next backup's copy fails: Failed, a Warning event once, and no new Job for s2 until s3.
    var p2 = p
    p2.status = o.status
    let t1 = testNow.addingTimeInterval(100)
    let failed = copyRun("s2", .failed, backupAt: t1, finished: t1.addingTimeInterval(3))
    var o2 = try primary(p2, snapshot: "s2", backupAt: t1, now: t1.addingTimeInterval(5))
    let r2 = ReplicationLogic.apply(
      policy: p2, copies: [done, failed], canCopy: true, now: t1.addingTimeInterval(5), outcome: &o2)
    #expect(r2.create.isEmpty)
    let f = try #require(o2.status.replicas?.first)
    #expect(f.state == "Failed")
    #expect(f.lastCopiedSnapshot == "s1")
    #expect(f.lagSeconds == 120)
    #expect(f.message?.contains("access denied") == true)
    #expect(r2.events.filter { $0.reason == "ReplicaCopyFailed" }.count == 1)
    #expect(o2.status.conditions?.condition(BackupPolicyCondition.replicasInSync)?.reason == "ReplicaCopyFailed")
    var p3 = p2
    p3.status = o2.status
    var o3 = try primary(p3, snapshot: "s2", backupAt: t1, now: t1.addingTimeInterval(6))
    let r3 = ReplicationLogic.apply(
      policy: p3, copies: [done, failed], canCopy: true, now: t1.addingTimeInterval(6), outcome: &o3)
    #expect(!r3.events.contains { $0.reason == "ReplicaCopyFailed" })
    var o4 = try primary(p3, snapshot: "s3", backupAt: t1.addingTimeInterval(60), now: t1.addingTimeInterval(61))
    let r4 = ReplicationLogic.apply(
      policy: p3, copies: [done, failed], canCopy: true, now: t1.addingTimeInterval(61), outcome: &o4)
    #expect(r4.create.map(\.snapshot) == ["s3"])
  }

  @Test func countedReplicasDecideRPOMetAndTheRPOAge() throws {
    // critical tier: RPO 5m.
    let t0 = testNow
    let done = copyRun("s1", .succeeded, backupAt: t0, finished: t0.addingTimeInterval(5), target: "r1")
    for counts in [false, true] {
      var p = replicatedPolicy(countsForRPO: counts)
      var o = try primary(p, snapshot: "s1", backupAt: t0, now: t0.addingTimeInterval(10))
      _ = ReplicationLogic.apply(policy: p, copies: [done], canCopy: true, now: t0.addingTimeInterval(10), outcome: &o)
      p.status = o.status
      // 4 minutes later the primary backs up s2; the replica's copy of it fails. At 6 minutes the primary is 2
      // minutes old but the replica's newest backup is 6 minutes old.
      let t1 = t0.addingTimeInterval(240)
      let failed = copyRun("s2", .failed, backupAt: t1, finished: t1.addingTimeInterval(3))
      let now = t0.addingTimeInterval(360)
      var o2 = try primary(p, snapshot: "s2", backupAt: t1, now: now)
      let r = ReplicationLogic.apply(policy: p, copies: [done, failed], canCopy: true, now: now, outcome: &o2)
      let rpo = try #require(o2.status.conditions?.condition(BackupPolicyCondition.rpoMet))
      if counts {
        #expect(rpo.status == .false)
        #expect(rpo.reason == "ReplicaRPOViolated")
        #expect(rpo.message.contains("dr-gcs"))
        #expect(o2.status.rpoAgeSeconds == 360)
        #expect(r.events.contains { $0.reason == "RPOViolated" })
      } else {
        #expect(rpo.status == .true)
        // The primary's age counts from its snapshot's point in time, not from when its Job finished.
        #expect(o2.status.rpoAgeSeconds == 120)
        #expect(!r.events.contains { $0.reason == "RPOViolated" })
      }
    }
    // Counted and in sync: True, with a requeue at the replica's deadline.
    let p = replicatedPolicy(countsForRPO: true)
    var o = try primary(p, snapshot: "s1", backupAt: t0, now: t0.addingTimeInterval(10))
    _ = ReplicationLogic.apply(policy: p, copies: [done], canCopy: true, now: t0.addingTimeInterval(10), outcome: &o)
    let rpo = try #require(o.status.conditions?.condition(BackupPolicyCondition.rpoMet))
    #expect(rpo.status == .true)
    #expect(rpo.message.contains("dr-gcs"))
    #expect(rpo.message.contains("until \(KubeJSON.formatDate(t0.addingTimeInterval(300)))"))
    // Counted, nothing copied yet, within the target: Unknown.
    var o5 = try primary(p, snapshot: "s1", backupAt: t0, now: t0.addingTimeInterval(10))
    _ = ReplicationLogic.apply(policy: p, copies: [], canCopy: true, now: t0.addingTimeInterval(10), outcome: &o5)
    #expect(o5.status.conditions?.condition(BackupPolicyCondition.rpoMet)?.reason == "AwaitingReplicaCopy")
  }

  @Test func oldCopyJobsAndJobsOfRemovedReplicasAreDeleted() throws {
    var p = replicatedPolicy()
    p.spec.successfulJobsHistoryLimit = 1
    let t0 = testNow.addingTimeInterval(-1000)
    let copies =
      (0..<3).map {
        copyRun("s\($0)", .succeeded, backupAt: t0 + Double($0 * 100), finished: t0 + Double($0 * 100 + 5), target: "r")
      } + [copyRun("s9", .running, backupAt: t0, finished: nil, replica: "gone")]
    var o = try primary(p, snapshot: "s2", backupAt: t0 + 200, now: testNow)
    let r = ReplicationLogic.apply(policy: p, copies: copies, canCopy: true, now: testNow, outcome: &o)
    #expect(Set(r.delete) == ["copy-gone-s9", "copy-dr-gcs-s1", "copy-dr-gcs-s0"])
    #expect(o.status.replicas?.map(\.name) == ["dr-gcs"])
    // Replicas removed from the spec: their status and condition go.
    var q = p
    q.spec.replicas = nil
    q.status = o.status
    var o2 = try primary(q, snapshot: "s2", backupAt: t0 + 200, now: testNow)
    _ = ReplicationLogic.apply(policy: q, copies: [], canCopy: true, now: testNow, outcome: &o2)
    #expect(o2.status.replicas == nil)
    #expect(o2.status.conditions?.condition(BackupPolicyCondition.replicasInSync) == nil)
  }
}

/// Key rotation of the replicas: own schedule for a replica with its own encryption, following the primary for one
/// that shares the policy's.
@Suite struct ReplicaKeyRotationTests {
  let now = Date(timeIntervalSince1970: 1_800_000_000)

  func inputs(_ p: BackupPolicy) throws -> ChildInputs {
    ChildInputs(
      policy: p, effective: try EffectivePolicy(spec: p.spec, now: now), settings: settings(),
      secrets: replicaSecrets)
  }

  func args(_ job: DesiredChild) -> [String] {
    (job.body[path: "spec", "template", "spec", "containers"]?.arrayValue?.first?["args"]?.arrayValue ?? [])
      .compactMap { $0.stringValue }
  }

  func policy(ownEncryption: Bool) -> BackupPolicy {
    var p = replicatedPolicy()
    if !ownEncryption { p.spec.replicas![0].encryption = nil }
    p.metadata.creationTimestamp = now.addingTimeInterval(-100 * 86_400)
    return p
  }

  func run(_ name: String, _ state: BackupRun.State, finished: Date?, annotations: [String: String]) -> BackupRun {
    var r = BackupRun(jobName: name, state: state, startTime: finished?.addingTimeInterval(-10), finishTime: finished)
    r.annotations = annotations
    return r
  }

  @Test func aReplicaSharingTheKeysFollowsThePrimarysRotationBeforeTheNextCopy() throws {
    var p = policy(ownEncryption: false)
    let rotated = now.addingTimeInterval(-60)
    p.status = BackupPolicyStatus()
    p.status?.lastKeyRotation = rotated
    p.status?.currentKey = "key-2"
    let copied = ReplicaStatus(name: "dr-gcs", lastCopyTime: now.addingTimeInterval(-3_600))
    // Behind the primary: a rewrap to the primary's key, and copies wait.
    let plan = ReplicaKeyRotation.plan(policy: p, index: 0, status: copied, runs: [], rotationKeys: nil, now: now)
    let start = try #require(plan.start)
    #expect(start.followPrimary && start.newKey == "key-2")
    #expect(plan.holdCopies)
    #expect(plan.status.keyRotation?.hasPrefix("RotationStarted") == true)
    #expect(plan.events.map(\.reason) == ["ReplicaKeyRotationStarted"])
    // The Job reads the replica with its recorded key and rewraps under the primary's current one.
    let job = try ReplicationChildren.rotationJob(try inputs(p), index: 0, start)
    let args = args(job)
    #expect(args.first == "rotate-keys")
    #expect(args.contains("gs://dr-bucket/payments"))
    #expect(args.contains("--new-kms"))
    #expect(job.body[path: "metadata", "labels", ChildLabels.component]?.stringValue == "replica-rotate-keys")
    #expect(job.body[path: "metadata", "annotations", ReplicaLabels.replica]?.stringValue == "dr-gcs")
    // Running: still held, no second Job.
    let running = run(job.name, .running, finished: nil, annotations: [KeyRotationLogic.tokenAnnotation: start.token])
    let p2 = ReplicaKeyRotation.plan(
      policy: p, index: 0, status: plan.status, runs: [running], rotationKeys: nil, now: now)
    #expect(p2.start == nil && p2.holdCopies)
    // Done: the replica records the primary's key and copies go on.
    let done = run(
      job.name, .succeeded, finished: now.addingTimeInterval(5),
      annotations: [
        KeyRotationLogic.tokenAnnotation: start.token, KeyRotationLogic.newKeyAnnotation: "key-2",
        ReplicaLabels.replica: "dr-gcs",
      ])
    let p3 = ReplicaKeyRotation.plan(
      policy: p, index: 0, status: p2.status, runs: [done], rotationKeys: nil, now: now.addingTimeInterval(10))
    #expect(p3.status.currentKey == "key-2")
    #expect(p3.status.lastKeyRotation == now.addingTimeInterval(5))
    #expect(!p3.holdCopies && p3.start == nil)
    #expect(p3.events.map(\.reason) == ["ReplicaKeyRotated"])
    // A replica with no copy yet is not rotated: its first copy creates it under the primary's current key.
    let fresh = ReplicaKeyRotation.plan(
      policy: p, index: 0, status: ReplicaStatus(name: "dr-gcs"), runs: [], rotationKeys: nil, now: now)
    #expect(fresh.start == nil && !fresh.holdCopies)
    #expect(ReplicationChildren.targetKey(p, replica: p.spec.replicas![0]) == "key-2")
  }

  @Test func aReplicaWithItsOwnKeysRotatesOnItsOwnSchedule() throws {
    var p = policy(ownEncryption: true)
    p.status = BackupPolicyStatus()
    // The replica's last rotation was 91 days ago (default 90 days): due, with a new Vault Transit version.
    let rs = ReplicaStatus(
      name: "dr-gcs", lastCopyTime: now.addingTimeInterval(-60), lastKeyRotation: now.addingTimeInterval(-91 * 86_400))
    let plan = ReplicaKeyRotation.plan(policy: p, index: 0, status: rs, runs: [], rotationKeys: nil, now: now)
    let start = try #require(plan.start)
    #expect(!start.followPrimary && start.newKey == nil)
    #expect(!plan.holdCopies)
    #expect(
      plan.events.contains { $0.reason == "ReplicaKeyRotationStarted" && $0.message.hasPrefix("Replica dr-gcs:") })
    let job = try ReplicationChildren.rotationJob(try inputs(p), index: 0, start)
    let args = args(job)
    #expect(args.contains("--new-kek"))
    #expect(args.contains("vault-transit://vault-dr.vault.svc:8200/transit/dr-key?tls=true"))
    // Not due: nothing, and the next rotation is 90 days after the last.
    let fresh = ReplicaStatus(name: "dr-gcs", lastCopyTime: now, lastKeyRotation: now.addingTimeInterval(-86_400))
    let quiet = ReplicaKeyRotation.plan(policy: p, index: 0, status: fresh, runs: [], rotationKeys: nil, now: now)
    #expect(quiet.start == nil)
    #expect(quiet.status.nextKeyRotation == now.addingTimeInterval(89 * 86_400))
  }

  @Test func replicaKeyRotationDueSumsUpTheReplicasForKubectl() throws {
    let type = BackupPolicyCondition.replicaKeyRotationDue
    var own = policy(ownEncryption: true)
    own.status = BackupPolicyStatus()
    // Not due: False, with the replica's next rotation.
    let fresh = ReplicaStatus(name: "dr-gcs", lastCopyTime: now, lastKeyRotation: now.addingTimeInterval(-86_400))
    let quiet = ReplicaKeyRotation.plan(policy: own, index: 0, status: fresh, runs: [], rotationKeys: nil, now: now)
    var conditions: [Condition] = []
    ReplicaKeyRotation.setCondition([("dr-gcs", quiet)], conditions: &conditions, observedGeneration: 3, now: now)
    let notDue = try #require(conditions.condition(type))
    #expect(notDue.status == .false && notDue.reason == "NotDue" && notDue.observedGeneration == 3)
    #expect(notDue.message.contains(KubeJSON.formatDate(now.addingTimeInterval(89 * 86_400))))
    // Overdue: True, naming the replica and its state.
    let old = ReplicaStatus(
      name: "dr-gcs", lastCopyTime: now.addingTimeInterval(-60), lastKeyRotation: now.addingTimeInterval(-91 * 86_400))
    let due = ReplicaKeyRotation.plan(policy: own, index: 0, status: old, runs: [], rotationKeys: nil, now: now)
    #expect(due.due)
    ReplicaKeyRotation.setCondition([("dr-gcs", due)], conditions: &conditions, observedGeneration: 3, now: now)
    let c = try #require(conditions.condition(type))
    #expect(c.status == .true && c.reason == "RotationDue")
    #expect(c.message.hasPrefix("Replica dr-gcs: RotationStarted"), "\(c.message)")
    // A failed rewrap of a replica that follows the primary: RotationFailed.
    var shared = policy(ownEncryption: false)
    shared.status = BackupPolicyStatus()
    shared.status?.lastKeyRotation = now.addingTimeInterval(-60)
    shared.status?.currentKey = "key-2"
    let behind = ReplicaStatus(name: "dr-gcs", lastCopyTime: now.addingTimeInterval(-3_600))
    let first = ReplicaKeyRotation.plan(policy: shared, index: 0, status: behind, runs: [], rotationKeys: nil, now: now)
    let token = try #require(first.start?.token)
    let failed = run("rrot-1", .failed, finished: now, annotations: [KeyRotationLogic.tokenAnnotation: token])
    let retry = ReplicaKeyRotation.plan(
      policy: shared, index: 0, status: first.status, runs: [failed], rotationKeys: nil, now: now)
    #expect(retry.due && retry.holdCopies)
    ReplicaKeyRotation.setCondition(
      [("dr-gcs", retry), ("dr-s3", quiet)], conditions: &conditions, observedGeneration: 4, now: now)
    let f = try #require(conditions.condition(type))
    #expect(f.status == .true && f.reason == "RotationFailed")
    #expect(!f.message.contains("dr-s3"), "only due replicas are named")
    // No replicas left: the condition goes.
    ReplicaKeyRotation.setCondition([], conditions: &conditions, observedGeneration: 5, now: now)
    #expect(conditions.condition(type) == nil)
  }
}

@Suite struct ReplicationSameSecondTests {
  /// Issue 13 item 13 (replication-e2e failed 2 runs in 5): a copy that finished in the same second as the copy
  /// before it was never recorded (finish times have whole seconds), and the replica stayed "Copying" though the copy
  /// of the newest snapshot had succeeded.
  @Test func aCopyFinishingInTheSameSecondAsThePreviousOneIsRecorded() throws {
    let s = ReplicationStatusTests()
    let p = replicatedPolicy()
    let t0 = testNow.addingTimeInterval(-20)
    let done = t0.addingTimeInterval(8)
    var o = try s.primary(p, snapshot: "s1", backupAt: t0, now: testNow)
    let first = s.copyRun("s1", .succeeded, backupAt: t0, finished: done, target: "r1")
    _ = ReplicationLogic.apply(policy: p, copies: [first], canCopy: true, now: testNow, outcome: &o)
    #expect(o.status.replicas?.first?.lastCopiedSnapshot == "s1")

    // s2's backup and copy both land within the second in which s1's copy finished.
    var p2 = p
    p2.status = o.status
    let t1 = t0.addingTimeInterval(7.5)
    let second = s.copyRun("s2", .succeeded, backupAt: t1, finished: done, target: "r2")
    for copies in [[first, second], [second, first]] {
      var o2 = try s.primary(p2, snapshot: "s2", backupAt: t1, now: testNow)
      let r = ReplicationLogic.apply(policy: p2, copies: copies, canCopy: true, now: testNow, outcome: &o2)
      let st = try #require(o2.status.replicas?.first)
      #expect(st.lastCopiedSnapshot == "s2")
      #expect(st.replicaSnapshot == "r2")
      #expect(st.state == "InSync")
      #expect(r.create.isEmpty)
      #expect(r.events.filter { $0.reason == "ReplicaCopied" }.count == 1)
      // Once recorded, the same copies change nothing and say nothing.
      var p3 = p2
      p3.status = o2.status
      var o3 = try s.primary(p3, snapshot: "s2", backupAt: t1, now: testNow)
      let r3 = ReplicationLogic.apply(policy: p3, copies: copies, canCopy: true, now: testNow, outcome: &o3)
      #expect(o3.status.replicas?.first?.state == "InSync")
      #expect(!r3.events.contains { $0.reason == "ReplicaCopied" })
    }
  }
}
