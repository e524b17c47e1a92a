"""The one small interface every issuer implements, and what passes through it.

Exactly-once lives above this interface (the rotation journals its intent before it
mints), so each call here is one attempt: ``mint`` with the idempotency key
``<uid>/<version>`` returns the same upstream key however often it is retried, where
the service supports it (a webhook must; AWS IAM cannot, so it lists the user's keys
and the caller revokes the one it cannot account for). Errors follow
``keykeeper.errors``: ``IssuerUnavailable`` is transient, ``IssuerRefused`` is the
configuration's. A ``Minted`` never shows its fields through ``repr``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum

MAX_RESPONSE = 64 * 1024  # bytes of an issuer's answer read, at most
MAX_FIELDS = 16


@dataclass(frozen=True)
class KeyIdentity:
    """Which ApiKey a call is for, as the issuer sees it (never a value)."""

    namespace: str
    name: str
    uid: str

    def idempotency_key(self, version: int) -> str:
        return f"{self.uid}/{version}"


@dataclass(frozen=True)
class Minted:
    """A key the issuer made: its upstream id (kept in status), its fields (kept only in
    the envelope) and when it stops working (RFC 3339, "" if the issuer does not say)."""

    id: str
    fields: dict[str, bytes] = field(repr=False)
    expires_at: str = ""

    def __repr__(self) -> str:  # the fields never reach a log through repr()
        return (
            f"Minted(id={self.id!r}, fields={sorted(self.fields)}, expires_at={self.expires_at!r})"
        )


class Verified(StrEnum):
    WORKS = "Works"
    FAILS = "Fails"
    UNSUPPORTED = "Unsupported"  # the issuer cannot say: the new key is trusted as minted


class Issuer(ABC):
    """Mints, verifies and revokes one policy's keys at their issuing service."""

    issuer_id: str

    @abstractmethod
    async def mint(self, key: KeyIdentity, version: int) -> Minted:
        """A new key for ``version``; the same one again for the same idempotency key
        where the service keeps them."""

    @abstractmethod
    async def verify(self, key: KeyIdentity, minted: Minted) -> Verified:
        """Whether the new key works, before the old one is revoked."""

    @abstractmethod
    async def revoke(self, key: KeyIdentity, upstream_id: str) -> None:
        """The upstream key is revoked; one already gone counts as revoked."""

    async def live(self, key: KeyIdentity) -> list[str] | None:
        """The upstream ids live for ``key`` now, where the service can list them (None:
        it cannot, and idempotency keys stand in)."""
        return None

    async def close(self) -> None:
        """Release connections (the default holds none)."""
