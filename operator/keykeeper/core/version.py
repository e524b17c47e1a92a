"""The metadata of one stored version (never its value): what ``status.versions`` shows,
what the store's ``keykeeper.dev/versions`` annotation holds, and, for an issued key,
its upstream id and state at the issuer."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from keykeeper.api.issuers import UpstreamState
from keykeeper.api.provider_options import ProviderId


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
    upstream_id: str | None = None  # an issued key's id at its issuer (never a value)
    upstream: UpstreamState | None = None  # Live, Revoking, Revoked
    value_expires_at: str | None = None  # when an issued key stops working, as its issuer said

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
            ("upstreamId", self.upstream_id),
            ("upstreamState", self.upstream),
            ("valueExpiresAt", self.value_expires_at),
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
            upstream_id=data.get("upstreamId"),
            upstream=UpstreamState(data["upstreamState"]) if data.get("upstreamState") else None,
            value_expires_at=data.get("valueExpiresAt"),
        )

    def status(self) -> dict[str, Any]:
        """The version as status.versions shows it (no provider internals)."""
        out = self.to_json()
        out.pop("provider")
        for internal in ("sourceFingerprint", "tombstone", "sealedAt"):
            out.pop(internal, None)
        return out
