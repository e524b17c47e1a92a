"""Sealed values: secrets encrypted offline to the cluster, safe to keep in git.

A sealed value is HPKE (RFC 9180) single-shot encryption to the cluster's sealing
public key, suite ML-KEM-768+X25519 / HKDF-SHA256 / AES-256-GCM: a hybrid
post-quantum KEM, because sealed values sit in git for years and must survive
harvest-now-decrypt-later. It is bound, through the HPKE ``info``, to the exact
namespace and name it is meant for (the uid is unknown when sealing)::

    text   = "kk-sealed-v1:" || base64url-without-padding(binary)
    binary = suite (u8, 0x01) || u8 length || key id (ASCII) || enc (1120) || ciphertext
    info   = "keykeeper.dev/sealed/v1" || lp(suite || key id) || lp(namespace) || lp(name)
    lp(x)  = u16 big-endian length || x

Keys: the public key is ``ML-KEM-768 public (1184 bytes) || X25519 public (32)``; the
private key is ``ML-KEM-768 seed (64) || X25519 private (32)``; the key id is the hex
of the first 8 bytes of SHA-256 over the public key, and its fingerprint the whole
digest. The operator opens a sealed value and re-encrypts it at once into a store
envelope bound to the resource's uid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from keykeeper.errors import InvalidValue

PREFIX = "kk-sealed-v1:"
SUITE_MLKEM768_X25519 = 0x01
_INFO = b"keykeeper.dev/sealed/v1"
_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_MLKEM_PUBLIC = 1184
_PUBLIC = _MLKEM_PUBLIC + 32
_PRIVATE = 64 + 32
MAX_SEALED_VALUE = 64 * 1024
_KEY_ID = re.compile(rb"[0-9a-f]{16}")


@dataclass(frozen=True)
class SealingPublicKey:
    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != _PUBLIC:
            raise ValueError(f"a sealing public key is {_PUBLIC} bytes")

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.raw).digest()[:8].hex()

    @property
    def fingerprint(self) -> str:
        return "sha256:" + hashlib.sha256(self.raw).hexdigest()

    def _hpke(self) -> hpke.MLKEM768X25519PublicKey:
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(self.raw[:_MLKEM_PUBLIC]),
            x25519.X25519PublicKey.from_public_bytes(self.raw[_MLKEM_PUBLIC:]),
        )


class SealingKeyPair:
    __slots__ = ("_mlkem", "_x25519", "public")

    def __init__(self, private: bytes) -> None:
        if len(private) != _PRIVATE:
            raise ValueError(f"a sealing private key is {_PRIVATE} bytes")
        self._mlkem = mlkem.MLKEM768PrivateKey.from_seed_bytes(private[:64])
        self._x25519 = x25519.X25519PrivateKey.from_private_bytes(private[64:])
        self.public = SealingPublicKey(
            self._mlkem.public_key().public_bytes_raw()
            + self._x25519.public_key().public_bytes_raw()
        )

    @classmethod
    def generate(cls) -> SealingKeyPair:
        return cls(
            mlkem.MLKEM768PrivateKey.generate().private_bytes_raw()
            + x25519.X25519PrivateKey.generate().private_bytes_raw()
        )

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def private_bytes(self) -> bytes:
        return self._mlkem.private_bytes_raw() + self._x25519.private_bytes_raw()

    def __repr__(self) -> str:
        return f"SealingKeyPair(key_id={self.key_id!r})"

    def open(self, sealed: bytes, info: bytes) -> bytes:
        return _SUITE.decrypt(
            sealed, hpke.MLKEM768X25519PrivateKey(self._mlkem, self._x25519), info
        )


def seal(public: SealingPublicKey, namespace: str, name: str, value: bytes) -> str:
    """Seal ``value`` for the ApiKey ``namespace/name`` and no other."""
    if not value or len(value) > MAX_SEALED_VALUE:
        raise ValueError(f"a sealed value holds 1 to {MAX_SEALED_VALUE} bytes")
    header = bytes([SUITE_MLKEM768_X25519, len(public.key_id)]) + public.key_id.encode()
    sealed = _SUITE.encrypt(value, public._hpke(), _info(header, namespace, name))
    return PREFIX + base64.urlsafe_b64encode(header + sealed).rstrip(b"=").decode()


def key_id_of(text: str) -> str:
    """The sealing key id a sealed value names (without opening it)."""
    return _split(text)[1]


def open_sealed(text: str, namespace: str, name: str, keys: Mapping[str, SealingKeyPair]) -> bytes:
    """Open a sealed value for ``namespace/name``; :class:`InvalidValue` if it is not one."""
    header, key_id, sealed = _split(text)
    pair = keys.get(key_id)
    if pair is None:
        raise InvalidValue(
            f"the value is sealed to key {key_id}, which this cluster does not hold "
            "(or no longer accepts); seal it again with the current public key"
        )
    try:
        return pair.open(sealed, _info(header, namespace, name))
    except Exception:  # the HPKE binding raises its own error types; all mean the same
        raise InvalidValue(
            f"the sealed value does not open for {namespace}/{name}: it was sealed for "
            "another namespace or name, or it was altered"
        ) from None


def _split(text: str) -> tuple[bytes, str, bytes]:
    if not text.startswith(PREFIX):
        raise InvalidValue(f"a sealed value starts with {PREFIX!r}")
    body = text[len(PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise InvalidValue("the sealed value is not valid base64url") from None
    if len(raw) < 2 or raw[0] != SUITE_MLKEM768_X25519:
        raise InvalidValue("the sealed value has an unknown suite")
    end = 2 + raw[1]
    key_id = raw[2:end]
    if len(key_id) != raw[1] or len(raw) <= end + 1120:
        raise InvalidValue("the sealed value is truncated")
    if _KEY_ID.fullmatch(key_id) is None:
        # the key id reaches status, Events, audit and logs: only 16 hex digits get there
        raise InvalidValue("the sealed value names a malformed sealing key id")
    return raw[:end], key_id.decode(), raw[end:]


def _info(header: bytes, namespace: str, name: str) -> bytes:
    parts = (header, namespace.encode(), name.encode())
    return _INFO + b"".join(len(p).to_bytes(2, "big") + p for p in parts)
