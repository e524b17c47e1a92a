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


_ENDPOINT = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$"  # scheme, host, port: no path tricks
_HOST_PORT = r"^[A-Za-z0-9.-]+:[0-9]{1,5}$"


class CloudOptions(_Options):
    """What every cloud KMS takes: a deadline per call and a ceiling on calls per second
    (shared by every key under the policy, so a thousand keys do not stampede the KMS)."""

    timeout: float = Field(default=5.0, gt=0, le=60, description="seconds per call")
    rate: float = Field(default=50.0, gt=0, le=10000, description="calls per second")
    burst: int = Field(default=20, ge=1, le=1000)


class AwsOptions(CloudOptions):
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")
    endpoint: str | None = Field(default=None, pattern=_ENDPOINT)  # VPC or FIPS endpoint
    per_key: bool = Field(default=False, alias="per-key")
    deletion_window_days: int = Field(default=7, ge=7, le=30, alias="deletion-window-days")


class AzureOptions(CloudOptions):
    # sovereign clouds (login.microsoftonline.us, ...) and tests name another authority
    authority: str | None = Field(default=None, pattern=_ENDPOINT)
    # the SDK checks that a vault's auth challenge names the vault's own domain; off
    # only for vaults outside *.vault.azure.net-style domains (Azure Stack, the tests)
    verify_challenge_resource: bool = Field(default=True, alias="verify-challenge-resource")
    per_key: bool = Field(default=False, alias="per-key")  # keyRef is then the vault URL


class GcpOptions(CloudOptions):
    endpoint: str | None = Field(default=None, pattern=_HOST_PORT)  # private endpoints
    per_key: bool = Field(default=False, alias="per-key")  # keyRef is then a key ring


class ProviderId(StrEnum):
    """The providers a KeyPolicy may name (``spec.kms.provider``)."""

    LOCAL = "local"
    PKCS11 = "pkcs11"
    AWS = "aws"
    AZURE = "azure"
    GCP = "gcp"


OPTIONS: dict[str, type[_Options]] = {
    ProviderId.LOCAL: LocalOptions,
    ProviderId.PKCS11: Pkcs11Options,
    ProviderId.AWS: AwsOptions,
    ProviderId.AZURE: AzureOptions,
    ProviderId.GCP: GcpOptions,
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
