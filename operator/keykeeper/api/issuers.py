"""The API of issued keys: a KeyPolicy's ``spec.issuer``, the service that mints, verifies
and revokes its keys upstream. The platform team names it; a tenant asks for an issued
key with ``source: {issue: {}}`` and chooses nothing about whom the operator calls."""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from keykeeper.api.base import Model
from keykeeper.api.fields import ObjectName


def _https(url: str) -> str:
    if not url.startswith("https://") or len(url) > 2048:
        raise ValueError("an issuer webhook is an https:// URL")
    return url


def _pem(text: str) -> str:
    try:
        pem = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("caBundle is base64 of PEM certificates") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError("caBundle is base64 of PEM certificates")
    return text


class CredentialsRef(Model):
    name: ObjectName  # a Secret in the operator's own namespace


class WebhookIssuerSpec(Model):
    url: Annotated[str, AfterValidator(_https)]
    ca_bundle: Annotated[str, AfterValidator(_pem)] | None = None
    credentials_secret_ref: CredentialsRef  # data key "token": the Bearer token

    def ca_pem(self) -> bytes | None:
        return base64.b64decode(self.ca_bundle) if self.ca_bundle else None


class AwsIamIssuerSpec(Model):
    user_name: str = Field(default="svc-{{ .namespace }}-{{ .name }}", max_length=256)
    region: str = Field(min_length=1, max_length=32)
    endpoint: str = Field(default="", max_length=2048)
    credentials_secret_ref: CredentialsRef  # access-key-id, secret-access-key[, session-token]


class IssuerSpec(Model):
    webhook: WebhookIssuerSpec | None = None
    aws_iam: AwsIamIssuerSpec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> IssuerSpec:
        if (self.webhook is None) == (self.aws_iam is None):
            raise ValueError("an issuer is a webhook or awsIam, exactly one")
        return self

    @property
    def credentials(self) -> str:
        chosen = self.webhook or self.aws_iam
        assert chosen is not None
        return chosen.credentials_secret_ref.name


class UpstreamState(StrEnum):
    """An issued version's key at its issuer, as ``status.versions`` shows it."""

    LIVE = "Live"
    REVOKING = "Revoking"  # revocation decided (journaled); the issuer has not confirmed
    REVOKED = "Revoked"
