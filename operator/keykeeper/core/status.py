"""An ApiKey's status, composed from what one reconcile found and did — pure.

``status.projections`` lists each target the tenant may know of (see ``plan``) with
what exists there now; ``status.targets`` counts them all, the unnamed included. A
selector only ever expands inside what the policy reaches (``authz.reachable``), so no
count says anything of namespaces the policy does not allow.
Conditions keep their ``lastTransitionTime`` while their status holds.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keykeeper.api import conditions
from keykeeper.api.conditions import Condition
from keykeeper.api.models import PROJECTING_PHASES, Phase
from keykeeper.api.reasons import Reason
from keykeeper.core.plan import TargetState
from keykeeper.core.store import Version


@dataclass(frozen=True)
class TargetResult:
    """What became of one target in this reconcile."""

    namespace: str
    secret_name: str
    state: TargetState
    reason: str = ""
    message: str = ""
    version: int | None = None  # the version the Secret there holds, if one does
    named: bool = True  # shown by name in status (else only counted)
    template: str = ""  # the shape it was rendered from (``Shape.label``); "": one value

    @property
    def slot(self) -> tuple[str, str]:
        return (self.namespace, self.secret_name)

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "namespace": self.namespace,
            "secretName": self.secret_name,
            "state": self.state.value,
        }
        if self.version is not None:
            out["version"] = self.version
        if self.template:
            out["template"] = self.template
        if self.reason:
            out["reason"] = self.reason
        if self.message:
            out["message"] = self.message
        return out


def mark_withdrawn(
    results: Sequence[TargetResult],
    before: Sequence[Mapping[str, Any]],
    withdrawing: Collection[tuple[str, str]] = (),
) -> list[TargetResult]:
    """A denied target that was Projected (or withdrawn) before is reported Withdrawn, or
    Withdrawing while a finalizer keeps its (emptied) Secret from going."""
    earlier = {(p.get("namespace"), p.get("secretName")): p.get("state") for p in before}
    was = (TargetState.PROJECTED, TargetState.WITHDRAWN, TargetState.WITHDRAWING)
    out = []
    for item in results:
        if (
            item.state is TargetState.DENIED
            and item.reason != Reason.SECRET_NAME_TAKEN
            and (earlier.get(item.slot) in was or item.slot in withdrawing)
        ):
            item = TargetResult(
                item.namespace,
                item.secret_name,
                TargetState.WITHDRAWING if item.slot in withdrawing else TargetState.WITHDRAWN,
                item.reason,
                item.message,
                None,
                item.named,
            )
        out.append(item)
    return out


def counts(results: Sequence[TargetResult]) -> dict[str, int]:
    def count(state: TargetState) -> int:
        return sum(1 for r in results if r.state is state)

    return {
        "requested": len(results),
        "projected": count(TargetState.PROJECTED),
        "denied": count(TargetState.DENIED)
        + count(TargetState.WITHDRAWN)
        + count(TargetState.WITHDRAWING),
        "failed": count(TargetState.FAILED),
    }


def projected_condition(results: Sequence[TargetResult]) -> Condition:
    total = len(results)
    done = sum(1 for r in results if r.state is TargetState.PROJECTED)
    message = f"projected into {done} of {total} requested targets"
    failed = sum(1 for r in results if r.state is TargetState.FAILED)
    if failed:
        message += f"; {failed} failed and will be retried"
    if not total:
        return Condition(
            conditions.PROJECTED,
            "False",
            Reason.NO_PROJECTIONS_REQUESTED,
            "spec.projections requests no target",
        )
    if done == total:
        return Condition(conditions.PROJECTED, "True", Reason.ALL_PROJECTED, message)
    return Condition(
        conditions.PROJECTED,
        "False",
        Reason.PARTIALLY_PROJECTED if done else Reason.NOT_PROJECTED,
        message,
    )


def compose(
    old: Mapping[str, Any],
    *,
    phase: Phase,
    versions: Sequence[Version],
    current: int | None,
    next_rotation_at: str | None,
    ready: Condition,
    value_expires_at: str | None = None,
    extra: Sequence[Condition],
    results: Sequence[TargetResult],
    generation: int,
    now: datetime,
) -> dict[str, Any]:
    """The whole new status; keys whose value is None are left out."""
    wanted = [ready, projected_condition(results), *extra]
    merged = conditions.merge(old.get("conditions") or [], wanted, generation, now)
    shown = [r.to_status() for r in results if r.named]
    status: dict[str, Any] = {
        "phase": phase.value,
        "currentVersion": current,
        "nextRotationAt": next_rotation_at if phase in PROJECTING_PHASES else None,
        "valueExpiresAt": value_expires_at,
        "versions": [v.status() for v in versions] or None,
        "projections": shown or None,
        "targets": counts(results) if results else None,
        "observedGeneration": generation,
        "conditions": merged,
    }
    return {k: v for k, v in status.items() if v is not None}
