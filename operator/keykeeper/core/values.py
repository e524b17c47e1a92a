"""Values: generating them, and checking the ones users supply against a policy.

A policy's ``value.pattern`` runs against values a tenant chooses, on the operator's
event loop, so it is an RE2 expression (see ``patterns``).
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable

from keykeeper.api.labels import REUSE_ALLOWED
from keykeeper.api.models import Alphabet, FieldGenerator, Generator, ValueConstraints
from keykeeper.api.patterns import compile_pattern
from keykeeper.core.store import Version, VersionState
from keykeeper.errors import InvalidValue

ALPHABETS = {
    Alphabet.BASE62: string.ascii_letters + string.digits,
    Alphabet.BASE64URL: string.ascii_letters + string.digits + "-_",
    Alphabet.HEX: "0123456789abcdef",
    Alphabet.ALPHANUMERIC_LOWER: string.ascii_lowercase + string.digits,
}


def generate(policy: Generator, override: FieldGenerator | None = None) -> bytes:
    """A fresh value from the OS CSPRNG: prefix + ``length`` characters of the alphabet.

    ``source.generate`` is the tenant's; the generator is the platform team's. An
    override may only strengthen it: a shorter value, or an alphabet with fewer bits a
    character, is refused (:class:`InvalidValue`), never generated.
    """
    length = override.length if override and override.length else policy.length
    prefix = override.prefix if override and override.prefix is not None else policy.prefix
    chosen = override.alphabet if override and override.alphabet else policy.alphabet
    if length < policy.length:
        raise InvalidValue(
            f"source.generate.length {length} is below the policy's generator length "
            f"{policy.length}: an override may only make values stronger"
        )
    if len(ALPHABETS[chosen]) < len(ALPHABETS[policy.alphabet]):
        raise InvalidValue(
            f"source.generate.alphabet {chosen.value} has fewer bits a character than the "
            f"policy's {policy.alphabet.value}: an override may only make values stronger"
        )
    alphabet = ALPHABETS[chosen]
    return (prefix + "".join(secrets.choice(alphabet) for _ in range(length))).encode()


def check(value: bytes, constraints: ValueConstraints) -> None:
    """Raise :class:`InvalidValue` saying which constraint a supplied value breaks.

    The message describes the constraint, never the value (not even its length).
    """
    if not value:
        raise InvalidValue("the value is empty")
    if len(value) < constraints.min_length:
        raise InvalidValue(
            "the value's length is below the policy's minimum: "
            f"at least {constraints.min_length} bytes are required"
        )
    if len(value) > constraints.max_length:
        raise InvalidValue(
            "the value's length is above the policy's maximum: "
            f"at most {constraints.max_length} bytes are allowed"
        )
    if constraints.pattern is not None:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidValue(
                "the value is not UTF-8 text, so it cannot match the policy's pattern"
            ) from None
        if compile_pattern(constraints.pattern).fullmatch(text) is None:
            raise InvalidValue(
                f"the value does not match the policy's pattern {constraints.pattern!r}"
            )


def rollback(
    history: Iterable[Version], tombstone: str, sealed_at: int | None
) -> InvalidValue | None:
    """Why a user-supplied value may not become the key's next version: one the key had
    before and replaced (a rollback), or a seal older than the newest one it was given.
    The current value again is no rollback (a re-seal of it, say)."""
    kept = list(history)
    if any(v.tombstone == tombstone for v in kept if v.state is not VersionState.CURRENT):
        return InvalidValue(
            "the key had this value before and replaced it; a rollback is refused "
            f"(to allow it, annotate the ApiKey {REUSE_ALLOWED}=true)"
        )
    newest = max((v.sealed_at for v in kept if v.sealed_at is not None), default=None)
    if sealed_at is not None and newest is not None and sealed_at < newest:
        return InvalidValue(
            "the value is sealed earlier than the one the key was last given, so it is "
            "older; seal the value again"
        )
    return None
