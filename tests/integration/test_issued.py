"""#25 on the real apiserver: keys issued upstream through the webhook contract, against
the in-repo HTTPS issuer (which counts live upstream keys and mints per idempotency key).

The walkthrough of the README (a KeyPolicy with an issuer, an ApiKey with ``issue: {}``,
a rotation, the overlap, the old key revoked after the grace period), an issuer down in
the middle of it, revocation, a deletion that waits for the issuer, and SIGKILLs at
random points of rotations, counting live upstream keys throughout."""

from __future__ import annotations

import base64
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from devtools.fakes import tls
from devtools.fakes.issuer import FakeIssuer
from devtools.kk import Cluster, apikey, condition, keypolicy, unique
from devtools.operator import NAMESPACE, Operator, wait_for

from tests.integration.conftest import Leaks

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeIssuer]:
    fake = FakeIssuer(tls.make(tmp_path_factory.mktemp("issuer"))).start()
    yield fake
    fake.stop()


def issuing_policy(kk: Cluster, issuer: FakeIssuer, grace: str = "4s") -> str:
    name = unique("issued")
    secret = unique("issuer-token")
    kk.put_secret(NAMESPACE, secret, {"token": issuer.state.token.encode()})
    webhook = {
        "url": issuer.url,
        "caBundle": base64.b64encode(issuer.ca_pem).decode(),
        "credentialsSecretRef": {"name": secret},
    }
    kk.create(keypolicy(name, issuer={"webhook": webhook}, rotation={"gracePeriod": grace}))
    return name


def token(kk: Cluster, namespace: str, name: str, key: str = "token") -> bytes | None:
    return kk.value(namespace, name, key)


def versions(kk: Cluster, namespace: str, name: str) -> list[dict[str, object]]:
    body = kk.key(namespace, name) or {}
    return list((body.get("status") or {}).get("versions") or [])


def rotate(kk: Cluster, namespace: str, name: str) -> None:
    time.sleep(0.01)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    kk.patch_key(
        namespace, name, {"metadata": {"annotations": {"keykeeper.dev/rotate-requested-at": stamp}}}
    )


def uid(kk: Cluster, namespace: str, name: str) -> str:
    return str((kk.key(namespace, name) or {})["metadata"]["uid"])


def test_mint_overlap_then_revoke_upstream_after_the_grace_period(
    operator: Operator, kk: Cluster, issuer: FakeIssuer, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    policy = issuing_policy(kk, issuer)
    kk.create(apikey(home, "svc", policy, source={"issue": {}}, projections=[{"namespace": home}]))
    first = wait_for(lambda: token(kk, home, "svc"), what="the issued key projected")
    leaks.add(first)
    key_uid = uid(kk, home, "svc")
    assert len(issuer.state.live_for(key_uid)) == 1
    (v1,) = versions(kk, home, "svc")
    assert v1["upstreamState"] == "Live" and v1["upstreamId"] in issuer.state.live_for(key_uid)
    assert issuer.state.mints == {**issuer.state.mints, f"{key_uid}/1": 1}

    rotate(kk, home, "svc")
    wait_for(lambda: token(kk, home, "svc", "token.previous") == first, what="the overlap")
    second = token(kk, home, "svc")
    assert second and second != first
    leaks.add(second)
    assert len(issuer.state.live_for(key_uid)) == 2  # both serve during the grace period
    wait_for(lambda: len(issuer.state.live_for(key_uid)) == 1, timeout=30, what="old revoked")
    wait_for(lambda: token(kk, home, "svc", "token.previous") is None, what=".previous gone")
    states = {v["version"]: v.get("upstreamState") for v in versions(kk, home, "svc")}
    assert states == {1: "Revoked", 2: "Live"}
    assert issuer.state.live_for(key_uid) == [versions(kk, home, "svc")[-1]["upstreamId"]]


def test_an_issuer_that_is_down_keeps_the_current_key_serving(
    operator: Operator, kk: Cluster, issuer: FakeIssuer, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    policy = issuing_policy(kk, issuer)
    kk.create(apikey(home, "svc", policy, source={"issue": {}}, projections=[{"namespace": home}]))
    first = wait_for(lambda: token(kk, home, "svc"), what="projected")
    leaks.add(first)
    issuer.state.mode = "down"
    try:
        rotate(kk, home, "svc")
        wait_for(
            lambda: condition(kk.key(home, "svc"), "Ready").get("reason") == "IssuerUnavailable",
            what="Ready=False IssuerUnavailable",
        )
        assert token(kk, home, "svc") == first  # still serving
    finally:
        issuer.state.mode = ""
    wait_for(lambda: token(kk, home, "svc") not in (None, first), timeout=40, what="rotated")
    leaks.add(token(kk, home, "svc"))  # type: ignore[arg-type]
    key_uid = uid(kk, home, "svc")
    assert issuer.state.mints.get(f"{key_uid}/2", 0) >= 1
    assert len(issuer.state.live_for(key_uid)) <= 2


def test_revocation_and_a_deletion_that_waits_for_the_issuer(
    operator: Operator, kk: Cluster, issuer: FakeIssuer, leaks: Leaks
) -> None:
    home = kk.namespace("home")
    policy = issuing_policy(kk, issuer)
    for name in ("revoked", "deleted"):
        kk.create(
            apikey(home, name, policy, source={"issue": {}}, projections=[{"namespace": home}])
        )
        leaks.add(wait_for(lambda name=name: token(kk, home, name), what="projected"))
    revoked, deleted = uid(kk, home, "revoked"), uid(kk, home, "deleted")
    kk.patch_key(home, "revoked", {"spec": {"revoked": True}})
    wait_for(lambda: issuer.state.live_for(revoked) == [], what="revoked upstream")

    issuer.state.mode = "down"
    try:
        kk.delete_key(home, "deleted")
        time.sleep(3)
        assert kk.key(home, "deleted") is not None, "the deletion waits for the issuer"
        assert len(issuer.state.live_for(deleted)) == 1
        kk.wait_for_events(home, "deleted", "IssuerUnavailable")
    finally:
        issuer.state.mode = ""
    wait_for(lambda: kk.key(home, "deleted") is None, timeout=60, what="deleted once revoked")
    assert issuer.state.live_for(deleted) == []


def test_the_issuers_expiry_brings_the_rotation_forward(
    operator: Operator, kk: Cluster, issuer: FakeIssuer, leaks: Leaks
) -> None:
    """Each key the issuer mints expires 12 s after it (and the policy's period is 90
    days): the key rotates a 4 s grace period before that, unasked, and says when its
    value expires (status.valueExpiresAt, Expiring=True once within alerts.expiringWithin)."""
    home = kk.namespace("home")
    policy = issuing_policy(kk, issuer)
    kk.patch_policy(policy, {"spec": {"rotation": {"period": "90d"}}})
    issuer.state.expires_in = 12.0
    try:
        kk.create(
            apikey(home, "svc", policy, source={"issue": {}}, projections=[{"namespace": home}])
        )
        first = wait_for(lambda: token(kk, home, "svc"), what="projected")
        leaks.add(first)
        status = wait_for(
            lambda: (
                (s := (kk.key(home, "svc") or {}).get("status") or {}).get("valueExpiresAt") and s
            ),
            what="status.valueExpiresAt",
        )
        (v1,) = versions(kk, home, "svc")
        assert str(v1["valueExpiresAt"]).startswith(status["valueExpiresAt"][:19])  # to the second
        assert condition(kk.key(home, "svc"), "Expiring").get("status") == "True"  # 14d default
        wait_for(
            lambda: token(kk, home, "svc", "token.previous") == first,
            timeout=20,
            what="rotated before the expiry, without a request",
        )
        leaks.add(token(kk, home, "svc"))  # type: ignore[arg-type]
    finally:
        issuer.state.expires_in = 0.0
        kk.delete_key(home, "svc")  # it would rotate every 8 s for the rest of the session
    wait_for(lambda: kk.key(home, "svc") is None, timeout=60, what="deleted")


def test_sigkill_during_rotations_never_leaves_a_second_live_key_behind(
    operator: Operator, kk: Cluster, issuer: FakeIssuer, leaks: Leaks, tmp_path: Path
) -> None:
    """The exactly-once test: rotations of 4 keys with the operator SIGKILLed at random
    points, while a sampler counts each key's live upstream keys every 20 ms."""
    home = kk.namespace("home")
    policy = issuing_policy(kk, issuer, grace="3s")
    names = [f"k{i}" for i in range(4)]
    for name in names:
        kk.create(
            apikey(home, name, policy, source={"issue": {}}, projections=[{"namespace": home}])
        )
    for name in names:
        wait_for(lambda name=name: token(kk, home, name), what="projected")
    uids = {name: uid(kk, home, name) for name in names}
    most, least = dict.fromkeys(names, 0), dict.fromkeys(names, 99)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for name, key_uid in uids.items():
                live = len(issuer.state.live_for(key_uid))
                most[name], least[name] = max(most[name], live), min(least[name], live)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rng = random.Random(25)
    kills = 12
    try:
        for _ in range(kills):
            for name in names:
                if rng.random() < 0.6:
                    rotate(kk, home, name)
            time.sleep(rng.uniform(0.0, 0.15))
            operator.kill()
            operator.start()
            time.sleep(rng.uniform(0.5, 1.5))
    finally:
        if not operator.alive():
            operator.start()
    # converged: after the grace period each key has exactly its current key live
    for name in names:
        wait_for(
            lambda name=name: (
                issuer.state.live_for(uids[name])
                == [
                    v["upstreamId"] for v in versions(kk, home, name) if v.get("state") == "Current"
                ]
            ),
            timeout=60,
            what=f"{name}: only its current key live",
        )
    stop.set()
    sampler.join()
    report = {
        name: {
            "most live": most[name],
            "least live": least[name],
            "live now": len(issuer.state.live_for(uids[name])),
            "versions": len(versions(kk, home, name)),
        }
        for name in names
    }
    print(f"\nissued crash test: {kills} SIGKILLs: {report}")
    assert all(most[name] <= 2 for name in names), report  # never a third live key
    assert all(least[name] >= 1 for name in names), report  # never none while Active
    for name in names:
        leaks.add(token(kk, home, name))  # type: ignore[arg-type]


def test_aws_iam_access_keys_through_moto(
    operator: Operator, kk: Cluster, tmp_path: Path, leaks: Leaks
) -> None:
    """An IAM user's access keys as an issued key: two keys during the overlap (AWS's
    limit), one after the grace period, none after revocation."""
    import boto3
    from devtools.kmspeers import CREDENTIALS, REGION, moto

    peer = moto(tmp_path).start()
    try:
        iam = boto3.client(
            "iam",
            endpoint_url=peer.endpoint,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["access-key-id"],
            aws_secret_access_key=CREDENTIALS["secret-access-key"],
        )
        home = kk.namespace("home")
        user = f"svc-{home}-deploy"
        iam.create_user(UserName=user)
        secret, policy = unique("iam-rotator"), unique("iam")
        kk.put_secret(NAMESPACE, secret, {k: v.encode() for k, v in CREDENTIALS.items()})
        aws = {
            "region": REGION,
            "endpoint": peer.endpoint,
            "credentialsSecretRef": {"name": secret},
        }
        kk.create(keypolicy(policy, issuer={"awsIam": aws}, rotation={"gracePeriod": "4s"}))
        kk.create(
            apikey(home, "deploy", policy, source={"issue": {}}, projections=[{"namespace": home}])
        )

        def keys() -> list[str]:
            return [
                k["AccessKeyId"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
            ]

        first = wait_for(lambda: kk.value(home, "deploy", "secret-access-key"), what="projected")
        leaks.add(first)
        assert (
            kk.value(
                home,
                "deploy",
                "access-key-id",
            ).decode()
            in keys()
        )  # type: ignore[union-attr]
        rotate(kk, home, "deploy")
        wait_for(
            lambda: kk.value(home, "deploy", "secret-access-key.previous") == first, what="overlap"
        )
        assert len(keys()) == 2
        wait_for(lambda: len(keys()) == 1, timeout=30, what="the old access key deleted")
        assert keys() == [kk.value(home, "deploy", "access-key-id").decode()]  # type: ignore[union-attr]
        leaks.add(kk.value(home, "deploy", "secret-access-key"))  # type: ignore[arg-type]
        kk.patch_key(home, "deploy", {"spec": {"revoked": True}})
        wait_for(lambda: keys() == [], what="revoked at IAM")
    finally:
        peer.kill()
