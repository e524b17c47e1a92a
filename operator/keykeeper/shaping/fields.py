"""A key's value as the envelope holds it: one value, or named fields sealed together.

One envelope per version covers all of a key's fields, bound by the same AAD as a
one-value key's: the fields are made, rotated, suspended, revoked and erased as one
(a field is never half rotated), and a version is one opening of the KMS, not one per
field. A one-value key's plaintext is the value itself, as it always was; a key with
fields has plaintext ``MAGIC || JSON {field: base64(value)}`` (sorted, compact), and the
version's metadata lists the field names (never values), so a reader knows which it is
without guessing from the bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

from keykeeper.api import names
from keykeeper.api.templates import MAX_FIELDS, PREVIOUS_SUFFIX
from keykeeper.errors import IntegrityError, InvalidValue

MAGIC = b"kk-fields-v1\n"
Fields = dict[str, bytes]


def encode(fields: Mapping[str, bytes]) -> bytes:
    """The plaintext of a key with these fields (checked: names, count, no empty value)."""
    check_names(fields)
    for name, value in fields.items():
        if not value:
            raise InvalidValue(f"field {name!r} is empty")
    body = {name: base64.b64encode(fields[name]).decode() for name in sorted(fields)}
    return MAGIC + json.dumps(body, separators=(",", ":")).encode()


def decode(plaintext: bytes, expected: tuple[str, ...]) -> Fields:
    """The fields of a plaintext ``encode`` made, and exactly the names ``expected``."""
    fields = parse(plaintext)
    if fields is None or tuple(sorted(fields)) != tuple(sorted(expected)):
        raise IntegrityError("a stored version's fields do not match its metadata")
    return fields


def parse(plaintext: bytes) -> Fields | None:
    """The fields of a field plaintext; None when it is one value (no MAGIC)."""
    if not plaintext.startswith(MAGIC):
        return None
    try:
        body = json.loads(plaintext[len(MAGIC) :])
        if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
            raise ValueError("not a map of text")
        fields = {str(k): base64.b64decode(v, validate=True) for k, v in body.items()}
    except (ValueError, binascii.Error):
        raise InvalidValue("the value starts as fields do but its fields cannot be read") from None
    check_names(fields)
    return fields


def check_names(fields: Mapping[str, object]) -> None:
    if not fields or len(fields) > MAX_FIELDS:
        raise InvalidValue(f"a key has 1 to {MAX_FIELDS} fields")
    for name in fields:
        if not names.is_data_key(name) or len(name) > 63 or name.endswith(PREVIOUS_SUFFIX):
            raise InvalidValue(
                f"field name {name[:63]!r} is not a Secret data key of at most 63 characters "
                f"not ending in {PREVIOUS_SUFFIX}"
            )
