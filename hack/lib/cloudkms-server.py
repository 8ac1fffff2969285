#!/usr/bin/env python3
"""A local server for the documented REST formats of two cloud key services, for tests (there is no emulator).

- Azure Key Vault (api-version 7.4): POST /keys/{name}/rotate, POST /keys/{name}[/{version}]/wrapkey|unwrapkey
  (RSA-OAEP-256 with real 2048-bit RSA keys), PATCH /keys/{name}/{version} with {"attributes": {"enabled": false}}.
  A disabled version refuses unwrapkey and wrapkey (403 Forbidden, inner code KeyDisabled).
- Google Cloud KMS (v1): POST {cryptoKey}:encrypt|decrypt (AES-256-GCM with the additional authenticated data; the
  key version travels in the ciphertext's first byte), POST {cryptoKey}/cryptoKeyVersions (a new version),
  POST {cryptoKey}:updatePrimaryVersion, PATCH {cryptoKey}/cryptoKeyVersions/{n}?updateMask=state with
  {"state": "DISABLED"}. encrypt uses the primary version; a disabled version refuses decrypt (400 FAILED_PRECONDITION).
- The two OAuth2 token endpoints: Microsoft Entra's client-credentials grant (POST /{tenant}/oauth2/v2.0/token, client
  id "botrt-client") and Google's JWT-bearer grant (POST /token; the RS256 assertion is verified with the
  service-account key this server writes to SA_PATH, whose token_uri is this server).

Only TOKEN is accepted as a bearer token. A rejected token or secret is echoed in the error message, as a verbose
server might, so tests can check that the client never repeats it. Every request is logged to LOG_PATH as one JSON
line (method, path, query, headers, body). The listening port is printed on the first line of stdout.

    cloudkms-server.py TOKEN LOG_PATH CLIENT_SECRET SA_PATH [--host ADDRESS] [--port N]

ADDRESS (default 127.0.0.1) is the address it listens on and the host of the token_uri it writes; Pods reach it on
the node's bridge address (hack/node/keyrotation-e2e.sh). Used by Tests/EngineIntegrationTests/CloudKMSServer.swift.
"""
import argparse, base64, datetime, json, os, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs
from cryptography.hazmat.primitives.asymmetric import rsa, padding
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ap = argparse.ArgumentParser()
ap.add_argument("token")
ap.add_argument("log_path")
ap.add_argument("client_secret")
ap.add_argument("sa_path")
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port", type=int, default=0)
args = ap.parse_args()
token, log_path, client_secret, sa_path = args.token, args.log_path, args.client_secret, args.sa_path
sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
sa_email = "botrt@p1.iam.gserviceaccount.com"
lock = threading.Lock()
azure_keys = {}     # name -> list of (version, private key)
azure_disabled = set()  # (name, version)
gcp_keys = {}       # resource name -> {"versions": [32-byte keys] (version n = index n-1), "primary": n, "disabled": set()}
counter = [0]


def b64url(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def unb64url(s): return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
def now(): return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def azure_key(name, create=False):
    with lock:
        if name not in azure_keys and create:
            azure_keys[name] = []
        if name in azure_keys and (create and not azure_keys[name]):
            counter[0] += 1
            azure_keys[name].append(("%032x" % counter[0], rsa.generate_private_key(public_exponent=65537, key_size=2048)))
        return azure_keys.get(name)


def gcp_key(name):
    with lock:
        return gcp_keys.setdefault(name, {"versions": [AESGCM.generate_key(bit_length=256)], "primary": 1, "disabled": set()})


def gcp_version(name, n, key):
    return {"name": "%s/cryptoKeyVersions/%d" % (name, n), "state": "DISABLED" if n in key["disabled"] else "ENABLED",
            "protectionLevel": "SOFTWARE", "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION", "createTime": now()}


def gcp_name_ok(p):
    return len(p) == 8 and p[0] == "projects" and p[2] == "locations" and p[4] == "keyRings" and p[6] == "cryptoKeys"


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

    def do_PATCH(self): self.handle_request("PATCH")
    def do_POST(self): self.handle_request("POST")

    def handle_request(self, method):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        u = urlparse(self.path)
        q = parse_qs(u.query)
        with open(log_path, "a") as f:
            f.write(json.dumps({"method": method, "path": u.path, "query": u.query,
                                "headers": {k.lower(): v for k, v in self.headers.items()},
                                "body": raw.decode("utf-8", "replace")}) + "\n")
        if method == "POST" and u.path.endswith("/oauth2/v2.0/token"):
            return self.azure_token(raw)
        if method == "POST" and u.path == "/token":
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
            return self.azure(method, parts, q, body)
        return self.gcp(method, u.path, q, body)

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
            assert claims["aud"] == token_uri
            assert claims["scope"] == "https://www.googleapis.com/auth/cloudkms"
            assert claims["iat"] <= claims["exp"] <= claims["iat"] + 3600
        except Exception as e:
            return self.reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT: %r" % e})
        return self.reply(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def azure(self, method, parts, q, body):
        if q.get("api-version") != ["7.4"]:
            return self.reply(400, {"error": {"code": "BadParameter", "message": "api-version 7.4 expected"}})
        # POST /keys/{name}/rotate, POST /keys/{name}[/{version}]/wrapkey|unwrapkey, PATCH /keys/{name}/{version}
        name, op = parts[1], parts[-1]
        host = self.headers.get("Host")
        if method == "PATCH":
            versions = azure_key(name) or []
            if len(parts) != 3 or parts[2] not in [v for v, _ in versions]:
                return self.reply(404, {"error": {"code": "KeyNotFound", "message": "A key with (name/id) %s was not found in this key vault." % "/".join(parts[1:])}})
            enabled = (body.get("attributes") or {}).get("enabled")
            if not isinstance(enabled, bool):
                return self.reply(400, {"error": {"code": "BadParameter", "message": "attributes.enabled must be a boolean"}})
            with lock:
                (azure_disabled.discard if enabled else azure_disabled.add)((name, parts[2]))
            return self.reply(200, {"key": {"kid": "https://%s/keys/%s/%s" % (host, name, parts[2]), "kty": "RSA"},
                                    "attributes": {"enabled": enabled}})
        version = parts[2] if len(parts) == 4 else None
        if op == "rotate" and len(parts) == 3:
            azure_key(name, create=True)
            with lock:
                counter[0] += 1
                azure_keys[name].append(("%032x" % counter[0], rsa.generate_private_key(public_exponent=65537, key_size=2048)))
                v = azure_keys[name][-1][0]
            return self.reply(200, {"key": {"kid": "https://%s/keys/%s/%s" % (host, name, v), "kty": "RSA"}})
        versions = azure_key(name)
        if not versions:
            return self.reply(404, {"error": {"code": "KeyNotFound", "message": "A key with (name/id) %s was not found in this key vault." % name}})
        match = [k for k in versions if version is None or k[0] == version]
        if not match:
            return self.reply(404, {"error": {"code": "KeyNotFound", "message": "A key with (name/id) %s/%s was not found in this key vault." % (name, version)}})
        v, key = match[-1]
        if (name, v) in azure_disabled:
            return self.reply(403, {"error": {"code": "Forbidden", "message": "Operation %s is not allowed on a disabled key." % op,
                                              "innererror": {"code": "KeyDisabled"}}})
        if body.get("alg") != "RSA-OAEP-256" or not isinstance(body.get("value"), str):
            return self.reply(400, {"error": {"code": "BadParameter", "message": "alg RSA-OAEP-256 and a base64url value are required"}})
        oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
        kid = "https://%s/keys/%s/%s" % (host, name, v)
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

    def gcp_error(self, code, status, message):
        return self.reply(code, {"error": {"code": code, "message": message, "status": status}})

    def gcp(self, method, path, q, body):
        if not path.startswith("/v1/"):
            return self.gcp_error(404, "NOT_FOUND", "not found")
        rest = path[len("/v1/"):]
        p = rest.split("/")
        # PATCH {cryptoKey}/cryptoKeyVersions/{n}?updateMask=state
        if method == "PATCH":
            if len(p) != 10 or not gcp_name_ok(p[:8]) or p[8] != "cryptoKeyVersions" or not p[9].isdigit():
                return self.gcp_error(404, "NOT_FOUND", "not found")
            name, n = "/".join(p[:8]), int(p[9])
            key = gcp_key(name)
            if not 1 <= n <= len(key["versions"]):
                return self.gcp_error(404, "NOT_FOUND", "CryptoKeyVersion %s not found." % rest)
            if q.get("updateMask") != ["state"] or body.get("state") not in ("ENABLED", "DISABLED"):
                return self.gcp_error(400, "INVALID_ARGUMENT", "updateMask=state and state ENABLED or DISABLED are required")
            if body["state"] == "DISABLED" and n == key["primary"]:
                return self.gcp_error(400, "FAILED_PRECONDITION", "The primary version cannot be disabled.")
            with lock:
                (key["disabled"].add if body["state"] == "DISABLED" else key["disabled"].discard)(n)
            return self.reply(200, gcp_version(name, n, key))
        # POST {cryptoKey}/cryptoKeyVersions
        if len(p) == 9 and p[8] == "cryptoKeyVersions" and gcp_name_ok(p[:8]):
            name = "/".join(p[:8])
            key = gcp_key(name)
            with lock:
                key["versions"].append(AESGCM.generate_key(bit_length=256))
                n = len(key["versions"])
            return self.reply(200, gcp_version(name, n, key))
        if ":" not in rest:
            return self.gcp_error(404, "NOT_FOUND", "not found")
        name, method_name = rest.rsplit(":", 1)
        p = name.split("/")
        if not gcp_name_ok(p):
            return self.gcp_error(400, "INVALID_ARGUMENT", "Invalid resource name %s" % name)
        if p[7].startswith("missing"):
            return self.gcp_error(404, "NOT_FOUND", "CryptoKey %s not found." % name)
        key = gcp_key(name)
        versions = key["versions"]
        aad = base64.b64decode(body.get("additionalAuthenticatedData", ""))
        if method_name == "updatePrimaryVersion":
            v = str(body.get("cryptoKeyVersionId", ""))
            if not v.isdigit() or not 1 <= int(v) <= len(versions):
                return self.gcp_error(400, "INVALID_ARGUMENT", "cryptoKeyVersionId %r is not a version of %s" % (v, name))
            if int(v) in key["disabled"]:
                return self.gcp_error(400, "FAILED_PRECONDITION", "%s/cryptoKeyVersions/%s is not enabled." % (name, v))
            with lock:
                key["primary"] = int(v)
            return self.reply(200, {"name": name, "purpose": "ENCRYPT_DECRYPT", "primary": gcp_version(name, int(v), key)})
        if method_name == "encrypt":
            pt = base64.b64decode(body["plaintext"])
            nonce = os.urandom(12)
            v = key["primary"]
            ct = bytes([v]) + nonce + AESGCM(versions[v - 1]).encrypt(nonce, pt, aad)
            return self.reply(200, {"name": "%s/cryptoKeyVersions/%d" % (name, v), "ciphertext": base64.b64encode(ct).decode(),
                                    "verifiedPlaintextCrc32c": False, "protectionLevel": "SOFTWARE"})
        if method_name == "decrypt":
            try:
                ct = base64.b64decode(body["ciphertext"])
                v = ct[0]
                if v in key["disabled"]:
                    return self.gcp_error(400, "FAILED_PRECONDITION",
                                          "%s/cryptoKeyVersions/%d is not enabled, current state is: DISABLED." % (name, v))
                pt = AESGCM(versions[v - 1]).decrypt(ct[1:13], ct[13:], aad)
            except Exception:
                return self.gcp_error(400, "INVALID_ARGUMENT", "Decryption failed: the ciphertext is invalid.")
            return self.reply(200, {"plaintext": base64.b64encode(pt).decode(), "usedPrimary": v == key["primary"],
                                    "protectionLevel": "SOFTWARE"})
        return self.gcp_error(400, "INVALID_ARGUMENT", "unknown method %s" % method_name)


srv = ThreadingHTTPServer((args.host, args.port), H)
port = srv.server_address[1]
token_uri = "http://%s:%d/token" % (args.host, port)
with open(sa_path, "w") as f:
    json.dump({"type": "service_account", "project_id": "p1", "private_key_id": "k1", "client_email": sa_email,
               "client_id": "1", "token_uri": token_uri,
               "private_key": sa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()).decode()}, f)
print(port, flush=True)
srv.serve_forever()
