"""The provider instances the policies name, built once and kept.

Instances are cached by their whole configuration (provider, keyRef, options, and the
resourceVersion of the credentials Secret), so a changed credential builds a new
client and an unchanged one costs nothing. Every remote provider is wrapped in its
guard (rate limit, breaker, data-key cache). The credentials Secret is read by a
function the runtime injects (``kube.credentials``): this layer makes no API call.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping

from keykeeper.api.models import Kms
from keykeeper.api.provider_options import CloudOptions, ProviderId, parse_options
from keykeeper.errors import InvalidProviderConfig, KeykeeperError
from keykeeper.providers.base import KeyProvider, ProviderSettings
from keykeeper.providers.guard import CallObserver, Guarded
from keykeeper.providers.local import LocalProvider
from keykeeper.providers.registry import Registry

log = logging.getLogger("keykeeper.vault")

PROVIDER_CACHE = 64
HSM_RATE = 500  # calls/s: an HSM's own limit is lower; this only bounds a stampede
HSM_TIMEOUT = 5.0

# (namespace, name) -> (the Secret's data as text, its resourceVersion), or None if absent
CredentialsReader = Callable[[str, str], Awaitable[tuple[dict[str, str], str] | None]]


async def _no_credentials(namespace: str, name: str) -> tuple[dict[str, str], str] | None:
    return None


class ProviderCache:
    def __init__(
        self,
        registry: Registry,
        local: LocalProvider,
        read_credentials: CredentialsReader = _no_credentials,
        *,
        on_recovery: Callable[[], None] | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self.local = local
        self._registry = registry
        self._read_credentials = read_credentials
        self._on_recovery = on_recovery  # called (from a probe's thread) when a KMS is back
        self._observer = observer
        # (spec.kms) -> (credentials Secret resourceVersion, provider); bounded, and a
        # provider dropped from it (evicted, or its credentials changed) is closed
        self._providers: OrderedDict[str, tuple[str, KeyProvider]] = OrderedDict()

    def provider(
        self, kms: Kms, credentials: Mapping[str, str] | None = None, credentials_version: str = ""
    ) -> KeyProvider:
        if kms.provider == ProviderId.LOCAL:
            return self.local
        cache_key = json.dumps([kms.provider, kms.key_ref, sorted(kms.options.items())])
        cached = self._providers.get(cache_key)
        if cached is not None and cached[0] == credentials_version:
            self._providers.move_to_end(cache_key)
            return cached[1]
        settings = ProviderSettings(kms.key_ref, dict(credentials or {}), dict(kms.options))
        provider = guarded(
            self._registry.create(kms.provider, settings), kms, self._on_recovery, self._observer
        )
        if cached is not None:
            _close(cached[1])
        self._providers[cache_key] = (credentials_version, provider)
        while len(self._providers) > PROVIDER_CACHE:
            _close(self._providers.popitem(last=False)[1][1])
        return provider

    async def provider_for(self, kms: Kms, namespace: str) -> KeyProvider:
        """The provider a policy names, with its credentials Secret read from the API.

        ``credentialsSecretRef`` without a namespace means the operator's namespace. The
        Secret's resourceVersion is part of the cache key, so rotated credentials take
        effect at the next reconcile.
        """
        if kms.provider == ProviderId.LOCAL:
            return self.provider(kms)  # cached after the first call: no I/O
        if kms.credentials_secret_ref is None:
            return await asyncio.to_thread(self.provider, kms)
        ref = kms.credentials_secret_ref
        secret_ns = ref.namespace or namespace
        found = await self._read_credentials(secret_ns, ref.name)
        if found is None:
            raise InvalidProviderConfig(
                f"the credentials Secret {secret_ns}/{ref.name} does not exist"
            )
        credentials, version = found
        return await asyncio.to_thread(self.provider, kms, credentials, version)

    def health(self) -> dict[tuple[str, str], bool]:
        """(provider id, the policy's keyRef) -> whether that provider is down
        (``keykeeper_provider_up``; a keyRef the platform team wrote, not a tenant)."""
        down: dict[tuple[str, str], bool] = {}
        for cache_key, (_, provider) in list(self._providers.items()):
            place = (str(provider.provider_id), str(json.loads(cache_key)[1]))
            down[place] = down.get(place, False) or (
                isinstance(provider, Guarded) and provider.down
            )
        return down

    def close(self) -> None:
        while self._providers:
            _close(self._providers.popitem()[1][1])


def guarded(
    provider: KeyProvider,
    kms: Kms,
    on_recovery: Callable[[], None] | None = None,
    observer: CallObserver | None = None,
) -> KeyProvider:
    """A remote provider behind its rate limit, breaker and data-key cache (``guard``)."""
    try:
        options = parse_options(kms.provider, dict(kms.options))
    except ValueError:  # a provider registered without typed options
        options = None
    if isinstance(options, CloudOptions):
        rate, burst, timeout = options.rate, options.burst, options.timeout
    else:
        rate, burst, timeout = HSM_RATE, HSM_RATE, HSM_TIMEOUT
    return Guarded(
        provider,
        rate=rate,
        burst=burst,
        timeout=timeout,
        on_recovery=on_recovery,
        observer=observer,
    )


def _close(provider: KeyProvider) -> None:
    try:
        provider.close()
    except KeykeeperError as exc:
        log.warning("closing a %s provider: %s", provider.provider_id, exc)
