import DRAPI
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

let testNow = Date(timeIntervalSince1970: 1_780_000_000)

func dumpPolicy(
  s3Endpoint: String? = "http://10.0.0.5:9000", trigger: String? = nil, annotations: [String: String]? = nil,
  handled: String? = nil
) -> BackupPolicy {
  var meta = ObjectMeta(name: "payments-db", namespace: "shop")
  meta.uid = "uid-1234"
  meta.generation = 3
  meta.annotations = annotations
  meta.creationTimestamp = testNow.addingTimeInterval(-30)
  let spec = BackupPolicySpec(
    tier: .critical, compliance: [.sox], dataType: .database,
    source: BackupSource(
      command: ContainerSpec(
        image: "postgres:16", command: ["pg_dump"], args: ["--format=custom", "pay ments"],
        env: [
          EnvVar(name: "PGHOST", value: "db.shop.svc"),
          EnvVar(
            name: "PGPASSWORD",
            valueFrom: EnvVarSource(secretKeyRef: SecretKeySelector(name: "db-creds", key: "password"))),
        ], fileName: "payments.dump")),
    repository: RepositorySpec(
      s3: S3Repository(
        bucket: "backups", prefix: "/payments/", region: "us-east-1", endpoint: s3Endpoint, forcePathStyle: true,
        credentialsSecretRef: SecretNameReference(name: "s3-creds"))),
    encryption: EncryptionSpec(
      kms: KMSSpec(
        vaultTransit: VaultTransitKMS(
          address: "https://vault.vault.svc:8200", key: "backup-database-key",
          authSecretRef: SecretReference(name: "vault-token")))),
    trigger: trigger)
  var p = BackupPolicy(metadata: meta, spec: spec)
  if let handled { p.status = BackupPolicyStatus(lastHandledTrigger: handled) }
  return p
}

func secret(_ name: String, _ keys: [String: String]) -> Secret {
  Secret(metadata: ObjectMeta(name: name, namespace: "shop"), data: keys.mapValues { Data($0.utf8) })
}

let allSecrets: [String: Secret] = [
  "s3-creds": secret("s3-creds", ["AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "sk"]),
  "vault-token": secret("vault-token", ["token": "t0k"]),
  "db-creds": secret("db-creds", ["password": "pw"]),
]

func settings(calico: Bool = false, cron: String = "batch/v1") -> ControllerSettings {
  ControllerSettings(engineImage: "botrt/engine:1", cronJobAPIVersion: cron, calicoServed: calico)
}

func build(
  _ p: BackupPolicy, _ s: ControllerSettings = settings(), secrets: [String: Secret] = allSecrets
) throws -> [DesiredChild] {
  let eff = try EffectivePolicy(spec: p.spec, now: testNow)
  return try BackupPolicyChildren.build(
    ChildInputs(
      policy: p, effective: eff, settings: s, secrets: secrets,
      runToken: BackupPolicyChildren.pendingRunToken(p)))
}

func child(_ cs: [DesiredChild], _ kind: String, _ name: String) -> DesiredChild? {
  cs.first { $0.resource.kind == kind && $0.name == name }
}

@Suite struct BackupPolicyChildrenTests {
  let names = ChildNames(namespace: "shop", name: "payments-db")

  @Test func namesAreShortStableAndUnique() {
    let long = ChildNames(namespace: String(repeating: "n", count: 63), name: String(repeating: "x", count: 253))
    #expect(long.backupCronJob.count <= 52)
    #expect(long.runJob(token: "trigger:abc").count <= 63)
    #expect(ChildNames(namespace: "a-b", name: "c").base != ChildNames(namespace: "a", name: "b-c").base)
    #expect(names.base == ChildNames(namespace: "shop", name: "payments-db").base)
    #expect(names.base.hasPrefix("shop-payments-db-"))
  }

  @Test func exactSetOfChildrenForADumpSource() throws {
    let cs = try build(dumpPolicy())
    let ids = cs.map { "\($0.resource.kind) \($0.namespace ?? "-")/\($0.name)" }.sorted()
    let expected = [
      "CronJob botrt-backup/\(names.backupCronJob)", "CronJob botrt-backup/\(names.pruneCronJob)",
      "Namespace -/botrt-backup",
      "NetworkPolicy botrt-backup/botrt-allow-egress-vault-dns",
      "NetworkPolicy botrt-backup/botrt-allow-ingress-disaster-recovery",
      "NetworkPolicy botrt-backup/botrt-default-deny",
      "Role botrt-backup/\(names.role)",
      "Secret botrt-backup/\(names.secretCopy("db-creds"))", "Secret botrt-backup/\(names.secretCopy("s3-creds"))",
      "Secret botrt-backup/\(names.secretCopy("vault-token"))", "ServiceAccount botrt-backup/\(names.serviceAccount)",
    ].sorted()
    #expect(ids == expected)
    // The storage egress and the RoleBinding exist only while a run is active (backup windows).
    let grants = BackupPolicyChildren.runAccess(dumpPolicy(), settings: settings()).map {
      "\($0.resource.kind) \($0.namespace ?? "-")/\($0.name)"
    }
    #expect(
      grants == [
        "NetworkPolicy botrt-backup/\(names.storageEgress)", "NetworkPolicy botrt-backup/\(names.databaseEgress)",
        "RoleBinding botrt-backup/\(names.roleBinding)",
      ])
    // Children in another namespace carry owner labels, never owner references.
    for c in cs where !c.shared {
      #expect(c.body[path: "metadata", "labels", ChildLabels.policyName]?.stringValue == "payments-db")
      #expect(c.body[path: "metadata", "labels", ChildLabels.policyNamespace]?.stringValue == "shop")
      #expect(c.body[path: "metadata", "labels", ChildLabels.policyUID]?.stringValue == "uid-1234")
      #expect(c.body[path: "metadata", "ownerReferences"] == nil)
    }
  }

  @Test func secretCopiesHoldTheSourceDataAndRoleNamesOnlyThem() throws {
    let cs = try build(dumpPolicy())
    let copy = try #require(child(cs, "Secret", names.secretCopy("s3-creds")))
    #expect(copy.body[path: "data", "AWS_ACCESS_KEY_ID"]?.stringValue == Data("id".utf8).base64EncodedString())
    #expect(copy.body[path: "metadata", "annotations", "dr.botrt.io/copied-from"]?.stringValue == "shop/s3-creds")
    let role = try #require(child(cs, "Role", names.role))
    #expect(
      role.body["rules"] == [
        [
          "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
          "resourceNames": [
            .string(names.secretCopy("s3-creds")), .string(names.secretCopy("vault-token")),
            .string(names.secretCopy("db-creds")),
          ],
        ]
      ])
    let sa = try #require(child(cs, "ServiceAccount", names.serviceAccount))
    #expect(sa.body["automountServiceAccountToken"] == false)
  }

  @Test func cronJobIsHardenedAndRunsThePipeline() throws {
    let cs = try build(dumpPolicy())
    let cj = try #require(child(cs, "CronJob", names.backupCronJob))
    #expect(cj.body["apiVersion"] == "batch/v1")
    let spec = try #require(cj.body["spec"])
    #expect(spec["schedule"] == "* * * * *")  // SOX: 1 minute RPO
    #expect(spec["concurrencyPolicy"] == "Forbid")
    #expect(spec["startingDeadlineSeconds"] == 60)
    #expect(spec["successfulJobsHistoryLimit"] == 3)
    #expect(spec["suspend"] == false)
    let pod = try #require(spec[path: "jobTemplate", "spec", "template"])
    #expect(pod[path: "metadata", "labels", "app"] == "backup-service")
    let ps = try #require(pod["spec"])
    #expect(ps["automountServiceAccountToken"] == false)
    #expect(ps["serviceAccountName"]?.stringValue == names.serviceAccount)
    #expect(ps[path: "securityContext", "runAsNonRoot"] == true)
    #expect(ps[path: "securityContext", "seccompProfile", "type"] == "RuntimeDefault")
    // Two containers: the dump in the application's image, the engine (with the credentials) in its own.
    #expect(ps["initContainers"] == nil, "nothing of the engine is copied into the dump image")
    let containers = try #require(ps["containers"]?.arrayValue)
    #expect(containers.map { $0["name"]?.stringValue } == ["dump", "backup"])
    let dump = containers[0]
    let c = containers[1]
    #expect(dump["image"] == "postgres:16")
    #expect(c["image"] == "botrt/engine:1")
    #expect(c["command"] == ["/usr/local/bin/botrt-engine"])
    for x in containers {
      #expect(x[path: "securityContext", "readOnlyRootFilesystem"] == true)
      #expect(x[path: "securityContext", "capabilities", "drop"] == ["ALL"])
      #expect(x[path: "securityContext", "allowPrivilegeEscalation"] == false)
    }
    let script = try #require(dump["command"]?[2]?.stringValue)
    #expect(script.contains("pg_dump --format=custom 'pay ments' > \"$pipe\""))
    #expect(script.contains("echo \"$rc\" > /botrt/pipe/dump.status"))
    let args = (c["args"]?.arrayValue ?? []).compactMap(\.stringValue)
    let line = args.joined(separator: " ")
    #expect(args.first == "backup")
    #expect(
      line.contains(
        "--repo s3://backups/payments --kms vault-transit://vault.vault.svc:8200/transit/backup-database-key?tls=true"))
    #expect(line.contains("--s3-endpoint http://10.0.0.5:9000 --s3-region us-east-1 --s3-path-style"))
    #expect(line.contains("--vault-token-file /var/run/botrt/secrets/vault-token/token"))
    #expect(line.contains("--data-type database --tag policy=shop/payments-db"))
    #expect(
      line.contains(
        "--stdin --stdin-name payments.dump --stdin-from /botrt/pipe/dump --stdin-status /botrt/pipe/dump.status"))
    #expect(line.contains("--init-if-missing"), "a new policy's first run must create its repository")
    #expect(line.contains("--retry-lock 11m"), "a run that meets a prune's or a rotation's lock waits for it to finish")
    // Both mount the pipe; only the engine mounts the Secrets.
    let mounts = { (x: JSONValue) in (x["volumeMounts"]?.arrayValue ?? []).compactMap { $0["mountPath"]?.stringValue } }
    #expect(mounts(dump).sorted() == ["/botrt/pipe", "/tmp"])
    #expect(mounts(c).contains("/botrt/pipe"))
    #expect(mounts(c).contains("/var/run/botrt/secrets/vault-token"))
    // The dump's own Secrets come from the copies; the storage and KMS credentials reach the engine only.
    let dumpEnv = try #require(dump["env"]?.arrayValue)
    let pw = try #require(dumpEnv.first { $0["name"] == "PGPASSWORD" })
    #expect(pw[path: "valueFrom", "secretKeyRef", "name"]?.stringValue == names.secretCopy("db-creds"))
    #expect(!dumpEnv.contains { $0["name"] == "AWS_SECRET_ACCESS_KEY" || $0["name"] == "AWS_ACCESS_KEY_ID" })
    let env = try #require(c["env"]?.arrayValue)
    #expect(!env.contains { $0["name"] == "PGPASSWORD" })
    let key = try #require(env.first { $0["name"] == "AWS_SECRET_ACCESS_KEY" })
    #expect(key[path: "valueFrom", "secretKeyRef", "name"]?.stringValue == names.secretCopy("s3-creds"))
  }

  @Test func compressionIsPassedOnlyWhenTheSpecSetsIt() throws {
    func script(_ p: BackupPolicy) throws -> String {
      let cj = try #require(child(try build(p), "CronJob", names.backupCronJob))
      let engine = try #require(cj.body[path: "spec", "jobTemplate", "spec", "template", "spec", "containers"]?[1])
      return (engine["args"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: " ")
    }
    #expect(!(try script(dumpPolicy())).contains("--compression"), "an unset field keeps the CronJob unchanged")
    for mode in CompressionMode.allCases {
      var p = dumpPolicy()
      p.spec.compression = mode
      #expect(try script(p).contains("--compression \(mode.rawValue) "))
    }
  }

  @Test func pruneCronJobUsesTheEffectiveRetention() throws {
    let cs = try build(dumpPolicy())
    let cj = try #require(child(cs, "CronJob", names.pruneCronJob))
    let args = try #require(cj.body[path: "spec", "jobTemplate", "spec", "template", "spec", "containers"]?[0]?["args"])
    let words = try #require(args.arrayValue?.compactMap { $0.stringValue })
    #expect(words.first == "forget")
    #expect(words.contains("--prune"))
    let eff = try EffectivePolicy(spec: dumpPolicy().spec, now: testNow)
    let i = try #require(words.firstIndex(of: "--keep-monthly"))
    #expect(words[i + 1] == String(eff.retention.value.keepMonthly ?? -1))
  }

  @Test func networkPoliciesIsolateTheNamespace() throws {
    let cs = try build(dumpPolicy())
    let deny = try #require(child(cs, "NetworkPolicy", SharedChildNames.defaultDeny))
    #expect(deny.body["spec"] == ["podSelector": [:], "policyTypes": ["Ingress", "Egress"]])
    let ingress = try #require(child(cs, "NetworkPolicy", SharedChildNames.allowIngress))
    #expect(ingress.body[path: "spec", "ingress"]?[0] == NetworkIsolation.ingressRule.json)
    let egress = try #require(child(cs, "NetworkPolicy", SharedChildNames.allowEgress))
    #expect(egress.body[path: "spec", "egress"]?.arrayValue == NetworkIsolation.dnsRules(settings()).map(\.json))
    #expect(child(cs, "NetworkPolicy", names.storageEgress) == nil)
    let access = BackupPolicyChildren.runAccess(dumpPolicy(), settings: settings())
    let storage = try #require(child(access, "NetworkPolicy", names.storageEgress))
    #expect(storage.body[path: "metadata", "labels", ChildLabels.component] == "run-access")
    let binding = try #require(child(access, "RoleBinding", names.roleBinding))
    #expect(binding.body[path: "roleRef", "name"]?.stringValue == names.role)
    #expect(binding.body[path: "subjects"]?[0]?["name"]?.stringValue == names.serviceAccount)
    // An address literal: that host; Vault by host name: nothing here (a declared vault destination, shared).
    #expect(
      storage.body[path: "spec", "egress"] == [
        ["to": [["ipBlock": ["cidr": "10.0.0.5/32"]]], "ports": [["protocol": "TCP", "port": 9000]]]
      ])
    // A host name on 443 without declared storage: 443 anywhere but link-local.
    let byName = BackupPolicyChildren.runAccess(dumpPolicy(s3Endpoint: "https://s3.example.com"), settings: settings())
    let st2 = try #require(child(byName, "NetworkPolicy", names.storageEgress))
    #expect(st2.body[path: "spec", "egress"] == [NetworkIsolation.defaultStorageRule.json])
  }

  @Test func calicoOnlyWhenServed() throws {
    #expect(try build(dumpPolicy()).contains { $0.resource.kind == "GlobalNetworkPolicy" } == false)
    let cs = try build(dumpPolicy(), settings(calico: true))
    let gnp = try #require(child(cs, "GlobalNetworkPolicy", SharedChildNames.calicoPolicy))
    #expect(gnp.namespace == nil)
    #expect(gnp.body["apiVersion"] == "crd.projectcalico.org/v1")
    #expect(gnp.body[path: "spec", "selector"] == "app.kubernetes.io/managed-by == 'botrt-controller'")
    #expect(gnp.body[path: "spec", "namespaceSelector"] == "dr.botrt.io/backup-namespace == 'true'")
    #expect(
      gnp.body[path: "spec", "ingress"]?[0]?["source"] == [
        "namespaceSelector": "dr.botrt.io/backup-namespace == 'true'",
        "selector": "app.kubernetes.io/managed-by == 'botrt-controller'",
      ])
    #expect(gnp.body[path: "spec", "ingress"]?[1] == ["action": "Deny"])
  }

  @Test func cronJobVersionFollowsDiscovery() throws {
    let cs = try build(dumpPolicy(), settings(cron: "batch/v1beta1"))
    let cj = try #require(child(cs, "CronJob", names.backupCronJob))
    #expect(cj.body["apiVersion"] == "batch/v1beta1")
    #expect(cj.resource.version == "v1beta1")
  }

  @Test func onDemandRunOnlyWhenTheTriggerIsNew() throws {
    #expect(try build(dumpPolicy()).contains { $0.resource.kind == "Job" } == false)
    let p = dumpPolicy(trigger: "r1")
    let cs = try build(p)
    let job = try #require(child(cs, "Job", names.runJob(token: "trigger:r1")))
    #expect(job.body[path: "metadata", "annotations", ChildLabels.runToken] == "trigger:r1")
    #expect(job.body[path: "spec", "template", "metadata", "labels", ChildLabels.component] == "on-demand")
    #expect(try build(dumpPolicy(trigger: "r1", handled: "trigger:r1")).contains { $0.resource.kind == "Job" } == false)
    let a = dumpPolicy(annotations: [DRGroup.runNowAnnotation: "now-1"])
    #expect(BackupPolicyChildren.pendingRunToken(a) == "annotation:now-1")
    #expect(
      BackupPolicyChildren.pendingRunToken(
        dumpPolicy(annotations: [DRGroup.runNowAnnotation: "now-1"], handled: "annotation:now-1")) == nil)
  }

  @Test func missingSecretOrKeyNamesTheField() throws {
    var secrets = allSecrets
    secrets["vault-token"] = nil
    #expect {
      try build(dumpPolicy(), secrets: secrets)
    } throws: { e in
      (e as? SpecError)?.field == "spec.encryption.kms.vaultTransit.authSecretRef"
        && PolicyProblem.from(e as! SpecError).reason == "SecretNotFound"
    }
    secrets = allSecrets
    secrets["db-creds"] = secret("db-creds", ["other": "x"])
    #expect {
      try build(dumpPolicy(), secrets: secrets)
    } throws: { e in
      (e as? SpecError)?.field == "spec.source.command.env[1].valueFrom.secretKeyRef"
        && PolicyProblem.from(e as! SpecError).reason == "SecretKeyMissing"
    }
  }

  @Test func invalidVaultAddressIsReported() throws {
    var p = dumpPolicy()
    p.spec.encryption.kms.vaultTransit?.address = "vault://x:8200"
    #expect {
      try build(p)
    } throws: { e in
      (e as? SpecError)?.field == "spec.encryption.kms.vaultTransit.address"
        && PolicyProblem.from(e as! SpecError).reason == "InvalidKMS"
    }
  }

  @Test func cloudKMSKindsBuildWithTheirSecrets() throws {
    var p = dumpPolicy()
    p.spec.encryption.kms = KMSSpec(
      gcpKms: GCPKMS(
        keyName: "projects/p/locations/l/keyRings/r/cryptoKeys/k",
        credentialsSecretRef: SecretReference(name: "gcp-sa")))
    // The Secret must exist with its key: a missing one is reported like every other Secret.
    #expect {
      try build(p)
    } throws: { e in
      (e as? SpecError)?.field == "spec.encryption.kms.gcpKms.credentialsSecretRef"
        && PolicyProblem.from(e as! SpecError).reason == "SecretNotFound"
    }
    var secrets = allSecrets
    secrets["gcp-sa"] = secret("gcp-sa", ["service-account.json": "{}"])
    let children = try build(p, secrets: secrets)
    #expect(!children.isEmpty)
  }

  @Test func pvcSourceReadsTheClaimAsTheUserItNames() throws {
    func pod(_ source: PVCSource) throws -> JSONValue {
      var p = dumpPolicy()
      p.spec.source = BackupSource(pvc: source)
      let cj = try #require(child(try build(p), "CronJob", names.backupCronJob))
      return try #require(cj.body[path: "spec", "jobTemplate", "spec", "template", "spec"])
    }
    let plain = try pod(PVCSource(claimName: "uploads"))
    #expect(plain[path: "containers"]?[0]?[path: "securityContext", "runAsUser"]?.intValue == 65532)
    #expect(plain[path: "securityContext", "runAsNonRoot"] == true)
    // The application's uid reads its 0600 files; nothing is added.
    let app = try pod(PVCSource(claimName: "uploads", runAsUser: 1001))
    let sc = try #require(app[path: "containers"]?[0]?[path: "securityContext"])
    #expect(sc["runAsUser"]?.intValue == 1001 && sc["runAsGroup"]?.intValue == 1001 && sc["runAsNonRoot"] == true)
    #expect(sc["capabilities"] == ["drop": ["ALL"]] && sc["readOnlyRootFilesystem"] == true)
    // 0: root that may read, not write, everything (DAC_READ_SEARCH alone); the pod may then not require non-root.
    let root = try pod(PVCSource(claimName: "uploads", runAsUser: 0, runAsGroup: 0))
    let rsc = try #require(root[path: "containers"]?[0]?[path: "securityContext"])
    #expect(rsc["runAsUser"]?.intValue == 0 && rsc["runAsNonRoot"] == false)
    #expect(rsc["capabilities"] == ["drop": ["ALL"], "add": ["DAC_READ_SEARCH"]])
    #expect(rsc["allowPrivilegeEscalation"] == false && rsc["readOnlyRootFilesystem"] == true)
    #expect(root[path: "securityContext", "runAsNonRoot"] == false)
    #expect(
      root[path: "volumes"]?.arrayValue?.contains {
        $0["name"] == "source" && $0[path: "persistentVolumeClaim", "readOnly"] == true
      } == true)
  }

  @Test func pvcSourceRunsInThePolicyNamespaceWithOwnerReferences() throws {
    var p = dumpPolicy()
    p.spec.source = BackupSource(pvc: PVCSource(claimName: "uploads", subPath: "media"))
    p.spec.repository = RepositorySpec(local: LocalRepository(path: "/repository/x", claimName: "airgap"))
    p.spec.encryption.kms = KMSSpec(localKeySecretRef: SecretReference(name: "local-key"))
    let cs = try build(p, secrets: ["local-key": secret("local-key", ["key": "k"])])
    #expect(cs.contains { $0.resource.kind == "Secret" } == false)
    let cj = try #require(child(cs, "CronJob", names.backupCronJob))
    #expect(cj.namespace == "shop")
    #expect(cj.body[path: "metadata", "ownerReferences"]?[0]?["uid"] == "uid-1234")
    let c = try #require(cj.body[path: "spec", "jobTemplate", "spec", "template", "spec", "containers"]?[0])
    #expect(c["image"] == "botrt/engine:1")
    let args = try #require(c["args"]?.arrayValue?.compactMap { $0.stringValue })
    #expect(
      args.prefix(5) == [
        "backup", "--repo", "file:///repository/x", "--kms", "file:///var/run/botrt/secrets/local-key/key",
      ])
    #expect(args.last == "/backup/uploads")
    let mounts = try #require(c["volumeMounts"]?.arrayValue)
    #expect(mounts.contains(["name": "source", "mountPath": "/backup/uploads", "readOnly": true, "subPath": "media"]))
    let iso = try #require(child(cs, "NetworkPolicy", names.isolation))
    #expect(iso.namespace == "shop")
    #expect(iso.body[path: "spec", "policyTypes"] == ["Ingress", "Egress"])
    // Storage egress is not part of the permanent isolation: it is granted per run, in the policy's namespace.
    #expect(iso.body[path: "spec", "egress"]?.arrayValue == NetworkIsolation.sharedEgressRules(settings()).map(\.json))
    #expect(iso.body[path: "spec", "ingress"] == [NetworkIsolation.ingressRule.json])
  }
}
