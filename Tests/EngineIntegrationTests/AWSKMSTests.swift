import Foundation
import Testing

@testable import BackupEngine

/// AWSKMSKeyService against moto's KMS (BOTRT_AWSKMS_ENDPOINT) with the contract's AWS credentials.
@Suite struct AWSKMSTests {
  static let policy = RetryPolicy(maxAttempts: 2, backoff: .init(base: .milliseconds(10)), requestTimeout: .seconds(10))

  func service(keyId: String, endpoint: String? = nil) throws -> AWSKMSKeyService {
    let ep = try endpoint ?? ServiceEnv.require("BOTRT_AWSKMS_ENDPOINT")
    _ = try ServiceEnv.require("AWS_ACCESS_KEY_ID")
    let url = try #require(URLComponents(string: "awskms://\(keyId)?region=us-east-1"))
    return try AWSKMSKeyService(
      url: url, options: KMSOptions(environment: ServiceEnv.all, endpoint: ep), policy: Self.policy)
  }

  /// Creates a key through the KMS API and returns its id.
  func newKey() async throws -> String {
    try await service(keyId: "bootstrap").createKey(description: "botrt integration test")
  }

  @Test func createWrapUnwrap() async throws {
    let keyId = try await newKey()
    let kms = try service(keyId: keyId)
    #expect(kms.descriptor == "awskms:///\(keyId)?region=us-east-1")
    let dataKey = Crypto.randomBytes(32)
    let wrapped = try await kms.wrap(dataKey, context: "botrt:data:database")
    #expect(!wrapped.ciphertext.isEmpty)
    #expect(wrapped.keyVersion?.contains(keyId) == true)
    #expect(try await kms.unwrap(wrapped, context: "botrt:data:database") == dataKey)
    // The encryption context is bound.
    await #expect(throws: KMSError.self) { _ = try await kms.unwrap(wrapped, context: "botrt:data:files") }
    // The factory builds it from the URL with the endpoint from the options.
    let viaFactory = try makeKeyService(
      url: "awskms://\(keyId)?region=us-east-1",
      options: KMSOptions(environment: ServiceEnv.all, endpoint: try ServiceEnv.require("BOTRT_AWSKMS_ENDPOINT")))
    #expect(try await viaFactory.unwrap(wrapped, context: "botrt:data:database") == dataKey)
  }

  @Test func keyFromAnotherKMSKeyDoesNotUnwrap() async throws {
    let a = try service(keyId: try await newKey())
    let b = try service(keyId: try await newKey())
    let wrapped = try await a.wrap(Crypto.randomBytes(32), context: "c")
    await #expect(throws: KMSError.self) { _ = try await b.unwrap(wrapped, context: "c") }
  }

  @Test func unknownKeyIsKeyNotFound() async throws {
    let kms = try service(keyId: UUID().uuidString.lowercased())
    do {
      _ = try await kms.wrap(Crypto.randomBytes(32), context: "c")
      Issue.record("an unknown key must fail")
    } catch KMSError.keyNotFound(_, let key) {
      #expect(key == kms.keyId)
    }
  }

  @Test func unreachableKMS() async throws {
    let kms = try service(keyId: "k", endpoint: "http://127.0.0.1:1")
    do {
      _ = try await kms.wrap(Crypto.randomBytes(32), context: "c")
      Issue.record("a closed port must be reported")
    } catch KMSError.unreachable(let k, let message) {
      #expect(k.contains("awskms:///k"))
      #expect(message.contains("127.0.0.1:1"))
    }
  }

  @Test func configurationErrors() throws {
    let noRegion = try #require(URLComponents(string: "awskms://k"))
    #expect(throws: KMSError.self) {
      _ = try AWSKMSKeyService(
        url: noRegion, options: KMSOptions(environment: ["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"]))
    }
    let arn = try #require(URLComponents(string: "awskms:///arn:aws:kms:eu-west-1:111122223333:key/abcd"))
    let s = try AWSKMSKeyService(
      url: arn, options: KMSOptions(environment: ["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"]))
    #expect(s.region == "eu-west-1")
    #expect(s.keyId == "arn:aws:kms:eu-west-1:111122223333:key/abcd")
  }
}
