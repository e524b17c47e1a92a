"""Rotation windows against the real apiserver: a scheduled rotation that falls due
outside the policy's window waits for it (and says when), a requested one does not, and
a window that can never open, or a time zone that does not exist, is refused."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from devtools.kk import Cluster, apikey, condition, keypolicy, unique
from devtools.operator import Operator, wait_for
from kubernetes.client.rest import ApiException

from keykeeper.api.timestamps import parse
from keykeeper.api.windows import DAYS
from tests.integration.conftest import Leaks
from tests.integration.test_lifecycle import now

pytestmark = pytest.mark.cluster


def test_a_scheduled_rotation_waits_for_the_window_and_a_requested_one_does_not(
    operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    today = datetime.now(UTC)
    closed = {DAYS[today.weekday()], DAYS[(today + timedelta(days=1)).weekday()]}
    window = {"days": [d for d in DAYS if d not in closed], "hours": "00:00-23:59"}
    home, policy = kk.namespace("home"), unique("pol")
    rotation = {"period": "2s", "gracePeriod": "1s", "window": window}
    kk.create(keypolicy(policy, sources={"names": [home]}, rotation=rotation))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}]))
    leaks.add(wait_for(lambda: kk.value(home, "k"), what="projected"))
    time.sleep(4)  # the period is over twice: only the window holds the rotation back
    status = (kk.key(home, "k") or {}).get("status") or {}
    assert status["currentVersion"] == 1, "rotated outside the window"
    opens = (today + timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert parse(status["nextRotationAt"]) == opens, status
    due = condition(kk.key(home, "k"), "RotationDue")
    assert due["status"] == "False" and "in the rotation window" in due["message"], due
    kk.patch_key(
        home, "k", {"metadata": {"annotations": {"keykeeper.dev/rotate-requested-at": now()}}}
    )
    wait_for(
        lambda: ((kk.key(home, "k") or {}).get("status") or {}).get("currentVersion") == 2,
        what="the requested rotation, outside the window",
    )
    leaks.add(wait_for(lambda: kk.value(home, "k"), what="the new value"))


def test_a_window_that_cannot_open_is_refused(kk: Cluster) -> None:
    never = {"period": "1d", "window": {"days": ["Mon"], "hours": "02:00-02:00"}}
    with pytest.raises(ApiException) as refused:
        kk.create(keypolicy(unique("pol"), rotation=never))
    assert "never open" in str(refused.value.body)
    with pytest.raises(ApiException) as empty:
        kk.create(
            keypolicy(unique("pol"), rotation={"window": {"days": [], "hours": "01:00-02:00"}})
        )
    assert "days" in str(empty.value.body)
    nowhere = unique("pol")
    kk.create(keypolicy(nowhere, rotation={"window": {"days": ["Mon"], "hours": "01:00-02:00",
                                                      "timeZone": "Mars/Olympus"}}))  # fmt: skip
    ready = wait_for(
        lambda: (
            condition(kk.policy(nowhere), "Ready").get("reason") == "InvalidSpec"
            and condition(kk.policy(nowhere), "Ready")
        ),
        what="the policy with no such time zone refused",
    )
    assert "not an IANA time zone" in ready["message"], ready
