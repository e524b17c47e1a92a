"""Recognising the echoes of the operator's own writes in its watches.

A watch event can arrive before the response of the write that caused it, so echoes
are recognised by what they carry, not by resourceVersion: an ApiKey event by what its
reconcile depends on (``KeySignature``), a projected Secret by its content
(``SecretSignature``). The writer states the signature it expects (``expect_secret``)
in the same type the watch side computes, so the two cannot drift apart field by field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from keykeeper.api import labels
from keykeeper.core.projection import ProjectedSecret
from keykeeper.types import Body, KeyRef, Slot


class KeySignature(NamedTuple):
    """What a reconcile of an ApiKey depends on in the object itself: its identity, its
    spec (generation), its annotations (rotation requests), deletion, and keykeeper's
    finalizer. Status and resourceVersion are not in it: the watch echo of the operator's
    own finalizer or status write changes nothing here, whenever it arrives."""

    uid: Any
    generation: Any
    annotations: bytes  # a digest of them
    deleting: bool
    finalized: bool


class SecretSignature(NamedTuple):
    """What makes a projected Secret the one a key wants (not its resourceVersion)."""

    owner: KeyRef
    owner_uid: str
    version: str
    fingerprints: tuple[tuple[str, str], ...]
    secret_type: str


def _digest(annotations: dict[str, str]) -> bytes:
    """The annotations as 16 bytes: a change is seen, and a tenant's 256 KiB of them (or
    kubectl's last-applied-configuration) is not kept per key (K3)."""
    canonical = json.dumps(annotations, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(canonical, digest_size=16).digest()


def key_signature(body: Body) -> KeySignature:
    meta = body.get("metadata") or {}
    return KeySignature(
        meta.get("uid"),
        meta.get("generation"),
        _digest(meta.get("annotations") or {}),
        bool(meta.get("deletionTimestamp")),
        labels.FINALIZER in (meta.get("finalizers") or []),
    )


def secret_signature(secret: ProjectedSecret) -> SecretSignature:
    return SecretSignature(
        secret.owner,
        secret.owner_uid,
        secret.version,
        tuple(sorted(secret.fingerprints.items())),
        secret.secret_type,
    )


@dataclass
class Echoes:
    # what the last reconcile of each key saw of it
    key_seen: dict[KeyRef, KeySignature] = field(default_factory=dict)
    # projected Secrets the operator is writing, by content
    expected: dict[Slot, SecretSignature] = field(default_factory=dict)

    def saw_key(self, ref: KeyRef, body: Body) -> None:
        self.key_seen[ref] = key_signature(body)

    def key_changed(self, ref: KeyRef, body: Body) -> bool:
        """Whether an ApiKey event carries anything its last reconcile did not see."""
        return self.key_seen.get(ref) != key_signature(body)

    def may_withdraw(self, ref: KeyRef, body: Body) -> bool:
        """Whether the change could end a projection: a new spec (revoked, suspended,
        fewer targets), a deletion, another object. A change of annotations alone (a
        rotation request) cannot, so it does not take the enforcement lane."""
        seen, now = self.key_seen.get(ref), key_signature(body)
        return seen is None or (seen.uid, seen.generation, seen.deleting) != (
            now.uid,
            now.generation,
            now.deleting,
        )

    def forget_key(self, ref: KeyRef) -> None:
        self.key_seen.pop(ref, None)

    def expect_secret(self, slot: Slot, signature: SecretSignature) -> None:
        self.expected[slot] = signature

    def is_expected(self, slot: Slot, there: ProjectedSecret | None) -> bool:
        """The Secret recorded at ``slot`` is exactly one the operator is writing."""
        wanted = self.expected.get(slot)
        if there is None or wanted is None or secret_signature(there) != wanted:
            return False
        del self.expected[slot]
        return True
