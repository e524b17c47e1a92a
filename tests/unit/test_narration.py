"""What a status change deserves to be told: a table over narration.narrate (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from keykeeper.api.conditions import READY, ROTATION_DUE, Condition
from keykeeper.core.narration import narrate
from keykeeper.core.plan import TargetState
from keykeeper.core.status import TargetResult

OK = Condition(READY, "True", "Ready", "ok")


def status(phase: str = "Active", **extra: Any) -> dict[str, Any]:
    return {"phase": phase, "conditions": extra.pop("conditions", []), **extra}


def cond(type_: str, reason: str, status_: str = "True") -> dict[str, str]:
    return {"type": type_, "status": status_, "reason": reason, "message": reason}


def denied(ns: str, reason: str = "NotAuthorizedByPolicy", named: bool = True) -> TargetResult:
    return TargetResult(ns, "k", TargetState.DENIED, reason, "why", named=named)


@pytest.mark.parametrize(
    ("old", "new", "ready", "results", "told"),
    [
        pytest.param(status(), status(), OK, [], [], id="quiet-key-tells-nothing"),
        pytest.param(status(), status("Suspended"), OK, [], ["Suspended"], id="suspended"),
        pytest.param(status("Suspended"), status(), OK, [], ["Reinstated"], id="reinstated"),
        pytest.param(
            status(),
            status(conditions=[cond(ROTATION_DUE, "AwaitingNewValue")]),
            OK,
            [],
            ["RotationDue"],
            id="manual-rotation-awaits",
        ),
        pytest.param(
            status(conditions=[cond(READY, "InvalidValue", "False")]),
            status(),
            Condition(READY, "False", "InvalidValue", "bad"),
            [],
            [],
            id="same-failure-not-repeated",
        ),
        pytest.param(
            status(),
            status(),
            Condition(READY, "False", "ProviderUnavailable", "down"),
            [],
            ["ProviderUnavailable"],
            id="new-failure-told",
        ),
        pytest.param(
            status(), status(), OK, [denied("x")], ["ProjectionDenied"], id="named-denial"
        ),
        pytest.param(
            status(
                projections=[
                    {"namespace": "x", "secretName": "k", "reason": "NotAuthorizedByPolicy"}
                ]
            ),
            status(),
            OK,
            [denied("x")],
            [],
            id="denial-already-told",
        ),
        pytest.param(
            status(),
            status(),
            OK,
            [denied(f"s{n}", named=False) for n in range(300)],
            ["ProjectionDenied"],
            id="selector-denials-one-event",
        ),
        pytest.param(
            status(targets={"denied": 300}),
            status(),
            OK,
            [denied(f"s{n}", named=False) for n in range(300)],
            [],
            id="unchanged-count-not-repeated",
        ),
    ],
)
def test_narration(old, new, ready, results, told) -> None:  # type: ignore[no-untyped-def]
    assert [e.reason for e in narrate(old, new, ready, results)] == told
