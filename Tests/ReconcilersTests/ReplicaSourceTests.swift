import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// The recovery test policy "db" (S3 + Vault) with a replica "eu" in GCS under its own local key, rotated once to the
/// entry "k2" of its rotation keys Secret; the primary's repository is pinned and the replica holds a copy of
/// snapshot aaaa1111 as bbbb2222, while the primary's newest is cccc3333.
func replicaSourcePolicy() throws -> BackupPolicy {
  var p = try recoveryTestPolicy()
  p.spec.replicas = [
    ReplicaSpec(
      name: "eu",
      repository: RepositorySpec(
        gcs: GCSRepository(
          bucket: "dr-bucket", prefix: "shop", endpoint: "http://10.0.0.9:4443",
          credentialsSecretRef: SecretReference(name: "gcs-sa"))),
      encryption: EncryptionSpec(
        kms: KMSSpec(localKeySecretRef: SecretReference(name: "eu-key")),
        rotationKeysSecretRef: SecretNameReference(name: "eu-rotation-keys")))
  ]
  let url = try EngineInvocation(policy: p) { $0 }.repoURL
  var st = BackupPolicyStatus()
  st.lastSnapshot = "cccc3333"
  st.repositoryIdentity = RepositoryIdentity(
    repository: url, id: String(repeating: "ab", count: 16), signingKey: String(repeating: "cd", count: 32))
  st.replicas = [
    ReplicaStatus(
      name: "eu", state: "InSync", lastCopiedSnapshot: "aaaa1111", replicaSnapshot: "bbbb2222",
      lastCopyTime: testNow, currentKey: "k2")
  ]
  p.status = st
  return p
}

/// The command line of a container: command and args.
func argv(_ c: JSONValue?) -> [String] {
  ((c?["command"]?.arrayValue ?? []) + (c?["args"]?.arrayValue ?? [])).compactMap(\.stringValue)
}

/// The Secret names a pod spec mounts or reads through env.
func podSecretNames(_ pod: JSONValue?) -> Set<String> {
  var out = Set<String>()
  for v in pod?["volumes"]?.arrayValue ?? [] {
    if let s = v[path: "secret", "secretName"]?.stringValue { out.insert(s) }
  }
  let cs = (pod?["initContainers"]?.arrayValue ?? []) + (pod?["containers"]?.arrayValue ?? [])
  for c in cs {
    for e in c["env"]?.arrayValue ?? [] {
      if let s = e[path: "valueFrom", "secretKeyRef", "name"]?.stringValue { out.insert(s) }
    }
  }
  return out
}

@Suite struct ReplicaSourceTests {
  let pinID = String(repeating: "ab", count: 16)

  func plan(replica: String?, snapshot: String? = "latest") throws -> RecoveryPlan {
    var plan = try recoveryTestPlan()
    plan.spec.procedures[0].steps[1].restore?.replica = replica
    plan.spec.procedures[0].steps[1].restore?.snapshot = snapshot
    plan.spec.procedures[0].steps[2].verify?.replica = replica
    return plan
  }

  func ctx(_ p: BackupPolicy) -> RecoveryJobContext {
    RecoveryJobContext(
      settings: ControllerSettings(engineImage: "e:1"), policies: ["db": p], namespace: "shop", labels: [:],
      owner: nil)
  }

  func restoreArgs(_ plan: RecoveryPlan, _ p: BackupPolicy) throws(SpecError) -> [String] {
    let steps = try RecoveryPlanLogic.steps(plan.spec)
    let job = try RecoveryJobs.stepJob(steps[1], jobName: "rp", ctx: ctx(p))
    return argv(job[path: "spec", "template", "spec", "initContainers"]?[0])
  }

  @Test func aRestoreStepFromAReplicaOpensTheReplicaWithItsKeysAndNoPrimaryPins() throws {
    let p = try replicaSourcePolicy()
    let steps = try RecoveryPlanLogic.steps(try plan(replica: "eu").spec)
    let job = try RecoveryJobs.stepJob(steps[1], jobName: "rp", ctx: ctx(p))
    let pod = job[path: "spec", "template", "spec"]
    let args = argv(pod?["initContainers"]?[0])
    let text = args.joined(separator: " ")
    #expect(text.contains("--repo gs://dr-bucket/shop"), "\(args)")
    #expect(text.contains("--kms file://\(EngineInvocation.rotationKeysPath)/k2"), "the replica's current key: \(args)")
    #expect(!text.contains("s3://backups") && !text.contains("vault-transit://"), "\(args)")
    #expect(!args.contains(EngineFlag.long(EngineFlag.expectRepositoryID)) && !args.contains(pinID), "\(args)")
    // The replica's Secrets are mounted (same namespace as the plan), the primary's are not.
    let names = podSecretNames(pod)
    #expect(names.isSuperset(of: ["gcs-sa", "eu-rotation-keys"]), "\(names)")
    #expect(!names.contains("s3-creds") && !names.contains("vault-token"), "\(names)")
    // The same step from the primary keeps the primary's repository and pins.
    let primary = try restoreArgs(try plan(replica: nil), p)
    #expect(primary.joined(separator: " ").contains("--repo s3://backups/shop") && primary.contains(pinID))
  }

  @Test func snapshotIdsAreMappedToTheReplicasCopy() throws {
    let p = try replicaSourcePolicy()
    // latest is the replica's newest.
    #expect(try restoreArgs(try plan(replica: "eu"), p).contains("latest"))
    // The primary's id of the replica's newest copy: the copy's id in the replica.
    let mapped = try restoreArgs(try plan(replica: "eu", snapshot: "aaaa1111"), p)
    #expect(mapped.contains("bbbb2222") && !mapped.contains("aaaa1111"), "\(mapped)")
    // Any other id is the replica's own.
    #expect(try restoreArgs(try plan(replica: "eu", snapshot: "dddd4444"), p).contains("dddd4444"))
    // The primary's newest, not copied yet: refused with the snapshot's field and what the replica holds.
    let uncopied = try plan(replica: "eu", snapshot: "cccc3333")
    do {
      _ = try restoreArgs(uncopied, p)
      Issue.record("the primary's uncopied snapshot must be refused")
    } catch {
      #expect(error.field == "spec.procedures[0].steps[1].restore.snapshot")
      #expect(error.message.contains("holds no copy") && error.message.contains("aaaa1111"), "\(error.message)")
    }
    // A copy whose id in the replica was not recorded: refused, saying so.
    var unrecorded = p
    unrecorded.status?.replicas?[0].replicaSnapshot = nil
    #expect(throws: SpecError.self) { try restoreArgs(try plan(replica: "eu", snapshot: "aaaa1111"), unrecorded) }
  }

  @Test func anUnknownReplicaIsRefusedNamingTheField() throws {
    let p = try replicaSourcePolicy()
    let steps = try RecoveryPlanLogic.steps(try plan(replica: "us").spec)
    for (i, field) in [(1, "restore.replica"), (2, "verify.replica")] {
      do {
        _ = try RecoveryJobs.stepJob(steps[i], jobName: "rp", ctx: ctx(p))
        Issue.record("an unknown replica must be refused")
      } catch {
        #expect(error.field == "spec.procedures[0].steps[\(i)].\(field)")
        #expect(error.message.contains("no replica 'us'") && error.message.contains("'eu'"), "\(error.message)")
      }
    }
    // A policy without replicas says so.
    var none = p
    none.spec.replicas = nil
    #expect(throws: SpecError.self) { try RecoveryJobs.stepJob(steps[1], jobName: "rp", ctx: ctx(none)) }
    // verify.replica without policyRef: refused by validation and by the builder.
    var bare = try plan(replica: nil)
    bare.spec.procedures[0].steps[2].verify = VerifyStepSpec(
      databaseQuery: DatabaseQuery(image: "postgres:16", command: ["psql"]), replica: "eu")
    #expect(
      SpecValidation.validate(bare.spec).map(\.field).contains("spec.procedures[0].steps[2].verify.replica"))
    do {
      _ = try RecoveryJobs.stepJob(try RecoveryPlanLogic.steps(bare.spec)[2], jobName: "rp", ctx: ctx(p))
      Issue.record("verify.replica without policyRef must be refused")
    } catch {
      #expect(error.field == "spec.procedures[0].steps[2].verify.replica")
    }
  }

  @Test func aVerifyStepFromAReplicaVerifiesTheReplica() throws {
    let p = try replicaSourcePolicy()
    let steps = try RecoveryPlanLogic.steps(try plan(replica: "eu").spec)
    let job = try RecoveryJobs.stepJob(steps[2], jobName: "v", ctx: ctx(p))
    let verify = job[path: "spec", "template", "spec", "initContainers"]?[0]
    let args = argv(verify)
    #expect(args.contains("verify") && args.contains("gs://dr-bucket/shop") && !args.contains(pinID), "\(args)")
  }

  func drill(replica: String?) throws -> DRDrill {
    var d = try drillTestDrill()
    d.spec.target.replica = replica
    return d
  }

  @Test func aDrillFromAReplicaRestoresVerifiesAndCopiesTheReplicasSecrets() throws {
    let p = try replicaSourcePolicy()
    let d = try drill(replica: "eu")
    let spec = try DrillLogic.runSpec(d, plan: nil)
    #expect(spec.restore.replica == "eu")
    #expect(d.spec.target.displayName == "BackupPolicy/db (replica eu)")
    let job = try DrillLogic.runJob(
      d, spec: spec, namespace: "drill-x", settings: ControllerSettings(engineImage: "e:1"), policies: ["db": p],
      timeoutSeconds: 3600)
    let inits = job[path: "spec", "template", "spec", "initContainers"]?.arrayValue ?? []
    let engine = inits.filter { ["restore", "verify"].contains($0["name"]?.stringValue ?? "") }.map(argv)
    #expect(engine.count == 2)
    for a in engine {
      let text = a.joined(separator: " ")
      #expect(text.contains("--repo gs://dr-bucket/shop") && !a.contains(pinID), "\(a)")
      // A drill of latest requires the replica's newest copy, not the primary's newest snapshot.
      #expect(text.contains("--require-snapshot bbbb2222") && !text.contains("cccc3333"), "\(a)")
    }
    // The scratch namespace gets the replica's Secrets, not the primary's.
    let source = try DrillLogic.sourcePolicy(spec, policy: p)
    let secrets: [String: Secret] = [
      "gcs-sa": secret("gcs-sa", ["service-account.json": "{}"]),
      "eu-rotation-keys": secret("eu-rotation-keys", ["k2": "key"]),
    ]
    let copies = try DrillLogic.secretCopies(d, namespace: "drill-x", policy: source, spec: spec, secrets: secrets)
    #expect(Set(copies.map(\.name)) == ["gcs-sa", "eu-rotation-keys"])
    // The fence lets the run reach the replica's storage.
    let settings = ControllerSettings(engineImage: "e:1")
    let fence = DrillLogic.scratchChildren(d, namespace: "drill-x", policy: source, settings: settings)
    let egress = fence.first { $0.name == "botrt-drill-allow-storage" }?.body[path: "spec", "egress"]?.arrayValue ?? []
    for r in NetworkIsolation.windowRules(source.spec, settings: settings) { #expect(egress.contains(r.json)) }
  }

  /// A repository on a claim exists only in the policy's namespace, never in a drill's scratch namespace: such a
  /// drill is refused naming its target (or the replica), and a drill of the policy's object-storage replica runs.
  @Test func aDrillOfARepositoryOnAClaimIsRefusedAndItsObjectStoreReplicaIsNot() throws {
    var p = try replicaSourcePolicy()
    p.spec.repository = RepositorySpec(local: LocalRepository(path: "/repository", claimName: "airgap"))
    let fromPrimary = try DrillLogic.runSpec(try drill(replica: nil), plan: nil)
    do {
      _ = try DrillLogic.sourcePolicy(fromPrimary, policy: p)
      Issue.record("a drill of a repository on a claim must be refused")
    } catch {
      #expect(error.field == "spec.target")
      #expect(error.message.contains("'airgap'") && error.message.contains("spec.target.replica"), "\(error)")
    }
    let fromReplica = try DrillLogic.runSpec(try drill(replica: "eu"), plan: nil)
    #expect(try DrillLogic.sourcePolicy(fromReplica, policy: p).spec.repository.gcs?.bucket == "dr-bucket")
    // A replica on a claim is refused under the field that names the replica.
    var q = try replicaSourcePolicy()
    q.spec.replicas?[0].repository = RepositorySpec(local: LocalRepository(path: "/r", claimName: "dr-claim"))
    do {
      _ = try DrillLogic.sourcePolicy(fromReplica, policy: q)
      Issue.record("a drill of a replica on a claim must be refused")
    } catch {
      #expect(error.field == "spec.target.replica" && error.message.contains("replica 'eu'"), "\(error)")
    }
  }

  @Test func aDrillOfAnUnknownReplicaOrAPlanStepsReplicaNamesTheField() throws {
    let p = try replicaSourcePolicy()
    let spec = try DrillLogic.runSpec(try drill(replica: "us"), plan: nil)
    do {
      _ = try DrillLogic.sourcePolicy(spec, policy: p)
      Issue.record("an unknown replica must be refused")
    } catch {
      #expect(error.field == "spec.target.replica")
    }
    // A RecoveryPlan target whose restore step names a replica: the drill restores from it, and a bad name is the
    // plan's (seen through spec.target.recoveryPlanRef); the drill's own target.replica replaces it.
    var d = try drillTestDrill(plan: true)
    let badPlan = try plan(replica: "us")
    let fromPlan = try DrillLogic.runSpec(d, plan: badPlan)
    #expect(fromPlan.restore.replica == "us" && fromPlan.replicaField == "spec.target.recoveryPlanRef")
    #expect(throws: SpecError.self) { try DrillLogic.sourcePolicy(fromPlan, policy: p) }
    d.spec.target.replica = "eu"
    let own = try DrillLogic.runSpec(d, plan: badPlan)
    #expect(own.restore.replica == "eu" && own.replicaField == "spec.target.replica")
    #expect(try DrillLogic.sourcePolicy(own, policy: p).spec.repository.gcs?.bucket == "dr-bucket")
  }
}
