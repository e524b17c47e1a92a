"""Sealed values: bound to namespace, name and policy, hybrid post-quantum HPKE."""

from __future__ import annotations

import base64
import time

import pytest

from keykeeper.crypto.sealed import (
    PREFIX,
    SealingKeyPair,
    key_id_of,
    open_sealed,
    seal,
    seal_v1,
)
from keykeeper.errors import InvalidValue

NOW = int(time.time())  # when these tests seal

PAIR = SealingKeyPair.generate()
KEYS = {PAIR.key_id: PAIR}


def test_round_trip_key_id_policy_and_time() -> None:
    text = seal(PAIR.public, "payments", "stripe", b"sk_live_123", policy="pay", sealed_at=1234)
    assert text.startswith(PREFIX)
    assert key_id_of(text) == PAIR.key_id
    opened = open_sealed(text, "payments", "stripe", "pay", KEYS)
    assert (opened.value, opened.policy, opened.sealed_at) == (b"sk_live_123", "pay", 1234)
    assert "sk_live" not in repr(opened)


def test_the_private_key_survives_serialisation() -> None:
    again = SealingKeyPair(PAIR.private_bytes())
    assert again.public == PAIR.public
    text = seal(PAIR.public, "a", "b", b"v", policy="p", sealed_at=NOW)
    assert open_sealed(text, "a", "b", "p", {again.key_id: again}).value == b"v"


@pytest.mark.parametrize(
    ("namespace", "name", "policy", "message"),
    [
        ("billing", "stripe", "pay", "another namespace or name"),
        ("payments", "stripe2", "pay", "another namespace or name"),
        ("payments", "stripe", "catch-all", "sealed for policy pay, not catch-all"),
    ],
)
def test_a_sealed_value_opens_only_for_its_target_and_policy(
    namespace: str, name: str, policy: str, message: str
) -> None:
    text = seal(PAIR.public, "payments", "stripe", b"v", policy="pay", sealed_at=NOW)
    with pytest.raises(InvalidValue, match=message):
        open_sealed(text, namespace, name, policy, KEYS)


def test_the_policy_in_the_clear_cannot_be_edited() -> None:
    """Rewriting the header's policy (same length) breaks the HPKE binding."""
    text = seal(PAIR.public, "a", "b", b"v", policy="pay", sealed_at=NOW)
    raw = _decoded(text)
    start = raw.index(b"pay")
    raw[start : start + 3] = b"own"
    forged = PREFIX + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(InvalidValue, match="does not open"):
        open_sealed(forged, "a", "b", "own", KEYS)


def test_the_sealed_at_time_cannot_be_edited() -> None:
    text = seal(PAIR.public, "a", "b", b"v", policy="p", sealed_at=1)
    raw = _decoded(text)
    at = raw.index(b"p") + 1
    raw[at + 7] = 2
    forged = PREFIX + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(InvalidValue, match="does not open"):
        open_sealed(forged, "a", "b", "p", KEYS)


def test_a_v1_value_opens_only_when_accepted() -> None:
    old = seal_v1(PAIR.public, "a", "b", b"v")
    with pytest.raises(InvalidValue, match="not bound to a policy"):
        open_sealed(old, "a", "b", "p", KEYS)
    opened = open_sealed(old, "a", "b", "p", KEYS, accept_v1=True)
    assert (opened.value, opened.policy, opened.sealed_at) == (b"v", None, None)
    with pytest.raises(InvalidValue, match="another namespace or name"):
        open_sealed(old, "a", "c", "p", KEYS, accept_v1=True)


def test_a_v1_body_relabelled_v2_does_not_open() -> None:
    old = seal_v1(PAIR.public, "a", "b", b"v")
    with pytest.raises(InvalidValue):
        open_sealed("kk-sealed-v2:" + old[len(PREFIX) :], "a", "b", "p", KEYS)


def test_unknown_sealing_key() -> None:
    other = SealingKeyPair.generate()
    with pytest.raises(InvalidValue, match="does not hold"):
        open_sealed(
            seal(other.public, "a", "b", b"v", policy="p", sealed_at=NOW), "a", "b", "p", KEYS
        )


def test_sealing_refuses_a_policy_that_is_no_name() -> None:
    with pytest.raises(ValueError, match="not a KeyPolicy name"):
        seal(PAIR.public, "a", "b", b"v", policy="../p", sealed_at=NOW)


def _decoded(text: str) -> bytearray:
    body = text[len(PREFIX) :]
    return bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def _raw(header: bytes) -> str:
    return PREFIX + base64.urlsafe_b64encode(header).decode().rstrip("=")


KID = PAIR.key_id.encode()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "kk-sealed-v1:",
        "kk-sealed-v1:!!!",
        "kk-sealed-v2:AAAA",
        "kk-sealed-v3:AQhhYmNkZWZnaA",
        "kk-sealed-v1:AQhhYmNkZWZnaA",
        _raw(b"\x01\x10" + KID),  # no policy
        _raw(b"\x01\x10" + KID + b"\x05pol"),  # a truncated policy
        _raw(b"\x01\x10" + KID + b"\x03pol" + b"\x00" * 4),  # a truncated time
        _raw(b"\x01\x10" + KID + b"\x03pol" + b"\x00" * 8 + b"\x00" * 100),  # no enc
        _raw(b"\x01\x10" + KID + b"\x03P\nl" + b"\x00" * 8 + b"\x00" * 1200),  # no name
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(InvalidValue):
        open_sealed(text, "a", "b", "pol", KEYS, accept_v1=True)


def test_a_malformed_policy_never_reaches_a_message() -> None:
    text = _raw(b"\x01\x10" + KID + b"\x03P\nl" + b"\x00" * 8 + b"\x00" * 1200)
    with pytest.raises(InvalidValue, match="malformed policy") as refused:
        open_sealed(text, "a", "b", "pol", KEYS)
    assert "\n" not in str(refused.value)


def test_a_flipped_byte_fails() -> None:
    text = seal(PAIR.public, "a", "b", b"value", policy="p", sealed_at=NOW)
    body = bytearray(text.encode())
    body[-5] = ord("A") if body[-5] != ord("A") else ord("B")
    with pytest.raises(InvalidValue):
        open_sealed(body.decode(), "a", "b", "p", KEYS)
