from __future__ import annotations

import pytest

from keykeeper.crypto.kdf import (
    KdfAlgorithm,
    MasterKey,
    PassphraseKdf,
    Purpose,
    derive_master_key,
    fingerprint,
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


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param("argon2id$v=19$m=1024,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA", id="weak-argon2"),
        pytest.param("pbkdf2-sha256$i=100000$AAAAAAAAAAAAAAAAAAAAAA", id="old-100k-pbkdf2"),
        pytest.param("pbkdf2-sha256$i=600000$AAAA", id="short-salt"),
    ],
)
def test_weak_kdf_parameters_are_refused(encoded: str) -> None:
    with pytest.raises(ValueError, match="at least"):
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
