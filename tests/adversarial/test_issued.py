"""#25 — issued keys, played by a tenant with namespace rights only: the tenant cannot
point the operator at another issuer, cannot use a policy without one to mint anything,
and cannot make it revoke an upstream key that is not its own key's (upstream ids come
only from the key's own store, in the operator's namespace)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import pytest
from devtools.fakes import tls
from devtools.fakes.issuer import FakeIssuer
from devtools.kk import Cluster, apikey, condition, keypolicy, unique
from devtools.operator import NAMESPACE, wait_for
from kubernetes.client.rest import ApiException

from tests.adversarial.tenant import Tenant
from tests.cluster import Leaks

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeIssuer]:
    fake = FakeIssuer(tls.make(tmp_path_factory.mktemp("issuer"))).start()
    yield fake
    fake.stop()


def policy_for(kk: Cluster, issuer: FakeIssuer, home: str) -> str:
    name, secret = unique("issued"), unique("issuer-token")
    kk.put_secret(NAMESPACE, secret, {"token": issuer.state.token.encode()})
    webhook = {
        "url": issuer.url,
        "caBundle": base64.b64encode(issuer.ca_pem).decode(),
        "credentialsSecretRef": {"name": secret},
    }
    kk.create(keypolicy(name, sources={"names": [home]}, issuer={"webhook": webhook}))
    return name


def test_a_tenant_cannot_choose_the_issuer_or_its_credentials(
    attacker: Tenant, kk: Cluster, issuer: FakeIssuer, leaks: Leaks
) -> None:
    home = attacker.namespace
    policy = policy_for(kk, issuer, home)
    hostile = {"issue": {"url": "https://evil.example/v1", "credentialsSecretRef": {"name": "x"}}}
    attacker.kk.create(apikey(home, "k", policy, source=hostile, projections=[{"namespace": home}]))
    leaks.add(wait_for(lambda: kk.value(home, "k", "token"), what="issued by the policy's issuer"))
    body = kk.key(home, "k")
    assert body is not None and body["spec"]["source"] == {"issue": {}}  # pruned at admission
    assert issuer.state.live_for(body["metadata"]["uid"])


def test_a_policy_without_an_issuer_mints_nothing(attacker: Tenant, kk: Cluster) -> None:
    home = attacker.namespace
    policy = unique("plain")
    kk.create(keypolicy(policy, sources={"names": [home]}))
    attacker.kk.create(
        apikey(home, "k", policy, source={"issue": {}}, projections=[{"namespace": home}])
    )
    ready = wait_for(
        lambda: (c := condition(kk.key(home, "k"), "Ready")).get("reason") == "IssuerRefused" and c,
        what="Ready=False IssuerRefused",
    )
    assert "names no spec.issuer" in ready["message"]
    assert kk.secret(home, "k") is None


def test_a_forged_upstream_id_is_never_revoked(
    attacker: Tenant, kk: Cluster, issuer: FakeIssuer, leaks: Leaks
) -> None:
    """The attacker writes another key's upstream id into its own ApiKey's status (the
    main resource ignores status) and then revokes and deletes its key: the victim's
    upstream key stays live."""
    home = attacker.namespace
    policy = policy_for(kk, issuer, home)
    victim_ns = kk.namespace("victim")
    victim_policy = policy_for(kk, issuer, victim_ns)
    kk.create(
        apikey(
            victim_ns,
            "v",
            victim_policy,
            source={"issue": {}},
            projections=[{"namespace": victim_ns}],
        )
    )
    leaks.add(wait_for(lambda: kk.value(victim_ns, "v", "token"), what="the victim's key"))
    victim_uid = kk.key(victim_ns, "v")["metadata"]["uid"]  # type: ignore[index]
    (victim_id,) = issuer.state.live_for(victim_uid)

    attacker.kk.create(
        apikey(home, "a", policy, source={"issue": {}}, projections=[{"namespace": home}])
    )
    leaks.add(wait_for(lambda: kk.value(home, "a", "token"), what="the attacker's key"))
    forged = {
        "status": {"versions": [{"version": 1, "upstreamId": victim_id, "upstreamState": "Live"}]}
    }
    attacker.kk.patch_key(home, "a", forged)
    with pytest.raises(ApiException):  # the status subresource is the operator's
        attacker.kk.custom.patch_namespaced_custom_object_status(
            "keykeeper.dev", "v1alpha1", home, "apikeys", "a", forged
        )
    attacker.kk.patch_key(home, "a", {"spec": {"revoked": True}})
    attacker_uid = kk.key(home, "a")["metadata"]["uid"]  # type: ignore[index]
    wait_for(lambda: issuer.state.live_for(attacker_uid) == [], what="the attacker's key revoked")
    attacker.kk.delete_key(home, "a")
    wait_for(lambda: kk.key(home, "a") is None, what="deleted")
    time.sleep(1)
    assert issuer.state.live_for(victim_uid) == [victim_id]
