"""The keykeeper.dev/v1alpha1 API as Python types, parsed at the edge with pydantic.

The CRDs in ``crds/`` are the source of truth for what the apiserver admits; these
models read what it admitted. Field names are the snake_case of the CRD's camelCase.
A body that the schema admitted but these models refuse is a ``SpecError`` (reported
as a condition and a Warning Event, never a crash).
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    Field,
    ValidationError,
    model_validator,
)

from keykeeper.api import windows
from keykeeper.api.base import Model as _Model
from keykeeper.api.durations import parse_duration
from keykeeper.api.fields import (
    DataKey,
    Duration,
    NamespaceName,
    ObjectName,
    Regex,
    optional_namespace,
)
from keykeeper.api.issuers import IssuerSpec
from keykeeper.api.provider_options import ProviderId, parse_options
from keykeeper.api.sources import Alphabet as Alphabet
from keykeeper.api.sources import FieldGenerator as FieldGenerator
from keykeeper.api.sources import GenerateSource as GenerateSource
from keykeeper.api.sources import Generator as Generator
from keykeeper.api.sources import SecretRefSource as SecretRefSource
from keykeeper.api.sources import Source as Source
from keykeeper.api.templates import (
    MAX_POLICY_TEMPLATES,
    PROJECTABLE,
    ProjectableType,
    Template,
)
from keykeeper.api.templates import SecretType as SecretType
from keykeeper.errors import SpecError

GROUP = "keykeeper.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class Phase(StrEnum):
    GENERATED = "Generated"
    ACTIVE = "Active"
    ROTATION_PENDING = "RotationPending"
    ROTATED = "Rotated"
    SUSPENDED = "Suspended"
    REVOKED = "Revoked"
    DELETED = "Deleted"


PROJECTING_PHASES = frozenset({Phase.ACTIVE, Phase.ROTATION_PENDING, Phase.ROTATED})


class Requirement(_Model):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()


class LabelSelector(_Model):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: tuple[Requirement, ...] = ()


class NamespaceSelection(_Model):
    names: tuple[NamespaceName, ...] = ()
    selector: LabelSelector | None = None


NamePattern = Annotated[str, Field(min_length=1, max_length=254)]


class TargetSelection(NamespaceSelection):
    allow_own_namespace: bool = True
    # the namespace's own consent (annotation keykeeper.dev/accept-from) is required
    require_consent: bool = False
    # in namespaces other than the key's own: the Secret names and data keys it may use
    # (exact, or a prefix ending in "*"; empty: any)
    secret_names: tuple[NamePattern, ...] = Field(default=(), max_length=64)
    data_keys: tuple[NamePattern, ...] = Field(default=(), max_length=64)


class SecretKeyRef(_Model):
    name: ObjectName
    namespace: Annotated[str, AfterValidator(optional_namespace)] = ""


class Kms(_Model):
    provider: ProviderId = ProviderId.LOCAL
    key_ref: str = ""
    credentials_secret_ref: SecretKeyRef | None = None
    options: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _typed_options(self) -> Kms:
        parse_options(self.provider, self.options)  # refused when the policy is read
        return self


class RotationStrategy(StrEnum):
    GENERATE = "Generate"
    MANUAL = "Manual"


class RotationWindow(_Model):
    """When scheduled rotations may happen (``api.windows``): never open is refused."""

    days: list[Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]] = Field(min_length=1)
    hours: Annotated[str, AfterValidator(windows.checked_span)]
    time_zone: Annotated[str, AfterValidator(windows.checked_zone)] = "UTC"

    def window(self) -> windows.Window:
        return windows.Window.of(list(self.days), self.hours, self.time_zone)


class Rotation(_Model):
    period: Duration | None = None
    grace_period: Duration = "24h"
    min_interval: Duration | None = None  # requested rotations: at most one per this long
    strategy: RotationStrategy = RotationStrategy.GENERATE
    window: RotationWindow | None = None

    @property
    def period_delta(self) -> timedelta | None:
        return parse_duration(self.period) if self.period else None

    @property
    def grace_delta(self) -> timedelta:
        return parse_duration(self.grace_period)

    @property
    def min_interval_delta(self) -> timedelta:
        return parse_duration(self.min_interval) if self.min_interval else timedelta(0)


class ExpiryAction(StrEnum):
    WARN = "Warn"  # Expired says so loudly; nothing is withdrawn for it
    SUSPEND = "Suspend"  # an expired value is withdrawn as a suspended key's is


class Alerts(_Model):
    expiring_within: Duration = "14d"
    on_expiry: ExpiryAction = ExpiryAction.WARN

    @property
    def expiring_delta(self) -> timedelta:
        return parse_duration(self.expiring_within)


class Retention(_Model):
    revoked_for: Duration = "30d"

    @property
    def revoked_delta(self) -> timedelta:
        return parse_duration(self.revoked_for)


class ValueConstraints(_Model):
    min_length: int = Field(default=0, ge=0)
    max_length: int = Field(default=4096, ge=1, le=65536)
    pattern: Regex | None = None
    # unbound kk-sealed-v1 values refused even inside the cluster's migration window
    refuse_unbound_seals: bool = False


class KeyPolicySpec(_Model):
    source_namespaces: NamespaceSelection
    target_namespaces: TargetSelection | None = None
    kms: Kms = Field(default_factory=Kms)
    rotation: Rotation = Field(default_factory=Rotation)
    retention: Retention = Field(default_factory=Retention)
    value: ValueConstraints = Field(default_factory=ValueConstraints)
    generator: Generator = Field(default_factory=Generator)
    alerts: Alerts = Field(default_factory=Alerts)
    # projection templates tenants name with templateRef, and the types projections may have
    templates: dict[ObjectName, Template] = Field(
        default_factory=dict, max_length=MAX_POLICY_TEMPLATES
    )
    secret_types: tuple[ProjectableType, ...] = PROJECTABLE
    issuer: IssuerSpec | None = None  # who mints, verifies and revokes issued keys upstream


class Projection(_Model):
    namespace: NamespaceName | None = None
    namespace_selector: LabelSelector | None = None
    secret_name: ObjectName | None = None
    key: DataKey = "api-key"
    template: Template | None = None
    template_ref: ObjectName | None = None  # one of the policy's spec.templates

    @model_validator(mode="after")
    def _one_target(self) -> Projection:
        if (self.namespace is None) == (self.namespace_selector is None):
            raise ValueError("a projection names a namespace or a namespaceSelector, not both")
        if self.template is not None and self.template_ref is not None:
            raise ValueError("a projection has a template or a templateRef, not both")
        return self


SELECTOR_PROJECTIONS = 8  # per key, as the CRD's CEL says (finding K3)
SELECTOR_VALUES = 256  # matchExpressions[].values per key, in all


class ApiKeySpec(_Model):
    policy: ObjectName
    source: Source
    projections: tuple[Projection, ...] = ()
    suspended: bool = False
    revoked: bool = False
    expires_at: AwareDatetime | None = None  # a user-supplied value's own expiry

    @model_validator(mode="after")
    def _bounded_selectors(self) -> ApiKeySpec:
        """The CRD's bounds, for a key admitted before them."""
        selectors = [p.namespace_selector for p in self.projections if p.namespace_selector]
        if len(selectors) > SELECTOR_PROJECTIONS:
            raise ValueError(f"at most {SELECTOR_PROJECTIONS} projections by namespaceSelector")
        if sum(len(e.values) for s in selectors for e in s.match_expressions) > SELECTOR_VALUES:
            raise ValueError(f"at most {SELECTOR_VALUES} selector values in all")
        return self


_M = TypeVar("_M", bound=BaseModel)


def parse_policy_spec(spec: Any) -> KeyPolicySpec:
    return _parse(KeyPolicySpec, spec, "KeyPolicy")


def parse_apikey_spec(spec: Any) -> ApiKeySpec:
    return _parse(ApiKeySpec, spec, "ApiKey")


def _parse(model: type[_M], spec: Any, kind: str) -> _M:
    try:
        return model.model_validate(spec or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SpecError(f"invalid {kind} spec: {problems}") from None
