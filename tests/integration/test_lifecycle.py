"""The whole lifecycle end to end, with periods of seconds, against the real apiserver."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, actions, apikey, condition, keypolicy, unique
from devtools.operator import Operator, wait_for

from keykeeper.crypto.sealed import SealingPublicKey, seal
from tests.integration.conftest import Leaks

NOW = int(time.time())  # when these tests seal

pytestmark = pytest.mark.cluster


def status(kk: Cluster, ns: str, name: str) -> dict:  # type: ignore[type-arg]
    return (kk.key(ns, name) or {}).get("status") or {}


def phase_is(kk: Cluster, ns: str, name: str, phase: str, timeout: float = 30) -> dict:  # type: ignore[type-arg]
    return wait_for(
        lambda: status(kk, ns, name).get("phase") == phase and status(kk, ns, name),
        timeout=timeout,
        what=f"{ns}/{name} {phase}",
    )


def data(kk: Cluster, ns: str, name: str) -> dict[str, bytes]:
    secret = kk.secret(ns, name)
    return {k: base64.b64decode(v) for k, v in ((secret.data if secret else None) or {}).items()}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_scheduled_rotation_is_zero_downtime(operator: Operator, kk: Cluster, leaks: Leaks) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy, rotation={"period": "6s", "gracePeriod": "2s"}))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}]))
    first = wait_for(lambda: data(kk, home, "k").get("api-key"), what="v1")
    leaks.add(first)
    active = phase_is(kk, home, "k", "Active")
    assert active["nextRotationAt"]
    # the rotation: new value under api-key, the old one beside it as api-key.previous
    rotated = wait_for(
        lambda: data(kk, home, "k").get("api-key.previous") == first and data(kk, home, "k"),
        timeout=30,
        what="rotated with previous",
    )
    second = rotated["api-key"]
    leaks.add(second)
    assert second != first
    # Secrets are written before the status that reports them: wait for the status
    st = wait_for(
        lambda: (s := status(kk, home, "k")).get("currentVersion") == 2 and s,
        what="status reports version 2",
    )
    states = {v["version"]: v["state"] for v in st["versions"]}
    assert states[1] == "Previous" and states[2] == "Current"
    assert next(v for v in st["versions"] if v["version"] == 1)["expiresAt"]

    # grace over: the previous value is withdrawn and its material destroyed
    def grace_over() -> bool:
        st = status(kk, home, "k")
        states = {v["version"]: v["state"] for v in st["versions"]}
        return (
            st["currentVersion"] == 2
            and states[1] == "Destroyed"
            and data(kk, home, "k") == {"api-key": second}
        )

    wait_for(grace_over, timeout=30, interval=0.05, what="previous withdrawn and destroyed")
    kk.wait_for_events(home, "k", "Rotated", "Erased")
    # every version made along the way ends in the audit log, with fingerprints only
    uid = kk.key(home, "k")["metadata"]["uid"]  # type: ignore[index]
    assert {"Created", "Rotated", "Encrypted", "Erased"} <= {
        r["action"] for r in operator.audit_records() if r["uid"] == uid
    }
    kk.delete_key(home, "k")  # stop it rotating for the rest of the session


def test_manual_rotation_waits_for_a_new_sealed_value(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(
        keypolicy(policy, rotation={"period": "3s", "gracePeriod": "1h", "strategy": "Manual"})
    )
    cm = kk.core.read_namespaced_config_map("keykeeper-sealing-public", "keykeeper-system")
    key = SealingPublicKey(base64.b64decode(cm.data["publicKey"]))
    one, two = b"sk_live_manual_one_" + b"1" * 12, b"sk_live_manual_two_" + b"2" * 12
    leaks.add(one)
    leaks.add(two)
    kk.create(
        apikey(
            home,
            "k",
            policy,
            projections=[{"namespace": home}],
            source={"sealed": seal(key, home, "k", one, policy=policy, sealed_at=NOW)},
        )
    )
    assert wait_for(lambda: data(kk, home, "k").get("api-key"), what="v1") == one
    pending = phase_is(kk, home, "k", "RotationPending", timeout=20)
    assert condition({"status": pending}, "RotationDue")["reason"] == "AwaitingNewValue"
    wait_for(
        lambda: any("RotationDue" in actions(e) for e in kk.events(home, "k")),
        what="RotationDue event",
    )
    assert data(kk, home, "k")["api-key"] == one  # still projected while it waits
    kk.patch_key(
        home,
        "k",
        {"spec": {"source": {"sealed": seal(key, home, "k", two, policy=policy, sealed_at=NOW)}}},
    )
    rotated = wait_for(
        lambda: data(kk, home, "k").get("api-key") == two and data(kk, home, "k"), what="v2"
    )
    assert rotated["api-key.previous"] == one
    assert phase_is(kk, home, "k", "Rotated")["currentVersion"] == 2
    kk.delete_key(home, "k")


def test_rotation_on_request_and_a_shortened_period(
    operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy, rotation={"period": "30d", "gracePeriod": "1h"}))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}]))
    first = wait_for(lambda: data(kk, home, "k").get("api-key"), what="v1")
    leaks.add(first)
    kk.patch_key(
        home, "k", {"metadata": {"annotations": {"keykeeper.dev/rotate-requested-at": now()}}}
    )
    assert phase_is(kk, home, "k", "Rotated")["currentVersion"] == 2
    leaks.add(data(kk, home, "k")["api-key"])
    # a policy change that shortens the period rotates keys that are already Active
    kk.create(apikey(home, "idle", policy, projections=[{"namespace": home}]))
    phase_is(kk, home, "idle", "Active")
    leaks.add(data(kk, home, "idle")["api-key"])
    kk.patch_policy(policy, {"spec": {"rotation": {"period": "2s", "gracePeriod": "1h"}}})
    wait_for(
        lambda: int(status(kk, home, "idle").get("currentVersion", 0)) >= 2,
        timeout=30,
        what="the idle key rotated after the period was shortened",
    )
    leaks.add(data(kk, home, "idle")["api-key"])
    kk.delete_key(home, "k")
    kk.delete_key(home, "idle")


def test_requested_rotations_wait_for_the_policys_min_interval(
    operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    """Finding K2: re-requesting rotations every second makes one version per
    rotation.minInterval, not one per request; the request waits, it is not dropped."""
    home, policy, interval = kk.namespace("home"), unique("pol"), 5.0
    rotation = {"period": "30d", "gracePeriod": "1h", "minInterval": f"{interval:.0f}s"}
    kk.create(keypolicy(policy, rotation=rotation))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}]))
    leaks.add(wait_for(lambda: data(kk, home, "k").get("api-key"), what="v1"))
    first_seen = time.monotonic()  # version 1 was made before this
    request = {"metadata": {"annotations": {"keykeeper.dev/rotate-requested-at": now()}}}
    kk.patch_key(home, "k", request)
    wait_for(lambda: status(kk, home, "k").get("currentVersion") == 2, what="v2", timeout=60)
    waited = time.monotonic() - first_seen
    leaks.add(data(kk, home, "k")["api-key"])
    # made no sooner than minInterval after version 1 (less the time it took to see v1)
    assert waited >= interval - 2, f"version 2 came {waited:.1f} s after version 1"
    kk.delete_key(home, "k")


def test_suspend_and_reinstate(operator: Operator, kk: Cluster, leaks: Leaks) -> None:
    home, other = kk.namespace("home"), kk.namespace("other")
    policy = unique("pol")
    kk.create(keypolicy(policy, targets={"names": [other]}))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}, {"namespace": other}]))
    value = wait_for(lambda: data(kk, other, "k").get("api-key"), what="projected")
    leaks.add(value)
    uid = kk.key(home, "k")["metadata"]["uid"]  # type: ignore[index]
    kk.patch_key(home, "k", {"spec": {"suspended": True}})
    phase_is(kk, home, "k", "Suspended")
    wait_for(
        lambda: kk.secret(other, "k") is None and kk.secret(home, "k") is None, what="withdrawn"
    )
    assert kk.secret("keykeeper-system", f"ak-{uid}").data  # material kept  # type: ignore[union-attr]
    kk.patch_key(home, "k", {"spec": {"suspended": False}})
    phase_is(kk, home, "k", "Active")
    assert wait_for(lambda: data(kk, other, "k").get("api-key"), what="restored") == value
    kk.wait_for_events(home, "k", "Suspended", "Reinstated")


def test_revoke_then_erase_after_retention(operator: Operator, kk: Cluster, leaks: Leaks) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy, retention={"revokedFor": "4s"}))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}]))
    leaks.add(wait_for(lambda: data(kk, home, "k").get("api-key"), what="projected"))
    uid = kk.key(home, "k")["metadata"]["uid"]  # type: ignore[index]
    kk.patch_key(home, "k", {"spec": {"revoked": True}})
    phase_is(kk, home, "k", "Revoked")
    wait_for(lambda: kk.secret(home, "k") is None, what="withdrawn at once")
    deleted = phase_is(kk, home, "k", "Deleted", timeout=30)
    assert all(v["state"] == "Destroyed" for v in deleted["versions"])
    store = kk.secret("keykeeper-system", f"ak-{uid}")
    assert store is not None and not store.data  # every envelope destroyed; the tombstone remains
    kk.wait_for_events(home, "k", "Revoked", "Erased")
    kk.delete_key(home, "k")
    wait_for(lambda: kk.key(home, "k") is None, what="deleted")
    assert kk.secret("keykeeper-system", f"ak-{uid}") is None


def test_integrity_failure_suspends_and_a_rotation_recovers(
    operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    policy = unique("pol")
    kk.create(keypolicy(policy))
    kk.create(apikey(home, "k", policy, projections=[{"namespace": home}]))
    leaks.add(wait_for(lambda: data(kk, home, "k").get("api-key"), what="projected"))
    uid = kk.key(home, "k")["metadata"]["uid"]  # type: ignore[index]
    store = kk.secret("keykeeper-system", f"ak-{uid}")
    assert store is not None
    envelope = bytearray(base64.b64decode(store.data["v1"]))
    envelope[-20] ^= (
        0x01  # a flipped ciphertext bit with intact check bytes would be rarer; both fail
    )
    kk.core.patch_namespaced_secret(
        f"ak-{uid}",
        "keykeeper-system",
        {"data": {"v1": base64.b64encode(bytes(envelope)).decode()}},
    )
    kk.core.delete_namespaced_secret("k", home)  # the repair must open the damaged envelope
    suspended = phase_is(kk, home, "k", "Suspended")
    assert condition({"status": suspended}, "Ready")["reason"] == "IntegrityFailure"
    assert kk.secret(home, "k") is None
    wait_for(
        lambda: any(
            "IntegrityFailure" in actions(e) and e.type == "Warning" for e in kk.events(home, "k")
        ),
        what="IntegrityFailure event",
    )
    kk.patch_key(
        home, "k", {"metadata": {"annotations": {"keykeeper.dev/rotate-requested-at": now()}}}
    )
    recovered = phase_is(kk, home, "k", "Active")
    assert recovered["currentVersion"] == 2
    assert {v["version"]: v["state"] for v in recovered["versions"]}[1] == "Destroyed"
    leaks.add(wait_for(lambda: data(kk, home, "k").get("api-key"), what="projected again"))
