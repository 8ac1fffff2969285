import DRAPI
import EngineContract
import Foundation
import KubeCore

/// A Secret of the policy's namespace that the engine's pod needs, and how the pod uses it.
public struct SecretUse: Sendable, Hashable {
  /// Name of the Secret in the policy's namespace.
  public var sourceName: String
  /// Spec field that references it (for error messages), e.g. "spec.repository.s3.credentialsSecretRef".
  public var field: String
  /// Keys the pod reads; a missing key makes the policy not Ready.
  public var requiredKeys: [String]

  public init(sourceName: String, field: String, requiredKeys: [String]) {
    self.sourceName = sourceName
    self.field = field
    self.requiredKeys = requiredKeys
  }
}

/// How a policy's engine runs: repository and KMS URLs, flags, environment and Secret mounts, computed without I/O.
///
/// Secret names here are the names *in the pod's namespace*: `secretName(_:)` maps a policy Secret to its copy.
public struct EngineInvocation: Sendable, Hashable {
  /// The engine's flags common to every command: repository and KMS URLs, endpoints, token files, lock wait.
  public var common: EngineCommonArguments
  /// Repository URL (`--repo`).
  public var repoURL: String { common.repo }
  /// KMS URL (`--kms`).
  public var kmsURL: String { common.kms }
  /// The common flags as the engine's arguments, after `--repo R --kms K`.
  public var commonFlags: [String] { Array(common.argv.dropFirst(4)) }
  /// How long a Job waits for a conflicting lock (`--retry-lock`): the engine's lock lifetime (600 s) and a minute.
  public static let retryLockSeconds: Int64 = 660
  /// Environment of the engine container (JSON EnvVar objects).
  public var env: [JSONValue]
  /// Volumes of the pod (Secret volumes and the local repository claim).
  public var volumes: [JSONValue]
  /// Volume mounts of the engine container.
  public var mounts: [JSONValue]
  /// Secrets of the policy's namespace the pod reads.
  public var secrets: [SecretUse]

  /// Where Secret volumes are mounted.
  public static let secretsRoot = "/var/run/botrt/secrets"

  /// Where the Secret of `spec.encryption.rotationKeysSecretRef` is mounted (one file per entry).
  public static let rotationKeysPath = "\(secretsRoot)/rotation-keys"
  /// The KMS URL of entry `key` of the mounted rotation keys Secret.
  public static func rotationKeyURL(_ key: String) -> String { "file://\(rotationKeysPath)/\(key)" }

  /// Computes the invocation. `secretName` maps a Secret name of the policy's namespace to the name the pod sees.
  /// `currentKey` is status.currentKey: the key a rotation moved the repository to (an AWS KMS key id, or an entry
  /// of the rotation keys Secret), used instead of the one spec names.
  /// The invocation of a policy's primary repository: the spec, the key a rotation moved it to (status.currentKey)
  /// and the repository's pinned identity (status.repositoryIdentity).
  public init(policy: BackupPolicy, secretName: (String) -> String) throws(SpecError) {
    try self.init(
      spec: policy.spec, currentKey: policy.status?.currentKey, identity: policy.status?.repositoryIdentity,
      secretName: secretName)
  }

  /// `identity` is the repository's recorded id and signing key (status.repositoryIdentity): passed to the engine
  /// as `--expect-repository-id` and `--expect-signing-key` when it belongs to the repository the spec names, left
  /// out otherwise (the spec moved the repository; the next run records the new one). An identity the spec states
  /// (`spec.repository.expectedIdentity`) is passed instead, whatever `identity` says; a malformed one throws.
  public init(
    spec: BackupPolicySpec, currentKey: String? = nil, identity: RepositoryIdentity? = nil,
    secretName: (String) -> String
  ) throws(SpecError) {
    // Every Job waits for a conflicting repository lock (a prune or key rotation of the same repository) instead of
    // failing at once; a little longer than a lock's lifetime, so the lock of a run killed mid-way expires first.
    var c = EngineCommonArguments(repo: "", kms: "", retryLockSeconds: Self.retryLockSeconds)
    let repoURL: String
    let kmsURL: String
    var env: [JSONValue] = []
    var volumes: [JSONValue] = []
    var mounts: [JSONValue] = []
    var secrets: [SecretUse] = []

    func envFromSecret(_ variable: String, _ secret: String, _ key: String, optional: Bool = false) -> JSONValue {
      var ref: [String: JSONValue] = ["name": .string(secretName(secret)), "key": .string(key)]
      if optional { ref["optional"] = true }
      return ["name": .string(variable), "valueFrom": ["secretKeyRef": .object(ref)]]
    }
    func mountSecret(_ volume: String, _ secret: String) -> String {
      let path = "\(Self.secretsRoot)/\(volume)"
      volumes.append(["name": .string(volume), "secret": ["secretName": .string(secretName(secret))]])
      mounts.append(["name": .string(volume), "mountPath": .string(path), "readOnly": true])
      return path
    }
    func prefixPath(_ p: String?) -> String {
      guard let p, !p.isEmpty else { return "" }
      return "/" + p.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
    }

    // Repository.
    let repo = try spec.repository.kind(at: "spec.repository")
    switch repo {
    case .s3(let s3):
      repoURL = "s3://\(s3.bucket)\(prefixPath(s3.prefix))"
      c.s3Endpoint = s3.endpoint
      c.s3Region = s3.region
      c.s3PathStyle = s3.forcePathStyle == true
      // spec.repository.s3.serverSideEncryption (once never passed to the engine).
      c.s3SSE = s3.serverSideEncryption?.mode.rawValue
      c.s3SSEKMSKeyId = s3.serverSideEncryption?.kmsKeyId
      let name = s3.credentialsSecretRef.name
      env.append(envFromSecret(EngineEnv.awsAccessKeyId, name, "AWS_ACCESS_KEY_ID"))
      env.append(envFromSecret(EngineEnv.awsSecretAccessKey, name, "AWS_SECRET_ACCESS_KEY"))
      env.append(envFromSecret(EngineEnv.awsSessionToken, name, "AWS_SESSION_TOKEN", optional: true))
      secrets.append(
        SecretUse(
          sourceName: name, field: "spec.repository.s3.credentialsSecretRef",
          requiredKeys: ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]))
    case .gcs(let gcs):
      repoURL = "gs://\(gcs.bucket)\(prefixPath(gcs.prefix))"
      if let e = gcs.endpoint { env.append(["name": .string(EngineEnv.gcsEndpoint), "value": .string(e)]) }
      if let ref = gcs.credentialsSecretRef {
        let key = ref.key ?? "service-account.json"
        let path = mountSecret("gcs-credentials", ref.name)
        env.append(["name": .string(EngineEnv.googleApplicationCredentials), "value": .string("\(path)/\(key)")])
        secrets.append(
          SecretUse(sourceName: ref.name, field: "spec.repository.gcs.credentialsSecretRef", requiredKeys: [key]))
      }
    case .azure(let az):
      repoURL = "azblob://\(az.account)/\(az.container)\(prefixPath(az.prefix))"
      // The engine's name for the Blob endpoint (the contract's constant; it was once set as BOTRT_AZURE_ENDPOINT,
      // which the engine never read).
      if let e = az.endpoint { env.append(["name": .string(EngineEnv.azureBlobEndpoint), "value": .string(e)]) }
      let key = "AZURE_STORAGE_KEY"
      env.append(envFromSecret(EngineEnv.azureStorageKey, az.credentialsSecretRef.name, key))
      secrets.append(
        SecretUse(
          sourceName: az.credentialsSecretRef.name, field: "spec.repository.azure.credentialsSecretRef",
          requiredKeys: [key]))
    case .local(let local):
      repoURL = "file://\(local.path)"
      if let claim = local.claimName {
        volumes.append(["name": "repository", "persistentVolumeClaim": ["claimName": .string(claim)]])
        mounts.append(["name": "repository", "mountPath": .string(local.path)])
      }
    }

    // Key service.
    let kms = try spec.encryption.kms.kind(at: "spec.encryption.kms")
    switch kms {
    case .vaultTransit(let v):
      guard let url = URLComponents(string: v.address), let scheme = url.scheme?.lowercased(),
        ["http", "https"].contains(scheme), let host = url.host, !host.isEmpty
      else {
        throw SpecError(
          field: "spec.encryption.kms.vaultTransit.address",
          message: "'\(v.address)' is not an http:// or https:// URL of a Vault server; use e.g. "
            + "https://vault.vault.svc:8200")
      }
      let port = url.port.map { ":\($0)" } ?? (scheme == "https" ? ":443" : ":80")
      let mount = (v.mount ?? "transit").trimmingCharacters(in: CharacterSet(charactersIn: "/"))
      kmsURL = "vault-transit://\(host)\(port)/\(mount)/\(v.key)" + (scheme == "https" ? "?tls=true" : "")
      let tokenKey = v.authSecretRef.key ?? "token"
      let tokenPath = mountSecret("vault-token", v.authSecretRef.name)
      c.vaultTokenFile = "\(tokenPath)/\(tokenKey)"
      secrets.append(
        SecretUse(
          sourceName: v.authSecretRef.name, field: "spec.encryption.kms.vaultTransit.authSecretRef",
          requiredKeys: [tokenKey]))
      if let ca = v.caSecretRef {
        let caKey = ca.key ?? "ca.crt"
        let caPath = mountSecret("vault-ca", ca.name)
        c.vaultCAFile = "\(caPath)/\(caKey)"
        secrets.append(
          SecretUse(sourceName: ca.name, field: "spec.encryption.kms.vaultTransit.caSecretRef", requiredKeys: [caKey]))
      }
    case .awsKms(let aws):
      var q: [String] = []
      if let r = aws.region { q.append("region=\(r)") }
      let keyId = currentKey ?? aws.keyId
      let keyPart = keyId.hasPrefix("arn:") || keyId.hasPrefix("alias/") ? "/\(keyId)" : keyId
      kmsURL = "awskms://\(keyPart)" + (q.isEmpty ? "" : "?" + q.joined(separator: "&"))
      c.kmsEndpoint = aws.endpoint
      if let ref = aws.credentialsSecretRef {
        // The engine reads one set of AWS credentials from its environment: an S3 repository's, when there is one.
        switch repo {
        case .s3(let s3):
          if s3.credentialsSecretRef.name != ref.name {
            throw SpecError(
              field: "spec.encryption.kms.awsKms.credentialsSecretRef",
              message: "names Secret '\(ref.name)' but the S3 repository uses '\(s3.credentialsSecretRef.name)'; "
                + "the engine reads one set of AWS credentials, so use the same Secret for both or leave this unset")
          }
        case .gcs, .azure, .local:
          env.append(envFromSecret(EngineEnv.awsAccessKeyId, ref.name, "AWS_ACCESS_KEY_ID"))
          env.append(envFromSecret(EngineEnv.awsSecretAccessKey, ref.name, "AWS_SECRET_ACCESS_KEY"))
          env.append(envFromSecret(EngineEnv.awsSessionToken, ref.name, "AWS_SESSION_TOKEN", optional: true))
          secrets.append(
            SecretUse(
              sourceName: ref.name, field: "spec.encryption.kms.awsKms.credentialsSecretRef",
              requiredKeys: ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]))
        }
      }
    case .localKey(let ref):
      var rotated: String? = nil
      if let rotation = spec.encryption.rotationKeysSecretRef {
        // New master keys for rotations; once a rotation used one, it replaces the spec's key.
        let path = mountSecret("rotation-keys", rotation.name)
        secrets.append(
          SecretUse(
            sourceName: rotation.name, field: "spec.encryption.rotationKeysSecretRef",
            requiredKeys: currentKey.map { [$0] } ?? []))
        if let currentKey { rotated = "file://\(path)/\(currentKey)" }
      }
      if let rotated {
        kmsURL = rotated
      } else {
        let key = ref.key ?? "key"
        let path = mountSecret("local-key", ref.name)
        kmsURL = "file://\(path)/\(key)"
        secrets.append(
          SecretUse(sourceName: ref.name, field: "spec.encryption.kms.localKeySecretRef", requiredKeys: [key]))
      }
    case .azureKeyVault(let az):
      let f = "spec.encryption.kms.azureKeyVault"
      guard let url = URLComponents(string: az.vaultURL), let scheme = url.scheme?.lowercased(),
        ["http", "https"].contains(scheme), let host = url.host, !host.isEmpty
      else {
        throw SpecError(
          field: "\(f).vaultURL",
          message: "'\(az.vaultURL)' is not the https:// URL of a vault; use e.g. "
            + "https://NAME.vault.azure.net")
      }
      kmsURL =
        "azurekv://\(host.lowercased())/keys/\(az.keyName)" + (az.keyVersion.map { $0.isEmpty ? "" : "/\($0)" } ?? "")
      // Another scheme or port than https://HOST (a private endpoint, tests): the engine calls the URL as given.
      if scheme != "https" || url.port != nil { c.kmsEndpoint = az.vaultURL }
      let name = az.credentialsSecretRef.name
      for v in [EngineEnv.azureTenantId, EngineEnv.azureClientId, EngineEnv.azureClientSecret] {
        env.append(envFromSecret(v, name, v))
      }
      if let a = az.authorityHost { env.append(["name": .string(EngineEnv.azureAuthorityHost), "value": .string(a)]) }
      secrets.append(
        SecretUse(
          sourceName: name, field: "\(f).credentialsSecretRef",
          requiredKeys: ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"]))
    case .gcpKms(let g):
      kmsURL = "gcpkms://\(g.keyName)"
      c.kmsEndpoint = g.endpoint
      if let ref = g.credentialsSecretRef {
        let key = ref.key ?? "service-account.json"
        let path = mountSecret("gcpkms-credentials", ref.name)
        env.append(["name": .string(EngineEnv.gcpKMSCredentialsFile), "value": .string("\(path)/\(key)")])
        secrets.append(
          SecretUse(sourceName: ref.name, field: "spec.encryption.kms.gcpKms.credentialsSecretRef", requiredKeys: [key])
        )
      }
    }

    if spec.encryption.rotationKeysSecretRef != nil, kms.rotationKeySource != .rotationKeysSecret {
      throw SpecError(
        field: "spec.encryption.rotationKeysSecretRef",
        message: "is only used with kms.localKeySecretRef (Vault Transit and AWS KMS make their new keys themselves); "
          + "remove it")
    }

    // Private CAs for every HTTPS connection (storage and key service): `--cacert`.
    if let ca = spec.caSecretRef {
      let key = ca.key ?? "ca.crt"
      let path = mountSecret("ca-bundle", ca.name)
      c.caCertFile = "\(path)/\(key)"
      secrets.append(SecretUse(sourceName: ca.name, field: "spec.caSecretRef", requiredKeys: [key]))
    }

    // Secrets referenced by the dump command's environment.
    for choice in spec.source.setChoices {
      switch choice {
      case .pvc, .claims, .objects: break
      case .command(let command):
        for (i, e) in (command.env ?? []).enumerated() {
          if let ref = e.valueFrom?.secretKeyRef {
            secrets.append(
              SecretUse(
                sourceName: ref.name, field: "spec.source.command.env[\(i)].valueFrom.secretKeyRef",
                requiredKeys: [ref.key]))
          }
        }
      }
    }

    c.repo = repoURL
    c.kms = kmsURL
    if let stated = spec.repository.expectedIdentity {
      // The admin's statement (spec.repository.expectedIdentity) wins over the identity recorded in status: it holds
      // from the first Job on, on a restore-only policy too, and whatever a status lost or re-learned says.
      if let e = stated.errors(at: "spec.repository.expectedIdentity").first { throw e }
      c.expectedRepositoryID = stated.repositoryId
      c.expectedSigningKey = stated.signingKey
    } else if let identity, EngineRepositoryURL.same(identity.repository, repoURL),
      EngineRepositoryURL.validPins(id: identity.id, signingKey: identity.signingKey)
    {
      c.expectedRepositoryID = identity.id
      c.expectedSigningKey = identity.signingKey
    }
    self.common = c
    self.env = env
    self.volumes = volumes
    self.mounts = mounts
    // One entry per Secret, keys merged, in first-use order.
    var merged: [SecretUse] = []
    for s in secrets {
      if let i = merged.firstIndex(where: { $0.sourceName == s.sourceName }) {
        for k in s.requiredKeys where !merged[i].requiredKeys.contains(k) { merged[i].requiredKeys.append(k) }
      } else {
        merged.append(s)
      }
    }
    self.secrets = merged
  }

  /// The engine's retention rules for a retention spec (maxAge parsed with the shared duration grammar; an
  /// unparsable maxAge, which validation rejects, is left out rather than passed on).
  public static func retention(_ r: RetentionSpec) -> EngineRetention {
    var maxAge: Int64? = nil
    if let a = r.maxAge {
      do { maxAge = try EngineDuration.parseSeconds(a) } catch { maxAge = nil }
    }
    return EngineRetention(
      keepLast: r.keepLast.map(Int64.init), keepHourly: r.keepHourly.map(Int64.init),
      keepDaily: r.keepDaily.map(Int64.init), keepWeekly: r.keepWeekly.map(Int64.init),
      keepMonthly: r.keepMonthly.map(Int64.init), keepYearly: r.keepYearly.map(Int64.init), maxAgeSeconds: maxAge)
  }

  /// The `forget --prune` flags for a retention spec.
  public static func retentionFlags(_ r: RetentionSpec) -> [String] {
    retention(r).argv + [EngineFlag.long(EngineFlag.prune)]
  }

  /// The hosts and ports the engine connects to for storage (nil host = any destination on that port).
  public static func storageEndpoints(_ repo: RepositorySpec, kms: KMSSpec) -> [(host: String?, port: Int)] {
    var out: [(String?, Int)] = []
    func add(_ endpoint: String?, defaultPort: Int = 443) {
      guard let endpoint, let c = URLComponents(string: endpoint), let host = c.host, !host.isEmpty else {
        out.append((nil, defaultPort))
        return
      }
      let port = c.port ?? (c.scheme?.lowercased() == "http" ? 80 : 443)
      out.append((host, port))
    }
    for choice in repo.setChoices {
      switch choice {
      case .s3(let s3): add(s3.endpoint)
      case .gcs(let gcs): add(gcs.endpoint)
      case .azure(let az): add(az.endpoint)
      case .local: break
      }
    }
    for choice in kms.setChoices {
      switch choice {
      case .awsKms(let aws): add(aws.endpoint)
      // Azure Key Vault and its token endpoint (Microsoft Entra); Google Cloud KMS and its token endpoint (port 443).
      case .azureKeyVault(let az):
        add(az.vaultURL)
        add(az.authorityHost)
      case .gcpKms(let g):
        add(g.endpoint)
        add(nil)
      // Vault's address is its own egress kind (NetworkIsolation); a local key needs no connection.
      case .vaultTransit, .localKey: break
      }
    }
    var seen = Set<String>()
    return out.filter { seen.insert("\($0.0 ?? "*"):\($0.1)").inserted }
  }
}

/// Quotes a word for a POSIX shell (single quotes; embedded single quotes closed and escaped).
public func shellQuote(_ word: String) -> String {
  let safe = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%")
  if !word.isEmpty, word.unicodeScalars.allSatisfy({ safe.contains($0) }) { return word }
  return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
