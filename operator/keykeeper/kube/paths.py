"""Request paths of the Kubernetes API, built only from checked names.

Every name that reaches a path is checked (DNS-1123, ``api.names``) and then
percent-encoded, so no character of it can act as a separator (``../``, ``%2F``);
``check_identity`` checks that the object the API returned is the one asked for.
"""

from __future__ import annotations

import urllib.parse

from keykeeper.api import names
from keykeeper.errors import KeykeeperError
from keykeeper.types import Body


def _segment(text: str) -> str:
    """A checked name, percent-encoded so that no character of it can act as a separator."""
    return urllib.parse.quote(text, safe="")


def secret_path(namespace: str, name: str | None = None) -> str:
    """``/api/v1/namespaces/{ns}/secrets[/{name}]``, refusing anything that is not a name."""
    base = f"/api/v1/namespaces/{_segment(names.namespace(namespace))}/secrets"
    return base if name is None else f"{base}/{_segment(names.object_name(name))}"


def configmap_path(namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{_segment(names.namespace(namespace))}/configmaps"
    return base if name is None else f"{base}/{_segment(names.object_name(name))}"


WORKLOAD_GROUPS = {
    "deployments": "apps/v1",
    "statefulsets": "apps/v1",
    "daemonsets": "apps/v1",
    "rollouts": "argoproj.io/v1alpha1",  # Argo Rollouts, when enabled
}


def workloads_path(namespace: str, kind: str, name: str | None = None) -> str:
    """``/apis/apps/v1/namespaces/{ns}/{deployments|statefulsets|daemonsets}[/{name}]``,
    or ``/apis/argoproj.io/v1alpha1/namespaces/{ns}/rollouts[/{name}]``."""
    if kind not in WORKLOAD_GROUPS:
        raise ValueError(f"not a workload kind: {kind}")
    group = WORKLOAD_GROUPS[kind]
    base = f"/apis/{group}/namespaces/{_segment(names.namespace(namespace))}/{kind}"
    return base if name is None else f"{base}/{_segment(names.object_name(name))}"


def events_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{_segment(names.namespace(namespace))}/events"


def apikey_path(namespace: str, name: str | None = None, status: bool = False) -> str:
    base = f"/apis/keykeeper.dev/v1alpha1/namespaces/{_segment(names.namespace(namespace))}/apikeys"
    path = base if name is None else f"{base}/{_segment(names.object_name(name))}"
    return path + "/status" if status else path


def keypolicy_path(name: str | None = None, status: bool = False) -> str:
    base = "/apis/keykeeper.dev/v1alpha1/keypolicies"
    path = base if name is None else f"{base}/{_segment(names.object_name(name))}"
    return path + "/status" if status else path


def lease_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/coordination.k8s.io/v1/namespaces/{_segment(names.namespace(namespace))}/leases"
    return base if name is None else f"{base}/{_segment(names.object_name(name))}"


def check_identity(body: Body, namespace: str, name: str) -> Body:
    """The object the API returned is the one asked for (never trust a path alone)."""
    meta = body.get("metadata") or {}
    if meta.get("namespace", "") != namespace or meta.get("name") != name:
        raise KeykeeperError(
            f"asked for {namespace}/{name}, the API returned "
            f"{meta.get('namespace')}/{meta.get('name')}"
        )
    return body
