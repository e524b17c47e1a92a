"""The provider cache, envelopes bound to the policy's provider, PKCS#11 settings a
policy author may not choose, and a master-key Secret that must not be overwritten."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from keykeeper.api.models import Kms
from keykeeper.crypto.envelope import Binding, WrappedKey, seal_envelope
from keykeeper.crypto.kdf import MasterKey
from keykeeper.errors import InvalidProviderConfig, KeyDisabled, KeykeeperError
from keykeeper.keys.bootstrap import load_master_key
from keykeeper.keys.keyring import Keyring
from keykeeper.providers import KeyProvider, ProviderSettings, Registry, registry
from keykeeper.providers.cache import PROVIDER_CACHE, ProviderCache

MASTER = MasterKey(b"m" * 32)


class Counting(KeyProvider):
    """A provider whose only job is to be made and closed (the cache under test)."""

    provider_id = "counting"
    closed: ClassVar[list[str]] = []

    def __init__(self, settings: ProviderSettings) -> None:
        self.name = f"{settings.key_ref}@{settings.credentials.get('v', '')}"

    def current_kek_id(self) -> str:
        return self.name

    def wrap(self, dek: bytes, context: Mapping[str, str]) -> WrappedKey:
        raise NotImplementedError

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        raise NotImplementedError

    def check(self) -> None:
        return None

    def close(self) -> None:
        Counting.closed.append(self.name)


def create(settings: ProviderSettings) -> Counting:
    return Counting(settings)


KEYRING = Keyring(MASTER)


@pytest.fixture
def vault() -> ProviderCache:
    own = Registry()
    own.register("counting", __name__)
    Counting.closed.clear()
    return ProviderCache(own, KEYRING.local)


def kms(key_ref: str) -> Kms:
    return Kms.model_construct(provider="counting", key_ref=key_ref, options={})  # type: ignore[arg-type]


def test_rotated_credentials_close_the_old_client(vault: ProviderCache) -> None:
    first = vault.provider(kms("a"), {"v": "1"}, "rv1")
    assert vault.provider(kms("a"), {"v": "1"}, "rv1") is first
    second = vault.provider(kms("a"), {"v": "2"}, "rv2")
    assert second is not first
    assert Counting.closed == ["a@1"]


def test_the_cache_is_bounded_and_closes_what_it_drops(vault: ProviderCache) -> None:
    for n in range(PROVIDER_CACHE + 3):
        vault.provider(kms(f"k{n}"), {}, "")
    assert Counting.closed == ["k0@", "k1@", "k2@"]
    vault.close()
    assert len(Counting.closed) == PROVIDER_CACHE + 3


def test_an_envelope_opens_only_under_the_policys_provider(vault: ProviderCache) -> None:
    binding = Binding("ns", "k", "uid", 1)
    envelope = seal_envelope(b"value", binding, vault.local)
    assert asyncio.run(KEYRING.open(envelope, binding, vault.local)) == b"value"
    with pytest.raises(KeyDisabled, match="local"):
        asyncio.run(KEYRING.open(envelope, binding, vault.provider(kms("hsm"), {}, "")))


@pytest.mark.parametrize(
    ("options", "credentials", "why"),
    [
        pytest.param({"module": "/tmp/evil.so"}, {"pin": "1"}, "allows", id="module-not-allowed"),
        pytest.param({"module": "../../lib/x.so"}, {"pin": "1"}, "allows", id="module-traversal"),
        pytest.param({"pin-file": "/etc/shadow"}, {"pin": "1"}, "pin-file", id="pin-file"),
        pytest.param({}, {}, "PIN", id="no-pin"),
    ],
)
def test_a_policy_author_chooses_no_host_paths(
    options: dict[str, str], credentials: dict[str, str], why: str
) -> None:
    settings = ProviderSettings("kek", credentials, {"token": "t", **options})
    with pytest.raises(InvalidProviderConfig, match=why):
        registry.create("pkcs11", settings)


class OneSecretKube:
    """Just enough of the Kube seam: one existing master-key Secret without its key."""

    async def get_or_none(self, path: str) -> dict[str, Any] | None:
        return {"metadata": {"name": "keykeeper-master-key"}, "data": {"unrelated": "eA=="}}

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("a new master key must not be written over an existing Secret")


def test_a_master_key_secret_without_its_key_stops_start_up(tmp_path: Path) -> None:
    kube = OneSecretKube()
    with pytest.raises(KeykeeperError, match="holds no master-key"):
        asyncio.run(load_master_key(kube, "keykeeper-system", "keykeeper-master-key"))  # type: ignore[arg-type]
