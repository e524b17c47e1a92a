"""Finding K16 — a tenant's ``source.generate`` weakening the platform's generator.

A policy's generator is the platform team's floor (40 base62 characters, 238 bits, by
default); ``source.generate`` is the tenant's. It used to override freely, so a tenant
could ask for 16 hex characters (64 bits) and have the operator project a guessable
key into every namespace the policy allows. An override may now only strengthen it:
anything weaker is Ready=False ``InvalidValue`` with a Warning Event, and nothing is
stored or projected.
"""

from __future__ import annotations

import pytest
from devtools.kk import Cluster, apikey, condition, keypolicy, unique
from devtools.operator import wait_for

from tests.adversarial.tenant import Tenant

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize(
    "override",
    [
        pytest.param({"length": 16, "alphabet": "hex"}, id="64-bits"),
        pytest.param({"length": 16}, id="shorter"),
        pytest.param({"alphabet": "lowercase"}, id="weaker-alphabet"),
    ],
)
def test_a_weaker_generate_override_is_refused_and_nothing_is_projected(
    attacker: Tenant, kk: Cluster, override: dict[str, object]
) -> None:
    policy = unique("pol")
    kk.create(keypolicy(policy, targets={"names": []}))  # the default generator
    home = attacker.namespace
    attacker.kk.create(
        apikey(
            home, "weak", policy, projections=[{"namespace": home}], source={"generate": override}
        )
    )
    ready = wait_for(
        lambda: (
            (c := condition(kk.key(home, "weak"), "Ready")).get("reason") == "InvalidValue" and c
        ),
        what="the weak override refused",
    )
    assert ready["status"] == "False"
    assert "may only make values stronger" in ready["message"]
    assert kk.value(home, "weak") is None, "no value was projected"
    status = (kk.key(home, "weak") or {}).get("status") or {}
    assert not status.get("versions"), "no version was stored"
    warnings = [e for e in kk.events(home, "weak") if e.type == "Warning"]
    assert warnings, "a Warning Event says why"
