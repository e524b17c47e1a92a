"""The local provider: the embedded default, needing no cloud.

Its KEKs are wrap subkeys of the operator's master keys (see ``keykeeper.crypto.kdf``).
The current master key wraps; earlier ones, kept in the keyring after a master-key
rotation, still unwrap. A wrapped DEK is ``nonce(12) || AES-256-GCM(wrap key, DEK)``
with the KEK id and the context as AAD. KEK ids are ``master/<key id>``.

Settings (``ProviderSettings.credentials``):
  ``master-key``            base64 of 32 random bytes (as a Kubernetes Secret holds it), or
  ``passphrase`` + ``kdf``  a passphrase and its recorded KDF string;
  ``previous-master-keys``  optional, comma-separated base64 keys that may still unwrap.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
from collections.abc import Iterable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keykeeper.api.provider_options import ProviderId
from keykeeper.crypto.envelope import WrappedKey
from keykeeper.crypto.kdf import MasterKey, PassphraseKdf, Purpose, derive_master_key
from keykeeper.errors import IntegrityError, InvalidProviderConfig, KeyDisabled
from keykeeper.providers.base import KeyProvider, ProviderSettings, encode_context

_NONCE = 12


class LocalProvider(KeyProvider):
    provider_id = ProviderId.LOCAL.value
    in_process = True

    def __init__(self, current: MasterKey, previous: Iterable[MasterKey] = ()) -> None:
        self._current = current
        self._keys = {f"master/{k.key_id}": AESGCM(k.subkey(Purpose.WRAP)) for k in previous}
        self._current_id = f"master/{current.key_id}"
        self._keys[self._current_id] = AESGCM(current.subkey(Purpose.WRAP))
        self._disabled: set[str] = set()
        self._lock = threading.Lock()

    @property
    def master_key(self) -> MasterKey:
        """The current master key, whose other subkeys serve the audit log and fingerprints."""
        return self._current

    def current_kek_id(self) -> str:
        return self._current_id

    def wrap(self, dek: bytes, context: Mapping[str, str]) -> WrappedKey:
        kek_id = self._current_id
        aead = self._usable(kek_id)
        nonce = os.urandom(_NONCE)
        blob = nonce + aead.encrypt(nonce, dek, encode_context(kek_id, context))
        return WrappedKey(kek_id, blob)

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes:
        aead = self._usable(wrapped.kek_id)
        if len(wrapped.blob) <= _NONCE:
            raise IntegrityError("the wrapped data key is truncated")
        nonce, sealed = wrapped.blob[:_NONCE], wrapped.blob[_NONCE:]
        try:
            return aead.decrypt(nonce, sealed, encode_context(wrapped.kek_id, context))
        except InvalidTag:
            raise IntegrityError(
                f"the data key wrapped under {wrapped.kek_id} does not authenticate "
                "for this resource"
            ) from None

    def check(self) -> None:
        self._usable(self._current_id)

    def disable(self, kek_id: str) -> None:
        """Take a master key out of use (what disabling a KMS key version is elsewhere)."""
        with self._lock:
            self._disabled.add(kek_id)

    def _usable(self, kek_id: str) -> AESGCM:
        aead = self._keys.get(kek_id)
        if aead is None:
            raise KeyDisabled(f"no configured master key has the id {kek_id}")
        if kek_id in self._disabled:
            raise KeyDisabled(f"the master key {kek_id} is disabled")
        return aead


def create(settings: ProviderSettings) -> LocalProvider:
    creds = settings.credentials
    if "master-key" in creds:
        current = MasterKey(_decode_key(creds["master-key"], "master-key"))
    elif "passphrase" in creds and "kdf" in creds:
        try:
            kdf = PassphraseKdf.decode(creds["kdf"])
        except ValueError as exc:
            raise InvalidProviderConfig(str(exc)) from None
        current = derive_master_key(creds["passphrase"], kdf)
    else:
        raise InvalidProviderConfig(
            "the local provider needs 'master-key' (base64 of 32 bytes) or 'passphrase' with 'kdf'"
        )
    previous = [
        MasterKey(_decode_key(item, "previous-master-keys"))
        for item in creds.get("previous-master-keys", "").split(",")
        if item.strip()
    ]
    return LocalProvider(current, previous)


def _decode_key(text: str, field: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidProviderConfig(f"{field} is not valid base64") from None
    if len(raw) != 32:
        raise InvalidProviderConfig(f"{field} must decode to exactly 32 bytes, not {len(raw)}")
    return raw
