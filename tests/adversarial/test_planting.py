"""Finding K6 — planting and squatting Secrets in the namespaces a policy authorizes.

A source tenant chooses the target Secret's name, its data key and (sealed or imported)
its content. Under a policy that lets ``home`` project into ``api``, a member of
``home`` planted ``db-password`` in ``api`` before ``api``'s owner made it, squatted
names there, and read from ``SecretNameTaken`` which Secrets exist in a namespace it
cannot list. Now the target has a say (annotation ``keykeeper.dev/accept-from``, and a
policy's ``requireConsent``), the policy can list the names and data keys a key may take
outside its own namespace (``secretNames``, ``dataKeys``), and a name taken outside the
author's own namespace reads exactly as "not authorized".
"""

from __future__ import annotations

import pytest
from devtools.kk import Cluster, apikey, keypolicy, projection_states, unique
from devtools.operator import wait_for

from tests.adversarial.tenant import Tenant

pytestmark = pytest.mark.cluster

ACCEPT_FROM = "keykeeper.dev/accept-from"


def _states(kk: Cluster, namespace: str, name: str, count: int) -> dict[tuple[str, str], str]:
    return wait_for(
        lambda: len(found := projection_states(kk.key(namespace, name))) == count and found,
        what=f"{count} projection results",
    )


def test_a_namespace_takes_keys_only_from_the_sources_it_accepts(
    attacker: Tenant, kk: Cluster
) -> None:
    home = attacker.namespace
    api = kk.namespace("api", annotations={ACCEPT_FROM: "payments"})
    policy = unique("grant")
    kk.create(keypolicy(policy, sources={"names": [home]}, targets={"names": [api]}))
    attacker.kk.create(
        apikey(home, "plant", policy, projections=[{"namespace": api, "secretName": "db-password"}])
    )
    assert _states(kk, home, "plant", 1) == {(api, "db-password"): "Denied/NotAuthorizedByPolicy"}
    assert kk.secret(api, "db-password") is None, "the Secret was planted"

    # api's owner accepts home: the key is projected; it takes the consent back: withdrawn
    kk.annotate_namespace(api, {ACCEPT_FROM: f"payments, {home}"})
    wait_for(lambda: kk.value(api, "db-password"), what="projected once api accepts home")
    kk.annotate_namespace(api, {ACCEPT_FROM: "payments"})
    wait_for(lambda: kk.secret(api, "db-password") is None, what="withdrawn with the consent")
    assert _states(kk, home, "plant", 1) == {
        (api, "db-password"): "Withdrawn/NotAuthorizedByPolicy"
    }


def test_a_policy_that_requires_consent_projects_nowhere_that_did_not_give_it(
    attacker: Tenant, kk: Cluster
) -> None:
    home = attacker.namespace
    silent, willing = kk.namespace("silent"), kk.namespace("willing")
    kk.annotate_namespace(willing, {ACCEPT_FROM: home})
    policy = unique("consent")
    kk.create(
        keypolicy(
            policy,
            sources={"names": [home]},
            targets={"names": [silent, willing], "requireConsent": True},
        )
    )
    attacker.kk.create(
        apikey(home, "k", policy, projections=[{"namespace": silent}, {"namespace": willing}])
    )
    wait_for(lambda: kk.value(willing, "k"), what="projected where consent was given")
    assert _states(kk, home, "k", 2)[(silent, "k")] == "Denied/NotAuthorizedByPolicy"
    assert kk.secret(silent, "k") is None


def test_a_policys_names_keep_a_tenant_from_squatting_a_target(
    attacker: Tenant, kk: Cluster
) -> None:
    home = attacker.namespace
    api = kk.namespace("api")
    policy = unique("names")
    targets = {"names": [api], "secretNames": [f"{home}-*"], "dataKeys": ["api-key"]}
    kk.create(keypolicy(policy, sources={"names": [home]}, targets=targets))
    attacker.kk.create(
        apikey(
            home,
            "squat",
            policy,
            projections=[
                {"namespace": api, "secretName": "db-password"},
                {"namespace": api, "secretName": f"{home}-ok"},
                {"namespace": api, "secretName": f"{home}-pw", "key": "password"},
                {"namespace": home, "secretName": "anything", "key": "password"},
            ],
        )
    )
    wait_for(lambda: kk.value(api, f"{home}-ok"), what="the listed name projected")
    wait_for(lambda: kk.value(home, "anything", "password"), what="any name at home")
    states = _states(kk, home, "squat", 4)
    assert states[(api, "db-password")] == "Denied/SecretNameNotAllowed"
    assert states[(api, f"{home}-pw")] == "Denied/SecretNameNotAllowed"
    assert kk.secret(api, "db-password") is None
    assert kk.secret(api, f"{home}-pw") is None


def test_status_is_no_oracle_for_which_secrets_exist_in_a_target(
    attacker: Tenant, kk: Cluster
) -> None:
    home = attacker.namespace
    api, ghost = kk.namespace("api"), unique("ghost")
    kk.put_secret(api, "existing", {"password": b"theirs"})
    policy = unique("oracle")
    kk.create(keypolicy(policy, sources={"names": [home]}, targets={"names": [api, ghost]}))
    attacker.kk.create(
        apikey(
            home,
            "probe",
            policy,
            projections=[
                {"namespace": api, "secretName": "existing"},
                {"namespace": ghost, "secretName": "existing"},
            ],
        )
    )
    _states(kk, home, "probe", 2)
    shown = {
        p["namespace"]: (p["state"], p["reason"], p["message"].replace(p["namespace"], "NS"))
        for p in kk.key(home, "probe")["status"]["projections"]  # type: ignore[index]
    }
    assert shown[api] == shown[ghost], "a taken name reads as a namespace that is not there"
    assert shown[api][1] == "NotAuthorizedByPolicy"
    assert kk.value(api, "existing", "password") == b"theirs"
