import Foundation
import Testing

@testable import BackupEngine

/// Offline checks of the Vault Transit client: URL parsing, TLS choice, the context envelope, key versions.
@Suite struct VaultTransitUnitTests {
  let env = ["VAULT_TOKEN": "s.unit-test-token"]

  func make(_ url: String, caFile: String? = nil) throws -> VaultTransitKeyService {
    try VaultTransitKeyService(
      url: try #require(URLComponents(string: url)), options: KMSOptions(environment: env, caFile: caFile))
  }

  @Test func urlParsingAndTLSChoice() throws {
    let plain = try make("vault-transit://127.0.0.1:8200/transit/backup")
    #expect(plain.mount == "transit")
    #expect(plain.keyName == "backup")
    #expect(plain.base == "http://127.0.0.1:8200/v1")
    #expect(plain.descriptor == "vault-transit://127.0.0.1:8200/transit/backup")
    let nested = try make("vault-transit://vault:8200/team/a/transit/k?tls=true")
    #expect(nested.mount == "team/a/transit")
    #expect(nested.base == "https://vault:8200/v1")
    #expect(nested.descriptor.hasSuffix("?tls=true"))
    let withCA = try make("vault-transit://vault:8200/transit/k", caFile: "/etc/ca.pem")
    #expect(withCA.base.hasPrefix("https://"))
    #expect(withCA.tls.caFile == "/etc/ca.pem")
    let forcedPlain = try make("vault-transit://vault:8200/transit/k?tls=false", caFile: "/etc/ca.pem")
    #expect(forcedPlain.base.hasPrefix("http://"))
    #expect(throws: KMSError.self) { _ = try make("vault-transit://vault:8200/onlykey") }
    #expect(!String(reflecting: plain).contains("s.unit-test-token"))
  }

  /// VAULT_ADDR gives the server of a URL without a host, as the vault CLI reads it; a host in the URL wins.
  @Test func vaultAddrForAURLWithoutAHost() throws {
    func make(_ url: String, _ extra: [String: String], caFile: String? = nil) throws -> VaultTransitKeyService {
      try VaultTransitKeyService(
        url: try #require(URLComponents(string: url)),
        options: KMSOptions(environment: env.merging(extra) { $1 }, caFile: caFile))
    }
    let https = try make("vault-transit:///transit/k", ["VAULT_ADDR": "https://vault.example:8200"])
    #expect(https.base == "https://vault.example:8200/v1")
    #expect(https.descriptor == "vault-transit://vault.example:8200/transit/k?tls=true")
    let plain = try make("vault-transit:///transit/k", ["VAULT_ADDR": "http://10.0.0.1:8200"], caFile: "/etc/ca.pem")
    #expect(plain.base == "http://10.0.0.1:8200/v1")
    let urlWins = try make("vault-transit://h:1/transit/k", ["VAULT_ADDR": "https://vault.example:8200"])
    #expect(urlWins.base == "http://h:1/v1")
    #expect(throws: KMSError.self) { _ = try make("vault-transit:///transit/k", [:]) }
    #expect(throws: KMSError.self) { _ = try make("vault-transit:///transit/k", ["VAULT_ADDR": "vault:8200"]) }
  }

  @Test func tokenFileWinsAndMustExist() throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-vt-\(UUID().uuidString)").path
    defer { do { try FileManager.default.removeItem(atPath: path) } catch {} }
    try Data("s.from-file\n".utf8).write(to: URL(fileURLWithPath: path))
    let url = try #require(URLComponents(string: "vault-transit://h:1/transit/k"))
    let s = try VaultTransitKeyService(url: url, options: KMSOptions(environment: [:], tokenFile: path))
    #expect(s.token.value == "s.from-file")
    #expect(throws: KMSError.self) {
      _ = try VaultTransitKeyService(url: url, options: KMSOptions(environment: env, tokenFile: path + ".missing"))
    }
  }

  @Test func contextEnvelopeRoundTripAndBinding() throws {
    let key = Crypto.randomBytes(32)
    let sealed = VaultTransitKeyService.envelope(key, context: "botrt:data:files")
    #expect(sealed.count == 2 + 16 + 32)
    #expect(try VaultTransitKeyService.open(sealed, context: "botrt:data:files", kms: "k") == key)
    #expect(throws: KMSError.self) { _ = try VaultTransitKeyService.open(sealed, context: "botrt:data:logs", kms: "k") }
    #expect(throws: KMSError.self) {
      _ = try VaultTransitKeyService.open(sealed.dropLast(), context: "botrt:data:files", kms: "k")
    }
    #expect(throws: KMSError.self) { _ = try VaultTransitKeyService.open(Data([0]), context: "", kms: "k") }
  }

  @Test func keyVersions() {
    #expect(VaultTransitKeyService.keyVersion(of: "vault:v1:abc") == "1")
    #expect(VaultTransitKeyService.keyVersion(of: "vault:v12:abc:def") == "12")
    #expect(VaultTransitKeyService.keyVersion(of: "vault:vx:abc") == nil)
    #expect(VaultTransitKeyService.keyVersion(of: "other") == nil)
  }
}
