"""Kubernetes Events: the short-lived half of the audit trail (the log is the other).

Reasons are the closed set of DESIGN.md §5. Messages name resources, versions and
fingerprints; they are built only from those, never from values.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from typing import Any

from keykeeper.errors import KeykeeperError
from keykeeper.kube import Kube

log = logging.getLogger("keykeeper.events")

NORMAL, WARNING = "Normal", "Warning"

CREATED = "Created"
ENCRYPTED = "Encrypted"
PROJECTED = "Projected"
PROJECTION_DENIED = "ProjectionDenied"
PROJECTION_WITHDRAWN = "ProjectionWithdrawn"
ROTATION_DUE = "RotationDue"
ROTATED = "Rotated"
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


class EventSink:
    def __init__(self, kube: Kube, instance: str) -> None:
        self._kube = kube
        self._instance = instance

    async def emit(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name')}.{secrets.token_hex(8)}",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace", ""),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "keykeeper"},
            "reportingComponent": "keykeeper.dev/operator",
            "reportingInstance": self._instance,
            "action": reason,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._kube.create(f"/api/v1/namespaces/{namespace}/events", event)
        except KeykeeperError as exc:  # an Event is best effort; the audit log is not
            log.warning("could not post event %s for %s: %s", reason, meta.get("name"), exc)
