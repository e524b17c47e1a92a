"""Smoke tests: the control plane under test is the real, pinned upstream one."""

from __future__ import annotations

import json
import re
import threading
import uuid
from pathlib import Path

import pytest
from devtools.controlplane import ControlPlane
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.integration.conftest import api_client

pytestmark = pytest.mark.cluster

PINNED = re.search(
    r"k8s\.io/kubernetes (v[\d.]+)",
    (Path(__file__).parents[2] / "devtools" / "controlplane" / "go.mod").read_text(),
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_the_server_is_the_pinned_upstream_release(
    control_plane: ControlPlane, admin: client.ApiClient
) -> None:
    assert PINNED is not None
    info = client.VersionApi(admin).get_code()
    assert info.git_version == PINNED.group(1)
    reported = json.loads(control_plane.kubectl("version", "-o", "json"))
    assert reported["serverVersion"]["gitVersion"] == PINNED.group(1)


def test_namespace_and_secret_round_trip(admin: client.ApiClient) -> None:
    core = client.CoreV1Api(admin)
    ns = unique("smoke")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    core.create_namespaced_secret(
        ns, client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"k": "v"})
    )
    assert core.read_namespaced_secret("s", ns).data == {"k": "dg=="}


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.smoke.keykeeper.dev"},
    "spec": {
        "group": "smoke.keykeeper.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                                "x-kubernetes-validations": [
                                    {"rule": "self.size % 2 == 0", "message": "size must be even"}
                                ],
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_the_apiserver_enforces_a_crd_schema_and_cel(
    control_plane: ControlPlane, admin: client.ApiClient
) -> None:
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(WIDGET_CRD))
    control_plane.kubectl("wait", "--for=condition=Established", "crd/widgets.smoke.keykeeper.dev")
    custom = client.CustomObjectsApi(admin)
    ns = unique("crd")
    client.CoreV1Api(admin).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=ns))
    )

    def widget(size: object) -> dict[str, object]:
        return {
            "apiVersion": "smoke.keykeeper.dev/v1",
            "kind": "Widget",
            "metadata": {"name": unique("w")},
            "spec": {"size": size},
        }

    custom.create_namespaced_custom_object("smoke.keykeeper.dev", "v1", ns, "widgets", widget(2))
    for bad, message in (
        (0, "should be greater than or equal to 1"),
        ("big", "must be of type integer"),
        (3, "size must be even"),
    ):
        with pytest.raises(ApiException) as info:
            custom.create_namespaced_custom_object(
                "smoke.keykeeper.dev", "v1", ns, "widgets", widget(bad)
            )
        assert info.value.status == 422
        assert message in info.value.body


def test_a_watch_sees_events_arrive(admin: client.ApiClient) -> None:
    core = client.CoreV1Api(admin)
    ns = unique("watch")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    seen: list[tuple[str, str]] = []
    ready = threading.Event()
    start_rv = core.list_namespaced_config_map(ns).metadata.resource_version

    def consume() -> None:
        stream = watch.Watch()
        ready.set()
        for event in stream.stream(
            core.list_namespaced_config_map, ns, resource_version=start_rv, timeout_seconds=20
        ):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 3:
                stream.stop()

    thread = threading.Thread(target=consume)
    thread.start()
    ready.wait()
    core.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="one"))
    )
    core.patch_namespaced_config_map("one", ns, {"data": {"a": "b"}})
    core.delete_namespaced_config_map("one", ns)
    thread.join(timeout=30)
    assert seen == [("ADDED", "one"), ("MODIFIED", "one"), ("DELETED", "one")]


def test_rbac_denies_a_non_admin_identity(
    control_plane: ControlPlane, admin: client.ApiClient
) -> None:
    ns = unique("rbac")
    core = client.CoreV1Api(admin)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    rbac = client.RbacAuthorizationV1Api(admin)
    rbac.create_namespaced_role(
        ns,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="read-configmaps"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[""], resources=["configmaps"], verbs=["get", "list"]
                )
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        ns,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="alice-reads"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="read-configmaps"
            ),
            subjects=[
                client.RbacV1Subject(
                    kind="User", name="alice", api_group="rbac.authorization.k8s.io"
                )
            ],
        ),
    )
    alice = control_plane.user("alice")
    with api_client(alice) as as_alice:
        assert client.CoreV1Api(as_alice).list_namespaced_config_map(ns).items == []
        with pytest.raises(ApiException) as info:
            client.CoreV1Api(as_alice).list_namespaced_secret(ns)
        assert info.value.status == 403
    operator = control_plane.service_account("keykeeper-system", "smoke")
    with api_client(operator) as as_sa:
        with pytest.raises(ApiException) as info:
            client.CoreV1Api(as_sa).list_namespaced_config_map(ns)
        assert info.value.status == 403
        assert "system:serviceaccount:keykeeper-system:smoke" in info.value.body
