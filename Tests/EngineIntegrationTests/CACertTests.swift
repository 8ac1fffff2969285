import CurlHTTP
import EngineContract
import Foundation
import Testing

@testable import BackupEngine

/// `botrt-engine --cacert` (issue 14 item 8): a private CA trusted in addition to the system's, for the key service
/// (OpenBao over TLS, no --vault-ca-file) and the storage (fake-gcs-server over TLS with a certificate of a CA made
/// here); without it the same servers are refused, and a bad file is a usage error naming it.
@Suite(.serialized) struct CACertTests {
  @Test func vaultOverTLSIsTrustedThroughCACert() throws {
    let addr = try ServiceEnv.require("BOTRT_VAULT_TLS_ADDR")
    let ca = try ServiceEnv.require("BOTRT_VAULT_CACERT")
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/a.txt", Data("over tls\n".utf8))
    let kms = "vault-transit://\(addr.dropFirst("https://".count))/transit/botrt-test?tls=true"
    func backup(_ repo: String, _ extra: [String]) throws -> CLIHarness.Output {
      try h.run(
        ["backup", "--init-if-missing", "--repo", "file://" + h.dir + "/" + repo, "--kms", kms, "--quiet"] + extra
          + [h.dir + "/src"], withRepo: false, env: ["VAULT_TOKEN": "root", "VAULT_CACERT": ""])
    }
    let trusted = try backup("r1", ["--cacert", ca])
    #expect(trusted.code == 0, "\(trusted.stderr)")
    let untrusted = try backup("r2", [])
    #expect(untrusted.code == EngineExitCode.kms, "\(untrusted.stderr)")
    #expect(untrusted.stderr.contains("certificate") || untrusted.stderr.contains("TLS"), "\(untrusted.stderr)")

    let missing = try backup("r3", ["--cacert", h.dir + "/no-such-ca.pem"])
    #expect(missing.code == EngineExitCode.usage)
    #expect(missing.stderr.contains("no-such-ca.pem") && missing.stderr.contains("--cacert"), "\(missing.stderr)")
    try h.write("not-pem.txt", Data("hello".utf8))
    let notPEM = try backup("r4", ["--cacert", h.dir + "/not-pem.txt"])
    #expect(notPEM.code == EngineExitCode.usage)
    #expect(notPEM.stderr.contains("not-pem.txt") && notPEM.stderr.contains("BEGIN CERTIFICATE"), "\(notPEM.stderr)")
    // The environment variable, as restic's RESTIC_CACERT.
    let fromEnv = try h.run(
      ["snapshots", "--repo", "file://" + h.dir + "/r1", "--kms", kms, "--quiet"], withRepo: false,
      env: ["VAULT_TOKEN": "root", "VAULT_CACERT": "", EngineEnv.caCert: ca])
    #expect(fromEnv.code == 0, "\(fromEnv.stderr)")
  }

  @Test func storageOverTLSWithAPrivateCA() async throws {
    let bin = try ServiceEnv.require("BOTRT_FAKE_GCS_BIN")
    let h = try CLIHarness()
    defer { h.cleanup() }
    let pki = try PrivateCA(dir: h.dir + "/pki")
    let port = try freePort()
    let server = Process()
    server.executableURL = URL(fileURLWithPath: bin)
    server.arguments = [
      "-scheme", "https", "-host", "127.0.0.1", "-port", "\(port)", "-backend", "memory", "-cert-location",
      pki.serverCert, "-private-key-location", pki.serverKey, "-log-level", "error",
    ]
    server.standardOutput = FileHandle.nullDevice
    server.standardError = FileHandle.nullDevice
    try server.run()
    defer {
      server.terminate()
      server.waitUntilExit()
    }
    let endpoint = "https://127.0.0.1:\(port)"
    let bucket = ServiceEnv.bucketName("cacert")
    let trusting = CurlClient(defaultCAPEM: try Data(contentsOf: URL(fileURLWithPath: pki.caCert)))
    let store = try GCSStore(
      url: try #require(URLComponents(string: "gs://\(bucket)/repo")),
      options: StoreOptions(environment: ["BOTRT_GCS_ENDPOINT": endpoint], httpClient: trusting))
    var created = false
    for _ in 0..<100 where !created {
      do {
        try await store.createBucket()
        created = true
      } catch {
        try await Task.sleep(for: .milliseconds(100))
      }
    }
    #expect(created, "fake-gcs-server did not come up over TLS at \(endpoint)")

    try h.write("src/a.txt", Data("stored over tls\n".utf8))
    func run(_ args: [String]) throws -> CLIHarness.Output {
      try h.run(args, repo: "gs://\(bucket)/repo", env: ["BOTRT_GCS_ENDPOINT": endpoint])
    }
    let untrusted = try run(["backup", "--init-if-missing", h.dir + "/src"])
    #expect(untrusted.code == EngineExitCode.storage, "\(untrusted.stderr)")
    let trusted = try run(["backup", "--init-if-missing", "--cacert", pki.caCert, h.dir + "/src"])
    #expect(trusted.code == 0, "\(trusted.stderr)")
    let restored = try run(["restore", "latest", "--target", h.dir + "/out", "--cacert", pki.caCert])
    #expect(restored.code == 0, "\(restored.stderr)")
    #expect(
      FileManager.default.contents(atPath: h.dir + "/out" + h.dir + "/src/a.txt") != nil
        || FileManager.default.contents(atPath: h.dir + "/out/src/a.txt") != nil)
  }
}

/// A CA and a server certificate for 127.0.0.1 it signed, made with the openssl command.
struct PrivateCA {
  let caCert: String
  let serverCert: String
  let serverKey: String

  init(dir: String) throws {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    caCert = dir + "/ca.pem"
    serverCert = dir + "/server.pem"
    serverKey = dir + "/server-key.pem"
    let ext = dir + "/san.ext"
    try Data("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n".utf8).write(to: URL(fileURLWithPath: ext))
    try Self.openssl([
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", dir + "/ca-key.pem",
      "-out", caCert, "-days", "1", "-subj", "/CN=botrt test CA",
    ])
    try Self.openssl([
      "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", serverKey, "-out",
      dir + "/server.csr", "-subj", "/CN=127.0.0.1",
    ])
    try Self.openssl([
      "x509", "-req", "-in", dir + "/server.csr", "-CA", caCert, "-CAkey", dir + "/ca-key.pem", "-CAcreateserial",
      "-out", serverCert, "-days", "1", "-extfile", ext,
    ])
  }

  static func openssl(_ args: [String]) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    p.arguments = args
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw BackendTestError("openssl \(args.prefix(2)) failed") }
  }
}

/// A TCP port nothing listens on now (the kernel's choice for port 0).
func freePort() throws -> Int {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  guard fd >= 0 else { throw BackendTestError("socket failed") }
  defer { close(fd) }
  var addr = sockaddr_in()
  addr.sin_family = sa_family_t(AF_INET)
  addr.sin_port = 0
  addr.sin_addr.s_addr = inet_addr("127.0.0.1")
  var len = socklen_t(MemoryLayout<sockaddr_in>.size)
  let bound = withUnsafeMutablePointer(to: &addr) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Int32 in
      guard bind(fd, p, len) == 0 else { return -1 }
      return getsockname(fd, p, &len)
    }
  }
  guard bound == 0 else { throw BackendTestError("bind failed") }
  return Int(UInt16(bigEndian: addr.sin_port))
}
