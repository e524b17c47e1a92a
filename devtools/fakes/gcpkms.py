"""A gRPC fake of Google Cloud KMS's KeyManagementService (Encrypt, Decrypt,
GetCryptoKey), built on the request and response types google-cloud-kms ships, over
TLS, so the unmodified ``KeyManagementServiceClient`` drives it.

It refuses what Cloud KMS refuses:
* a caller without a valid self-signed service-account JWT (UNAUTHENTICATED), or one
  not granted on the key (PERMISSION_DENIED);
* a wrong additional authenticated data or a tampered ciphertext (INVALID_ARGUMENT,
  "Decryption failed");
* a CRC32C that does not match what arrived (INVALID_ARGUMENT), and it fills in the
  response checksums the client must verify;
* a disabled or destroyed key version (FAILED_PRECONDITION), an unknown key (NOT_FOUND).
``delay`` makes every call slow, ``down`` makes every call UNAVAILABLE.
"""

from __future__ import annotations

import os
import struct
import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import google_crc32c
import grpc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.auth import jwt
from google.cloud import kms_v1

from devtools.fakes.tls import ServerCert

SERVICE = "google.cloud.kms.v1.KeyManagementService"
ENABLED = kms_v1.CryptoKeyVersion.CryptoKeyVersionState.ENABLED
DISABLED = kms_v1.CryptoKeyVersion.CryptoKeyVersionState.DISABLED
DESTROYED = kms_v1.CryptoKeyVersion.CryptoKeyVersionState.DESTROYED
DESTROY_SCHEDULED = kms_v1.CryptoKeyVersion.CryptoKeyVersionState.DESTROY_SCHEDULED


def crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class _Key:
    versions: dict[str, tuple[bytes, Any]] = field(
        default_factory=dict
    )  # name -> (material, state)
    primary: str = ""
    members: set[str] = field(default_factory=set)


class FakeCloudKms:
    def __init__(self, cert: ServerCert, host: str = "127.0.0.1") -> None:
        self.keys: dict[str, _Key] = {}
        self.rings: dict[str, set[str]] = {}  # key ring -> who may create keys in it
        self.principals: dict[str, bytes] = {}  # client_email -> public key PEM
        self.calls: dict[str, int] = {}
        self.down = False
        self.delay = 0.0
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handlers = {
            "Encrypt": self._method(self.encrypt, kms_v1.EncryptRequest, kms_v1.EncryptResponse),
            "Decrypt": self._method(self.decrypt, kms_v1.DecryptRequest, kms_v1.DecryptResponse),
            "GetCryptoKey": self._method(
                self.get_crypto_key, kms_v1.GetCryptoKeyRequest, kms_v1.CryptoKey
            ),
            "GetKeyRing": self._method(self.get_key_ring, kms_v1.GetKeyRingRequest, kms_v1.KeyRing),
            "CreateCryptoKey": self._method(
                self.create_crypto_key, kms_v1.CreateCryptoKeyRequest, kms_v1.CryptoKey
            ),
            "DestroyCryptoKeyVersion": self._method(
                self.destroy_crypto_key_version,
                kms_v1.DestroyCryptoKeyVersionRequest,
                kms_v1.CryptoKeyVersion,
            ),
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )
        creds = grpc.ssl_server_credentials([(cert.key_pem, cert.cert_pem)])
        self.port = self._server.add_secure_port(f"{host}:0", creds)
        self.endpoint = f"{'localhost' if host == '127.0.0.1' else host}:{self.port}"

    # -- administration, as a test's project owner would do it ---------------------------

    def start(self) -> FakeCloudKms:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def add_principal(self, email: str, public_pem: bytes) -> None:
        self.principals[email] = public_pem

    def create_key(self, name: str, *members: str) -> str:
        with self._lock:
            key = self.keys.setdefault(name, _Key())
            key.members.update(members)
        return self.rotate(name)

    def create_ring(self, name: str, *members: str) -> None:
        with self._lock:
            self.rings.setdefault(name, set()).update(members)

    def rotate(self, name: str) -> str:
        with self._lock:
            key = self.keys[name]
            version = f"{name}/cryptoKeyVersions/{len(key.versions) + 1}"
            key.versions[version] = (os.urandom(32), ENABLED)
            key.primary = version
            return version

    def set_state(self, version: str, state: Any) -> None:
        with self._lock:
            key = self.keys[version.split("/cryptoKeyVersions/")[0]]
            material, _ = key.versions[version]
            key.versions[version] = (b"" if state == DESTROYED else material, state)

    # -- the service -------------------------------------------------------------------

    def _method(self, impl: Any, request: Any, response: Any) -> grpc.RpcMethodHandler:
        def handle(req: Any, context: grpc.ServicerContext) -> Any:
            name = impl.__name__
            with self._lock:
                self.calls[name] = self.calls.get(name, 0) + 1
            if self.delay:
                threading.Event().wait(self.delay)
            if self.down:
                context.abort(grpc.StatusCode.UNAVAILABLE, "the service is unavailable")
            try:
                caller = self._caller(context)
                return impl(req, caller)
            except Refused as refused:
                context.abort(refused.code, refused.message)

        return grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=request.deserialize, response_serializer=response.serialize
        )

    def _caller(self, context: grpc.ServicerContext) -> str:
        metadata = dict(context.invocation_metadata())
        token = str(metadata.get("authorization", "")).removeprefix("Bearer ")
        try:
            unverified = jwt.decode(token, verify=False)  # type: ignore[no-untyped-call]
            public = self.principals[unverified["iss"]]
            claims = jwt.decode(token, certs=public, verify=True)  # type: ignore[no-untyped-call]
        except (KeyError, ValueError) as exc:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, f"invalid credentials: {exc}") from None
        return str(claims["iss"])

    def _key(self, name: str, caller: str) -> _Key:
        key = self.keys.get(name)
        if key is None:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"CryptoKey {name} not found.")
        if caller not in key.members:
            raise Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied on {name}",
            )
        return key

    def encrypt(self, req: Any, caller: str) -> Any:
        key = self._key(req.name, caller)
        if req.plaintext_crc32c is not None and crc(req.plaintext) != req.plaintext_crc32c:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "plaintext_crc32c did not match")
        aad = req.additional_authenticated_data
        if req.additional_authenticated_data_crc32c is not None and (
            crc(aad) != req.additional_authenticated_data_crc32c
        ):
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT, "additional_authenticated_data_crc32c mismatch"
            )
        material, state = key.versions[key.primary]
        if state != ENABLED:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, f"{key.primary} is not enabled")
        nonce = os.urandom(12)
        label = key.primary.encode()
        ciphertext = (
            struct.pack(">H", len(label))
            + label
            + nonce
            + AESGCM(material).encrypt(nonce, req.plaintext, aad)
        )
        return kms_v1.EncryptResponse(
            name=key.primary,
            ciphertext=ciphertext,
            ciphertext_crc32c=crc(ciphertext),
            verified_plaintext_crc32c=req.plaintext_crc32c is not None,
            verified_additional_authenticated_data_crc32c=(
                req.additional_authenticated_data_crc32c is not None
            ),
        )

    def decrypt(self, req: Any, caller: str) -> Any:
        key = self._key(req.name, caller)
        blob = req.ciphertext
        if req.ciphertext_crc32c is not None and crc(blob) != req.ciphertext_crc32c:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "ciphertext_crc32c did not match")
        aad = req.additional_authenticated_data
        if req.additional_authenticated_data_crc32c is not None and (
            crc(aad) != req.additional_authenticated_data_crc32c
        ):
            raise Refused(
                grpc.StatusCode.INVALID_ARGUMENT, "additional_authenticated_data_crc32c mismatch"
            )
        failed = Refused(
            grpc.StatusCode.INVALID_ARGUMENT, "Decryption failed: the ciphertext is invalid."
        )
        if len(blob) < 2:
            raise failed
        (length,) = struct.unpack(">H", blob[:2])
        version = blob[2 : 2 + length].decode("utf-8", "replace")
        if version not in key.versions:
            raise failed
        material, state = key.versions[version]
        if state != ENABLED:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, f"{version} is not enabled")
        nonce, sealed = blob[2 + length : 14 + length], blob[14 + length :]
        try:
            plaintext = AESGCM(material).decrypt(nonce, sealed, aad)
        except (InvalidTag, ValueError):
            raise failed from None
        return kms_v1.DecryptResponse(
            plaintext=plaintext,
            plaintext_crc32c=crc(plaintext),
            used_primary=version == key.primary,
        )

    def get_key_ring(self, req: Any, caller: str) -> Any:
        if caller not in self.rings.get(req.name, set()):
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, f"Permission denied on {req.name}")
        return kms_v1.KeyRing(name=req.name)

    def create_crypto_key(self, req: Any, caller: str) -> Any:
        if caller not in self.rings.get(req.parent, set()):
            raise Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Permission 'cloudkms.cryptoKeys.create' denied on {req.parent}",
            )
        name = f"{req.parent}/cryptoKeys/{req.crypto_key_id}"
        if name in self.keys:
            raise Refused(grpc.StatusCode.ALREADY_EXISTS, f"CryptoKey {name} already exists.")
        version = self.create_key(name, caller)
        return kms_v1.CryptoKey(
            name=name,
            primary=kms_v1.CryptoKeyVersion(name=version, state=ENABLED),
            purpose=kms_v1.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT,
        )

    def destroy_crypto_key_version(self, req: Any, caller: str) -> Any:
        self._key(req.name.split("/cryptoKeyVersions/")[0], caller)
        # Cloud KMS schedules destruction (24 h at the least); the version is unusable
        # from now on and restorable until then
        with self._lock:
            key = self.keys[req.name.split("/cryptoKeyVersions/")[0]]
            if req.name not in key.versions:
                raise Refused(grpc.StatusCode.NOT_FOUND, f"{req.name} not found.")
            material, _ = key.versions[req.name]
            key.versions[req.name] = (material, DESTROY_SCHEDULED)
        return kms_v1.CryptoKeyVersion(name=req.name, state=DESTROY_SCHEDULED)

    def get_crypto_key(self, req: Any, caller: str) -> Any:
        key = self._key(req.name, caller)
        _, state = key.versions[key.primary]
        return kms_v1.CryptoKey(
            name=req.name,
            primary=kms_v1.CryptoKeyVersion(name=key.primary, state=state),
            purpose=kms_v1.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT,
        )


def service_account(
    email: str = "keykeeper@test-project.iam.gserviceaccount.com",
) -> tuple[dict[str, str], bytes]:
    """A service-account key file (as a Secret would hold it) and its public key PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info = {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": os.urandom(8).hex(),
        "private_key": pem,
        "client_email": email,
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return info, public
