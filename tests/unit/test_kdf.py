from __future__ import annotations

import pytest

from keykeeper.crypto.kdf import (
    KdfAlgorithm,
    MasterKey,
    PassphraseKdf,
    Purpose,
    derive_master_key,
    fingerprint,
    shown_fingerprint,
)
from keykeeper.crypto.passphrase import check_passphrase
from keykeeper.errors import WeakPassphrase

STRONG = "correct-Horse-battery-staple-7-lantern"


def test_subkeys_are_distinct_and_stable() -> None:
    master = MasterKey(bytes(32))
    keys = {purpose: master.subkey(purpose) for purpose in Purpose}
    assert len(set(keys.values())) == len(Purpose)
    assert MasterKey(bytes(32)).subkey(Purpose.WRAP) == keys[Purpose.WRAP]
    assert master.key_id == MasterKey(bytes(32)).key_id
    assert master.key_id != MasterKey(b"\x01" * 32).key_id
    assert bytes(32).hex() not in repr(master)


def test_fingerprints_are_keyed() -> None:
    value = b"sk_live_abc"
    one, two = MasterKey.generate(), MasterKey.generate()
    fp1 = fingerprint(one.subkey(Purpose.FINGERPRINT), value)
    assert fp1.startswith("hmac-sha256:")
    assert fp1 == fingerprint(one.subkey(Purpose.FINGERPRINT), value)
    assert fp1 != fingerprint(two.subkey(Purpose.FINGERPRINT), value)


def test_shown_fingerprints_are_a_keys_own() -> None:
    """K15: equal values in two keys show two fingerprints; one key's stay comparable."""
    master = MasterKey.generate()
    inner = fingerprint(master.subkey(Purpose.FINGERPRINT), b"sk_live_abc")
    shown_key = master.subkey(Purpose.SHOWN_FINGERPRINT)
    mine = shown_fingerprint(shown_key, "uid-a", inner)
    assert mine == shown_fingerprint(shown_key, "uid-a", inner)
    assert mine.startswith("hmac-sha256:") and len(mine) == len(inner)
    assert mine != shown_fingerprint(shown_key, "uid-b", inner)
    assert mine != inner
    # the uid and fingerprint are framed: shifting a character between them changes it
    assert shown_fingerprint(shown_key, "uid-a" + inner[0], inner[1:]) != mine


@pytest.mark.parametrize("fips", [False, True], ids=["argon2id", "pbkdf2-fips"])
def test_passphrase_derivation_is_recorded_and_repeatable(fips: bool) -> None:
    kdf = PassphraseKdf.new(fips=fips)
    encoded = kdf.encode()
    again = PassphraseKdf.decode(encoded)
    assert again == kdf
    key = derive_master_key(STRONG, again)
    assert key.key_id == derive_master_key(STRONG, kdf).key_id
    assert key.key_id != derive_master_key(STRONG + "x", kdf).key_id
    if fips:
        assert kdf.algorithm is KdfAlgorithm.PBKDF2_SHA256
        assert encoded.startswith("pbkdf2-sha256$i=600000$")
    else:
        assert encoded.startswith("argon2id$v=19$m=65536,t=3,p=4$")


SALT = "AAAAAAAAAAAAAAAAAAAAAA"


@pytest.mark.parametrize(
    ("encoded", "why"),
    [
        pytest.param(f"argon2id$v=19$m=1024,t=1,p=1${SALT}", "memory", id="weak-argon2"),
        # a tuple comparison let a large m make up for t=1; each bound holds on its own
        pytest.param(f"argon2id$v=19$m=1048576,t=1,p=1${SALT}", "time cost", id="argon2-t1"),
        pytest.param(f"argon2id$v=19$m=99999999,t=3,p=4${SALT}", "memory", id="argon2-huge-m"),
        pytest.param(f"argon2id$v=19$m=65536,t=999,p=4${SALT}", "time cost", id="argon2-huge-t"),
        pytest.param(f"argon2id$v=19$m=65536,t=3,p=0${SALT}", "lanes", id="argon2-no-lanes"),
        pytest.param(f"pbkdf2-sha256$i=100000${SALT}", "iterations", id="old-100k-pbkdf2"),
        pytest.param(f"pbkdf2-sha256$i=9999999999${SALT}", "iterations", id="pbkdf2-huge"),
        pytest.param("pbkdf2-sha256$i=600000$AAAA", "salt", id="short-salt"),
    ],
)
def test_weak_kdf_parameters_are_refused(encoded: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        derive_master_key(STRONG, PassphraseKdf.decode(encoded))


@pytest.mark.parametrize(
    "encoded", ["", "scrypt$x", "argon2id$v=19$m=x$AAAA", "pbkdf2-sha256$n=5$AAAA"]
)
def test_unreadable_kdf_strings(encoded: str) -> None:
    with pytest.raises(ValueError, match="is written"):
        PassphraseKdf.decode(encoded)


@pytest.mark.parametrize(
    ("passphrase", "why"),
    [
        pytest.param("hunter2", "too short: 7 characters", id="short"),
        pytest.param("Password123456789!", "well-known", id="common-password"),
        pytest.param("qwertyuiopasdfghjkl", "well-known", id="keyboard-walk"),
        pytest.param("1234567890123456789", "well-known", id="digits-walk"),
        pytest.param("aaaaaaaaaaaaaaaaaaaaaaaa", "too predictable", id="repeats"),
        pytest.param("abababababababababab", "too predictable", id="two-letters"),
        pytest.param("keykeeperkubernetes!!", "well-known", id="product-names"),
    ],
)
def test_weak_passphrases_are_refused_with_the_reason(passphrase: str, why: str) -> None:
    with pytest.raises(WeakPassphrase, match=why) as info:
        check_passphrase(passphrase)
    assert passphrase not in str(info.value)


@pytest.mark.parametrize(
    "passphrase",
    [STRONG, "vX9#qLm2$Tz8!rWp4&", "tangerine orbit fossil quietly marble"],
)
def test_strong_passphrases_pass(passphrase: str) -> None:
    check_passphrase(passphrase)
