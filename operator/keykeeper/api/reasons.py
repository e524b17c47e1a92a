"""The closed sets of the audit trail: Event types and the reasons of DESIGN.md §5.

Pure, so the modules that decide what to tell (``narration``) need no Kubernetes client.
Members are ``str`` subclasses: they serialize, compare and format as their values.
"""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


class Reason(StrEnum):
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
    SOURCE_NOT_FOUND = "SourceNotFound"
    POLICY_NOT_FOUND = "PolicyNotFound"
    SOURCE_DELETED = "SourceDeleted"
    AUDIT_GAP = "AuditGap"
    AUDIT_HANDOFF = "AuditHandoff"


NORMAL, WARNING = EventType.NORMAL, EventType.WARNING
CREATED = Reason.CREATED
ENCRYPTED = Reason.ENCRYPTED
PROJECTED = Reason.PROJECTED
PROJECTION_DENIED = Reason.PROJECTION_DENIED
PROJECTION_WITHDRAWN = Reason.PROJECTION_WITHDRAWN
ROTATION_DUE = Reason.ROTATION_DUE
ROTATED = Reason.ROTATED
REWRAPPED = Reason.REWRAPPED
ROLLOUT_RESTARTED = Reason.ROLLOUT_RESTARTED
SUSPENDED = Reason.SUSPENDED
REINSTATED = Reason.REINSTATED
REVOKED = Reason.REVOKED
ERASED = Reason.ERASED
INTEGRITY_FAILURE = Reason.INTEGRITY_FAILURE
PROVIDER_UNAVAILABLE = Reason.PROVIDER_UNAVAILABLE
INVALID_SPEC = Reason.INVALID_SPEC
INVALID_VALUE = Reason.INVALID_VALUE
SOURCE_NOT_FOUND = Reason.SOURCE_NOT_FOUND
POLICY_NOT_FOUND = Reason.POLICY_NOT_FOUND
SOURCE_DELETED = Reason.SOURCE_DELETED
