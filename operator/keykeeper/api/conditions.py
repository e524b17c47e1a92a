"""Conditions in the metav1.Condition shape, so kubectl wait, Argo CD and Flux read them.

``lastTransitionTime`` changes only when a condition's status changes; updating its
reason or message keeps it, as Kubernetes API conventions ask.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from keykeeper.api.timestamps import rfc3339

READY = "Ready"
PROJECTED = "Projected"
ROTATION_DUE = "RotationDue"
EXPIRING = "Expiring"  # the value expires within the policy's alerts.expiringWithin
EXPIRED = "Expired"

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str


def merge(
    existing: Sequence[Mapping[str, object]],
    wanted: Iterable[Condition],
    generation: int,
    now: datetime,
) -> list[dict[str, object]]:
    """The new condition list: ``wanted`` in order, keeping transition times that still hold."""
    previous = {str(c.get("type")): c for c in existing}
    out: list[dict[str, object]] = []
    for condition in wanted:
        old = previous.get(condition.type)
        since = rfc3339(now)
        if (
            old is not None
            and old.get("status") == condition.status
            and old.get("lastTransitionTime")
        ):
            since = str(old["lastTransitionTime"])
        out.append(
            {
                "type": condition.type,
                "status": condition.status,
                "reason": condition.reason,
                "message": condition.message,
                "lastTransitionTime": since,
                "observedGeneration": generation,
            }
        )
    return out
