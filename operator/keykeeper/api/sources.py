"""Where a key's value comes from (``spec.source``) and how generated values are made
(the policy's ``spec.generator``, and the tenant's overrides, which may only strengthen it).

A key is one value, or named fields (``generate.fields``, ``secretRef.keys``, or a sealed
value made with ``keykeeper seal --field``) that are made, rotated, suspended, revoked and
erased together: a field is never half rotated.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from keykeeper.api.base import Model as _Model
from keykeeper.api.fields import DataKey, ObjectName
from keykeeper.api.templates import MAX_FIELDS, FieldName


class Alphabet(StrEnum):
    BASE62 = "base62"
    BASE64URL = "base64url"
    HEX = "hex"
    ALPHANUMERIC_LOWER = "lowercase"


class Generator(_Model):
    length: int = Field(default=40, ge=16, le=512)
    prefix: str = ""
    alphabet: Alphabet = Alphabet.BASE62


class FieldGenerator(_Model):
    length: int | None = Field(default=None, ge=16, le=512)
    prefix: str | None = None
    alphabet: Alphabet | None = None


class GenerateSource(FieldGenerator):
    # a key of named fields, each generated with the policy's generator and these overrides
    fields: dict[FieldName, FieldGenerator] | None = Field(default=None, max_length=MAX_FIELDS)


class SecretRefSource(_Model):
    name: ObjectName
    key: DataKey = "api-key"
    keys: tuple[FieldName, ...] = Field(default=(), max_length=MAX_FIELDS)  # one field each
    delete_after_import: bool = False


class IssueSource(_Model):
    """The key is issued upstream by the policy's ``spec.issuer`` (nothing to choose here:
    whom the operator calls, and with which credentials, is the platform team's)."""


class Source(_Model):
    generate: GenerateSource | None = None
    sealed: str | None = None
    secret_ref: SecretRefSource | None = None
    issue: IssueSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        chosen = [
            n for n in ("generate", "sealed", "secret_ref", "issue") if getattr(self, n) is not None
        ]
        if len(chosen) != 1:
            raise ValueError("exactly one of generate, sealed, secretRef or issue must be set")
        return self

    @property
    def fields(self) -> tuple[str, ...]:
        """The field names the spec declares (a sealed value's are in its seal); ():
        one value."""
        if self.generate is not None and self.generate.fields:
            return tuple(sorted(self.generate.fields))
        if self.secret_ref is not None and self.secret_ref.keys:
            return tuple(sorted(self.secret_ref.keys))
        return ()

    @property
    def kind(self) -> str:
        if self.issue is not None:
            return "issue"
        if self.generate is not None:
            return "generate"
        return "sealed" if self.sealed is not None else "secretRef"
