"""keykeeper's alerts in a real Prometheus (Debian's package) scraping the running
operator, the shipped rules loaded (each ``for:`` shortened to 5 s, every expression
as shipped):

* an imported key that expires in three days fires ``KeykeeperKeyExpiringSoon``, and one
  that has expired ``KeykeeperKeyExpired``, each naming the key and its owner label; a
  later expiry resolves the one, the expired key's deletion the other;
* killing the KMS peer (local-kms, a real AWS KMS peer) under a key that needs it fires
  ``KeykeeperProviderUnavailable`` for ``aws``; starting it again resolves the alert;
* every query of the Grafana dashboard returns data from that Prometheus.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from devtools import kmspeers
from devtools.kk import Cluster, apikey, condition, keypolicy, unique
from devtools.operator import Operator, wait_for
from devtools.prometheus import Prometheus, dashboard_queries

from tests.integration.conftest import Leaks

pytestmark = pytest.mark.cluster

OWNER = "keykeeper.dev/owner"


def at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def prometheus(operator: Operator, tmp_path: Path) -> Any:
    running = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{operator.port}").start()
    try:
        wait_for(running.targets_up, timeout=30, what="Prometheus scraping the operator")
        yield running
    except BaseException:
        print(running.log_tail())
        raise
    finally:
        running.stop()


def imported(kk: Cluster, leaks: Leaks, home: str, name: str, policy: str, expires: str) -> None:
    value = secrets.token_urlsafe(24).encode()
    leaks.add(value)
    kk.put_secret(home, f"{name}-src", {"api-key": value}, importable_by=name)
    body = apikey(
        home,
        name,
        policy,
        source={"secretRef": {"name": f"{name}-src"}},
        projections=[{"namespace": home, "secretName": f"{name}-out"}],
        expiresAt=expires,
    )
    body["metadata"]["labels"] = {OWNER: "team-payments"}
    kk.create(body)


def labels_of(alert: dict[str, Any]) -> tuple[str, str, str, str]:
    found = alert["labels"]
    return found.get("namespace", ""), found.get("name", ""), found.get("owner", ""), found["scope"]


def test_expiry_alerts_fire_in_prometheus_naming_the_key_and_its_owner(
    prometheus: Prometheus, kk: Cluster, leaks: Leaks
) -> None:
    home = kk.namespace("alerts")
    policy = unique("warn")
    kk.create(keypolicy(policy, sources={"names": [home]}))
    imported(kk, leaks, home, "soon", policy, at(timedelta(days=3)))
    imported(kk, leaks, home, "gone", policy, at(-timedelta(minutes=5)))

    def firing(name: str, key: str) -> bool:
        mine = (home, key, "team-payments", "key")
        return any(labels_of(a) == mine for a in prometheus.alerts(name))

    wait_for(
        lambda: firing("KeykeeperKeyExpiringSoon", "soon"),
        timeout=60,
        what="KeykeeperKeyExpiringSoon firing for the key expiring in 3 days",
    )
    wait_for(
        lambda: firing("KeykeeperKeyExpired", "gone"),
        timeout=60,
        what="KeykeeperKeyExpired firing for the expired key",
    )
    soon = [
        a
        for a in prometheus.alerts("KeykeeperKeyExpiringSoon")
        if labels_of(a) == (home, "soon", "team-payments", "key")
    ]
    assert f"ApiKey {home}/soon expires at" in soon[0]["annotations"]["summary"], soon
    assert not firing("KeykeeperKeyExpiringSoon", "gone"), "an expired key is Expired, not Expiring"

    # a value that lasts longer resolves the one; the expired key's removal the other
    kk.patch_key(home, "soon", {"spec": {"expiresAt": at(timedelta(days=60))}})
    kk.delete_key(home, "gone")
    wait_for(
        lambda: not firing("KeykeeperKeyExpiringSoon", "soon"),
        timeout=60,
        what="KeykeeperKeyExpiringSoon resolved by a later expiry",
    )
    wait_for(
        lambda: not firing("KeykeeperKeyExpired", "gone"),
        timeout=60,
        what="KeykeeperKeyExpired resolved once the key is gone",
    )


def test_a_stopped_kms_fires_provider_unavailable_and_its_return_resolves_it(
    prometheus: Prometheus, kk: Cluster, leaks: Leaks, tmp_path: Path
) -> None:
    peer = kmspeers.local_kms(tmp_path).start()
    try:
        _outage(prometheus, kk, leaks, peer)
    finally:
        peer.kill()
    # the dashboard, now that Prometheus holds a reconcile error, KMS calls and latencies
    empty = [title for title, expr in dashboard_queries() if not prometheus.query(expr)]
    assert not empty, f"dashboard panels with no data: {empty}"


def _outage(prometheus: Prometheus, kk: Cluster, leaks: Leaks, peer: kmspeers.Peer) -> None:
    alias = f"alias/{unique('alerting')}"
    peer.create_key(alias)
    creds = unique("aws-creds")
    kk.put_secret(
        "keykeeper-system", creds, {k: v.encode() for k, v in kmspeers.CREDENTIALS.items()}
    )
    home, policy = kk.namespace("kms-alerts"), unique("aws")
    options = {"endpoint": peer.endpoint, "region": kmspeers.REGION, "timeout": "2"}
    kms = {"provider": "aws", "keyRef": alias, "credentialsSecretRef": {"name": creds}}
    kk.create(keypolicy(policy, targets={"names": [home]}, kms={**kms, "options": options}))
    wait_for(lambda: condition(kk.policy(policy), "Ready").get("status") == "True", what="Ready")
    kk.create(apikey(home, "before", policy, projections=[{"namespace": home}]))
    leaks.add(wait_for(lambda: kk.value(home, "before"), what="a key under the AWS KMS"))
    # this policy's KMS key: another test may have left another AWS peer down on purpose
    up = wait_for(
        lambda: prometheus.query(f'keykeeper_provider_up{{provider="aws",key_ref="{alias}"}}'),
        what="keykeeper_provider_up for this KMS key scraped",
    )
    assert [float(s["value"][1]) for s in up] == [1.0], up

    def unavailable(state: str = "firing") -> list[dict[str, Any]]:
        found = prometheus.alerts("KeykeeperProviderUnavailable", state)
        return [a for a in found if a["labels"].get("key_ref") == alias]

    assert not unavailable("pending") and not unavailable()

    peer.kill()
    kk.create(apikey(home, "during", policy, projections=[{"namespace": home}]))
    fired = wait_for(
        unavailable, timeout=60, what="KeykeeperProviderUnavailable firing while the KMS is gone"
    )
    assert [a["labels"]["provider"] for a in fired] == ["aws"], fired
    assert kk.value(home, "during") is None, "no value without its KMS"

    peer.start()
    wait_for(
        lambda: not unavailable() and not unavailable("pending"),
        timeout=60,
        what="KeykeeperProviderUnavailable resolved once the KMS answers",
    )
    leaks.add(wait_for(lambda: kk.value(home, "during"), timeout=60, what="the key projected"))
