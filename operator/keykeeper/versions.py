"""Applying the lifecycle's actions to the store: making, retiring and erasing versions.

Every method writes the store Secret (with its resourceVersion as precondition)
before it returns, and only then is anything projected from the new state; that is
what makes rotation two-phase and a crash at any point recoverable. Each one also
appends its audit records and returns the Events to post.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from keykeeper import events, labels, lifecycle, store
from keykeeper.api import ApiKeySpec, KeyPolicySpec, Kms, RotationStrategy
from keykeeper.audit import AuditLog
from keykeeper.conditions import rfc3339
from keykeeper.crypto.envelope import Binding
from keykeeper.errors import IntegrityError, KeykeeperError, SpecError
from keykeeper.kube import Body, Kube, secret_path
from keykeeper.providers import KeyProvider
from keykeeper.values import check as check_value
from keykeeper.values import generate
from keykeeper.vault import Vault
from keykeeper.world import KeyRef

Note = tuple[str, str, str]  # (Event type, reason, message)


class SourceMissing(KeykeeperError):
    reason = "SourceNotFound"


class ImportNotPermitted(SpecError):
    """The Secret named by ``secretRef`` has not consented to being imported by this key."""

    reason = "ImportNotPermitted"


@dataclass(frozen=True)
class Imported:
    """A value read from a consenting source Secret, and which exact object it came from."""

    value: bytes
    uid: str
    resource_version: str

    def __repr__(self) -> str:  # the value never reaches a log through repr()
        return f"Imported(uid={self.uid!r})"


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
    if body.get("type", "Opaque") != "Opaque":
        return "only Secrets of type Opaque can be imported"
    return None


@dataclass
class VersionKeeper:
    kube: Kube
    vault: Vault
    audit: AuditLog
    namespace: str
    clock: Callable[[], datetime]

    # -- reading ---------------------------------------------------------------------------------

    async def read(self, uid: str) -> store.Store:
        found = await self.kube.get_secret(self.namespace, store.store_name(uid))
        if found is None:
            return store.Store(uid)
        stored = store.parse(found)
        if stored.uid != uid:
            raise IntegrityError(f"the store Secret for {uid} names another key")
        return stored

    async def write(self, ref: KeyRef, stored: store.Store) -> store.Store:
        body = store.render(stored, self.namespace, *ref)
        path = secret_path(self.namespace)
        if stored.resource_version is None:
            written = await self.kube.create(path, body)
        else:
            written = await self.kube.replace(f"{path}/{store.store_name(stored.uid)}", body)
        return store.parse(written)

    async def source_fingerprint(self, ref: KeyRef, spec: ApiKeySpec) -> str | None:
        """A fingerprint of the user-supplied source as it is now (None: none, or gone)."""
        source = spec.source
        if source.sealed is not None:
            return self.vault.fingerprint(b"sealed:" + source.sealed.encode())
        if source.secret_ref is not None:
            found = await self._import(ref, spec, missing_ok=True)
            return None if found is None else self.vault.fingerprint(b"secretRef:" + found.value)
        return None

    # -- the actions -----------------------------------------------------------------------------

    async def apply(
        self,
        ref: KeyRef,
        spec: ApiKeySpec,
        policy: KeyPolicySpec,
        provider: Callable[[], Awaitable[KeyProvider]],
        stored: store.Store,
        actions: Iterable[lifecycle.Action],
        notes: list[Note],
    ) -> store.Store:
        """Apply ``actions`` in order; only making a version asks for the provider."""
        for action in actions:
            if isinstance(action, lifecycle.CreateVersion):
                stored = await self.create_version(
                    ref, spec, policy, await provider(), stored, action.reason, notes
                )
            elif isinstance(action, lifecycle.RetirePrevious):
                record(
                    self.audit,
                    events.ERASED,
                    ref,
                    stored.uid,
                    None,
                    f"previous version {action.version} destroyed after its grace period",
                )
                stored = await self.write(ref, stored.retired(action.version))
                notes.append(
                    (
                        events.NORMAL,
                        events.ERASED,
                        f"previous version {action.version} withdrawn and destroyed "
                        "after its grace period",
                    )
                )
            elif isinstance(action, lifecycle.RecordRevocation):
                record(
                    self.audit,
                    events.REVOKED,
                    ref,
                    stored.uid,
                    stored.current,
                    "projections withdrawn",
                )
                stored = await self.write(ref, _replace(stored, revoked_at=precise(self.clock())))
                erase_at = self.clock() + policy.retention.revoked_delta
                notes.append(
                    (
                        events.WARNING,
                        events.REVOKED,
                        "revoked: every projection withdrawn; "
                        f"material erased at {rfc3339(erase_at)}",
                    )
                )
            elif isinstance(action, lifecycle.Erase):
                stored = await self.erase(ref, stored, notes)
        return stored

    async def create_version(
        self,
        ref: KeyRef,
        spec: ApiKeySpec,
        policy: KeyPolicySpec,
        provider: KeyProvider,
        stored: store.Store,
        reason: str,
        notes: list[Note],
    ) -> store.Store:
        value, source_fp, imported = await self._value_for(ref, spec, policy, reason)
        number = stored.next_version
        sealed = await self.vault.seal(value, Binding(ref[0], ref[1], stored.uid, number), provider)
        now = self.clock()
        version = store.Version(
            number,
            precise(now),
            self.vault.fingerprint(value),
            sealed.kms_key_id,
            sealed.provider,
            source_fingerprint=source_fp,
        )
        previous = stored.current
        stored = replace(stored, kms=policy.kms.model_dump(by_alias=True, mode="json"))
        record(self.audit, events.ENCRYPTED, ref, stored.uid, version, f"under {sealed.kms_key_id}")
        if previous is None:
            detail = f"from {spec.source.kind}" + (
                f" {ref[0]}/{spec.source.secret_ref.name} (uid {imported.uid})"
                if imported is not None and spec.source.secret_ref is not None
                else ""
            )
            record(self.audit, events.CREATED, ref, stored.uid, version, detail)
            stored = await self.write(ref, stored.with_version(version, sealed.envelope))
            notes.append(
                (
                    events.NORMAL,
                    events.CREATED,
                    f"stored version 1 ({detail}, fingerprint {version.fingerprint})",
                )
            )
        else:
            # a damaged version is never kept as Previous; a healthy one stays for the grace period
            expires = None if reason == "Recovery" else precise(now + policy.rotation.grace_delta)
            kept = (
                f"; version {previous.version} stays projected as <key>.previous until {expires}"
                if expires
                else f"; damaged version {previous.version} destroyed"
            )
            record(
                self.audit,
                events.ROTATED,
                ref,
                stored.uid,
                version,
                f"{reason}: {previous.version} -> {number}",
            )
            stored = await self.write(ref, stored.rotated(version, sealed.envelope, expires))
            notes.append(
                (
                    events.NORMAL,
                    events.ROTATED,
                    f"rotated to version {number} ({reason}, "
                    f"fingerprint {version.fingerprint}){kept}",
                )
            )
        notes.append(
            (
                events.NORMAL,
                events.ENCRYPTED,
                f"version {number} encrypted under {sealed.provider} key {sealed.kms_key_id}",
            )
        )
        ref_source = spec.source.secret_ref
        if ref_source is not None and ref_source.delete_after_import and imported is not None:
            # exactly the object that was read, and only if it still consents (uid precondition)
            record(
                self.audit,
                "SourceDeleted",
                ref,
                stored.uid,
                version,
                f"deleting {ref[0]}/{ref_source.name} (uid {imported.uid}) after import",
            )
            await self.kube.delete(secret_path(ref[0], ref_source.name), uid=imported.uid)
        return stored

    async def erase(self, ref: KeyRef, stored: store.Store, notes: list[Note]) -> store.Store:
        """Cryptographic erasure, step one: every envelope destroyed, and the KEKs the
        versions name listed as pending (no provider is needed for this step)."""
        keks = tuple(sorted({v.kms_key_id for v in stored.versions if v.provider != "local"}))
        record(self.audit, events.ERASED, ref, stored.uid, None, "erasing all envelopes")
        stored = await self.write(ref, stored.erased(precise(self.clock()), keks))
        detail = "all envelopes destroyed" + (
            f"; KEKs pending destruction: {', '.join(keks)}" if keks else ""
        )
        notes.append((events.NORMAL, events.ERASED, detail))
        return stored

    async def destroy_pending(self, ref: KeyRef, stored: store.Store) -> store.Store:
        """Erasure, step two: destroy the pending per-key KEKs under the provider that made
        them (from the store, so a deleted policy does not strand them). Raises a
        ``ProviderError`` while the provider cannot confirm; the list shrinks only on success."""
        if not stored.keks_pending or stored.kms is None:
            return stored
        provider = await self.vault.provider_for(
            Kms.model_validate(stored.kms), self.kube, self.namespace
        )
        done: list[str] = []
        for kek in stored.keks_pending:
            record(self.audit, events.ERASED, ref, stored.uid, None, f"destroying KEK {kek}")
            await asyncio.to_thread(provider.destroy_kek, kek)  # False: nothing per-key to destroy
            done.append(kek)
        left = tuple(k for k in stored.keks_pending if k not in done)
        return await self.write(ref, replace(stored, keks_pending=left))

    async def record_integrity_failure(
        self, ref: KeyRef, stored: store.Store, problem: str, notes: list[Note]
    ) -> store.Store:
        record(self.audit, events.INTEGRITY_FAILURE, ref, stored.uid, stored.current, problem[:200])
        stored = await self.write(ref, _replace(stored, integrity_failed_at=precise(self.clock())))
        notes.append(
            (
                events.WARNING,
                events.SUSPENDED,
                "suspended automatically: a stored version failed to authenticate",
            )
        )
        return stored

    # -- values ----------------------------------------------------------------------------------

    async def _value_for(
        self, ref: KeyRef, spec: ApiKeySpec, policy: KeyPolicySpec, reason: str
    ) -> tuple[bytes, str | None, Imported | None]:
        source = spec.source
        # user-supplied values are read again for a first version, a changed source, a
        # recovery, and any Manual rotation; everything else is generated
        from_source = source.generate is None and (
            reason in ("Initial", "SourceChanged", "Recovery")
            or policy.rotation.strategy is RotationStrategy.MANUAL
        )
        if not from_source:
            return generate(policy.generator, source.generate), None, None
        if source.sealed is not None:
            value = self.vault.open_sealed_value(source.sealed, *ref)
            check_value(value, policy.value)
            return value, self.vault.fingerprint(b"sealed:" + source.sealed.encode()), None
        imported = await self._import(ref, spec, missing_ok=False)
        assert imported is not None
        check_value(imported.value, policy.value)
        return imported.value, self.vault.fingerprint(b"secretRef:" + imported.value), imported

    async def _import(self, ref: KeyRef, spec: ApiKeySpec, *, missing_ok: bool) -> Imported | None:
        """The value of the consenting source Secret in the key's own namespace."""
        source = spec.source.secret_ref
        assert source is not None
        found = await self.kube.get_secret(ref[0], source.name)
        refusal = None if found is None else consent(found, ref[1])
        encoded = None if found is None else (found.get("data") or {}).get(source.key)
        if found is None or refusal is not None or encoded is None:
            if missing_ok:
                return None
            if found is None:
                raise SourceMissing(f"Secret {ref[0]}/{source.name} does not exist")
            if refusal is not None:
                raise ImportNotPermitted(f"Secret {ref[0]}/{source.name}: {refusal}")
            raise SourceMissing(f"Secret {ref[0]}/{source.name} has no key {source.key!r}")
        meta = found["metadata"]
        return Imported(
            base64.b64decode(encoded), str(meta.get("uid", "")), str(meta.get("resourceVersion"))
        )


def record(
    audit: AuditLog, action: str, ref: KeyRef, uid: str, version: store.Version | None, detail: str
) -> None:
    """One audit record about a key, with the version's KEK and fingerprint when there is one."""
    audit.append(
        action,
        namespace=ref[0],
        name=ref[1],
        uid=uid,
        version=version.version if version else None,
        kms_key_id=version.kms_key_id if version else "",
        fingerprint=version.fingerprint if version else "",
        detail=detail,
    )


def _replace(stored: store.Store, **changes: str | None) -> store.Store:
    return replace(stored, **changes)  # type: ignore[arg-type]


def precise(moment: datetime) -> str:
    """RFC 3339 with milliseconds: versions made within one second stay ordered."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def facts(stored: store.Store, source_fingerprint: str | None) -> lifecycle.Observed:
    def version(v: store.Version | None) -> lifecycle.VersionFacts | None:
        if v is None:
            return None
        return lifecycle.VersionFacts(
            v.version,
            _time(v.created_at),
            v.source_fingerprint,
            _time(v.expires_at) if v.expires_at else None,
        )

    return lifecycle.Observed(
        current=version(stored.current),
        previous=version(stored.previous),
        revoked_at=_time(stored.revoked_at) if stored.revoked_at else None,
        erased=stored.erased_at is not None,
        integrity_failed_at=_time(stored.integrity_failed_at)
        if stored.integrity_failed_at
        else None,
        source_fingerprint=source_fingerprint,
    )


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
