"""Sealed values: secrets encrypted offline to the cluster, safe to keep in git.

A sealed value is HPKE (RFC 9180) single-shot encryption to the cluster's sealing
public key, suite ML-KEM-768+X25519 / HKDF-SHA256 / AES-256-GCM: a hybrid
post-quantum KEM, because sealed values sit in git for years and must survive
harvest-now-decrypt-later. It is bound, through the HPKE ``info``, to the exact
namespace and name it is meant for (the uid is unknown when sealing), to the KeyPolicy
it is sealed under, and to the moment it was sealed::

    text   = "kk-sealed-v2:" || base64url-without-padding(binary)
    binary = header || enc (1120) || ciphertext
    header = suite (u8, 0x01) || u8 length || key id (ASCII)
             || u8 length || policy (ASCII) || sealed-at (u64, Unix seconds)
    info   = "keykeeper.dev/sealed/v2" || lp(header) || lp(namespace) || lp(name)
    lp(x)  = u16 big-endian length || x

The policy and the sealed-at time are in the clear (the operator says which policy a
value was sealed for, and keeps a high-water mark of sealed-at) and authenticated by
the ``info``: a copied value opens under no other policy, and no field can be edited.

``kk-sealed-v1`` (header = suite || key id only, info ``keykeeper.dev/sealed/v1``)
bound no policy; it opens only when the caller allows it (a migration window).

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

PREFIX = "kk-sealed-v2:"
PREFIX_V1 = "kk-sealed-v1:"
SUITE_MLKEM768_X25519 = 0x01
_INFO = b"keykeeper.dev/sealed/v2"
_INFO_V1 = b"keykeeper.dev/sealed/v1"
_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_MLKEM_PUBLIC = 1184
_PUBLIC = _MLKEM_PUBLIC + 32
_PRIVATE = 64 + 32
_ENC = 1120
MAX_SEALED_VALUE = 64 * 1024
_KEY_ID = re.compile(rb"[0-9a-f]{16}")
# a KeyPolicy name (an RFC 1123 subdomain); it reaches conditions and Events
_POLICY = re.compile(rb"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


@dataclass(frozen=True)
class Opened:
    """An opened sealed value, with what its seal says: the policy and when (v2 only)."""

    value: bytes
    policy: str | None
    sealed_at: int | None

    def __repr__(self) -> str:  # the value never reaches a log through repr()
        return f"Opened(policy={self.policy!r}, sealed_at={self.sealed_at!r})"


@dataclass(frozen=True)
class _Parsed:
    header: bytes
    key_id: str
    policy: str | None  # None: a v1 value
    sealed_at: int | None
    sealed: bytes


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


def seal(
    public: SealingPublicKey,
    namespace: str,
    name: str,
    value: bytes,
    *,
    policy: str,
    sealed_at: int,
) -> str:
    """Seal ``value`` for the ApiKey ``namespace/name`` under KeyPolicy ``policy`` only,
    dated ``sealed_at`` (Unix seconds, the sealer's clock)."""
    _check_size(value)
    encoded = policy.encode()
    if _POLICY.fullmatch(encoded) is None:
        raise ValueError(f"not a KeyPolicy name: {policy!r}")
    if not 0 <= sealed_at < 2**63:
        raise ValueError(f"not a time: {sealed_at}")
    header = _key_header(public) + bytes([len(encoded)]) + encoded + sealed_at.to_bytes(8, "big")
    sealed = _SUITE.encrypt(value, public._hpke(), _info(_INFO, header, namespace, name))
    return PREFIX + _b64(header + sealed)


def seal_v1(public: SealingPublicKey, namespace: str, name: str, value: bytes) -> str:
    """The old format, bound to no policy: only to test how v1 values are refused or
    accepted; ``keykeeper seal`` never writes it."""
    _check_size(value)
    header = _key_header(public)
    sealed = _SUITE.encrypt(value, public._hpke(), _info(_INFO_V1, header, namespace, name))
    return PREFIX_V1 + _b64(header + sealed)


def key_id_of(text: str) -> str:
    """The sealing key id a sealed value names (without opening it)."""
    return _split(text).key_id


def open_sealed(
    text: str,
    namespace: str,
    name: str,
    policy: str,
    keys: Mapping[str, SealingKeyPair],
    *,
    accept_v1: bool = False,
) -> Opened:
    """Open a sealed value for ``namespace/name`` under ``policy``; :class:`InvalidValue`
    if it is not one (another policy, namespace or name, altered, or an unbound v1 value
    when v1 is not accepted)."""
    parsed = _split(text)
    if parsed.policy is None and not accept_v1:
        raise InvalidValue(
            "the value is kk-sealed-v1, which is not bound to a policy and is refused; "
            f"seal it again with keykeeper seal --policy {policy}"
        )
    if parsed.policy is not None and parsed.policy != policy:
        raise InvalidValue(
            f"the value is sealed for policy {parsed.policy}, not {policy}; seal it again "
            f"with keykeeper seal --policy {policy}"
        )
    pair = keys.get(parsed.key_id)
    if pair is None:
        raise InvalidValue(
            f"the value is sealed to key {parsed.key_id}, which this cluster does not hold "
            "(or no longer accepts); seal it again with the current public key"
        )
    label = _INFO_V1 if parsed.policy is None else _INFO
    try:
        value = pair.open(parsed.sealed, _info(label, parsed.header, namespace, name))
    except Exception:  # the HPKE binding raises its own error types; all mean the same
        raise InvalidValue(
            f"the sealed value does not open for {namespace}/{name}: it was sealed for "
            "another namespace or name, or it was altered"
        ) from None
    return Opened(value, parsed.policy, parsed.sealed_at)


def _check_size(value: bytes) -> None:
    if not value or len(value) > MAX_SEALED_VALUE:
        raise ValueError(f"a sealed value holds 1 to {MAX_SEALED_VALUE} bytes")


def _key_header(public: SealingPublicKey) -> bytes:
    return bytes([SUITE_MLKEM768_X25519, len(public.key_id)]) + public.key_id.encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _split(text: str) -> _Parsed:
    v1 = text.startswith(PREFIX_V1)
    if not v1 and not text.startswith(PREFIX):
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
    if len(key_id) != raw[1] or len(raw) <= end:
        raise InvalidValue("the sealed value is truncated")
    if _KEY_ID.fullmatch(key_id) is None:
        # the key id reaches status, Events, audit and logs: only 16 hex digits get there
        raise InvalidValue("the sealed value names a malformed sealing key id")
    policy, sealed_at = None, None
    if not v1:
        length = raw[end]
        named = raw[end + 1 : end + 1 + length]
        if len(named) != length or len(raw) < end + 1 + length + 8:
            raise InvalidValue("the sealed value is truncated")
        if _POLICY.fullmatch(named) is None:
            raise InvalidValue("the sealed value names a malformed policy")
        policy = named.decode()
        end += 1 + length
        sealed_at = int.from_bytes(raw[end : end + 8], "big")
        end += 8
    if len(raw) <= end + _ENC:
        raise InvalidValue("the sealed value is truncated")
    return _Parsed(raw[:end], key_id.decode(), policy, sealed_at, raw[end:])


def _info(label: bytes, header: bytes, namespace: str, name: str) -> bytes:
    parts = (header, namespace.encode(), name.encode())
    return label + b"".join(len(p).to_bytes(2, "big") + p for p in parts)
