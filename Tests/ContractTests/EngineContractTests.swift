import ArgumentParser
import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import EngineCLI
@testable import ObjectsCLI
@testable import Reconcilers

/// The controller–engine contract, checked end to end: every Job and CronJob the controller builds, for the samples
/// and a table of every storage kind, KMS kind, tier, compliance profile, replicas, key rotation, recovery plans and
/// drills, has engine containers whose arguments the engine's real parser accepts (parse and validate) and whose
/// environment names only variables the engine reads.
let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .deletingLastPathComponent()
let now = Date(timeIntervalSince1970: 1_780_000_000)
let testSettings = ControllerSettings(engineImage: "botrt/engine:1")
/// Where the engine is when a command image runs it (copied by the install-engine init container).
let sharedEngine = "/botrt/bin/botrt-engine"

/// One engine run found in a pod: where, its arguments and its environment's names.
struct EngineRun: CustomStringConvertible {
  var place: String
  var argv: [String]
  var env: [String]
  var description: String { "\(place): \(argv.joined(separator: " "))" }
}

/// Splits the words of a POSIX shell command line as `shellQuote` writes them (single quotes, `'\''`, backslash),
/// from `start` to the end of the simple command (an unquoted `;`, `|`, `&` or newline).
func shellWords(_ text: Substring) -> [String] {
  var words: [String] = []
  var word = ""
  var inWord = false
  var quoted = false
  var i = text.startIndex
  while i < text.endIndex {
    let ch = text[i]
    if quoted {
      if ch == "'" { quoted = false } else { word.append(ch) }
    } else if ch == "'" {
      quoted = true
      inWord = true
    } else if ch == "\\" {
      i = text.index(after: i)
      if i < text.endIndex { word.append(text[i]) }
      inWord = true
    } else if ch == " " || ch == "\t" || ch == ";" || ch == "|" || ch == "&" || ch == "\n" {
      if inWord { words.append(word) }
      word = ""
      inWord = false
      if ch != " " && ch != "\t" { return words }
    } else {
      word.append(ch)
      inWord = true
    }
    i = text.index(after: i)
  }
  if inWord { words.append(word) }
  return words
}

/// The engine runs of a Job or CronJob body.
func engineRuns(_ body: JSONValue, name: String) -> [EngineRun] {
  let podSpec =
    body["kind"]?.stringValue == "CronJob"
    ? body[path: "spec", "jobTemplate", "spec", "template", "spec"] : body[path: "spec", "template", "spec"]
  guard let podSpec else { return [] }
  var out: [EngineRun] = []
  let containers = (podSpec["initContainers"]?.arrayValue ?? []) + (podSpec["containers"]?.arrayValue ?? [])
  for c in containers {
    let command = c["command"]?.arrayValue?.compactMap(\.stringValue) ?? []
    let env = c["env"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
    let place = "\(name) container \(c["name"]?.stringValue ?? "?")"
    if command == [testSettings.enginePath] {
      out.append(EngineRun(place: place, argv: c["args"]?.arrayValue?.compactMap(\.stringValue) ?? [], env: env))
    } else if command.count == 3, command[0] == "sh", command[1] == "-c" {
      // A pipeline with a command image: the engine's words follow its path in the script.
      var rest = Substring(command[2])
      while let r = rest.range(of: sharedEngine + " ") {
        out.append(EngineRun(place: place, argv: shellWords(rest[r.upperBound...]), env: env))
        rest = rest[r.upperBound...]
      }
    }
  }
  return out
}

/// Checks one engine run against the engine's parser and the environment it reads; `userEnv` are the names the
/// spec gives a command image (a dump, restore or query command).
func check(_ run: EngineRun, userEnv: Set<String>) {
  #expect(!run.argv.isEmpty, "\(run.place): no engine arguments found")
  do {
    _ = try BotrtEngine.parseAsRoot(run.argv)
  } catch {
    Issue.record("\(run): the engine refuses it: \(BotrtEngine.message(for: error))")
  }
  for name in run.env where !EngineEnv.isRead(name) {
    let ok = name == "HOME" || name == "TMPDIR" || (userEnv.contains(name) && !name.hasPrefix("BOTRT_"))
    #expect(ok, "\(run.place): sets \(name), which the engine never reads")
  }
}

/// Secrets holding every key the policy's pods read, so builders that check them pass.
func secrets(for p: BackupPolicy) throws -> [String: Secret] {
  var uses = try EngineInvocation(spec: p.spec, currentKey: p.status?.currentKey) { $0 }.secrets
  for i in (p.spec.replicas ?? []).indices { uses += try ReplicaInvocation.targetSecrets(p.spec, index: i) }
  var out: [String: Secret] = [:]
  for u in uses {
    var s = out[u.sourceName] ?? Secret(metadata: ObjectMeta(name: u.sourceName, namespace: "shop"), data: [:])
    for k in u.requiredKeys { s.data?[k] = Data("x".utf8) }
    out[u.sourceName] = s
  }
  return out
}

/// Every Job and CronJob of a policy: its children, key rotation, deletion, and per replica copy and rotation.
func policyBodies(_ p: BackupPolicy) throws -> [(String, JSONValue)] {
  let eff = try EffectivePolicy(spec: p.spec, now: now)
  let input = ChildInputs(
    policy: p, effective: eff, settings: testSettings, secrets: try secrets(for: p), runToken: "trigger:now")
  var out: [(String, JSONValue)] = []
  for c in try BackupPolicyChildren.build(input) where ["Job", "CronJob"].contains(c.resource.kind) {
    out.append((c.displayName, c.body))
  }
  let local = p.spec.encryption.kms.localKeySecretRef != nil
  if !local || p.spec.encryption.rotationKeysSecretRef != nil {
    let job = KeyRotationJob(token: "rotate:1", newKey: local ? "key-2" : nil)
    let r = try BackupPolicyChildren.keyRotationJob(input, job)
    out.append((r.displayName, r.body))
  }
  let d = try BackupPolicyChildren.deleteRepositoryJob(input)
  out.append((d.displayName, d.body))
  for (i, replica) in (p.spec.replicas ?? []).enumerated() {
    let c = try ReplicationChildren.copyJob(input, index: i, snapshot: "abc123", backupTime: now)
    out.append((c.displayName, c.body))
    let own = replica.encryption
    var jobs = [ReplicaRotationJob(token: "follow", followPrimary: true, newKey: p.status?.currentKey)]
    if let own, own.kms.localKeySecretRef == nil {
      jobs.append(ReplicaRotationJob(token: "own", newKey: nil))
    } else if own?.rotationKeysSecretRef != nil {
      jobs.append(ReplicaRotationJob(token: "own", newKey: "key-2"))
    }
    for j in jobs {
      let r = try ReplicationChildren.rotationJob(input, index: i, j)
      out.append((r.displayName, r.body))
    }
  }
  return out
}

/// The `botrt-objects` runs of a Job or CronJob body (`KubeObjects`' containers): where, and their arguments.
func objectsRuns(_ body: JSONValue, name: String) -> [(place: String, argv: [String])] {
  let podSpec =
    body["kind"]?.stringValue == "CronJob"
    ? body[path: "spec", "jobTemplate", "spec", "template", "spec"] : body[path: "spec", "template", "spec"]
  let containers = (podSpec?["initContainers"]?.arrayValue ?? []) + (podSpec?["containers"]?.arrayValue ?? [])
  return containers.filter { $0["command"]?.arrayValue?.compactMap(\.stringValue) == [testSettings.objectsPath] }.map {
    ("\(name) container \($0["name"]?.stringValue ?? "?")", $0["args"]?.arrayValue?.compactMap(\.stringValue) ?? [])
  }
}

/// Checks one `botrt-objects` run against its real parser: it parses, and the parsed arguments render back to the
/// same words (nothing the controller writes is dropped or read otherwise).
func checkObjects(_ run: (place: String, argv: [String])) {
  do {
    let command = try BotrtObjects.parseAsRoot(run.argv)
    if let e = command as? ExportCommand {
      #expect(try e.arguments().argv == run.argv, "\(run.place): export does not read back as written")
    } else if let a = command as? ApplyCommand {
      #expect(try a.arguments().argv == run.argv, "\(run.place): apply does not read back as written")
    } else {
      Issue.record("\(run.place): not an export or apply: \(run.argv)")
    }
  } catch {
    Issue.record("\(run.place): botrt-objects refuses it: \(BotrtObjects.message(for: error))")
  }
}

/// Names of the environment variables a spec gives command images.
func userEnv(_ lists: [[EnvVar]?]) -> Set<String> { Set(lists.flatMap { ($0 ?? []).map(\.name) }) }

func checkPolicy(_ p: BackupPolicy) throws {
  let bodies = try policyBodies(p)
  var runs = 0
  var objects = 0
  for (name, body) in bodies {
    for run in engineRuns(body, name: "\(p.metadata.name ?? ""): \(name)") {
      check(run, userEnv: userEnv([p.spec.source.command?.env]))
      runs += 1
    }
    for run in objectsRuns(body, name: "\(p.metadata.name ?? ""): \(name)") {
      checkObjects(run)
      objects += 1
    }
  }
  if p.spec.effectiveObjects != nil {
    #expect(objects > 0, "\(p.metadata.name ?? ""): spec.objects (or source.objects) exports no objects")
  }
  #expect(runs >= bodies.count, "\(p.metadata.name ?? ""): every Job runs the engine")
}

func checkPlan(_ plan: RecoveryPlan, policies: [String: BackupPolicy]) throws {
  let ctx = RecoveryJobContext(
    settings: testSettings, policies: policies, namespace: plan.metadata.namespace ?? "shop", labels: [:],
    owner: nil)
  var env: [[EnvVar]?] = []
  for step in try RecoveryPlanLogic.steps(plan.spec) {
    env += [step.step.restore?.into.command?.env, step.step.verify?.databaseQuery?.env, step.step.job?.env]
  }
  for step in try RecoveryPlanLogic.steps(plan.spec) where [.restore, .verify].contains(step.step.action) {
    let body = try RecoveryJobs.stepJob(step, jobName: "step-\(step.index)", ctx: ctx)
    if let ns = step.step.restore?.into.pvc?.namespace ?? step.step.restore?.into.objects?.namespace {
      #expect(body[path: "metadata", "namespace"]?.stringValue == ns)
    }
    let runs = engineRuns(body, name: "\(plan.metadata.name ?? "") \(step.field)")
    #expect(!runs.isEmpty || step.step.verify?.policyRef == nil, "\(step.field): runs the engine")
    for run in runs { check(run, userEnv: userEnv(env)) }
    let objects = objectsRuns(body, name: "\(plan.metadata.name ?? "") \(step.field)")
    if step.step.restore?.into.objects != nil { #expect(objects.count == 1, "\(step.field): applies the objects") }
    for run in objects { checkObjects(run) }
  }
}

func checkDrill(_ drill: DRDrill, spec: DrillRunSpec, policies: [String: BackupPolicy]) throws {
  let body = try DrillLogic.runJob(
    drill, spec: spec, namespace: "drill-scratch", settings: testSettings, policies: policies, timeoutSeconds: 3_600)
  let runs = engineRuns(body, name: "drill \(drill.metadata.name ?? "")")
  #expect(runs.count >= 2, "drill \(drill.metadata.name ?? ""): restores and verifies with the engine")
  for run in runs { check(run, userEnv: userEnv([spec.restore.into.command?.env, spec.query?.env])) }
}

// MARK: - The table

func policy(
  _ name: String, tier: Tier, compliance: [ComplianceProfile], repository: RepositorySpec, kms: KMSSpec,
  dump: Bool, replicas: [ReplicaSpec]? = nil, retention: RetentionSpec? = nil, currentKey: String? = nil
) -> BackupPolicy {
  var meta = ObjectMeta(name: name, namespace: "shop")
  meta.uid = "uid-\(name)"
  meta.creationTimestamp = now.addingTimeInterval(-86_400)
  let source =
    dump
    ? BackupSource(
      command: ContainerSpec(
        image: "postgres:16", command: ["pg_dump"], args: ["-d", "app"],
        env: [
          EnvVar(name: "PGHOST", value: "db"),
          EnvVar(name: "PGPASSWORD", valueFrom: EnvVarSource(secretKeyRef: SecretKeySelector(name: "db", key: "pw"))),
        ], fileName: "app.dump"))
    : BackupSource(pvc: PVCSource(claimName: "data", subPath: "app"))
  let local = kms.localKeySecretRef != nil
  let spec = BackupPolicySpec(
    tier: tier, compliance: compliance, dataType: dump ? .database : .files, source: source,
    repository: repository,
    encryption: EncryptionSpec(
      kms: kms, keyRotationDays: 30, rotationKeysSecretRef: local ? SecretNameReference(name: "rotation-keys") : nil),
    retention: retention, replicas: replicas, compression: dump ? .better : nil)
  var p = BackupPolicy(metadata: meta, spec: spec)
  p.status = BackupPolicyStatus()
  p.status?.currentKey = currentKey
  p.status?.lastSnapshot = "abc123"
  return p
}

let storageKinds: [(String, RepositorySpec)] = [
  (
    "s3",
    RepositorySpec(
      s3: S3Repository(
        bucket: "b", prefix: "p", region: "eu-west-1", endpoint: "http://minio:9000", forcePathStyle: true,
        credentialsSecretRef: SecretNameReference(name: "s3-creds"),
        objectLock: ObjectLock(mode: .compliance, days: 30),
        serverSideEncryption: S3ServerSideEncryption(mode: .awsKMS, kmsKeyId: "alias/s3")))
  ),
  (
    "gcs",
    RepositorySpec(
      gcs: GCSRepository(
        bucket: "b", prefix: "p", endpoint: "http://gcs:4443", credentialsSecretRef: SecretReference(name: "gcs-sa")))
  ),
  (
    "azure",
    RepositorySpec(
      azure: AzureRepository(
        account: "acct", container: "c", prefix: "p", endpoint: "http://azurite:10000/acct",
        credentialsSecretRef: SecretNameReference(name: "az-creds")))
  ),
  ("local", RepositorySpec(local: LocalRepository(path: "/repo", claimName: "repo-claim"))),
]

let kmsKinds: [(String, KMSSpec)] = [
  (
    "vault",
    KMSSpec(
      vaultTransit: VaultTransitKMS(
        address: "https://vault:8200", key: "k", authSecretRef: SecretReference(name: "vault-token"),
        caSecretRef: SecretReference(name: "vault-ca")))
  ),
  (
    "aws",
    KMSSpec(
      awsKms: AWSKMS(
        keyId: "alias/botrt", region: "eu-west-1", endpoint: "http://moto:5000",
        credentialsSecretRef: SecretNameReference(name: "s3-creds")))
  ),
  ("local", KMSSpec(localKeySecretRef: SecretReference(name: "local-key"))),
  (
    "azurekv",
    KMSSpec(
      azureKeyVault: AzureKeyVaultKMS(
        vaultURL: "http://kv:8443", keyName: "kek", keyVersion: "v1", authorityHost: "http://login:8080",
        credentialsSecretRef: SecretNameReference(name: "kv-creds")))
  ),
  (
    "gcpkms",
    KMSSpec(
      gcpKms: GCPKMS(
        keyName: "projects/p/locations/l/keyRings/r/cryptoKeys/k", endpoint: "http://gkms:8080",
        credentialsSecretRef: SecretReference(name: "gkms-sa")))
  ),
]

/// Every storage kind with every KMS kind; tiers, compliance profiles and sources rotate through the table.
func tablePolicies() -> [BackupPolicy] {
  var out: [BackupPolicy] = []
  var i = 0
  for (sName, repo) in storageKinds {
    for (kName, kms) in kmsKinds {
      let tier = Tier.allCases[i % Tier.allCases.count]
      let profiles = ComplianceProfile.allCases
      let compliance = [profiles[i % profiles.count], profiles[(i + 3) % profiles.count]]
      // A replica of another storage kind: with its own encryption (the next KMS kind) on odd rows, shared on even.
      let (_, rRepo) = storageKinds[(i + 1) % storageKinds.count]
      let (_, rKMS) = kmsKinds[(i + 1) % kmsKinds.count]
      var rEnc: EncryptionSpec? = nil
      if i % 2 == 1 {
        rEnc = EncryptionSpec(
          kms: rKMS,
          rotationKeysSecretRef: rKMS.localKeySecretRef != nil ? SecretNameReference(name: "replica-keys") : nil)
      }
      let replica = ReplicaSpec(name: "dr", repository: rRepo, encryption: rEnc)
      let retention =
        i % 3 == 0 ? RetentionSpec(keepLast: 3, keepDaily: 7, maxAge: "1h30m") : nil
      var p = policy(
        "\(sName)-\(kName)", tier: tier, compliance: compliance, repository: repo, kms: kms, dump: i % 2 == 0,
        replicas: sName == "local" && repo.local != nil && rRepo.local != nil ? nil : [replica],
        retention: retention, currentKey: kms.localKeySecretRef != nil ? "key-1" : nil)
      // A dump policy's Jobs run in the shared backup namespace, where it may not name a claim (issue 14 item 10):
      // its local repositories are node directories.
      if p.spec.source.command != nil {
        p.spec.repository.local?.claimName = nil
        for j in (p.spec.replicas ?? []).indices { p.spec.replicas?[j].repository.local?.claimName = nil }
      }
      // Hooks on the claim rows (every other): their backup pods start with the gate (`botrt-engine gate`).
      if p.spec.source.pvc != nil {
        let h = BackupHook(name: "freeze", podSelector: HookPodSelector(matchLabels: ["app": "db"]), command: ["sync"])
        p.spec.hooks = BackupHooks(pre: [h], post: [h])
        // Kubernetes objects in the claim's snapshot (spec.objects): the engine backs up two paths, and plans
        // restore the claim without the objects (--exclude-path) and the objects alone.
        p.spec.objects =
          i % 4 == 0
          ? ObjectsBackupSpec()
          : ObjectsBackupSpec(
            excludeKinds: ["Secret"], customResources: [CustomResourceKind(group: "example.io", kind: "Widget")],
            selector: ClaimSelector(
              matchLabels: ["app": "shop"],
              matchExpressions: [ClaimSelectorRequirement(key: "tier", operator: "In", values: ["web", "db"])]))
      }
      // Private CAs (--cacert) on odd rows; the repository's pins (--expect-*) on every third.
      if i % 2 == 1 { p.spec.caSecretRef = SecretReference(name: "private-ca") }
      if i % 3 == 1, let url = try? EngineInvocation(policy: p, secretName: { $0 }).repoURL {
        var st = p.status ?? BackupPolicyStatus()
        st.repositoryIdentity = RepositoryIdentity(
          repository: url, id: String(repeating: "ab", count: 16), signingKey: String(repeating: "cd", count: 32))
        p.status = st
      }
      // The replica's copies, for restores from it: the primary's abc123 is def456 there; a replica with its own
      // rotation keys was rotated to key-2.
      if p.spec.replicas != nil {
        var st = p.status ?? BackupPolicyStatus()
        st.replicas = [
          ReplicaStatus(
            name: "dr", lastCopiedSnapshot: "abc123", replicaSnapshot: "def456", lastCopyTime: now,
            currentKey: rEnc?.rotationKeysSecretRef != nil ? "key-2" : nil)
        ]
        // The replica's own pins (--to-expect-* in copies, --expect-* when opened as a Job's repository) on every
        // third row, the rows of the primary's.
        if i % 3 == 1, let url = ReplicaInvocation.repositoryURL(p.spec, replica) {
          st.replicas?[0].repositoryIdentity = RepositoryIdentity(
            repository: url, id: replicaPinID, signingKey: String(repeating: "12", count: 32))
        }
        p.status = st
      }
      // Stated pins (spec.repository.expectedIdentity, and the replica's) on every third row, and on the rows with
      // recorded pins where i % 6 == 4: there the stated ones must win.
      if i % 3 == 2 || i % 6 == 4 {
        p.spec.repository.expectedIdentity = ExpectedRepositoryIdentity(
          repositoryId: statedPinID, signingKey: String(repeating: "6b", count: 32))
        for j in (p.spec.replicas ?? []).indices {
          p.spec.replicas?[j].repository.expectedIdentity = ExpectedRepositoryIdentity(
            repositoryId: statedReplicaPinID, signingKey: String(repeating: "8d", count: 32))
        }
      }
      out.append(p)
      i += 1
    }
  }
  return out
}

/// The replica pins' id in the table (the primary's is ab…).
let replicaPinID = String(repeating: "ef", count: 16)
/// The stated pins' ids in the table (spec.repository.expectedIdentity, the replica's).
let statedPinID = String(repeating: "5a", count: 16)
let statedReplicaPinID = String(repeating: "7c", count: 16)

func planFor(_ p: BackupPolicy) -> RecoveryPlan {
  let ref = LocalObjectReference(name: p.metadata.name ?? "")
  var steps: [RecoveryStep] = [
    RecoveryStep(
      name: "restore-files", action: .restore,
      restore: RestoreStepSpec(policyRef: ref, into: RestoreDestination(pvc: RestorePVC(claimName: "data")))),
    RecoveryStep(
      name: "restore-db", action: .restore,
      restore: RestoreStepSpec(
        policyRef: ref, beforeTime: now,
        into: RestoreDestination(
          command: ContainerSpec(
            image: "postgres:16", command: ["psql"], env: [EnvVar(name: "PGHOST", value: "db")])))),
    RecoveryStep(
      name: "restore-id", action: .restore,
      restore: RestoreStepSpec(
        policyRef: ref, snapshot: "abc123", into: RestoreDestination(pvc: RestorePVC(claimName: "data")))),
    RecoveryStep(
      name: "verify", action: .verify,
      verify: VerifyStepSpec(
        policyRef: ref, readData: true,
        databaseQuery: DatabaseQuery(image: "postgres:16", command: ["psql"], query: "select 1", expected: "1"))),
    RecoveryStep(name: "verify-light", action: .verify, verify: VerifyStepSpec(policyRef: ref)),
  ]
  // Into a claim of another namespace, created when missing (the Job runs there, reading copies of the Secrets);
  // a repository on a claim of the policy's namespace cannot be mounted there, so that policy has none.
  if p.spec.repository.local?.claimName == nil {
    steps.append(
      RecoveryStep(
        name: "restore-elsewhere", action: .restore,
        restore: RestoreStepSpec(
          policyRef: ref,
          into: RestoreDestination(
            pvc: RestorePVC(
              claimName: "data", runAsUser: 0, namespace: "shop-dr", create: RestoreClaimCreate(size: "1Gi"))))))
  }
  // Kubernetes objects (spec.objects): re-created in the plan's namespace, and in another one (the Job runs there).
  if p.spec.objects != nil {
    steps.append(
      RecoveryStep(
        name: "restore-objects", action: .restore,
        restore: RestoreStepSpec(policyRef: ref, into: RestoreDestination(objects: RestoreObjects()))))
    if p.spec.repository.local?.claimName == nil {
      steps.append(
        RecoveryStep(
          name: "restore-objects-elsewhere", action: .restore,
          restore: RestoreStepSpec(
            policyRef: ref, snapshot: "abc123",
            into: RestoreDestination(
              objects: RestoreObjects(namespace: "shop-dr", kinds: ["ConfigMap", "Deployment.apps"])))))
    }
  }
  // From the replica, when the policy has one (the primary's region is down): latest, before a time, the primary's
  // id of its copy, and a verify of the replica.
  if let replica = p.spec.replicas?.first?.name {
    steps += [
      RecoveryStep(
        name: "replica-latest", action: .restore,
        restore: RestoreStepSpec(
          policyRef: ref, into: RestoreDestination(pvc: RestorePVC(claimName: "data")), replica: replica)),
      RecoveryStep(
        name: "replica-before", action: .restore,
        restore: RestoreStepSpec(
          policyRef: ref, beforeTime: now,
          into: RestoreDestination(command: ContainerSpec(image: "postgres:16", command: ["psql"])),
          replica: replica)),
      RecoveryStep(
        name: "replica-id", action: .restore,
        restore: RestoreStepSpec(
          policyRef: ref, snapshot: "abc123", into: RestoreDestination(pvc: RestorePVC(claimName: "data")),
          replica: replica)),
      RecoveryStep(
        name: "replica-verify", action: .verify,
        verify: VerifyStepSpec(policyRef: ref, readData: true, replica: replica)),
    ]
  }
  return RecoveryPlan(
    metadata: ObjectMeta(name: "plan-\(p.metadata.name ?? "")", namespace: "shop"),
    spec: RecoveryPlanSpec(tier: p.spec.tier, procedures: [RecoveryProcedure(name: "all", steps: steps)]))
}

func drillSpecs(_ p: BackupPolicy) -> [DrillRunSpec] {
  let ref = LocalObjectReference(name: p.metadata.name ?? "")
  var out = [
    DrillRunSpec(
      restore: RestoreStepSpec(policyRef: ref, into: RestoreDestination()), readData: true, query: nil),
    DrillRunSpec(
      restore: RestoreStepSpec(
        policyRef: ref, beforeTime: now,
        into: RestoreDestination(command: ContainerSpec(image: "postgres:16", command: ["psql"]))),
      readData: false,
      query: DatabaseQuery(image: "postgres:16", command: ["psql"], query: "select 1", expected: "1")),
  ]
  // A drill from the replica (spec.target.replica): of latest (requiring the replica's newest copy) and of the
  // primary's id of that copy.
  if let replica = p.spec.replicas?.first?.name {
    out += [
      DrillRunSpec(
        restore: RestoreStepSpec(policyRef: ref, into: RestoreDestination(), replica: replica), readData: true,
        query: nil),
      DrillRunSpec(
        restore: RestoreStepSpec(policyRef: ref, snapshot: "abc123", into: RestoreDestination(), replica: replica),
        readData: false, query: nil),
    ]
  }
  return out
}

@Suite struct EngineContractTests {
  @Test func everyTableJobIsAcceptedByTheEngine() throws {
    let policies = tablePolicies()
    #expect(Set(policies.map(\.spec.tier)) == Set(Tier.allCases))
    #expect(Set(policies.flatMap { $0.spec.compliance ?? [] }) == Set(ComplianceProfile.allCases))
    let byName = Dictionary(uniqueKeysWithValues: policies.map { ($0.metadata.name ?? "", $0) })
    for p in policies {
      try checkPolicy(p)
      try checkPlan(planFor(p), policies: byName)
      let drill = DRDrill(
        metadata: ObjectMeta(name: "drill-\(p.metadata.name ?? "")", namespace: "shop"),
        spec: DRDrillSpec(
          schedule: "@weekly", target: DrillTarget(backupPolicyRef: LocalObjectReference(name: p.metadata.name ?? ""))))
      for spec in drillSpecs(p) { try checkDrill(drill, spec: spec, policies: byName) }
      // A restore-only copy of the policy (a DR cluster's) restores the same way.
      var restoreOnly = p
      restoreOnly.spec.mode = .restoreOnly
      let alone = [p.metadata.name ?? "": restoreOnly]
      try checkPlan(planFor(restoreOnly), policies: alone)
      for spec in drillSpecs(restoreOnly) { try checkDrill(drill, spec: spec, policies: alone) }
      // Its restores and verifies open the repository read-only (no lock, no audit object: the primary cluster
      // still backs up into it); the primary's own open it as usual. checkPlan and checkDrill fed both through the
      // engine's parser.
      for (policy, all, readOnly) in [(restoreOnly, alone, true), (p, byName, false)] {
        let ctx = RecoveryJobContext(settings: testSettings, policies: all, namespace: "shop", labels: [:], owner: nil)
        var runs: [(place: String, argv: [String])] = []
        for step in try RecoveryPlanLogic.steps(planFor(policy).spec)
        where [.restore, .verify].contains(step.step.action) {
          runs += engineRuns(try RecoveryJobs.stepJob(step, jobName: "s", ctx: ctx), name: step.step.name).map {
            (step.step.name, $0.argv)
          }
        }
        for spec in drillSpecs(policy) {
          let body = try DrillLogic.runJob(
            drill, spec: spec, namespace: "drill-scratch", settings: testSettings, policies: all, timeoutSeconds: 600)
          runs += engineRuns(body, name: "drill").map { ("drill", $0.argv) }
        }
        #expect(!runs.isEmpty)
        for run in runs {
          #expect(
            run.argv.contains("--\(EngineFlag.readOnly)") == readOnly,
            "\(p.metadata.name ?? "") \(readOnly ? "restore-only " : "")\(run.place): \(run.argv)")
        }
      }
    }
    // The table reaches restores and drills from replicas, with the replica's repository and pins, never the
    // primary's pins.
    let withReplicas = policies.filter { $0.spec.replicas != nil }
    #expect(!withReplicas.isEmpty)
    for p in withReplicas {
      let ctx = RecoveryJobContext(
        settings: testSettings, policies: byName, namespace: "shop", labels: [:], owner: nil)
      let replicaURL = try ReplicaSource.invocation(p, replica: "dr", field: "replica") { $0 }.repoURL
      for step in try RecoveryPlanLogic.steps(planFor(p).spec) where step.step.name.hasPrefix("replica-") {
        let argv = engineRuns(try RecoveryJobs.stepJob(step, jobName: "s", ctx: ctx), name: step.step.name)
          .flatMap(\.argv)
        #expect(argv.contains(replicaURL), "\(p.metadata.name ?? "") \(step.step.name): \(argv)")
        #expect(!argv.contains(String(repeating: "ab", count: 16)), "\(step.step.name): \(argv)")
        let stated = p.spec.replicas?.first?.repository.expectedIdentity != nil
        let pinned = p.status?.replicas?.first?.repositoryIdentity != nil && !stated
        #expect(argv.contains(replicaPinID) == pinned, "\(step.step.name): \(argv)")
        #expect(argv.contains(statedReplicaPinID) == stated, "\(step.step.name): \(argv)")
        if step.step.name == "replica-id" { #expect(argv.contains("def456") && !argv.contains("abc123")) }
      }
      let drill = DRDrill(
        metadata: ObjectMeta(name: "drill-\(p.metadata.name ?? "")", namespace: "shop"),
        spec: DRDrillSpec(
          schedule: "@weekly", target: DrillTarget(backupPolicyRef: LocalObjectReference(name: p.metadata.name ?? ""))))
      for spec in drillSpecs(p) where spec.restore.replica != nil {
        let body = try DrillLogic.runJob(
          drill, spec: spec, namespace: "drill-scratch", settings: testSettings, policies: byName,
          timeoutSeconds: 3_600)
        let argv = engineRuns(body, name: "drill").flatMap(\.argv)
        #expect(argv.contains(replicaURL) && !argv.contains(String(repeating: "ab", count: 16)), "\(argv)")
        let stated = p.spec.replicas?.first?.repository.expectedIdentity != nil
        #expect(
          argv.contains(replicaPinID) == (p.status?.replicas?.first?.repositoryIdentity != nil && !stated), "\(argv)")
        #expect(argv.contains(statedReplicaPinID) == stated, "\(argv)")
      }
    }
    // Stated pins reach every Job that opens the repository (the replica's every Job that opens the replica), on
    // rows with recorded pins too, where they win; and the restores and drills of a restore-only copy with an empty
    // status (a DR cluster's) pass them as well. The runs above fed these Jobs through the engine's parser.
    let stated = policies.filter { $0.spec.repository.expectedIdentity != nil }
    #expect(stated.count >= 2 && stated.contains { $0.status?.repositoryIdentity != nil })
    #expect(stated.contains { $0.spec.replicas != nil && $0.status?.replicas?.first?.repositoryIdentity != nil })
    let recorded = [String(repeating: "ab", count: 16), replicaPinID]
    func statedOnly(_ argv: [String], _ place: String) {
      #expect(argv.contains(statedPinID) || argv.contains(statedReplicaPinID), "\(place): \(argv)")
      #expect(!recorded.contains { argv.contains($0) }, "\(place): recorded pins beside stated ones: \(argv)")
    }
    for p in stated {
      let name = p.metadata.name ?? ""
      for (job, body) in try policyBodies(p) {
        // The hooks gate opens no repository.
        for run in engineRuns(body, name: job) where run.argv.first != EngineCommandName.gate {
          statedOnly(run.argv, "\(name) \(job)")
          if run.argv.first == EngineCommandName.copy {
            #expect(run.argv.contains(statedPinID) && run.argv.contains(statedReplicaPinID), "\(run.argv)")
          }
        }
      }
      var restoreOnly = p
      restoreOnly.spec.mode = .restoreOnly
      restoreOnly.status = nil
      let alone = [name: restoreOnly]
      try checkPlan(planFor(restoreOnly), policies: alone)
      let ctx = RecoveryJobContext(settings: testSettings, policies: alone, namespace: "shop", labels: [:], owner: nil)
      for step in try RecoveryPlanLogic.steps(planFor(restoreOnly).spec)
      where [.restore, .verify].contains(step.step.action) {
        let fromReplica = step.step.name.hasPrefix("replica-")
        for run in engineRuns(try RecoveryJobs.stepJob(step, jobName: "s", ctx: ctx), name: step.step.name) {
          #expect(run.argv.contains(fromReplica ? statedReplicaPinID : statedPinID), "\(name) \(step.step.name)")
        }
      }
      let drill = DRDrill(
        metadata: ObjectMeta(name: "drill-\(name)", namespace: "shop"),
        spec: DRDrillSpec(schedule: "@weekly", target: DrillTarget(backupPolicyRef: LocalObjectReference(name: name))))
      for spec in drillSpecs(restoreOnly) {
        try checkDrill(drill, spec: spec, policies: alone)
        let body = try DrillLogic.runJob(
          drill, spec: spec, namespace: "drill-scratch", settings: testSettings, policies: alone, timeoutSeconds: 600)
        let runs = engineRuns(body, name: "drill")
        #expect(!runs.isEmpty)
        for run in runs {
          #expect(run.argv.contains(spec.restore.replica != nil ? statedReplicaPinID : statedPinID), "\(run.argv)")
        }
      }
    }
    // The table reaches the flags of private CAs and pinned repositories.
    var flags = Set<String>()
    for p in policies {
      for (name, body) in try policyBodies(p) { flags.formUnion(engineRuns(body, name: name).flatMap(\.argv)) }
    }
    for f in [
      EngineFlag.caCert, EngineFlag.expectRepositoryID, EngineFlag.expectSigningKey, EngineFlag.toExpectRepositoryID,
      EngineFlag.toExpectSigningKey,
    ] {
      #expect(flags.contains(EngineFlag.long(f)), "no table Job passes --\(f)")
    }
  }

  @Test func everySampleJobIsAcceptedByTheEngine() throws {
    var policies: [BackupPolicy] = []
    var plans: [RecoveryPlan] = []
    var drills: [DRDrill] = []
    let dir = repoRoot.appendingPathComponent("crds/samples")
    for file in try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() where file.hasSuffix(".yaml") {
      let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
      for doc in try YAML.parseDocuments(text, file: file) {
        switch doc["kind"]?.stringValue {
        case "BackupPolicy":
          var p: BackupPolicy = try doc.decode()
          p.metadata.creationTimestamp = now.addingTimeInterval(-86_400)
          p.status = BackupPolicyStatus()
          p.status?.lastSnapshot = "abc123"
          policies.append(p)
        case "RecoveryPlan": plans.append(try doc.decode())
        case "DRDrill": drills.append(try doc.decode())
        default: break
        }
      }
    }
    #expect(!policies.isEmpty && !plans.isEmpty && !drills.isEmpty)
    let byName = Dictionary(uniqueKeysWithValues: policies.map { ($0.metadata.name ?? "", $0) })
    let plansByName = Dictionary(uniqueKeysWithValues: plans.map { ($0.metadata.name ?? "", $0) })
    for p in policies { try checkPolicy(p) }
    for plan in plans { try checkPlan(plan, policies: byName) }
    for d in drills {
      let plan = d.spec.target.recoveryPlanRef.flatMap { plansByName[$0.name] }
      try checkDrill(d, spec: try DrillLogic.runSpec(d, plan: plan), policies: byName)
    }
  }

  /// The claims-source row (issue 15 §1, spec.source.claims): every storage and KMS kind of the table with a
  /// multi-claim source; each claim's backup CronJob and on-demand Job, a plan's restores of one claim (latest,
  /// beforeTime, an id, into a claim created from the record) and drills of one claim go through the engine's parser,
  /// `latest` of a claim carries `--tag claim=NAME`, and an id does not.
  @Test func claimsSourceJobsAreAcceptedByTheEngine() throws {
    var checked = 0
    for var p in tablePolicies() where p.spec.source.pvc != nil {
      var claims = ClaimsSource(
        selector: ClaimSelector(matchLabels: ["backup": "yes"]), subPath: "app", runAsUser: 0,
        exclude: ["/cache", "*.tmp"], excludeCaches: true)
      claims.include = ["/data/db", "/etc"]
      claims.oneFileSystem = true
      claims.excludeFile = ["/.backupignore"]
      p.spec.source = BackupSource(claims: claims)
      p.status?.claims = [
        ClaimBackupStatus(
          name: "b", lastSnapshotId: "bbb222",
          claim: SourceClaimStatus(name: "b", namespace: "shop", accessModes: ["ReadWriteOnce"], storage: "1Gi"))
      ]
      let eff = try EffectivePolicy(spec: p.spec, now: now)
      let input = ChildInputs(
        policy: p, effective: eff, settings: testSettings, secrets: try secrets(for: p), runToken: "trigger:now",
        claims: ClaimSelection(names: ["a", "b"], matched: 2))
      let jobs = try BackupPolicyChildren.build(input).filter { ["Job", "CronJob"].contains($0.resource.kind) }
      let backups = jobs.filter { $0.body[path: "metadata", "annotations", MultiClaim.claimAnnotation] != nil }
      #expect(backups.count == 4, "\(p.name): a CronJob and an on-demand Job per claim: \(jobs.map(\.name))")
      for c in backups {
        let claim = c.body[path: "metadata", "annotations", MultiClaim.claimAnnotation]?.stringValue ?? ""
        let all = engineRuns(c.body, name: c.displayName)
        // The table's claim rows have hooks: each claim's backup pod starts with the gate (checked like the rest).
        let gates = all.filter { $0.argv.first == EngineCommandName.gate }
        #expect(gates.count == (p.spec.hooks == nil ? 0 : 1), "\(all)")
        for g in gates { check(g, userEnv: []) }
        let runs = all.filter { $0.argv.first != EngineCommandName.gate }
        #expect(runs.count == 1)
        for run in runs {
          check(run, userEnv: [])
          #expect(run.argv.contains("claim=\(claim)") && run.argv.contains("policy=shop/\(p.name)"), "\(run.argv)")
          // include (as the exclude chain, anchored at the claim's mount) and oneFileSystem reach the engine.
          #expect(
            run.argv.contains("--one-file-system") && run.argv.contains("--exclude=/backup/\(claim)/*")
              && run.argv.contains("--exclude=!/backup/\(claim)/data/db"), "\(run.argv)")
          // The claim's own exclude file, read below the claim's mount.
          #expect(
            run.argv.contains("--exclude-file=/.backupignore")
              && run.argv.contains("--exclude-file-root=/backup/\(claim)"), "\(run.argv)")
          // The claim, then (spec.objects) the namespace's objects in the same snapshot.
          let paths = ["/backup/\(claim)"] + (p.spec.objects == nil ? [] : [ObjectsLayout.backupMount])
          #expect(Array(run.argv.suffix(paths.count)) == paths, "\(run.argv)")
        }
        for run in objectsRuns(c.body, name: c.displayName) { checkObjects(run) }
        #expect(c.name.count <= (c.resource.kind == "CronJob" ? 52 : 63), "\(c.name)")
      }
      let ref = LocalObjectReference(name: p.name)
      let plan = RecoveryPlan(
        metadata: ObjectMeta(name: "plan", namespace: "shop"),
        spec: RecoveryPlanSpec(
          tier: p.spec.tier,
          procedures: [
            RecoveryProcedure(
              name: "all",
              steps: [
                RecoveryStep(
                  name: "latest", action: .restore,
                  restore: RestoreStepSpec(
                    policyRef: ref, into: RestoreDestination(pvc: RestorePVC(claimName: "b")), claim: "b")),
                RecoveryStep(
                  name: "before", action: .restore,
                  restore: RestoreStepSpec(
                    policyRef: ref, beforeTime: now, into: RestoreDestination(pvc: RestorePVC(claimName: "b")),
                    claim: "b")),
                RecoveryStep(
                  name: "id", action: .restore,
                  restore: RestoreStepSpec(
                    policyRef: ref, snapshot: "bbb222", into: RestoreDestination(pvc: RestorePVC(claimName: "b")),
                    claim: "b")),
              ])
          ]))
      let policies = [p.name: p]
      try checkPlan(plan, policies: policies)
      let ctx = RecoveryJobContext(
        settings: testSettings, policies: policies, namespace: "shop", labels: [:], owner: nil)
      for step in try RecoveryPlanLogic.steps(plan.spec) {
        let argv = engineRuns(try RecoveryJobs.stepJob(step, jobName: "s", ctx: ctx), name: step.step.name)
          .flatMap(\.argv)
        #expect(argv.contains("claim=b") == (step.step.name != "id"), "\(step.step.name): \(argv)")
        #expect(argv.contains("--strip-components"), "\(step.step.name): \(argv)")
      }
      let drill = DRDrill(
        metadata: ObjectMeta(name: "drill", namespace: "shop"),
        spec: DRDrillSpec(schedule: "@weekly", target: DrillTarget(backupPolicyRef: ref)))
      var withClaim = drill
      withClaim.spec.claim = "b"
      let spec = try DrillLogic.runSpec(withClaim, plan: nil)
      try checkDrill(withClaim, spec: spec, policies: policies)
      let argv = engineRuns(
        try DrillLogic.runJob(
          withClaim, spec: spec, namespace: "drill-scratch", settings: testSettings, policies: policies,
          timeoutSeconds: 3_600), name: "drill"
      ).flatMap(\.argv)
      // The restore picks claim b's latest and requires its newest recorded snapshot; the verify checks the snapshot
      // the restore restored (--snapshot-from), with no selection of its own.
      #expect(argv.filter { $0 == "claim=b" }.count == 1, "\(argv)")
      #expect(argv.contains("--snapshot-from"), "\(argv)")
      #expect(argv.contains("bbb222"), "\(argv)")
      // A restore or drill of a multi-claim policy must name the claim.
      #expect(throws: SpecError.self) {
        try DrillLogic.runJob(
          drill, spec: try DrillLogic.runSpec(drill, plan: nil), namespace: "drill-scratch", settings: testSettings,
          policies: policies, timeoutSeconds: 3_600)
      }
      checked += 1
    }
    #expect(checked >= 4)
    // The engine takes --tag only with latest.
    let restore = ["restore", "--repo", "file:///r", "--kms", "file:///k", "--target", "/t"]
    #expect(throws: (any Error).self) { try BotrtEngine.parseAsRoot(restore + ["abc123", "--tag", "claim=b"]) }
    #expect(throws: (any Error).self) { try BotrtEngine.parseAsRoot(restore + ["latest", "--tag", "claim"]) }
    _ = try BotrtEngine.parseAsRoot(restore + ["latest", "--tag", "claim=b"])
    #expect(throws: (any Error).self) {
      try BotrtEngine.parseAsRoot(["verify", "--repo", "file:///r", "--kms", "file:///k", "--all", "--tag", "claim=b"])
    }
  }

  /// The objects-source row (spec.source.objects): every storage and KMS kind of the table backing up only the
  /// namespace's objects; the backup CronJob and on-demand Job (the export, then the engine on the one path), a plan's
  /// objects restores (here and in another namespace) and a drill go through the engines' parsers.
  @Test func objectsSourceJobsAreAcceptedByTheEngine() throws {
    var checked = 0
    for (i, var p) in tablePolicies().enumerated() {
      p.spec.source = BackupSource(objects: ObjectsSource())
      p.spec.hooks = nil
      p.spec.objects = i % 2 == 0 ? nil : ObjectsBackupSpec(kinds: ["ConfigMap", "Deployment.apps"])
      // The Jobs run in the backup namespace, where no claim of the policy's namespace can be mounted.
      p.spec.repository.local?.claimName = nil
      for j in (p.spec.replicas ?? []).indices { p.spec.replicas?[j].repository.local?.claimName = nil }
      try checkPolicy(p)
      let eff = try EffectivePolicy(spec: p.spec, now: now)
      let input = ChildInputs(
        policy: p, effective: eff, settings: testSettings, secrets: try secrets(for: p), runToken: "trigger:now")
      // The backup CronJob and the on-demand Job: those that export (prune and verify do not).
      let backups = try BackupPolicyChildren.build(input).filter {
        ["Job", "CronJob"].contains($0.resource.kind) && !objectsRuns($0.body, name: $0.displayName).isEmpty
      }
      #expect(backups.count == 2, "\(p.name): \(backups.map(\.name))")
      for c in backups {
        let runs = engineRuns(c.body, name: c.displayName).filter { $0.argv.first == "backup" }
        #expect(runs.count == 1, "\(c.displayName): \(runs)")
        for run in runs { #expect(run.argv.last == ObjectsLayout.backupMount, "\(run.argv)") }
      }
      let ref = LocalObjectReference(name: p.name)
      let plan = RecoveryPlan(
        metadata: ObjectMeta(name: "plan", namespace: "shop"),
        spec: RecoveryPlanSpec(
          tier: p.spec.tier,
          procedures: [
            RecoveryProcedure(
              name: "all",
              steps: [
                RecoveryStep(
                  name: "here", action: .restore,
                  restore: RestoreStepSpec(policyRef: ref, into: RestoreDestination(objects: RestoreObjects()))),
                RecoveryStep(
                  name: "elsewhere", action: .restore,
                  restore: RestoreStepSpec(
                    policyRef: ref, snapshot: "abc123",
                    into: RestoreDestination(objects: RestoreObjects(namespace: "shop-dr", kinds: ["ConfigMap"])))),
              ])
          ]))
      let policies = [p.name: p]
      try checkPlan(plan, policies: policies)
      let drill = DRDrill(
        metadata: ObjectMeta(name: "drill", namespace: "shop"),
        spec: DRDrillSpec(schedule: "@weekly", target: DrillTarget(backupPolicyRef: ref)))
      try checkDrill(drill, spec: try DrillLogic.runSpec(drill, plan: nil), policies: policies)
      checked += 1
    }
    #expect(checked >= 8)
  }

  /// The check itself catches what it must: an unknown flag, a missing value, a variable the engine never reads.
  @Test func theCheckRejectsWhatTheEngineWouldNot() {
    let base = ["backup", "--repo", "file:///r", "--kms", "file:///k", "/data"]
    #expect(throws: (any Error).self) { try BotrtEngine.parseAsRoot(base + ["--no-such-flag"]) }
    #expect(throws: (any Error).self) { try BotrtEngine.parseAsRoot(base + ["--data-type"]) }
    #expect(throws: (any Error).self) {
      try BotrtEngine.parseAsRoot(["rotate-keys", "--repo", "file:///r", "--kms", "file:///k", "--new-kek"])
    }
    #expect(throws: (any Error).self) { try BotrtEngine.parseAsRoot(base + ["--retry-lock", "10x"]) }
    #expect(!EngineEnv.isRead("BOTRT_AZURE_ENDPOINT"), "the name the controller once set; the engine never read it")
    #expect(EngineEnv.isRead(EngineEnv.toEnvPrefix + EngineEnv.azureBlobEndpoint))
    #expect(!EngineEnv.isRead(EngineEnv.toEnvPrefix + EngineEnv.toEnvPrefix + EngineEnv.repo))
    #expect(shellWords("'/a b' --x 'it'\\''s' | cat") == ["/a b", "--x", "it's"])
  }

  /// The pinned repository identity (issue 14 item 5): the typed arguments render flags the engine's parser takes,
  /// and the parser refuses malformed pins before anything runs.
  @Test func pinnedIdentityFlagsParse() throws {
    var common = EngineCommonArguments(repo: "file:///r", kms: "file:///k")
    common.expectedRepositoryID = String(repeating: "ab", count: 16)
    common.expectedSigningKey = String(repeating: "cd", count: 32)
    let argv = common.argv
    #expect(argv.contains(EngineFlag.long(EngineFlag.expectRepositoryID)))
    #expect(argv.contains(EngineFlag.long(EngineFlag.expectSigningKey)))
    for command in ["restore", "snapshots", "verify"] {
      var a = [command] + argv
      if command == "restore" { a += ["latest", "--target", "/t"] }
      do { _ = try BotrtEngine.parseAsRoot(a) } catch { Issue.record("\(command): \(BotrtEngine.message(for: error))") }
    }
    _ = try BotrtEngine.parseAsRoot(["backup"] + argv + ["/data"])
    #expect(throws: (any Error).self) {
      try BotrtEngine.parseAsRoot([
        "backup", "--repo", "file:///r", "--kms", "file:///k", "--expect-repository-id", "xyz", "/d",
      ])
    }
    #expect(throws: (any Error).self) {
      try BotrtEngine.parseAsRoot([
        "backup", "--repo", "file:///r", "--kms", "file:///k", "--expect-signing-key", "ab", "/d",
      ])
    }
    // copy's target pins: rendered by the typed arguments, parsed, and refused when malformed.
    var copy = EngineCopyArguments(common: common, to: "file:///t", toKMS: "file:///k2")
    copy.toExpectedRepositoryID = String(repeating: "ef", count: 16)
    copy.toExpectedSigningKey = String(repeating: "12", count: 32)
    let copyArgv = EngineArguments.copy(copy).argv
    let parsed = try #require(try BotrtEngine.parseAsRoot(copyArgv) as? CopyCommand)
    #expect(parsed.toExpectRepositoryID == copy.toExpectedRepositoryID)
    #expect(parsed.toExpectSigningKey == copy.toExpectedSigningKey)
    for (flag, bad) in [(EngineFlag.toExpectRepositoryID, "xyz"), (EngineFlag.toExpectSigningKey, "ab")] {
      #expect(throws: (any Error).self) {
        try BotrtEngine.parseAsRoot(
          EngineArguments.copy(EngineCopyArguments(common: common, to: "file:///t", toKMS: "file:///k2")).argv + [
            EngineFlag.long(flag), bad,
          ])
      }
    }
  }

  /// backup's file selection (issue 16 section 2): the typed options render restic's flags, which the engine's
  /// parser takes (before the paths), and are not rendered for a stream source.
  @Test func fileSelectionFlagsParse() throws {
    let common = EngineCommonArguments(repo: "file:///r", kms: "file:///k")
    var b = EngineBackupArguments(
      common: common, dataType: "files", tags: [], initIfMissing: true, objectLock: nil, compression: nil,
      source: .paths(["/backup/data"]))
    b.selection = EngineFileSelection(
      exclude: ["*.log", "!keep.log", "-odd"], iexclude: ["*.JPG"], excludeFiles: ["/etc/botrt/excludes"],
      iexcludeFiles: ["/etc/botrt/iexcludes"], excludeIfPresent: [".nobackup", "TAG:header"], excludeCaches: true,
      oneFileSystem: true)
    let argv = EngineArguments.backup(b).argv
    #expect(argv.contains("--exclude=*.log") && argv.contains("--exclude=!keep.log") && argv.contains("--exclude=-odd"))
    #expect(argv.contains("--exclude-caches") && argv.contains("--one-file-system"))
    #expect(argv.last == "/backup/data", "the paths stay last")
    let parsed = try BotrtEngine.parseAsRoot(argv)
    let cmd = try #require(parsed as? BackupCommand)
    #expect(cmd.selection.exclude == ["*.log", "!keep.log", "-odd"] && cmd.selection.iexclude == ["*.JPG"])
    #expect(
      cmd.selection.excludeFile == ["/etc/botrt/excludes"] && cmd.selection.iexcludeFile == ["/etc/botrt/iexcludes"])
    #expect(cmd.selection.excludeIfPresent == [".nobackup", "TAG:header"])
    #expect(cmd.selection.excludeCaches && cmd.selection.oneFileSystem)
    #expect(cmd.selection.excludeFileRoot == nil)
    b.selection.excludeFileRoot = "/backup/data"
    let rooted = try #require(try BotrtEngine.parseAsRoot(EngineArguments.backup(b).argv) as? BackupCommand)
    #expect(rooted.selection.excludeFileRoot == "/backup/data")
    #expect(EngineFileSelection().argv.isEmpty && EngineFileSelection().isEmpty)
    // A stream has no files to select: not rendered, so the engine (which refuses them with --stdin) is not asked.
    b.source = .stdin(name: "dump.sql")
    #expect(!EngineArguments.backup(b).argv.contains { $0.hasPrefix("--exclude") })
    _ = try BotrtEngine.parseAsRoot(EngineArguments.backup(b).argv)
    // A malformed pattern is refused by the parser, naming the option.
    b.source = .paths(["/d"])
    b.selection = EngineFileSelection(exclude: ["[abc"])
    #expect(throws: (any Error).self) { try BotrtEngine.parseAsRoot(EngineArguments.backup(b).argv) }
  }

  /// Key rotation: `--new-kek` only for key services that make new keys, and the controller never asks it of others.
  @Test func rotateKeysOffersOnlyWhatTheEngineAccepts() throws {
    for kind in EngineKMSKind.allCases {
      let common = EngineCommonArguments(repo: "file:///r", kms: "\(kind.rawValue)://x/y")
      do {
        let a = try EngineRotateKeysArguments(common: common, target: .newKEK)
        #expect(kind.makesNewKEK)
        // The engine parses it (its key service is only contacted when it runs).
        do { _ = try BotrtEngine.parseAsRoot(EngineArguments.rotateKeys(a).argv) } catch {
          Issue.record("\(kind): \(BotrtEngine.message(for: error))")
        }
      } catch {
        #expect(!kind.makesNewKEK)
      }
    }
    #expect(EngineKMSKind.allCases.filter { !$0.makesNewKEK } == [.localKey])
  }

  /// The engine's result line decodes into the controller's view of it: one type.
  /// The kubelet keeps 4096 bytes of a termination message: a verify of a badly damaged repository (hundreds of
  /// problems) still reaches the controller as readable JSON, with its first problems, the count of the rest, and the
  /// summary the controller counts problems from.
  @Test func aLongResultIsCutToFitTheTerminationMessage() throws {
    var r = EngineResult.starting("verify")
    r.ok = false
    r.exitCode = EngineExitCode.integrity
    r.repositoryId = String(repeating: "ab", count: 16)
    let problems = (0..<400).map { "pack data/\($0)/\(String(repeating: "f", count: 60)) is damaged: hash mismatch" }
    r.addErrors(problems + ["400 problems found; first: \(problems[0])"])
    r.addWarnings((0..<50).map { "warning \($0) " + String(repeating: "w", count: 100) })
    #expect(try r.encodedLine().count > EngineResult.terminationMessageLimit)
    let cut = try r.encodedLine(maxBytes: EngineResult.terminationMessageLimit)
    #expect(cut.count <= EngineResult.terminationMessageLimit)
    let back = try #require(EngineResult.parse(String(decoding: cut, as: UTF8.self)))
    #expect(back.exitCode == EngineExitCode.integrity && back.repositoryId == r.repositoryId)
    #expect(back.errors?.first == problems[0])
    #expect(back.errors?.last?.hasPrefix("400 problems found") == true)
    #expect(back.errors?.contains { $0.hasPrefix("and ") && $0.hasSuffix(" more") } == true)
    #expect(VerifyOutcome.problemCount(back.errors ?? []) == 400)
    // A copy's target identity (the replica's pins) survives the cut, as the source's does.
    var copy = EngineResult.starting("copy")
    copy.repositoryId = String(repeating: "ab", count: 16)
    copy.targetRepositoryId = String(repeating: "ef", count: 16)
    copy.targetSigningKey = String(repeating: "12", count: 32)
    copy.targetRepository = "s3://dr-bucket/" + String(repeating: "p", count: 2_000)
    copy.copied = (0..<300).map { EngineResult.Copied(source: "s\($0)", target: "t\($0)") }
    copy.skipped = (0..<300).map { String(repeating: "c", count: 64) + "\($0)" }
    copy.addErrors((0..<40).map { "error \($0) " + String(repeating: "e", count: 400) })
    let copyCut = try copy.encodedLine(maxBytes: EngineResult.terminationMessageLimit)
    #expect(copyCut.count <= EngineResult.terminationMessageLimit)
    let copyBack = try #require(EngineResult.parse(String(decoding: copyCut, as: UTF8.self)))
    #expect(
      copyBack.targetRepositoryId == copy.targetRepositoryId && copyBack.targetSigningKey == copy.targetSigningKey)
    #expect(copyBack.targetRepository?.hasPrefix("s3://dr-bucket/") == true)
    // A result that fits is written whole.
    let small = EngineResult.starting("backup")
    #expect(try small.encodedLine(maxBytes: EngineResult.terminationMessageLimit) == small.encodedLine())
  }

  @Test func resultRoundTrips() throws {
    var r = EngineResult.starting("backup")
    r.snapshotId = "abc"
    r.addUnwraps(["vault-transit://v/transit/k": 2])
    r.addWarnings(["w"])
    r.snapshotTime = "2026-01-02T03:04:05.678Z"
    r.engineVersion = EngineVersion.current
    r.excluded = 7
    r.skippedSnapshots = [EngineResult.SkippedSnapshot(id: "def", reason: "pack data/de/def is missing")]
    let line = String(decoding: try r.encodedLine(), as: UTF8.self)
    let back = try #require(EngineResult.parse("some log\n" + line))
    #expect(back == r)
    #expect(line.contains("\"keyWraps\":0") && line.contains("\"errors\":[]"), "the engine always writes these")
    #expect(back.skippedSnapshots?.first?.id == "def" && back.snapshotTime == r.snapshotTime)
    #expect(back.engineVersion == EngineVersion.current)
  }

  /// The gate of hooked backups: the controller's typed arguments parse into the engine's gate command with the
  /// same values; its exit codes are the contract's; the annotations file is read as the kubelet writes it.
  @Test func theGateCommandIsPartOfTheContract() throws {
    let a = EngineGateArguments(
      file: "/etc/botrt-gate/annotations", key: "dr.botrt.io/pre-hooks", messageKey: "dr.botrt.io/pre-hooks-message",
      timeoutSeconds: 7_200)
    #expect(a.argv.last == "2h")
    let parsed = try #require(try BotrtEngine.parseAsRoot(a.argv) as? GateCommand)
    #expect(parsed.file == a.file && parsed.key == a.key && parsed.messageKey == a.messageKey)
    #expect(try EngineDuration.parseSeconds(parsed.timeout) == 7_200)
    #expect(throws: (any Error).self) { try BotrtEngine.parseAsRoot(["gate", "--file", "/f"]) }
    #expect(throws: (any Error).self) {
      try BotrtEngine.parseAsRoot(["gate", "--file", "/f", "--key", "k", "--timeout", "2d"])
    }
    #expect(EngineExitCode.gateFailed == 20 && EngineExitCode.gateTimeout == 21)
    // The table's hooked rows carry the gate (everyTableJobIsAcceptedByTheEngine parses it with the rest).
    let hooked = tablePolicies().filter { $0.spec.hooks != nil }
    #expect(!hooked.isEmpty)
    for p in hooked {
      let gates = try policyBodies(p).flatMap { engineRuns($0.1, name: $0.0) }.filter {
        $0.argv.first == EngineCommandName.gate
      }
      #expect(gates.count == 2, "the backup CronJob and the on-demand Job of \(p.metadata.name ?? "")")
    }
    // The downward API writes each annotation as key="value", the value quoted as Go's %q does, sorted by key.
    let file = #"""
      dr.botrt.io/pre-hooks="failed"
      dr.botrt.io/pre-hooks-message="hook \"freeze\" failed in pod db-0 (exited with 1: fsfreeze: /data: \u00e9t\u00e9\n)"
      kubernetes.io/config.seen="2026-12-07T07:00:00Z"
      """#
    #expect(EngineGate.value(of: "dr.botrt.io/pre-hooks", inAnnotations: file) == "failed")
    #expect(
      EngineGate.value(of: "dr.botrt.io/pre-hooks-message", inAnnotations: file)
        == "hook \"freeze\" failed in pod db-0 (exited with 1: fsfreeze: /data: \u{e9}t\u{e9}\n)")
    #expect(EngineGate.value(of: "dr.botrt.io/pre", inAnnotations: file) == nil, "whole keys only")
    #expect(EngineGate.value(of: "x", inAnnotations: "x=\"\\x41\\tb\"") == "A\tb")
    #expect(EngineGate.value(of: "x", inAnnotations: "x=unquoted") == nil)
  }

  /// `botrt-engine --help` lists every exit code with its meaning; restic's numbers where restic has the situation.
  @Test func helpListsEveryExitCode() {
    let help = BotrtEngine.helpMessage()
    #expect(EngineExitCode.all.count == 12)
    #expect(Set(EngineExitCode.all.map(\.code)).count == EngineExitCode.all.count, "codes are distinct")
    for (code, meaning) in EngineExitCode.all {
      #expect(help.contains("\(code)  \(meaning)"), "help misses exit code \(code): \(help)")
    }
    let restic: [Int32: Int32] = [
      EngineExitCode.partial: 3, EngineExitCode.repositoryNotFound: 10, EngineExitCode.locked: 11,
      EngineExitCode.wrongKey: 12,
    ]
    for (ours, theirs) in restic { #expect(ours == theirs) }
    #expect(EngineExitCode.kms == 13)
    #expect(BotrtEngine.configuration.version == EngineVersion.current)
  }

  /// `botrt-engine --help` and docs/repository-format.md name every environment variable the engine reads, and only
  /// those: `EngineEnv.read` is made from the documented list, and every name the store and key-service factories
  /// read is a constant of that list.
  @Test func helpAndDocsListEveryEnvironmentVariable() throws {
    let help = BotrtEngine.helpMessage(columns: 80)
    #expect(EngineEnv.documented.count == EngineEnv.read.count, "a variable is documented twice")
    let section = try #require(help.range(of: "Environment (a flag wins over its variable):"))
    for line in help[section.lowerBound...].split(separator: "\n") {
      #expect(line.count <= 80, "a help line is wider than 80 columns, so the parser rewraps it: \(line)")
    }
    let doc = try String(
      contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/repository-format.md"), encoding: .utf8)
    for (name, meaning) in EngineEnv.documented {
      #expect(help.contains("  \(name)\n      \(meaning)\n"), "--help misses \(name): \(help)")
      #expect(doc.contains("`\(name)`"), "docs/repository-format.md misses `\(name)`")
    }
    #expect(help.contains(EngineEnv.toEnvPrefix + "<NAME>"))
    // Names the engine's sources read through `firstEnv(env, ...)` or `env[...]` are constants of EngineEnv; a
    // literal would escape the documented list.
    let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("Sources")
    for dir in ["BackupEngine", "EngineCLI"] {
      let root = sources.appendingPathComponent(dir)
      let files = FileManager.default.enumerator(atPath: root.path)?.compactMap { $0 as? String } ?? []
      for f in files where f.hasSuffix(".swift") {
        let text = try String(contentsOf: root.appendingPathComponent(f), encoding: .utf8)
        for marker in ["firstEnv(env, \"", "env[\"", "environment[\""] {
          #expect(!text.contains(marker), "\(dir)/\(f) reads an environment variable by a literal name: \(marker)")
        }
      }
    }
  }
}
