"""Crash safety: SIGKILL the operator at many points while a batch of keys rotates,
is suspended, reinstated and revoked; restart it each time; then every key must
converge with no lost version, no projection of a value that does not decrypt from
the store, and no projection where there should be none.

The check opens the store's envelopes itself with the master key (read as admin),
so "the projected value is the stored one" is verified, not assumed."""

from __future__ import annotations

import base64
import random
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, apikey, keypolicy, unique
from devtools.operator import SERVICE_ACCOUNT, Operator, wait_for

from keykeeper.crypto.envelope import Binding, open_envelope
from keykeeper.crypto.kdf import MasterKey
from keykeeper.providers.local import LocalProvider
from tests.integration.conftest import Leaks

pytestmark = pytest.mark.cluster

KEYS = 6
KILLS = 20


def store_values(
    kk: Cluster, ns: str, name: str, uid: str
) -> tuple[dict[int, bytes], dict[str, Any]]:
    master = kk.secret("keykeeper-system", "keykeeper-master-key")
    assert master is not None
    provider = LocalProvider(MasterKey(base64.b64decode(master.data["master-key"])))
    store = kk.secret("keykeeper-system", f"ak-{uid}")
    if store is None:
        return {}, {}
    opened = {}
    for field, encoded in (store.data or {}).items():
        number = int(field[1:])
        opened[number] = open_envelope(
            base64.b64decode(encoded), Binding(ns, name, uid, number), lambda _: provider
        )
    return opened, store.metadata.annotations or {}


def projections_of(kk: Cluster, ns: str, name: str) -> dict[str, dict[str, bytes]]:
    selector = f"keykeeper.dev/apikey-namespace={ns},keykeeper.dev/apikey-name={name}"
    found = kk.core.list_secret_for_all_namespaces(label_selector=selector).items
    return {
        s.metadata.namespace: {k: base64.b64decode(v) for k, v in (s.data or {}).items()}
        for s in found
        if s.metadata.labels.get("keykeeper.dev/role") == "projection"
    }


def problems(kk: Cluster, ns: str, other: str, name: str) -> list[str]:
    body = kk.key(ns, name)
    assert body is not None
    spec, st, meta = body["spec"], body.get("status") or {}, body["metadata"]
    out: list[str] = []
    if st.get("observedGeneration") != meta["generation"]:
        out.append("status not caught up")
    phase = st.get("phase")
    values, _ = store_values(kk, ns, name, meta["uid"])
    projected = projections_of(kk, ns, name)
    versions = st.get("versions") or []
    numbers = [v["version"] for v in versions]
    if (
        numbers != sorted(numbers) or numbers != list(range(numbers[0], numbers[0] + len(numbers)))
        if numbers
        else False
    ):
        out.append(f"versions not contiguous: {numbers}")
    if spec.get("revoked"):
        if phase not in ("Revoked", "Deleted"):
            out.append(f"revoked key in phase {phase}")
        if projected:
            out.append(f"revoked key still projected into {sorted(projected)}")
        return out
    current = [v for v in versions if v["state"] == "Current"]
    if len(current) != 1 or current[0]["version"] != st.get("currentVersion"):
        return [*out, f"no single current version: {versions}"]
    if st["currentVersion"] not in values:
        out.append(f"current version {st['currentVersion']} has no envelope in the store")
    if spec.get("suspended"):
        if phase != "Suspended":
            out.append(f"suspended key in phase {phase}")
        if projected:
            out.append(f"suspended key still projected into {sorted(projected)}")
        return out
    if phase not in ("Active", "Rotated"):
        out.append(f"phase {phase}")
    if set(projected) != {ns, other}:
        out.append(f"projected into {sorted(projected)}")
    for target, data in projected.items():
        if data.get("api-key") != values.get(st["currentVersion"]):
            out.append(f"{target}: projected value is not the stored current version")
        previous = [v["version"] for v in versions if v["state"] == "Previous"]
        if phase == "Rotated" and data.get("api-key.previous") != values.get(
            previous[0] if previous else -1
        ):
            out.append(f"{target}: .previous is not the stored previous version")
    return out


def test_sigkill_at_many_points_converges(
    control_plane: ControlPlane, operator: Operator, kk: Cluster, leaks: Leaks
) -> None:
    rng = random.Random(20261124)
    home, other = kk.namespace("crash"), kk.namespace("crash-target")
    policy = unique("crash")
    kk.create(
        keypolicy(
            policy,
            targets={"names": [other]},
            rotation={"period": "1h", "gracePeriod": "1h"},
            retention={"revokedFor": "3s"},
        )
    )
    names = [f"k{i}" for i in range(KEYS)]
    for name in names:
        kk.create(
            apikey(home, name, policy, projections=[{"namespace": home}, {"namespace": other}])
        )
    wait_for(
        lambda: all(not problems(kk, home, other, n) for n in names),
        timeout=60,
        what="initial state",
    )
    suspended = dict.fromkeys(names, False)
    revoked: set[str] = set()
    interrupted = 0
    try:
        for _ in range(KILLS):
            for name in names:
                if name in revoked:
                    continue
                roll = rng.random()
                if roll < 0.45:
                    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                    kk.patch_key(
                        home,
                        name,
                        {"metadata": {"annotations": {"keykeeper.dev/rotate-requested-at": at}}},
                    )
                elif roll < 0.75:
                    suspended[name] = not suspended[name]
                    kk.patch_key(home, name, {"spec": {"suspended": suspended[name]}})
                elif roll < 0.80 and len(revoked) < 2:
                    revoked.add(name)
                    kk.patch_key(home, name, {"spec": {"revoked": True}})
            time.sleep(rng.uniform(0.0, 0.08))  # mostly while the batch is being worked on
            before = len(control_plane.audit_events(SERVICE_ACCOUNT))
            operator.kill()
            operator.start()
            # a kill interrupted work if the successor had writes to make
            wait_for(
                lambda before=before: len(control_plane.audit_events(SERVICE_ACCOUNT)) > before,
                timeout=30,
                what="the restarted operator to talk to the API",
            )
            # writes within 5 s (not a fixed 1.5 s: a loaded machine starts the successor
            # later, and a kill that left work must not be counted as one that did not)
            deadline = time.monotonic() + 5.0
            while True:
                writes = [
                    e
                    for e in control_plane.audit_events(SERVICE_ACCOUNT)[before:]
                    if e["verb"] in ("create", "update", "patch", "delete")
                    and e.get("objectRef", {}).get("resource") not in ("events", "leases")
                ]
                if writes or time.monotonic() > deadline:
                    break
                time.sleep(0.25)
            interrupted += bool(writes)
        wait_for(
            lambda: all(not problems(kk, home, other, n) for n in names),
            timeout=90,
            interval=0.5,
            what="every key to converge",
        )
    finally:
        if not operator.alive():
            operator.start()
    for name in names:
        status = kk.key(home, name)["status"]  # type: ignore[index]
        values, _ = store_values(kk, home, name, kk.key(home, name)["metadata"]["uid"])  # type: ignore[index]
        for value in values.values():
            leaks.add(value)
        assert problems(kk, home, other, name) == []
        if name not in revoked:
            assert status["currentVersion"] >= 1
    print(
        f"\ncrash test: {KILLS} SIGKILLs, {interrupted} of them left work for the restarted "
        f"operator; {KEYS} keys, {len(revoked)} revoked"
    )
    assert interrupted >= KILLS // 4, (
        "the kills rarely hit the operator mid-work; the test proves little"
    )
