"""Finding 1 — path traversal through names a tenant writes.

``secretRef.name: ../../kube-system/secrets/x`` used to be pasted into the request
path, making the operator read (and with deleteAfterImport, delete) any Secret in the
cluster. Every name a spec carries is now refused at admission by the CRD, refused
again by the models and the path builders (see tests/unit/test_names.py), and the
apiserver's audit log shows the operator never touched the victim's namespace.
"""

from __future__ import annotations

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, apikey, condition, keypolicy, unique
from devtools.operator import wait_for
from kubernetes.client.rest import ApiException

from tests.adversarial.tenant import Tenant, now, operator_requests
from tests.cluster import Leaks

pytestmark = pytest.mark.cluster

HOSTILE_NAMES = [
    pytest.param("../../kube-system/secrets/victim", id="dot-dot-slash"),
    pytest.param("..%2F..%2Fvictim-ns%2Fsecrets%2Fvictim", id="encoded-slash"),
    pytest.param("%2e%2e", id="encoded-dots"),
    pytest.param("..", id="dot-dot"),
    pytest.param("a/b", id="slash"),
    pytest.param("victim?watch=true", id="query"),
    pytest.param("victim#x", id="fragment"),
    pytest.param("Victim", id="uppercase"),
    pytest.param("vi\u0441tim", id="homoglyph"),
    pytest.param("victim\x00", id="nul"),
    pytest.param("x" * 254, id="too-long"),
    pytest.param("", id="empty"),
]


def source(name: str) -> dict[str, object]:
    return {"secretRef": {"name": name, "deleteAfterImport": True}}


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_secret_ref_names_are_refused_at_admission(
    attacker: Tenant, kk: Cluster, name: str
) -> None:
    policy = unique("pol")
    kk.create(keypolicy(policy))
    attacker.rejected(apikey(attacker.namespace, "steal", policy, source=source(name)))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("namespace", "../kube-system", id="projection-namespace-traversal"),
        pytest.param("namespace", "kube_system", id="projection-namespace-underscore"),
        pytest.param("namespace", "a" * 64, id="projection-namespace-too-long"),
        pytest.param("secretName", "../x", id="secret-name-traversal"),
        pytest.param("secretName", "a..b", id="secret-name-empty-label"),
        pytest.param("key", "..", id="data-key-dot-dot"),
        pytest.param("key", "a/b", id="data-key-slash"),
    ],
)
def test_hostile_projection_names_are_refused_at_admission(
    attacker: Tenant, kk: Cluster, field: str, value: str
) -> None:
    policy = unique("pol")
    kk.create(keypolicy(policy))
    projection = {"namespace": attacker.namespace, field: value}
    attacker.rejected(apikey(attacker.namespace, "k", policy, projections=[projection]))


def test_hostile_policy_reference_is_refused(attacker: Tenant) -> None:
    attacker.rejected(apikey(attacker.namespace, "k", "../../keypolicies/x"))


def test_hostile_policy_names_are_refused(kk: Cluster) -> None:
    """A platform team's typo or a compromised pipeline cannot aim a policy at paths."""
    for body in (
        keypolicy(unique("pol"), sources={"names": ["../kube-system"]}),
        keypolicy(
            unique("pol"),
            kms={"provider": "local", "credentialsSecretRef": {"name": "../../x"}},
        ),
        keypolicy(
            unique("pol"),
            kms={"provider": "local", "credentialsSecretRef": {"name": "x", "namespace": "a/b"}},
        ),
        keypolicy(unique("pol"), rotation={"period": "99999999999999999999999999999w"}),
        keypolicy(unique("pol"), targets={"selector": {"matchLabels": {"k": "v" * 64}}}),
    ):
        with pytest.raises(ApiException, match=r"422|Invalid"):
            kk.create(body)


def test_a_tenant_cannot_reach_another_namespace_through_the_operator(
    control_plane: ControlPlane, attacker: Tenant, kk: Cluster, leaks: Leaks
) -> None:
    """The attack as a whole: plant a victim Secret, try every admitted route to it."""
    victim_ns = kk.namespace("victim")
    secret_value = b"victim-secret-" + unique("v").encode() * 3
    leaks.add(secret_value)
    kk.put_secret(victim_ns, "victim", {"api-key": secret_value}, importable_by="steal")
    policy = unique("pol")
    kk.create(keypolicy(policy))
    started = now()
    # the names the CRD admits are names in the tenant's own namespace: no route out
    attacker.kk.create(
        apikey(
            attacker.namespace,
            "steal",
            policy,
            projections=[{"namespace": attacker.namespace}],
            source=source("victim"),
        )
    )
    wait_for(
        lambda: (
            condition(attacker.kk.key(attacker.namespace, "steal"), "Ready").get("reason")
            == "SourceNotFound"
        ),
        what="SourceNotFound for a name that exists only elsewhere",
    )
    assert kk.value(victim_ns, "victim") == secret_value  # not deleted
    assert attacker.kk.secret(attacker.namespace, "steal") is None
    touched = [r for r in operator_requests(control_plane, started) if r.namespace == victim_ns]
    assert touched == [], f"the operator touched the victim namespace: {touched}"
