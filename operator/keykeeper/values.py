"""Values: generating them, and checking the ones users supply against a policy."""

from __future__ import annotations

import re
import secrets
import string

from keykeeper.api import Alphabet, GenerateSource, Generator, ValueConstraints
from keykeeper.errors import InvalidValue

ALPHABETS = {
    Alphabet.BASE62: string.ascii_letters + string.digits,
    Alphabet.BASE64URL: string.ascii_letters + string.digits + "-_",
    Alphabet.HEX: "0123456789abcdef",
    Alphabet.ALPHANUMERIC_LOWER: string.ascii_lowercase + string.digits,
}


def generate(policy: Generator, override: GenerateSource | None = None) -> bytes:
    """A fresh value from the OS CSPRNG: prefix + ``length`` characters of the alphabet."""
    length = override.length if override and override.length else policy.length
    prefix = override.prefix if override and override.prefix is not None else policy.prefix
    alphabet = ALPHABETS[override.alphabet if override and override.alphabet else policy.alphabet]
    return (prefix + "".join(secrets.choice(alphabet) for _ in range(length))).encode()


def check(value: bytes, constraints: ValueConstraints) -> None:
    """Raise :class:`InvalidValue` saying which constraint a supplied value breaks.

    The message describes the constraint, never the value.
    """
    if not value:
        raise InvalidValue("the value is empty")
    if len(value) < constraints.min_length:
        raise InvalidValue(
            f"the value is {len(value)} bytes; "
            f"the policy requires at least {constraints.min_length}"
        )
    if len(value) > constraints.max_length:
        raise InvalidValue(
            f"the value is {len(value)} bytes; the policy allows at most {constraints.max_length}"
        )
    if constraints.pattern is not None:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidValue(
                "the value is not UTF-8 text, so it cannot match the policy's pattern"
            ) from None
        if re.fullmatch(constraints.pattern, text) is None:
            raise InvalidValue(
                f"the value does not match the policy's pattern {constraints.pattern!r}"
            )
