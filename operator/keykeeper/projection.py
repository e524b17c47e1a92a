"""Projected Secrets: what one should look like, and whether the one there does."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from keykeeper import labels
from keykeeper.authz import Target
from keykeeper.world import KeyRef, ProjectedSecret


@dataclass(frozen=True)
class Desired:
    target: Target
    version: int
    fingerprint: str
    previous_version: int | None = None
    previous_fingerprint: str | None = None

    @property
    def expected_fingerprints(self) -> dict[str, str]:
        out = {self.target.key: self.fingerprint}
        if self.previous_fingerprint:
            out[f"{self.target.key}.previous"] = self.previous_fingerprint
        return out


def in_sync(desired: Desired, existing: ProjectedSecret | None, owner: KeyRef) -> bool:
    return (
        existing is not None
        and existing.owner == owner
        and existing.secret_type == "Opaque"  # noqa: S105 - a Secret type
        and existing.fingerprints == desired.expected_fingerprints
        and existing.annotations.get(labels.VERSION) == str(desired.version)
        and existing.annotations.get(labels.FINGERPRINT) == desired.fingerprint
    )


def render(desired: Desired, owner: KeyRef, value: bytes, previous: bytes | None) -> dict[str, Any]:
    data = {desired.target.key: base64.b64encode(value).decode()}
    annotations = {labels.VERSION: str(desired.version), labels.FINGERPRINT: desired.fingerprint}
    if previous is not None and desired.previous_fingerprint:
        data[f"{desired.target.key}.previous"] = base64.b64encode(previous).decode()
        annotations[labels.PREVIOUS_FINGERPRINT] = desired.previous_fingerprint
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": desired.target.secret_name,
            "namespace": desired.target.namespace,
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


def owned_by(body: dict[str, Any], owner: KeyRef) -> bool:
    lbl = body.get("metadata", {}).get("labels") or {}
    return (
        lbl.get(labels.MANAGED_BY) == labels.KEYKEEPER
        and lbl.get(labels.ROLE) == labels.ROLE_PROJECTION
        and (lbl.get(labels.APIKEY_NAMESPACE), lbl.get(labels.APIKEY_NAME)) == owner
    )
