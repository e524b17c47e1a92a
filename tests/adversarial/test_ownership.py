"""Finding 10 (ownership) — a Secret is keykeeper's by proof, never by its labels.

A tenant forging keykeeper's labels on a Secret in their own namespace, naming another
team's ApiKey, used to make the operator withdraw it on the victim's behalf, write
Events and audit records onto the victim's key, and LIST Secrets cluster-wide. Now
the forgery is not recorded at all: no action, no Event, no audit record, no LIST.
"""

from __future__ import annotations

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, apikey, keypolicy, projection_states, unique
from devtools.operator import Operator, wait_for

from tests.adversarial.tenant import Tenant, now, operator_requests
from tests.cluster import Leaks

pytestmark = pytest.mark.cluster


def forged_labels(owner_ns: str, owner: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "keykeeper",
        "keykeeper.dev/role": "projection",
        "keykeeper.dev/apikey-namespace": owner_ns,
        "keykeeper.dev/apikey-name": owner,
    }


def test_forged_labels_make_the_operator_do_nothing(
    control_plane: ControlPlane, operator: Operator, attacker: Tenant, kk: Cluster, leaks: Leaks
) -> None:
    victim = kk.namespace("victim")
    policy = unique("pol")
    kk.create(keypolicy(policy))
    kk.create(apikey(victim, "stripe", policy, projections=[{"namespace": victim}]))
    leaks.add(wait_for(lambda: kk.value(victim, "stripe")))
    wait_for(lambda: kk.key(victim, "stripe")["status"]["projections"])  # type: ignore[index]
    # Events follow the status patch: wait for the new key's before counting
    kk.wait_for_events(victim, "stripe", "Created", "Encrypted", "Projected")
    events_before = len(kk.events(victim, "stripe"))
    audit_before = len(operator.audit_records())
    started = now()
    # the forgery, with fake annotations too, then deleted again
    attacker.kk.core.create_namespaced_secret(
        attacker.namespace,
        {
            "metadata": {
                "name": "bait",
                "labels": forged_labels(victim, "stripe"),
                "annotations": {
                    "keykeeper.dev/apikey-uid": kk.key(victim, "stripe")["metadata"]["uid"],  # type: ignore[index]
                    "keykeeper.dev/owner-proof": "hmac-sha256:" + "0" * 64,
                },
            },
            "data": {"api-key": "Zm9yZ2Vk"},
        },
    )
    attacker.kk.core.delete_namespaced_secret("bait", attacker.namespace)
    attacker.kk.core.create_namespaced_secret(
        attacker.namespace,
        {"metadata": {"name": "bait2", "labels": forged_labels(victim, "stripe")}},
    )
    # give the operator every chance to react
    kk.patch_key(victim, "stripe", {"metadata": {"annotations": {"poke": "1"}}})
    wait_for(
        lambda: (
            any(
                r.verb == "patch" and r.name == "stripe" and r.resource == "apikeys"
                for r in operator_requests(control_plane, started)
            )
            or len(operator.log_text()) > 0
        ),
        what="the operator saw the poke",
    )
    import time

    time.sleep(2)
    assert attacker.kk.secret(attacker.namespace, "bait2") is not None  # not withdrawn
    assert len(kk.events(victim, "stripe")) == events_before
    new_records = operator.audit_records()[audit_before:]
    assert not [r for r in new_records if attacker.namespace in r["detail"]], new_records
    lists = [
        r
        for r in operator_requests(control_plane, started)
        if r.verb == "list" and r.resource == "secrets"
    ]
    assert lists == [], f"the forgery cost cluster-wide LISTs: {lists}"


def test_a_forged_secret_in_a_wanted_slot_is_never_overwritten(
    operator: Operator, attacker: Tenant, kk: Cluster, leaks: Leaks
) -> None:
    home = attacker.namespace
    attacker.kk.core.create_namespaced_secret(
        home,
        {
            "metadata": {"name": "k", "labels": forged_labels(home, "k")},
            "data": {"api-key": "dGhlaXJz"},
        },
    )
    policy = unique("pol")
    kk.create(keypolicy(policy))
    attacker.kk.create(apikey(home, "k", policy, projections=[{"namespace": home}]))
    wait_for(
        lambda: projection_states(kk.key(home, "k")) == {(home, "k"): "Denied/SecretNameTaken"},
        what="SecretNameTaken",
    )
    assert kk.value(home, "k") == b"theirs"
