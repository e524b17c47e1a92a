"""Applying the lifecycle's actions to the store: making, retiring and erasing versions.

Every method writes the store Secret (with its resourceVersion as precondition)
before it returns, and only then is anything projected from the new state; that is
what makes rotation two-phase and a crash at any point recoverable. Each one
journals what it does: the audit record before the write, the Event after it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from keykeeper.api.issuers import UpstreamState
from keykeeper.api.models import ApiKeySpec, KeyPolicySpec
from keykeeper.api.reasons import EventType, Reason, RotationCause
from keykeeper.api.timestamps import rfc3339, rfc3339_milli
from keykeeper.audit.journal import Journal
from keykeeper.controllers.apikey import erasure
from keykeeper.controllers.apikey.issuing import (
    IssuedVersions,
    Issuers,
    issuer_retry,
    revoking_all,
)
from keykeeper.controllers.apikey.run import Run
from keykeeper.controllers.apikey.sources import Imported, Sources
from keykeeper.core import lifecycle, store
from keykeeper.core.intent import reuse_allowed
from keykeeper.errors import IntegrityError, IssuerError
from keykeeper.keys.keyring import Keyring
from keykeeper.kube.client import Kube
from keykeeper.kube.paths import secret_path
from keykeeper.providers import KeyProvider
from keykeeper.providers.cache import ProviderCache
from keykeeper.types import KeyRef


@dataclass
class VersionKeeper:
    kube: Kube
    keyring: Keyring
    providers: ProviderCache
    sources: Sources
    namespace: str
    clock: Callable[[], datetime]
    issued: IssuedVersions | None = None  # issued keys (``issuing``)

    def __post_init__(self) -> None:
        if self.issued is None:
            self.issued = IssuedVersions(
                Issuers(self.kube, self.namespace), self.keyring, self.write
            )

    # -- reading ---------------------------------------------------------------------------------

    async def read(self, uid: str, *, none_yet: bool = False) -> store.Store:
        """The key's store; with ``none_yet`` the caller knows there is none (no request)."""
        if none_yet:
            return store.Store(uid)
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

    # -- the actions -----------------------------------------------------------------------------

    async def apply(
        self,
        run: Run,
        spec: ApiKeySpec,
        policy: KeyPolicySpec,
        provider: Callable[[], Awaitable[KeyProvider]],
        stored: store.Store,
        actions: Iterable[lifecycle.Action],
    ) -> store.Store:
        """Apply ``actions`` in order; only making a version asks for the provider. An
        issuer that fails is said on the run (``Ready=False``), and the store is read
        again, so nothing is projected from what this reconcile no longer holds."""
        try:
            for action in actions:
                stored = await self._apply(run, spec, policy, provider, stored, action)
                if spec.source.issue is not None and isinstance(action, lifecycle.CreateVersion):
                    run.again(0.1)  # its issuer's expiresAt is status and conditions at once
            return await self.settle(run.ref, stored, run.journal)
        except IssuerError as exc:
            run.fail(exc, issuer_retry(exc))
            return await self.read(run.uid)

    async def _apply(
        self,
        run: Run,
        spec: ApiKeySpec,
        policy: KeyPolicySpec,
        provider: Callable[[], Awaitable[KeyProvider]],
        stored: store.Store,
        action: lifecycle.Action,
    ) -> store.Store:
        ref, journal, allow_reuse = run.ref, run.journal, reuse_allowed(run.body)
        if isinstance(action, lifecycle.CreateVersion):
            stored = await self.create_version(
                ref,
                spec,
                policy,
                await provider(),
                stored,
                action.reason,
                journal,
                allow_reuse=allow_reuse,
            )
        elif isinstance(action, lifecycle.RetirePrevious):
            await journal.intend(
                Reason.ERASED,
                f"previous version {action.version} destroyed after its grace period",
            )
            retired = stored.retired(action.version)
            retired = retired.with_upstream({action.version}, UpstreamState.REVOKING)
            stored = await self.write(ref, retired)
            journal.tell(
                EventType.NORMAL,
                Reason.ERASED,
                f"previous version {action.version} withdrawn and destroyed after its grace period",
            )
        elif isinstance(action, lifecycle.RecordRevocation):
            await journal.intend(Reason.REVOKED, "projections withdrawn", stored.current)
            stored = await self.write(
                ref, revoking_all(_replace(stored, revoked_at=rfc3339_milli(self.clock())))
            )
            # every value the key ever held, so none is served again (keys.revocations)
            await self.sources.revocations.record(
                v.tombstone for v in stored.versions if v.tombstone
            )
            erase_at = self.clock() + policy.retention.revoked_delta
            journal.tell(
                EventType.WARNING,
                Reason.REVOKED,
                f"revoked: every projection withdrawn; material erased at {rfc3339(erase_at)}",
            )
        elif isinstance(action, lifecycle.Erase):
            stored = await self.erase(ref, stored, journal)
        return stored

    async def settled(self, run: Run, stored: store.Store) -> store.Store:
        """``settle``, with an issuer's failure said on the run and the store read again."""
        try:
            return await self.settle(run.ref, stored, run.journal)
        except IssuerError as exc:
            run.fail(exc, issuer_retry(exc))
            return await self.read(run.uid)

    async def settle(self, ref: KeyRef, stored: store.Store, journal: Journal) -> store.Store:
        """Revoke upstream what is marked Revoking (``IssuerError`` while the issuer cannot
        confirm: it stays marked, and is asked again)."""
        assert self.issued is not None
        return await self.issued.settle(ref, stored, journal)

    async def create_version(
        self,
        ref: KeyRef,
        spec: ApiKeySpec,
        policy: KeyPolicySpec,
        provider: KeyProvider,
        stored: store.Store,
        reason: str,
        journal: Journal,
        *,
        allow_reuse: bool = False,
    ) -> store.Store:
        """Make, encrypt and store a new version (before any projection uses it)."""
        now = self.clock()
        imported = None
        if spec.source.issue is not None:
            assert self.issued is not None
            stored, version, envelope = await self.issued.make(
                ref, policy, provider, stored, journal, rfc3339_milli(now)
            )
        else:
            version, envelope, imported = await self.sources.next_version(
                ref, spec, policy, provider, stored, reason, now, allow_reuse=allow_reuse
            )
        stored = replace(stored, kms=policy.kms)
        await journal.intend(Reason.ENCRYPTED, f"under {version.kms_key_id}", version)
        if stored.current is None:
            stored = await self._first(ref, spec, stored, version, envelope, imported, journal)
        else:
            # a damaged version is never kept as Previous; a healthy one stays for the grace period
            grace = None if reason == RotationCause.RECOVERY else now + policy.rotation.grace_delta
            stored = await self._rotate(ref, stored, version, envelope, reason, grace, journal)
        journal.tell(
            EventType.NORMAL,
            Reason.ENCRYPTED,
            f"version {version.version} encrypted under {version.provider} key "
            f"{version.kms_key_id}",
        )
        source = spec.source.secret_ref
        if source is not None and source.delete_after_import and imported is not None:
            # exactly the object that was read, and only if it still consents (uid precondition)
            await journal.intend(
                Reason.SOURCE_DELETED,
                f"deleting {ref[0]}/{source.name} (uid {imported.uid}) after import",
                version,
            )
            await self.kube.delete(secret_path(ref[0], source.name), uid=imported.uid)
        return stored

    async def _first(
        self,
        ref: KeyRef,
        spec: ApiKeySpec,
        stored: store.Store,
        version: store.Version,
        envelope: bytes,
        imported: Imported | None,
        journal: Journal,
    ) -> store.Store:
        detail = f"from {spec.source.kind}" + (
            f" {ref[0]}/{spec.source.secret_ref.name} (uid {imported.uid})"
            if imported is not None and spec.source.secret_ref is not None
            else ""
        )
        await journal.intend(Reason.CREATED, detail, version)
        stored = await self.write(ref, stored.with_version(version, envelope))
        shown = self.keyring.shown(journal.uid, version.fingerprint)
        journal.tell(
            EventType.NORMAL,
            Reason.CREATED,
            f"stored version 1 ({detail}, fingerprint {shown})",
        )
        return stored

    async def _rotate(
        self,
        ref: KeyRef,
        stored: store.Store,
        version: store.Version,
        envelope: bytes,
        reason: str,
        grace: datetime | None,
        journal: Journal,
    ) -> store.Store:
        previous = stored.current
        assert previous is not None
        expires = rfc3339_milli(grace) if grace is not None else None
        kept = (
            f"; version {previous.version} stays projected as <key>.previous until {expires}"
            if expires
            else f"; damaged version {previous.version} destroyed"
        )
        detail = f"{reason}: {previous.version} -> {version.version}"
        await journal.intend(Reason.ROTATED, detail, version)
        stored = await self.write(ref, stored.rotated(version, envelope, expires))
        journal.tell(
            EventType.NORMAL,
            Reason.ROTATED,
            f"rotated to version {version.version} ({reason}, "
            f"fingerprint {self.keyring.shown(journal.uid, version.fingerprint)}){kept}",
        )
        return stored

    async def erase(self, ref: KeyRef, stored: store.Store, journal: Journal) -> store.Store:
        return await erasure.erase(self, ref, stored, journal)

    async def destroy_pending(
        self, ref: KeyRef, stored: store.Store, journal: Journal
    ) -> store.Store:
        return await erasure.destroy_pending(self, ref, stored, journal)

    async def record_integrity_failure(
        self, ref: KeyRef, stored: store.Store, problem: str, journal: Journal
    ) -> store.Store:
        return await erasure.record_integrity_failure(self, ref, stored, problem, journal)

    # -- values ----------------------------------------------------------------------------------


def _replace(stored: store.Store, **changes: str | None) -> store.Store:
    return replace(stored, **changes)  # type: ignore[arg-type]
