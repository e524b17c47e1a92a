"""Sealing and opening values for ApiKeys: the providers each policy names, the master
key's subkeys (fingerprints, audit MAC), and the cluster's sealing keys.

Provider instances are cached by their whole configuration (provider, keyRef,
options, and the resourceVersion of the credentials Secret), so a changed credential
builds a new client and an unchanged one costs nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from keykeeper.api.models import Kms
from keykeeper.api.provider_options import CloudOptions, parse_options
from keykeeper.crypto.envelope import Binding, KeyWrapper, open_envelope, parse, seal_envelope
from keykeeper.crypto.kdf import MasterKey, Purpose, fingerprint, ownership_proof
from keykeeper.crypto.sealed import SealingKeyPair, open_sealed
from keykeeper.crypto.sealed import key_id_of as key_id_of_sealed
from keykeeper.errors import InvalidProviderConfig, KeyDisabled, KeykeeperError
from keykeeper.kube.client import Kube
from keykeeper.providers import KeyProvider, ProviderSettings, Registry
from keykeeper.providers.guard import Guarded
from keykeeper.providers.local import LocalProvider

log = logging.getLogger("keykeeper.vault")


@dataclass(frozen=True)
class Sealed:
    envelope: bytes
    kms_key_id: str
    provider: str


class Vault:
    def __init__(self, master: MasterKey, registry: Registry) -> None:
        self.local = LocalProvider(master)
        self._fingerprint_key = master.subkey(Purpose.FINGERPRINT)
        self.audit_key = master.subkey(Purpose.AUDIT_MAC)
        self._ownership_key = master.subkey(Purpose.OWNERSHIP)
        self._registry = registry
        # (spec.kms) -> (credentials Secret resourceVersion, provider); bounded, and a
        # provider dropped from it (evicted, or its credentials changed) is closed
        self._providers: OrderedDict[str, tuple[str, KeyProvider]] = OrderedDict()
        self.sealing_keys: dict[str, SealingKeyPair] = {}  # those that may open (see sealing)
        self.sealing_refusal: Callable[[str], KeykeeperError | None] | None = None
        # called (from a probe's thread) when a provider that was down answers again
        self.on_provider_recovery: Callable[[], None] | None = None

    def _recovered(self) -> None:
        if self.on_provider_recovery is not None:
            self.on_provider_recovery()

    def fingerprint(self, value: bytes) -> str:
        return fingerprint(self._fingerprint_key, value)

    def prove(
        self, key_uid: str, key_namespace: str, key_name: str, namespace: str, name: str
    ) -> str:
        """The ownership proof of a projected Secret (see ``projection``)."""
        return ownership_proof(
            self._ownership_key, key_uid, key_namespace, key_name, namespace, name
        )

    def provider(
        self, kms: Kms, credentials: Mapping[str, str] | None = None, credentials_version: str = ""
    ) -> KeyProvider:
        if kms.provider == "local":
            return self.local
        cache_key = json.dumps([kms.provider, kms.key_ref, sorted(kms.options.items())])
        cached = self._providers.get(cache_key)
        if cached is not None and cached[0] == credentials_version:
            self._providers.move_to_end(cache_key)
            return cached[1]
        settings = ProviderSettings(kms.key_ref, dict(credentials or {}), dict(kms.options))
        provider = guarded(self._registry.create(kms.provider, settings), kms, self._recovered)
        if cached is not None:
            _close(cached[1])
        self._providers[cache_key] = (credentials_version, provider)
        while len(self._providers) > PROVIDER_CACHE:
            _close(self._providers.popitem(last=False)[1][1])
        return provider

    async def provider_for(self, kms: Kms, kube: Kube, namespace: str) -> KeyProvider:
        """The provider a policy names, with its credentials Secret read from the API.

        ``credentialsSecretRef`` without a namespace means the operator's namespace. The
        Secret's resourceVersion is part of the cache key, so rotated credentials take
        effect at the next reconcile.
        """
        if kms.provider == "local":
            return self.provider(kms)  # cached after the first call: no I/O
        if kms.credentials_secret_ref is None:
            return await asyncio.to_thread(self.provider, kms)
        ref = kms.credentials_secret_ref
        secret_ns = ref.namespace or namespace
        found = await kube.get_secret(secret_ns, ref.name)
        if found is None:
            raise InvalidProviderConfig(
                f"the credentials Secret {secret_ns}/{ref.name} does not exist"
            )
        credentials = {
            key: base64.b64decode(value).decode("utf-8", "replace")
            for key, value in (found.get("data") or {}).items()
        }
        version = str(found["metadata"].get("resourceVersion", ""))
        return await asyncio.to_thread(self.provider, kms, credentials, version)

    async def seal(self, value: bytes, binding: Binding, provider: KeyProvider) -> Sealed:
        if provider.in_process:
            envelope = seal_envelope(value, binding, provider)
        else:
            envelope = await asyncio.to_thread(seal_envelope, value, binding, provider)
        return Sealed(envelope, parse(envelope).wrapped.kek_id, provider.provider_id)

    async def open(self, envelope: bytes, binding: Binding, provider: KeyProvider) -> bytes:
        def resolve(provider_id: str) -> KeyWrapper:
            # only the provider the policy names: an envelope naming another one (even
            # local) is not opened behind the policy's back
            if provider_id == provider.provider_id:
                return provider
            raise KeyDisabled(
                f"the envelope was made by the {provider_id} provider, but the policy now "
                f"names {provider.provider_id}"
            )

        if provider.in_process:
            return open_envelope(envelope, binding, resolve)
        return await asyncio.to_thread(open_envelope, envelope, binding, resolve)

    def open_sealed_value(self, text: str, namespace: str, name: str) -> bytes:
        refused = self.sealing_refusal(key_id_of_sealed(text)) if self.sealing_refusal else None
        if refused is not None:
            raise refused
        return open_sealed(text, namespace, name, self.sealing_keys)

    def close(self) -> None:
        while self._providers:
            _close(self._providers.popitem()[1][1])


PROVIDER_CACHE = 64


def guarded(
    provider: KeyProvider, kms: Kms, on_recovery: Callable[[], None] | None = None
) -> KeyProvider:
    """A remote provider behind its rate limit, breaker and data-key cache (``guard``)."""
    try:
        options = parse_options(kms.provider, dict(kms.options))
    except ValueError:  # a provider registered without typed options
        options = None
    if isinstance(options, CloudOptions):
        return Guarded(
            provider,
            rate=options.rate,
            burst=options.burst,
            timeout=options.timeout,
            on_recovery=on_recovery,
        )
    return Guarded(
        provider, rate=HSM_RATE, burst=HSM_RATE, timeout=HSM_TIMEOUT, on_recovery=on_recovery
    )


HSM_RATE = 500  # calls/s: an HSM's own limit is lower; this only bounds a stampede
HSM_TIMEOUT = 5.0


def _close(provider: KeyProvider) -> None:
    try:
        provider.close()
    except KeykeeperError as exc:
        log.warning("closing a %s provider: %s", provider.provider_id, exc)
