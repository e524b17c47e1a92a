"""The provider registry: provider id -> the module that builds it.

Providers are imported only when first asked for, so an SDK (boto3, the Azure and
Google clients, python-pkcs11) is needed only by operators that use it; a missing one
is a clear ``InvalidProviderConfig`` naming the extra to install. Adding a provider is
one new file with a ``create(settings)`` function, plus one ``register`` line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from keykeeper.errors import InvalidProviderConfig
from keykeeper.providers.base import KeyProvider, ProviderSettings

Factory = Callable[[ProviderSettings], KeyProvider]


@dataclass(frozen=True)
class _Entry:
    module: str
    extra: str | None


class Registry:
    """Maps provider ids to lazily imported factories."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def register(self, provider_id: str, module: str, *, extra: str | None = None) -> None:
        if provider_id in self._entries:
            raise ValueError(f"provider {provider_id!r} is registered already")
        self._entries[provider_id] = _Entry(module, extra)

    def ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def factory(self, provider_id: str) -> Factory:
        entry = self._entries.get(provider_id)
        if entry is None:
            known = ", ".join(self.ids())
            raise InvalidProviderConfig(f"unknown provider {provider_id!r}; known: {known}")
        try:
            module = importlib.import_module(entry.module)
        except ImportError as exc:
            hint = f": pip install 'keykeeper[{entry.extra}]'" if entry.extra else ""
            raise InvalidProviderConfig(
                f"the {provider_id} provider cannot load ({exc.name or exc}){hint}"
            ) from None
        create: Factory = module.create
        return create

    def create(self, provider_id: str, settings: ProviderSettings) -> KeyProvider:
        return self.factory(provider_id)(settings)


registry = Registry()
registry.register("local", "keykeeper.providers.local")
registry.register("pkcs11", "keykeeper.providers.pkcs11", extra="pkcs11")
registry.register("aws", "keykeeper.providers.aws", extra="aws")
registry.register("azure", "keykeeper.providers.azure", extra="azure")
registry.register("gcp", "keykeeper.providers.gcp", extra="gcp")
