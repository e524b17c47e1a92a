"""Builders and small verbs for integration tests, all through the real API server."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from devtools.controlplane import ControlPlane, Identity
from keykeeper.crypto.sealed import SealingPublicKey

GROUP, VERSION = "keykeeper.dev", "v1alpha1"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def keypolicy(
    name: str,
    *,
    sources: dict[str, Any] | None = None,
    targets: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"sourceNamespaces": sources or {"selector": {}}, **spec}
    if targets is not None:
        body["targetNamespaces"] = targets
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "KeyPolicy",
        "metadata": {"name": name},
        "spec": body,
    }


def apikey(
    namespace: str,
    name: str,
    policy: str,
    *,
    projections: list[dict[str, Any]] | None = None,
    source: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ApiKey",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "policy": policy,
            "source": source or {"generate": {}},
            "projections": projections or [],
            **spec,
        },
    }


class Cluster:
    """The admin's view, for arranging and observing; the operator has its own identity."""

    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def namespace(
        self,
        prefix: str = "ns",
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> str:
        name = unique(prefix)
        meta = client.V1ObjectMeta(name=name, labels=labels, annotations=annotations)
        self.core.create_namespace(client.V1Namespace(metadata=meta))
        return name

    def label_namespace(self, name: str, labels: dict[str, str | None]) -> None:
        self.core.patch_namespace(name, {"metadata": {"labels": labels}})

    def annotate_namespace(self, name: str, annotations: dict[str, str | None]) -> None:
        self.core.patch_namespace(name, {"metadata": {"annotations": annotations}})

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a KeyPolicy or ApiKey. The client retries a POST whose answer was lost;
        an AlreadyExists for the very spec just sent is that retry, not a clash."""
        try:
            if body["kind"] == "KeyPolicy":
                made = self.custom.create_cluster_custom_object(GROUP, VERSION, "keypolicies", body)
                return cast(dict[str, Any], made)
            ns = body["metadata"]["namespace"]
            made = self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, "apikeys", body)
            return cast(dict[str, Any], made)
        except ApiException as exc:
            if exc.status != 409:
                raise
            name = body["metadata"]["name"]
            there = (
                self.policy(name)
                if body["kind"] == "KeyPolicy"
                else self.key(body["metadata"]["namespace"], name)
            )
            if there is None or any(there["spec"].get(k) != v for k, v in body["spec"].items()):
                raise
            return there

    def policy(self, name: str) -> dict[str, Any]:
        found = self.custom.get_cluster_custom_object(GROUP, VERSION, "keypolicies", name)
        return cast(dict[str, Any], found)

    def patch_policy(self, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_cluster_custom_object(GROUP, VERSION, "keypolicies", name, patch)

    def delete_policy(self, name: str) -> None:
        self.custom.delete_cluster_custom_object(GROUP, VERSION, "keypolicies", name)

    def key(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "apikeys", name
            )
            return cast(dict[str, Any], found)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch_key(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "apikeys", name, patch
        )

    def delete_key(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "apikeys", name)

    def apikeys(self) -> list[dict[str, Any]]:
        found = cast(
            dict[str, Any], self.custom.list_cluster_custom_object(GROUP, VERSION, "apikeys")
        )
        return cast(list[dict[str, Any]], found["items"])

    def secret(self, namespace: str, name: str) -> client.V1Secret | None:
        try:
            return self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def value(self, namespace: str, name: str, key: str = "api-key") -> bytes | None:
        secret = self.secret(namespace, name)
        if secret is None or not secret.data or key not in secret.data:
            return None
        return base64.b64decode(secret.data[key])

    def put_secret(
        self,
        namespace: str,
        name: str,
        data: dict[str, bytes],
        labels: dict[str, str] | None = None,
        *,
        importable_by: str | None = None,
        annotations: dict[str, str] | None = None,
        type_: str | None = None,
    ) -> None:
        notes = dict(annotations or {})
        if importable_by is not None:
            notes["keykeeper.dev/importable-by"] = importable_by
        self.core.create_namespaced_secret(
            namespace,
            client.V1Secret(
                type=type_,
                metadata=client.V1ObjectMeta(name=name, labels=labels, annotations=notes or None),
                data={k: base64.b64encode(v).decode() for k, v in data.items()},
            ),
        )

    def events(self, namespace: str, name: str) -> list[client.CoreV1Event]:
        found = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}"
        )
        return list(found.items)

    def wait_for_events(
        self, namespace: str, name: str, *reasons: str, timeout: float = 30.0
    ) -> list[client.CoreV1Event]:
        """The object's Events once every reason has been told, as an Event's reason or as
        one of the actions its message lists (one Event per reconcile: journal.summarize);
        Events follow the status write that reports an action, so a test that saw the
        status may be early."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            found = self.events(namespace, name)
            missing = set(reasons) - {a for e in found for a in actions(e)}
            if not missing:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no {sorted(missing)} Event for {namespace}/{name}")
            time.sleep(0.1)

    def all_events_text(self) -> str:
        return "\n".join(
            f"{e.reason} {e.message}" for e in self.core.list_event_for_all_namespaces().items
        )


def actions(event: client.CoreV1Event) -> dict[str, str]:
    """The actions one Event tells, reason -> what (``Created: ... | Projected: ...``)."""
    told = {}
    for part in (event.message or "").split(" | "):
        reason, sep, what = part.partition(": ")
        if sep and reason.isalpha() and reason[:1].isupper():
            told[reason] = what
    return told or {event.reason or "": event.message or ""}


def condition(body: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for item in ((body or {}).get("status") or {}).get("conditions") or []:
        if item["type"] == type_:
            return item  # type: ignore[no-any-return]
    return {}


def projection_states(body: dict[str, Any] | None) -> dict[tuple[str, str], str]:
    return {
        (p["namespace"], p["secretName"]): p["state"]
        + (f"/{p['reason']}" if p.get("reason") else "")
        for p in ((body or {}).get("status") or {}).get("projections") or []
    }


def api_client(identity: Identity) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=str(identity.kubeconfig), client_configuration=configuration
    )
    return client.ApiClient(configuration)


def public_key(plane: ControlPlane) -> SealingPublicKey:
    """Read the published sealing key as an ordinary authenticated user."""
    with api_client(plane.user(unique("sealer"))) as api:
        cm = client.CoreV1Api(api).read_namespaced_config_map(
            "keykeeper-sealing-public", "keykeeper-system"
        )
    data = cm.data or {}
    key = SealingPublicKey(base64.b64decode(data["publicKey"]))
    assert key.key_id == data["keyId"]
    assert key.fingerprint == data["fingerprint"]
    return key


@dataclass(frozen=True)
class HsmPolicy:
    name: str
    kek_label: str
    pin_secret: str  # in keykeeper-system; delete it to make the provider fail


def hsm_policy(
    kk: Cluster,
    token: Any,
    *,
    per_key: bool = True,
    targets: dict[str, Any] | None = None,
    **spec: Any,
) -> HsmPolicy:
    """A KeyPolicy on the PKCS#11 provider (a real SoftHSM2 token), its PIN in a Secret,
    created and waited for until Ready."""
    from devtools.operator import wait_for

    pin_secret = unique("hsm-pin")
    kk.put_secret("keykeeper-system", pin_secret, {"pin": token.pin.encode()})
    name = unique("hsm")
    label = f"kek-{name}"
    options = {"module": token.module, "token": token.label, "create": "true"}
    if per_key:
        options["per-key"] = "true"
    kms = {"provider": "pkcs11", "keyRef": label, "credentialsSecretRef": {"name": pin_secret}}
    kk.create(keypolicy(name, targets=targets, kms={**kms, "options": options}, **spec))
    wait_for(
        lambda: condition(kk.policy(name), "Ready").get("status") == "True",
        what=f"HSM policy Ready ({name})",
    )
    return HsmPolicy(name, label, pin_secret)
