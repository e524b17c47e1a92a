"""Typed options of each key provider, validated when a KeyPolicy is read — pure.

``spec.kms.options`` is a string map in the CRD (so one schema serves every provider);
here each provider's options become a model that refuses unknown keys and bad values,
so a typo (``per_key`` for ``per-key``) or ``pool-size: "-1"`` is the KeyPolicy's
``InvalidSpec`` condition at once, not a surprise at the first wrap. Providers build
themselves from these models. What a provider can do is declared with
``Capability`` by the provider (``KeyProvider.capabilities``), never inferred from a
KEK id's shape.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Capability(StrEnum):
    PER_KEY_KEK = "per-key-kek"  # each ApiKey gets its own KEK
    KEK_DESTRUCTION = "kek-destruction"  # erasure can destroy that KEK (crypto-shredding)


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # documented names only


class LocalOptions(_Options):
    """The local provider takes no options: its key is the operator's master key."""


class Pkcs11Options(_Options):
    token: str = Field(min_length=1, max_length=32, description="the token label")
    module: str | None = Field(default=None, description="one of KEYKEEPER_PKCS11_MODULES")
    create: bool = False
    per_key: bool = Field(default=False, alias="per-key")
    mechanism: Literal["auto", "gcm", "kwp"] = "auto"
    pool_size: int = Field(default=4, ge=1, le=64, alias="pool-size")


class CloudOptions(_Options):
    """Options the cloud providers will take (their providers are not registered yet)."""

    region: str | None = None
    endpoint: str | None = None


OPTIONS: dict[str, type[_Options]] = {
    "local": LocalOptions,
    "pkcs11": Pkcs11Options,
    "aws": CloudOptions,
    "azure": CloudOptions,
    "gcp": CloudOptions,
}


def parse_options(provider: str, options: dict[str, str]) -> _Options:
    """The typed options; ``ValueError`` naming each bad option."""
    model = OPTIONS.get(provider)
    if model is None:
        raise ValueError(f"unknown provider {provider!r}")
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(
            f"options.{'.'.join(str(p) for p in e['loc']) or provider}: {e['msg']}"
            for e in exc.errors()
        )
        raise ValueError(problems) from None
