"""The Azure Key Vault provider (azure-keyvault-keys, azure-identity).

``settings.key_ref`` is a key identifier, ``https://<vault>/keys/<name>`` (wrap under
the key's newest version, looked up at most once a minute) or
``https://<vault>/keys/<name>/<version>`` (pinned). A data key is wrapped with
RSA-OAEP-256; the KEK id recorded in the envelope is the *versioned* key id, so an
envelope keeps opening under its own version after a Key Vault rotation, for as long
as that version stays enabled. Key Vault's wrap has no additional authenticated data:
the binding of a wrapped key to its resource is the envelope's own AAD and key
commitment (a wrapped key spliced into another envelope fails there).

``options.per-key: "true"`` makes ``keyRef`` the vault (``https://<vault>/``), in
which every ApiKey gets its own RSA key, ``kk-<uid>``, created on first use. Erasure
deletes that key. Key Vault's soft delete keeps it recoverable for the vault's
retention period (7 to 90 days) unless someone with the purge permission purges it;
it is unusable from the moment it is deleted. keykeeper does not purge.

Unwrap goes only to the vault ``key_ref`` names (scheme, host and port): a KEK id
naming another host is refused before any token is sent.

Credentials: ``DefaultAzureCredential`` (workload identity, managed identity), or a
``credentialsSecretRef`` with ``tenant-id``, ``client-id`` and ``client-secret``.
``options.authority`` names another Entra ID authority (sovereign clouds; the tests'
fake); ``options.verify-challenge-resource: "false"`` turns off the SDK's check that
the vault's auth challenge names the vault's own domain, for vaults outside Azure's
domains (Azure Stack Hub; the tests' fake on localhost). Leave it on otherwise.
The identity needs the keys permissions get, wrapKey and unwrapKey (the role
"Key Vault Crypto User" scoped to the one key).
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from azure.core import exceptions as aexc
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

from keykeeper.api.provider_options import AzureOptions, Capability
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
    per_key_capabilities,
    resource_uid,
    typed_options,
)

_CURRENT_TTL = 60.0  # seconds a looked-up newest version is used before looking again


class AzureKeyVaultProvider(KeyProvider):
    provider_id = "azure"

    def __init__(self, credential: Any, key_ref: str, options: AzureOptions) -> None:
        self._credential = credential
        parsed = urllib.parse.urlsplit(key_ref)
        parts = [p for p in parsed.path.split("/") if p]
        self._vault = f"https://{parsed.netloc}"
        self._per_key = options.per_key
        if options.per_key:
            if parsed.scheme != "https" or parts:
                raise InvalidProviderConfig(
                    "with per-key, the azure provider needs keyRef: https://<vault>/"
                )
            self._name, self._pinned = "", None
        else:
            if parsed.scheme != "https" or len(parts) not in (2, 3) or parts[0] != "keys":
                raise InvalidProviderConfig(
                    "the azure provider needs keyRef: https://<vault>/keys/<name>[/<version>]"
                )
            self._name = parts[1]
            self._pinned = parts[2] if len(parts) == 3 else None
        self._transport = {
            "connection_timeout": options.timeout,
            "read_timeout": options.timeout,
            "retry_total": 0,  # no SDK retry: the guard and the reconciler retry
            "verify_challenge_resource": options.verify_challenge_resource,
        }
        self._keys = KeyClient(self._vault, credential, **self._transport)
        self._crypto: dict[str, CryptographyClient] = {}
        self._current: tuple[float, str] | None = None
        self._made: dict[str, str] = {}  # per-key: key name -> its versioned id
        self._lock = threading.Lock()

    @property
    def capabilities(self) -> frozenset[Capability]:
        return per_key_capabilities(self._per_key)

    def current_kek_id(self) -> str:
        if self._per_key:
            return f"{self._vault}/keys/kk-<uid>"
        if self._pinned:
            return f"{self._vault}/keys/{self._name}/{self._pinned}"
        with self._lock:
            if self._current and time.monotonic() - self._current[0] < _CURRENT_TTL:
                return self._current[1]
        with _translated(self._name):
            kid = str(self._keys.get_key(self._name).id)
        with self._lock:
            self._current = (time.monotonic(), kid)
        return kid

    def wrap(self, dek: bytes, context: Mapping[str, str]) -> WrappedKey:
        kid = self._per_key_id(context) if self._per_key else self.current_kek_id()
        with _translated(kid):
            result = self._client(kid).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, dek)
        return WrappedKey(kid, bytes(result.encrypted_key))

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        with _translated(wrapped.kek_id):
            result = self._client(wrapped.kek_id).unwrap_key(
                KeyWrapAlgorithm.rsa_oaep_256, wrapped.blob
            )
        return bytes(result.key)

    def check(self) -> None:
        if self._per_key:
            with _translated(self._vault):
                next(iter(self._keys.list_properties_of_keys(max_page_size=1)), None)
            return
        kid = self.current_kek_id()
        with _translated(kid):
            key = self._keys.get_key(self._name, kid.rsplit("/", 1)[-1])
        if not key.properties.enabled:
            raise KeyDisabled(f"the Key Vault key {kid} is disabled")

    def destroy_kek(self, kek_id: str) -> bool:
        """Delete a per-key Key Vault key (soft delete: unusable at once, recoverable for
        the vault's retention period); False for a shared key."""
        name = _name_of(kek_id)
        if not self._per_key or not name.startswith("kk-") or not kek_id.startswith(self._vault):
            return False
        with _translated(kek_id), contextlib.suppress(aexc.ResourceNotFoundError):  # gone already
            self._keys.begin_delete_key(name).wait(timeout=self._transport["read_timeout"])
        with self._lock:
            self._made.pop(name, None)
            client = self._crypto.pop(kek_id, None)
        if client is not None:
            client.close()
        return True

    def close(self) -> None:
        for client in self._crypto.values():
            client.close()
        self._keys.close()

    def _per_key_id(self, context: Mapping[str, str]) -> str:
        uid = resource_uid(context)
        name = f"kk-{uid}"
        with self._lock:
            if name in self._made:
                return self._made[name]
        with _translated(f"{self._vault}/keys/{name}"):
            try:
                kid = str(self._keys.get_key(name).id)
            except aexc.ResourceNotFoundError:
                made = self._keys.create_rsa_key(
                    name, size=3072, key_operations=["wrapKey", "unwrapKey"]
                )
                kid = str(made.id)
        with self._lock:
            self._made[name] = kid
        return kid

    def _client(self, kid: str) -> CryptographyClient:
        """The client of one key version, only inside the configured vault."""
        parsed = urllib.parse.urlsplit(kid)
        parts = [p for p in parsed.path.split("/") if p]
        mine = len(parts) == 3 and parts[0] == "keys"
        mine = mine and (parts[1].startswith("kk-") if self._per_key else parts[1] == self._name)
        if f"{parsed.scheme}://{parsed.netloc}" != self._vault or not mine:
            raise KeyDisabled(f"{kid} is not a key version this policy's vault key holds")
        with self._lock:
            client = self._crypto.get(kid)
            if client is None:
                client = CryptographyClient(kid, self._credential, **self._transport)
                self._crypto[kid] = client
            return client


@contextmanager
def _translated(kid: str) -> Iterator[None]:
    try:
        yield
    except aexc.ClientAuthenticationError as exc:
        raise InvalidProviderConfig(
            f"Key Vault did not accept the operator's identity for {kid} ({exc.status_code})"
        ) from None
    except aexc.ResourceNotFoundError:
        raise KeyDisabled(f"the Key Vault key {kid} does not exist") from None
    except aexc.HttpResponseError as exc:
        status, code = exc.status_code or 0, _inner_code(exc)
        if status == 403 and code == "KeyDisabled":
            raise KeyDisabled(f"the Key Vault key {kid} is disabled") from None
        if status in (401, 403):
            raise InvalidProviderConfig(
                f"Key Vault denied the operator's identity the use of {kid} ({status})"
            ) from None
        if status == 400:
            raise IntegrityError(
                f"Key Vault refused the wrapped data key under {kid}: it does not decrypt"
            ) from None
        raise ProviderUnavailable(f"Key Vault failed for {kid} ({status})") from None
    except aexc.AzureError as exc:  # no connection, timeouts
        raise ProviderUnavailable(
            f"Key Vault unreachable for {kid} ({type(exc).__name__})"
        ) from None


def _name_of(kid: str) -> str:
    parts = [p for p in urllib.parse.urlsplit(kid).path.split("/") if p]
    return parts[1] if len(parts) >= 2 and parts[0] == "keys" else ""


def _inner_code(exc: aexc.HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    inner = getattr(error, "innererror", None) or {}
    return str(inner.get("code", "")) if isinstance(inner, dict) else ""


def create(settings: ProviderSettings) -> AzureKeyVaultProvider:
    options = typed_options("azure", settings, AzureOptions)
    return AzureKeyVaultProvider(
        _credential(settings.credentials, options), settings.key_ref, options
    )


def _credential(credentials: Mapping[str, str], options: AzureOptions) -> Any:
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    extra: dict[str, Any] = {}
    if options.authority:
        extra = {"authority": options.authority, "disable_instance_discovery": True}
    wanted = ("tenant-id", "client-id", "client-secret")
    if not any(credentials.get(k) for k in wanted):
        return DefaultAzureCredential(**extra)  # workload identity, managed identity
    if not all(credentials.get(k) for k in wanted):
        raise InvalidProviderConfig(
            "the credentials Secret needs tenant-id, client-id and client-secret together"
        )
    return ClientSecretCredential(
        credentials["tenant-id"], credentials["client-id"], credentials["client-secret"], **extra
    )
