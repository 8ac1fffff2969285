import Foundation
import Testing

@testable import BackupEngine

/// A local HTTP server (python3, started by the test) that implements the documented request and response formats
/// of Azure Key Vault's wrapkey/unwrapkey/rotate (api-version 7.4, RSA-OAEP-256 with real 2048-bit RSA keys) and
/// Google Cloud KMS's cryptoKeys encrypt/decrypt (AES-256-GCM with the additional authenticated data), with their
/// documented error bodies, and the two OAuth2 token endpoints: Microsoft Entra's client-credentials grant and
/// Google's JWT-bearer grant (the RS256 assertion is verified with the service-account key the server wrote). Every request is logged as one JSON line (method, path, query, headers, body).
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

  static let script = #"""
    import base64, json, os, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import urlparse, parse_qs
    from cryptography.hazmat.primitives.asymmetric import rsa, padding
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    token, log_path, client_secret, sa_path = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_email = "botrt@p1.iam.gserviceaccount.com"
    lock = threading.Lock()
    azure_keys = {}   # name -> list of (version, private key)
    gcp_keys = {}     # resource name -> list of 32-byte keys (version n = index n-1)
    counter = [0]

    def b64url(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    def unb64url(s): return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

    def azure_key(name, create=False):
        with lock:
            if name not in azure_keys and create:
                azure_keys[name] = []
            if name in azure_keys and (create and not azure_keys[name]):
                counter[0] += 1
                azure_keys[name].append(("%032x" % counter[0], rsa.generate_private_key(public_exponent=65537, key_size=2048)))
            return azure_keys.get(name)

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *a): pass

        def reply(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(n)
            u = urlparse(self.path)
            q = parse_qs(u.query)
            with open(log_path, "a") as f:
                f.write(json.dumps({"method": "POST", "path": u.path, "query": u.query,
                                    "headers": {k.lower(): v for k, v in self.headers.items()},
                                    "body": raw.decode("utf-8", "replace")}) + "\n")
            if u.path.endswith("/oauth2/v2.0/token"):
                return self.azure_token(raw)
            if u.path == "/token":
                return self.google_token(raw)
            auth = self.headers.get("Authorization", "")
            parts = u.path.strip("/").split("/")
            azure = parts[0] == "keys"
            if auth != "Bearer " + token:
                if azure:
                    return self.reply(401, {"error": {"code": "Unauthorized", "message": "AKV10022: Invalid audience or token (%s)." % auth}})
                return self.reply(401, {"error": {"code": 401, "message": "Request had invalid authentication credentials: %s" % auth, "status": "UNAUTHENTICATED"}})
            if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
                return self.reply(400, {"error": {"code": "BadParameter", "message": "Content-Type must be application/json"}})
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return self.reply(400, {"error": {"code": "BadParameter", "message": "invalid JSON"}})
            if azure:
                return self.azure(parts, q, body)
            return self.gcp(u.path, body)

        def form(self, raw):
            return {k: v[0] for k, v in parse_qs(raw.decode()).items()}

        def azure_token(self, raw):
            f = self.form(raw)
            if self.headers.get("Content-Type") != "application/x-www-form-urlencoded" or f.get("grant_type") != "client_credentials" \
                    or f.get("scope") != "https://vault.azure.net/.default" or f.get("client_id") != "botrt-client":
                return self.reply(400, {"error": "invalid_request", "error_description": "AADSTS900144: bad request %r" % f})
            if f.get("client_secret") != client_secret:
                return self.reply(401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided: %s" % f.get("client_secret")})
            return self.reply(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token})

        def google_token(self, raw):
            f = self.form(raw)
            try:
                assert f["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
                h, c, sig = f["assertion"].split(".")
                sa_key.public_key().verify(unb64url(sig), (h + "." + c).encode(), padding.PKCS1v15(), hashes.SHA256())
                header, claims = json.loads(unb64url(h)), json.loads(unb64url(c))
                assert header["alg"] == "RS256" and claims["iss"] == sa_email
                assert claims["aud"] == "http://127.0.0.1:%d/token" % self.server.server_address[1]
                assert claims["scope"] == "https://www.googleapis.com/auth/cloudkms"
                assert claims["iat"] <= claims["exp"] <= claims["iat"] + 3600
            except Exception as e:
                return self.reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT: %r" % e})
            return self.reply(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

        def azure(self, parts, q, body):
            if q.get("api-version") != ["7.4"]:
                return self.reply(400, {"error": {"code": "BadParameter", "message": "api-version 7.4 expected"}})
            # /keys/{name}/rotate, /keys/{name}[/{version}]/wrapkey|unwrapkey
            name, op = parts[1], parts[-1]
            version = parts[2] if len(parts) == 4 else None
            if op == "rotate" and len(parts) == 3:
                azure_key(name, create=True)
                with lock:
                    counter[0] += 1
                    azure_keys[name].append(("%032x" % counter[0], rsa.generate_private_key(public_exponent=65537, key_size=2048)))
                    v = azure_keys[name][-1][0]
                return self.reply(200, {"key": {"kid": "https://%s/keys/%s/%s" % (self.headers.get("Host"), name, v), "kty": "RSA"}})
            versions = azure_key(name)
            if not versions:
                return self.reply(404, {"error": {"code": "KeyNotFound", "message": "A key with (name/id) %s was not found in this key vault." % name}})
            match = [k for k in versions if version is None or k[0] == version]
            if not match:
                return self.reply(404, {"error": {"code": "KeyNotFound", "message": "A key with (name/id) %s/%s was not found in this key vault." % (name, version)}})
            v, key = match[-1]
            if body.get("alg") != "RSA-OAEP-256" or not isinstance(body.get("value"), str):
                return self.reply(400, {"error": {"code": "BadParameter", "message": "alg RSA-OAEP-256 and a base64url value are required"}})
            oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
            kid = "https://%s/keys/%s/%s" % (self.headers.get("Host"), name, v)
            try:
                value = unb64url(body["value"])
            except Exception:
                return self.reply(400, {"error": {"code": "BadParameter", "message": "value is not base64url"}})
            if op == "wrapkey":
                return self.reply(200, {"kid": kid, "value": b64url(key.public_key().encrypt(value, oaep))})
            if op == "unwrapkey":
                try:
                    plain = key.decrypt(value, oaep)
                except Exception:
                    return self.reply(400, {"error": {"code": "BadParameter", "message": "Error in unwrapping the key."}})
                return self.reply(200, {"kid": kid, "value": b64url(plain)})
            return self.reply(404, {"error": {"code": "NotFound", "message": "unknown operation"}})

        def gcp(self, path, body):
            if not path.startswith("/v1/") or ":" not in path:
                return self.reply(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})
            name, method = path[len("/v1/"):].rsplit(":", 1)
            p = name.split("/")
            if len(p) != 8 or p[0] != "projects" or p[2] != "locations" or p[4] != "keyRings" or p[6] != "cryptoKeys":
                return self.reply(400, {"error": {"code": 400, "message": "Invalid resource name %s" % name, "status": "INVALID_ARGUMENT"}})
            with lock:
                if p[7].startswith("missing"):
                    return self.reply(404, {"error": {"code": 404, "message": "CryptoKey %s not found." % name, "status": "NOT_FOUND"}})
                versions = gcp_keys.setdefault(name, [AESGCM.generate_key(bit_length=256)])
            aad = base64.b64decode(body.get("additionalAuthenticatedData", ""))
            if method == "encrypt":
                pt = base64.b64decode(body["plaintext"])
                nonce = os.urandom(12)
                v = len(versions)
                ct = bytes([v]) + nonce + AESGCM(versions[v - 1]).encrypt(nonce, pt, aad)
                return self.reply(200, {"name": "%s/cryptoKeyVersions/%d" % (name, v), "ciphertext": base64.b64encode(ct).decode(),
                                        "verifiedPlaintextCrc32c": False, "protectionLevel": "SOFTWARE"})
            if method == "decrypt":
                try:
                    ct = base64.b64decode(body["ciphertext"])
                    v = ct[0]
                    pt = AESGCM(versions[v - 1]).decrypt(ct[1:13], ct[13:], aad)
                except Exception:
                    return self.reply(400, {"error": {"code": 400, "message": "Decryption failed: the ciphertext is invalid.", "status": "INVALID_ARGUMENT"}})
                return self.reply(200, {"plaintext": base64.b64encode(pt).decode(), "usedPrimary": True, "protectionLevel": "SOFTWARE"})
            return self.reply(400, {"error": {"code": 400, "message": "unknown method %s" % method, "status": "INVALID_ARGUMENT"}})

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    port = srv.server_address[1]
    with open(sa_path, "w") as f:
        json.dump({"type": "service_account", "project_id": "p1", "private_key_id": "k1", "client_email": sa_email,
                   "client_id": "1", "token_uri": "http://127.0.0.1:%d/token" % port,
                   "private_key": sa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()).decode()}, f)
    print(port, flush=True)
    srv.serve_forever()
    """#

  init() throws {
    dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-kms-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let scriptPath = dir + "/kms.py"
    logPath = dir + "/requests.jsonl"
    token = "tok-" + Hex.encode(Crypto.randomBytes(16))
    clientSecret = "sec-" + Hex.encode(Crypto.randomBytes(16))
    serviceAccountPath = dir + "/sa.json"
    try Data(Self.script.utf8).write(to: URL(fileURLWithPath: scriptPath))
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", scriptPath, token, logPath, clientSecret, serviceAccountPath]
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
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [
      "curl", "-sf", "-o", "/dev/null", "-X", "POST", "-H", "Authorization: Bearer \(token)", "-H",
      "Content-Type: application/json", "--data", "{}", "\(url)/keys/\(name)/rotate?api-version=7.4",
    ]
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw BackendTestError("rotating Azure key \(name) failed") }
  }

  func stop() {
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    do { try FileManager.default.removeItem(atPath: dir) } catch {}
  }
}
