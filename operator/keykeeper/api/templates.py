"""The API of values shaped for their consumer: a key's named fields, projection
templates, and the closed set of Secret types keykeeper writes.

A projected Secret's type is one of ``PROJECTABLE`` and nothing else, whatever a
template says (the CRD refuses the rest at admission, the models here refuse them
again, and the admission policy refuses the operator's write of any other type): a
``kubernetes.io/service-account-token`` Secret is filled by the token controller, so
a tenant who could choose it would get a token for any ServiceAccount it names.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field

from keykeeper.api.base import Model
from keykeeper.api.fields import DataKey

MAX_FIELDS = 16
MAX_TEMPLATE_KEYS = 64
MAX_TEMPLATE_TEXT = 8192  # characters of one data key's template
MAX_POLICY_TEMPLATES = 32
PREVIOUS_SUFFIX = ".previous"


class SecretType(StrEnum):
    """The types of Secret keykeeper writes (projected Secrets, its own Secrets): the
    admission policy lets its token write these and no other (a test compares them)."""

    OPAQUE = "Opaque"
    BASIC_AUTH = "kubernetes.io/basic-auth"
    DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
    SSH_AUTH = "kubernetes.io/ssh-auth"
    ENVELOPES = "keykeeper.dev/envelopes"  # a key's store
    SEALING_KEYS = "keykeeper.dev/sealing-keys"
    AUDIT_ANCHOR = "keykeeper.dev/audit-anchor"


PROJECTABLE = (
    SecretType.OPAQUE,
    SecretType.BASIC_AUTH,
    SecretType.DOCKER_CONFIG_JSON,
    SecretType.SSH_AUTH,
)
# the data keys a type must hold, checked before the write
REQUIRED_KEYS: dict[SecretType, tuple[str, ...]] = {
    SecretType.BASIC_AUTH: ("username", "password"),
    SecretType.DOCKER_CONFIG_JSON: (".dockerconfigjson",),
    SecretType.SSH_AUTH: ("ssh-privatekey",),
}
# data keys that mean a type: on a Secret of another type they are refused
TYPE_KEYS = {".dockerconfigjson": SecretType.DOCKER_CONFIG_JSON, ".dockercfg": None}


def _field_name(name: str) -> str:
    if len(name) > 63 or name.endswith(PREVIOUS_SUFFIX):
        raise ValueError(
            f"a field name is at most 63 characters and does not end in {PREVIOUS_SUFFIX}"
        )
    return name


def _projectable(kind: SecretType) -> SecretType:
    if kind not in PROJECTABLE:
        raise ValueError(
            f"a projected Secret's type is one of {', '.join(PROJECTABLE)}, not {kind}"
        )
    return kind


FieldName = Annotated[DataKey, AfterValidator(_field_name)]
ProjectableType = Annotated[SecretType, AfterValidator(_projectable)]


class Template(Model):
    """A projected Secret's shape: its type and its data keys, each a template."""

    type: ProjectableType = SecretType.OPAQUE
    data: dict[DataKey, Annotated[str, Field(max_length=MAX_TEMPLATE_TEXT)]] = Field(
        min_length=1, max_length=MAX_TEMPLATE_KEYS
    )
