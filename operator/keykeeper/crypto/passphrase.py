"""Refusing weak passphrases, with a message that says why.

A passphrase protects the local master key, so it must resist offline guessing even
with Argon2id in front of it. The rule is deliberately simple and explainable:
at least 16 characters; not a well-known password or keyboard walk, with or without
digits and symbols; and an estimated strength of at least 60 bits, counting only the
distinct character classes used and discounting repeats and runs. The message
never repeats the passphrase.
"""

from __future__ import annotations

import math
import re

from keykeeper.errors import WeakPassphrase

MIN_LENGTH = 16
MIN_BITS = 60

# Base words of the most common passwords and walks; a candidate is refused when,
# lower-cased and stripped of digits and symbols, it is made only of these.
_COMMON = (
    "password",
    "passphrase",
    "passw0rd",
    "letmein",
    "welcome",
    "qwerty",
    "qwertz",
    "azerty",
    "asdf",
    "zxcv",
    "abc",
    "admin",
    "root",
    "secret",
    "changeme",
    "default",
    "keykeeper",
    "kubernetes",
    "dragon",
    "monkey",
    "master",
    "sunshine",
    "iloveyou",
    "football",
    "baseball",
    "princess",
    "shadow",
    "trustno",
    "hello",
    "login",
    "starwars",
    "test",
    "guest",
    "summer",
    "winter",
    "spring",
    "autumn",
)
_WALKS = ("abcdefghijklmnopqrstuvwxyz", "qwertyuiopasdfghjklzxcvbnm", "0123456789")


def check_passphrase(passphrase: str) -> None:
    """Raise :class:`WeakPassphrase` naming the first rule the passphrase breaks."""
    if len(passphrase) < MIN_LENGTH:
        raise WeakPassphrase(
            f"the passphrase is too short: {len(passphrase)} characters, "
            f"at least {MIN_LENGTH} are required"
        )
    letters = re.sub(r"[^a-z]", "", passphrase.lower())
    if not letters or _only_common(letters) or _is_walk(passphrase.lower()):
        raise WeakPassphrase(
            "the passphrase is built from a well-known password, word or keyboard "
            "pattern; use several unrelated words or a generated secret"
        )
    bits = estimate_bits(passphrase)
    if bits < MIN_BITS:
        raise WeakPassphrase(
            f"the passphrase is too predictable: about {bits:.0f} bits of strength, "
            f"at least {MIN_BITS} are required (avoid repeats and runs, mix character kinds)"
        )


def estimate_bits(passphrase: str) -> float:
    """A conservative strength estimate: effective length times bits per character."""
    pool = 0
    if re.search(r"[a-z]", passphrase):
        pool += 26
    if re.search(r"[A-Z]", passphrase):
        pool += 26
    if re.search(r"[0-9]", passphrase):
        pool += 10
    if re.search(r"[^a-zA-Z0-9]", passphrase):
        pool += 33
    effective = 0.0
    previous = ""
    for char in passphrase:
        if char == previous:
            effective += 0.1  # a repeated character adds almost nothing
        elif previous and abs(ord(char) - ord(previous)) == 1:
            effective += 0.3  # so does a run like "abc" or "123"
        else:
            effective += 1.0
        previous = char
    distinct = len(set(passphrase))
    effective = min(effective, distinct * 2.5)
    return effective * math.log2(max(pool, 2))


def _only_common(letters: str) -> bool:
    rest = letters
    while rest:
        for word in _COMMON:
            if rest.startswith(word):
                rest = rest[len(word) :]
                break
        else:
            return False
    return True


def _is_walk(text: str) -> bool:
    compact = re.sub(r"[^a-z0-9]", "", text)
    return any(len(compact) >= 8 and compact in walk * 3 for walk in _WALKS)
