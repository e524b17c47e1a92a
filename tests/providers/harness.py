"""How to stand each registered provider up against its real peer, and how to take
its key away. The conformance suite runs every variant here, and fails if a
registered provider has none, so a new provider cannot land untested."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from devtools import kmspeers
from devtools.fakes import azurekv, gcpkms
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
    # takes away the KEK behind one wrapped key, as a disabled or destroyed key would be;
    # None where the peer does not refuse a disabled key (another variant of the same
    # provider must then prove it: see test_every_provider_proves_a_disabled_key_refused)
    disable: Callable[[KeyProvider, WrappedKey], None] | None
    # the peer's wrapped blob names its key in plain bytes (moto's does), so a flip there
    # names another key, which the peer answers with AccessDenied: KeyDisabled, not a forgery
    blob_names_kek: bool = False


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


def _destroy(provider: KeyProvider, wrapped: WrappedKey) -> None:
    assert provider.destroy_kek(wrapped.kek_id)


def _aws(peer_fixture: str, per_key: bool) -> Callable[[pytest.FixtureRequest], KeyProvider]:
    def make(request: pytest.FixtureRequest) -> KeyProvider:
        peer: kmspeers.Peer = request.getfixturevalue(peer_fixture)
        options = {"endpoint": peer.endpoint, "region": kmspeers.REGION}
        if per_key:  # a prefix of its own: the suite reuses resource uids
            key_ref = f"alias/keykeeper-{uuid.uuid4().hex[:8]}"
            options["per-key"] = "true"
        else:
            key_ref = f"alias/shared-{uuid.uuid4().hex[:8]}"
            peer.create_key(key_ref)
        settings = ProviderSettings(key_ref, dict(kmspeers.CREDENTIALS), options)
        provider = registry.create("aws", settings)
        provider.peer = peer  # type: ignore[attr-defined]
        return provider

    return make


def _aws_disable(provider: KeyProvider, wrapped: WrappedKey) -> None:
    peer: kmspeers.Peer = provider.peer  # type: ignore[attr-defined]
    peer.client().disable_key(KeyId=wrapped.kek_id.rsplit("/", 1)[-1])


def _gcp(per_key: bool) -> Callable[[pytest.FixtureRequest], KeyProvider]:
    def make(request: pytest.FixtureRequest) -> KeyProvider:
        fakes = request.getfixturevalue("cloud_fakes")
        ring = f"projects/test-project/locations/global/keyRings/{uuid.uuid4().hex[:8]}"
        options = {"endpoint": fakes.gcp.endpoint}
        if per_key:
            fakes.gcp.create_ring(ring, fakes.gcp_account["client_email"])
            name, options["per-key"] = ring, "true"
        else:
            name = f"{ring}/cryptoKeys/shared"
            fakes.gcp.create_key(name, fakes.gcp_account["client_email"])
        creds = {"service-account.json": json.dumps(fakes.gcp_account)}
        provider = registry.create("gcp", ProviderSettings(name, creds, options))
        provider.fake = fakes.gcp  # type: ignore[attr-defined]
        return provider

    return make


def _gcp_disable(provider: KeyProvider, wrapped: WrappedKey) -> None:
    provider.fake.set_state(wrapped.kek_id, gcpkms.DISABLED)  # type: ignore[attr-defined]


def _azure(per_key: bool) -> Callable[[pytest.FixtureRequest], KeyProvider]:
    def make(request: pytest.FixtureRequest) -> KeyProvider:
        fakes = request.getfixturevalue("cloud_fakes")
        client = fakes.azure_credentials["client-id"]
        options = {"authority": fakes.azure.authority, "verify-challenge-resource": "false"}
        vault = fakes.azure
        if per_key:
            # a vault of its own: the suite reuses resource uids, and Key Vault keeps a
            # deleted key's name taken (soft delete), which a real uid never meets
            vault = azurekv.FakeKeyVault(fakes.cert).start()
            request.addfinalizer(vault.stop)
            vault.add_client(client, fakes.azure_credentials["client-secret"])
            vault.creators.add(client)
            options["authority"] = vault.authority
            key_ref, options["per-key"] = f"{vault.url}/", "true"
        else:
            name = f"kek-{uuid.uuid4().hex[:8]}"
            fakes.azure.create_key(name, client)
            key_ref = f"{fakes.azure.url}/keys/{name}"
        settings = ProviderSettings(key_ref, fakes.azure_credentials, options)
        provider = registry.create("azure", settings)
        provider.fake = vault  # type: ignore[attr-defined]
        return provider

    return make


def _azure_disable(provider: KeyProvider, wrapped: WrappedKey) -> None:
    provider.fake.set_enabled(wrapped.kek_id, False)  # type: ignore[attr-defined]


VARIANTS = (
    Variant("local", "local", _local, _local_disable),
    Variant("pkcs11-gcm", "pkcs11", _pkcs11("gcm", per_key=True), _destroy),
    Variant("pkcs11-kwp", "pkcs11", _pkcs11("kwp", per_key=True), _destroy),
    Variant("pkcs11-shared-kek", "pkcs11", _pkcs11("gcm", per_key=False), lambda p, w: None),
    # moto 5.2.5 decrypts under a disabled key (moto/kms/models.py: decrypt ignores
    # key_state), so the refusal is proven on local-kms, which refuses as AWS does
    Variant("aws-moto", "aws", _aws("moto_peer", per_key=False), None, blob_names_kek=True),
    Variant("aws-moto-per-key", "aws", _aws("moto_peer", per_key=True), None, blob_names_kek=True),
    Variant("aws-local-kms", "aws", _aws("local_kms_peer", per_key=False), _aws_disable),
    Variant("aws-local-kms-per-key", "aws", _aws("local_kms_peer", per_key=True), _destroy),
    Variant("gcp", "gcp", _gcp(per_key=False), _gcp_disable),
    Variant("gcp-per-key", "gcp", _gcp(per_key=True), _destroy),
    Variant("azure", "azure", _azure(per_key=False), _azure_disable),
    Variant("azure-per-key", "azure", _azure(per_key=True), _destroy),
)
