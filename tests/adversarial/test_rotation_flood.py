"""Finding K2 — one tenant's flood of requested rotations delaying every tenant's revocation.

A tenant with rights on ApiKeys in its own namespace only annotates all of them with
``keykeeper.dev/rotate-requested-at`` (``kubectl annotate apikey --all``); each has
many targets, so each rotation is dozens of writes. Meanwhile another team revokes a
key. With one FIFO work queue the revocation waited behind the whole flood (96.8 s
with 300 keys x 64 targets in the review). A change that can only withdraw now goes
to the enforcement lane (its own workers, no provider, no value), and each lane is
served round-robin by source namespace, so the flood waits for itself. The figures
printed: the revocation's withdrawal latency under the flood, and idle, same run, each
from the revoke and from the apiserver delivering it to a watcher.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from devtools.kk import GROUP, VERSION, Cluster, apikey, keypolicy, unique
from devtools.operator import Operator, wait_for
from kubernetes import watch

from tests.adversarial.tenant import Tenant
from tests.cluster import Leaks

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

FLOOD_KEYS = 160  # ten times the operator's 16 workers
TARGETS = 64  # each rotation rewrites this many Secrets
VICTIMS = 3  # revocations measured, the slowest counts
# seconds from the apiserver telling a watcher of the revocation to a watcher seeing the
# Secret deleted: the operator's share. On this 2-core machine the apiserver itself
# delivers the revocation up to 1.5 s late under the flood, for every watcher alike;
# that part is printed, not bounded. (main: 2.4-4.6 s; fixed: 0.2-0.65 s)
BOUND = 1.5


def test_a_flood_of_requested_rotations_does_not_delay_another_tenants_revocation(
    operator: Operator, kk: Cluster, leaks: Leaks, attacker: Tenant
) -> None:
    victim_home, victims = kk.namespace("victim"), [f"victim{n}" for n in range(VICTIMS)]
    victim_policy = unique("victim")
    kk.create(keypolicy(victim_policy, sources={"names": [victim_home]}, targets={"names": []}))
    for name in ("idle", *victims):
        kk.create(
            apikey(victim_home, name, victim_policy, projections=[{"namespace": victim_home}])
        )
        leaks.add(wait_for(lambda n=name: kk.value(victim_home, n), what=f"{name} projected"))  # type: ignore[misc]
    names = _flood_keys(kk, attacker)
    with _Seen(kk, victim_home) as seen:
        idle = seen.revoke("idle")  # the same revocation with no load, to compare
        with _Flood(attacker, names) as flood:  # kubectl annotate apikey --all, again and again
            latencies = []
            for victim in victims:  # each revoked just as a round of requests has landed
                done = flood.rounds + 1
                wait_for(
                    lambda d=done: flood.rounds >= d, timeout=60, interval=0.01, what="a round"
                )  # type: ignore[misc]
                latencies.append(seen.revoke(victim))
            rounds = flood.rounds
    rotated = sum(1 for n in names if (_version(kk, attacker.namespace, n) or 0) >= 2)
    print(
        f"\nrevocations withdrawn {', '.join(f'{ours:.2f}' for _, ours in latencies)} s after "
        f"the apiserver delivered them ({', '.join(f'{all:.2f}' for all, _ in latencies)} s "
        f"after the revoke) while {FLOOD_KEYS} keys x {TARGETS} targets asked to rotate "
        f"{rounds} times ({rotated} rotated by then); idle, same run: {idle[1]:.2f} s "
        f"({idle[0]:.2f} s); at {datetime.now(UTC):%H:%M:%S}"
    )
    latency = max(ours for _, ours in latencies)
    assert latency < BOUND, f"the revocation waited {latency:.1f} s behind the flood"
    wait_for(  # the flood is served in the end
        lambda: all((_version(kk, attacker.namespace, n) or 0) >= 2 for n in names),
        timeout=300,
        interval=1.0,
        what="every flood key rotated",
    )


def _flood_keys(kk: Cluster, attacker: Tenant) -> list[str]:
    """The attacker's keys, each projected into every target its policy allows."""
    flood_policy, targets = unique("flood"), [kk.namespace("flood-to") for _ in range(TARGETS)]
    kk.create(
        keypolicy(flood_policy, sources={"names": [attacker.namespace]}, targets={"names": targets})
    )
    names = [f"k{n}" for n in range(FLOOD_KEYS)]
    projections = [{"namespace": ns, "secretName": "flood"} for ns in targets]
    for name in names:
        attacker.kk.create(apikey(attacker.namespace, name, flood_policy, projections=projections))
    wait_for(
        lambda: all(_version(kk, attacker.namespace, n) == 1 for n in names),
        timeout=300,
        interval=1.0,
        what="every flood key projected",
    )
    return names


class _Flood:
    """The tenant re-requesting a rotation of every one of its keys, once a second."""

    def __init__(self, attacker: Tenant, names: list[str]) -> None:
        self.attacker, self.names, self.rounds = attacker, names, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Flood:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with ThreadPoolExecutor(16) as pool:
            while not self._stop.wait(1.1):  # each request newer than the last (seconds)
                at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                list(pool.map(self._request, self.names, [at] * len(self.names)))
                self.rounds += 1

    def _request(self, name: str, at: str) -> None:
        request = {"metadata": {"annotations": {"keykeeper.dev/rotate-requested-at": at}}}
        self.attacker.kk.patch_key(self.attacker.namespace, name, request)


def _version(kk: Cluster, namespace: str, name: str) -> int | None:
    found = kk.key(namespace, name)
    version = ((found or {}).get("status") or {}).get("currentVersion")
    return int(version) if version is not None else None


class _Seen:
    """What two watchers of the victims' namespace see, and when: each key's revocation
    and each projected Secret's deletion."""

    def __init__(self, kk: Cluster, namespace: str) -> None:
        self.kk, self.namespace = kk, namespace
        self.revoked: dict[str, float] = {}
        self.deleted: dict[str, float] = {}
        self._watches = (watch.Watch(), watch.Watch())
        self._stopping = threading.Event()

    def __enter__(self) -> _Seen:
        keys = self.kk.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "apikeys"
        )
        secrets = self.kk.core.list_namespaced_secret(self.namespace)
        # from the listings' versions on: nothing after them is missed, however late
        # the watches open
        since = (keys["metadata"]["resourceVersion"], secrets.metadata.resource_version)
        for watching, version in zip((self._keys, self._secrets), since, strict=True):
            threading.Thread(target=self._guarded, args=(watching, version), daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        for each in self._watches:
            each.stop()

    def revoke(self, name: str) -> tuple[float, float]:
        """Seconds from the revoke, and from its delivery to watchers, to the Secret gone."""
        started = time.monotonic()
        self.kk.patch_key(self.namespace, name, {"spec": {"revoked": True}})
        gone = wait_for(lambda: self.deleted.get(name), timeout=120, what=f"{name} withdrawn")
        delivered = wait_for(lambda: self.revoked.get(name), timeout=5, what=f"{name} seen")
        return gone - started, gone - delivered

    def _guarded(self, watching: Callable[[str], None], since: str) -> None:
        try:
            watching(since)
        except Exception:
            if not self._stopping.is_set():  # a watch lost while measuring fails the wait
                raise

    def _keys(self, since: str) -> None:
        listing = self.kk.custom.list_namespaced_custom_object
        for event in self._watches[0].stream(
            listing, GROUP, VERSION, self.namespace, "apikeys", resource_version=since
        ):
            found = event["object"]
            if found["spec"].get("revoked"):
                self.revoked.setdefault(found["metadata"]["name"], time.monotonic())

    def _secrets(self, since: str) -> None:
        listing = self.kk.core.list_namespaced_secret
        for event in self._watches[1].stream(listing, self.namespace, resource_version=since):
            if event["type"] == "DELETED":
                self.deleted.setdefault(event["object"].metadata.name, time.monotonic())
