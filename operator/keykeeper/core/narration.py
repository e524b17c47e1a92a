"""Which Events and audit records a change of an ApiKey's status deserves — pure.

The reporter compares the status it wrote with the one before and asks this module
what to tell: a phase entered (Suspended, Reinstated), a rotation awaiting a value,
Ready turning False for a new reason, a named target newly denied, and the count of
a selector's denied namespaces when it changes (one Event, not one per namespace).
Nothing is told twice for an unchanged status, so a quiet key posts nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keykeeper.api import conditions
from keykeeper.api.conditions import Condition
from keykeeper.api.models import PROJECTING_PHASES, Phase
from keykeeper.api.reasons import EventType, Reason
from keykeeper.core.plan import TargetState
from keykeeper.core.status import TargetResult


@dataclass(frozen=True)
class Entry:
    """One thing to tell: an Event, and the audit record that goes with it (if any)."""

    type: str
    reason: str
    message: str
    audit: str | None = None  # the audit record's detail; None: the Event alone


def narrate(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    ready: Condition,
    results: Sequence[TargetResult],
) -> list[Entry]:
    return [
        *_phase_changes(old, new, ready),
        *_rotation_awaited(old, new),
        *_expiry_crossed(old, new),
        *_ready_failed(old, ready),
        *_denials(old, results),
    ]


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    found: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == type_), {}
    )
    return found


def _phase_changes(old: Mapping[str, Any], new: Mapping[str, Any], ready: Condition) -> list[Entry]:
    before, after = old.get("phase"), new.get("phase")
    out = []
    if after != before and after == Phase.SUSPENDED and ready.status == "True":
        out.append(
            Entry(
                EventType.NORMAL,
                Reason.SUSPENDED,
                "suspended: projections withdrawn, material kept",
                "spec.suspended",
            )
        )
    if before == Phase.SUSPENDED and after in PROJECTING_PHASES:
        out.append(
            Entry(EventType.NORMAL, Reason.REINSTATED, "reinstated: projections restored", "")
        )
    return out


def _rotation_awaited(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Entry]:
    due = _condition(new, conditions.ROTATION_DUE)
    awaiting = "AwaitingNewValue"
    if (
        due.get("reason") != awaiting
        or _condition(old, conditions.ROTATION_DUE).get("reason") == awaiting
    ):
        return []
    return [
        Entry(
            EventType.WARNING,
            Reason.ROTATION_DUE,
            str(due.get("message", "")),
            "awaiting a new source value",
        )
    ]


def _expiry_crossed(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Entry]:
    """Expiring, then Expired, each told once when it turns True (not per reconcile); an
    expiry that cannot be read (Unknown) too."""
    out = []
    for type_ in (conditions.EXPIRED, conditions.EXPIRING):
        now, before = _condition(new, type_), _condition(old, type_)
        told = now.get("status") in ("True", "Unknown")
        if told and before.get("reason") != now.get("reason"):
            message = str(now.get("message", ""))
            out.append(Entry(EventType.WARNING, str(now.get("reason")), message, message))
            break  # Expired says all that Expiring would
    return out


def _ready_failed(old: Mapping[str, Any], ready: Condition) -> list[Entry]:
    if ready.status != "False" or _condition(old, conditions.READY).get("reason") == ready.reason:
        return []
    return [Entry(EventType.WARNING, ready.reason, ready.message, ready.message[:200])]


def _denials(old: Mapping[str, Any], results: Sequence[TargetResult]) -> list[Entry]:
    """Named targets newly denied, and one Entry for the count of unnamed ones."""
    before = {(p.get("namespace"), p.get("secretName")): p for p in old.get("projections") or []}
    out = []
    for item in results:
        prior = before.get(item.slot)
        if (
            item.named
            and item.state is TargetState.DENIED
            and (prior is None or prior.get("reason") != item.reason)
        ):
            where = f"{item.namespace}/{item.secret_name}"
            out.append(
                Entry(
                    EventType.WARNING,
                    Reason.PROJECTION_DENIED,
                    f"{where}: {item.reason}: {item.message}",
                    f"{where}: {item.reason}",
                )
            )
    unnamed = sum(1 for r in results if not r.named and r.state is TargetState.DENIED)
    if unnamed and unnamed != _unnamed_denied(old):
        out.append(
            Entry(
                EventType.WARNING,
                Reason.PROJECTION_DENIED,
                f"{unnamed} namespaces the policy allows and a namespaceSelector matched are "
                "not projected into now; they are counted in status.targets",
            )
        )
    return out


def _unnamed_denied(status: Mapping[str, Any]) -> int:
    shown = sum(
        1
        for p in status.get("projections") or []
        if p.get("state") in (TargetState.DENIED, TargetState.WITHDRAWN)
    )
    return int((status.get("targets") or {}).get("denied", 0)) - shown
