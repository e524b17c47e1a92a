"""Finding K18 — a recipient's finalizer keeping a withdrawn value readable.

A recipient (a team in a target namespace, with rights on its Secrets) could add a
finalizer to the projected Secret: when keykeeper withdrew it (revocation, suspension,
de-authorization) the DELETE only marked it, and the object, value included, stayed
readable for as long as the finalizer did. keykeeper now empties the data of a
withdrawn Secret that a finalizer holds, right after the DELETE, and reports the target
Withdrawing until the object is gone.
"""

from __future__ import annotations

import pytest
from devtools.kk import Cluster, apikey, keypolicy, projection_states, unique
from devtools.operator import Operator, wait_for
from kubernetes.client.exceptions import ApiException

from tests.cluster import Leaks

pytestmark = pytest.mark.cluster

HOLD = "recipient.example/keep-me"


def test_a_withdrawn_secret_held_by_a_finalizer_keeps_no_value(
    operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    home, target = kk.namespace("home"), kk.namespace("api")
    policy = unique("pol")
    kk.create(keypolicy(policy, targets={"names": [target]}))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": target}]))
    value = wait_for(lambda: kk.value(target, "k"), what="the value projected")
    leaks.add(value)
    kk.core.patch_namespaced_secret("k", target, {"metadata": {"finalizers": [HOLD]}})
    kk.patch_key(home, "k", {"spec": {"revoked": True}})
    try:
        held = wait_for(
            lambda: (
                (s := kk.core.read_namespaced_secret("k", target)).metadata.deletion_timestamp
                and not s.data
                and s
            ),
            what="the held Secret marked for deletion and emptied",
        )
        assert HOLD in (held.metadata.finalizers or [])
        wait_for(
            lambda: (
                projection_states(kk.key(home, "k"))
                .get((target, "k"), "")
                .startswith("Withdrawing/")
            ),
            what="status says Withdrawing while the finalizer holds it",
        )
    finally:
        kk.core.patch_namespaced_secret("k", target, {"metadata": {"finalizers": None}})
    wait_for(lambda: not gone_or_present(kk, target, "k"), what="the Secret gone once let go")
    wait_for(
        lambda: (
            projection_states(kk.key(home, "k")).get((target, "k"), "").startswith("Withdrawn/")
        ),
        timeout=30,
        what="status says Withdrawn once it is gone",
    )


def gone_or_present(kk: Cluster, namespace: str, name: str) -> bool:
    """True while the Secret exists at all."""
    try:
        kk.core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True
