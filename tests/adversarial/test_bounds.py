"""Finding 9 — a selector over every namespace, and status as an oracle; and the parts of
finding 10 that a tenant aims at the operator itself (its namespace, its event loop).

A tenant's ``namespaceSelector: {}`` used to put one status entry per namespace into
the ApiKey (past the object size limit at 2,000 namespaces), and status told apart
"does not exist" from "not authorized". Now status names only authorized targets and
the ones the author named, with one reason for both cases, and counts the rest.
"""

from __future__ import annotations

import json
import re

import pytest
from devtools.kk import Cluster, actions, apikey, condition, keypolicy, unique
from devtools.operator import Operator, wait_for

from tests.adversarial.tenant import Tenant
from tests.cluster import Leaks

pytestmark = pytest.mark.cluster

MANY = 120


def status(kk: Cluster, namespace: str, name: str) -> dict:  # type: ignore[type-arg]
    return (kk.key(namespace, name) or {}).get("status") or {}


def test_a_selector_over_every_namespace_stays_small_and_says_nothing(
    attacker: Tenant, kk: Cluster, leaks: Leaks
) -> None:
    crowd = unique("crowd")
    for _ in range(MANY):
        kk.namespace("crowd", {"crowd": crowd})
    allowed = [kk.namespace("allowed", {"crowd": crowd}) for _ in range(2)]
    exists_unauthorized = kk.namespace("exists")
    policy = unique("pol")
    kk.create(keypolicy(policy, targets={"names": allowed}))
    home = attacker.namespace
    attacker.kk.create(
        apikey(
            home,
            "k",
            policy,
            projections=[
                {"namespaceSelector": {}},
                {"namespace": exists_unauthorized, "secretName": "probe"},
                {"namespace": "does-not-exist", "secretName": "probe"},
            ],
        )
    )
    for ns in allowed:
        leaks.add(wait_for(lambda ns=ns: kk.value(ns, "k")))
    found = wait_for(
        lambda: (s := status(kk, home, "k")).get("targets", {}).get("projected") == 3 and s,
        what="the two policy targets and the key's own namespace projected",
    )
    shown = {(p["namespace"], p["secretName"]): p for p in found["projections"]}
    assert set(shown) == {
        *((ns, "k") for ns in [*allowed, home]),
        (exists_unauthorized, "probe"),
        ("does-not-exist", "probe"),
    }, "only authorized and explicitly named targets are named"
    probe_a, probe_b = shown[(exists_unauthorized, "probe")], shown[("does-not-exist", "probe")]
    assert probe_a["reason"] == probe_b["reason"] == "NotAuthorizedByPolicy"
    assert probe_a["message"].replace(exists_unauthorized, "X") == probe_b["message"].replace(
        "does-not-exist", "X"
    ), "an existing and a missing namespace read the same"
    # K7: the selector over every namespace expands only inside the policy's targets, so
    # the count is of the two named probes: nothing of the MANY namespaces (or labels)
    # the tenant may not list leaks through status, conditions or Events
    assert found["targets"]["denied"] == 2, found["targets"]
    # as a number of its own: a fingerprint's hex digits may well contain "120"
    assert not re.search(rf"\b{MANY}\b", json.dumps(found)), found
    assert len(json.dumps(found)) < 4096
    # Events for the selector's denials are one count, not one per namespace
    denied_events = [e for e in kk.events(home, "k") if "ProjectionDenied" in actions(e)]
    assert len(denied_events) <= 4


def test_authorized_targets_are_capped(attacker: Tenant, kk: Cluster, leaks: Leaks) -> None:
    crowd = unique("crowd")
    for _ in range(130):
        kk.namespace("wide", {"wide": crowd})
    policy = unique("pol")
    kk.create(keypolicy(policy, targets={"selector": {"matchLabels": {"wide": crowd}}}))
    home = attacker.namespace
    attacker.kk.create(
        apikey(
            home, "k", policy, projections=[{"namespaceSelector": {"matchLabels": {"wide": crowd}}}]
        )
    )
    try:
        found = wait_for(
            lambda: (s := status(kk, home, "k")).get("targets", {}).get("projected") == 128 and s,
            timeout=90,
            what="128 targets projected",
        )
    except AssertionError:
        raise AssertionError(json.dumps(status(kk, home, "k"))[:3000]) from None
    capped = [p for p in found["projections"] if p.get("reason") == "TooManyTargets"]
    assert len(capped) == 2
    assert condition(kk.key(home, "k"), "Projected")["reason"] == "PartiallyProjected"
    first = next(p for p in found["projections"] if p["state"] == "Projected")
    leaks.add(kk.value(first["namespace"], "k"))  # type: ignore[arg-type]


def test_the_operators_namespace_is_never_a_target_or_source(
    operator: Operator, attacker: Tenant, kk: Cluster
) -> None:
    policy = unique("pol")
    kk.create(keypolicy(policy, targets={"selector": {}}))  # a careless "everywhere"
    home = attacker.namespace
    attacker.kk.create(
        apikey(
            home,
            "k",
            policy,
            projections=[{"namespace": "keykeeper-system", "secretName": "keykeeper-master-key"}],
        )
    )
    wait_for(
        lambda: (
            [p.get("reason") for p in status(kk, home, "k").get("projections", [])]
            == ["NotAuthorizedByPolicy"]
        ),
        what="the operator namespace refused as a target",
    )
    master = kk.secret("keykeeper-system", "keykeeper-master-key")
    assert master is not None and "keykeeper.dev/apikey-name" not in (master.metadata.labels or {})
    kk.create(apikey("keykeeper-system", unique("inside"), policy))
    inside = next(k for k in kk.apikeys() if k["metadata"]["namespace"] == "keykeeper-system")
    wait_for(
        lambda: (
            condition(kk.key("keykeeper-system", inside["metadata"]["name"]), "Ready").get("reason")
            == "SourceNamespaceNotAllowed"
        ),
        what="the operator namespace refused as a source",
    )
    kk.delete_key("keykeeper-system", inside["metadata"]["name"])


def test_a_catastrophic_pattern_cannot_stall_the_operator(
    attacker: Tenant, kk: Cluster, leaks: Leaks
) -> None:
    policy = unique("pol")
    kk.create(keypolicy(policy, value={"pattern": "^([A-Za-z0-9]+_?)+$"}))
    home = attacker.namespace
    hostile = b"a" * 4000 + b"!"
    leaks.add(hostile)
    attacker.kk.put_secret(home, "src", {"api-key": hostile}, importable_by="k")
    attacker.kk.create(apikey(home, "k", policy, source={"secretRef": {"name": "src"}}))
    attacker.kk.create(apikey(home, "bystander", policy, projections=[{"namespace": home}]))
    wait_for(
        lambda: condition(kk.key(home, "k"), "Ready").get("reason") == "InvalidValue",
        what="InvalidValue, promptly",
    )
    leaks.add(wait_for(lambda: kk.value(home, "bystander"), what="other keys go on"))


def _selector(expressions: int, values: int) -> dict:  # type: ignore[type-arg]
    return {
        "namespaceSelector": {
            "matchExpressions": [
                {"key": f"k{e}", "operator": "In", "values": [f"v{n}" for n in range(values)]}
                for e in range(expressions)
            ]
        }
    }


def test_a_key_cannot_carry_selectors_built_to_blow_up_the_operator(attacker: Tenant) -> None:
    """K3: 64 selector projections of 16 expressions x 64 values each were admitted
    (about 1.5 MB of selector per key, six times that once parsed by the operator, for
    every key, policy or not). Now a key has at most 8 selector projections and 256
    selector values in all; what it may still carry stays small."""
    home, policy = attacker.namespace, unique("pol")
    many = apikey(home, "many", policy, projections=[_selector(1, 1) for _ in range(9)])
    assert "at most 8 projections by namespaceSelector" in attacker.rejected(many)
    wide = apikey(home, "wide", policy, projections=[_selector(16, 64) for _ in range(2)])
    assert "at most 256 selector values" in attacker.rejected(wide)
    largest = apikey(home, "largest", policy, projections=[_selector(16, 2) for _ in range(8)])
    made = attacker.kk.create(largest)  # 8 x 16 x 2 = 256 values: admitted
    assert len(json.dumps(made["spec"])) < 64 * 1024
    attacker.kk.delete_key(home, "largest")
