"""The encrypted store: every envelope keykeeper holds for one ApiKey, in one Secret.

The Secret ``<operator namespace>/ak-<uid>`` is readable only by the operator. Its
``data`` maps ``v<N>`` to the envelope of version N (binary, base64 as Secrets are);
the annotation ``keykeeper.dev/versions`` holds the versions' metadata as JSON
(never values). It is written, with a resourceVersion precondition, before anything
is projected, so a crash at any point leaves either the old store or the new one.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, replace
from typing import Any

from keykeeper import labels
from keykeeper.kube import Body

VERSIONS_ANNOTATION = "keykeeper.dev/versions"
STORE_TYPE = "keykeeper.dev/envelopes"


@dataclass(frozen=True)
class Version:
    """Metadata of one stored value version."""

    version: int
    created_at: str
    fingerprint: str
    kms_key_id: str
    provider: str
    state: str = "Current"  # Current | Previous | Destroyed
    expires_at: str | None = None
    source_fingerprint: str | None = None  # of the sealed/imported input it came from

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "createdAt": self.created_at,
            "fingerprint": self.fingerprint,
            "kmsKeyId": self.kms_key_id,
            "provider": self.provider,
            "state": self.state,
        }
        if self.expires_at:
            out["expiresAt"] = self.expires_at
        if self.source_fingerprint:
            out["sourceFingerprint"] = self.source_fingerprint
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Version:
        return cls(
            version=int(data["version"]),
            created_at=str(data["createdAt"]),
            fingerprint=str(data["fingerprint"]),
            kms_key_id=str(data["kmsKeyId"]),
            provider=str(data.get("provider", "local")),
            state=str(data.get("state", "Current")),
            expires_at=data.get("expiresAt"),
            source_fingerprint=data.get("sourceFingerprint"),
        )

    def status(self) -> dict[str, Any]:
        """The version as status.versions shows it (no provider internals)."""
        out = self.to_json()
        out.pop("provider")
        out.pop("sourceFingerprint", None)
        return out


@dataclass(frozen=True)
class Store:
    """What the store Secret holds; ``resource_version`` is None before the first write."""

    uid: str
    versions: tuple[Version, ...] = ()
    envelopes: dict[int, bytes] = field(default_factory=dict)
    resource_version: str | None = None

    @property
    def current(self) -> Version | None:
        return next((v for v in self.versions if v.state == "Current"), None)

    @property
    def previous(self) -> Version | None:
        return next((v for v in self.versions if v.state == "Previous"), None)

    def with_version(self, version: Version, envelope: bytes) -> Store:
        return replace(
            self,
            versions=(*self.versions, version),
            envelopes={**self.envelopes, version.version: envelope},
        )


def store_name(uid: str) -> str:
    return f"ak-{uid}"


def parse(body: Body) -> Store:
    meta = body.get("metadata", {})
    raw = (meta.get("annotations") or {}).get(VERSIONS_ANNOTATION, "[]")
    versions = tuple(Version.from_json(v) for v in json.loads(raw))
    envelopes = {
        int(k[1:]): base64.b64decode(v)
        for k, v in (body.get("data") or {}).items()
        if k.startswith("v") and k[1:].isdigit()
    }
    uid = (meta.get("annotations") or {}).get(labels.APIKEY_UID, meta.get("name", "")[3:])
    return Store(uid, versions, envelopes, meta.get("resourceVersion"))


def render(store: Store, namespace: str, key_namespace: str, key_name: str) -> Body:
    metadata: dict[str, Any] = {
        "name": store_name(store.uid),
        "namespace": namespace,
        "labels": {
            labels.MANAGED_BY: labels.KEYKEEPER,
            labels.ROLE: labels.ROLE_STORE,
            labels.APIKEY_NAMESPACE: key_namespace,
            labels.APIKEY_NAME: key_name,
        },
        "annotations": {
            labels.APIKEY_UID: store.uid,
            VERSIONS_ANNOTATION: json.dumps([v.to_json() for v in store.versions]),
        },
    }
    if store.resource_version:
        metadata["resourceVersion"] = store.resource_version
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": STORE_TYPE,
        "metadata": metadata,
        "data": {
            f"v{n}": base64.b64encode(env).decode() for n, env in sorted(store.envelopes.items())
        },
    }
