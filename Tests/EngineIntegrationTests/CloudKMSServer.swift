import Foundation
import Testing

@testable import BackupEngine

/// A local HTTP server (hack/lib/cloudkms-server.py, python3, started by the test) that implements the documented
/// request and response formats of Azure Key Vault's wrapkey/unwrapkey/rotate and key-version update (api-version
/// 7.4, RSA-OAEP-256 with real 2048-bit RSA keys) and Google Cloud KMS's cryptoKeys encrypt/decrypt (AES-256-GCM with
/// the additional authenticated data), cryptoKeyVersions create and patch, and updatePrimaryVersion, with their
/// documented error bodies, and the two OAuth2 token endpoints: Microsoft Entra's client-credentials grant and
/// Google's JWT-bearer grant (the RS256 assertion is verified with the service-account key the server wrote). Every
/// request is logged as one JSON line (method, path, query, headers, body).
///
/// Only `token` is accepted as a bearer token. A rejected token is echoed in the error message, as a verbose server
/// might, so tests can check that the engine never repeats it.
final class CloudKMSServer {
  let process: Process
  let port: Int
  let dir: String
  let logPath: String
  let token: String
  /// The Azure client secret the token endpoint accepts (client id "botrt-client").
  let clientSecret: String
  /// A Google service-account key file whose token_uri is this server.
  let serviceAccountPath: String

  /// The server, hack/lib/cloudkms-server.py (hack/node/keyrotation-e2e.sh runs it for Pods).
  static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("hack/lib/cloudkms-server.py").path

  init() throws {
    dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-kms-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    logPath = dir + "/requests.jsonl"
    token = "tok-" + Hex.encode(Crypto.randomBytes(16))
    clientSecret = "sec-" + Hex.encode(Crypto.randomBytes(16))
    serviceAccountPath = dir + "/sa.json"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", Self.script, token, logPath, clientSecret, serviceAccountPath]
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    process = p
    let line = out.fileHandleForReading.readLine()
    guard let port = Int(line) else {
      p.terminate()
      throw BackendTestError(
        "the cloud KMS test server did not start (got '\(line)'); it needs python3 with the cryptography package")
    }
    self.port = port
  }

  var url: String { "http://127.0.0.1:\(port)" }

  /// The logged requests, oldest first.
  func requests() throws -> [[String: Any]] {
    guard FileManager.default.fileExists(atPath: logPath) else { return [] }
    return try String(contentsOfFile: logPath, encoding: .utf8).split(separator: "\n").map {
      try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
    }
  }

  /// Creates a new version of an Azure key (the documented `POST /keys/{name}/rotate`); creates the key if needed.
  func rotateAzureKey(_ name: String) throws {
    try send("POST", "/keys/\(name)/rotate?api-version=7.4", "{}")
  }

  /// Sends a request with the bearer token and a JSON body; fails unless the server answers 2xx.
  func send(_ method: String, _ pathAndQuery: String, _ body: String) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [
      "curl", "-sf", "-o", "/dev/null", "-X", method, "-H", "Authorization: Bearer \(token)", "-H",
      "Content-Type: application/json", "--data", body, "\(url)\(pathAndQuery)",
    ]
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw BackendTestError("\(method) \(pathAndQuery) failed") }
  }

  /// Disables one version of an Azure key (the documented `PATCH /keys/{name}/{version}`).
  func disableAzureKeyVersion(_ name: String, _ version: String) throws {
    try send("PATCH", "/keys/\(name)/\(version)?api-version=7.4", #"{"attributes":{"enabled":false}}"#)
  }

  /// Disables one version of a Google Cloud KMS key (`PATCH {cryptoKey}/cryptoKeyVersions/{n}?updateMask=state`).
  func disableGCPKeyVersion(_ key: String, _ version: Int) throws {
    try send("PATCH", "/v1/\(key)/cryptoKeyVersions/\(version)?updateMask=state", #"{"state":"DISABLED"}"#)
  }

  func stop() {
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    do { try FileManager.default.removeItem(atPath: dir) } catch {}
  }
}
