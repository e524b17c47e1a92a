"""The one place that talks to the Kubernetes API (besides kopf's watches).

A thin async layer over the official client: every call runs in a worker thread,
returns plain dicts, and maps API errors onto a few exceptions the reconciler
understands. The benchmarks count its requests from the apiserver's audit log.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

import urllib3
from kubernetes import client, config

from keykeeper import names
from keykeeper.errors import (
    ApiError,
    ApiUnavailable,
    Conflict,
    Forbidden,
    KeykeeperError,
    NotFound,
)

Body = dict[str, Any]
__all__ = ["ApiUnavailable", "Body", "Conflict", "Forbidden", "Kube", "NotFound"]


def load_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """In-cluster config when running in a pod (and no kubeconfig or context is named),
    else the kubeconfig (``KUBECONFIG`` / ``~/.kube/config`` by default) and context."""
    configuration = client.Configuration()
    try:
        if kubeconfig is not None or context is not None:
            raise config.ConfigException("a kubeconfig or context was named")
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    configuration.connection_pool_maxsize = 16
    return client.ApiClient(configuration)


class Kube:
    """Raw JSON over the client's connection settings (TLS, client certs, bearer tokens).

    The official client is used for its configuration loading only: its generated
    call layer changes shape between releases, and keykeeper needs plain dicts.
    """

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        cfg = api.configuration
        self._host = cfg.host.rstrip("/")
        self._config = cfg
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=16,
            cert_reqs="CERT_REQUIRED" if cfg.verify_ssl else "CERT_NONE",
            ca_certs=cfg.ssl_ca_cert,
            cert_file=cfg.cert_file,
            key_file=cfg.key_file,
            retries=False,
        )

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Body:
        return await asyncio.to_thread(self._call, method, path, body, query, content_type)

    def _call(
        self, method: str, path: str, body: Any, query: dict[str, str] | None, content_type: str
    ) -> Body:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        token = self._config.auth_settings().get("BearerToken")
        if token and token.get("value"):
            headers[str(token["key"])] = str(token["value"])
        url = self._host + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        try:
            response = self._pool.request(
                method,
                url,
                body=None if body is None else json.dumps(body).encode(),
                headers=headers,
                timeout=urllib3.Timeout(connect=10, read=30),
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ApiUnavailable(f"{method} {path}: {exc}") from None
        data = response.data
        if response.status >= 400:
            raise _translate(response.status, data, method, path)
        result: Body = json.loads(data) if data else {}
        return result

    # -- convenience ---------------------------------------------------------------------------

    async def get(self, path: str) -> Body:
        return await self.call("GET", path)

    async def get_or_none(self, path: str) -> Body | None:
        try:
            return await self.get(path)
        except NotFound:
            return None

    async def get_secret(self, namespace: str, name: str) -> Body | None:
        """A Secret by name, or None; the answer's identity is checked."""
        found = await self.get_or_none(secret_path(namespace, name))
        return None if found is None else check_identity(found, namespace, name)

    async def list(self, path: str, label_selector: str = "") -> list[Body]:
        query = {"labelSelector": label_selector} if label_selector else None
        items: list[Body] = (await self.call("GET", path, query=query)).get("items", [])
        return items

    async def create(self, path: str, body: Body) -> Body:
        return await self.call("POST", path, body)

    async def replace(self, path: str, body: Body) -> Body:
        return await self.call("PUT", path, body)

    async def patch(self, path: str, patch: Any, *, kind: str = "merge") -> Body:
        content_type = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
        }[kind]
        return await self.call("PATCH", path, patch, content_type=content_type)

    async def delete(self, path: str, *, uid: str | None = None) -> bool:
        """Delete; True if it was there. With ``uid``, only that exact object."""
        body = {"preconditions": {"uid": uid}} if uid else None
        try:
            await self.call("DELETE", path, body)
        except NotFound:
            return False
        return True


def _translate(status: int, data: bytes, method: str, path: str) -> KeykeeperError:
    try:
        message = str(json.loads(data or b"{}").get("message", ""))
    except (ValueError, AttributeError):
        message = ""
    text = f"{method} {path}: {status} {message}"
    if status == 404:
        return NotFound(text)
    if status == 409:
        return Conflict(text)
    if status in (401, 403):
        return Forbidden(text)
    if status == 429 or status >= 500:
        return ApiUnavailable(text)
    return ApiError(text)


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


def workloads_path(namespace: str, kind: str, name: str | None = None) -> str:
    """``/apis/apps/v1/namespaces/{ns}/{deployments|statefulsets|daemonsets}[/{name}]``."""
    if kind not in ("deployments", "statefulsets", "daemonsets"):
        raise ValueError(f"not a workload kind: {kind}")
    base = f"/apis/apps/v1/namespaces/{_segment(names.namespace(namespace))}/{kind}"
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


def check_identity(body: Body, namespace: str, name: str) -> Body:
    """The object the API returned is the one asked for (never trust a path alone)."""
    meta = body.get("metadata") or {}
    if meta.get("namespace", "") != namespace or meta.get("name") != name:
        raise KeykeeperError(
            f"asked for {namespace}/{name}, the API returned "
            f"{meta.get('namespace')}/{meta.get('name')}"
        )
    return body
