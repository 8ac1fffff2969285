import ControllerApp
import DRAPI
import KubeCore
import Testing

/// The mapping of a changed Secret to the policies that reference it (pure; no cluster): a policy per storage and KMS
/// kind, valid and refused by the engine invocation, with replicas. The old list (the engine invocation's Secrets,
/// else a fixed fallback list) missed Azure Key Vault's and Google Cloud KMS's Secrets of a refused spec and every
/// replica's Secrets.
@Suite struct SecretMappingTests {
  func policy(
    _ repository: RepositorySpec, _ kms: KMSSpec, replicas: [ReplicaSpec]? = nil,
    rotationKeys: String? = nil
  ) -> BackupPolicy {
    var spec = BackupPolicySpec(
      tier: .standard, source: BackupSource(pvc: PVCSource(claimName: "data")), repository: repository,
      encryption: EncryptionSpec(kms: kms, rotationKeysSecretRef: rotationKeys.map(SecretNameReference.init)),
      replicas: replicas)
    spec.caSecretRef = SecretReference(name: "ca-bundle")
    return BackupPolicy(metadata: ObjectMeta(name: "p", namespace: "shop"), spec: spec)
  }

  let local = RepositorySpec(local: LocalRepository(path: "/repo", claimName: "repo"))
  let kmsKinds: [(KMSSpec, [String])] = [
    (
      KMSSpec(
        vaultTransit: VaultTransitKMS(
          address: "https://vault:8200", key: "k", authSecretRef: SecretReference(name: "vault-token"),
          caSecretRef: SecretReference(name: "vault-ca"))), ["vault-token", "vault-ca"]
    ),
    (KMSSpec(awsKms: AWSKMS(keyId: "k", credentialsSecretRef: SecretNameReference(name: "aws-creds"))), ["aws-creds"]),
    (KMSSpec(localKeySecretRef: SecretReference(name: "local-key")), ["local-key"]),
    (
      KMSSpec(
        azureKeyVault: AzureKeyVaultKMS(
          vaultURL: "https://v.vault.azure.net", keyName: "k", credentialsSecretRef: SecretNameReference(name: "akv"))),
      ["akv"]
    ),
    (
      KMSSpec(
        gcpKms: GCPKMS(
          keyName: "projects/p/locations/l/keyRings/r/cryptoKeys/k", credentialsSecretRef: SecretReference(name: "gcp"))
      ),
      ["gcp"]
    ),
  ]

  @Test func eachKMSKindsSecretsMapBack() {
    for (kms, names) in kmsKinds {
      // Valid, and refused by the engine invocation (rotation keys with a key service other than a local key).
      for p in [policy(local, kms), policy(local, kms, rotationKeys: "rotation-keys")] {
        for name in names + ["ca-bundle"] {
          #expect(BotRTController.references(p, secret: name), "\(kms.setChoiceNames) \(name)")
        }
        #expect(!BotRTController.references(p, secret: "unrelated"))
      }
    }
  }

  @Test func eachStorageKindsSecretsMapBack() {
    let kms = KMSSpec(localKeySecretRef: SecretReference(name: "local-key"))
    let kinds: [(RepositorySpec, String)] = [
      (RepositorySpec(s3: S3Repository(bucket: "b", credentialsSecretRef: SecretNameReference(name: "s3"))), "s3"),
      (RepositorySpec(gcs: GCSRepository(bucket: "b", credentialsSecretRef: SecretReference(name: "gcs"))), "gcs"),
      (
        RepositorySpec(
          azure: AzureRepository(account: "a", container: "c", credentialsSecretRef: SecretNameReference(name: "az"))),
        "az"
      ),
    ]
    for (repo, name) in kinds {
      #expect(BotRTController.references(policy(repo, kms), secret: name))
      // As a replica's storage, with its own keys of each kind.
      for (replicaKMS, kmsNames) in kmsKinds {
        let p = policy(
          local, kms,
          replicas: [ReplicaSpec(name: "r", repository: repo, encryption: EncryptionSpec(kms: replicaKMS))])
        for n in [name] + kmsNames {
          #expect(BotRTController.references(p, secret: n), "replica \(name) \(replicaKMS.setChoiceNames) \(n)")
        }
      }
    }
  }
}
