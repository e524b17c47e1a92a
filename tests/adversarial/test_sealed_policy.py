"""Finding K1 — a sealed value lifted out from under the policy it was sealed for.

The platform team seals a value for ``home/k`` under a strict policy that projects it
only into ``api`` (not the key's own namespace). A member of ``home``, with rights on
ApiKeys there and none on ``api``, copies the sealed string, deletes the ApiKey and
creates it again with the same namespace and name under a catch-all team policy that
admits ``home`` itself, then reads the value in ``home``. A v1 seal bound only the
namespace and name, so it opened. A v2 seal binds the policy too: under any other
policy it is Ready=False ``InvalidValue`` ("sealed for policy …") and nothing is
projected; the unbound v1 format is refused unless the cluster opts in for a window.
"""

from __future__ import annotations

import time

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, apikey, condition, keypolicy, public_key, unique
from devtools.operator import wait_for

from keykeeper.crypto.sealed import seal
from tests.adversarial.tenant import Tenant
from tests.cluster import Leaks

NOW = int(time.time())  # when these tests seal

pytestmark = pytest.mark.cluster


def test_a_sealed_value_does_not_open_under_another_policy(
    control_plane: ControlPlane, attacker: Tenant, kk: Cluster, leaks: Leaks
) -> None:
    home, api = attacker.namespace, kk.namespace("api")
    strict, team = unique("strict"), unique("team")
    kk.create(
        keypolicy(
            strict, sources={"names": [home]}, targets={"names": [api], "allowOwnNamespace": False}
        )
    )
    kk.create(keypolicy(team, sources={"names": [home]}, targets={"names": []}))
    value = b"sk_live_" + unique("bound").encode() * 2
    leaks.add(value)
    sealed = seal(
        wait_for(lambda: public_key(control_plane)), home, "k", value, policy=strict, sealed_at=NOW
    )
    kk.create(
        apikey(home, "k", strict, projections=[{"namespace": api}], source={"sealed": sealed})
    )
    assert wait_for(lambda: kk.value(api, "k"), what="the value projected") == value

    # the tenant lifts the sealed string into a key of the same name under its own policy
    attacker.kk.delete_key(home, "k")
    wait_for(lambda: kk.key(home, "k") is None, what="the key gone")
    attacker.kk.create(
        apikey(home, "k", team, projections=[{"namespace": home}], source={"sealed": sealed})
    )
    ready = wait_for(
        lambda: (c := condition(kk.key(home, "k"), "Ready")).get("reason") == "InvalidValue" and c,
        what="the lifted seal refused",
    )
    assert f"sealed for policy {strict}" in ready["message"]
    assert kk.value(home, "k") is None, "the value was not projected into the tenant's namespace"
    assert not ((kk.key(home, "k") or {}).get("status") or {}).get("versions"), "nothing stored"


def test_an_unbound_v1_seal_is_refused(
    control_plane: ControlPlane, attacker: Tenant, kk: Cluster, leaks: Leaks
) -> None:
    from keykeeper.crypto.sealed import seal_v1

    home = attacker.namespace
    team = unique("team")
    kk.create(keypolicy(team, sources={"names": [home]}, targets={"names": []}))
    value = b"sk_live_" + unique("v1").encode() * 2
    leaks.add(value)
    old = seal_v1(wait_for(lambda: public_key(control_plane)), home, "old", value)
    attacker.kk.create(
        apikey(home, "old", team, projections=[{"namespace": home}], source={"sealed": old})
    )
    ready = wait_for(
        lambda: (
            (c := condition(kk.key(home, "old"), "Ready")).get("reason") == "InvalidValue" and c
        ),
        what="the v1 seal refused",
    )
    assert "not bound to a policy" in ready["message"]
    assert kk.value(home, "old") is None
