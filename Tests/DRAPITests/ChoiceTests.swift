import Foundation
import Testing

@testable import DRAPI

/// The enum views of the exactly-one-of objects: each kind, none set and two set (validation's error at the given
/// field), and the Secrets a spec names through them.
@Suite struct ChoiceTests {
  let s3 = S3Repository(bucket: "b", credentialsSecretRef: SecretNameReference(name: "s3-creds"))
  let gcs = GCSRepository(bucket: "g", credentialsSecretRef: SecretReference(name: "gcs-creds"))
  let azure = AzureRepository(
    account: "acct", container: "c", credentialsSecretRef: SecretNameReference(name: "azure-creds"))
  let local = LocalRepository(path: "/repo", claimName: "repo-claim")

  let vault = VaultTransitKMS(
    address: "https://vault:8200", key: "k", authSecretRef: SecretReference(name: "vault-token"),
    caSecretRef: SecretReference(name: "vault-ca"))
  let aws = AWSKMS(keyId: "alias/k", credentialsSecretRef: SecretNameReference(name: "aws-creds"))
  let akv = AzureKeyVaultKMS(
    vaultURL: "https://v.vault.azure.net", keyName: "k", credentialsSecretRef: SecretNameReference(name: "akv-creds"))
  let gcp = GCPKMS(
    keyName: "projects/p/locations/l/keyRings/r/cryptoKeys/k", credentialsSecretRef: SecretReference(name: "gcp-creds"))

  @Test func repositoryKinds() throws {
    #expect(try RepositorySpec(s3: s3).kind(at: "spec.repository") == .s3(s3))
    #expect(try RepositorySpec(gcs: gcs).kind(at: "spec.repository") == .gcs(gcs))
    #expect(try RepositorySpec(azure: azure).kind(at: "spec.repository") == .azure(azure))
    #expect(try RepositorySpec(local: local).kind(at: "spec.repository") == .local(local))
    #expect(RepositorySpec(local: local).kind == .local(local))
    #expect(RepositorySpec.allChoiceNames == ["s3", "gcs", "azure", "local"])
    for k in [RepositoryKind.s3(s3), .gcs(gcs), .azure(azure), .local(local)] {
      #expect(RepositorySpec.allChoiceNames.contains(k.name.rawValue))
    }
  }

  @Test func kmsKinds() throws {
    let f = "spec.encryption.kms"
    #expect(try KMSSpec(vaultTransit: vault).kind(at: f) == .vaultTransit(vault))
    #expect(try KMSSpec(awsKms: aws).kind(at: f) == .awsKms(aws))
    #expect(try KMSSpec(localKeySecretRef: SecretReference(name: "key")).kind(at: f) == .localKey(.init(name: "key")))
    #expect(try KMSSpec(azureKeyVault: akv).kind(at: f) == .azureKeyVault(akv))
    #expect(try KMSSpec(gcpKms: gcp).kind(at: f) == .gcpKms(gcp))
    #expect(KMSSpec.allKinds == ["vaultTransit", "awsKms", "localKeySecretRef", "azureKeyVault", "gcpKms"])
    #expect(KMSKind.localKey(.init(name: "key")).name.rawValue == "localKeySecretRef")
    #expect(KMSKind.localKey(.init(name: "key")).fieldName == "localKeySecretRef")
    #expect(DrillTargetKind.backupPolicy(.init(name: "p")).fieldName == "backupPolicyRef")
  }

  @Test func sourceDestinationAndTargetKinds() throws {
    let pvc = PVCSource(claimName: "data")
    let cmd = ContainerSpec(image: "postgres:16", command: ["pg_dump"])
    #expect(try BackupSource(pvc: pvc).kind(at: "spec.source") == .pvc(pvc))
    #expect(try BackupSource(command: cmd).kind(at: "spec.source") == .command(cmd))
    let into = RestorePVC(claimName: "restored")
    #expect(try RestoreDestination(pvc: into).kind(at: "into") == .pvc(into))
    #expect(try RestoreDestination(command: cmd).kind(at: "into") == .command(cmd))
    let ref = LocalObjectReference(name: "x")
    #expect(try DrillTarget(backupPolicyRef: ref).kind(at: "spec.target") == .backupPolicy(ref))
    #expect(try DrillTarget(recoveryPlanRef: ref).kind(at: "spec.target") == .recoveryPlan(ref))
  }

  /// The error `kind(at:)` throws, nil when it returns a kind.
  func thrown<T: ExactlyOneOf>(_ x: T, at field: String) -> SpecError? {
    do {
      _ = try x.kind(at: field)
      return nil
    } catch {
      return error
    }
  }

  /// None set and two set throw validation's own error (field, message, reason).
  @Test func noneAndTwoAreValidationsErrors() throws {
    let pvc = PVCSource(claimName: "d")
    let cmd = ContainerSpec(image: "i")
    let a = LocalObjectReference(name: "a")
    let cases: [(String, SpecError?, String)] = [
      ("spec.repository", thrown(RepositorySpec(), at: "spec.repository"), "none is set"),
      (
        "spec.repository", thrown(RepositorySpec(s3: s3, local: local), at: "spec.repository"),
        "s3 and local are all set"
      ),
      ("spec.encryption.kms", thrown(KMSSpec(), at: "spec.encryption.kms"), "none is set"),
      (
        "spec.encryption.kms", thrown(KMSSpec(azureKeyVault: akv, gcpKms: gcp), at: "spec.encryption.kms"),
        "azureKeyVault and gcpKms are all set"
      ),
      ("spec.source", thrown(BackupSource(), at: "spec.source"), "none is set"),
      (
        "spec.source", thrown(BackupSource(pvc: pvc, command: cmd), at: "spec.source"),
        "pvc and command are all set"
      ),
      ("into", thrown(RestoreDestination(), at: "into"), "none is set"),
      ("spec.target", thrown(DrillTarget(), at: "spec.target"), "none is set"),
      (
        "spec.target", thrown(DrillTarget(backupPolicyRef: a, recoveryPlanRef: a), at: "spec.target"),
        "backupPolicyRef and recoveryPlanRef are all set"
      ),
    ]
    for (field, error, tail) in cases {
      let error = try #require(error, "\(field): expected an error ending in \(tail)")
      #expect(error.field == field)
      #expect(error.message.hasPrefix("set exactly one of "))
      #expect(error.message.hasSuffix(tail))
      #expect(error.reason == SpecError.Reason(field: field))
    }
    // The same error validation reports.
    var spec = policySpec(tier: .standard)
    spec.encryption.kms = KMSSpec()
    let validation = SpecValidation.validate(spec).first { $0.field == "spec.encryption.kms" }
    #expect(validation != nil && thrown(spec.encryption.kms, at: "spec.encryption.kms") == validation)
    #expect(validation?.reason == .invalidKMS)
    // The optional view is nil for none and for two.
    #expect(KMSSpec().kind == nil)
    #expect(KMSSpec(awsKms: aws, gcpKms: gcp).kind == nil)
    #expect(RepositorySpec(s3: s3, gcs: gcs).kind == nil)
  }

  @Test func atMostOneAllowsNone() throws {
    #expect(try RestoreDestination().atMostOne(at: "into") == nil)
    let cmd = ContainerSpec(image: "i")
    #expect(try RestoreDestination(command: cmd).atMostOne(at: "into") == .command(cmd))
    #expect(throws: SpecError.self) {
      try RestoreDestination(pvc: RestorePVC(claimName: "c"), command: cmd).atMostOne(at: "into")
    }
  }

  @Test func plaintextURLsOfEachKind() {
    let http = KMSSpec(
      vaultTransit: VaultTransitKMS(address: "http://v", key: "k", authSecretRef: .init(name: "t")),
      awsKms: AWSKMS(keyId: "k", endpoint: "http://a"),
      azureKeyVault: AzureKeyVaultKMS(
        vaultURL: "http://z", keyName: "k", authorityHost: "http://login", credentialsSecretRef: .init(name: "c")),
      gcpKms: GCPKMS(keyName: "k", endpoint: "http://g"))
    #expect(
      http.plaintextCheckedURLs.map(\.field) == [
        "vaultTransit.address", "awsKms.endpoint", "azureKeyVault.vaultURL", "azureKeyVault.authorityHost",
        "gcpKms.endpoint",
      ])
  }

  /// Every Secret kind a policy can name, one policy per storage and KMS kind: the list the controller maps a
  /// Secret's change back to its policies with (the old fallback list lacked Azure Key Vault, Google Cloud KMS and
  /// the replicas').
  @Test func referencedSecretNamesOfEachKind() {
    func spec(_ repo: RepositorySpec, _ kms: KMSSpec) -> BackupPolicySpec {
      BackupPolicySpec(
        tier: .standard, source: BackupSource(pvc: PVCSource(claimName: "data")), repository: repo,
        encryption: EncryptionSpec(kms: kms))
    }
    let localKMS = KMSSpec(localKeySecretRef: SecretReference(name: "key"))
    #expect(spec(RepositorySpec(s3: s3), localKMS).referencedSecretNames == ["s3-creds", "key"])
    #expect(spec(RepositorySpec(gcs: gcs), localKMS).referencedSecretNames == ["gcs-creds", "key"])
    #expect(spec(RepositorySpec(azure: azure), localKMS).referencedSecretNames == ["azure-creds", "key"])
    #expect(spec(RepositorySpec(local: local), localKMS).referencedSecretNames == ["key"])
    let repo = RepositorySpec(local: local)
    #expect(spec(repo, KMSSpec(vaultTransit: vault)).referencedSecretNames == ["vault-token", "vault-ca"])
    #expect(spec(repo, KMSSpec(awsKms: aws)).referencedSecretNames == ["aws-creds"])
    #expect(spec(repo, KMSSpec(azureKeyVault: akv)).referencedSecretNames == ["akv-creds"])
    #expect(spec(repo, KMSSpec(gcpKms: gcp)).referencedSecretNames == ["gcp-creds"])

    // The rest: rotation keys, private CAs, the dump command's environment, each replica's storage and keys; an
    // invalid choice (two KMS kinds) still names both, and a Secret named twice is listed once.
    var all = spec(RepositorySpec(s3: s3), KMSSpec(localKeySecretRef: SecretReference(name: "key")))
    all.encryption.rotationKeysSecretRef = SecretNameReference(name: "rotation-keys")
    all.caSecretRef = SecretReference(name: "ca-bundle")
    all.source = BackupSource(
      command: ContainerSpec(
        image: "postgres:16",
        env: [
          EnvVar(name: "PGPASSWORD", valueFrom: EnvVarSource(secretKeyRef: .init(name: "db-password", key: "p"))),
          EnvVar(name: "PLAIN", value: "x"),
        ]))
    all.replicas = [
      ReplicaSpec(name: "gcs", repository: RepositorySpec(gcs: gcs)),
      ReplicaSpec(
        name: "own", repository: RepositorySpec(azure: azure),
        encryption: EncryptionSpec(kms: KMSSpec(azureKeyVault: akv, gcpKms: gcp))),
      ReplicaSpec(name: "again", repository: RepositorySpec(s3: s3)),
    ]
    #expect(
      all.referencedSecretNames == [
        "s3-creds", "key", "rotation-keys", "ca-bundle", "db-password", "gcs-creds", "azure-creds", "akv-creds",
        "gcp-creds",
      ])
  }

  @Test func sameLocationComparesOneKindWithItself() {
    #expect(RepositorySpec(s3: s3).sameLocation(RepositorySpec(s3: s3)))
    var other = s3
    other.credentialsSecretRef = SecretNameReference(name: "other")
    #expect(RepositorySpec(s3: s3).sameLocation(RepositorySpec(s3: other)))
    other.prefix = "p"
    #expect(!RepositorySpec(s3: s3).sameLocation(RepositorySpec(s3: other)))
    #expect(RepositorySpec(local: local).sameLocation(RepositorySpec(local: local)))
    #expect(!RepositorySpec(local: local).sameLocation(RepositorySpec(gcs: gcs)))
    #expect(!RepositorySpec().sameLocation(RepositorySpec()))
  }
}
