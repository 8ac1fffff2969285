import Foundation
import Testing

@testable import BackupEngine

/// Azure Key Vault and Google Cloud KMS key services against a local server implementing their documented REST
/// formats (there is no emulator), and the CLI rotating keys between kinds.
@Suite(.serialized) struct CloudKMSTests {
  static let gcpKey = "projects/p1/locations/europe-west1/keyRings/ring/cryptoKeys/botrt"

  func azure(_ s: CloudKMSServer, key: String = "botrt", token: String? = nil) throws -> AzureKeyVaultKeyService {
    try AzureKeyVaultKeyService(
      url: try #require(URLComponents(string: "azurekv://myvault.vault.azure.net/keys/\(key)")),
      options: KMSOptions(environment: ["AZURE_ACCESS_TOKEN": token ?? s.token], endpoint: s.url),
      policy: RetryPolicy(maxAttempts: 1))
  }

  func gcp(_ s: CloudKMSServer, key: String = gcpKey, token: String? = nil) throws -> GCPKMSKeyService {
    try GCPKMSKeyService(
      url: try #require(URLComponents(string: "gcpkms://\(key)")),
      options: KMSOptions(environment: ["GOOGLE_OAUTH_ACCESS_TOKEN": token ?? s.token], endpoint: s.url),
      policy: RetryPolicy(maxAttempts: 1))
  }

  @Test func azureWrapUnwrapFollowsTheDocumentedFormat() async throws {
    let s = try CloudKMSServer()
    defer { s.stop() }
    try s.rotateAzureKey("botrt")
    let kv = try azure(s)
    #expect(kv.descriptor == "azurekv://myvault.vault.azure.net/keys/botrt")
    let key = Crypto.randomBytes(32)
    let w = try await kv.wrap(key, context: "botrt:repo:files")
    let v1 = try #require(w.keyVersion)
    #expect(v1.count == 32)
    #expect(try await kv.unwrap(w, context: "botrt:repo:files") == key)
    // The requests: documented paths, api-version, bearer token, JSON body with alg and a base64url value.
    let reqs = try s.requests().filter { ($0["path"] as? String)?.hasSuffix("key") == true }
    #expect(reqs.count == 2)
    #expect(reqs[0]["path"] as? String == "/keys/botrt/wrapkey")
    #expect(reqs[1]["path"] as? String == "/keys/botrt/\(v1)/unwrapkey")
    for r in reqs {
      #expect(r["query"] as? String == "api-version=7.4")
      let h = try #require(r["headers"] as? [String: String])
      #expect(h["authorization"] == "Bearer \(s.token)")
      #expect(h["content-type"] == "application/json")
      let bodyText = try #require(r["body"] as? String)
      let body = try #require(try JSONSerialization.jsonObject(with: Data(bodyText.utf8)) as? [String: String])
      #expect(body["alg"] == "RSA-OAEP-256")
      let value = try #require(body["value"])
      #expect(!value.contains("=") && !value.contains("+") && !value.contains("/"))
    }
    // RSA-2048 ciphertext: 256 bytes.
    #expect(Base64URL.decode(w.ciphertext)?.count == 256)
    // Another context is refused (the context travels inside the wrapped value).
    await #expect(throws: KMSError.self) { _ = try await kv.unwrap(w, context: "botrt:repo:logs") }
    // After the vault key is rotated, new wraps use the new version and old ones still unwrap with theirs.
    try s.rotateAzureKey("botrt")
    let w2 = try await kv.wrap(key, context: "c")
    #expect(w2.keyVersion != v1)
    #expect(try await kv.unwrap(w, context: "botrt:repo:files") == key)
    #expect(try await kv.unwrap(w2, context: "c") == key)
  }

  /// `rotate-keys --new-kek` for Azure Key Vault: the service makes a new key version, which later wraps use.
  @Test func azureRotateKEKMakesANewVersion() async throws {
    let s = try CloudKMSServer()
    defer { s.stop() }
    try s.rotateAzureKey("botrt")
    let kv = try azure(s)
    let key = Crypto.randomBytes(32)
    let w1 = try await kv.wrap(key, context: "c")
    let v2 = try await kv.rotateKEK()
    #expect(v2 != w1.keyVersion)
    let w2 = try await kv.wrap(key, context: "c")
    #expect(w2.keyVersion == v2)
    #expect(try await kv.unwrap(w1, context: "c") == key)
    let rotate = try s.requests().filter { ($0["path"] as? String) == "/keys/botrt/rotate" }
    #expect(rotate.count == 2 && rotate.allSatisfy { $0["query"] as? String == "api-version=7.4" })
  }

  @Test func azureErrorsAreTypedAndNeverCarryTheToken() async throws {
    let s = try CloudKMSServer()
    defer { s.stop() }
    try s.rotateAzureKey("botrt")
    let secret = "stolen-" + Hex.encode(Crypto.randomBytes(8))
    do {
      _ = try await azure(s, token: secret).wrap(Crypto.randomBytes(32), context: "c")
      Issue.record("a wrong token was accepted")
    } catch let e as KMSError {
      guard case .accessDenied = e else { throw e }
      #expect(!"\(e)".contains(secret), "\(e)")
      #expect("\(e)".contains("Unauthorized"))
    }
    await #expect {
      _ = try await azure(s, key: "nokey").wrap(Crypto.randomBytes(32), context: "c")
    } throws: { e in
      if case KMSError.keyNotFound = e { return true }
      return false
    }
    let kv = try azure(s)
    var w = try await kv.wrap(Crypto.randomBytes(32), context: "c")
    var ct = try #require(Base64URL.decode(w.ciphertext))
    ct[10] ^= 1
    w.ciphertext = Base64URL.encode(ct)
    await #expect {
      _ = try await kv.unwrap(w, context: "c")
    } throws: { e in
      if case KMSError.unwrapFailed = e { return true }
      return false
    }
    // Unreachable: the error names the vault, not the token.
    let dead = try AzureKeyVaultKeyService(
      url: try #require(URLComponents(string: "azurekv://myvault.vault.azure.net/keys/botrt")),
      options: KMSOptions(environment: ["AZURE_ACCESS_TOKEN": secret], endpoint: "http://127.0.0.1:9"),
      policy: RetryPolicy(maxAttempts: 1))
    do {
      _ = try await dead.wrap(Crypto.randomBytes(32), context: "c")
      Issue.record("an unreachable vault answered")
    } catch let e as KMSError {
      guard case .unreachable = e else { throw e }
      #expect(!"\(e)".contains(secret))
    }
    // Bad URLs and a missing token are configuration errors.
    for bad in ["azurekv://v.vault.azure.net/secrets/x", "azurekv://v.vault.azure.net/keys", "azurekv:///keys/x"] {
      #expect(throws: KMSError.self) {
        _ = try AzureKeyVaultKeyService(
          url: try #require(URLComponents(string: bad)), options: KMSOptions(environment: ["AZURE_ACCESS_TOKEN": "t"]))
      }
    }
    #expect(throws: KMSError.self) {
      _ = try AzureKeyVaultKeyService(
        url: try #require(URLComponents(string: "azurekv://v.vault.azure.net/keys/x")),
        options: KMSOptions(environment: [:]))
    }
  }

  /// Google Cloud KMS rotation: `cryptoKeyVersions.create`, then `updatePrimaryVersion`; later wraps use the new
  /// version, old wraps still decrypt until their version is disabled, and then only a re-wrap keeps the data readable.
  @Test func gcpRotateKEKMakesANewPrimaryVersion() async throws {
    let s = try CloudKMSServer()
    defer { s.stop() }
    let kms = try gcp(s)
    let key = Crypto.randomBytes(32)
    let w1 = try await kms.wrap(key, context: "c")
    #expect(w1.keyVersion == "1")
    let v2 = try await kms.rotateKEK()
    #expect(v2 == "2")
    let reqs = try s.requests().map { "\($0["method"] as? String ?? "") \($0["path"] as? String ?? "")" }
    #expect(
      Array(reqs.suffix(2)) == [
        "POST /v1/\(Self.gcpKey)/cryptoKeyVersions", "POST /v1/\(Self.gcpKey):updatePrimaryVersion",
      ])
    let primaryBody = try #require(try s.requests().last?["body"] as? String)
    #expect(primaryBody.contains(#""cryptoKeyVersionId":"2""#), "\(primaryBody)")
    let w2 = try await kms.wrap(key, context: "c")
    #expect(w2.keyVersion == "2")
    #expect(try await kms.unwrap(w1, context: "c") == key)
    try s.disableGCPKeyVersion(Self.gcpKey, 1)
    await #expect(throws: KMSError.self) { _ = try await kms.unwrap(w1, context: "c") }
    #expect(try await kms.unwrap(w2, context: "c") == key)
  }

  /// A disabled Azure key version refuses unwrap (403, KeyDisabled); the other versions still work.
  @Test func azureDisabledVersionRefusesUnwrap() async throws {
    let s = try CloudKMSServer()
    defer { s.stop() }
    try s.rotateAzureKey("botrt")
    let kv = try azure(s)
    let key = Crypto.randomBytes(32)
    let w1 = try await kv.wrap(key, context: "c")
    let v2 = try await kv.rotateKEK()
    let w2 = try await kv.wrap(key, context: "c")
    #expect(w2.keyVersion == v2)
    try s.disableAzureKeyVersion("botrt", try #require(w1.keyVersion))
    await #expect(throws: KMSError.self) { _ = try await kv.unwrap(w1, context: "c") }
    #expect(try await kv.unwrap(w2, context: "c") == key)
  }

  @Test func gcpEncryptDecryptFollowsTheDocumentedFormat() async throws {
    let s = try CloudKMSServer()
    defer { s.stop() }
    let kms = try gcp(s)
    #expect(kms.descriptor == "gcpkms://\(Self.gcpKey)")
    let key = Crypto.randomBytes(32)
    let w = try await kms.wrap(key, context: "botrt:r:meta")
    #expect(w.keyVersion == "1")
    #expect(try await kms.unwrap(w, context: "botrt:r:meta") == key)
    let reqs = try s.requests()
    #expect(reqs.map { $0["path"] as? String } == ["/v1/\(Self.gcpKey):encrypt", "/v1/\(Self.gcpKey):decrypt"])
    let encText = try #require(reqs[0]["body"] as? String)
    let enc = try #require(try JSONSerialization.jsonObject(with: Data(encText.utf8)) as? [String: String])
    #expect(enc["plaintext"].flatMap { Data(base64Encoded: $0) } == Data(key))
    #expect(enc["additionalAuthenticatedData"].flatMap { Data(base64Encoded: $0) } == Data("botrt:r:meta".utf8))
    #expect((reqs[0]["headers"] as? [String: String])?["authorization"] == "Bearer \(s.token)")
    // The context is the AAD: another context does not decrypt.
    await #expect {
      _ = try await kms.unwrap(w, context: "botrt:r:files")
    } throws: { e in
      if case KMSError.unwrapFailed = e { return true }
      return false
    }
    let secret = "stolen-" + Hex.encode(Crypto.randomBytes(8))
    do {
      _ = try await gcp(s, token: secret).wrap(key, context: "c")
      Issue.record("a wrong token was accepted")
    } catch let e as KMSError {
      guard case .accessDenied = e else { throw e }
      #expect(!"\(e)".contains(secret), "\(e)")
      #expect("\(e)".contains("UNAUTHENTICATED"))
    }
    await #expect {
      _ = try await gcp(s, key: "projects/p1/locations/l/keyRings/r/cryptoKeys/missing").wrap(key, context: "c")
    } throws: { e in
      if case KMSError.keyNotFound = e { return true }
      return false
    }
    for bad in ["gcpkms://projects/p/locations/l/keyRings/r", "gcpkms://projects/p/keyRings/r/cryptoKeys/k/x/y"] {
      #expect(throws: KMSError.self) {
        _ = try GCPKMSKeyService(
          url: try #require(URLComponents(string: bad)),
          options: KMSOptions(environment: ["GOOGLE_OAUTH_ACCESS_TOKEN": "t"]))
      }
    }
  }

  @Test func azureClientCredentialsAreExchangedForATokenOnce() async throws {
    let s = try CloudKMSServer()
    defer { s.stop() }
    try s.rotateAzureKey("botrt")
    func service(secret: String) throws -> AzureKeyVaultKeyService {
      try AzureKeyVaultKeyService(
        url: try #require(URLComponents(string: "azurekv://myvault.vault.azure.net/keys/botrt")),
        options: KMSOptions(
          environment: [
            "AZURE_TENANT_ID": "tenant-1", "AZURE_CLIENT_ID": "botrt-client", "AZURE_CLIENT_SECRET": secret,
            "AZURE_AUTHORITY_HOST": s.url,
          ], endpoint: s.url), policy: RetryPolicy(maxAttempts: 1))
    }
    let kv = try service(secret: s.clientSecret)
    let key = Crypto.randomBytes(32)
    let w = try await kv.wrap(key, context: "c")
    #expect(try await kv.unwrap(w, context: "c") == key)
    let tokenCalls = try s.requests().filter { $0["path"] as? String == "/tenant-1/oauth2/v2.0/token" }
    #expect(tokenCalls.count == 1)
    #expect((tokenCalls.first?["headers"] as? [String: String])?["content-type"] == "application/x-www-form-urlencoded")
    // A wrong secret: access denied, naming the grant error but never the secret (the server echoes it).
    let wrong = "wrong-" + Hex.encode(Crypto.randomBytes(8))
    do {
      _ = try await service(secret: wrong).wrap(key, context: "c")
      Issue.record("a wrong client secret was accepted")
    } catch let e as KMSError {
      guard case .accessDenied = e else { throw e }
      #expect("\(e)".contains("invalid_client"))
      #expect(!"\(e)".contains(wrong), "\(e)")
    }
  }

  @Test func gcpServiceAccountKeyIsExchangedForATokenOnce() async throws {
    let s = try CloudKMSServer()
    defer { s.stop() }
    let kms = try GCPKMSKeyService(
      url: try #require(URLComponents(string: "gcpkms://\(Self.gcpKey)")),
      options: KMSOptions(environment: ["BOTRT_GCPKMS_CREDENTIALS_FILE": s.serviceAccountPath], endpoint: s.url),
      policy: RetryPolicy(maxAttempts: 1))
    let key = Crypto.randomBytes(32)
    let w = try await kms.wrap(key, context: "c")
    #expect(try await kms.unwrap(w, context: "c") == key)
    #expect(try s.requests().filter { $0["path"] as? String == "/token" }.count == 1)
    // A key file that is not a service-account key is a configuration error naming the file.
    let bad = s.dir + "/bad.json"
    try Data(#"{"type":"authorized_user"}"#.utf8).write(to: URL(fileURLWithPath: bad))
    #expect {
      _ = try GCPKMSKeyService(
        url: try #require(URLComponents(string: "gcpkms://\(Self.gcpKey)")),
        options: KMSOptions(environment: ["GOOGLE_APPLICATION_CREDENTIALS": bad]))
    } throws: { e in
      guard case KMSError.invalidConfiguration(let m) = e else { return false }
      return m.contains(bad)
    }
    // A key the token endpoint does not know (another service account's key): access denied.
    var sa = try #require(
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: s.serviceAccountPath)))
        as? [String: Any])
    sa["client_email"] = "intruder@p1.iam.gserviceaccount.com"
    let other = s.dir + "/other.json"
    try JSONSerialization.data(withJSONObject: sa).write(to: URL(fileURLWithPath: other))
    await #expect {
      _ = try await GCPKMSKeyService(
        url: try #require(URLComponents(string: "gcpkms://\(Self.gcpKey)")),
        options: KMSOptions(environment: ["BOTRT_GCPKMS_CREDENTIALS_FILE": other], endpoint: s.url),
        policy: RetryPolicy(maxAttempts: 1)
      ).wrap(key, context: "c")
    } throws: { e in
      if case KMSError.accessDenied(_, let m) = e { return m.contains("invalid_grant") }
      return false
    }
  }

  /// The CLI: a repository on an Azure Key Vault key, rotated to Google Cloud KMS, then to a local key; the data
  /// stays readable, each old KEK is no longer needed, and results count unwraps per KMS without the token.
  @Test func cliRotatesBetweenKinds() async throws {
    let s = try CloudKMSServer()
    defer { s.stop() }
    try s.rotateAzureKey("repo-kek")
    let sh = try EngineShell()
    defer { sh.cleanup() }
    let payload = sampleData(1 << 20)
    try sh.write("src/a.bin", payload)
    try sh.write("token", Data((s.token + "\n").utf8))
    try sh.write("kek", Data(Crypto.randomBytes(32)))
    let azureKMS = "azurekv://myvault.vault.azure.net/keys/repo-kek"
    let gcpKMS = "gcpkms://\(Self.gcpKey)"
    let localKMS = "file://\(sh.dir)/kek"
    // The Azure token from a file (--kms-token-file), the Google one from the environment.
    let env = [
      "BOTRT_REPO": "file://\(sh.dir)/repo", "BOTRT_AZUREKV_ENDPOINT": s.url, "BOTRT_GCPKMS_ENDPOINT": s.url,
      "GOOGLE_OAUTH_ACCESS_TOKEN": s.token, "AZURE_ACCESS_TOKEN": "", "AZURE_ACCESS_TOKEN_FILE": "",
    ]
    func result(_ r: EngineShell.Result) throws -> [String: Any] {
      let line = try #require(r.stdout.split(separator: "\n").last, "no result line: \(r.stderr)")
      return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }
    try sh.ok("\"$ENGINE\" init --quiet --json --kms '\(azureKMS)' --kms-token-file token", env: env)
    var r = try sh.ok("\"$ENGINE\" backup --quiet --json --kms '\(azureKMS)' --kms-token-file token src", env: env)
    let unwraps = try #require(try result(r)["keyUnwraps"] as? [[String: Any]])
    #expect(unwraps.count == 1)
    #expect(unwraps.first?["key"] as? String == azureKMS)
    #expect(unwraps.first?["count"] as? Int == 5)
    #expect(!(r.stdout + r.stderr).contains(s.token))
    // Azure -> Google Cloud KMS (the old key's token from the file, the new key's from the environment).
    r = try sh.ok(
      "\"$ENGINE\" rotate-keys --quiet --json --kms '\(azureKMS)' --kms-token-file token --new-kms '\(gcpKMS)'",
      env: env)
    #expect(try result(r)["keyWraps"] as? Int == 7)
    try sh.ok("\"$ENGINE\" restore --quiet --json latest --target out1 --kms '\(gcpKMS)'", env: env)
    #expect(try sh.read("out1/src/a.bin") == payload)
    // The Azure key no longer opens the repository: its key file is gone (exit code 13: the key service refuses).
    r = try sh.run("\"$ENGINE\" snapshots --quiet --json --kms '\(azureKMS)' --kms-token-file token", env: env)
    #expect(r.code == 13, "\(r.stderr)")
    #expect(!(r.stdout + r.stderr).contains(s.token))
    // The failed attempt is still accounted for: one unwrap call through the Azure key.
    let failed = try #require(try result(r)["keyUnwraps"] as? [[String: Any]])
    #expect(failed.count == 1 && failed.first?["key"] as? String == azureKMS && failed.first?["count"] as? Int == 1)
    // Google Cloud KMS -> a local key; verify --read-data needs only the local key.
    r = try sh.ok("\"$ENGINE\" rotate-keys --quiet --json --kms '\(gcpKMS)' --new-kms '\(localKMS)'", env: env)
    let rotUnwraps = try #require(try result(r)["keyUnwraps"] as? [[String: Any]])
    #expect(Set(rotUnwraps.compactMap { $0["key"] as? String }) == [gcpKMS, localKMS])
    try sh.ok("\"$ENGINE\" verify --quiet --json --all --read-data --kms '\(localKMS)'", env: env)
    r = try sh.run("\"$ENGINE\" snapshots --quiet --json --kms '\(gcpKMS)'", env: env)
    #expect(r.code == 12, "\(r.stderr)")
    // The audit trail has one line per unwrap, naming the KMS, and never the token.
    let auditDir = sh.dir + "/repo/audit"
    let audit = try FileManager.default.contentsOfDirectory(atPath: auditDir).map {
      try String(contentsOfFile: auditDir + "/" + $0, encoding: .utf8)
    }.joined()
    #expect(audit.contains("\"action\":\"unwrapped\""))
    #expect(audit.contains(gcpKMS) && audit.contains(azureKMS))
    #expect(!audit.contains(s.token))
  }
}
