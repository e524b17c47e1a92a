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
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from keykeeper.api import windows
from keykeeper.api.durations import parse_duration
from keykeeper.api.fields import (
    DataKey,
    Duration,
    NamespaceName,
    ObjectName,
    Regex,
    optional_namespace,
)
from keykeeper.api.provider_options import ProviderId, parse_options
from keykeeper.errors import SpecError

GROUP = "keykeeper.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class SecretType(StrEnum):
    """The types of Secret keykeeper writes (projected Secrets, its own Secrets): the
    admission policy lets its token write these and no other (a test compares them)."""

    OPAQUE = "Opaque"
    ENVELOPES = "keykeeper.dev/envelopes"  # a key's store
    SEALING_KEYS = "keykeeper.dev/sealing-keys"
    AUDIT_ANCHOR = "keykeeper.dev/audit-anchor"


class Phase(StrEnum):
    GENERATED = "Generated"
    ACTIVE = "Active"
    ROTATION_PENDING = "RotationPending"
    ROTATED = "Rotated"
    SUSPENDED = "Suspended"
    REVOKED = "Revoked"
    DELETED = "Deleted"


PROJECTING_PHASES = frozenset({Phase.ACTIVE, Phase.ROTATION_PENDING, Phase.ROTATED})


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )


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


class Alphabet(StrEnum):
    BASE62 = "base62"
    BASE64URL = "base64url"
    HEX = "hex"
    ALPHANUMERIC_LOWER = "lowercase"


class Generator(_Model):
    length: int = Field(default=40, ge=16, le=512)
    prefix: str = ""
    alphabet: Alphabet = Alphabet.BASE62


class KeyPolicySpec(_Model):
    source_namespaces: NamespaceSelection
    target_namespaces: TargetSelection | None = None
    kms: Kms = Field(default_factory=Kms)
    rotation: Rotation = Field(default_factory=Rotation)
    retention: Retention = Field(default_factory=Retention)
    value: ValueConstraints = Field(default_factory=ValueConstraints)
    generator: Generator = Field(default_factory=Generator)
    alerts: Alerts = Field(default_factory=Alerts)


class GenerateSource(_Model):
    length: int | None = Field(default=None, ge=16, le=512)
    prefix: str | None = None
    alphabet: Alphabet | None = None


class SecretRefSource(_Model):
    name: ObjectName
    key: DataKey = "api-key"
    delete_after_import: bool = False


class Source(_Model):
    generate: GenerateSource | None = None
    sealed: str | None = None
    secret_ref: SecretRefSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        chosen = [n for n in ("generate", "sealed", "secret_ref") if getattr(self, n) is not None]
        if len(chosen) != 1:
            raise ValueError("exactly one of generate, sealed or secretRef must be set")
        return self

    @property
    def kind(self) -> str:
        if self.generate is not None:
            return "generate"
        return "sealed" if self.sealed is not None else "secretRef"


class Projection(_Model):
    namespace: NamespaceName | None = None
    namespace_selector: LabelSelector | None = None
    secret_name: ObjectName | None = None
    key: DataKey = "api-key"

    @model_validator(mode="after")
    def _one_target(self) -> Projection:
        if (self.namespace is None) == (self.namespace_selector is None):
            raise ValueError("a projection names a namespace or a namespaceSelector, not both")
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
