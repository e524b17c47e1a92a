"""An in-memory KMS registered as the "aws" provider in unit tests (never a peer test:
tests/providers runs the real ones). Keys are named by keyRef; each can be failed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import ClassVar

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keykeeper.crypto.envelope import WrappedKey
from keykeeper.errors import IntegrityError, KeyDisabled, ProviderUnavailable
from keykeeper.providers.base import KeyProvider, ProviderSettings, encode_context


class MemKms(KeyProvider):
    provider_id = "aws"
    keys: ClassVar[dict[str, bytes]] = {}
    down: ClassVar[set[str]] = set()
    calls: ClassVar[list[tuple[str, str]]] = []

    def __init__(self, key_ref: str) -> None:
        self.key_ref = key_ref
        MemKms.keys.setdefault(key_ref, os.urandom(32))

    def _key(self, kek_id: str, op: str) -> AESGCM:
        MemKms.calls.append((op, kek_id))
        if kek_id in MemKms.down:
            raise ProviderUnavailable(f"KMS unreachable for {kek_id} (EndpointConnectionError)")
        if kek_id not in MemKms.keys:
            raise KeyDisabled(f"the KMS key {kek_id} is not usable (NotFoundException)")
        return AESGCM(MemKms.keys[kek_id])

    def current_kek_id(self) -> str:
        return self.key_ref

    def wrap(self, dek: bytes, context: Mapping[str, str]) -> WrappedKey:
        nonce = os.urandom(12)
        aad = encode_context(self.key_ref, context)
        sealed = self._key(self.key_ref, "wrap").encrypt(nonce, dek, aad)
        return WrappedKey(self.key_ref, nonce + sealed)

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        aead = self._key(wrapped.kek_id, "unwrap")
        try:
            return aead.decrypt(
                wrapped.blob[:12], wrapped.blob[12:], encode_context(wrapped.kek_id, context)
            )
        except Exception:
            raise IntegrityError("does not authenticate") from None

    def check(self) -> None:
        self._key(self.key_ref, "check")


def create(settings: ProviderSettings) -> MemKms:
    return MemKms(settings.key_ref)
