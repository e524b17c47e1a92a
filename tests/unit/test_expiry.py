"""A value's expiry: the conditions (pure), each crossing told once, and what an expired
value does under each policy (the reconciler, at the ``Kube.call`` seam)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keykeeper.api.models import Phase
from keykeeper.api.timestamps import rfc3339
from keykeeper.controllers.apikey.run import ready
from keykeeper.core.expiry import assess
from keykeeper.core.narration import narrate
from keykeeper.core.status import compose
from tests.unit.test_reconcile import OPERATOR_NS, Harness, _condition

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("expires_in", "expiring", "expired", "recheck"),
    [
        (None, None, None, None),
        (30 * DAY, ("False", "NotExpiring"), ("False", "NotExpired"), 16 * DAY),
        (14 * DAY, ("True", "ExpiresSoon"), ("False", "NotExpired"), 14 * DAY),
        (timedelta(hours=5), ("True", "ExpiresSoon"), ("False", "NotExpired"), timedelta(hours=5)),
        (timedelta(0), ("True", "Expired"), ("True", "Expired"), None),
        (-DAY, ("True", "Expired"), ("True", "Expired"), None),
    ],
)
def test_the_conditions_of_an_expiry(
    expires_in: timedelta | None,
    expiring: tuple[str, str] | None,
    expired: tuple[str, str] | None,
    recheck: timedelta | None,
) -> None:
    found = assess(NOW + expires_in if expires_in is not None else None, 14 * DAY, NOW)
    by_type = {c.type: (c.status, c.reason) for c in found.conditions}
    assert by_type.get("Expiring") == expiring and by_type.get("Expired") == expired
    assert found.recheck_after == recheck
    assert found.expired is (expired is not None and expired[0] == "True")
    assert found.at == (None if expires_in is None else rfc3339(NOW + expires_in))


def _status(conditions: tuple[object, ...]) -> dict[str, object]:
    from keykeeper.controllers.apikey.run import ready
    from keykeeper.core.status import TargetResult  # noqa: F401 - the shape compose takes

    return compose(
        {}, phase=Phase.ACTIVE, versions=[], current=None, next_rotation_at=None,
        ready=ready("True", "Ready", "ok"), extra=list(conditions), results=[],  # type: ignore[arg-type]
        generation=1, now=NOW,
    )  # fmt: skip


def test_each_crossing_is_told_once() -> None:

    ok = ready("True", "Ready", "ok")
    quiet = _status(assess(NOW + 30 * DAY, 14 * DAY, NOW).conditions)
    soon = _status(assess(NOW + 5 * DAY, 14 * DAY, NOW).conditions)
    gone = _status(assess(NOW - DAY, 14 * DAY, NOW).conditions)
    assert narrate({}, quiet, ok, []) == []
    (told,) = narrate(quiet, soon, ok, [])
    assert (told.type, told.reason) == ("Warning", "ExpiresSoon") and "in 5 days" in told.message
    assert narrate(soon, soon, ok, []) == [], "not told again on the next reconcile"
    (told,) = narrate(soon, gone, ok, [])
    assert (told.type, told.reason) == ("Warning", "Expired")
    assert narrate(gone, gone, ok, []) == []


@pytest.mark.parametrize(("on_expiry", "projected"), [("Warn", True), ("Suspend", False)])
def test_an_expired_value_under_each_policy(
    tmp_path: Path, on_expiry: str, projected: bool
) -> None:
    h = Harness(tmp_path)
    h.namespaces("home", "a", OPERATOR_NS)
    h.policy("p", targetNamespaces={"names": ["a"]}, alerts={"onExpiry": on_expiry})
    h.kube.put(
        "/api/v1/namespaces/home/secrets/src",
        {"metadata": {"name": "src", "namespace": "home",
                      "annotations": {"keykeeper.dev/importable-by": "k"}},
         "type": "Opaque", "data": {"api-key": "c2VjcmV0LXZhbHVlLTAxMjM0NTY3"}},
    )  # fmt: skip
    expires = (h.now + timedelta(days=3)).isoformat()
    h.apikey("home", "k", "p", "a", source={"secretRef": {"name": "src"}}, expiresAt=expires)
    retry = h.reconcile("home", "k")
    assert h.secret("a", "k") is not None
    assert _condition(h.status("home", "k"), "Expiring")["reason"] == "ExpiresSoon"
    assert retry is not None and retry <= 3 * 86400
    h.now += timedelta(days=4)
    h.reconcile("home", "k")
    assert _condition(h.status("home", "k"), "Expired")["status"] == "True"
    assert (h.secret("a", "k") is not None) is projected
    warnings = [e for e in h.events() if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["ExpiresSoon", "Expired"], warnings


@pytest.mark.parametrize(
    ("annotation", "expiring"),
    [("2026-01-03T00:00:00Z", ("True", "ExpiresSoon")), ("next week", ("Unknown", "InvalidValue"))],
)
def test_the_source_secret_can_state_the_expiry(
    tmp_path: Path, annotation: str, expiring: tuple[str, str]
) -> None:
    h = Harness(tmp_path)
    h.namespaces("home", "a", OPERATOR_NS)
    h.policy("p", targetNamespaces={"names": ["a"]})
    notes = {"keykeeper.dev/importable-by": "k", "keykeeper.dev/expires-at": annotation}
    h.kube.put(
        "/api/v1/namespaces/home/secrets/src",
        {"metadata": {"name": "src", "namespace": "home", "annotations": notes},
         "type": "Opaque", "data": {"api-key": "c2VjcmV0LXZhbHVlLTAxMjM0NTY3"}},
    )  # fmt: skip
    h.apikey("home", "k", "p", "a", source={"secretRef": {"name": "src"}})
    h.reconcile("home", "k")
    found = _condition(h.status("home", "k"), "Expiring")
    assert (found["status"], found["reason"]) == expiring, found
    assert h.secret("a", "k") is not None, "an expiry, stated or not, withdraws nothing by itself"
    assert expiring[1] in {e["reason"] for e in h.events() if e["type"] == "Warning"}
