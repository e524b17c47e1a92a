"""Finding K8 — a slow (not failing) KMS behind one policy stalling every revocation.

One team's policy names an AWS KMS that answers every call after 4.5 s (moto behind a
proxy that holds each request). Its keys all rotate at once; meanwhile another team
revokes a key under the local provider, which needs no KMS at all. The slow KMS used to
take every thread of the shared pool (the audit log's fsync waited behind it) and every
reconcile worker, so the revocation waited ~22 s. Each remote provider now has its own
bounded threads and a bound on the calls in flight (a call beyond it is refused at once
as ProviderUnavailable, so the worker is freed), and the audit log syncs on a thread of
its own. The figure printed: the revocation's withdrawal latency.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from devtools import kmspeers
from devtools.kk import Cluster, apikey, condition, keypolicy, unique
from devtools.operator import Operator, wait_for

from tests.cluster import Leaks

pytestmark = pytest.mark.cluster

SLOW_KEYS = 40  # well over the operator's 16 workers
BOUND = 5.0  # seconds: main took 9.9 s with 24 keys; the figure itself is printed
DELAY = 4.5


def test_a_slow_kms_under_one_policy_does_not_delay_a_revocation_under_another(
    operator: Operator, kk: Cluster, leaks: Leaks, tmp_path: Path
) -> None:
    peer = kmspeers.moto(tmp_path).start()
    try:
        alias = f"alias/{unique('slow')}"
        peer.create_key(alias)
        proxy = kmspeers.SlowProxy(peer.port, DELAY)
        try:
            _run(kk, leaks, alias, proxy)
        finally:
            proxy.close()
    finally:
        peer.kill()


def _run(kk: Cluster, leaks: Leaks, alias: str, proxy: kmspeers.SlowProxy) -> None:
    creds = unique("aws-creds")
    kk.put_secret(
        "keykeeper-system", creds, {k: v.encode() for k, v in kmspeers.CREDENTIALS.items()}
    )
    slow_home, fast_home = kk.namespace("slow"), kk.namespace("fast")
    slow, fast = unique("slow"), unique("fast")
    options = {"endpoint": proxy.endpoint, "region": kmspeers.REGION, "timeout": "30"}
    kms = {"provider": "aws", "keyRef": alias, "credentialsSecretRef": {"name": creds}}
    kk.create(
        keypolicy(
            slow,
            sources={"names": [slow_home]},
            targets={"names": []},
            kms={**kms, "options": options},
        )
    )
    kk.create(keypolicy(fast, sources={"names": [fast_home]}, targets={"names": []}))
    for name in ("idle", "victim"):
        kk.create(apikey(fast_home, name, fast, projections=[{"namespace": fast_home}]))
        leaks.add(wait_for(lambda n=name: kk.value(fast_home, n), what=f"{name} projected"))  # type: ignore[misc]
    idle = revoke(kk, fast_home, "idle")  # the same revocation with no load, to compare
    # the slow team's keys: every one needs a KMS call to be made
    for n in range(SLOW_KEYS):
        kk.create(apikey(slow_home, f"k{n}", slow, projections=[{"namespace": slow_home}]))
    time.sleep(2 * DELAY)  # the workers are busy with the slow KMS by now
    busy = sum(1 for n in range(SLOW_KEYS) if kk.value(slow_home, f"k{n}") is None)
    assert busy > 0, "the slow KMS is still being waited on"

    latency = revoke(kk, fast_home, "victim")
    print(
        f"\nrevocation under the local provider withdrawn in {latency:.2f} s while a "
        f"{DELAY} s KMS served {SLOW_KEYS} keys ({busy} still waiting); {idle:.2f} s idle, "
        f"same run, at {datetime.now(UTC):%H:%M:%S}"
    )
    # a bound far from both figures, so a loaded CI machine does not flake it: the
    # measured latency is the figure to read (printed above)
    assert latency < BOUND, f"the revocation waited {latency:.1f} s behind the slow KMS"
    # the slow keys are served in the end, slowly
    wait_for(
        lambda: all(
            condition(kk.key(slow_home, f"k{n}"), "Ready").get("status") == "True"
            for n in range(SLOW_KEYS)
        ),
        timeout=240,
        what="every slow key Ready",
    )


def revoke(kk: Cluster, namespace: str, name: str) -> float:
    """Seconds from the revoke to the projected Secret gone."""
    started = time.monotonic()
    kk.patch_key(namespace, name, {"spec": {"revoked": True}})
    wait_for(lambda: kk.secret(namespace, name) is None, timeout=60, what=f"{name} withdrawn")
    return time.monotonic() - started
