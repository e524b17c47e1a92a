"""Issued keys: minting a version at the policy's issuer exactly once, and revoking the
old one upstream only after its grace period (or on revocation, erasure, deletion).

Exactly once, across crashes:

1. the intent ``minting = n`` is written to the store (and the audit log) **before** the
   issuer is called;
2. the issuer mints with the idempotency key ``<uid>/<n>``: a webhook returns the same
   key for it however often it is asked, so a restart that finds the intent asks again
   and gets the key the crash lost;
3. IAM keeps no idempotency key: a restart that finds the intent lists the user's keys
   and revokes each one no version accounts for (the audit log says so), then mints;
4. the new version is stored, with its upstream id, and the intent cleared, in one write;
   only then is it projected, the old one serving beside it as ``.previous``.

A version whose key does not verify is stored as Destroyed with its upstream key
Revoking, so the next attempt is version n+1 (a new idempotency key); the old key keeps
serving. Revocation is two-phase too: the version is marked ``Revoking`` in the store,
then the issuer is asked; a 404 counts as revoked; an issuer that is down keeps it
``Revoking`` and is asked again, and a deletion waits for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace

from keykeeper.api.issuers import IssuerSpec, UpstreamState
from keykeeper.api.models import KeyPolicySpec
from keykeeper.api.reasons import EventType, Reason
from keykeeper.audit.journal import Journal
from keykeeper.core import store
from keykeeper.crypto.envelope import Binding
from keykeeper.errors import IssuerError, IssuerRefused, IssuerUnavailable
from keykeeper.issuers.base import Issuer, KeyIdentity, Minted, Verified
from keykeeper.keys.keyring import Keyring
from keykeeper.kube.client import Kube
from keykeeper.kube.credentials import credentials_reader
from keykeeper.providers import KeyProvider
from keykeeper.shaping import fields as key_fields
from keykeeper.types import KeyRef

log = logging.getLogger("keykeeper.issuing")

CONCURRENCY = 4  # calls in flight per issuer: 1,000 keys due at once do not storm it
CACHED = 32


class Issuers:
    """The issuer each policy names, built once per (issuer spec, credentials version)."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self._read, self.namespace = credentials_reader(kube), namespace
        self._built: OrderedDict[tuple[str, str], tuple[Issuer, asyncio.Semaphore]] = OrderedDict()

    async def get(self, spec: IssuerSpec) -> tuple[Issuer, asyncio.Semaphore]:
        found = await self._read(self.namespace, spec.credentials)
        if found is None:
            where = f"{self.namespace}/{spec.credentials}"
            raise IssuerRefused(f"the issuer's credentials Secret {where} does not exist")
        data, version = found
        key = (json.dumps(spec.model_dump(mode="json"), sort_keys=True), version)
        if key not in self._built:
            self._built[key] = (_build(spec, data), asyncio.Semaphore(CONCURRENCY))
            while len(self._built) > CACHED:
                old, _ = self._built.popitem(last=False)[1]
                await old.close()
        self._built.move_to_end(key)
        return self._built[key]

    async def close(self) -> None:
        for issuer, _ in self._built.values():
            await issuer.close()
        self._built.clear()


def _build(spec: IssuerSpec, data: dict[str, str]) -> Issuer:
    if spec.webhook is not None:
        from keykeeper.issuers.webhook import WebhookIssuer

        token = data.get("token")
        if not token:
            raise IssuerRefused("the issuer's credentials Secret has no data key token")
        return WebhookIssuer(spec.webhook.url, token.strip(), spec.webhook.ca_pem())
    assert spec.aws_iam is not None
    from keykeeper.issuers.aws_iam import AwsIamIssuer

    iam = spec.aws_iam
    return AwsIamIssuer(iam.user_name, iam.region, data, iam.endpoint)


def identity(ref: KeyRef, uid: str) -> KeyIdentity:
    return KeyIdentity(ref[0], ref[1], uid)


async def accounted(
    issuer: Issuer, key: KeyIdentity, stored: store.Store, journal: Journal
) -> list[str]:
    """After a crash between an intent and its stored version: the upstream keys no version
    accounts for, revoked where the issuer can list them (IAM); the ids revoked."""
    live = await issuer.live(key)
    if live is None:
        return []  # the idempotency key brings the lost one back instead
    known = {v.upstream_id for v in stored.versions if v.upstream_id}
    orphans = [upstream for upstream in live if upstream not in known]
    for upstream in orphans:
        await journal.intend(
            Reason.REVOKED,
            f"revoking upstream key {upstream}: minted for version {stored.minting} before a "
            "restart, its answer lost, so no version holds it",
        )
        await issuer.revoke(key, upstream)
    return orphans


async def mint(issuer: Issuer, key: KeyIdentity, number: int) -> tuple[Minted, Verified]:
    minted = await issuer.mint(key, number)
    return minted, await issuer.verify(key, minted)


Write = Callable[[store.Store], Awaitable[store.Store]]
StoreWriter = Callable[[KeyRef, store.Store], Awaitable[store.Store]]


async def revoke_pending(
    issuer: Issuer, key: KeyIdentity, stored: store.Store, journal: Journal, write: Write
) -> store.Store:
    """Ask the issuer to revoke every version marked Revoking; each confirmed one is
    written Revoked at once. An issuer that is down leaves the rest Revoking (raised)."""
    for version in stored.upstream(UpstreamState.REVOKING):
        assert version.upstream_id is not None
        await journal.intend(Reason.REVOKED, f"revoking upstream key {version.upstream_id}")
        await issuer.revoke(key, version.upstream_id)
        stored = await write(stored.with_upstream({version.version}, UpstreamState.REVOKED))
        journal.tell(
            EventType.NORMAL,
            Reason.REVOKED,
            f"upstream key {version.upstream_id} of version {version.version} revoked",
        )
    return stored


def unverified(stored: store.Store, version: store.Version) -> store.Store:
    """A minted key that does not work: kept as Destroyed with its upstream key Revoking,
    so it is revoked and the next attempt is a new version (a new idempotency key)."""
    failed = replace(version, state=store.VersionState.DESTROYED, upstream=UpstreamState.REVOKING)
    return replace(stored, versions=(*stored.versions, failed), minting=None)


def revoking_all(stored: store.Store) -> store.Store:
    """Every live upstream key marked Revoking (revocation, erasure, deletion)."""
    live = {v.version for v in stored.upstream(UpstreamState.LIVE)}
    return stored.with_upstream(live, UpstreamState.REVOKING) if live else stored


class IssuedVersions:
    """Makes and revokes an issued key's versions (the store writes are the caller's)."""

    def __init__(self, issuers: Issuers, keyring: Keyring, write: StoreWriter) -> None:
        self.issuers, self.keyring, self._write = issuers, keyring, write

    async def _issuer(self, spec: IssuerSpec | None) -> tuple[Issuer, asyncio.Semaphore]:
        if spec is None:
            raise IssuerRefused("the key is issued, but its KeyPolicy names no spec.issuer")
        return await self.issuers.get(spec)

    async def make(
        self,
        ref: KeyRef,
        policy: KeyPolicySpec,
        provider: KeyProvider,
        stored: store.Store,
        journal: Journal,
        now: str,
    ) -> tuple[store.Store, store.Version, bytes]:
        """Mint the next version (intent first) and seal it: the store with the intent
        cleared (not written yet), the version, its envelope. A key that does not
        verify is written as such and raises ``IssuerRefused``."""
        issuer, gate = await self._issuer(policy.issuer)
        key = identity(ref, stored.uid)
        stored = await self._two_at_most(ref, stored, journal)
        number = stored.minting or stored.next_version
        async with gate:
            if stored.minting is None:
                await journal.intend(Reason.ISSUING, f"minting version {number} upstream")
                intent = replace(stored, minting=number, issuer=policy.issuer)
                stored = await self._write(ref, intent)
            else:
                await accounted(issuer, key, stored, journal)
            minted, verdict = await mint(issuer, key, number)
        value = key_fields.encode(minted.fields)
        sealed = await self.keyring.seal(
            value, Binding(ref[0], ref[1], stored.uid, number), provider
        )
        version = store.Version(
            number,
            now,
            self.keyring.fingerprint(value),
            sealed.kms_key_id,
            sealed.provider,
            tombstone=self.keyring.tombstone(value),
            fields=tuple(sorted(minted.fields)),
            upstream_id=minted.id,
            upstream=UpstreamState.LIVE,
            value_expires_at=minted.expires_at or None,
        )
        if verdict is Verified.FAILS:
            await self._write(ref, unverified(stored, version))
            raise IssuerRefused(
                f"the key minted for version {number} (upstream {minted.id}) does not work at "
                "the issuer; the current key keeps serving, and the new one is revoked"
            )
        return replace(stored, minting=None, issuer=policy.issuer), version, sealed.envelope

    async def _two_at_most(self, ref: KeyRef, stored: store.Store, journal: Journal) -> store.Store:
        """An issuer serves two keys of a key at most (AWS's own limit): a rotation asked
        for within the last one's grace period first retires the previous version and
        revokes its upstream key; and any key still Revoking (a crash after its version was
        retired) is revoked first too: a new key is minted only once the issuer confirmed."""
        previous = stored.previous
        fresh = stored.minting is None and previous is not None
        if fresh and previous is not None and previous.upstream is UpstreamState.LIVE:
            await journal.intend(
                Reason.ERASED,
                f"previous version {previous.version} retired before its grace period ended: "
                "a rotation asked for a third upstream key",
            )
            retired = stored.retired(previous.version)
            stored = await self._write(
                ref, retired.with_upstream({previous.version}, UpstreamState.REVOKING)
            )
        return await self.settle(ref, stored, journal)

    async def settle(self, ref: KeyRef, stored: store.Store, journal: Journal) -> store.Store:
        """Revoke what is marked Revoking, under the issuer that minted it (the store's
        record, so a deleted or changed policy strands nothing)."""
        if not stored.upstream(UpstreamState.REVOKING):
            return stored
        issuer, gate = await self._issuer(stored.issuer)
        async with gate:
            return await revoke_pending(
                issuer,
                identity(ref, stored.uid),
                stored,
                journal,
                lambda s: self._write(ref, s),
            )


def issuer_retry(exc: Exception) -> float | None:
    """When to ask an issuer again: its Retry-After, 10 s when it is down, a minute when
    it refused (a policy fix comes as a KeyPolicy event sooner); None: not an issuer's."""
    if isinstance(exc, IssuerUnavailable):
        return exc.retry_after if exc.retry_after is not None else 10.0
    return 60.0 if isinstance(exc, IssuerError) else None
