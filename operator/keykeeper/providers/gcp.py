"""The Google Cloud KMS provider (google-cloud-kms over gRPC).

``settings.key_ref`` is a CryptoKey resource name
(``projects/P/locations/L/keyRings/R/cryptoKeys/K``). A data key is wrapped with
``Encrypt`` under the key's primary version, with the envelope's provider context as
``additional_authenticated_data``; the KEK id recorded in the envelope is the
CryptoKeyVersion Cloud KMS answers with, so the envelope says which version holds it
and older versions keep opening after a Cloud KMS rotation. ``Decrypt`` names the
CryptoKey (Cloud KMS finds the version in the ciphertext).

Integrity fields are used both ways as Google documents: the request carries CRC32C
of the plaintext, AAD and ciphertext; the response's ``verified_*`` flags and
checksums are checked, and a mismatch is a transient ``ProviderUnavailable``
(corrupted in transit: retry), never a stored envelope.

``options.per-key: "true"`` makes ``keyRef`` a key ring
(``projects/P/locations/L/keyRings/R``) in which every ApiKey gets its own CryptoKey,
``kk-<uid>``, created on first use with the shortest destruction schedule Cloud KMS
allows (24 h). Erasure destroys that key's version: Cloud KMS makes it unusable at
once and destroys the material after the 24 h, during which
``RestoreCryptoKeyVersion`` could undo it.

Credentials: Application Default Credentials (workload identity, metadata server), or
a ``credentialsSecretRef`` with ``service-account.json``. ``options.endpoint``
(host:port) names a private endpoint; the tests' fake is reached this way, with its
CA trusted through gRPC's standard ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import google_crc32c
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.cloud import kms_v1

from keykeeper.api.provider_options import Capability, GcpOptions
from keykeeper.crypto.envelope import WrappedKey
from keykeeper.errors import (
    IntegrityError,
    InvalidProviderConfig,
    KeyDisabled,
    ProviderUnavailable,
)
from keykeeper.providers.base import (
    KeyProvider,
    ProviderSettings,
    encode_context,
    per_key_capabilities,
    resource_uid,
    typed_options,
)

SCOPES = ["https://www.googleapis.com/auth/cloudkms"]
_VERSIONS = "/cryptoKeyVersions/"


def _crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


class GcpKmsProvider(KeyProvider):
    provider_id = "gcp"

    def __init__(self, client: Any, key_name: str, options: GcpOptions) -> None:
        self._kms = client
        self._key = key_name  # a CryptoKey, or with per-key the key ring
        self._timeout = options.timeout
        self._per_key = options.per_key
        self._made: set[str] = set()  # per-key CryptoKeys known to exist

    @property
    def capabilities(self) -> frozenset[Capability]:
        return per_key_capabilities(self._per_key)

    def current_kek_id(self) -> str:
        if self._per_key:
            return f"{self._key}/cryptoKeys/kk-<uid>"
        with _translated(self._key):
            key = self._kms.get_crypto_key(
                request={"name": self._key}, retry=None, timeout=self._timeout
            )
        return str(key.primary.name)

    def wrap(self, dek: bytes, context: Mapping[str, str]) -> WrappedKey:
        key = self._per_key_name(context) if self._per_key else self._key
        aad = encode_context(key, context)
        with _translated(key):
            answer = self._kms.encrypt(
                request={
                    "name": key,
                    "plaintext": dek,
                    "additional_authenticated_data": aad,
                    "plaintext_crc32c": _crc(dek),
                    "additional_authenticated_data_crc32c": _crc(aad),
                },
                retry=None,  # no SDK retry: the guard and the reconciler retry
                timeout=self._timeout,
            )
        if (
            not answer.verified_plaintext_crc32c
            or not answer.verified_additional_authenticated_data_crc32c
            or answer.ciphertext_crc32c != _crc(answer.ciphertext)
        ):
            raise ProviderUnavailable(f"Encrypt under {key} was corrupted in transit")
        if not str(answer.name).startswith(key + _VERSIONS):
            raise IntegrityError(f"Cloud KMS answered with a version of another key: {answer.name}")
        return WrappedKey(str(answer.name), bytes(answer.ciphertext))

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        key = wrapped.kek_id.split(_VERSIONS)[0]
        if _VERSIONS not in wrapped.kek_id or not key.startswith("projects/"):
            raise IntegrityError(f"{wrapped.kek_id} is not a CryptoKeyVersion name")
        aad = encode_context(key, context)
        with _translated(wrapped.kek_id):
            answer = self._kms.decrypt(
                request={
                    "name": key,
                    "ciphertext": wrapped.blob,
                    "additional_authenticated_data": aad,
                    "ciphertext_crc32c": _crc(wrapped.blob),
                    "additional_authenticated_data_crc32c": _crc(aad),
                },
                retry=None,  # no SDK retry: the guard and the reconciler retry
                timeout=self._timeout,
            )
        if answer.plaintext_crc32c != _crc(answer.plaintext):
            raise ProviderUnavailable(f"Decrypt under {wrapped.kek_id} was corrupted in transit")
        return bytes(answer.plaintext)

    def check(self) -> None:
        if self._per_key:
            with _translated(self._key):
                self._kms.get_key_ring(
                    request={"name": self._key}, retry=None, timeout=self._timeout
                )
            return
        with _translated(self._key):
            key = self._kms.get_crypto_key(
                request={"name": self._key}, retry=None, timeout=self._timeout
            )
        if key.primary.state != kms_v1.CryptoKeyVersion.CryptoKeyVersionState.ENABLED:
            raise KeyDisabled(f"the primary version of {self._key} is {key.primary.state.name}")

    def destroy_kek(self, kek_id: str) -> bool:
        """Schedule the destruction of a per-key CryptoKey's version (unusable at once,
        destroyed after 24 h); False for a shared key."""
        if not self._per_key or not kek_id.startswith(f"{self._key}/cryptoKeys/kk-"):
            return False
        with _translated(kek_id):
            self._kms.destroy_crypto_key_version(
                request={"name": kek_id}, retry=None, timeout=self._timeout
            )
        return True

    def close(self) -> None:
        self._kms.transport.close()

    def _per_key_name(self, context: Mapping[str, str]) -> str:
        uid = resource_uid(context)
        name = f"{self._key}/cryptoKeys/kk-{uid}"
        if name in self._made:
            return name
        # AlreadyExists: made by an earlier reconcile (or another replica)
        with _translated(name), contextlib.suppress(gexc.AlreadyExists):
            self._kms.create_crypto_key(
                request={
                    "parent": self._key,
                    "crypto_key_id": f"kk-{uid}",
                    "crypto_key": {
                        "purpose": kms_v1.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT,
                        "destroy_scheduled_duration": {"seconds": 86400},
                        "labels": {"managed-by": "keykeeper"},
                    },
                },
                retry=None,
                timeout=self._timeout,
            )
        self._made.add(name)
        return name


@contextmanager
def _translated(name: str) -> Iterator[None]:
    try:
        yield
    except gexc.InvalidArgument as exc:
        raise IntegrityError(
            f"Cloud KMS refused the wrapped data key under {name}: {exc.message}"
        ) from None
    except (gexc.FailedPrecondition, gexc.NotFound) as exc:
        raise KeyDisabled(f"{name} is not usable: {exc.message}") from None
    except (gexc.PermissionDenied, gexc.Unauthenticated) as exc:
        raise InvalidProviderConfig(
            f"Cloud KMS denied the operator's identity the use of {name} ({exc.grpc_status_code})"
        ) from None
    except (gexc.GoogleAPIError, auth_exc.TransportError) as exc:
        raise ProviderUnavailable(f"Cloud KMS failed for {name} ({type(exc).__name__})") from None
    except auth_exc.GoogleAuthError as exc:
        raise InvalidProviderConfig(f"Google credentials failed: {type(exc).__name__}") from None


def create(settings: ProviderSettings) -> GcpKmsProvider:
    options = typed_options("gcp", settings, GcpOptions)
    ring = settings.key_ref.startswith("projects/") and "/keyRings/" in settings.key_ref
    if options.per_key and (not ring or "/cryptoKeys/" in settings.key_ref):
        raise InvalidProviderConfig(
            "with per-key, the gcp provider needs keyRef: projects/P/locations/L/keyRings/R"
        )
    if not options.per_key and (not ring or "/cryptoKeys/" not in settings.key_ref):
        raise InvalidProviderConfig(
            "the gcp provider needs keyRef: projects/P/locations/L/keyRings/R/cryptoKeys/K"
        )
    client_options = {"api_endpoint": options.endpoint} if options.endpoint else None
    try:
        client = kms_v1.KeyManagementServiceClient(
            credentials=_credentials(settings.credentials), client_options=client_options
        )
    except auth_exc.GoogleAuthError as exc:
        raise InvalidProviderConfig(f"Google credentials failed: {type(exc).__name__}") from None
    return GcpKmsProvider(client, settings.key_ref, options)


def _credentials(credentials: Mapping[str, str]) -> Any:
    import google.auth
    from google.oauth2 import service_account

    text = credentials.get("service-account.json")
    if not text:
        found, _ = google.auth.default(scopes=SCOPES)  # workload identity, metadata server
        return found
    try:
        info = json.loads(text)
        return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=SCOPES
        )
    except (ValueError, KeyError, TypeError):
        raise InvalidProviderConfig(
            "service-account.json in the credentials Secret is not a service-account key"
        ) from None
