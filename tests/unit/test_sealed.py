"""Sealed values: bound to namespace and name, hybrid post-quantum HPKE."""

from __future__ import annotations

import pytest

from keykeeper.crypto.sealed import PREFIX, SealingKeyPair, key_id_of, open_sealed, seal
from keykeeper.errors import InvalidValue

PAIR = SealingKeyPair.generate()
KEYS = {PAIR.key_id: PAIR}


def test_round_trip_and_key_id() -> None:
    text = seal(PAIR.public, "payments", "stripe", b"sk_live_123")
    assert text.startswith(PREFIX)
    assert key_id_of(text) == PAIR.key_id
    assert open_sealed(text, "payments", "stripe", KEYS) == b"sk_live_123"


def test_the_private_key_survives_serialisation() -> None:
    again = SealingKeyPair(PAIR.private_bytes())
    assert again.public == PAIR.public
    assert open_sealed(seal(PAIR.public, "a", "b", b"v"), "a", "b", {again.key_id: again}) == b"v"


@pytest.mark.parametrize(("namespace", "name"), [("billing", "stripe"), ("payments", "stripe2")])
def test_a_sealed_value_opens_only_for_its_target(namespace: str, name: str) -> None:
    text = seal(PAIR.public, "payments", "stripe", b"v")
    with pytest.raises(InvalidValue, match="another namespace or name"):
        open_sealed(text, namespace, name, KEYS)


def test_unknown_sealing_key() -> None:
    other = SealingKeyPair.generate()
    with pytest.raises(InvalidValue, match="does not hold"):
        open_sealed(seal(other.public, "a", "b", b"v"), "a", "b", KEYS)


@pytest.mark.parametrize(
    "text",
    ["", "kk-sealed-v1:", "kk-sealed-v1:!!!", "kk-sealed-v2:AAAA", "kk-sealed-v1:AQhhYmNkZWZnaA"],
)
def test_malformed(text: str) -> None:
    with pytest.raises(InvalidValue):
        open_sealed(text, "a", "b", KEYS)


def test_a_flipped_byte_fails() -> None:
    text = seal(PAIR.public, "a", "b", b"value")
    body = bytearray(text.encode())
    body[-5] = ord("A") if body[-5] != ord("A") else ord("B")
    with pytest.raises(InvalidValue):
        open_sealed(body.decode(), "a", "b", KEYS)
