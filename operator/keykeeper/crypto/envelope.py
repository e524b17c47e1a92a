"""Envelope v1: how keykeeper stores one version of one value.

A fresh random 256-bit data key (DEK) is made for every value version and wrapped by
a key provider's key-encryption key (KEK). The value itself is encrypted with
AES-256-GCM under a *per-message key* derived from the DEK, and a *key commitment*
derived from the same DEK is stored and checked (in constant time) before
decrypting, so an envelope cannot be made to open under two different keys.

Derivation (RFC 5869, SHA-256)::

    prk        = HKDF-Extract(salt, DEK)                    salt: 32 random bytes
    msg_key    = HKDF-Expand(prk, b"keykeeper.dev/envelope/v1/key", 32)
    commitment = HKDF-Expand(prk, b"keykeeper.dev/envelope/v1/commitment", 32)

Wire format (all integers unsigned big-endian; ``u8/u16/u32`` name their width)::

    offset  field              encoding
    0       format             u8, 0x01
    1       suite              u8, 0x01 = HKDF-SHA256 / AES-256-GCM / 32-byte commitment
    2       provider id        u8 length (1..32) + ASCII [a-z0-9-]
            KEK id             u16 length (1..1024) + UTF-8; names the KEK *and its version*
            wrapped DEK        u16 length (1..4096) + provider-specific bytes
            salt               32 bytes
            commitment         32 bytes
            nonce              12 bytes (random)
            ciphertext         u32 length (16..1 MiB + 16) + AES-GCM ciphertext || 16-byte tag
            check              8 bytes: SHA-256(every preceding byte)[:8]
    (end)                      no byte may follow

The *header* is every byte from offset 0 up to and including the nonce. The
additional authenticated data of AES-GCM is::

    AAD = header || lp(kind) || lp(namespace) || lp(name) || lp(uid) || lp(str(version))
    lp(s) = u16 length || UTF-8 bytes of s
    kind  = "keykeeper.dev/v1alpha1/ApiKey" for ApiKey values

so a ciphertext moved to another resource, or to a re-created resource of the same
name (a new uid), or relabelled as another version, fails to open. The same binding
minus the version is handed to the provider as its encryption context (AWS
EncryptionContext, GCP additional authenticated data, PKCS#11 GCM AAD).

The ``check`` trailer is *not* a security control (GCM and the commitment are): it
lets a corrupted envelope be rejected before any KMS round trip, and keeps
"corrupted" apart from "the KEK is gone". Parsing is strict and bounded; anything
malformed raises :class:`~keykeeper.errors.IntegrityError` and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from keykeeper.errors import IntegrityError

FORMAT_V1 = 0x01
SUITE_HKDF_SHA256_AES256GCM = 0x01
APIKEY_KIND = "keykeeper.dev/v1alpha1/ApiKey"

DEK_BYTES = 32
SALT_BYTES = 32
COMMITMENT_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
CHECK_BYTES = 8
MAX_PROVIDER_ID = 32
MAX_KEK_ID = 1024
MAX_WRAPPED = 4096
MAX_PLAINTEXT = 1024 * 1024

_KEY_INFO = b"keykeeper.dev/envelope/v1/key"
_COMMITMENT_INFO = b"keykeeper.dev/envelope/v1/commitment"
_PROVIDER_ALPHABET = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-")


@dataclass(frozen=True)
class Binding:
    """Where a ciphertext belongs: the resource (with its uid) and the value version."""

    namespace: str
    name: str
    uid: str
    version: int
    kind: str = APIKEY_KIND

    def aad_suffix(self) -> bytes:
        fields = (self.kind, self.namespace, self.name, self.uid, str(self.version))
        return b"".join(_lp16(f.encode()) for f in fields)

    def provider_context(self) -> dict[str, str]:
        """What a KMS may see of the binding: names and the uid, never values."""
        return {
            "keykeeper.dev/kind": self.kind,
            "keykeeper.dev/namespace": self.namespace,
            "keykeeper.dev/name": self.name,
            "keykeeper.dev/uid": self.uid,
        }


@dataclass(frozen=True)
class WrappedKey:
    """A DEK as a provider returned it, with the id (and version) of the KEK used."""

    kek_id: str
    blob: bytes


class KeyWrapper(Protocol):
    """What the envelope needs of a key provider (see ``keykeeper.providers``)."""

    @property
    def provider_id(self) -> str: ...

    def wrap(self, dek: bytes, context: Mapping[str, str]) -> WrappedKey: ...

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> bytes: ...


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope. ``header`` is the exact bytes the AAD starts with."""

    suite: int
    provider_id: str
    wrapped: WrappedKey
    salt: bytes
    commitment: bytes
    nonce: bytes
    ciphertext: bytes
    header: bytes


def seal_envelope(plaintext: bytes, binding: Binding, wrapper: KeyWrapper) -> bytes:
    """Encrypt ``plaintext`` for ``binding`` under a fresh DEK wrapped by ``wrapper``."""
    if len(plaintext) > MAX_PLAINTEXT:
        raise ValueError(f"a value may hold at most {MAX_PLAINTEXT} bytes")
    dek = AESGCM.generate_key(bit_length=256)
    wrapped = wrapper.wrap(dek, binding.provider_context())
    return encrypt_with_dek(plaintext, dek, binding, wrapper.provider_id, wrapped)


def encrypt_with_dek(
    plaintext: bytes, dek: bytes, binding: Binding, provider_id: str, wrapped: WrappedKey
) -> bytes:
    """The deterministic-given-randomness half of sealing, kept apart for test vectors."""
    salt = os.urandom(SALT_BYTES)
    nonce = os.urandom(NONCE_BYTES)
    msg_key, commitment = _derive(dek, salt)
    header = _header(provider_id, wrapped, salt, commitment, nonce)
    ciphertext = AESGCM(msg_key).encrypt(nonce, plaintext, header + binding.aad_suffix())
    body = header + struct.pack(">I", len(ciphertext)) + ciphertext
    return body + hashlib.sha256(body).digest()[:CHECK_BYTES]


def open_envelope(data: bytes, binding: Binding, resolve: Callable[[str], KeyWrapper]) -> bytes:
    """Parse, unwrap the DEK with the provider the envelope names, and decrypt."""
    envelope = parse(data)
    wrapper = resolve(envelope.provider_id)
    dek = wrapper.unwrap(envelope.wrapped, binding.provider_context())
    return decrypt_with_dek(envelope, dek, binding)


def decrypt_with_dek(envelope: Envelope, dek: bytes, binding: Binding) -> bytes:
    if len(dek) != DEK_BYTES:
        raise IntegrityError("the unwrapped data key has the wrong length")
    msg_key, commitment = _derive(dek, envelope.salt)
    if not hmac.compare_digest(commitment, envelope.commitment):
        raise IntegrityError("the envelope's key commitment does not match its data key")
    try:
        return AESGCM(msg_key).decrypt(
            envelope.nonce, envelope.ciphertext, envelope.header + binding.aad_suffix()
        )
    except InvalidTag:
        raise IntegrityError(
            "the envelope failed to authenticate for this resource and version"
        ) from None


def parse(data: bytes) -> Envelope:
    """Strict, bounded parsing; any malformation is an :class:`IntegrityError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise IntegrityError("an envelope must be bytes")
    data = bytes(data)
    if len(data) < 2 + CHECK_BYTES:
        raise IntegrityError("the envelope is truncated")
    body, check = data[:-CHECK_BYTES], data[-CHECK_BYTES:]
    if not hmac.compare_digest(hashlib.sha256(body).digest()[:CHECK_BYTES], check):
        raise IntegrityError("the envelope is corrupted or truncated (check bytes differ)")
    reader = _Reader(body)
    if reader.u8() != FORMAT_V1:
        raise IntegrityError("unknown envelope format")
    suite = reader.u8()
    if suite != SUITE_HKDF_SHA256_AES256GCM:
        raise IntegrityError("unknown envelope suite")
    provider_raw = reader.lp(1, 1, MAX_PROVIDER_ID)
    if not set(provider_raw) <= _PROVIDER_ALPHABET:
        raise IntegrityError("the envelope's provider id is malformed")
    kek_raw = reader.lp(2, 1, MAX_KEK_ID)
    try:
        kek_id = kek_raw.decode("utf-8")
    except UnicodeDecodeError:
        raise IntegrityError("the envelope's KEK id is not UTF-8") from None
    wrapped = reader.lp(2, 1, MAX_WRAPPED)
    salt = reader.take(SALT_BYTES)
    commitment = reader.take(COMMITMENT_BYTES)
    nonce = reader.take(NONCE_BYTES)
    header = body[: reader.offset]
    ciphertext = reader.lp(4, TAG_BYTES, MAX_PLAINTEXT + TAG_BYTES)
    if reader.offset != len(body):
        raise IntegrityError("trailing bytes after the envelope")
    return Envelope(
        suite=suite,
        provider_id=provider_raw.decode("ascii"),
        wrapped=WrappedKey(kek_id, wrapped),
        salt=salt,
        commitment=commitment,
        nonce=nonce,
        ciphertext=ciphertext,
        header=header,
    )


def _derive(dek: bytes, salt: bytes) -> tuple[bytes, bytes]:
    prk = hmac.new(salt, dek, hashlib.sha256).digest()
    msg_key = HKDFExpand(hashes.SHA256(), 32, _KEY_INFO).derive(prk)
    commitment = HKDFExpand(hashes.SHA256(), COMMITMENT_BYTES, _COMMITMENT_INFO).derive(prk)
    return msg_key, commitment


def _header(
    provider_id: str, wrapped: WrappedKey, salt: bytes, commitment: bytes, nonce: bytes
) -> bytes:
    provider = provider_id.encode("ascii")
    kek = wrapped.kek_id.encode("utf-8")
    if not 1 <= len(provider) <= MAX_PROVIDER_ID or not set(provider) <= _PROVIDER_ALPHABET:
        raise ValueError(f"invalid provider id {provider_id!r}")
    if not 1 <= len(kek) <= MAX_KEK_ID or not 1 <= len(wrapped.blob) <= MAX_WRAPPED:
        raise ValueError("KEK id or wrapped key out of bounds")
    return (
        bytes((FORMAT_V1, SUITE_HKDF_SHA256_AES256GCM))
        + _lp(1, provider)
        + _lp(2, kek)
        + _lp(2, wrapped.blob)
        + salt
        + commitment
        + nonce
    )


def _lp(width: int, value: bytes) -> bytes:
    return len(value).to_bytes(width, "big") + value


def _lp16(value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError("binding field too long")
    return _lp(2, value)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, n: int) -> bytes:
        end = self.offset + n
        if end > len(self.data):
            raise IntegrityError("the envelope is truncated")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def lp(self, width: int, minimum: int, maximum: int) -> bytes:
        length = int.from_bytes(self.take(width), "big")
        if not minimum <= length <= maximum:
            raise IntegrityError("an envelope field has an out-of-range length")
        return self.take(length)
