import CurlHTTP
import Foundation
import Testing

@testable import BackupEngine

/// VaultTransitKeyService against the real OpenBao dev servers (VAULT_ADDR with VAULT_TOKEN, and the TLS one at
/// BOTRT_VAULT_TLS_ADDR with the CA file BOTRT_VAULT_CACERT).
@Suite struct VaultTransitTests {
  /// host:port of a Vault address.
  static func authority(_ addr: String) throws -> String {
    guard let c = URLComponents(string: addr), let h = c.host, let p = c.port else {
      throw BackendTestError("\(addr) must look like http://127.0.0.1:8200")
    }
    return "\(h):\(p)"
  }

  /// Creates a fresh Transit key with the root token through the HTTP API, so rotation does not disturb other tests.
  static func createKey(addr: String, token: String, caFile: String? = nil) async throws -> String {
    let name = "botrt-it-\(UUID().uuidString.prefix(8).lowercased())"
    let r = try await CurlClient().send(
      HTTPRequest(
        method: "POST", url: "\(addr)/v1/transit/keys/\(name)", headers: [("X-Vault-Token", token)],
        body: Data("{}".utf8),
        tls: TLSOptions(caFile: caFile)))
    guard r.status / 100 == 2 else { throw BackendTestError("creating transit key \(name) answered \(r.status)") }
    return name
  }

  static func rotate(addr: String, token: String, key: String) async throws {
    let r = try await CurlClient().send(
      HTTPRequest(
        method: "POST", url: "\(addr)/v1/transit/keys/\(key)/rotate", headers: [("X-Vault-Token", token)], body: Data())
    )
    guard r.status / 100 == 2 else { throw BackendTestError("rotating \(key) answered \(r.status)") }
  }

  func service(key: String, token: String? = nil, addr: String? = nil, query: String = "", caFile: String? = nil) throws
    -> VaultTransitKeyService
  {
    let a = try addr ?? ServiceEnv.require("VAULT_ADDR")
    var env = ServiceEnv.all
    env["VAULT_TOKEN"] = try token ?? ServiceEnv.require("VAULT_TOKEN")
    let url = try #require(URLComponents(string: "vault-transit://\(try Self.authority(a))/transit/\(key)\(query)"))
    return try VaultTransitKeyService(
      url: url, options: KMSOptions(environment: env, caFile: caFile),
      policy: RetryPolicy(maxAttempts: 2, backoff: .init(base: .milliseconds(10)), requestTimeout: .seconds(10)))
  }

  @Test func wrapUnwrapRoundTrip() async throws {
    let addr = try ServiceEnv.require("VAULT_ADDR")
    let token = try ServiceEnv.require("VAULT_TOKEN")
    let key = try await Self.createKey(addr: addr, token: token)
    let kms = try service(key: key)
    let dataKey = Crypto.randomBytes(32)
    let wrapped = try await kms.wrap(dataKey, context: "botrt:data:files")
    #expect(wrapped.ciphertext.hasPrefix("vault:v1:"))
    #expect(wrapped.keyVersion == "1")
    #expect(wrapped.kms == "vault-transit://\(try Self.authority(addr))/transit/\(key)")
    #expect(!wrapped.ciphertext.contains(Data(dataKey).base64EncodedString()))
    #expect(try await kms.unwrap(wrapped, context: "botrt:data:files") == dataKey)
    // The context is bound: another purpose cannot unwrap it.
    await #expect(throws: KMSError.self) { _ = try await kms.unwrap(wrapped, context: "botrt:data:database") }
    // The factory builds the same service from the URL.
    let viaFactory = try makeKeyService(
      url: "vault-transit://\(try Self.authority(addr))/transit/\(key)",
      options: KMSOptions(environment: ServiceEnv.all))
    #expect(try await viaFactory.unwrap(wrapped, context: "botrt:data:files") == dataKey)
  }

  @Test func rotateThenUnwrapOldAndRewrap() async throws {
    let addr = try ServiceEnv.require("VAULT_ADDR")
    let token = try ServiceEnv.require("VAULT_TOKEN")
    let key = try await Self.createKey(addr: addr, token: token)
    let kms = try service(key: key)
    let dataKey = Crypto.randomBytes(32)
    let old = try await kms.wrap(dataKey, context: "botrt:data:logs")
    try await Self.rotate(addr: addr, token: token, key: key)
    #expect(try await kms.unwrap(old, context: "botrt:data:logs") == dataKey)
    let rewrapped = try await kms.rewrap(old)
    #expect(rewrapped.keyVersion == "2")
    #expect(rewrapped.ciphertext.hasPrefix("vault:v2:"))
    #expect(try await kms.unwrap(rewrapped, context: "botrt:data:logs") == dataKey)
    let fresh = try await kms.wrap(dataKey, context: "botrt:data:logs")
    #expect(fresh.keyVersion == "2")
  }

  @Test func tlsWithCAFile() async throws {
    let addr = try ServiceEnv.require("BOTRT_VAULT_TLS_ADDR")
    let ca = try ServiceEnv.require("BOTRT_VAULT_CACERT")
    let kms = try service(key: "botrt-test", addr: addr, caFile: ca)
    #expect(kms.descriptor.hasSuffix("?tls=true"))
    let dataKey = Crypto.randomBytes(32)
    let wrapped = try await kms.wrap(dataKey, context: "botrt:data:files")
    #expect(try await kms.unwrap(wrapped, context: "botrt:data:files") == dataKey)
    // Without the CA the dev server's certificate is not trusted: a clear error, not a hang.
    let untrusted = try service(key: "botrt-test", addr: addr, query: "?tls=true")
    do {
      _ = try await untrusted.wrap(dataKey, context: "x")
      Issue.record("an untrusted certificate must fail")
    } catch KMSError.unreachable(_, let message) {
      #expect(message.contains("TLS") || message.contains("certificate"))
    }
  }

  @Test func wrongTokenIsAccessDeniedWithoutTheToken() async throws {
    let secret = "s.wrong-\(UUID().uuidString)"
    let kms = try service(key: "botrt-test", token: secret)
    #expect(!String(reflecting: kms).contains(secret))
    do {
      _ = try await kms.wrap(Crypto.randomBytes(32), context: "botrt:data:files")
      Issue.record("a wrong token must be refused")
    } catch let e as KMSError {
      guard case .accessDenied = e else {
        Issue.record("expected accessDenied, got \(e)")
        return
      }
      #expect(!e.description.contains(secret))
      #expect(e.description.contains("botrt-test"))
    }
  }

  @Test func missingKeyAndMissingToken() async throws {
    let kms = try service(key: "no-such-key-\(UUID().uuidString.prefix(6))")
    do {
      _ = try await kms.unwrap(WrappedKey(kms: kms.descriptor, ciphertext: "vault:v1:AAAA"), context: "x")
      Issue.record("a missing Transit key must fail")
    } catch KMSError.keyNotFound(_, let key) {
      #expect(key.hasPrefix("no-such-key-"))
    }
    let url = try #require(URLComponents(string: "vault-transit://127.0.0.1:8200/transit/k"))
    #expect(throws: KMSError.self) { _ = try VaultTransitKeyService(url: url, options: KMSOptions(environment: [:])) }
  }

  @Test func unreachableVault() async throws {
    let kms = try service(key: "k", token: "root", addr: "http://127.0.0.1:1")
    do {
      _ = try await kms.wrap(Crypto.randomBytes(32), context: "x")
      Issue.record("a closed port must be reported")
    } catch KMSError.unreachable(let k, _) {
      #expect(k == "vault-transit://127.0.0.1:1/transit/k")
    }
  }
}
