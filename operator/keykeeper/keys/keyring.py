"""The operator's keyring: the master key's subkeys, and envelopes sealed and opened
under whichever provider a policy names.

The master key is split by HKDF into separate keys (DESIGN.md §3): the local
provider's wrapping key, the fingerprint key, the audit MAC key and the ownership-proof
key. Nothing here talks to the API; the providers come from ``providers.cache``.
"""

from __future__ import annotations

from dataclasses import dataclass

from keykeeper.crypto.envelope import Binding, KeyWrapper, open_envelope, parse, seal_envelope
from keykeeper.crypto.kdf import (
    MasterKey,
    Purpose,
    fingerprint,
    ownership_proof,
    shown_fingerprint,
)
from keykeeper.errors import KeyDisabled
from keykeeper.providers import KeyProvider
from keykeeper.providers.local import LocalProvider
from keykeeper.providers.threads import offload


@dataclass(frozen=True)
class Sealed:
    envelope: bytes
    kms_key_id: str
    provider: str


class Keyring:
    def __init__(self, master: MasterKey) -> None:
        self.local = LocalProvider(master)
        self._fingerprint_key = master.subkey(Purpose.FINGERPRINT)
        self.audit_key = master.subkey(Purpose.AUDIT_MAC)
        self._ownership_key = master.subkey(Purpose.OWNERSHIP)
        self._tombstone_key = master.subkey(Purpose.TOMBSTONE)
        self._shown_key = master.subkey(Purpose.SHOWN_FINGERPRINT)

    def fingerprint(self, value: bytes) -> str:
        return fingerprint(self._fingerprint_key, value)

    def shown(self, key_uid: str, fingerprint: str) -> str:
        """``fingerprint`` as status, Events and the audit log show it for key ``key_uid``:
        the one inside (store, projected Secrets' annotations) is compared across keys'
        Secrets by the operator only; the one shown is no oracle across keys (K15)."""
        return shown_fingerprint(self._shown_key, key_uid, fingerprint) if fingerprint else ""

    def tombstone(self, value: bytes) -> str:
        """What a revoked value leaves behind (``keys.revocations``): the same for the same
        value under any key, under its own subkey; never shown in status or Events."""
        return fingerprint(self._tombstone_key, value)

    def prove(
        self, key_uid: str, key_namespace: str, key_name: str, namespace: str, name: str
    ) -> str:
        """The ownership proof of a projected Secret (see ``core.projection``)."""
        return ownership_proof(
            self._ownership_key, key_uid, key_namespace, key_name, namespace, name
        )

    async def seal(self, value: bytes, binding: Binding, provider: KeyProvider) -> Sealed:
        envelope = await offload(provider.executor, seal_envelope, value, binding, provider)
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

        return await offload(provider.executor, open_envelope, envelope, binding, resolve)
