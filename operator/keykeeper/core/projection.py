"""Projected Secrets: what one should look like, whether the one there does, and whose it is.

A projected Secret is keykeeper's only with an ownership proof: the annotations
``keykeeper.dev/apikey-uid`` and ``keykeeper.dev/owner-proof`` (an HMAC under a key
derived from the master key over the ApiKey's uid, namespace and name and the Secret's
own namespace and name). Labels alone are not trusted: anyone who may create a Secret
can forge them.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from keykeeper.api import labels
from keykeeper.api.models import SecretType
from keykeeper.core.authz import Target
from keykeeper.shaping.evaluate import Inputs
from keykeeper.shaping.shapes import PLAIN, Shape
from keykeeper.types import KeyRef

# (key uid, key namespace, key name, Secret namespace, Secret name) -> proof
Prover = Callable[[str, str, str, str, str], str]


class Keys(Protocol):
    """What rendering needs of the keyring: ownership proofs and value fingerprints."""

    def prove(self, key_uid: str, key_ns: str, key_name: str, ns: str, name: str) -> str: ...

    def fingerprint(self, value: bytes) -> str: ...


@dataclass(frozen=True)
class Desired:
    target: Target
    version: int
    fingerprint: str
    previous_version: int | None = None
    previous_fingerprint: str | None = None
    shape: Shape = PLAIN

    @property
    def expected_fingerprints(self) -> dict[str, str]:
        """A one-value shape's data fingerprints: the store's, no opening needed."""
        out = {self.target.key: self.fingerprint}
        if self.previous_fingerprint:
            out[f"{self.target.key}.previous"] = self.previous_fingerprint
        return out


@dataclass(frozen=True)
class ProjectedSecret:
    """A Secret keykeeper projected (ownership proven), as the watch last saw it."""

    namespace: str
    name: str
    owner: KeyRef
    owner_uid: str
    version: str
    fingerprints: dict[str, str]  # data key -> HMAC fingerprint of its value
    annotations: dict[str, str]
    secret_type: str
    uid: str
    data_proven: bool = False  # its data is what keykeeper wrote (``data_proof``)


def in_sync(desired: Desired, existing: ProjectedSecret | None, owner: KeyRef, uid: str) -> bool:
    """Whether ``existing`` holds exactly what ``desired`` asks, known without opening a
    value: a one-value Secret by its data's fingerprints, a shaped one (fields, a
    template) by the versions and the shape it was rendered from, and a data proof."""
    if existing is None or (existing.owner, existing.owner_uid) != (owner, uid):
        return False
    shape, annotations = desired.shape, existing.annotations
    if (
        existing.secret_type != shape.secret_type
        or annotations.get(labels.VERSION) != str(desired.version)
        or annotations.get(labels.FINGERPRINT) != desired.fingerprint
        or annotations.get(labels.SHAPE, "") != shape.label
    ):
        return False
    if shape.plain:
        return existing.fingerprints == desired.expected_fingerprints
    return existing.data_proven and annotations.get(labels.PREVIOUS_FINGERPRINT) == (
        desired.previous_fingerprint or None
    )


def data_proof(fingerprints: dict[str, str], fingerprint: Callable[[bytes], str]) -> str:
    """A keyed digest over a Secret's data (its keys and each value's fingerprint): a
    shaped Secret carries it, so one edited in place is seen without rendering again."""
    canonical = json.dumps(sorted(fingerprints.items()), separators=(",", ":"))
    return fingerprint(b"keykeeper.dev/data-proof:" + canonical.encode())


def render(
    desired: Desired,
    owner: KeyRef,
    owner_uid: str,
    keys: Keys,
    value: bytes,
    previous: bytes | None,
) -> dict[str, Any]:
    """The Secret for one target (``TemplateError`` if its shape cannot be rendered)."""
    target, shape = desired.target, desired.shape
    previous = previous if desired.previous_fingerprint else None
    facts = Inputs(
        None,
        version=desired.version,
        fingerprint=desired.fingerprint,
        namespace=owner[0],
        name=owner[1],
    )
    plain = shape.render(target.key, value, previous, facts)
    data = {key: base64.b64encode(plain[key]).decode() for key in sorted(plain)}
    annotations = {
        labels.VERSION: str(desired.version),
        labels.FINGERPRINT: desired.fingerprint,
        labels.APIKEY_UID: owner_uid,
        labels.OWNER_PROOF: keys.prove(owner_uid, *owner, target.namespace, target.secret_name),
    }
    if previous is not None:
        annotations[labels.PREVIOUS_FINGERPRINT] = desired.previous_fingerprint or ""
    if not shape.plain:
        annotations[labels.SHAPE] = shape.label
        fingerprints = {key: keys.fingerprint(v) for key, v in plain.items()}
        annotations[labels.DATA_PROOF] = data_proof(fingerprints, keys.fingerprint)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": shape.secret_type,
        "metadata": {
            "name": target.secret_name,
            "namespace": target.namespace,
            "labels": {
                labels.MANAGED_BY: labels.KEYKEEPER,
                labels.ROLE: labels.ROLE_PROJECTION,
                labels.APIKEY_NAMESPACE: owner[0],
                labels.APIKEY_NAME: owner[1],
            },
            "annotations": annotations,
        },
        "data": data,
    }


def proven_owner(body: dict[str, Any], prove: Prover) -> tuple[KeyRef, str] | None:
    """The (ApiKey, uid) a Secret was projected for, if its ownership proof holds; else None."""
    meta = body.get("metadata") or {}
    lbl = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    if (
        lbl.get(labels.MANAGED_BY) != labels.KEYKEEPER
        or lbl.get(labels.ROLE) != labels.ROLE_PROJECTION
    ):
        return None
    owner = (str(lbl.get(labels.APIKEY_NAMESPACE, "")), str(lbl.get(labels.APIKEY_NAME, "")))
    uid = str(annotations.get(labels.APIKEY_UID, ""))
    claimed = str(annotations.get(labels.OWNER_PROOF, ""))
    if not (owner[0] and owner[1] and uid and claimed):
        return None
    expected = prove(uid, *owner, str(meta.get("namespace", "")), str(meta.get("name", "")))
    return (owner, uid) if hmac.compare_digest(claimed, expected) else None


def owned_by(body: dict[str, Any], owner: KeyRef, prove: Prover) -> bool:
    found = proven_owner(body, prove)
    return found is not None and found[0] == owner


def recorded(
    body: dict[str, Any], fingerprint: Callable[[bytes], str], prove: Prover
) -> ProjectedSecret | None:
    """What the operator keeps of a projected Secret: its owner, version, annotations
    and HMAC fingerprints of its data, never the data; None without a valid proof."""
    proven = proven_owner(body, prove)
    if proven is None:
        return None
    meta = body.get("metadata") or {}
    annotations = dict(meta.get("annotations") or {})
    fingerprints = {
        k: fingerprint(base64.b64decode(v)) for k, v in (body.get("data") or {}).items()
    }
    claimed = annotations.get(labels.DATA_PROOF, "")
    return ProjectedSecret(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        owner=proven[0],
        owner_uid=proven[1],
        version=annotations.get(labels.VERSION, ""),
        fingerprints=fingerprints,
        annotations=annotations,
        secret_type=body.get("type", SecretType.OPAQUE),
        uid=meta.get("uid", ""),
        data_proven=bool(claimed)
        and hmac.compare_digest(claimed, data_proof(fingerprints, fingerprint)),
    )
