import DRAPI
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// Azure Key Vault and Google Cloud KMS policies map to the engine's azurekv:// and gcpkms:// KMS URIs.
@Suite struct EngineInvocationKMSTests {
  func invocation(_ kms: KMSSpec) throws -> EngineInvocation {
    var p = dumpPolicy()
    p.spec.encryption.kms = kms
    return try EngineInvocation(spec: p.spec, secretName: { "botrt-" + $0 })
  }

  func envNames(_ inv: EngineInvocation) -> [String: JSONValue] {
    var out: [String: JSONValue] = [:]
    for e in inv.env { if case .string(let n)? = e["name"] { out[n] = e } }
    return out
  }

  @Test func azureKeyVaultMapsToAzurekvWithServicePrincipalSecret() throws {
    let inv = try invocation(
      KMSSpec(
        azureKeyVault: AzureKeyVaultKMS(
          vaultURL: "https://Botrt-Example.vault.azure.net/", keyName: "backup-kek", keyVersion: "0123abcd",
          authorityHost: "https://login.microsoftonline.us", credentialsSecretRef: SecretNameReference(name: "akv"))))
    #expect(inv.kmsURL == "azurekv://botrt-example.vault.azure.net/keys/backup-kek/0123abcd")
    #expect(!inv.commonFlags.contains("--kms-endpoint"))
    let env = envNames(inv)
    for v in ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"] {
      let e = try #require(env[v], "\(v) missing")
      #expect(e["valueFrom"]?["secretKeyRef"]?["name"] == "botrt-akv")
      #expect(e["valueFrom"]?["secretKeyRef"]?["key"] == .string(v))
    }
    #expect(env["AZURE_AUTHORITY_HOST"]?["value"] == "https://login.microsoftonline.us")
    let use = try #require(inv.secrets.first { $0.sourceName == "akv" })
    #expect(use.requiredKeys == ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"])
    #expect(use.field == "spec.encryption.kms.azureKeyVault.credentialsSecretRef")
    // Egress: the vault's host on 443.
    let eps = EngineInvocation.storageEndpoints(
      dumpPolicy().spec.repository,
      kms: try #require(
        Optional(
          KMSSpec(
            azureKeyVault: AzureKeyVaultKMS(
              vaultURL: "https://v.vault.azure.net", keyName: "k", credentialsSecretRef: SecretNameReference(name: "a"))
          ))))
    #expect(eps.contains { $0.host == "v.vault.azure.net" && $0.port == 443 })
  }

  @Test func azureKeyVaultAtAnotherEndpointIsCalledThere() throws {
    let inv = try invocation(
      KMSSpec(
        azureKeyVault: AzureKeyVaultKMS(
          vaultURL: "http://10.0.0.9:8443", keyName: "k", credentialsSecretRef: SecretNameReference(name: "akv"))))
    #expect(inv.kmsURL == "azurekv://10.0.0.9/keys/k")
    let i = try #require(inv.commonFlags.firstIndex(of: "--kms-endpoint"))
    #expect(inv.commonFlags[i + 1] == "http://10.0.0.9:8443")
    #expect {
      _ = try invocation(
        KMSSpec(
          azureKeyVault: AzureKeyVaultKMS(
            vaultURL: "vault.azure.net", keyName: "k", credentialsSecretRef: SecretNameReference(name: "akv"))))
    } throws: { e in
      (e as? SpecError)?.field == "spec.encryption.kms.azureKeyVault.vaultURL"
        && PolicyProblem.from(e as! SpecError).reason == "InvalidKMS"
    }
  }

  @Test func gcpKmsMapsToGcpkmsWithMountedServiceAccountKey() throws {
    let name = "projects/p1/locations/europe-west1/keyRings/ring/cryptoKeys/kek"
    let inv = try invocation(
      KMSSpec(
        gcpKms: GCPKMS(
          keyName: name, endpoint: "http://10.0.0.7:8080",
          credentialsSecretRef: SecretReference(name: "gcp-sa", key: "sa.json"))))
    #expect(inv.kmsURL == "gcpkms://\(name)")
    let i = try #require(inv.commonFlags.firstIndex(of: "--kms-endpoint"))
    #expect(inv.commonFlags[i + 1] == "http://10.0.0.7:8080")
    let file = try #require(envNames(inv)["BOTRT_GCPKMS_CREDENTIALS_FILE"]?["value"])
    #expect(file == .string("\(EngineInvocation.secretsRoot)/gcpkms-credentials/sa.json"))
    #expect(inv.volumes.contains { $0["secret"]?["secretName"] == "botrt-gcp-sa" })
    #expect(inv.mounts.contains { $0["mountPath"] == .string("\(EngineInvocation.secretsRoot)/gcpkms-credentials") })
    #expect(inv.secrets.contains { $0.sourceName == "gcp-sa" && $0.requiredKeys == ["sa.json"] })
    // Without a Secret (workload identity), nothing is mounted.
    let bare = try invocation(KMSSpec(gcpKms: GCPKMS(keyName: name)))
    #expect(bare.kmsURL == "gcpkms://\(name)")
    #expect(envNames(bare)["BOTRT_GCPKMS_CREDENTIALS_FILE"] == nil)
  }

  /// spec.caSecretRef: the bundle is mounted and passed as --cacert to the primary's Jobs and to the replicas'.
  @Test func privateCAsAreMountedAndPassedToEveryJob() throws {
    var p = replicatedPolicy()
    p.spec.caSecretRef = SecretReference(name: "corp-ca", key: "bundle.pem")
    let inv = try EngineInvocation(policy: p) { "botrt-\($0)" }
    let i = try #require(inv.commonFlags.firstIndex(of: "--cacert"))
    #expect(inv.commonFlags[i + 1] == "\(EngineInvocation.secretsRoot)/ca-bundle/bundle.pem")
    #expect(inv.volumes.contains { $0["secret"]?["secretName"] == "botrt-corp-ca" })
    #expect(inv.secrets.contains { $0.sourceName == "corp-ca" && $0.field == "spec.caSecretRef" })
    // The replica's own Jobs (its key rotation) trust the same CAs.
    let replica = ReplicaKeyRotation.virtualPolicy(p, replica: p.spec.replicas![0], status: ReplicaStatus(name: "dr"))
    #expect((try EngineInvocation(policy: replica) { $0 }).commonFlags.contains("--cacert"))
    // Without it, no flag.
    #expect(!(try EngineInvocation(policy: replicatedPolicy()) { $0 }).commonFlags.contains("--cacert"))
  }

  /// TLS by default: an http:// key service is refused, naming the field, unless the spec opts in.
  @Test func plaintextKeyServicesAreRefusedUnlessAllowed() {
    var p = dumpPolicy()
    p.spec.encryption.kms = KMSSpec(
      vaultTransit: VaultTransitKMS(address: "http://vault:8200", key: "k", authSecretRef: SecretReference(name: "t")))
    let errors = SpecValidation.validate(p.spec)
    #expect(
      errors.contains { $0.field == "spec.encryption.kms.vaultTransit.address" && $0.message.contains("https://") })
    p.spec.encryption.kms.allowPlaintextHTTP = true
    #expect(SpecValidation.validate(p.spec).isEmpty)
  }
}
