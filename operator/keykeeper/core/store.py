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
from typing import Any

from pydantic import ValidationError

from keykeeper.api import labels, timestamps
from keykeeper.api.issuers import IssuerSpec, UpstreamState
from keykeeper.api.models import Kms, SecretType
from keykeeper.core import lifecycle
from keykeeper.core.version import Version as Version
from keykeeper.core.version import VersionState as VersionState
from keykeeper.types import Body

VERSIONS_ANNOTATION = "keykeeper.dev/versions"
REVOKED_AT = "keykeeper.dev/revoked-at"
ERASED_AT = "keykeeper.dev/erased-at"
INTEGRITY_FAILED_AT = "keykeeper.dev/integrity-failed-at"
KEKS_PENDING = "keykeeper.dev/keks-pending"
KMS = "keykeeper.dev/kms"
MINTING = "keykeeper.dev/minting"  # an issued key: the version asked of the issuer, not stored yet
ISSUER = "keykeeper.dev/issuer"  # the spec.issuer that minted its keys (revoked even without it)
ABANDON = "keykeeper.dev/abandon-upstream"  # the platform's override: an issuer gone for good
HISTORY = 10  # versions' metadata kept, destroyed ones included
STORE_TYPE = SecretType.ENVELOPES


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
    minting: int | None = None  # the intent to mint this version, journaled before the call
    issuer: IssuerSpec | None = None  # the spec.issuer its upstream keys were minted by
    abandoned: bool = False  # the platform's override on the store Secret (``ABANDON``)

    def upstream(self, state: UpstreamState) -> tuple[Version, ...]:
        """The issued versions whose upstream key is in ``state``."""
        return tuple(v for v in self.versions if v.upstream is state)

    def with_upstream(self, numbers: set[int], state: UpstreamState) -> Store:
        versions = tuple(
            replace(v, upstream=state) if v.version in numbers and v.upstream_id else v
            for v in self.versions
        )
        return replace(self, versions=versions)

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
                # an issued key's upstream key is revoked with it (``issuing``)
                live = old.upstream is UpstreamState.LIVE
                upstream = UpstreamState.REVOKING if live else old.upstream
                kept.append(
                    replace(old, state=VersionState.DESTROYED, expires_at=None, upstream=upstream)
                )
                envelopes.pop(old.version, None)
            else:
                kept.append(old)
        kept.append(version)
        envelopes[version.version] = envelope
        return replace(self, versions=_bounded(kept), envelopes=envelopes, integrity_failed_at=None)

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


def _bounded(versions: list[Version]) -> tuple[Version, ...]:
    """The last ``HISTORY`` versions, and every older one whose upstream key is not yet
    revoked (its id is the only way to revoke it)."""
    unrevoked = (UpstreamState.LIVE, UpstreamState.REVOKING)
    older = [v for v in versions[:-HISTORY] if v.upstream in unrevoked]
    return (*older, *versions[-HISTORY:])


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
    minting = annotations.get(MINTING)
    issuer = _issuer(annotations.get(ISSUER))
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
        minting=int(minting) if minting and minting.isdigit() else None,
        issuer=issuer,
        abandoned=annotations.get(ABANDON) == "true",
    )


def _issuer(text: str | None) -> IssuerSpec | None:
    if text is None:
        return None
    try:
        return IssuerSpec.model_validate(json.loads(text))
    except (ValueError, ValidationError):
        return None


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
    if store.minting is not None:
        metadata["annotations"][MINTING] = str(store.minting)
    if store.issuer is not None:
        recorded_issuer = store.issuer.model_dump(by_alias=True, mode="json", exclude_none=True)
        metadata["annotations"][ISSUER] = json.dumps(recorded_issuer, sort_keys=True)
    if store.abandoned:
        metadata["annotations"][ABANDON] = "true"
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
            timestamps.parse(v.value_expires_at) if v.value_expires_at else None,
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
