"""Every reason keykeeper gives, in one place: of Events (DESIGN.md §5), of conditions,
of authorization decisions and denied targets, and of the error tree.

Pure, so the modules that decide what to tell (``core.narration``) need no Kubernetes
client. Members are ``str`` subclasses: they serialize, compare and format as their
values. A reason given on an Event and on a condition alike (``PolicyNotFound``) is
one member. ``errors`` sits below this layer and spells its reasons as strings; a unit
test checks that each of them is a member here.
"""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


class Reason(StrEnum):
    # -- the actions of the audit trail (Events and audit records) -------------------------
    CREATED = "Created"
    ENCRYPTED = "Encrypted"
    PROJECTED = "Projected"
    PROJECTION_DENIED = "ProjectionDenied"
    PROJECTION_WITHDRAWN = "ProjectionWithdrawn"
    ROTATION_DUE = "RotationDue"
    ROTATED = "Rotated"
    REWRAPPED = "Rewrapped"
    ROLLOUT_RESTARTED = "RolloutRestarted"
    SUSPENDED = "Suspended"
    REINSTATED = "Reinstated"
    REVOKED = "Revoked"
    ERASED = "Erased"
    INTEGRITY_FAILURE = "IntegrityFailure"
    PROVIDER_UNAVAILABLE = "ProviderUnavailable"
    INVALID_SPEC = "InvalidSpec"
    INVALID_VALUE = "InvalidValue"
    REVOKED_VALUE = "RevokedValue"
    SOURCE_NOT_FOUND = "SourceNotFound"
    POLICY_NOT_FOUND = "PolicyNotFound"
    SOURCE_DELETED = "SourceDeleted"
    AUDIT_GAP = "AuditGap"
    AUDIT_HANDOFF = "AuditHandoff"
    AUDIT_SEGMENT = "AuditSegment"
    AUDIT_PRUNED = "AuditPruned"
    # -- authorization of one target (core.authz) and the plan's denials (core.plan) -------
    AUTHORIZED = "Authorized"
    KEY_NOT_PROJECTING = "KeyNotProjecting"
    SOURCE_NOT_ALLOWED = "SourceNamespaceNotAllowed"
    NAMESPACE_NOT_FOUND = "NamespaceNotFound"
    NAMESPACE_TERMINATING = "NamespaceTerminating"
    NOT_AUTHORIZED = "NotAuthorizedByPolicy"
    DUPLICATE_TARGET = "DuplicateTarget"
    TOO_MANY_TARGETS = "TooManyTargets"
    SECRET_NAME_TAKEN = "SecretNameTaken"  # noqa: S105 - a reason, not a secret
    TEMPLATE_INVALID = "TemplateInvalid"  # a target's template does not parse or render
    ISSUING = "Issuing"  # an issued key's next version is asked of its issuer
    ISSUER_ERROR = "IssuerError"
    ISSUER_UNAVAILABLE = "IssuerUnavailable"
    ISSUER_REFUSED = "IssuerRefused"
    TARGET_NOT_CONSENTING = "TargetNotConsenting"
    SECRET_NAME_NOT_ALLOWED = "SecretNameNotAllowed"  # noqa: S105 - a reason, not a secret
    # -- conditions (core.lifecycle, core.status, controllers.keypolicy) -------------------
    NOT_DUE = "NotDue"
    EXPIRES_SOON = "ExpiresSoon"
    EXPIRED = "Expired"
    NOT_EXPIRING = "NotExpiring"
    NOT_EXPIRED = "NotExpired"
    AWAITING_NEW_VALUE = "AwaitingNewValue"
    NO_PROJECTIONS_REQUESTED = "NoProjectionsRequested"
    ALL_PROJECTED = "AllProjected"
    PARTIALLY_PROJECTED = "PartiallyProjected"
    NOT_PROJECTED = "NotProjected"
    PROVIDER_REACHABLE = "ProviderReachable"
    # -- the error tree (errors.py: each error's ``reason``) ------------------------------
    PROVIDER_ERROR = "ProviderError"
    KEY_DISABLED = "KeyDisabled"
    INVALID_PROVIDER_CONFIG = "InvalidProviderConfig"
    WEAK_PASSPHRASE = "WeakPassphrase"  # noqa: S105 - a reason, not a secret
    INVALID_NAME = "InvalidName"
    API_ERROR = "ApiError"
    NOT_FOUND = "NotFound"
    CONFLICT = "Conflict"
    FORBIDDEN = "Forbidden"
    API_UNAVAILABLE = "ApiUnavailable"
    NOT_LEADING = "NotLeading"
    AUDIT_UNAVAILABLE = "AuditUnavailable"
    IMPORT_NOT_PERMITTED = "ImportNotPermitted"
    NOT_STARTED = "NotStarted"


class RotationCause(StrEnum):
    """Why a new version is made (``lifecycle.CreateVersion``); also the reason of the
    RotationDue condition while it is made."""

    INITIAL = "Initial"
    SCHEDULED = "Scheduled"
    REQUESTED = "Requested"
    SOURCE_CHANGED = "SourceChanged"
    RECOVERY = "Recovery"
