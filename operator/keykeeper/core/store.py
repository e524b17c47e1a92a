"""The encrypted store: every envelope keykeeper holds for one ApiKey, in one Secret.

The Secret ``<operator namespace>/ak-<uid>`` is readable only by the operator. Its
``data`` maps ``v<N>`` to the envelope of version N (binary, base64 as Secrets are);
the annotation ``keykeeper.dev/versions`` holds the versions' metadata as JSON
(never values). It is written, with a resourceVersion precondition, before anything
is projected, so a crash at any point leaves either the old store or the new one.

Erasure must survive a provider outage: the per-key KEKs still to destroy are listed
in ``keykeeper.dev/keks-pending`` (written together with the erasure of the envelopes)
and removed only once the provider confirms; ``keykeeper.dev/kms`` records the policy's
``spec.kms`` that made the versions, so they can be destroyed even after the policy
is gone.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from keykeeper.api import labels, timestamps
from keykeeper.api.models import Kms, SecretType
from keykeeper.api.provider_options import ProviderId
from keykeeper.core import lifecycle
from keykeeper.types import Body

VERSIONS_ANNOTATION = "keykeeper.dev/versions"
REVOKED_AT = "keykeeper.dev/revoked-at"
ERASED_AT = "keykeeper.dev/erased-at"
INTEGRITY_FAILED_AT = "keykeeper.dev/integrity-failed-at"
KEKS_PENDING = "keykeeper.dev/keks-pending"
KMS = "keykeeper.dev/kms"
HISTORY = 10  # versions' metadata kept, destroyed ones included
STORE_TYPE = SecretType.ENVELOPES


class VersionState(StrEnum):
    CURRENT = "Current"  # projected as <key>
    PREVIOUS = "Previous"  # projected as <key>.previous until its grace period ends
    DESTROYED = "Destroyed"  # its envelope is gone; only the metadata remains


@dataclass(frozen=True)
class Version:
    """Metadata of one stored value version."""

    version: int
    created_at: str
    fingerprint: str
    kms_key_id: str
    provider: str
    state: VersionState = VersionState.CURRENT
    expires_at: str | None = None
    source_fingerprint: str | None = None  # of the sealed/imported input it came from
    tombstone: str | None = None  # keys.revocations: kept out of status
    sealed_at: int | None = None  # the seal's date, when it came from a v2 sealed value
    fields: tuple[str, ...] = ()  # a key with fields: their names (shaping.fields); (): one value

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
        for name, value in (
            ("sourceFingerprint", self.source_fingerprint),
            ("tombstone", self.tombstone),
            ("sealedAt", self.sealed_at),
            ("fields", list(self.fields)),
        ):
            if value:
                out[name] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Version:
        return cls(
            version=int(data["version"]),
            created_at=str(data["createdAt"]),
            fingerprint=str(data["fingerprint"]),
            kms_key_id=str(data["kmsKeyId"]),
            provider=str(data.get("provider", ProviderId.LOCAL)),
            state=VersionState(data.get("state", VersionState.CURRENT)),
            expires_at=data.get("expiresAt"),
            source_fingerprint=data.get("sourceFingerprint"),
            tombstone=data.get("tombstone"),
            sealed_at=data.get("sealedAt"),
            fields=tuple(str(f) for f in data.get("fields") or ()),
        )

    def status(self) -> dict[str, Any]:
        """The version as status.versions shows it (no provider internals)."""
        out = self.to_json()
        out.pop("provider")
        for internal in ("sourceFingerprint", "tombstone", "sealedAt"):
            out.pop(internal, None)
        return out


@dataclass(frozen=True)
class Store:
    """What the store Secret holds; ``resource_version`` is None before the first write."""

    uid: str
    versions: tuple[Version, ...] = ()
    envelopes: dict[int, bytes] = field(default_factory=dict)
    resource_version: str | None = None
    revoked_at: str | None = None
    erased_at: str | None = None
    integrity_failed_at: str | None = None
    keks_pending: tuple[str, ...] = ()  # per-key KEKs to destroy, kept until destroyed
    secret_uid: str | None = None  # the store Secret's own uid (delete preconditions)
    kms: Kms | None = None  # the spec.kms the versions were made under

    def kek_differs(self, kms: Kms) -> bool:
        """Whether live envelopes were made under another KMS key than ``kms`` names
        (provider and keyRef; credentials and tuning options do not matter)."""
        if self.kms is None or not self.envelopes:
            return False
        return (self.kms.provider, self.kms.key_ref) != (kms.provider, kms.key_ref)

    def rewrapped(self, sealed: dict[int, tuple[bytes, str, str]], kms: Kms) -> Store:
        """Every live envelope replaced by one under ``kms`` (version -> (envelope, KEK id,
        provider)); values, fingerprints and states are unchanged."""
        versions = tuple(
            replace(v, kms_key_id=sealed[v.version][1], provider=sealed[v.version][2])
            if v.version in sealed
            else v
            for v in self.versions
        )
        envelopes = {n: sealed[n][0] if n in sealed else e for n, e in self.envelopes.items()}
        return replace(self, versions=versions, envelopes=envelopes, kms=kms)

    @property
    def current(self) -> Version | None:
        return next((v for v in self.versions if v.state is VersionState.CURRENT), None)

    @property
    def previous(self) -> Version | None:
        return next((v for v in self.versions if v.state is VersionState.PREVIOUS), None)

    @property
    def next_version(self) -> int:
        return max((v.version for v in self.versions), default=0) + 1

    def with_version(self, version: Version, envelope: bytes) -> Store:
        return replace(
            self,
            versions=(*self.versions, version),
            envelopes={**self.envelopes, version.version: envelope},
        )

    def rotated(self, version: Version, envelope: bytes, expires_at: str | None) -> Store:
        """Add ``version`` as Current; the old Current becomes Previous until ``expires_at``
        (or is destroyed at once when it is None); an older Previous is destroyed."""
        kept: list[Version] = []
        envelopes = dict(self.envelopes)
        for old in self.versions:
            if old.state is VersionState.CURRENT and expires_at is not None:
                kept.append(replace(old, state=VersionState.PREVIOUS, expires_at=expires_at))
            elif old.state in (VersionState.CURRENT, VersionState.PREVIOUS):
                kept.append(replace(old, state=VersionState.DESTROYED, expires_at=None))
                envelopes.pop(old.version, None)
            else:
                kept.append(old)
        kept.append(version)
        envelopes[version.version] = envelope
        return replace(
            self, versions=tuple(kept[-HISTORY:]), envelopes=envelopes, integrity_failed_at=None
        )

    def retired(self, number: int) -> Store:
        versions = tuple(
            replace(v, state=VersionState.DESTROYED, expires_at=None) if v.version == number else v
            for v in self.versions
        )
        envelopes = {n: e for n, e in self.envelopes.items() if n != number}
        return replace(self, versions=versions, envelopes=envelopes)

    def erased(self, at: str, keks: tuple[str, ...]) -> Store:
        """Every envelope destroyed; ``keks`` listed as pending destruction."""
        versions = tuple(
            replace(v, state=VersionState.DESTROYED, expires_at=None) for v in self.versions
        )
        pending = tuple(sorted({*self.keks_pending, *keks}))
        return replace(self, versions=versions, envelopes={}, erased_at=at, keks_pending=pending)


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
    annotations = meta.get("annotations") or {}
    uid = annotations.get(labels.APIKEY_UID, meta.get("name", "")[3:])
    kms = _kms(annotations.get(KMS))
    return Store(
        uid,
        versions,
        envelopes,
        meta.get("resourceVersion"),
        revoked_at=annotations.get(REVOKED_AT),
        erased_at=annotations.get(ERASED_AT),
        integrity_failed_at=annotations.get(INTEGRITY_FAILED_AT),
        keks_pending=tuple(json.loads(annotations.get(KEKS_PENDING, "[]"))),
        secret_uid=meta.get("uid"),
        kms=kms,
    )


def _kms(text: str | None) -> Kms | None:
    """The recorded spec.kms, parsed once with the store (None if absent or unreadable)."""
    if text is None:
        return None
    try:
        return Kms.model_validate(json.loads(text))
    except (ValueError, ValidationError):
        return None


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
    for name, value in (
        (REVOKED_AT, store.revoked_at),
        (ERASED_AT, store.erased_at),
        (INTEGRITY_FAILED_AT, store.integrity_failed_at),
    ):
        if value:
            metadata["annotations"][name] = value
    if store.keks_pending:
        metadata["annotations"][KEKS_PENDING] = json.dumps(list(store.keks_pending))
    if store.kms is not None:
        recorded = store.kms.model_dump(by_alias=True, mode="json")
        metadata["annotations"][KMS] = json.dumps(recorded, sort_keys=True)
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


def facts(stored: Store, source_fingerprint: str | None) -> lifecycle.Observed:
    def version(v: Version | None) -> lifecycle.VersionFacts | None:
        if v is None:
            return None
        return lifecycle.VersionFacts(
            v.version,
            timestamps.parse(v.created_at),
            v.source_fingerprint,
            timestamps.parse(v.expires_at) if v.expires_at else None,
        )

    return lifecycle.Observed(
        current=version(stored.current),
        previous=version(stored.previous),
        revoked_at=timestamps.parse(stored.revoked_at) if stored.revoked_at else None,
        erased=stored.erased_at is not None,
        integrity_failed_at=timestamps.parse(stored.integrity_failed_at)
        if stored.integrity_failed_at
        else None,
        source_fingerprint=source_fingerprint,
    )
