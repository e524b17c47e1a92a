"""An HTTPS fake of Azure Key Vault's keys REST API and of the Entra ID token
endpoint, so the unmodified azure-keyvault-keys and azure-identity clients drive it.

Served (api-version ignored): ``GET /keys/{name}[/{version}]`` (a KeyBundle with the
RSA public key), ``POST /keys/{name}/{version}/wrapkey`` and ``/unwrapkey``
(RSA-OAEP-256), ``POST /keys/{name}/create`` (RSA), ``DELETE /keys/{name}`` (a soft
delete, as Key Vault does: the key is unusable and ``GET /deletedkeys/{name}`` shows it), the bearer challenge (401 with ``WWW-Authenticate``), and, for
azure-identity's ``ClientSecretCredential``, ``/{tenant}/v2.0/.well-known/
openid-configuration`` and ``/{tenant}/oauth2/v2.0/token``.

It refuses what Key Vault refuses: no or unknown token (401), a client not granted on
the key (403 Forbidden), a disabled key version (403, inner code KeyDisabled), an
unknown key or version (404 KeyNotFound), a wrapped key that does not decrypt (400
BadParameter). ``down`` answers 503 to everything.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from devtools.fakes.tls import ServerCert

TENANT = "00000000-0000-4000-8000-00000000cafe"
OAEP256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class _Version:
    private: rsa.RSAPrivateKey
    enabled: bool = True


@dataclass
class _Key:
    versions: dict[str, _Version] = field(default_factory=dict)
    latest: str = ""
    members: set[str] = field(default_factory=set)


class FakeKeyVault:
    def __init__(self, cert: ServerCert, host: str = "127.0.0.1") -> None:
        self.keys: dict[str, _Key] = {}
        self.deleted: dict[str, _Key] = {}  # soft-deleted keys (recoverable in Azure)
        self.creators: set[str] = set()  # clients granted keys/create on the vault
        self.clients: dict[str, str] = {}  # client id -> secret
        self.tokens: dict[str, str] = {}  # access token -> client id
        self.calls: dict[str, int] = {}
        self.down = False
        self._lock = threading.Lock()
        fake = self

        class Handler(_Handler):
            vault = fake

        self._server = ThreadingHTTPServer((host, 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert.cert_file, cert.key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        name = "localhost" if host == "127.0.0.1" else host
        self.url = f"https://{name}:{self.port}"
        self.authority = f"https://{name}:{self.port}"

    def start(self) -> FakeKeyVault:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- administration -------------------------------------------------------------------

    def add_client(self, client_id: str, secret: str) -> None:
        self.clients[client_id] = secret

    def create_key(self, name: str, *members: str) -> str:
        with self._lock:
            self.keys.setdefault(name, _Key()).members.update(members)
        return self.rotate(name)

    def rotate(self, name: str) -> str:
        """A new version of ``name``; returns its key id URL."""
        version = os.urandom(16).hex()
        with self._lock:
            key = self.keys[name]
            key.versions[version] = _Version(rsa.generate_private_key(65537, 2048))
            key.latest = version
        return f"{self.url}/keys/{name}/{version}"

    def set_enabled(self, kid: str, enabled: bool) -> None:
        name, version = kid.rstrip("/").split("/keys/")[1].split("/")
        with self._lock:
            self.keys[name].versions[version].enabled = enabled

    def count(self, what: str) -> None:
        with self._lock:
            self.calls[what] = self.calls.get(what, 0) + 1


class _Handler(BaseHTTPRequestHandler):
    vault: FakeKeyVault
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _route(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = urllib.parse.urlparse(self.path).path
        if self.vault.down:
            return self._send(503, {"error": {"code": "ServiceUnavailable", "message": "down"}})
        if path.endswith("/.well-known/openid-configuration"):
            return self._send(200, self._openid())
        if path.endswith("/oauth2/v2.0/token") and method == "POST":
            return self._token(urllib.parse.parse_qs(body.decode()))
        if path.rstrip("/") == "/keys" or path.startswith(("/keys/", "/deletedkeys/")):
            return self._keys(method, path, body)
        return self._send(404, {"error": {"code": "NotFound", "message": path}})

    def _openid(self) -> dict[str, Any]:
        base = f"{self.vault.authority}/{TENANT}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "issuer": f"{base}/v2.0",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "tenant_region_scope": "EU",
        }

    def _token(self, form: dict[str, list[str]]) -> None:
        client = (form.get("client_id") or [""])[0]
        secret = (form.get("client_secret") or [""])[0]
        if self.vault.clients.get(client) != secret or not secret:
            return self._send(
                401, {"error": "invalid_client", "error_description": "AADSTS7000215"}
            )
        token = b64url(os.urandom(24))
        self.vault.tokens[token] = client
        self.vault.count("token")
        return self._send(200, {"token_type": "Bearer", "expires_in": 3600, "access_token": token})

    def _unauthorized(self) -> None:
        """The challenge that sends the SDK to the token endpoint first."""
        challenge = (
            f'Bearer authorization="{self.vault.authority}/{TENANT}", resource="https://localhost"'
        )
        return self._send(
            401,
            {"error": {"code": "Unauthorized", "message": "AKV10000: token required"}},
            {"WWW-Authenticate": challenge},
        )

    def _delete(self, name: str, key: Any) -> None:
        self.vault.deleted[name] = self.vault.keys.pop(name)
        self.vault.count("delete")
        kid = f"{self.vault.url}/keys/{name}/{key.latest}"
        return self._send(
            200,
            {
                **self._bundle(kid, key.versions[key.latest]),
                "recoveryId": f"{self.vault.url}/deletedkeys/{name}",
                "deletedDate": 1700000000,
                "scheduledPurgeDate": 1700000000 + 90 * 86400,
            },
        )

    def _keys(self, method: str, path: str, body: bytes) -> None:
        auth = self.headers.get("Authorization", "")
        client = self.vault.tokens.get(auth.removeprefix("Bearer "))
        if client is None:
            return self._unauthorized()
        parts = [p for p in path.split("/") if p]
        collection, parts = parts[0], parts[1:]  # name, [version], [operation]
        if not parts:  # the list of keys this client may see
            return self._send(200, {"value": [], "nextLink": None})
        name = parts[0]
        if collection == "deletedkeys":
            return self._deleted(name, client)
        if method == "POST" and parts[1:] == ["create"]:
            return self._create(name, client, body)
        version = parts[1] if len(parts) > 1 else ""
        operation = parts[2] if len(parts) > 2 else ""
        key = self.vault.keys.get(name)
        if method == "DELETE" and key is not None and client in key.members:
            return self._delete(name, key)
        if key is not None and client not in key.members:
            return self._error(
                403,
                "Forbidden",
                f"The user, group or application '{client}' does not have keys permission on key vault",
            )
        found = key.versions.get(version or key.latest) if key else None
        if key is None or found is None:
            return self._error(404, "KeyNotFound", f"A key with (name/id) {name} was not found")
        version = version or key.latest
        kid = f"{self.vault.url}/keys/{name}/{version}"
        self.vault.count(operation or "get")
        if method == "GET" and not operation:
            return self._send(200, self._bundle(kid, found))
        return self._operate(kid, found, operation, body)

    def _operate(self, kid: str, found: Any, operation: str, body: bytes) -> None:
        """wrapkey / unwrapkey with one key version, refused as the service refuses."""
        if not found.enabled:
            return self._error(
                403,
                "Forbidden",
                f"Operation {operation} is not allowed on a disabled key.",
                "KeyDisabled",
            )
        request = json.loads(body or b"{}")
        if request.get("alg") != "RSA-OAEP-256":
            return self._error(400, "BadParameter", "Invalid algorithm")
        value = unb64url(str(request.get("value", "")))
        if operation == "wrapkey":
            out = found.private.public_key().encrypt(value, OAEP256)
        elif operation == "unwrapkey":
            try:
                out = found.private.decrypt(value, OAEP256)
            except ValueError:
                return self._error(400, "BadParameter", "The parameter is incorrect.")
        else:
            return self._error(400, "BadParameter", f"unknown operation {operation}")
        return self._send(200, {"kid": kid, "value": b64url(out)})

    def _create(self, name: str, client: str, body: bytes) -> None:
        if client not in self.vault.creators:
            return self._error(403, "Forbidden", f"'{client}' does not have keys create permission")
        request = json.loads(body or b"{}")
        if request.get("kty") not in ("RSA", "RSA-HSM"):
            return self._error(400, "BadParameter", "only RSA keys are served here")
        if name in self.vault.deleted:
            return self._error(
                409, "Conflict", f"Key {name} is currently in a deleted but recoverable state"
            )
        kid = (
            self.vault.create_key(name, client)
            if name not in self.vault.keys
            else self.vault.rotate(name)
        )
        self.vault.count("create")
        key = self.vault.keys[name]
        return self._send(200, self._bundle(kid, key.versions[key.latest]))

    def _deleted(self, name: str, client: str) -> None:
        key = self.vault.deleted.get(name)
        if key is None or client not in key.members:
            return self._error(404, "KeyNotFound", f"Deleted Key not found: {name}")
        kid = f"{self.vault.url}/keys/{name}/{key.latest}"
        return self._send(
            200,
            {
                **self._bundle(kid, key.versions[key.latest]),
                "recoveryId": f"{self.vault.url}/deletedkeys/{name}",
            },
        )

    def _bundle(self, kid: str, version: _Version) -> dict[str, Any]:
        numbers = version.private.public_key().public_numbers()
        return {
            "key": {
                "kid": kid,
                "kty": "RSA",
                "key_ops": ["wrapKey", "unwrapKey"],
                "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                "e": b64url(numbers.e.to_bytes(3, "big")),
            },
            "attributes": {"enabled": version.enabled, "recoveryLevel": "Recoverable"},
        }

    def _error(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        error: dict[str, Any] = {"code": code, "message": message}
        if inner:
            error["innererror"] = {"code": inner}
        self._send(status, {"error": error})

    def _send(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
