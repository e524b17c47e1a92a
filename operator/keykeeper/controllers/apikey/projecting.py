"""Writing and withdrawing one key's projected Secrets, each target on its own.

The plan (``plan.py``) says which targets to write and which Secrets to withdraw; this
module does it. A withdrawal needs no value and deletes exactly the object the world
knows (uid precondition). A write needs the plaintext, opened at most once per
version per reconcile and only when a target needs it; whatever fails for one target
(no plaintext now, an immutable or forbidden Secret) is reported for that target and
never stops the others. A copy that can no longer be brought up to date is withdrawn:
it must not keep serving what it holds.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Sequence

from keykeeper.api.models import SecretType
from keykeeper.api.reasons import EventType, Reason
from keykeeper.controllers.apikey.run import AUDIT_RETRY, TARGET_RETRY, TEMPLATE_RETRY, Run
from keykeeper.core import plan, projection, store
from keykeeper.core.authz import Target
from keykeeper.core.plan import TargetState
from keykeeper.core.status import TargetResult
from keykeeper.crypto.envelope import Binding
from keykeeper.errors import AuditWriteError, KeykeeperError, ProviderError, TemplateError
from keykeeper.keys.keyring import Keyring
from keykeeper.kube.client import Conflict, Kube
from keykeeper.kube.echoes import SecretSignature
from keykeeper.kube.paths import secret_path
from keykeeper.kube.world import World
from keykeeper.providers import KeyProvider
from keykeeper.types import Body, KeyRef

log = logging.getLogger("keykeeper.projecting")


class LazyProvider:
    """The policy's provider, made on first use and kept for the rest of one reconcile;
    a provider that failed is not asked again in the same reconcile. Safe for the
    targets a reconcile writes at once: one is made, the others wait for it."""

    def __init__(self, make: Callable[[], Awaitable[KeyProvider]]) -> None:
        self._make = make
        self._value: KeyProvider | None = None
        self._error: KeykeeperError | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> KeyProvider:
        async with self._lock:
            if self._error is not None:
                raise self._error
            if self._value is None:
                try:
                    self._value = await self._make()
                except KeykeeperError as exc:
                    self._error = exc
                    raise
            return self._value


class Values:
    """Plaintext of a key's versions, opened at most once per reconcile, on demand (the
    targets written at once wait for the one opening)."""

    def __init__(
        self, keyring: Keyring, ref: KeyRef, uid: str, stored: store.Store, providers: LazyProvider
    ) -> None:
        # the AAD binds the live object's uid, never one read back from the store
        self._keyring, self._ref, self._uid = keyring, ref, uid
        self._stored, self._providers = stored, providers
        self._opened: dict[int, bytes] = {}
        self._lock = asyncio.Lock()

    async def of(self, version: int) -> bytes:
        async with self._lock:
            if version not in self._opened:
                binding = Binding(self._ref[0], self._ref[1], self._uid, version)
                self._opened[version] = await self._keyring.open(
                    self._stored.envelopes[version], binding, await self._providers.get()
                )
            return self._opened[version]


class Projector:
    def __init__(self, kube: Kube, world: World, keyring: Keyring) -> None:
        self.kube, self.world, self.keyring = kube, world, keyring

    async def withdraw(self, run: Run, held: Sequence[plan.Held]) -> None:
        """Delete each held Secret (exactly that object: uid precondition). One that cannot
        be deleted now is retried soon and never stops the others."""
        if held:  # one record names them all
            every = "; ".join(f"{secret.namespace}/{secret.name}" for secret in held)
            await run.journal.intend(Reason.PROJECTION_WITHDRAWN, every, proceeds=True)
        for secret in held:
            where = f"{secret.namespace}/{secret.name}"
            path = secret_path(secret.namespace, secret.name)
            try:
                gone = await self.kube.delete_held(path, uid=secret.uid)
                if isinstance(gone, dict):
                    # a finalizer (the recipient's) keeps the object: its value goes now,
                    # so a Secret withdrawn is never readable until someone lets it go
                    # (an update at the resourceVersion the DELETE answered with); the
                    # target is Withdrawing, and looked at again, until it is gone
                    first = bool(gone.get("data"))
                    if first:
                        await self.kube.replace(path, {**gone, "data": {}})
                    run.withdrawing.add((secret.namespace, secret.name))
                    run.again(TARGET_RETRY)
            except KeykeeperError as exc:
                log.warning("%s/%s: withdrawing %s failed: %s", *run.ref, where, exc)
                run.again(TARGET_RETRY)
                continue
            if gone is None or (isinstance(gone, dict) and first):
                run.journal.tell(EventType.NORMAL, Reason.PROJECTION_WITHDRAWN, f"withdrew {where}")
            if not isinstance(gone, dict):  # a held one stays known until its DELETED event
                self.world.drop_secret((secret.namespace, secret.name))

    async def write_all(
        self, run: Run, wanted: Sequence[projection.Desired], values: Values, stored: store.Store
    ) -> list[TargetResult]:
        """Bring every target up to date at once, under one audit record naming them all
        (one per reconcile, not one per target: K9); what fails for one target fails for
        it only, and a target with no record or no plaintext keeps what it holds (it is
        authorized)."""
        rendered = [await self._render(run, desired, values) for desired in wanted]
        ready = [(d, r) for d, r in zip(wanted, rendered, strict=True) if isinstance(r, dict)]
        where = "; ".join(f"{d.target.namespace}/{d.target.secret_name}" for d, _ in ready)
        try:
            if ready:
                await run.journal.intend(Reason.PROJECTED, where, stored.current)
        except AuditWriteError as exc:  # no record, no write
            run.fail(exc, AUDIT_RETRY)
            return [
                r if isinstance(r, TargetResult) else failed(d.target, exc, self._holds(d.target))
                for d, r in zip(wanted, rendered, strict=True)
            ]
        written = iter(await asyncio.gather(*(self._write(run, d, r) for d, r in ready)))
        return [r if isinstance(r, TargetResult) else next(written) for r in rendered]

    def _holds(self, target: Target) -> int | None:
        held = self.world.projected.get((target.namespace, target.secret_name))
        return int(held.version) if held and held.version else None

    async def _render(
        self, run: Run, desired: projection.Desired, values: Values
    ) -> Body | TargetResult:
        """The Secret to write for one target, or why there is none (no plaintext now)."""
        try:
            value = await values.of(desired.version)
            previous = (
                await values.of(desired.previous_version) if desired.previous_version else None
            )
        except ProviderError as exc:
            run.provider_trouble()
            return failed(desired.target, exc, self._holds(desired.target))
        try:
            return projection.render(desired, run.ref, run.uid, self.keyring, value, previous)
        except TemplateError as exc:  # the last good copy stays where it is authorized
            # Ready=False says it, and a Warning Event once (narration), never a value
            run.fail(TemplateError(f"projection into {_where(desired.target)}: {exc}"))
            run.again(TEMPLATE_RETRY)
            return failed(desired.target, exc, self._holds(desired.target))

    async def _write(self, run: Run, desired: projection.Desired, rendered: Body) -> TargetResult:
        target = desired.target
        slot = (target.namespace, target.secret_name)
        held = self.world.projected.get(slot)
        where = f"{target.namespace}/{target.secret_name}"
        self.world.echoes.expect_secret(
            slot,
            SecretSignature(
                owner=run.ref,
                owner_uid=run.uid,
                version=str(desired.version),
                fingerprints=tuple(
                    sorted(
                        (key, self.keyring.fingerprint(base64.b64decode(value)))
                        for key, value in rendered["data"].items()
                    )
                ),
                secret_type=rendered["type"],
            ),
        )
        try:
            written = await self._put(run.ref, target, rendered)
        except KeykeeperError as exc:
            run.again(TARGET_RETRY)
            if held is not None and not exc.transient:
                await self.withdraw(run, [plan.Held(held.namespace, held.name, held.uid)])
            log.warning("%s/%s: projection into %s failed: %s", *run.ref, where, exc)
            return failed(target, exc, None)
        if written is None:
            return denied(plan.clash(target, run.ref[0]))
        self.world.put_secret(written, self.keyring.fingerprint, self.keyring.prove)
        if held is not None and held.version and held.version != str(desired.version):
            run.rotated.append((target.namespace, target.secret_name, desired.version))
        verb = "projected" if held is None else "restored"
        if held is not None and held.version != str(desired.version):
            verb = "updated to"
        run.journal.tell(
            EventType.NORMAL, Reason.PROJECTED, f"{verb} version {desired.version} into {where}"
        )
        return projected(target, desired.version)

    async def _put(self, ref: KeyRef, target: Target, rendered: Body) -> Body | None:
        """Create or replace the projected Secret; None if someone else's Secret has the name
        (a Secret is this key's only with its ownership proof, never by its labels)."""
        try:
            return await self.kube.create(secret_path(target.namespace), rendered)
        except Conflict:
            there = await self.kube.get_secret(target.namespace, target.secret_name)
        if there is None:
            return await self.kube.create(secret_path(target.namespace), rendered)
        if not projection.owned_by(there, ref, self.keyring.prove):
            return None
        if there.get("type", SecretType.OPAQUE) != rendered["type"]:
            # a Secret's type is immutable: exactly this one goes, and the new one is made
            path = secret_path(target.namespace, target.secret_name)
            await self.kube.delete(path, uid=there["metadata"]["uid"])
            return await self.kube.create(secret_path(target.namespace), rendered)
        rendered["metadata"]["resourceVersion"] = there["metadata"]["resourceVersion"]
        return await self.kube.replace(secret_path(target.namespace, target.secret_name), rendered)


def _where(target: Target) -> str:
    return f"{target.namespace}/{target.secret_name}"


def projected(target: Target, version: int) -> TargetResult:
    return TargetResult(
        target.namespace,
        target.secret_name,
        TargetState.PROJECTED,
        version=version,
        template=target.shape.label,
    )


def denied(denial: plan.Denial) -> TargetResult:
    target = denial.target
    return TargetResult(
        target.namespace,
        target.secret_name,
        TargetState.DENIED,
        denial.reason,
        denial.message,
        named=denial.named,
    )


def failed(target: Target, exc: KeykeeperError, holds: int | None) -> TargetResult:
    return TargetResult(
        target.namespace,
        target.secret_name,
        TargetState.FAILED,
        exc.reason if exc.reason != "Error" else "WriteFailed",
        str(exc)[:300],
        version=holds,
        named=not target.selected,
    )
