"""Where user-supplied values come from: sealed values and consenting imports.

A ``secretRef`` import reads a Secret in the key's own namespace only if that Secret
consents (annotation ``keykeeper.dev/importable-by`` naming the ApiKey) and is of type
Opaque; the exact object read (its uid) is what ``deleteAfterImport`` may delete. A
sealed value is opened with the cluster's sealing keys for this namespace/name under
the policy it names, and only that policy (it was sealed for it).
Every value is checked against the policy's constraints before it is stored, and
against the tombstones of revoked values and the key's own history (no rollback).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from keykeeper.api import labels
from keykeeper.api.models import (
    ApiKeySpec,
    GenerateSource,
    KeyPolicySpec,
    RotationStrategy,
    SecretType,
)
from keykeeper.api.reasons import RotationCause
from keykeeper.api.timestamps import rfc3339_milli
from keykeeper.core import store
from keykeeper.core.store import Version
from keykeeper.core.values import check as check_value
from keykeeper.core.values import generate, rollback
from keykeeper.crypto.envelope import Binding
from keykeeper.errors import ImportNotPermitted, InvalidValue, SourceMissing
from keykeeper.keys.keyring import Keyring
from keykeeper.keys.revocations import Revocations
from keykeeper.keys.sealing import SealingKeys
from keykeeper.kube.client import Kube
from keykeeper.providers import KeyProvider
from keykeeper.shaping import fields as key_fields
from keykeeper.types import Body, KeyRef

__all__ = [
    "ImportNotPermitted",
    "Imported",
    "Seen",
    "SourceMissing",
    "Sources",
    "Supplied",
    "consent",
]


@dataclass(frozen=True)
class Imported:
    """A value read from a consenting source Secret, and which exact object it came from."""

    value: bytes
    uid: str
    resource_version: str
    expires_at: str = ""  # its keykeeper.dev/expires-at annotation, as written

    def __repr__(self) -> str:  # the value never reaches a log through repr()
        return f"Imported(uid={self.uid!r})"


@dataclass(frozen=True)
class Seen:
    """The user-supplied source as it is now: its fingerprint (None: none, or gone) and
    the expiry its source Secret states (``keykeeper.dev/expires-at``; "" if none)."""

    fingerprint: str | None = None
    expires_at: str = ""


def consent(body: Body, key_name: str) -> str | None:
    """Why ``body`` may not be imported by ApiKey ``key_name``; None when it may.

    The Secret must opt in: annotation ``keykeeper.dev/importable-by`` listing the
    ApiKey's name (comma-separated), and type Opaque, so ServiceAccount tokens, registry
    credentials and TLS keys can never be lifted out through keykeeper.
    """
    meta = body.get("metadata") or {}
    allowed = str((meta.get("annotations") or {}).get(labels.IMPORTABLE_BY, ""))
    if key_name not in {part.strip() for part in allowed.split(",")}:
        return (
            f"the Secret does not consent to import: it needs the annotation "
            f"{labels.IMPORTABLE_BY}: {key_name}"
        )
    if body.get("type", SecretType.OPAQUE) != SecretType.OPAQUE:
        return "only Secrets of type Opaque can be imported"
    return None


@dataclass(frozen=True)
class Supplied:
    """A value for a new version: where it came from (None: generated), the object it
    was imported from, and the date of its seal (v2 sealed values only)."""

    value: bytes
    source_fingerprint: str | None = None
    imported: Imported | None = None
    sealed_at: int | None = None
    fields: tuple[str, ...] = ()  # the field names of a key with fields; (): one value

    def __repr__(self) -> str:  # the value never reaches a log through repr()
        return f"Supplied(source_fingerprint={self.source_fingerprint!r})"


def generated(policy: KeyPolicySpec, source: GenerateSource | None) -> Supplied:
    """A generated value, or every field of a key with ``generate.fields`` (each with the
    policy's generator and the field's overrides, which may only strengthen it)."""
    if source is None or not source.fields:
        return Supplied(generate(policy.generator, source))
    made = {name: generate(policy.generator, options) for name, options in source.fields.items()}
    return Supplied(key_fields.encode(made), fields=tuple(sorted(made)))


def checked(value: bytes, policy: KeyPolicySpec) -> tuple[bytes, tuple[str, ...]]:
    """A supplied plaintext held to the policy's value rules, each field on its own;
    the plaintext to store (a key's fields in their canonical encoding) and the names."""
    fields = key_fields.parse(value)
    if fields is None:
        check_value(value, policy.value)
        return value, ()
    for name in sorted(fields):
        try:
            check_value(fields[name], policy.value)
        except InvalidValue as exc:
            raise InvalidValue(f"field {name!r}: {exc}") from None
    return key_fields.encode(fields), tuple(sorted(fields))


@dataclass
class Sources:
    kube: Kube
    keyring: Keyring
    sealing: SealingKeys
    revocations: Revocations

    async def seen(self, ref: KeyRef, spec: ApiKeySpec) -> Seen:
        """The user-supplied source as it is now (one read of a source Secret)."""
        source = spec.source
        if source.sealed is not None:
            return Seen(self.keyring.fingerprint(b"sealed:" + source.sealed.encode()))
        if source.secret_ref is not None:
            found = await self._import(ref, spec, missing_ok=True)
            if found is not None:
                fingerprint = self.keyring.fingerprint(b"secretRef:" + found.value)
                return Seen(fingerprint, found.expires_at)
        return Seen()

    async def value_for(
        self,
        ref: KeyRef,
        spec: ApiKeySpec,
        policy: KeyPolicySpec,
        reason: str,
        history: Iterable[Version] = (),
        *,
        allow_reuse: bool = False,
    ) -> Supplied:
        """The value of the next version. A user-supplied one is refused when it was
        revoked (in any key), and when it would roll the key back (a value it replaced,
        or an older seal) unless the key allows reuse; a recovery re-reads the same
        source and is no rollback."""
        supplied = await self._supplied(ref, spec, policy, reason)
        if supplied.source_fingerprint is not None:
            tombstone = self.keyring.tombstone(supplied.value)
            await self.revocations.check(tombstone)
            back = rollback(history, tombstone, supplied.sealed_at)
            if back is not None and not allow_reuse and reason != RotationCause.RECOVERY:
                raise back
        return supplied

    async def _supplied(
        self, ref: KeyRef, spec: ApiKeySpec, policy: KeyPolicySpec, reason: str
    ) -> Supplied:
        source = spec.source
        # user-supplied values are read again for a first version, a changed source, a
        # recovery, and any Manual rotation; everything else is generated
        from_source = source.generate is None and (
            reason in (RotationCause.INITIAL, RotationCause.SOURCE_CHANGED, RotationCause.RECOVERY)
            or policy.rotation.strategy is RotationStrategy.MANUAL
        )
        if not from_source:
            return generated(policy, source.generate)
        if source.sealed is not None:
            opened = self.sealing.open(
                source.sealed,
                *ref,
                spec.policy,
                refuse_unbound=policy.value.refuse_unbound_seals,
            )
            value, names = checked(opened.value, policy)
            fingerprint = self.keyring.fingerprint(b"sealed:" + source.sealed.encode())
            return Supplied(value, fingerprint, sealed_at=opened.sealed_at, fields=names)
        imported = await self._import(ref, spec, missing_ok=False)
        assert imported is not None
        value, names = checked(imported.value, policy)
        fingerprint = self.keyring.fingerprint(b"secretRef:" + imported.value)
        return Supplied(value, fingerprint, imported, fields=names)

    async def _import(self, ref: KeyRef, spec: ApiKeySpec, *, missing_ok: bool) -> Imported | None:
        """The value of the consenting source Secret in the key's own namespace."""
        source = spec.source.secret_ref
        assert source is not None
        found = await self.kube.get_secret(ref[0], source.name)
        refusal = None if found is None else consent(found, ref[1])
        data = {} if found is None else (found.get("data") or {})
        wanted = source.keys or (source.key,)
        absent = [key for key in wanted if key not in data]
        if found is None or refusal is not None or absent:
            if missing_ok:
                return None
            if found is None:
                raise SourceMissing(f"Secret {ref[0]}/{source.name} does not exist")
            if refusal is not None:
                raise ImportNotPermitted(f"Secret {ref[0]}/{source.name}: {refusal}")
            raise SourceMissing(f"Secret {ref[0]}/{source.name} has no key {absent[0]!r}")
        meta = found["metadata"]
        value = (
            key_fields.encode({key: base64.b64decode(data[key]) for key in source.keys})
            if source.keys
            else base64.b64decode(data[source.key])
        )
        return Imported(
            value,
            str(meta.get("uid", "")),
            str(meta.get("resourceVersion")),
            str((meta.get("annotations") or {}).get(labels.EXPIRES_AT, ""))[:64],
        )

    async def next_version(
        self,
        ref: KeyRef,
        spec: ApiKeySpec,
        policy: KeyPolicySpec,
        provider: KeyProvider,
        stored: store.Store,
        reason: str,
        now: datetime,
        *,
        allow_reuse: bool,
    ) -> tuple[store.Version, bytes, Imported | None]:
        """A generated or user-supplied value for the next version, sealed."""
        supplied = await self.value_for(
            ref, spec, policy, reason, stored.versions, allow_reuse=allow_reuse
        )
        value, number = supplied.value, stored.next_version
        sealed = await self.keyring.seal(
            value, Binding(ref[0], ref[1], stored.uid, number), provider
        )
        version = store.Version(
            number,
            rfc3339_milli(now),
            self.keyring.fingerprint(value),
            sealed.kms_key_id,
            sealed.provider,
            source_fingerprint=supplied.source_fingerprint,
            tombstone=self.keyring.tombstone(value),
            sealed_at=supplied.sealed_at,
            fields=supplied.fields,
        )
        return version, sealed.envelope, supplied.imported
