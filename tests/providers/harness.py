"""How to stand each registered provider up against its real peer, and how to take
its key away. The conformance suite runs every variant here, and fails if a
registered provider has none, so a new provider cannot land untested."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from devtools.softhsm import Token

from keykeeper.crypto.envelope import WrappedKey
from keykeeper.crypto.kdf import MasterKey
from keykeeper.providers import KeyProvider, ProviderSettings, registry
from keykeeper.providers.local import LocalProvider


@dataclass(frozen=True)
class Variant:
    id: str
    provider_id: str
    make: Callable[[pytest.FixtureRequest], KeyProvider]
    # takes away the KEK behind one wrapped key, as a disabled or destroyed key would be
    disable: Callable[[KeyProvider, WrappedKey], None]


def _local(_: pytest.FixtureRequest) -> KeyProvider:
    return LocalProvider(MasterKey.generate(), previous=[MasterKey.generate()])


def _local_disable(provider: KeyProvider, wrapped: WrappedKey) -> None:
    assert isinstance(provider, LocalProvider)
    provider.disable(wrapped.kek_id)


def _pkcs11(mechanism: str, per_key: bool) -> Callable[[pytest.FixtureRequest], KeyProvider]:
    def make(request: pytest.FixtureRequest) -> KeyProvider:
        token: Token = request.getfixturevalue("softhsm_token")
        label = f"kek-{mechanism}-{'per-key' if per_key else 'shared'}"
        settings = ProviderSettings(
            key_ref=label,
            credentials={"pin": token.pin},
            options={
                "module": token.module,
                "token": token.label,
                "create": "true",
                "per-key": str(per_key).lower(),
                "mechanism": mechanism,
            },
        )
        return registry.create("pkcs11", settings)

    return make


def _pkcs11_destroy(provider: KeyProvider, wrapped: WrappedKey) -> None:
    assert provider.destroy_kek(wrapped.kek_id)


VARIANTS = (
    Variant("local", "local", _local, _local_disable),
    Variant("pkcs11-gcm", "pkcs11", _pkcs11("gcm", per_key=True), _pkcs11_destroy),
    Variant("pkcs11-kwp", "pkcs11", _pkcs11("kwp", per_key=True), _pkcs11_destroy),
    Variant("pkcs11-shared-kek", "pkcs11", _pkcs11("gcm", per_key=False), lambda p, w: None),
)
