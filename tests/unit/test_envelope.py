"""The envelope format, checked against an independent reading of its docstring."""

from __future__ import annotations

import hashlib
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from keykeeper.crypto.envelope import (
    Binding,
    WrappedKey,
    encrypt_with_dek,
    open_envelope,
    parse,
    seal_envelope,
)
from keykeeper.crypto.kdf import MasterKey
from keykeeper.errors import IntegrityError, KeyDisabled
from keykeeper.providers.local import LocalProvider
from tests.unit.envelopes import recheck

BINDING = Binding("payments", "stripe", "9d1c7a52-7f0e-4c1b-9d9e-2b1e0f6a7c11", 3)
PROVIDER = LocalProvider(MasterKey(bytes(range(32))))


def resolve(provider_id: str) -> LocalProvider:
    if provider_id != "local":
        raise IntegrityError("unknown provider")
    return PROVIDER


def second_implementation_open(blob: bytes, dek: bytes, binding: Binding) -> bytes:
    """Decrypts an envelope using only what the module docstring says."""
    body, check = blob[:-8], blob[-8:]
    assert hashlib.sha256(body).digest()[:8] == check
    assert body[0] == 1
    assert body[1] == 1
    at = 2
    n = body[at]
    at += 1 + n
    (n,) = struct.unpack(">H", body[at : at + 2])
    at += 2 + n
    (n,) = struct.unpack(">H", body[at : at + 2])
    at += 2 + n
    salt, commitment, nonce = body[at : at + 32], body[at + 32 : at + 64], body[at + 64 : at + 76]
    at += 76
    header = body[:at]
    (n,) = struct.unpack(">I", body[at : at + 4])
    ciphertext = body[at + 4 : at + 4 + n]
    assert at + 4 + n == len(body)

    def hkdf(info: bytes) -> bytes:
        return HKDF(hashes.SHA256(), 32, salt=salt, info=info).derive(dek)

    assert hkdf(b"keykeeper.dev/envelope/v1/commitment") == commitment
    fields = (binding.kind, binding.namespace, binding.name, binding.uid, str(binding.version))
    aad = header + b"".join(struct.pack(">H", len(f.encode())) + f.encode() for f in fields)
    return AESGCM(hkdf(b"keykeeper.dev/envelope/v1/key")).decrypt(nonce, ciphertext, aad)


def test_the_docstring_is_enough_to_write_a_second_implementation() -> None:
    dek = bytes(range(100, 132))
    wrapped = WrappedKey("master/0011223344556677", b"\x01" * 40)
    blob = encrypt_with_dek(b"sk_test_abc", dek, BINDING, "local", wrapped)
    assert second_implementation_open(blob, dek, BINDING) == b"sk_test_abc"
    envelope = parse(blob)
    assert envelope.provider_id == "local"
    assert envelope.wrapped == wrapped


def test_every_seal_uses_fresh_randomness() -> None:
    one = parse(seal_envelope(b"same", BINDING, PROVIDER))
    two = parse(seal_envelope(b"same", BINDING, PROVIDER))
    assert one.salt != two.salt
    assert one.nonce != two.nonce
    assert one.wrapped.blob != two.wrapped.blob


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        pytest.param(b"", "truncated", id="empty"),
        pytest.param(b"\x01" * 12, "check bytes", id="bad-check"),
        pytest.param(recheck(b"\x02\x01"), "unknown envelope format", id="future-format"),
        pytest.param(recheck(b"\x01\x09"), "unknown envelope suite", id="unknown-suite"),
        pytest.param(recheck(b"\x01\x01\x00"), "out-of-range", id="empty-provider"),
        pytest.param(
            recheck(b"\x01\x01\x05LOCAL"), "provider id is malformed", id="upper-provider"
        ),
        pytest.param(recheck(b"\x01\x01\x05local\x00\x05ab"), "truncated", id="kek-cut"),
        pytest.param(recheck(b"\x01\x01\x05local\x00\x02ab\x00\x01x"), "truncated", id="no-salt"),
    ],
)
def test_malformed_envelopes_name_what_is_wrong(blob: bytes, message: str) -> None:
    with pytest.raises(IntegrityError, match=message):
        parse(blob)


def test_trailing_bytes_are_refused() -> None:
    blob = seal_envelope(b"v", BINDING, PROVIDER)
    with pytest.raises(IntegrityError, match="trailing"):
        parse(recheck(blob[:-8] + b"\x00"))


def test_non_utf8_kek_id_is_refused() -> None:
    blob = seal_envelope(b"v", BINDING, PROVIDER)
    kek_at = 3 + len("local") + 2
    forged = bytearray(blob[:-8])
    forged[kek_at] = 0xFF
    with pytest.raises(IntegrityError, match="UTF-8"):
        parse(recheck(bytes(forged)))


def test_oversized_values_are_refused_before_encrypting() -> None:
    with pytest.raises(ValueError, match="at most"):
        seal_envelope(b"x" * (1024 * 1024 + 1), BINDING, PROVIDER)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_only_ever_raise_integrity_error(data: bytes) -> None:
    for candidate in (data, recheck(data)):
        with pytest.raises(IntegrityError):
            open_envelope(candidate, BINDING, resolve)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_envelopes_only_ever_raise_integrity_error(data: st.DataObject) -> None:
    sealed = seal_envelope(b"sk_live_0123456789abcdef", BINDING, PROVIDER)
    original, check = sealed[:-8], sealed[-8:]
    blob = bytearray(original)
    edits = data.draw(
        st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(0, 255)), min_size=1)
    )
    for index, value in edits:
        blob[index] = value
    mutated = bytes(blob[: data.draw(st.integers(0, len(blob)))])
    assume(mutated != original)
    # with the check bytes recomputed the edits reach the provider and AES-GCM; an edit
    # of the KEK id may name a master key that is not configured (KeyDisabled)
    with pytest.raises((IntegrityError, KeyDisabled)):
        open_envelope(recheck(mutated), BINDING, resolve)
    with pytest.raises(IntegrityError):
        open_envelope(mutated + check, BINDING, resolve)


@settings(max_examples=200, deadline=None)
@given(
    value=st.binary(max_size=2048),
    namespace=st.text(min_size=1, max_size=63),
    name=st.text(min_size=1, max_size=253),
    uid=st.uuids().map(str),
    version=st.integers(1, 2**31),
)
def test_every_sealed_value_opens_to_itself(
    value: bytes, namespace: str, name: str, uid: str, version: int
) -> None:
    binding = Binding(namespace, name, uid, version)
    assert open_envelope(seal_envelope(value, binding, PROVIDER), binding, resolve) == value
