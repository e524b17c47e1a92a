"""Finding K12 — the leader fence was only client-side.

A replica checks that it leads before each write leaves it; a replica paused after
that check (a long GC, a frozen VM) landed its write on the apiserver 5 s after another
replica had taken the Lease. Now a ValidatingAdmissionPolicy with the Lease as its
parameter (``keykeeper-leader-fence``) checks every write of the operator's
ServiceAccount made with a Pod-bound token, when it arrives, against the Lease's holder
as the apiserver has it: a replica that does not hold the Lease writes nothing.

Two Pods of the operator's ServiceAccount (Pending: no node runs them) give the two
replicas' tokens, bound to them exactly as a kubelet mounts them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devtools.controlplane import ControlPlane, Identity
from devtools.kk import Cluster, api_client, apikey, keypolicy, unique
from devtools.operator import NAMESPACE, Operator, wait_for
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.cluster

LEASE = "keykeeper-leader"
REPO = Path(__file__).resolve().parents[2]
OURS = {"app.kubernetes.io/managed-by": "keykeeper"}


@pytest.fixture
def replicas(
    control_plane: ControlPlane, operator: Operator, kk: Cluster
) -> Iterator[dict[str, Identity]]:
    # opt-in (deploy/leader-fence.yaml's caveat): applied once and never deleted, so this
    # apiserver's Lease informer is never torn down (kubernetes/kubernetes#130887)
    control_plane.kubectl("apply", "-f", str(REPO / "deploy" / "leader-fence.yaml"))
    made: dict[str, Identity] = {}
    for role in ("a", "b"):
        name = unique(f"keykeeper-{role}")
        pod = kk.core.create_namespaced_pod(
            NAMESPACE,
            {
                "metadata": {"name": name},
                "spec": {
                    "serviceAccountName": "keykeeper",
                    "containers": [{"name": "operator", "image": "keykeeper:never-run"}],
                },
            },
        )
        made[name] = control_plane.service_account(
            NAMESPACE, "keykeeper", 600, pod=(name, pod.metadata.uid)
        )
    try:
        yield made
    finally:
        coordination = client.CoordinationV1Api(kk.core.api_client)
        try:
            coordination.delete_namespaced_lease(LEASE, NAMESPACE)
        except ApiException as exc:
            if exc.status != 404:
                raise
        for name in made:
            kk.core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)


def _hold(kk: Cluster, holder: str | None) -> None:
    coordination = client.CoordinationV1Api(kk.core.api_client)
    body: dict[str, Any] = {
        "metadata": {"name": LEASE},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15},
    }
    try:
        coordination.create_namespaced_lease(NAMESPACE, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        coordination.patch_namespaced_lease(LEASE, NAMESPACE, {"spec": body["spec"]})


def _write(identity: Identity, namespace: str) -> int:
    """A projected Secret's create, as the replica would make it (dry run): its status."""
    with api_client(identity) as api:
        try:
            client.CoreV1Api(api).create_namespaced_secret(
                namespace,
                {"metadata": {"name": unique("s"), "labels": OURS}, "data": {"k": "dg=="}},
                dry_run="All",
            )
        except ApiException as exc:
            fenced = exc.status == 403 and "does not hold the leader Lease" in str(exc.body)
            return 403 if fenced else int(exc.status) * 1000  # not the fence: fails the test
    return 201


def _status_patch(identity: Identity, namespace: str, name: str) -> int:
    with api_client(identity) as api:
        try:
            client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
                "keykeeper.dev",
                "v1alpha1",
                namespace,
                "apikeys",
                name,
                {"status": {"phase": "Revoked"}},
                dry_run="All",
            )
        except ApiException as exc:
            return int(exc.status)
    return 200


def test_only_the_replica_holding_the_lease_can_write(
    replicas: dict[str, Identity], kk: Cluster
) -> None:
    (a, who_a), (b, who_b) = replicas.items()
    ns = kk.namespace("target")
    policy = unique("pol")
    kk.create(keypolicy(policy))
    kk.create(apikey(ns, "k", policy, projections=[{"namespace": ns}]))
    wait_for(lambda: kk.value(ns, "k"), what="projected")

    assert _write(who_b, ns) == 201, "no Lease (no leader election): nothing is fenced"
    _hold(kk, f"{a}_0a1b2c3d")
    assert _write(who_a, ns) == 201, "the holder writes"
    wait_for(  # the policy and its Lease informer take effect within a second or two
        lambda: _write(who_b, ns) == 403,
        timeout=15,
        what="a replica that does not hold the Lease refused",
    )
    assert _status_patch(who_b, ns, "k") == 403
    assert _status_patch(who_a, ns, "k") == 200
    # a prefix of the holder's Pod name is not that Pod
    assert not f"{a}_0a1b2c3d".startswith(f"{b}_")
    # the master key's first create is not fenced (it comes before any election): here it
    # exists, so the apiserver answers AlreadyExists, not the fence's Forbidden
    with api_client(who_b) as api, pytest.raises(ApiException) as exists:
        client.CoreV1Api(api).create_namespaced_secret(
            NAMESPACE,
            {"metadata": {"name": "keykeeper-master-key", "labels": OURS}, "data": {}},
            dry_run="All",
        )
    assert exists.value.status == 409, exists.value

    _hold(kk, None)  # released: nobody leads
    assert _write(who_a, ns) == 403
    assert _write(who_b, ns) == 403

    # the operator of these tests runs without election, on a token bound to no Pod:
    # the fence does not apply to it, and it keeps working while the Lease is held
    _hold(kk, f"{b}_0a1b2c3d")
    kk.create(apikey(ns, "k2", policy, projections=[{"namespace": ns}]))
    wait_for(lambda: kk.value(ns, "k2"), what="the unfenced operator still projects")
