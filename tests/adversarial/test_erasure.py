"""Finding 10 (erasure) — per-key KEKs orphaned by an outage or a deleted policy.

Erasure used to mark the store erased before destroying per-key KEKs, so a provider
outage at that moment orphaned them on the HSM forever, and deleting a key whose
policy was gone skipped them. Now the KEKs are recorded as pending with the erasure,
destroyed when the provider answers (with the provider settings kept in the store,
so no policy is needed), and a deleted ApiKey keeps its finalizer until that is done.
"""

from __future__ import annotations

import pytest
from devtools.kk import Cluster, apikey, hsm_policy
from devtools.operator import Operator, wait_for
from devtools.softhsm import Token

from tests.cluster import Leaks
from tests.integration.test_hsm import labels_on_token

pytestmark = pytest.mark.cluster


def test_erasure_during_an_outage_destroys_the_kek_when_the_provider_returns(
    operator: Operator, kk: Cluster, softhsm_token: Token, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    hsm = hsm_policy(kk, softhsm_token, retention={"revokedFor": "3s"})
    policy, label, pin_secret = hsm.name, hsm.kek_label, hsm.pin_secret
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}]))
    leaks.add(wait_for(lambda: kk.value(home, "k")))
    assert len(labels_on_token(softhsm_token, label)) == 1
    kk.core.delete_namespaced_secret(pin_secret, "keykeeper-system")  # the outage
    kk.patch_key(home, "k", {"spec": {"revoked": True}})
    wait_for(
        lambda: (kk.key(home, "k") or {}).get("status", {}).get("phase") == "Deleted",
        what="envelopes erased although the provider is down",
    )
    assert len(labels_on_token(softhsm_token, label)) == 1, "the KEK waits, it is not forgotten"
    kk.put_secret("keykeeper-system", pin_secret, {"pin": softhsm_token.pin.encode()})
    wait_for(
        lambda: labels_on_token(softhsm_token, label) == set(),
        timeout=45,
        what="the pending KEK destroyed once the provider is back",
    )


def test_deletion_holds_until_the_kek_is_destroyed_even_without_the_policy(
    operator: Operator, kk: Cluster, softhsm_token: Token, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    hsm = hsm_policy(kk, softhsm_token)
    policy, label, pin_secret = hsm.name, hsm.kek_label, hsm.pin_secret
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}]))
    leaks.add(wait_for(lambda: kk.value(home, "k")))
    kk.core.delete_namespaced_secret(pin_secret, "keykeeper-system")
    kk.delete_policy(policy)
    kk.delete_key(home, "k")
    wait_for(lambda: kk.secret(home, "k") is None, what="projection withdrawn at once")
    import time

    time.sleep(3)
    assert kk.key(home, "k") is not None, "the finalizer holds while the KEK cannot be destroyed"
    assert len(labels_on_token(softhsm_token, label)) == 1
    kk.put_secret("keykeeper-system", pin_secret, {"pin": softhsm_token.pin.encode()})
    wait_for(lambda: kk.key(home, "k") is None, timeout=60, what="deletion completes")
    assert labels_on_token(softhsm_token, label) == set()
