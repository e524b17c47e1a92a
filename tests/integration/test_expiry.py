"""A value's expiry against the real apiserver: an imported key that expires soon says so
(condition and one Warning Event), an expired one under ``onExpiry: Suspend`` is
withdrawn, and a generated key cannot claim an expiry (CEL)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, actions, apikey, condition, keypolicy, unique
from devtools.operator import Operator, wait_for
from kubernetes.client.rest import ApiException

from keykeeper.api import timestamps
from tests.integration.conftest import Leaks
from tests.integration.test_seal_cli import kubectl

pytestmark = pytest.mark.cluster


def at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def imported(
    kk: Cluster,
    leaks: Leaks,
    home: str,
    name: str,
    policy: str,
    expires: str,
    *,
    on_source: bool = False,
) -> None:
    """An imported key whose expiry is in its spec, or (``on_source``) on its source Secret."""
    value = secrets.token_urlsafe(24).encode()
    leaks.add(value)
    notes = {"keykeeper.dev/expires-at": expires} if on_source else None
    kk.put_secret(home, f"{name}-src", {"api-key": value}, importable_by=name, annotations=notes)
    source = {"secretRef": {"name": f"{name}-src"}}
    stated = {} if on_source else {"expiresAt": expires}
    projections = [{"namespace": home, "secretName": f"{name}-out"}]
    kk.create(apikey(home, name, policy, source=source, projections=projections, **stated))


def test_an_expiring_value_says_so_and_an_expired_one_can_be_withdrawn(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    warn, suspend = unique("warn"), unique("suspend")
    kk.create(keypolicy(warn, sources={"names": [home]}))
    kk.create(keypolicy(suspend, sources={"names": [home]}, alerts={"onExpiry": "Suspend"}))
    soon_at = at(timedelta(days=3))
    imported(kk, leaks, home, "soon", warn, soon_at)
    wait_for(lambda: kk.value(home, "soon-out"), what="the expiring key projected")
    expiring = wait_for(
        lambda: (
            condition(kk.key(home, "soon"), "Expiring").get("reason") == "ExpiresSoon"
            and condition(kk.key(home, "soon"), "Expiring")
        ),
        what="Expiring=True",
    )
    assert "in 2 days" in expiring["message"] or "in 3 days" in expiring["message"], expiring
    # the expiry itself, for the per-key metric and whoever reads the status
    stated = timestamps.parse(kk.key(home, "soon")["status"]["valueExpiresAt"])  # type: ignore[index]
    assert abs((stated - timestamps.parse(soon_at)).total_seconds()) < 1
    told = kk.wait_for_events(home, "soon", "ExpiresSoon")
    assert [e.type for e in told if "ExpiresSoon" in actions(e)] == ["Warning"], told
    admin = control_plane.admin.kubeconfig  # type: ignore[union-attr]
    shown = kubectl(control_plane, admin, "keykeeper", "status", "-n", home).stdout.decode()
    row = next(line for line in shown.splitlines() if line.split()[1:2] == ["soon"])
    assert "(soon)" in row, shown

    imported(kk, leaks, home, "said", warn, at(timedelta(days=2)), on_source=True)
    wait_for(
        lambda: condition(kk.key(home, "said"), "Expiring").get("reason") == "ExpiresSoon",
        what="Expiring=True from the source Secret's annotation",
    )
    shown = kubectl(control_plane, admin, "keykeeper", "status", "-n", home).stdout.decode()
    row = next(line for line in shown.splitlines() if line.split()[1:2] == ["said"])
    assert "(soon)" in row, f"the annotation's expiry is shown too: {shown}"

    imported(kk, leaks, home, "gone", suspend, at(-timedelta(minutes=1)))
    wait_for(
        lambda: condition(kk.key(home, "gone"), "Expired").get("status") == "True",
        what="Expired=True",
    )
    wait_for(lambda: kk.secret(home, "gone-out") is None, what="the expired value withdrawn")
    assert (kk.key(home, "gone") or {})["status"]["phase"] == "Suspended"


def test_a_generated_key_cannot_claim_an_expiry(kk: Cluster) -> None:
    home = kk.namespace("home")
    with pytest.raises(ApiException) as refused:
        kk.create(apikey(home, "k", unique("pol"), expiresAt=at(timedelta(days=1))))
    assert "expiresAt is for a value keykeeper did not make" in str(refused.value.body)
