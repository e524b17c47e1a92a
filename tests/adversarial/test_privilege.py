"""Finding 8 — least privilege enforced by the apiserver, not only promised.

The operator's own identity (its ServiceAccount token, as a thief would hold it) is
used directly against the real apiserver: the admission policy refuses every Secret
write that is not keykeeper's own, and RBAC refuses the verbs keykeeper never uses.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from devtools.kk import Cluster, api_client
from devtools.operator import NAMESPACE, Operator, wait_for
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.cluster

OURS = {"app.kubernetes.io/managed-by": "keykeeper"}


@pytest.fixture
def as_operator(operator: Operator) -> Iterator[client.CoreV1Api]:
    assert operator.identity is not None
    with api_client(operator.identity) as api:
        yield client.CoreV1Api(api)


def refused(call: object, *args: object, **kwargs: object) -> ApiException:
    with pytest.raises(ApiException) as refusal:
        call(*args, **kwargs)  # type: ignore[operator]
    assert refusal.value.status in (403, 422), refusal.value
    return refusal.value


def secret(name: str, labels: dict[str, str] | None = None, **annotations: str) -> dict:  # type: ignore[type-arg]
    return {
        "metadata": {"name": name, "labels": labels, "annotations": annotations or None},
        "data": {"k": "dg=="},
    }


def test_the_operator_cannot_write_secrets_that_are_not_its_own(
    as_operator: client.CoreV1Api, kk: Cluster
) -> None:
    ns = kk.namespace("workload")
    kk.core.create_namespaced_secret(ns, secret("db-password"))
    kk.core.create_namespaced_secret(
        ns, secret("consenting", **{"keykeeper.dev/importable-by": "k"})
    )
    # create: only with keykeeper's label
    assert (
        "managed-by=keykeeper"
        in refused(as_operator.create_namespaced_secret, ns, secret("planted")).body
    )
    # update: not someone else's, not even by adding the label
    refused(as_operator.replace_namespaced_secret, "db-password", ns, secret("db-password"))
    refused(as_operator.replace_namespaced_secret, "db-password", ns, secret("db-password", OURS))
    refused(as_operator.patch_namespaced_secret, "db-password", ns, {"metadata": {"labels": OURS}})
    # delete: not someone else's
    refused(as_operator.delete_namespaced_secret, "db-password", ns)
    assert kk.secret(ns, "db-password") is not None
    # what keykeeper does need still works
    as_operator.create_namespaced_secret(ns, secret("projected", OURS))
    as_operator.replace_namespaced_secret("projected", ns, secret("projected", OURS))
    refused(  # and its own Secrets stay labelled as its own
        as_operator.replace_namespaced_secret, "projected", ns, secret("projected", {"x": "y"})
    )
    as_operator.delete_namespaced_secret("projected", ns)
    as_operator.delete_namespaced_secret("consenting", ns)


def test_unused_verbs_are_not_granted(operator: Operator) -> None:
    assert operator.identity is not None
    with api_client(operator.identity) as api:
        custom = client.CustomObjectsApi(api)
        refused(
            custom.patch_cluster_custom_object,
            "keykeeper.dev",
            "v1alpha1",
            "keypolicies",
            "any",
            {"spec": {"sourceNamespaces": {"selector": {}}}},
        )
        refused(
            client.EventsV1Api(api).create_namespaced_event,
            "default",
            {"metadata": {"name": "x"}, "eventTime": "2026-01-01T00:00:00.000000Z"},
        )
        refused(
            client.CoreV1Api(api).patch_namespaced_event,
            "x",
            "default",
            {"message": "rewritten history"},
        )
        refused(client.CoreV1Api(api).list_config_map_for_all_namespaces)


def test_the_operator_can_never_delete_its_keys_nor_replace_its_master_key(
    as_operator: client.CoreV1Api, kk: Cluster
) -> None:
    """K10: with the operator's token, its master key could be deleted or replaced, and
    its sealing keys and audit anchor deleted (checked with ``dryRun``, nothing lost)."""
    ns = "keykeeper-system"
    master = wait_for(lambda: kk.secret(ns, "keykeeper-master-key"), what="the master key")
    wait_for(lambda: kk.secret(ns, "keykeeper-sealing-keys"), what="the sealing keys")
    assert master.immutable, "the master key is created immutable"
    for name in ("keykeeper-master-key", "keykeeper-sealing-keys", "keykeeper-audit-anchor"):
        if kk.secret(ns, name) is None:
            continue  # the anchor appears after the first records
        body = refused(as_operator.delete_namespaced_secret, name, ns, dry_run="All").body
        assert "may never delete its master key" in body, name
    master.metadata.annotations = {**(master.metadata.annotations or {}), "x": "y"}
    body = refused(
        as_operator.replace_namespaced_secret, "keykeeper-master-key", ns, master, dry_run="All"
    ).body
    assert "nor change its master key" in body
    # what keykeeper needs of the others still works
    sealing = kk.core.read_namespaced_secret("keykeeper-sealing-keys", ns)
    as_operator.replace_namespaced_secret("keykeeper-sealing-keys", ns, sealing, dry_run="All")


@pytest.mark.parametrize(
    ("secret_type", "data"),
    [  # each with the data its type requires, so only the admission policy can refuse it
        ("kubernetes.io/service-account-token", {}),  # the token controller mints into it
        ("kubernetes.io/dockercfg", {".dockercfg": "e30="}),  # the legacy registry format
        ("keykeeper.dev/envelopes", {}),  # keykeeper's own types: in its own namespace only
        ("kubernetes.io/tls", {"tls.crt": "dg==", "tls.key": "dg=="}),
        ("bootstrap.kubernetes.io/token", {"token-id": "YWJjZGVm"}),  # joins a node
    ],
)
def test_the_operator_writes_only_the_secret_types_it_uses(
    as_operator: client.CoreV1Api, kk: Cluster, secret_type: str, data: dict[str, str]
) -> None:
    """K10: labelled as keykeeper's, the operator's token could create a Secret of any
    type: a service-account token Secret names any ServiceAccount of its namespace and
    the token controller fills it with that account's token. Only Opaque and keykeeper's
    own types are let through (checked with ``dryRun``)."""
    ns = kk.namespace("workload")
    planted = {
        **secret("planted", OURS, **{"kubernetes.io/service-account.name": "default"}),
        "type": secret_type,
        "data": data,
    }
    body = refused(as_operator.create_namespaced_secret, ns, planted, dry_run="All").body
    assert "Secret types" in body, body
    allowed = {  # what keykeeper does write (#24: the types a template may have)
        "Opaque": {"k": "dg=="},
        "kubernetes.io/basic-auth": {"username": "dg==", "password": "dg=="},
        "kubernetes.io/dockerconfigjson": {".dockerconfigjson": "eyJhdXRocyI6e319"},
        "kubernetes.io/ssh-auth": {"ssh-privatekey": "dg=="},
    }
    for kind, kind_data in allowed.items():
        made = {**secret(f"ours-{kind.lower().replace('/', '-').replace('.', '-')}", OURS)}
        as_operator.create_namespaced_secret(
            ns, {**made, "type": kind, "data": kind_data}, dry_run="All"
        )
    own = {**secret("ak-x", OURS), "type": "keykeeper.dev/envelopes"}
    as_operator.create_namespaced_secret(NAMESPACE, own, dry_run="All")


def test_the_operator_never_changes_a_secrets_type(
    as_operator: client.CoreV1Api, kk: Cluster
) -> None:
    """#24: a projected Secret's type is never changed in place (the apiserver keeps it
    immutable too): the operator's token, on its own Secret, is refused."""
    ns = kk.namespace("workload")
    made = as_operator.create_namespaced_secret(ns, {**secret("typed", OURS), "type": "Opaque"})
    changed = {**secret("typed", OURS), "type": "kubernetes.io/basic-auth"}
    changed["metadata"]["resourceVersion"] = made.metadata.resource_version
    changed["data"] = {"username": "dg==", "password": "dg=="}
    body = refused(as_operator.replace_namespaced_secret, "typed", ns, changed, dry_run="All").body
    assert "type" in body
