"""The attacker: a tenant with only namespace-level rights, and what the operator did for them.

A tenant may create, change and delete ApiKeys and Secrets in their own namespace,
read Events there, and nothing else (no namespaces, no policies, no other namespace).
What the operator did on their behalf is read from the apiserver's own audit log, so
"nothing was read, written or deleted outside the grant" is checked by the server,
not by the operator's word.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from devtools.controlplane import ControlPlane
from devtools.kk import Cluster, api_client, unique
from devtools.operator import SERVICE_ACCOUNT
from kubernetes import client
from kubernetes.client.rest import ApiException


@dataclass
class Tenant:
    namespace: str
    user: str
    kk: Cluster

    def rejected(self, body: dict[str, Any]) -> str:
        """Create ``body`` as this tenant; the apiserver's refusal message (fails if admitted)."""
        with pytest.raises(ApiException) as refusal:
            self.kk.create(body)
        assert refusal.value.status in (400, 403, 422), refusal.value
        return str(refusal.value.body)


@contextlib.contextmanager
def tenant(plane: ControlPlane, admin: Cluster, prefix: str = "tenant") -> Iterator[Tenant]:
    namespace = admin.namespace(prefix)
    user = unique("user")
    rbac = client.RbacAuthorizationV1Api(admin.core.api_client)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "tenant"},
            "rules": [
                {
                    "apiGroups": ["keykeeper.dev"],
                    "resources": ["apikeys"],
                    "verbs": ["*"],
                },
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list"]},
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "tenant"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant"},
            "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    with api_client(plane.user(user)) as api:
        yield Tenant(namespace, user, Cluster(api))


@dataclass(frozen=True)
class Request:
    verb: str
    resource: str
    namespace: str
    name: str
    code: int


def operator_requests(plane: ControlPlane, since: str = "") -> list[Request]:
    """Every request the operator made (after the RFC 3339 time ``since``)."""
    out = []
    for event in plane.audit_events(SERVICE_ACCOUNT):
        if since and event.get("requestReceivedTimestamp", "") < since:
            continue
        ref = event.get("objectRef") or {}
        out.append(
            Request(
                event.get("verb", ""),
                ref.get("resource", ""),
                ref.get("namespace", ""),
                ref.get("name", ""),
                int((event.get("responseStatus") or {}).get("code", 0)),
            )
        )
    return out


def now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
