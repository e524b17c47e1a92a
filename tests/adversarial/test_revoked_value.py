"""Finding K5 — a revoked value served again after a GitOps re-sync, and sealed rollbacks.

A key is revoked; its manifest still sits in git. Deleting the ApiKey and applying the
manifest again (what a re-sync does), or sealing the same value under another name,
used to store and project the revoked value afresh — with the same fingerprint as the
revoked version. Reverting a key to an older sealed string rolled its value back.
keykeeper now keeps a tombstone of every revoked value in its namespace and refuses a
user-supplied value that matches one (``RevokedValue``), refuses a value the key had
before (a rollback) and a seal older than the one in use.
"""

from __future__ import annotations

import time

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, apikey, condition, keypolicy, public_key, unique
from devtools.operator import wait_for

from keykeeper.crypto.sealed import SealingPublicKey, seal
from tests.adversarial.tenant import Tenant
from tests.cluster import Leaks

pytestmark = pytest.mark.cluster


def refused(kk: Cluster, namespace: str, name: str, reason: str) -> dict[str, str]:
    return wait_for(
        lambda: (c := condition(kk.key(namespace, name), "Ready")).get("reason") == reason and c,
        what=f"{namespace}/{name} refused with {reason}",
    )


def test_a_revoked_value_stays_dead_after_delete_and_reapply(
    control_plane: ControlPlane, attacker: Tenant, kk: Cluster, leaks: Leaks
) -> None:
    home = attacker.namespace
    policy = unique("pol")
    kk.create(keypolicy(policy, sources={"names": [home]}, targets={"names": []}))
    key = wait_for(lambda: public_key(control_plane))
    value = b"sk_live_" + unique("revoked").encode() * 2
    leaks.add(value)
    sealed = seal(key, home, "k", value, policy=policy, sealed_at=int(time.time()))
    manifest = apikey(
        home, "k", policy, projections=[{"namespace": home}], source={"sealed": sealed}
    )
    attacker.kk.create(manifest)
    assert wait_for(lambda: kk.value(home, "k"), what="projected") == value
    attacker.kk.patch_key(home, "k", {"spec": {"revoked": True}})
    wait_for(
        lambda: ((kk.key(home, "k") or {}).get("status") or {}).get("phase") == "Revoked",
        what="revoked",
    )
    wait_for(lambda: kk.value(home, "k") is None, what="withdrawn")

    # the GitOps re-sync: the key is deleted and its manifest (not revoked) applied again
    attacker.kk.delete_key(home, "k")
    wait_for(lambda: kk.key(home, "k") is None, what="deleted", timeout=30)
    attacker.kk.create(manifest)
    ready = refused(kk, home, "k", "RevokedValue")
    assert "revoked" in ready["message"]
    # the same value sealed afresh under a new name is just as dead
    again = seal(key, home, "k2", value, policy=policy, sealed_at=int(time.time()))
    attacker.kk.create(
        apikey(home, "k2", policy, projections=[{"namespace": home}], source={"sealed": again})
    )
    refused(kk, home, "k2", "RevokedValue")
    time.sleep(1)
    assert kk.value(home, "k") is None and kk.value(home, "k2") is None


def test_an_older_sealed_value_does_not_roll_a_key_back(
    control_plane: ControlPlane, attacker: Tenant, kk: Cluster, leaks: Leaks
) -> None:
    home = attacker.namespace
    policy = unique("pol")
    kk.create(keypolicy(policy, sources={"names": [home]}, targets={"names": []}))
    key: SealingPublicKey = wait_for(lambda: public_key(control_plane))
    one, two = (b"sk_live_" + unique(n).encode() * 2 for n in ("one", "two"))
    leaks.add(one)
    leaks.add(two)
    now = int(time.time())
    first = seal(key, home, "k", one, policy=policy, sealed_at=now - 60)
    attacker.kk.create(
        apikey(home, "k", policy, projections=[{"namespace": home}], source={"sealed": first})
    )
    assert wait_for(lambda: kk.value(home, "k"), what="v1") == one
    second = seal(key, home, "k", two, policy=policy, sealed_at=now)
    attacker.kk.patch_key(home, "k", {"spec": {"source": {"sealed": second}}})
    wait_for(lambda: kk.value(home, "k") == two, what="v2 projected")
    # the rollback: git reverted to the first sealed string
    attacker.kk.patch_key(home, "k", {"spec": {"source": {"sealed": first}}})
    ready = refused(kk, home, "k", "InvalidValue")
    assert "had this value before" in ready["message"]
    # a fresh seal of the old value is a rollback too
    third = seal(key, home, "k", one, policy=policy, sealed_at=now + 1)
    attacker.kk.patch_key(home, "k", {"spec": {"source": {"sealed": third}}})
    wait_for(
        lambda: "had this value before" in condition(kk.key(home, "k"), "Ready").get("message", ""),
        what="the old value refused",
    )
    time.sleep(1)
    assert kk.value(home, "k") == two, "the newer value is still the one served"
