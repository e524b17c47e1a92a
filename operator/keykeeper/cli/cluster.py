"""The CLI's one view of the cluster, with the user's own identity, and its one error.

Every command that reads or writes the cluster (``seal``, ``cert``, ``audit verify``
and the day-2 commands) goes through ``UserCluster``: the user's kubeconfig and
context, so RBAC decides what each person may see and do, and every failure turned
into one ``CommandError`` line (``main`` prints it and exits 1). The connection is made
on first use, so a command that needs no cluster (``seal --cert``) never asks for one.
The default namespace is the one of the context in use: the named ``--context``'s, not
the current context's (acting on ``--context prod`` in the current context's namespace
would suspend or revoke keys of another namespace).
"""

from __future__ import annotations

import base64
from typing import Any

from keykeeper.api.models import API_VERSION

GROUP, VERSION = API_VERSION.split("/")


class CommandError(Exception):
    """A clear one-line reason to exit non-zero."""


class UserCluster:
    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        self.kubeconfig, self.context = kubeconfig, context
        self._api: Any = None

    def _client(self) -> Any:
        if self._api is None:
            from keykeeper.kube.client import load_client

            try:
                self._api = load_client(self.kubeconfig, self.context)
            except Exception as exc:  # no kubeconfig, a bad one, no such context
                raise CommandError(f"no cluster: {type(exc).__name__}: {exc}") from None
        return self._api

    @property
    def default_namespace(self) -> str:
        """The namespace of the context in use (``--context``, else the current one)."""
        from kubernetes import config

        try:
            contexts, active = config.list_kube_config_contexts(config_file=self.kubeconfig)  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise CommandError(f"no cluster: {type(exc).__name__}: {exc}") from None
        if self.context is not None:
            named = [c for c in contexts or [] if c.get("name") == self.context]
            if not named:
                raise CommandError(f"no context {self.context!r} in the kubeconfig")
            active = named[0]
        return str((active or {}).get("context", {}).get("namespace") or "default")

    @property
    def custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self._client())

    @property
    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self._client())

    def call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        """The one error path: an API refusal or an unreachable cluster is one line."""
        from kubernetes.client.exceptions import ApiException

        try:
            return method(*args, **kwargs)
        except ApiException as exc:
            why = {401: "unauthorized", 403: "forbidden", 404: "not found"}.get(exc.status, "")
            raise CommandError(f"{what}: {why or exc.reason} ({exc.status})") from None
        except CommandError:
            raise
        except Exception as exc:  # refused connection, TLS, DNS
            raise CommandError(f"cannot reach the cluster: {type(exc).__name__}") from None

    # -- ApiKeys -------------------------------------------------------------------------

    def apikeys(self, namespace: str | None) -> list[dict[str, Any]]:
        if namespace is None:
            found = self.call(
                "list ApiKeys", self.custom.list_cluster_custom_object, GROUP, VERSION, "apikeys"
            )
        else:
            found = self.call(
                f"list ApiKeys in {namespace}",
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                "apikeys",
            )
        return list(found.get("items", []))

    def apikey(self, namespace: str, name: str) -> dict[str, Any]:
        custom = self.custom
        return dict(
            self.call(
                f"ApiKey {namespace}/{name}",
                custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                "apikeys",
                name,
            )
        )

    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        custom = self.custom
        self.call(
            f"ApiKey {namespace}/{name}",
            custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            "apikeys",
            name,
            body,
        )

    # -- the operator's own objects (its namespace) -----------------------------------------

    def configmap(self, namespace: str, name: str) -> dict[str, str]:
        found = self.call(
            f"ConfigMap {namespace}/{name}", self.core.read_namespaced_config_map, name, namespace
        )
        return dict(found.data or {})

    def annotate_configmap(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        core = self.core
        self.call(
            f"ConfigMap {namespace}/{name}",
            core.patch_namespaced_config_map,
            name,
            namespace,
            {"metadata": {"annotations": annotations}},
        )

    def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Secret as a plain dict, or None if there is none."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        def read() -> Any:
            try:
                return self.core.read_namespaced_secret(name, namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise

        found = self.call(f"Secret {namespace}/{name}", read)
        if found is None:
            return None
        body: dict[str, Any] = client.ApiClient().sanitize_for_serialization(found)  # type: ignore[no-untyped-call]
        return body

    def secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        encoded = (self.secret(namespace, name) or {}).get("data") or {}
        return {k: base64.b64decode(v) for k, v in encoded.items()}
