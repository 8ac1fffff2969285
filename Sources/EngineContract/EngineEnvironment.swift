/// The environment variables `botrt-engine` reads: the controller sets only these on an engine container.
///
/// The engine's store and key service factories read the same constants, so a name the controller sets is a name
/// the engine reads (the contract test checks every pod's environment against `read`).
public enum EngineEnv {
  // Repository, key service, lock wait.
  public static let repo = "BOTRT_REPO"
  /// The repository, as restic's RESTIC_REPOSITORY (same as `repo`; a different value in both is refused).
  public static let repository = "BOTRT_REPOSITORY"
  public static let kms = "BOTRT_KMS"
  public static let retryLock = "BOTRT_RETRY_LOCK"
  /// Per-phase timing of a restore on stderr (diagnostics).
  public static let timing = "BOTRT_TIMING"
  /// Frames per second of the progress status (restic's RESTIC_PROGRESS_FPS): sets the rate on a terminal, and asks
  /// for plain progress lines when stdout is a pipe or a file.
  public static let progressFPS = "BOTRT_PROGRESS_FPS"
  /// Who the audit log names as the actor (else the uid), with the host name and pid.
  public static let user = "USER"

  // S3.
  public static let s3Endpoint = "BOTRT_S3_ENDPOINT"
  public static let s3PathStyle = "BOTRT_S3_PATH_STYLE"
  public static let s3SSE = "BOTRT_S3_SSE"
  public static let s3SSEKMSKeyId = "BOTRT_S3_SSE_KMS_KEY_ID"
  public static let awsAccessKeyId = "AWS_ACCESS_KEY_ID"
  public static let awsSecretAccessKey = "AWS_SECRET_ACCESS_KEY"
  public static let awsSessionToken = "AWS_SESSION_TOKEN"
  public static let awsRegion = "AWS_REGION"
  public static let awsDefaultRegion = "AWS_DEFAULT_REGION"
  public static let awsEndpointURL = "AWS_ENDPOINT_URL"
  public static let awsEndpointURLS3 = "AWS_ENDPOINT_URL_S3"
  public static let awsEndpointURLKMS = "AWS_ENDPOINT_URL_KMS"

  // Google Cloud Storage.
  public static let gcsEndpoint = "BOTRT_GCS_ENDPOINT"
  public static let gcsTokenFile = "BOTRT_GCS_TOKEN_FILE"
  public static let storageEmulatorHost = "STORAGE_EMULATOR_HOST"
  public static let googleApplicationCredentials = "GOOGLE_APPLICATION_CREDENTIALS"
  public static let googleAccessToken = "GOOGLE_OAUTH_ACCESS_TOKEN"
  public static let googleAccessTokenFile = "GOOGLE_OAUTH_ACCESS_TOKEN_FILE"

  // Azure Blob Storage (spec.repository.azure.endpoint is passed as azureBlobEndpoint).
  public static let azureBlobEndpoint = "AZURE_STORAGE_BLOB_ENDPOINT"
  public static let azureStorageKey = "AZURE_STORAGE_KEY"
  public static let azureStorageAccountKey = "AZURE_STORAGE_ACCOUNT_KEY"

  // Key services.
  /// The Vault server, as the vault CLI reads it, for a Vault Transit URL without a host (`vault-transit:///mount/key`).
  public static let vaultAddr = "VAULT_ADDR"
  public static let vaultToken = "VAULT_TOKEN"
  public static let vaultCACert = "VAULT_CACERT"
  /// PEM certificates trusted in addition to the system's (`--cacert`), as restic's RESTIC_CACERT.
  public static let caCert = "BOTRT_CACERT"
  public static let vaultNamespace = "VAULT_NAMESPACE"
  public static let awsKMSEndpoint = "BOTRT_AWSKMS_ENDPOINT"
  public static let azureKeyVaultEndpoint = "BOTRT_AZUREKV_ENDPOINT"
  public static let azureTenantId = "AZURE_TENANT_ID"
  public static let azureClientId = "AZURE_CLIENT_ID"
  public static let azureClientSecret = "AZURE_CLIENT_SECRET"
  public static let azureAuthorityHost = "AZURE_AUTHORITY_HOST"
  public static let azureAccessToken = "AZURE_ACCESS_TOKEN"
  public static let azureAccessTokenFile = "AZURE_ACCESS_TOKEN_FILE"
  public static let gcpKMSEndpoint = "BOTRT_GCPKMS_ENDPOINT"
  public static let gcpKMSCredentialsFile = "BOTRT_GCPKMS_CREDENTIALS_FILE"

  // copy: the target.
  public static let toRepo = "BOTRT_TO_REPO"
  public static let toKMS = "BOTRT_TO_KMS"
  /// `BOTRT_TO_ENV_<NAME>` is the copy target's `<NAME>` (its own credentials, endpoints and settings).
  public static let toEnvPrefix = "BOTRT_TO_ENV_"

  /// Every variable the engine reads, with what it sets, in the order `botrt-engine --help` lists them (besides
  /// `toEnvPrefix` + one of these). `read` is made from it, so the help cannot miss a variable the engine reads.
  public static let documented: [(name: String, meaning: String)] = [
    (repository, "the repository URL, as restic's RESTIC_REPOSITORY (--repo/-r wins)"),
    (repo, "the same as BOTRT_REPOSITORY (a different value in both is a usage error)"),
    (kms, "the key service URL (--kms wins)"),
    (retryLock, "how long to wait for a locked repository, e.g. 1h30m (--retry-lock wins)"),
    (progressFPS, "progress frames per second (not a terminal: plain progress lines)"),
    (caCert, "PEM files trusted besides the system's, comma-separated (--cacert wins)"),
    (timing, "set: a restore prints its per-phase timing on stderr"),
    (user, "the actor the audit log names, with host and pid (else the uid)"),
    (s3Endpoint, "the S3 endpoint (--s3-endpoint wins)"),
    (awsEndpointURLS3, "the S3 endpoint, as the AWS CLI reads it (after BOTRT_S3_ENDPOINT)"),
    (awsEndpointURL, "the endpoint of S3 and AWS KMS when no more specific variable is set"),
    (s3PathStyle, "1: path-style S3 URLs (bucket in the path), as MinIO and SeaweedFS need"),
    (s3SSE, "S3 server-side encryption: AES256 or aws:kms (--s3-sse wins)"),
    (s3SSEKMSKeyId, "the KMS key of aws:kms server-side encryption (--s3-sse-kms-key-id wins)"),
    (awsAccessKeyId, "S3 and AWS KMS access key id"),
    (awsSecretAccessKey, "S3 and AWS KMS secret access key"),
    (awsSessionToken, "S3 and AWS KMS session token of temporary credentials"),
    (awsRegion, "the AWS region of S3 and AWS KMS"),
    (awsDefaultRegion, "the AWS region when AWS_REGION is not set"),
    (gcsEndpoint, "the GCS endpoint (an emulator: no credentials needed)"),
    (storageEmulatorHost, "the GCS emulator's host[:port], as Google's SDKs read it"),
    (googleAccessToken, "an OAuth access token for GCS and Google Cloud KMS"),
    (gcsTokenFile, "a file holding the GCS access token, read again for every request"),
    (googleAccessTokenFile, "a file holding the Google Cloud KMS access token (--kms-token-file wins)"),
    (gcpKMSCredentialsFile, "a Google service-account key file for Google Cloud KMS"),
    (googleApplicationCredentials, "a service-account key file, if BOTRT_GCPKMS_CREDENTIALS_FILE is unset"),
    (gcpKMSEndpoint, "the Google Cloud KMS endpoint"),
    (azureBlobEndpoint, "the Azure Blob endpoint (spec.repository.azure.endpoint)"),
    (azureStorageKey, "the Azure storage account's shared key"),
    (azureStorageAccountKey, "the shared key, when AZURE_STORAGE_KEY is not set"),
    (azureKeyVaultEndpoint, "the Azure Key Vault endpoint"),
    (azureAccessToken, "an access token for Azure Key Vault"),
    (azureAccessTokenFile, "a file holding the Azure Key Vault access token (--kms-token-file wins)"),
    (azureTenantId, "Azure Key Vault client credentials: the tenant"),
    (azureClientId, "Azure Key Vault client credentials: the client id"),
    (azureClientSecret, "Azure Key Vault client credentials: the client secret"),
    (azureAuthorityHost, "the token authority (default https://login.microsoftonline.com)"),
    (vaultAddr, "the Vault server of a URL without a host: vault-transit:///transit/KEY"),
    (vaultToken, "the Vault token (--vault-token-file wins)"),
    (vaultCACert, "the CA that signs Vault's certificate (--vault-ca-file wins)"),
    (vaultNamespace, "the Vault Enterprise namespace"),
    (awsKMSEndpoint, "the AWS KMS endpoint (after AWS_ENDPOINT_URL_KMS)"),
    (awsEndpointURLKMS, "the AWS KMS endpoint, as the AWS CLI reads it"),
    (toRepo, "copy: the target repository (--to wins)"),
    (toKMS, "copy: the target's key service (--to-kms wins)"),
  ]

  /// Every variable the engine reads (besides `toEnvPrefix` + one of these).
  public static let read: Set<String> = Set(documented.map(\.name))

  /// The root help's environment section: every variable on its line, its meaning indented below it (each line
  /// fits 80 columns, so the help's wrapping leaves it as written), and the copy target's prefix.
  public static var help: String {
    "Environment (a flag wins over its variable):\n"
      + documented.map { "  \($0.name)\n      \($0.meaning)" }.joined(separator: "\n")
      + "\n  \(toEnvPrefix)<NAME>\n      copy: the target's own <NAME>, e.g. \(toEnvPrefix)\(awsAccessKeyId)"
  }

  /// Whether the engine reads `name` (directly, or as the copy target's `BOTRT_TO_ENV_<NAME>`).
  public static func isRead(_ name: String) -> Bool {
    if read.contains(name) { return true }
    guard name.hasPrefix(toEnvPrefix) else { return false }
    let inner = String(name.dropFirst(toEnvPrefix.count))
    return read.contains(inner) && !inner.hasPrefix(toEnvPrefix)
  }
}

/// The engine's process exit codes (documented in docs/repository-format.md section 15 and in `botrt-engine --help`).
///
/// Where restic has a code for the same situation the engine uses restic's number, so wrappers written for restic
/// do the right thing: 3 partial backup, 10 no repository, 11 lock failed, 12 wrong key. The engine's own classes
/// (KMS unavailable, storage, integrity) keep distinct codes that restic does not use for anything else. 6 was the
/// partial backup's code before 0.1.0 and is no longer used.
public enum EngineExitCode {
  public static let success: Int32 = 0
  /// Any other failure.
  public static let other: Int32 = 1
  /// Bad arguments, flags or URLs; no such snapshot.
  public static let usage: Int32 = 2
  /// The backup stored a snapshot but some sources could not be read (restic's 3).
  public static let partial: Int32 = 3
  /// The repository's storage failed or refused access.
  public static let storage: Int32 = 4
  /// Damaged, forged or unsupported repository data.
  public static let integrity: Int32 = 5
  /// There is no repository at the URL (restic's 10).
  public static let repositoryNotFound: Int32 = 10
  /// The repository is locked by another process (restic's 11).
  public static let locked: Int32 = 11
  /// The KMS/key cannot unwrap the repository's keys: the wrong key (restic's 12, wrong password).
  public static let wrongKey: Int32 = 12
  /// The KMS is unavailable, refused access or is misconfigured.
  public static let kms: Int32 = 13
  /// `gate`: the controller marked the gate failed (a pre hook failed with onError Abort, or it may not run hooks).
  public static let gateFailed: Int32 = 20
  /// `gate`: nothing marked the gate done or failed within its timeout.
  public static let gateTimeout: Int32 = 21

  /// Every code with its one-line meaning, in ascending order (for `--help` and the docs).
  public static let all: [(code: Int32, meaning: String)] = [
    (success, "ok"), (other, "other failure"), (usage, "usage error or no such snapshot"),
    (partial, "backup finished but some sources were unreadable (partial snapshot)"),
    (storage, "storage failure"), (integrity, "integrity failure (damaged, forged or unsupported data)"),
    (repositoryNotFound, "the repository does not exist"), (locked, "failed to lock the repository"),
    (wrongKey, "wrong key: the KMS/key cannot unwrap the repository's keys"),
    (kms, "KMS unavailable, refused access or misconfigured"),
    (gateFailed, "gate: the pre hooks failed (the backup must not run)"),
    (gateTimeout, "gate: the pre hooks were not marked done or failed in time"),
  ]
}

/// The engine's version: `botrt-engine version`, `--version` and the result's `engineVersion`.
public enum EngineVersion {
  public static let current = "0.1.0-dev"
}
