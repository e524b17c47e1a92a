from __future__ import annotations

import pytest

from keykeeper.errors import InvalidProviderConfig
from keykeeper.providers import ProviderSettings, Registry, registry
from keykeeper.providers.local import LocalProvider


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(
        InvalidProviderConfig,
        match="unknown provider 'vault'; known: aws, azure, gcp, local, pkcs11",
    ):
        registry.create("vault", ProviderSettings())


def test_a_missing_extra_names_what_to_install() -> None:
    own = Registry()
    own.register("nosdk", "keykeeper_tests_no_such_sdk_module", extra="nosdk")
    with pytest.raises(InvalidProviderConfig, match=r"pip install 'keykeeper\[nosdk\]'"):
        own.create("nosdk", ProviderSettings())


def test_registering_twice_is_an_error() -> None:
    own = Registry()
    own.register("a", "x")
    with pytest.raises(ValueError, match="already"):
        own.register("a", "y")


def test_local_from_settings() -> None:
    key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    provider = registry.create("local", ProviderSettings(credentials={"master-key": key}))
    assert isinstance(provider, LocalProvider)
    assert provider.current_kek_id().startswith("master/")


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        pytest.param({}, "needs 'master-key'", id="nothing"),
        pytest.param({"master-key": "not base64!"}, "not valid base64", id="garbage"),
        pytest.param({"master-key": "AAAA"}, "exactly 32 bytes, not 3", id="short"),
        pytest.param({"passphrase": "x", "kdf": "nope"}, "is written", id="bad-kdf"),
    ],
)
def test_local_settings_errors(credentials: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidProviderConfig, match=message):
        registry.create("local", ProviderSettings(credentials=credentials))


def test_settings_repr_hides_credentials() -> None:
    settings = ProviderSettings(key_ref="k", credentials={"pin": "1234-secret"})
    assert "1234-secret" not in repr(settings)
