"""A KeyPolicy moved from the local provider to AWS KMS (moto's server) strands
nothing: every key keeps its value and projections, its versions are re-wrapped under
the KMS key, and the policy's status counts the keys still to do down to 0."""

from __future__ import annotations

import pytest
from devtools import kmspeers
from devtools.kk import Cluster, actions, apikey, condition, keypolicy, unique
from devtools.operator import Operator, wait_for

from tests.integration.conftest import Leaks

pytestmark = pytest.mark.cluster


def test_moving_a_policy_to_another_kms_rewraps_every_key(
    operator: Operator, kk: Cluster, leaks: Leaks, moto_peer: kmspeers.Peer
) -> None:
    policy = unique("moving")
    home = kk.namespace("home")
    kk.create(keypolicy(policy, targets={"names": [home]}))
    names = [f"k{n}" for n in range(4)]
    for name in names:
        kk.create(apikey(home, name, policy, projections=[{"namespace": home}]))
    values = {}
    for name in names:
        values[name] = wait_for(lambda n=name: kk.value(home, n), what=f"{name} projected")  # type: ignore[misc]
        leaks.add(values[name])

    alias = f"alias/{unique('moved')}"
    arn = moto_peer.create_key(alias)
    creds = unique("aws-creds")
    kk.put_secret(
        "keykeeper-system", creds, {k: v.encode() for k, v in kmspeers.CREDENTIALS.items()}
    )
    options = {"endpoint": moto_peer.endpoint, "region": kmspeers.REGION}
    kms = {"provider": "aws", "keyRef": alias, "credentialsSecretRef": {"name": creds}}
    kk.patch_policy(policy, {"spec": {"kms": {**kms, "options": options}}})

    def rewrapped() -> bool:
        status = kk.policy(policy).get("status") or {}
        if status.get("observedGeneration") != kk.policy(policy)["metadata"]["generation"]:
            return False
        keys = [kk.key(home, n) or {} for n in names]
        return status.get("keysUnderPreviousKms") == 0 and all(
            v.get("kmsKeyId") == arn
            for k in keys
            for v in (k.get("status") or {}).get("versions", [])
            if v.get("state") != "Destroyed"
        )

    wait_for(rewrapped, timeout=60, what="every key re-wrapped under the KMS key")
    assert condition(kk.policy(policy), "Ready").get("status") == "True"
    for name in names:
        assert kk.value(home, name) == values[name], "re-wrapping changes no value"
        assert condition(kk.key(home, name), "Ready").get("status") == "True"
        reasons = {a for e in kk.wait_for_events(home, name, "Rewrapped") for a in actions(e)}
        assert "Rewrapped" in reasons
    records = [r for r in operator.audit_records() if r["action"] == "Rewrapped"]
    assert len({r["name"] for r in records if r["namespace"] == home}) == len(names)
