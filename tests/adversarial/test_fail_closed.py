"""Findings 2, 3, 4 and 6 — enforcement that waited for a value or a provider.

Revocation, suspension, policy narrowing and namespace deletion need no plaintext,
so they must hold while the provider is down (2), while the tenant's source is
poisoned (3) and while one recipient refuses updates (6); and a policy that does not
admit the key's namespace must not be used at all (4).
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import (
    Cluster,
    apikey,
    condition,
    hsm_policy,
    keypolicy,
    projection_states,
    public_key,
    unique,
)
from devtools.operator import wait_for
from devtools.softhsm import Token

from keykeeper.crypto.sealed import seal
from tests.adversarial.tenant import Tenant, now, operator_requests, tenant
from tests.cluster import Leaks

NOW = int(time.time())  # when these tests seal

pytestmark = pytest.mark.cluster
ROTATE = "keykeeper.dev/rotate-requested-at"


def in_a_second() -> str:
    """A rotation request stamped after the version it rotates (stamps have 1 s precision)."""
    return (datetime.now(UTC) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def projected(kk: Cluster, namespace: str, name: str, key: str = "api-key") -> bytes:
    value: bytes = wait_for(lambda: kk.value(namespace, name, key), what=f"{namespace}/{name}")
    return value


def gone(kk: Cluster, namespace: str, name: str, timeout: float = 15) -> None:
    wait_for(
        lambda: kk.secret(namespace, name) is None,
        timeout=timeout,
        what=f"{namespace}/{name} withdrawn",
    )


def phase(kk: Cluster, namespace: str, name: str) -> str:
    return str(((kk.key(namespace, name) or {}).get("status") or {}).get("phase", ""))


def test_revocation_and_narrowing_hold_while_the_provider_is_down(
    attacker: Tenant, kk: Cluster, softhsm_token: Token, leaks: Leaks
) -> None:
    shared = kk.namespace("shared")
    doomed = kk.namespace("doomed")
    hsm = hsm_policy(kk, softhsm_token, per_key=False, targets={"names": [shared, doomed]})
    policy, pin_secret = hsm.name, hsm.pin_secret
    home = attacker.namespace
    attacker.kk.create(apikey(home, "revoke-me", policy, projections=[{"namespace": home}]))
    attacker.kk.create(
        apikey(
            home, "narrow-me", policy, projections=[{"namespace": shared}, {"namespace": doomed}]
        )
    )
    leaks.add(projected(kk, home, "revoke-me"))
    leaks.add(projected(kk, shared, "narrow-me"))
    projected(kk, doomed, "narrow-me")
    # the provider fails: its credentials are gone
    kk.core.delete_namespaced_secret(pin_secret, "keykeeper-system")
    # the tenant revokes: enforced at once, although the provider cannot be reached
    attacker.kk.patch_key(home, "revoke-me", {"spec": {"revoked": True}})
    gone(kk, home, "revoke-me")
    wait_for(lambda: phase(kk, home, "revoke-me") == "Revoked", what="Revoked")
    # the platform team narrows the policy: the dropped target goes at once
    kk.patch_policy(policy, {"spec": {"targetNamespaces": {"names": [doomed]}}})
    gone(kk, shared, "narrow-me")
    # a target namespace is deleted: withdrawn although nothing can be decrypted
    kk.core.delete_namespace(doomed)
    gone(kk, doomed, "narrow-me")
    wait_for(
        lambda: (
            projection_states(kk.key(home, "narrow-me"))
            == {
                (shared, "narrow-me"): "Withdrawn/NotAuthorizedByPolicy",
                (doomed, "narrow-me"): "Withdrawn/NotAuthorizedByPolicy",
            }
        ),
        what="status says what exists",
    )


def test_a_poisoned_sealed_value_does_not_freeze_projections(
    control_plane: ControlPlane, attacker: Tenant, kk: Cluster, leaks: Leaks
) -> None:
    target = kk.namespace("target")
    policy = unique("pol")
    kk.create(keypolicy(policy, targets={"names": [target]}))
    home = attacker.namespace
    value = b"sk_live_" + unique("sealed").encode() * 2
    leaks.add(value)
    sealed = seal(
        wait_for(lambda: public_key(control_plane)), home, "k", value, policy=policy, sealed_at=NOW
    )
    attacker.kk.create(
        apikey(home, "k", policy, projections=[{"namespace": target}], source={"sealed": sealed})
    )
    assert projected(kk, target, "k") == value
    # the tenant swaps in a value that cannot be opened (well-formed enough for the CRD)
    junk = "kk-sealed-v2:" + base64.urlsafe_b64encode(b"\x01" * 1300).decode().rstrip("=")
    attacker.kk.patch_key(home, "k", {"spec": {"source": {"sealed": junk}}})
    wait_for(
        lambda: condition(kk.key(home, "k"), "Ready").get("reason") == "InvalidValue",
        what="InvalidValue",
    )
    assert kk.value(target, "k") is not None  # still authorized: kept
    # the platform team removes the target: withdrawn although no value can be made
    kk.patch_policy(policy, {"spec": {"targetNamespaces": {"names": []}}})
    gone(kk, target, "k")
    wait_for(
        lambda: (
            projection_states(kk.key(home, "k"))
            == {(target, "k"): "Withdrawn/NotAuthorizedByPolicy"}
        ),
        what="status shows the withdrawal",
    )


def test_an_imported_value_breaking_the_policy_does_not_freeze_projections(
    attacker: Tenant, kk: Cluster, leaks: Leaks
) -> None:
    target = kk.namespace("target")
    policy = unique("pol")
    kk.create(keypolicy(policy, targets={"names": [target]}, value={"pattern": "^sk_[a-z]{20}$"}))
    home = attacker.namespace
    good = b"sk_" + b"q" * 20
    leaks.add(good)
    attacker.kk.put_secret(home, "src", {"api-key": good}, importable_by="k")
    attacker.kk.create(
        apikey(
            home,
            "k",
            policy,
            projections=[{"namespace": target}],
            source={"secretRef": {"name": "src"}},
        )
    )
    assert projected(kk, target, "k") == good
    bad = b"not-a-valid-key-at-all-" + b"z" * 10
    leaks.add(bad)
    attacker.kk.core.patch_namespaced_secret(
        "src", home, {"data": {"api-key": base64.b64encode(bad).decode()}}
    )
    attacker.kk.patch_key(home, "k", {"metadata": {"annotations": {"poke": "1"}}})
    wait_for(
        lambda: condition(kk.key(home, "k"), "Ready").get("reason") == "InvalidValue",
        what="InvalidValue",
    )
    assert kk.value(target, "k") == good  # the last good version stays where authorized
    kk.patch_policy(policy, {"spec": {"targetNamespaces": {"names": []}}})
    gone(kk, target, "k")


def test_a_policy_that_does_not_admit_the_namespace_is_not_used(
    control_plane: ControlPlane, attacker: Tenant, kk: Cluster, leaks: Leaks
) -> None:
    policy = unique("pol")
    kk.create(keypolicy(policy, sources={"names": ["payments"]}))
    home = attacker.namespace
    value = b"sk_live_" + b"w" * 24
    leaks.add(value)
    attacker.kk.put_secret(home, "src", {"api-key": value}, importable_by="k")
    started = now()
    attacker.kk.create(
        apikey(
            home,
            "k",
            policy,
            projections=[{"namespace": home}],
            source={"secretRef": {"name": "src", "deleteAfterImport": True}},
        )
    )
    ready = wait_for(
        lambda: (
            condition(kk.key(home, "k"), "Ready").get("reason") == "SourceNamespaceNotAllowed"
            and condition(kk.key(home, "k"), "Ready")
        ),
        what="SourceNamespaceNotAllowed",
    )
    assert ready["status"] == "False"
    uid = kk.key(home, "k")["metadata"]["uid"]  # type: ignore[index]
    assert kk.secret("keykeeper-system", f"ak-{uid}") is None  # nothing stored
    assert kk.value(home, "src") == value  # nothing imported or deleted
    assert kk.secret(home, "k") is None
    touched = {
        (r.verb, r.resource, r.namespace, r.name)
        for r in operator_requests(control_plane, started)
        if r.resource == "secrets"
    }
    assert not any(ns == home and name == "src" for _, _, ns, name in touched), touched
    assert not any(v in ("create", "update") for v, *_ in touched), touched


def test_one_recipient_cannot_stall_a_shared_key(
    control_plane: ControlPlane, attacker: Tenant, kk: Cluster, leaks: Leaks
) -> None:
    """The recipient marks its copy immutable; rotation, other targets, withdrawals and
    status go on, and the stale copy does not outlive what it holds."""
    with tenant(control_plane, kk, "recipient") as recipient:
        other = kk.namespace("other")
        dropped = kk.namespace("dropped")
        policy = unique("pol")
        kk.create(
            keypolicy(
                policy,
                targets={"names": [recipient.namespace, other, dropped]},
                rotation={"gracePeriod": "3s"},
            )
        )
        home = attacker.namespace
        kk.create(
            apikey(
                home,
                "k",
                policy,
                projections=[
                    {"namespace": recipient.namespace},
                    {"namespace": other},
                    {"namespace": dropped},
                ],
            )
        )
        first = projected(kk, other, "k")
        leaks.add(first)
        assert projected(kk, recipient.namespace, "k") == first
        recipient.kk.core.patch_namespaced_secret("k", recipient.namespace, {"immutable": True})
        kk.patch_key(home, "k", {"metadata": {"annotations": {ROTATE: in_a_second()}}})
        second = wait_for(
            lambda: (v := kk.value(other, "k")) != first and v,
            what="the other target rotated",
        )
        leaks.add(second)
        # the immutable copy cannot be updated: it is withdrawn and projected afresh
        wait_for(
            lambda: kk.value(recipient.namespace, "k") in (None, second),
            what="the stale copy withdrawn or replaced",
        )
        # withdrawals and status go on
        kk.patch_policy(
            policy, {"spec": {"targetNamespaces": {"names": [recipient.namespace, other]}}}
        )
        gone(kk, dropped, "k")
        # after the grace period no copy anywhere holds the first value
        wait_for(
            lambda: all(
                first not in (kk.value(ns, "k"), kk.value(ns, "k", "api-key.previous"))
                for ns in (recipient.namespace, other)
            ),
            timeout=20,
            what="the first value gone everywhere after the grace period",
        )
